"""Padded and packed batches: layout, and packed == unpacked losses, gradients and logits on a tiny Llama."""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from misstep import Example, Message, PromptTemplate
from misstep.training.attention import IMPLEMENTATION, attends_per_sequence, share_float_masks
from misstep.training.encode import encode_example
from misstep.training.packing import collate_packed, collate_padded, pack_rows
from misstep.training.token_loss import IGNORE_INDEX, model_inputs

@dataclass
class Features:
    input_ids: list[int]
    labels: list[int]
    weights: list[float]


def conversation(seed: int, turns: list[tuple[int, float]], vocab: int = 300) -> Features:
    """Random tokens in turns of (length, weight); weight 0 is a masked turn (prompt, observation)."""
    rng = random.Random(seed)
    ids, labels, weights = [], [], []
    for length, weight in turns:
        tokens = [rng.randrange(4, vocab) for _ in range(length)]
        ids += tokens
        labels += tokens if weight else [IGNORE_INDEX] * length
        weights += [weight] * length
    return Features(ids, labels, weights)


# Multi-turn masks of different lengths: prompt, assistant, observation, assistant ... with unequal weights.
EXAMPLES = [
    conversation(0, [(9, 0), (5, 1.0), (4, 0), (7, 1.0)]),
    conversation(1, [(3, 0), (11, 0.5)]),
    conversation(2, [(14, 0), (6, 1.0), (3, 0), (2, 2.0), (5, 0), (8, 1.0)]),
    conversation(3, [(1, 1.0), (4, 0), (3, 1.0)]),  # trained from the very first token
    conversation(4, [(6, 0), (9, 1.0), (2, 0)]),    # ends on a masked turn
]


@pytest.fixture(scope="module")
def encoded(tiny_model: Path) -> list[Features]:
    """ReAct conversations through the real encoder: masked prompt and observations, weighted turns."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    examples = []
    for steps in (1, 3):
        messages = PromptTemplate(preset="math").render(f"Tom has {steps} bags of 12 apples. How many apples?")
        for step in range(steps):
            messages += [Message(role="assistant", content=f"Thought: step {step}.\nAction: calculate[{step} + 12]",
                                 weight=0.5 + step),
                         Message(role="user", content=f"Observation: {step + 12}")]
        messages.append(Message(role="assistant", content="Thought: done.\nAction: finish[36]"))
        examples.append(encode_example(Example(id=str(steps), messages=messages), tokenizer, max_length=1024))
    assert all(0 < e.trained_tokens < len(e.input_ids) for e in examples)
    return examples


def load(folder: Path, attention: str) -> torch.nn.Module:
    """The tiny model with ``attention``; ``misstep_sdpa`` is sdpa switched by ``share_float_masks`` (as the engine
    does): float masks, and packed rows attended one sequence at a time on this CPU."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation="sdpa" if attention == IMPLEMENTATION else attention)
    if attention == IMPLEMENTATION:
        assert share_float_masks(model)
    return model.train()  # dropout is 0 in the tiny config: train mode is deterministic


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Sum of weighted next-token cross-entropies over labelled tokens, and how many there are."""
    labels, weights = labels[:, 1:], weights[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="none")
    return (losses * weights.flatten()).sum(), int((labels != IGNORE_INDEX).sum())


def loss_and_grads(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]]) -> tuple[float, dict]:
    """The token-weighted CE over all batches (normalised by trained tokens) and every parameter's gradient."""
    model.zero_grad(set_to_none=True)
    total, count = torch.zeros(()), 0
    for batch in batches:
        part, n = weighted_ce(model(**model_inputs(batch)).logits, batch["labels"], batch["weights"])
        total, count = total + part, count + n
    loss = total / count
    loss.backward()
    return loss.item(), {name: p.grad.clone() for name, p in model.named_parameters()}


def one_by_one(features: list[Features]) -> list[dict[str, torch.Tensor]]:
    return [{"input_ids": torch.tensor([f.input_ids]), "labels": torch.tensor([f.labels]),
             "weights": torch.tensor([f.weights])} for f in features]


def test_padded_layout() -> None:
    batch = collate_padded(EXAMPLES[:2], pad_id=0)
    assert batch["input_ids"].shape == (2, 25)
    assert batch["attention_mask"][1].tolist() == [1] * 14 + [0] * 11
    assert batch["input_ids"][1, 14:].eq(0).all()
    assert batch["labels"][1].tolist() == EXAMPLES[1].labels + [IGNORE_INDEX] * 11
    assert batch["weights"][1].tolist() == EXAMPLES[1].weights + [0.0] * 11
    assert batch["labels"][0].tolist() == EXAMPLES[0].labels
    assert batch["example_index"][1].tolist() == [1] * 14 + [-1] * 11  # row r holds example r, padding none
    assert [e.id for e in batch["examples"]] == ["0", "1"]  # plain features are known by their position


def test_packed_layout_one_row() -> None:
    a, b = EXAMPLES[3], EXAMPLES[1]
    batch = collate_packed([a, b], max_tokens=22)
    assert set(batch) == {"input_ids", "position_ids", "labels", "weights", "example_index", "examples",
                          "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k"}
    assert batch["example_index"][0].tolist() == [0] * 8 + [1] * 14
    assert batch["input_ids"][0].tolist() == a.input_ids + b.input_ids
    assert batch["position_ids"][0].tolist() == list(range(8)) + list(range(14))
    # Example a is trained from its first token: that label is masked (nothing in the row predicts it).
    assert batch["labels"][0].tolist() == [IGNORE_INDEX] + a.labels[1:] + [IGNORE_INDEX] + b.labels[1:]
    assert batch["weights"][0].tolist() == [0.0] + a.weights[1:] + [0.0] + b.weights[1:]


def test_packed_rows_default_to_the_longest_example() -> None:
    batch = collate_packed(EXAMPLES)  # 25, 14, 38, 8, 17 -> 25 + 8 | 14 + 17 | 38
    assert batch["input_ids"].shape == (3, 38)
    assert sorted(batch["labels"].ne(IGNORE_INDEX).sum(1).tolist()) == sorted(
        [sum(l != IGNORE_INDEX for l in EXAMPLES[2].labels[1:]),
         sum(l != IGNORE_INDEX for f in (EXAMPLES[0], EXAMPLES[3]) for l in f.labels[1:]),
         sum(l != IGNORE_INDEX for f in (EXAMPLES[4], EXAMPLES[1]) for l in f.labels[1:])])


def test_packed_rows_within_budget() -> None:
    lengths = [len(f.input_ids) for f in EXAMPLES]  # 25, 14, 38, 8, 17
    rows = pack_rows(lengths, max_tokens=40)
    assert sorted(i for row in rows for i in row) == list(range(len(EXAMPLES)))
    assert all(sum(lengths[i] for i in row) <= 40 for row in rows)
    assert len(rows) == 3  # 38 | 25 + 14 | 17 + 8
    batch = collate_packed(EXAMPLES, max_tokens=40, pad_id=1)
    assert batch["input_ids"].shape == (3, 39)
    assert pack_rows(lengths, max_tokens=40) == [[0, 1], [2], [3, 4]]  # examples keep their order
    last = batch["position_ids"][2].tolist()
    assert last == list(range(8)) + list(range(17)) + list(range(14))  # the padding restarts at 0
    assert batch["input_ids"][2, 25:].eq(1).all() and batch["labels"][2, 25:].eq(IGNORE_INDEX).all()
    assert batch["example_index"][2].tolist() == [3] * 8 + [4] * 17 + [-1] * 14  # positions in the batch
    assert pack_rows([50, 3], max_tokens=40) == [[0], [1]]  # too long for the budget: a row of its own


@pytest.mark.parametrize("max_tokens", [None, 40, 1000])
def test_flash_attention_arguments_cover_every_row(max_tokens: int | None) -> None:
    """Varlen bounds over the flattened rows, as transformers derives them for one row from position ids."""
    from transformers.modeling_flash_attention_utils import prepare_fa_kwargs_from_position_ids

    batch = collate_packed(EXAMPLES, max_tokens=max_tokens)
    (cu_q, cu_k), (max_q, max_k) = prepare_fa_kwargs_from_position_ids(batch["position_ids"].reshape(1, -1))
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == cu_q.tolist() == cu_k.tolist()
    assert batch["max_length_q"] == batch["max_length_k"] == int(max_q) == int(max_k)
    assert batch["cu_seq_lens_q"].dtype == torch.int32


def test_bad_features_are_refused() -> None:
    with pytest.raises(ValueError, match="empty batch"):
        collate_packed([])
    with pytest.raises(ValueError, match="example 1 .* lengths 3/2/3"):
        collate_padded([EXAMPLES[0], Features([5, 6, 7], [5, 6], [1.0, 1.0, 1.0])], pad_id=0)


@pytest.mark.parametrize("attention", ["sdpa", "eager", IMPLEMENTATION])
def test_packed_and_padded_match_unpacked(tiny_model: Path, encoded: list[Features], attention: str) -> None:
    model = load(tiny_model, attention)
    examples = [encoded[0], *EXAMPLES, encoded[1]]
    reference_loss, reference_grads = loss_and_grads(model, one_by_one(examples))
    total = sum(len(f.input_ids) for f in examples)
    batches = {
        "padded": [collate_padded(examples, pad_id=0)],
        "packed rows": [collate_packed(examples)],
        "packed, one row": [collate_packed(examples, max_tokens=total)],
        "packed in two batches": [collate_packed(examples[:3], max_tokens=total), collate_packed(examples[3:])],
    }
    assert len(batches["packed rows"][0]["input_ids"]) > 1 and len(batches["packed, one row"][0]["input_ids"]) == 1
    for layout, batch in batches.items():
        loss, grads = loss_and_grads(model, batch)
        assert loss == pytest.approx(reference_loss, abs=1e-5), layout
        for name, grad in grads.items():
            assert (grad - reference_grads[name]).abs().max() <= 1e-5, (layout, name)
    assert any(g.abs().max() > 1e-3 for g in reference_grads.values())  # the comparison is not of zeros


@pytest.mark.parametrize("attention", ["sdpa", "eager", IMPLEMENTATION])
def test_no_attention_across_examples(tiny_model: Path, attention: str) -> None:
    model = load(tiny_model, attention).eval()
    a, b = EXAMPLES[0], EXAMPLES[2]
    changed = Features([(t * 7) % 300 + 4 for t in a.input_ids], a.labels, a.weights)
    start = len(a.input_ids)
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([b.input_ids])).logits[0]
        logits = []
        for first in (a, changed):
            batch = collate_packed([first, b], max_tokens=100)
            logits.append(model(**model_inputs(batch)).logits[0, start:])
        row = collate_packed([b, a, EXAMPLES[3]], max_tokens=40)  # b shares a row with padding only
        padded_row = model(**model_inputs(row)).logits[0, :len(b.input_ids)]
        flat = collate_packed([a, b], max_tokens=100)  # the same tokens with running positions: one sequence, b sees a
        running = model(input_ids=flat["input_ids"], use_cache=False).logits[0, start:]
    torch.testing.assert_close(logits[0], logits[1], atol=1e-6, rtol=0)
    torch.testing.assert_close(logits[0], alone, atol=1e-5, rtol=0)
    torch.testing.assert_close(padded_row, alone, atol=1e-5, rtol=0)
    assert (running - alone).abs().max() > 1e-3


def test_packed_rows_are_attended_per_sequence_on_a_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """misstep_sdpa on a CPU: each sequence of a packed batch (padding included) in a causal sdpa call without a
    mask, grouped keys and values as they are; the same logits and gradients as sdpa under transformers' mask."""
    from transformers import LlamaConfig, LlamaForCausalLM, masking_utils

    config = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
    torch.manual_seed(0)
    masked = LlamaForCausalLM(config).train()
    per_sequence = LlamaForCausalLM(copy.deepcopy(config)).train()
    per_sequence.load_state_dict(masked.state_dict())
    assert share_float_masks(per_sequence) and attends_per_sequence(per_sequence, torch.device("cpu"))
    assert not attends_per_sequence(per_sequence, torch.device("cuda"))
    batch = collate_packed(EXAMPLES, max_tokens=40)  # rows 25 + 14 | 38 + 1 padding | 8 + 17 + 14 padding
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, **kwargs: object) -> torch.Tensor:
        calls.append((query.shape[1], key.shape[1], query.shape[2], kwargs.get("attn_mask") is None,
                      kwargs.get("is_causal")))
        return sdpa(query, key, value, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    masks = []
    sdpa_mask = masking_utils.sdpa_mask
    monkeypatch.setattr(masking_utils, "sdpa_mask", lambda *args, **kwargs: masks.append(1) or sdpa_mask(*args, **kwargs))
    results = []
    for model in (masked, per_sequence):
        calls.clear()
        masks.clear()
        logits = model(**model_inputs(batch)).logits
        weighted_ce(logits, batch["labels"], batch["weights"])[0].backward()
        results.append((logits, [p.grad for p in model.parameters()], list(calls), len(masks)))
    (logits, grads, masked_calls, _), (same_logits, same_grads, sequence_calls, none) = results
    assert masked_calls == [(4, 4, 39, False, False)] * 2  # whole rows under the mask, keys repeated per head
    assert none == 0  # no mask is built for packed rows attended per sequence; padded rows keep theirs:
    calls.clear()
    with torch.no_grad():
        per_sequence(**model_inputs(collate_padded(EXAMPLES, pad_id=0)))
    assert len(masks) == 1 and calls == [(4, 4, 38, False, False)] * 2
    lengths = batch["cu_seq_lens_q"].diff().tolist()
    assert lengths == [25, 14, 38, 1, 8, 17, 14]
    assert sequence_calls == [(4, 2, n, True, n > 1) for _ in range(2) for n in lengths]
    real = batch["example_index"] >= 0
    torch.testing.assert_close(same_logits[real], logits[real], atol=1e-5, rtol=1e-5)
    for grad, same in zip(grads, same_grads):
        torch.testing.assert_close(same, grad, atol=1e-5, rtol=1e-5)


def test_a_sliding_window_keeps_the_mask_of_packed_rows() -> None:
    """A model with a sliding window (here Mistral's, 8 tokens, shorter than the sequences) is not attended per
    sequence on a CPU: packed rows keep transformers' mask, so misstep_sdpa gives sdpa's logits."""
    from transformers import MistralConfig, MistralForCausalLM

    config = MistralConfig(vocab_size=300, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, sliding_window=8, attn_implementation="sdpa")
    torch.manual_seed(0)
    plain = MistralForCausalLM(config).eval()
    switched = MistralForCausalLM(copy.deepcopy(config)).eval()
    switched.load_state_dict(plain.state_dict())
    assert share_float_masks(switched) and not attends_per_sequence(switched, torch.device("cpu"))
    batch = collate_packed(EXAMPLES, max_tokens=40)
    with torch.no_grad():
        expected, logits = (model(**model_inputs(batch)).logits for model in (plain, switched))
    real = batch["example_index"] >= 0
    torch.testing.assert_close(logits[real], expected[real], atol=1e-5, rtol=1e-5)


def test_the_engine_packs_one_row_where_the_model_attends_per_sequence(tiny_model: Path) -> None:
    from misstep import get_plugins
    from misstep.training.engine import collator

    loss = get_plugins().create("loss", "sft", {})
    sdpa = load(tiny_model, "sdpa")
    assert collator(loss, 0, True, sdpa, torch.device("cpu"))(EXAMPLES)["input_ids"].shape == (1, 102)
    assert collator(loss, 0, True, sdpa, torch.device("cuda"))(EXAMPLES)["input_ids"].shape == (3, 38)
    # eager attends over whole rows: rows as long as the longest example
    assert collator(loss, 0, True, load(tiny_model, "eager"), "cpu")(EXAMPLES)["input_ids"].shape == (3, 38)
    assert collator(loss, 0, False, sdpa, "cpu")(EXAMPLES)["input_ids"].shape == (5, 38)
