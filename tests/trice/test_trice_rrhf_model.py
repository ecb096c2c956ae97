"""The RRHF loss on a real tiny model: the shared-prompt layout gives the naive computation's loss and
gradients, for batches of several queries with different numbers of candidates; gradients reach the
model only through the positions that predict trained response tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from misstep_trice.rrhf import RRHF

# three queries: prompts of different lengths, k = 3, 1 and 2, a candidate with an untrained middle
# token (say, a tool observation), a tie in reward and a reversed preference
FEATURES = [
    {"prompt_ids": [5, 6, 7, 8], "candidate_ids": [[9, 10, 11], [12], [13, 14, 15, 16]],
     "candidate_trained": [[True, True, True], [True], [True, False, False, True]], "rewards": [1.0, 2.0, 0.0]},
    {"prompt_ids": [20, 21], "candidate_ids": [[22, 23, 24, 25, 26]],
     "candidate_trained": [[True] * 5], "rewards": [4.0]},
    {"prompt_ids": [30, 31, 32], "candidate_ids": [[33, 34], [35]],
     "candidate_trained": [[True, True], [True]], "rewards": [2.0, 2.0]},
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from misstep.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("rrhf-tiny"))


def load(folder: Path, attention: str = "sdpa") -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(folder, attn_implementation=attention, dtype=torch.float32)


def naive_loss(model: torch.nn.Module, features: list[dict], rrhf_weight: float, sft: str = "mean") -> torch.Tensor:
    """RRHF written out plainly: one forward pass per candidate on ``prompt + candidate``, no padding; the SFT
    term the mean or the sum of the best candidate's token negative log-likelihoods."""
    losses = []
    for feature in features:
        prompt = feature["prompt_ids"]
        scores, sums = [], []
        for ids, trained in zip(feature["candidate_ids"], feature["candidate_trained"]):
            logits = model(input_ids=torch.tensor([prompt + ids])).logits[0]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
            picked = [logprobs[len(prompt) + t - 1, token] for t, token in enumerate(ids) if trained[t]]
            scores.append(torch.stack(picked).mean())
            sums.append(torch.stack(picked).sum())
        rewards = feature["rewards"]
        rank = sum((torch.clamp(scores[i] - scores[j], min=0) for i in range(len(scores)) for j in range(len(scores))
                    if rewards[i] < rewards[j]), torch.tensor(0.0))
        best = rewards.index(max(rewards))
        losses.append(rrhf_weight * rank - (scores[best] if sft == "mean" else sums[best]))
    return torch.stack(losses).mean()


def gradients(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize(("shared", "sft"), [(True, "mean"), (False, "mean"), (True, "sum")])
def test_layouts_match_the_naive_computation_with_batches_and_variable_k(model_dir: Path, shared: bool,
                                                                         sft: str) -> None:
    model = load(model_dir)
    expected = naive_loss(model, FEATURES, rrhf_weight=0.5, sft=sft)
    expected.backward()
    expected_grads = gradients(model)
    model.zero_grad()
    loss = RRHF(RRHF.Options(rrhf_weight=0.5, shared_prompt=shared, sft_reduction=sft))
    out = loss.compute(model, loss.collate(FEATURES))
    out.loss.backward()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    grads = gradients(model)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    assert {"rank_loss", "sft_loss", "pair_accuracy"} <= out.metrics.keys()


def test_eager_attention_gets_an_additive_mask_with_the_same_result(model_dir: Path) -> None:
    loss = RRHF(RRHF.Options(rrhf_weight=1.0))
    batch = loss.collate(FEATURES)
    sdpa = loss.compute(load(model_dir, "sdpa"), batch).loss.item()
    eager = loss.compute(load(model_dir, "eager"), batch).loss.item()
    assert eager == pytest.approx(sdpa, rel=1e-5)


def test_shared_prompt_rows_hold_each_prompt_once(model_dir: Path) -> None:
    shared = RRHF(RRHF.Options(shared_prompt=True)).collate(FEATURES)
    naive = RRHF(RRHF.Options(shared_prompt=False)).collate(FEATURES)
    assert shared["input_ids"].shape[0] == 3 and naive["input_ids"].shape[0] == 6
    # row of query 0: [prompt | c0 | c1 | c2]; candidates sit side by side after the prompt
    assert shared["input_ids"][0, :4 + 3 + 1 + 4].tolist() == [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    # each candidate's positions continue from the prompt's end
    assert shared["position_ids"][0, 4:12].tolist() == [4, 5, 6, 4, 4, 5, 6, 7]
    mask = shared["attention_mask"][0, 0]
    assert mask[7, :4].all() and not mask[7, 4:7].any()  # candidate 1 sees the prompt, not candidate 0


def test_gradients_reach_only_positions_that_predict_trained_response_tokens(model_dir: Path) -> None:
    model = load(model_dir)
    loss = RRHF(RRHF.Options(rrhf_weight=1.0))
    batch = loss.collate(FEATURES[:1])
    captured = {}

    def keep(module, inputs, output):  # the final hidden states, before the LM head
        output.retain_grad()
        captured["hidden"] = output

    handle = model.model.norm.register_forward_hook(keep)
    loss.compute(model, batch).loss.backward()
    handle.remove()
    reached = captured["hidden"].grad[0].abs().sum(dim=-1) > 0
    # row: prompt 0-3 | c0 4-6 | c1 7 | c2 8-11 (its tokens in columns 9 and 10 untrained). A column carries gradient when
    # the next token of its own candidate is trained; the last prompt column predicts every first token.
    predicting = {3, 4, 5, 10}
    assert reached.nonzero().flatten().tolist() == sorted(predicting)


def test_candidates_without_trained_tokens_take_no_part() -> None:
    features = [{"prompt_ids": [1, 2], "candidate_ids": [[3], [4, 5]], "candidate_trained": [[True], [False, False]],
                 "rewards": [0.0, 1.0]}]
    batch = RRHF().collate(features)
    assert batch["valid"].tolist() == [[True, False]]
