"""Preference losses on multi-turn agent pairs: only assistant tokens count (checked against a direct per-token
computation on the whole conversation), a tool observation is context only, the shared-prompt layout equals
one row per side (loss and gradients), and the reference pre-pass (LoRA: the adapter disabled; resumable)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from misstep import collate_continuations
from misstep.builtin.preference import DPO, KTO, SimPO
from misstep.datamodel import Example, Message, PreferenceExample, ToolCall
from misstep.training.encode import add_mismatched, encode_example, encode_preference, encode_unpaired
from misstep.training.reference import REFERENCE_FILE, attach_reference, score
from misstep.training.token_loss import IGNORE_INDEX

from train_helpers import assert_same_gradients, gradients, load_model, perturbed

SCHEMA = {"type": "function", "function": {"name": "calculate", "description": "Evaluate an arithmetic expression.",
                                           "parameters": {"type": "object",
                                                          "properties": {"expression": {"type": "string"}},
                                                          "required": ["expression"]}}}
PROMPT = [Message(role="system", content="Solve a question answering task."),
          Message(role="user", content="Question: Tom has 3 bags with 12 apples. How many apples?")]


def react_pair(observation: str = "Observation: 36", number: int = 0) -> PreferenceExample:
    """A ReAct pair (text observations in tool turns), two assistant turns a side."""
    return PreferenceExample(id=f"react-{number}", prompt=PROMPT, chosen=[
        Message(role="assistant", content="Thought: multiply" + " again" * number + ".\nAction: Calculator[3 * 12]"),
        Message(role="tool", content=observation),
        Message(role="assistant", content="Action: Finish[36]"),
    ], rejected=[
        Message(role="assistant", content="Action: Calculator[3 + 12]"),
        Message(role="tool", content="Observation: 15"),
        Message(role="assistant", content="Thought: done.\nAction: Finish[15]"),
    ])


def native_pair(observation: str = "36") -> PreferenceExample:
    """A native tool-calling pair: calls, tool results answering them by id, a final answer."""
    return PreferenceExample(id="native", prompt=PROMPT, tools=[SCHEMA], chosen=[
        Message(role="assistant", tool_calls=[ToolCall(id="c1", name="calculate", arguments={"expression": "3 * 12"})]),
        Message(role="tool", content=observation, tool_call_id="c1", name="calculate"),
        Message(role="assistant", content="36 apples."),
    ], rejected=[
        Message(role="assistant", content="Let me add.", tool_calls=[
            ToolCall(id="c1", name="calculate", arguments={"expression": "3 + 12"})]),
        Message(role="tool", content="15", tool_call_id="c1", name="calculate"),
        Message(role="assistant", content="15"),
    ])


def direct_logp(model: torch.nn.Module, example: Example, tokenizer: Any) -> torch.Tensor:
    """The whole conversation in one plain forward pass (no 4-D mask, no shared prompt): the sum of the
    log-probabilities of the tokens the SFT encoder trains (assistant turns)."""
    encoded = encode_example(example, tokenizer, 4096)
    ids = torch.tensor([encoded.input_ids])
    logprobs = F.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    trained = [t for t, label in enumerate(encoded.labels) if label != IGNORE_INDEX]
    return torch.stack([logprobs[t - 1, encoded.input_ids[t]] for t in trained]).sum()


def side(pair: PreferenceExample, name: str) -> Example:
    return Example(id=name, messages=[*pair.prompt, *getattr(pair, name)], tools=pair.tools)


def trained_text(tokenizer: Any, features: dict[str, Any], index: int) -> str:
    ids, trained = features["candidate_ids"][index], features["candidate_trained"][index]
    return tokenizer.decode([token for token, flag in zip(ids, trained) if flag])


@pytest.mark.parametrize("kind", ["react", "native"])
def test_multi_turn_dpo_equals_a_direct_per_token_computation(kind: str, tiny_model: Path, tiny_hermes: Path) -> None:
    folder, pair = (tiny_model, react_pair()) if kind == "react" else (tiny_hermes, native_pair())
    tokenizer = AutoTokenizer.from_pretrained(folder)
    policy = load_model(folder)
    reference = perturbed(policy)
    features = encode_preference(pair, tokenizer, 4096)
    assert features is not None
    # the trained tokens are the assistant turns only: no system, user or tool text
    chosen_text = trained_text(tokenizer, features, 0)
    assert "Tom has" not in chosen_text and ("Observation" not in chosen_text if kind == "react" else
                                             "<tool_response>" not in chosen_text)
    assert ("Finish[36]" if kind == "react" else "36 apples.") in chosen_text
    features["reference"] = score(reference, [features], "cpu")[0]
    beta = 0.3
    out = DPO(DPO.Options(beta=beta)).compute(policy, collate_continuations([features]))
    out.loss.backward()
    ours = gradients(policy)
    policy.zero_grad()

    with torch.no_grad():
        ref_chosen, ref_rejected = (direct_logp(reference, side(pair, s), tokenizer) for s in ("chosen", "rejected"))
    chosen, rejected = (direct_logp(policy, side(pair, s), tokenizer) for s in ("chosen", "rejected"))
    expected = -F.logsigmoid(beta * ((chosen - ref_chosen) - (rejected - ref_rejected)))
    expected.backward()
    assert features["reference"] == pytest.approx([ref_chosen.item(), ref_rejected.item()], rel=1e-5)
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert out.metrics["logps/chosen"] == pytest.approx(chosen.item(), rel=1e-5)
    assert_same_gradients(ours, gradients(policy), rel=1e-5)


@pytest.mark.parametrize("kind", ["react", "native"])
def test_a_tool_observation_in_chosen_is_context_only(kind: str, tiny_model: Path, tiny_hermes: Path) -> None:
    folder = tiny_model if kind == "react" else tiny_hermes
    pairs = [react_pair(), react_pair("Observation: 3612 and more")] if kind == "react" else \
        [native_pair(), native_pair("3612 and more")]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    first, second = (encode_preference(pair, tokenizer, 4096) for pair in pairs)
    assert first is not None and second is not None

    def trained_ids(features: dict[str, Any]) -> list[int]:
        return [t for t, flag in zip(features["candidate_ids"][0], features["candidate_trained"][0]) if flag]

    assert trained_ids(first) == trained_ids(second)  # the same trained tokens, the same count
    assert first["candidate_ids"][0] != second["candidate_ids"][0]  # only the untrained observation differs
    assert first["candidate_ids"][1:] == second["candidate_ids"][1:] and first["prompt_ids"] == second["prompt_ids"]
    policy = load_model(folder)
    scores = [score(policy, [features], "cpu")[0][0] for features in (first, second)]
    direct = [direct_logp(policy, side(pair, "chosen"), tokenizer).item() for pair in pairs]
    assert scores == pytest.approx(direct, rel=1e-5)  # the observation changes the context, which the sum sees


def multi_turn_features(tokenizer: Any, reference: torch.nn.Module) -> list[Any]:
    pairs = [react_pair(number=n) for n in range(3)]
    features = [encode_preference(pair, tokenizer, 4096) for pair in pairs]
    for row, logps in zip(features, score(reference, features, "cpu")):
        row["reference"] = logps
    return features


@pytest.mark.parametrize("loss", [DPO(DPO.Options(beta=0.2, sft_weight=0.5)), DPO(DPO.Options(loss_type="ipo")),
                                  SimPO(SimPO.Options()), KTO(KTO.Options(beta=0.5, undesirable_weight=1.5))],
                         ids=["dpo-rpo", "ipo", "simpo", "kto"])
def test_shared_layout_equals_one_row_per_side(loss: Any, tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    policy = load_model(tiny_model)
    reference = perturbed(policy)
    if loss.preference == "paired":
        features = multi_turn_features(tokenizer, reference)
    else:
        examples = [Example(id=str(n), messages=[*pair.prompt, *getattr(pair, s)], label=label)
                    for n, pair in enumerate(react_pair(number=n) for n in range(2))
                    for s, label in (("chosen", "desirable"), ("rejected", "undesirable"))]
        features = [encode_unpaired(example, tokenizer, 4096) for example in examples]
        add_mismatched(features, 4096)
        for row, logps in zip(features, score(reference, features, "cpu")):
            row["reference"] = logps
    results = {}
    for shared in (True, False):
        batch = collate_continuations(features, shared=shared)
        assert batch["input_ids"].shape[0] == len(features) * (1 if shared else 2)
        out = loss.compute(policy, batch)
        out.loss.backward()
        results[shared] = (out.loss.item(), out.metrics, gradients(policy))
        policy.zero_grad()
    assert results[True][0] == pytest.approx(results[False][0], rel=1e-5)
    assert results[True][1] == pytest.approx(results[False][1], rel=1e-4, abs=1e-6)
    assert_same_gradients(results[True][2], results[False][2], rel=1e-5)


def test_the_chunked_output_layer_equals_all_at_once(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    policy = load_model(tiny_model)
    batch = collate_continuations(multi_turn_features(tokenizer, perturbed(policy)))
    results = []
    for chunk_size in (3, 0):
        out = DPO(DPO.Options(beta=0.2, sft_weight=0.5, chunk_size=chunk_size)).compute(policy, batch)
        out.loss.backward()
        results.append((out.loss.item(), gradients(policy)))
        policy.zero_grad()
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    assert_same_gradients(results[0][1], results[1][1], rel=1e-5)


def lora_model(folder: Path) -> Any:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    return get_peft_model(load_model(folder), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                                   task_type="CAUSAL_LM"))


def test_lora_reference_is_the_base_model_with_the_adapter_disabled(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    base = score(load_model(tiny_model), multi_turn_features(tokenizer, load_model(tiny_model)), "cpu")
    model = lora_model(tiny_model)
    with torch.no_grad():  # an adapter that changes the model, as after training steps
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    rows = multi_turn_features(tokenizer, load_model(tiny_model))
    adapted = score(model, rows, "cpu")
    assert adapted[0][0] != pytest.approx(base[0][0], rel=1e-3)
    attach_reference(rows, model, folder=tmp_path, batch_size=2, device="cpu", disable_adapter=True, log=lambda _: None)
    assert [row["reference"] for row in rows] == [pytest.approx(values, rel=1e-6) for values in base]
    attach_reference(rows, model, folder=tmp_path / "kept", batch_size=2, device="cpu", disable_adapter=False,
                     log=lambda _: None)  # an adapter continued from an earlier stage is part of the reference
    assert [row["reference"] for row in rows] == [pytest.approx(values, rel=1e-6) for values in adapted]
    assert model.training  # back in training mode, the adapter enabled again
    assert score(model, rows, "cpu")[0] == pytest.approx(adapted[0], rel=1e-6)


def test_the_reference_pass_resumes_and_rescores_changed_rows(tiny_model: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    model = load_model(tiny_model)
    rows = multi_turn_features(tokenizer, model)
    lines: list[str] = []
    attach_reference(rows, model, folder=tmp_path, batch_size=2, device="cpu", disable_adapter=False, log=lines.append)
    expected = [row.pop("reference") for row in rows]
    stored = (tmp_path / REFERENCE_FILE).read_text().splitlines()
    assert len(stored) == 3 and lines == ["scoring 3 of 3 examples with the reference model"]
    (tmp_path / REFERENCE_FILE).write_text("\n".join(stored[:2]) + "\n" + stored[2][:15])  # a crash while writing
    rows[0]["candidate_ids"][1] = rows[0]["candidate_ids"][1][:-1]  # and row 0 encodes differently now
    rows[0]["candidate_trained"][1] = rows[0]["candidate_trained"][1][:-1]
    attach_reference(rows, model, folder=tmp_path, batch_size=2, device="cpu", disable_adapter=False, log=lines.append)
    assert lines[-1] == "scoring 2 of 3 examples with the reference model (1 already scored)"
    for row in rows:
        row.pop("reference")
    attach_reference(rows, model, folder=tmp_path, batch_size=2, device="cpu", disable_adapter=False, log=lines.append)
    assert len(lines) == 2  # everything stored: nothing scored
    assert [row["reference"] for row in rows][1:] == [pytest.approx(values, rel=1e-6) for values in expected[1:]]
    assert rows[0]["reference"][0] == pytest.approx(expected[0][0], rel=1e-6)
    assert rows[0]["reference"][1] != pytest.approx(expected[0][1], rel=1e-6)
