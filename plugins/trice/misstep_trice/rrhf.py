"""The RRHF loss (Yuan et al. 2023) as TRICE's stage II uses it.

For each query with candidates y_1..y_k and rewards r_1..r_k, the model's score of a candidate is its
length-normalised log-likelihood over the response tokens only,
``p_i = (1/|y_i|) * sum_t log pi(y_i,t | x, y_i,<t)``. The loss of a query is

    rrhf_weight * sum_{r_i < r_j} max(0, p_i - p_j)  +  SFT(best candidate),

where ties in reward contribute nothing. The SFT term is the negative log-likelihood of the best
candidate's response tokens (padding and prompt never counted), averaged over them (``sft_reduction:
mean``, = -p_best) or summed (``sum``, the paper's formula). The batch loss is the mean over queries, so
k may differ per query and batches hold any number of queries. Candidates are laid out and scored by
the core (:func:`misstep.collate_continuations`, :func:`misstep.continuation_scores`): each prompt once,
its candidates beside it under a 4-D mask.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import misstep
import torch
from pydantic import Field


def candidate_scores(tokens: misstep.TokenScores, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(queries, K) length-normalised log-likelihoods from the scored candidate tokens; 0 where there is no
    candidate."""
    return tokens.per_example().view_as(batch["rewards"]) / misstep.continuation_lengths(batch).clamp(min=1)


def rrhf_terms(scores: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor,
               lengths: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Per-query rank loss, SFT loss and the number of ranked pairs and of pairs already in order.

    ``scores``, ``rewards`` and ``valid`` are (queries, K); pair (i, j) counts when r_i < r_j. With
    ``lengths`` (trained tokens per candidate) the SFT term is summed over the best candidate's tokens,
    else averaged.
    """
    ordered = (rewards[:, :, None] < rewards[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    gap = scores[:, :, None] - scores[:, None, :]  # p_i - p_j
    rank = torch.where(ordered, gap.clamp(min=0), torch.zeros_like(gap)).sum(dim=(1, 2))
    best = rewards.masked_fill(~valid, float("-inf")).argmax(dim=1, keepdim=True)
    sft = -scores.gather(1, best).squeeze(1)
    if lengths is not None:
        sft = sft * lengths.gather(1, best).squeeze(1).to(sft.dtype)
    return {
        "rank": rank,
        "sft": sft,
        "pairs": ordered.sum(dim=(1, 2)),
        "in_order": (ordered & (gap < 0)).sum(dim=(1, 2)),
    }


def rrhf_loss(scores: torch.Tensor, rewards: torch.Tensor, valid: torch.Tensor, rrhf_weight: float,
              lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """The batch loss (mean over queries) and its logged parts; ``lengths`` sums the SFT term (see rrhf_terms)."""
    terms = rrhf_terms(scores, rewards, valid, lengths)
    loss = (rrhf_weight * terms["rank"] + terms["sft"]).mean()
    pairs = terms["pairs"].sum().item()
    metrics = {
        "rank_loss": terms["rank"].mean().item(),
        "sft_loss": terms["sft"].mean().item(),
        "pair_accuracy": terms["in_order"].sum().item() / pairs if pairs else 1.0,
    }
    return loss, metrics


class RRHF(misstep.Loss["RRHF.Options"]):
    """RRHF ranking loss on candidate pools: pairwise hinge on length-normalised log-likelihoods + SFT on the best."""

    name = "rrhf"
    ranked = True

    class Options(misstep.Options):
        rrhf_weight: float = Field(default=1.0, ge=0, description="weight of the rank loss (paper: 0.01, 0.1, 1)")
        sft_reduction: Literal["mean", "sum"] = Field(
            default="mean", description="the SFT term over the best candidate's response tokens: their mean "
            "negative log-likelihood, or the sum (the paper's formula, to replicate its rrhf_weight values)")
        shared_prompt: bool = Field(
            default=True, description="encode each prompt once for all its candidates (false: one row per "
            "candidate, the prompt recomputed k times, as the reference does; same result, slower)")

    def collate(self, features: Sequence[misstep.ContinuationFeatures]) -> dict[str, Any]:
        return misstep.collate_continuations(features, shared=self.options.shared_prompt)

    def compute(self, model: Any, batch: Mapping[str, torch.Tensor]) -> misstep.LossOutput:
        scores = candidate_scores(misstep.continuation_scores(model, batch), batch)
        lengths = misstep.continuation_lengths(batch) if self.options.sft_reduction == "sum" else None
        loss, metrics = rrhf_loss(scores, batch["rewards"], batch["valid"], self.options.rrhf_weight, lengths)
        return misstep.LossOutput(loss, metrics)
