"""The output layer and cross-entropy in chunks: the same loss and gradients as all at once, padded and packed,
with weights, weight spans and signed weights (unlikelihood); unlikelihood by hand; Liger's fallback."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import misstep
from misstep.builtin.losses import SFT
from misstep.errors import MisstepError
from misstep.training import output_layer

from train_helpers import varied


@pytest.fixture(scope="module")
def setup(tiny_model: Path) -> tuple[Any, int, list[misstep.Encoded]]:
    """A tiny model and three examples: weighted turns, a negative turn, a negative span in a positive turn."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    first, second, third = varied(0), varied(3), varied(5)
    first[2] = first[2].model_copy(update={"weight": 1.5})
    second[2] = second[2].model_copy(update={"weight": -0.5})
    third[4] = third[4].model_copy(update={"weight": 0.75, "spans": [misstep.WeightSpan(start=3, weight=-1.0)]})
    examples = [misstep.Example(id=str(i), messages=m) for i, m in enumerate([first, second, third])]
    return model, tokenizer.pad_token_id, [misstep.encode_example(e, tokenizer, 1024) for e in examples]


def batches(pad_id: int, encoded: list[misstep.Encoded]) -> dict[str, dict[str, Any]]:
    return {"padded": misstep.collate_padded(encoded, pad_id), "packed": misstep.collate_packed(encoded),
            "one row": misstep.collate_packed(encoded, max_tokens=sum(len(e.input_ids) for e in encoded))}


def loss_and_grads(model: Any, batch: dict[str, Any], chunk_size: int) -> tuple[torch.Tensor, dict[str, float],
                                                                                 list[torch.Tensor]]:
    model.zero_grad()
    output = SFT(SFT.Options(unlikelihood=True, chunk_size=chunk_size)).compute(model, batch)
    output.loss.backward()
    return output.loss.detach(), output.metrics, [p.grad.clone() for p in model.parameters()]


def by_hand(model: Any, encoded: list[misstep.Encoded]) -> torch.Tensor:
    """Each example alone, full logits: w * CE for positive weights, -|w| * log(1 - p) for negative ones."""
    total, count = torch.tensor(0.0), 0
    for example in encoded:
        ids = torch.tensor([example.input_ids])
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), -1)
        for t, (label, weight) in enumerate(zip(example.labels[1:], example.weights[1:])):
            if label == misstep.IGNORE_INDEX:
                continue
            p = logprobs[t, label].exp()
            total = total + (-weight * logprobs[t, label] if weight > 0 else weight * torch.log1p(-p)).float()
            count += 1
    return total / count


def test_the_examples_hold_every_kind_of_weight(setup) -> None:
    _, _, encoded = setup
    weights = {w for e in encoded for w in e.weights if w}
    assert {1.0, 1.5, -0.5, 0.75, -1.0} <= weights


@pytest.mark.parametrize("layout", ["padded", "packed", "one row"])
def test_chunks_of_any_size_give_the_loss_and_gradients_of_the_whole(layout: str, setup) -> None:
    model, pad_id, encoded = setup
    batch = batches(pad_id, encoded)[layout]
    trained = int((batch["labels"][:, 1:] != misstep.IGNORE_INDEX).sum())
    sizes = [1, 7, 64, trained, 4096]
    assert trained % 7 and trained > 64  # a size that does not divide the trained tokens; several chunks
    loss, metrics, grads = loss_and_grads(model, batch, chunk_size=0)  # the model's own logits, all at once
    with torch.no_grad():
        torch.testing.assert_close(loss, by_hand(model, encoded), atol=1e-5, rtol=1e-5)
    assert metrics["negative_tokens"] > 0 and metrics["trained_tokens"] == trained
    for size in sizes:
        other_loss, other_metrics, other_grads = loss_and_grads(model, batch, chunk_size=size)
        torch.testing.assert_close(other_loss, loss, atol=1e-6, rtol=1e-6)
        assert other_metrics == pytest.approx(metrics, abs=1e-6)
        for grad, other in zip(grads, other_grads):
            torch.testing.assert_close(other, grad, atol=1e-6, rtol=1e-5)


def test_mixed_sign_weights_padded_equal_packed(setup) -> None:
    model, pad_id, encoded = setup
    results = [loss_and_grads(model, batch, chunk_size=16) for batch in batches(pad_id, encoded).values()]
    (loss, metrics, grads), *others = results
    for other_loss, other_metrics, other_grads in others:
        torch.testing.assert_close(other_loss, loss, atol=1e-5, rtol=1e-5)
        assert other_metrics == pytest.approx(metrics, abs=1e-5)
        for grad, other in zip(grads, other_grads):
            torch.testing.assert_close(other, grad, atol=1e-5, rtol=1e-4)


def test_per_example_sums_are_the_same_in_chunks(setup) -> None:
    """What DPO and KTO read: each example's summed log-probability, chunked or not."""
    model, pad_id, encoded = setup
    batch = batches(pad_id, encoded)["packed"]
    with torch.no_grad():
        whole = misstep.token_logprobs(model, batch, chunk_size=0)
        chunked = misstep.token_logprobs(model, batch, chunk_size=5)
    torch.testing.assert_close(chunked.per_example(), whole.per_example(), atol=1e-5, rtol=1e-6)
    assert torch.equal(chunked.example, whole.example) and torch.equal(chunked.correct, whole.correct)


def test_unlikelihood_by_hand() -> None:
    logits = torch.tensor([[[0.0, 1.0, 2.0], [2.0, 0.0, 0.0], [0.0, 0.0, 3.0]]], requires_grad=True)
    targets = torch.tensor([[2, 0, 1]])
    weights = torch.tensor([[1.0, -0.5, -1.0]])
    loss, metrics = misstep.aligned_cross_entropy(logits, targets, weights)
    p = torch.softmax(logits.detach()[0].double(), -1)
    expected = (-math.log(p[0, 2]) + 0.5 * -math.log(1 - p[1, 0]) + 1.0 * -math.log(1 - p[2, 1])) / 3
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert metrics["ce"] == pytest.approx(-math.log(p[0, 2]), rel=1e-6)  # over the likelihood tokens
    assert metrics["unlikelihood"] == pytest.approx((-math.log(1 - p[1, 0]) - math.log(1 - p[2, 1])) / 2, rel=1e-6)
    assert metrics["negative_tokens"] == 2.0
    loss.backward()  # the gradient of the log-sum-exp form equals that of the formula
    reference = logits.detach().clone().requires_grad_()
    q = torch.softmax(reference[0], -1)
    (-(torch.log(q[0, 2])) - 0.5 * torch.log(1 - q[1, 0]) - torch.log(1 - q[2, 1])).div(3).backward()
    torch.testing.assert_close(logits.grad, reference.grad)


def test_unlikelihood_stays_finite_where_the_token_is_certain() -> None:
    """log(1 - p) from log-sum-exps: finite (and right) where 1 - exp(log p) rounds to 0 in float32."""
    logits = torch.tensor([[[40.0, 0.0, 0.0]]], requires_grad=True)
    loss, _ = misstep.aligned_cross_entropy(logits, torch.tensor([[0]]), torch.tensor([[-1.0]]))
    loss.backward()
    assert loss.item() == pytest.approx(40.0 - math.log(2), rel=1e-5)  # -log(1 - p) = -log(2 e^0 / (e^40 + 2))
    assert torch.isfinite(logits.grad).all()
    assert torch.isinf(-torch.log1p(-torch.softmax(logits.detach(), -1)[0, 0, 0]))  # the naive way fails


def test_no_trained_token_is_a_zero_loss_with_a_graph_in_chunks(setup) -> None:
    model, pad_id, encoded = setup
    batch = misstep.collate_padded(encoded[:1], pad_id)
    batch["labels"][:] = misstep.IGNORE_INDEX
    batch["weights"][:] = 0.0
    model.zero_grad()
    loss = SFT().compute(model, batch).loss
    loss.backward()
    assert loss.item() == 0.0
    assert all(p.grad is not None and not p.grad.any() for p in model.parameters())


def test_liger_is_used_only_on_a_gpu(setup) -> None:
    """The fallback: on a CPU (this machine) the chunked path runs, whether or not liger-kernel is installed."""
    model, _, _ = setup
    head = output_layer.output_layer(model)
    assert head is model.lm_head
    assert output_layer.liger_cross_entropy(head, torch.zeros(2, head.in_features)) is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="Liger's kernels need a GPU")
def test_liger_gives_the_loss_and_gradients_of_the_whole(setup) -> None:
    pytest.importorskip("liger_kernel")
    model, pad_id, encoded = setup
    model.cuda()
    try:
        assert output_layer.liger_cross_entropy(model.lm_head, torch.zeros(1, 1, device="cuda")) is not None
        positive = [e for e in encoded if min(e.weights) >= 0]  # Liger computes no unlikelihood terms
        batch = {k: v.cuda() if isinstance(v, torch.Tensor) else v
                 for k, v in misstep.collate_packed(positive, pad_id=pad_id).items()}
        fused, whole = loss_and_grads(model, batch, chunk_size=16), loss_and_grads(model, batch, chunk_size=0)
        torch.testing.assert_close(fused[0], whole[0], atol=1e-4, rtol=1e-4)
        for grad, other in zip(whole[2], fused[2]):
            torch.testing.assert_close(other, grad, atol=1e-4, rtol=1e-3)
    finally:
        model.cpu()


class DoubledLogits(torch.nn.Module):
    """A causal LM that changes its logits after the output layer without saying so in its config."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.inner = model

    def get_output_embeddings(self) -> Any:
        return self.inner.get_output_embeddings()

    def forward(self, **inputs: Any) -> Any:
        output = self.inner(**inputs)
        output.logits = output.logits * 2
        return output


def test_a_model_that_changes_its_logits_is_refused_in_chunks_and_scored_whole(setup) -> None:
    model, pad_id, encoded = setup
    batch = misstep.collate_padded(encoded, pad_id)
    doubled = DoubledLogits(model)
    with pytest.raises(MisstepError, match="changes its logits after the output layer.*chunk_size: 0"):
        misstep.token_logprobs(doubled, batch)
    with torch.no_grad():
        whole = misstep.token_logprobs(doubled, batch, chunk_size=0)
        reference = misstep.score_logits(2 * model(**misstep.model_inputs(batch)).logits[:, :-1],
                                         batch["labels"][:, 1:], batch["weights"][:, 1:])
    torch.testing.assert_close(whole.logprobs, reference.logprobs)


def test_a_model_with_soft_capped_logits_is_scored_whole(tmp_path: Path) -> None:
    """Gemma 2 soft-caps its logits after the output layer (its config says so): scored from its own logits."""
    from transformers import Gemma2Config, Gemma2ForCausalLM

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                          num_attention_heads=2, num_key_value_heads=1, head_dim=8, final_logit_softcapping=2.0)
    model = Gemma2ForCausalLM(config)
    assert output_layer.output_layer(model) is None
    ids = torch.randint(3, 64, (1, 12))
    labels = ids.clone()
    labels[0, :4] = misstep.IGNORE_INDEX
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels,
             "weights": (labels != misstep.IGNORE_INDEX).float(), "example_index": torch.zeros_like(ids),
             "examples": [misstep.ExampleInfo()]}
    with torch.no_grad():
        scores = misstep.token_logprobs(model, batch)
        reference = misstep.score_logits(model(input_ids=ids).logits[:, :-1], labels[:, 1:], batch["weights"][:, 1:])
    torch.testing.assert_close(scores.logprobs, reference.logprobs)
