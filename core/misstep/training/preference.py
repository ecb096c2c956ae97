"""The arithmetic of the preference losses on sequence log-probabilities (docs/preference.md has the formulas).

Every function takes one value per pair or example: ``logps`` are the summed log-probabilities of a
continuation's trained tokens under the policy, ``ref`` the same under the reference model, ``lengths`` the
number of those tokens. They return per-pair (or per-example) losses and the rewards logged under TRL's
names, so that the numbers match TRL's ``DPOTrainer``, ``KTOTrainer`` and ``CPOTrainer`` (SimPO).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from torch import Tensor

DPOLossType = Literal["sigmoid", "ipo", "hinge"]


def dpo_losses(chosen: Tensor, rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *, beta: float,
               loss_type: DPOLossType = "sigmoid", label_smoothing: float = 0.0, chosen_lengths: Tensor | None = None,
               rejected_lengths: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair DPO losses and the implicit rewards ``beta * (logps - ref)`` of the chosen and rejected sides.

    ``h = (chosen - ref_chosen) - (rejected - ref_rejected)``; sigmoid: ``-(1 - e) log s(beta h) - e log s(-beta h)``
    with ``e`` the label smoothing (conservative DPO); hinge: ``max(0, 1 - beta h)``; ipo: ``(h' - 1 / (2 beta))^2``
    where ``h'`` divides each side's log-ratio by its length (as TRL does; the lengths are then required).
    """
    import torch
    import torch.nn.functional as F

    chosen_ratio, rejected_ratio = chosen - ref_chosen, rejected - ref_rejected
    h = chosen_ratio - rejected_ratio
    if loss_type == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    elif loss_type == "hinge":
        losses = torch.relu(1 - beta * h)
    else:
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError("the ipo loss needs the lengths of both sides")
        normalised = chosen_ratio / chosen_lengths.clamp(min=1) - rejected_ratio / rejected_lengths.clamp(min=1)
        losses = (normalised - 1 / (2 * beta)) ** 2
    return losses, beta * chosen_ratio.detach(), beta * rejected_ratio.detach()


def simpo_losses(chosen: Tensor, rejected: Tensor, chosen_lengths: Tensor, rejected_lengths: Tensor, *, beta: float,
                 gamma: float, label_smoothing: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Per-pair SimPO losses (reference-free) and the rewards ``beta * mean log-probability`` of each side.

    ``d = chosen / |chosen| - rejected / |rejected|``;
    loss ``-(1 - e) log s(beta d - gamma) - e log s(gamma - beta d)``.
    """
    import torch.nn.functional as F

    chosen_mean, rejected_mean = chosen / chosen_lengths.clamp(min=1), rejected / rejected_lengths.clamp(min=1)
    margin = beta * (chosen_mean - rejected_mean) - gamma
    losses = -(1 - label_smoothing) * F.logsigmoid(margin) - label_smoothing * F.logsigmoid(-margin)
    return losses, beta * chosen_mean.detach(), beta * rejected_mean.detach()


def kl_estimate(mismatched: Tensor, ref_mismatched: Tensor) -> Tensor:
    """KTO's reference point: the mean log-ratio of the batch's mismatched continuations, over every process of a
    distributed run, at least 0 and without gradient."""
    import torch.distributed as dist

    kl = (mismatched - ref_mismatched).detach().mean()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(kl)
        kl = kl / dist.get_world_size()
    return kl.clamp(min=0)


def kto_losses(logps: Tensor, ref: Tensor, desirable: Tensor, kl: Tensor, *, beta: float, desirable_weight: float,
               undesirable_weight: float) -> tuple[Tensor, Tensor]:
    """Per-example KTO losses and rewards ``beta * (logps - ref)``: ``w_d (1 - s(beta (r - z)))`` for a desirable
    example, ``w_u (1 - s(beta (z - r)))`` for an undesirable one, with ``r`` the log-ratio and ``z`` = ``kl``."""
    import torch

    ratio = logps - ref
    losses = torch.where(desirable, desirable_weight * (1 - torch.sigmoid(beta * (ratio - kl))),
                         undesirable_weight * (1 - torch.sigmoid(beta * (kl - ratio))))
    return losses, beta * ratio.detach()


def pair_metrics(chosen_rewards: Tensor, rejected_rewards: Tensor, chosen: Tensor,
                 rejected: Tensor) -> dict[str, float]:
    """TRL's logged values for a batch of pairs: mean rewards, margins, reward accuracy and log-probabilities."""
    return {
        "rewards/chosen": chosen_rewards.mean().item(),
        "rewards/rejected": rejected_rewards.mean().item(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).float().mean().item(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean().item(),
        "logps/chosen": chosen.detach().mean().item(),
        "logps/rejected": rejected.detach().mean().item(),
    }


def unpaired_metrics(rewards: Tensor, logps: Tensor, desirable: Tensor, kl: Tensor) -> dict[str, float]:
    """TRL's logged KTO values for a batch: ``kl``, and the mean reward and log-probability of its desirable
    (``chosen``) and undesirable (``rejected``) examples where it has them, with their margin where it has both."""
    metrics = {"kl": kl.item()}
    for side, members in (("chosen", desirable), ("rejected", ~desirable)):
        if members.any():
            metrics[f"rewards/{side}"] = rewards[members].mean().item()
            metrics[f"logps/{side}"] = logps.detach()[members].mean().item()
    if "rewards/chosen" in metrics and "rewards/rejected" in metrics:
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    return metrics
