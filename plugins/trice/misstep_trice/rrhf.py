"""The RRHF loss (Yuan et al. 2023) as TRICE's stage II uses it.

For each query with candidates y_1..y_k and rewards r_1..r_k, the model's score of a candidate is its
length-normalised log-likelihood over the response tokens only,
``p_i = (1/|y_i|) * sum_t log pi(y_i,t | x, y_i,<t)``. The loss of a query is

    rrhf_weight * sum_{r_i < r_j} max(0, p_i - p_j)  +  SFT(best candidate),

where ties in reward contribute nothing. The SFT term is the negative log-likelihood of the best
candidate's response tokens (padding and prompt never counted), averaged over them (``sft_reduction:
mean``, = -p_best) or summed (``sum``, the paper's formula). The batch loss is the mean over queries, so
k may differ per query and batches hold any number of queries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import misstep
import torch
from pydantic import Field

from misstep_trice.layout import Features, additive, collate


def _unwrapped(model: Any) -> Any:
    """The model inside DDP / DeepSpeed wrappers (for its config and embeddings)."""
    while not hasattr(model, "config") and hasattr(model, "module"):
        model = model.module
    return model


def model_mask(model: Any, mask: torch.Tensor) -> torch.Tensor:
    """The boolean 4-D mask in the form the model's attention takes: as is for SDPA, additive otherwise.

    Flash attention cannot take a per-candidate mask: load the model with ``sdpa`` or ``eager``.
    """
    inner = _unwrapped(model)
    implementation = str(getattr(inner.config, "_attn_implementation", None) or "eager")
    if implementation == "sdpa":
        return mask
    if "flash" in implementation:
        raise misstep.ComponentError(
            f"the rrhf loss needs a 4-D attention mask, which {implementation!r} attention does not take; "
            "load the model with sdpa or eager attention")
    return additive(mask, inner.get_input_embeddings().weight.dtype)


def kept_logits(model: Any, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Logits from the last prompt column on (the only ones that predict candidate tokens)."""
    keep = batch["input_ids"].shape[1] - int(batch["prompt_width"]) + 1
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=model_mask(model, batch["attention_mask"]),
        position_ids=batch["position_ids"],
        logits_to_keep=keep,
        use_cache=False,
    )
    return out.logits


def candidate_lengths(batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(queries, K) number of trained tokens of each candidate (0 where there is no candidate)."""
    size = batch["rewards"].numel()
    return torch.bincount(batch["token_candidate"], minlength=size).view_as(batch["rewards"])


def candidate_scores(logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """(queries, K) length-normalised log-likelihoods from the kept logits; 0 where there is no candidate."""
    rows, columns = batch["token_row"], batch["token_column"]
    picked = logits[rows, columns, batch["token_id"]].float()
    normaliser = torch.logsumexp(logits[rows, columns].float(), dim=-1)
    token_logprobs = picked - normaliser
    size = batch["rewards"].numel()
    sums = torch.zeros(size, dtype=token_logprobs.dtype, device=logits.device)
    sums = sums.index_add(0, batch["token_candidate"], token_logprobs)
    return sums.view_as(batch["rewards"]) / candidate_lengths(batch).clamp(min=1)


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

    def collate(self, features: Sequence[Features]) -> dict[str, torch.Tensor]:
        return collate(features, shared=self.options.shared_prompt)

    def compute(self, model: Any, batch: Mapping[str, torch.Tensor]) -> misstep.LossOutput:
        scores = candidate_scores(kept_logits(model, batch), batch)
        lengths = candidate_lengths(batch) if self.options.sft_reduction == "sum" else None
        loss, metrics = rrhf_loss(scores, batch["rewards"], batch["valid"], self.options.rrhf_weight, lengths)
        return misstep.LossOutput(loss, metrics)
