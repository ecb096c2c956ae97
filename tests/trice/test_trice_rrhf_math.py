"""RRHF arithmetic on hand-computed values: scores from logits, the pairwise hinge, the SFT term."""

from __future__ import annotations

import math

import pytest
import torch
from misstep import collate_continuations as collate
from misstep import continuation_lengths as candidate_lengths
from misstep.training.continuations import score_continuation_logits
from misstep_trice.rrhf import candidate_scores, rrhf_loss, rrhf_terms


def terms(scores: list[list[float]], rewards: list[list[float]], valid: list[list[bool]] | None = None):
    s, r = torch.tensor(scores), torch.tensor(rewards)
    v = torch.tensor(valid) if valid is not None else torch.ones_like(s, dtype=torch.bool)
    return rrhf_terms(s, r, v)


def test_reversed_ranking_is_penalised_rrhf_issue_29() -> None:
    # RRHF issue 29: scores [1,2,3,4] with rewards [4,3,2,1] gave a rank loss of 0.
    # Every pair is out of order: (4-3)+(4-2)+(4-1)+(3-2)+(3-1)+(2-1) = 10.
    out = terms([[1.0, 2.0, 3.0, 4.0]], [[4.0, 3.0, 2.0, 1.0]])
    assert out["rank"].item() == pytest.approx(10.0)
    assert out["sft"].item() == pytest.approx(-1.0)  # best reward is candidate 0, p = 1
    assert out["pairs"].item() == 6 and out["in_order"].item() == 0


def test_agreeing_ranking_costs_nothing() -> None:
    out = terms([[4.0, 3.0, 2.0, 1.0]], [[4.0, 3.0, 2.0, 1.0]])
    assert out["rank"].item() == 0.0
    assert out["in_order"].item() == 6


def test_ties_contribute_nothing_three_candidates() -> None:
    # rewards 2, 2, 1: only pairs (2,0) and (2,1) are ranked; the tie between 0 and 1 is not.
    out = terms([[-1.0, -3.0, -0.5]], [[2.0, 2.0, 1.0]])
    assert out["rank"].item() == pytest.approx((-0.5 - -1.0) + (-0.5 - -3.0))
    assert out["pairs"].item() == 2
    assert out["sft"].item() == pytest.approx(1.0)  # first of the tied best: p = -1


def test_padding_candidates_are_ignored_and_k_varies() -> None:
    out = terms([[-2.0, -1.0, 0.0], [-1.0, -0.2, 99.0]], [[1.0, 0.0, 0.0], [0.0, 1.0, 9.0]],
                [[True, True, True], [True, True, False]])
    assert out["rank"].tolist() == pytest.approx([1.0 + 2.0, 0.0])
    assert out["sft"].tolist() == pytest.approx([2.0, 0.2])


def test_scores_from_hand_computed_logits() -> None:
    # Vocabulary of 2; uniform logits give log(1/2) per token; logits (log 3, 0) give log(3/4) / log(1/4).
    third = math.log(3.0)
    features = [{
        "prompt_ids": [1, 1],
        "candidate_ids": [[0, 0], [1], [0, 1, 1]],
        "candidate_trained": [[True, True], [True], [True, False, True]],
        "rewards": [1.0, 2.0, 0.0],
    }]
    batch = collate(features, shared=True)
    # kept columns: last prompt token, then candidate tokens [0 0 | 1 | 0 1 1]
    logits = torch.tensor([[[third, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, third], [third, 0.0], [third, 0.0], [0.0, 0.0]]])
    scores = candidate_scores(score_continuation_logits(logits, batch), batch)[0]
    half, three_q, one_q = math.log(0.5), math.log(0.75), math.log(0.25)
    # candidate 0: token 0 from the prompt column (3/4), token 0 after it (1/2)
    assert scores[0].item() == pytest.approx((three_q + half) / 2)
    # candidate 1: token 1 from the prompt column (1/4)
    assert scores[1].item() == pytest.approx(one_q)
    # candidate 2: token 0 from the prompt column (3/4); token 1 is untrained; the last token 1 from the
    # column of the untrained token (1/4); the last column predicts nothing
    assert scores[2].item() == pytest.approx((three_q + one_q) / 2)
    loss, metrics = rrhf_loss(scores[None], batch["rewards"], batch["valid"], rrhf_weight=0.5)
    p0, p1, p2 = scores.tolist()
    rank = max(0.0, p0 - p1) + max(0.0, p2 - p1) + max(0.0, p2 - p0)
    assert loss.item() == pytest.approx(0.5 * rank - p1)
    assert metrics["rank_loss"] == pytest.approx(rank)


# Three candidates scored from hand-made logits over a vocabulary of 2. The last prompt column has logits
# (ln 3, 0): token 0 has probability 3/4, token 1 has 1/4; a column with logits (0, 0) gives 1/2 each.
#   c0 = [1]     p0 = ln(1/4)                  = -1.386294
#   c1 = [0, 0]  p1 = (ln(3/4) + ln(1/2)) / 2  = -0.490415
#   c2 = [0]     p2 = ln(3/4)                  = -0.287682
THREE = {"prompt_ids": [1, 1], "candidate_ids": [[1], [0, 0], [0]], "candidate_trained": [[True], [True, True], [True]]}


def three_candidate_logits() -> torch.Tensor:
    # kept columns: last prompt token, then the candidate tokens [1 | 0 0 | 0]
    third = math.log(3.0)
    return torch.tensor([[[third, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]], requires_grad=True)


@pytest.mark.parametrize(("rewards", "weight", "rank", "sft"), [
    # reversed: the model prefers c2 > c1 > c0, the rewards say c0 > c1 > c2; every pair is out of order:
    # (p1 - p0) + (p2 - p0) + (p2 - p1) = 0.895880 + 1.098612 + 0.202733; SFT on c0
    ([3.0, 2.0, 1.0], 1.0, 2.197225, 1.386294),
    ([3.0, 2.0, 1.0], 0.1, 2.197225, 1.386294),
    # ties: c0 and c1 share the best reward (no pair between them); (p2 - p0) + (p2 - p1); SFT on the first best
    ([2.0, 2.0, 1.0], 1.0, 1.098612 + 0.202733, 1.386294),
    # agreeing order with a tie at the top: nothing to rank; SFT on c1, the first of the tied best
    ([1.0, 2.0, 2.0], 1.0, 0.0, 0.490415),
])
def test_three_candidates_hand_computed(rewards: list[float], weight: float, rank: float, sft: float) -> None:
    batch = collate([{**THREE, "rewards": rewards}], shared=True)
    logits = three_candidate_logits()
    scores = candidate_scores(score_continuation_logits(logits, batch), batch)
    assert scores[0].tolist() == pytest.approx([-1.386294, -0.490415, -0.287682], abs=1e-6)
    loss, metrics = rrhf_loss(scores, batch["rewards"], batch["valid"], rrhf_weight=weight)
    assert metrics["rank_loss"] == pytest.approx(rank, abs=1e-5)
    assert metrics["sft_loss"] == pytest.approx(sft, abs=1e-5)
    assert loss.item() == pytest.approx(weight * rank + sft, abs=1e-5)
    loss.backward()
    # the columns of the last token of c0 and of c2 predict nothing: no gradient there
    reached = logits.grad[0].abs().sum(dim=-1) > 0
    assert reached[0] and not reached[1] and not reached[4]


def test_the_sft_term_can_be_summed_as_in_the_paper() -> None:
    # SFT on c1 = [0, 0] (the best reward): mean -p1 = 0.490415 over its 2 tokens, sum 2 * 0.490415
    batch = collate([{**THREE, "rewards": [1.0, 2.0, 0.0]}], shared=True)
    scores = candidate_scores(score_continuation_logits(three_candidate_logits(), batch), batch)
    assert candidate_lengths(batch).tolist() == [[1, 2, 1]]
    _, mean = rrhf_loss(scores, batch["rewards"], batch["valid"], rrhf_weight=1.0)
    loss, summed = rrhf_loss(scores, batch["rewards"], batch["valid"], rrhf_weight=1.0, lengths=candidate_lengths(batch))
    assert (mean["sft_loss"], summed["sft_loss"]) == (pytest.approx(0.490415, abs=1e-5), pytest.approx(0.980830, abs=1e-5))
    assert loss.item() == pytest.approx(summed["rank_loss"] + 0.980830, abs=1e-5)
