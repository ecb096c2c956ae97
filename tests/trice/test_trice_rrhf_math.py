"""RRHF arithmetic on hand-computed values: scores from logits, the pairwise hinge, the SFT term."""

from __future__ import annotations

import math

import pytest
import torch
from misstep_trice.layout import collate
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
    scores = candidate_scores(logits, batch)[0]
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
