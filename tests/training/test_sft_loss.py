"""The sft loss: sum(weight * CE) / trained tokens, padding never counted, padded == packed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from misstep import aligned_cross_entropy
from misstep.builtin.losses import SFT
from misstep.datamodel import Example, Message, WeightSpan
from misstep.training.encode import encode_example
from misstep.training.packing import collate_packed, collate_padded

from train_helpers import MESSAGES


def weighted_cross_entropy(logits, labels, weights):
    """The loss over a batch's unshifted labels: the logits at t predict the label at t + 1."""
    return aligned_cross_entropy(logits[:, :-1], labels[:, 1:], weights[:, 1:])


def test_weighted_cross_entropy_by_hand() -> None:
    logits = torch.tensor([[[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 1.0, 1.0]]])
    labels = torch.tensor([[-100, 0, -100, 2]])  # positions 1 and 3 trained: predicted by logits 0 and 2
    weights = torch.tensor([[0.0, 2.0, 0.0, 0.5]])
    loss, metrics = weighted_cross_entropy(logits, labels, weights)
    ce0 = -torch.log_softmax(logits[0, 0], -1)[0]
    ce2 = -torch.log_softmax(logits[0, 2], -1)[2]
    assert loss.item() == pytest.approx(((2.0 * ce0 + 0.5 * ce2) / 2).item())  # divided by 2 tokens, not by weights
    assert metrics == pytest.approx({"ce": ((ce0 + ce2) / 2).item(), "token_accuracy": 0.5, "trained_tokens": 2.0})


def test_no_trained_token_is_a_zero_loss_with_a_graph() -> None:
    logits = torch.randn(1, 3, 5, requires_grad=True)
    loss, metrics = weighted_cross_entropy(logits, torch.full((1, 3), -100), torch.zeros(1, 3))
    loss.backward()
    assert loss.item() == 0.0 and metrics["trained_tokens"] == 0.0 and torch.equal(logits.grad, torch.zeros(1, 3, 5))


@pytest.fixture(scope="module")
def model_and_batch(tiny_model: Path):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, attn_implementation="sdpa")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    short = [*MESSAGES[:2], Message(role="assistant", content="Action: Finish[36]", weight=2.0)]
    spans = [*MESSAGES[:4], MESSAGES[4].model_copy(update={"spans": [WeightSpan(start=8, weight=0.25)]})]
    examples = [Example(id=str(i), messages=m) for i, m in enumerate([MESSAGES, short, spans])]
    return model, tokenizer.pad_token_id, [encode_example(e, tokenizer, 1024) for e in examples]


def test_loss_over_a_padded_batch_equals_the_loss_over_its_trained_tokens(model_and_batch) -> None:
    model, pad_id, encoded = model_and_batch
    loss = SFT().compute(model, collate_padded(encoded, pad_id)).loss
    total, count = torch.tensor(0.0), 0
    for example in encoded:  # one at a time, no padding at all
        ids = torch.tensor([example.input_ids])
        logits = model(input_ids=ids).logits[0, :-1]
        ce = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none")
        trained = torch.tensor(example.labels[1:]) != -100
        total = total + (ce * torch.tensor(example.weights[1:]))[trained].sum()
        count += int(trained.sum())
    torch.testing.assert_close(loss, total / count, atol=1e-5, rtol=1e-5)


def test_padded_and_packed_batches_give_the_same_loss_and_gradients(model_and_batch) -> None:
    model, pad_id, encoded = model_and_batch
    results = []
    for batch in (collate_padded(encoded, pad_id), collate_packed(encoded), collate_packed(encoded, max_tokens=150)):
        model.zero_grad()
        output = SFT().compute(model, batch)
        output.loss.backward()
        results.append((output.loss.detach(), output.metrics, [p.grad.clone() for p in model.parameters()]))
    (loss, metrics, grads), *others = results
    for other_loss, other_metrics, other_grads in others:
        torch.testing.assert_close(other_loss, loss, atol=1e-5, rtol=1e-5)
        assert other_metrics == pytest.approx(metrics, abs=1e-5)
        for grad, other in zip(grads, other_grads):
            torch.testing.assert_close(other, grad, atol=1e-5, rtol=1e-4)
