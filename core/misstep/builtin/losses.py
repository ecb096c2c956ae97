"""The ``sft`` loss: token-weighted cross-entropy over the trained tokens of a batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from misstep.components import Loss, LossOutput, Options
from misstep.hookspecs import hookimpl

IGNORE = -100


def weighted_cross_entropy(logits: Any, labels: Any, weights: Any,
                           total: Any = None) -> tuple[Any, dict[str, float]]:
    """``sum(weight * CE) / total`` over unshifted ``labels`` (-100: not trained).

    Logits at position t predict label t+1. ``total`` defaults to this batch's number of trained
    tokens. Only trained positions are scored, so padding and masked turns are never counted.
    """
    return aligned_cross_entropy(logits[:, :-1], labels[:, 1:], weights[:, 1:], total)


def aligned_cross_entropy(logits: Any, targets: Any, weights: Any, total: Any = None) -> tuple[Any, dict[str, float]]:
    """:func:`weighted_cross_entropy` where ``logits[:, i]`` already predicts ``targets[:, i]``.

    A batch without trained tokens gives a zero loss that still has a graph.
    """
    import torch.nn.functional as F

    trained = targets != IGNORE
    count = int(trained.sum())
    if count == 0:
        return logits.sum() * 0.0, {"ce": 0.0, "token_accuracy": 0.0, "trained_tokens": 0.0}
    scored = logits[trained].float()
    ce = F.cross_entropy(scored, targets[trained], reduction="none")
    loss = (ce * weights[trained].to(ce.dtype)).sum() / (count if total is None else total)
    metrics = {
        "ce": ce.detach().mean().item(),
        "token_accuracy": (scored.detach().argmax(-1) == targets[trained]).float().mean().item(),
        "trained_tokens": float(count),
    }
    return loss, metrics


class SFT(Loss["SFT.Options"]):
    """Supervised fine-tuning: token-weighted cross-entropy normalised by the number of trained tokens.

    ``loss = sum_t(w_t * CE_t) / #trained tokens`` with ``w_t`` the message weight (or a weight span's)
    of token t, normalised over the whole optimizer step (all accumulated micro-batches and processes). Padding and masked messages are never counted. Works on padded batches
    (``attention_mask``) and packed ones (``position_ids`` restarting per example, no mask). Logs ``ce``
    (unweighted mean), ``token_accuracy`` and ``trained_tokens`` per batch.
    """

    name = "sft"
    per_token = True

    class Options(Options):
        pass

    def compute(self, model: Any, batch: Mapping[str, Any]) -> LossOutput:
        import torch

        from misstep.training.packing import model_inputs

        labels, weights = batch["labels"], batch["weights"]
        # only the columns that predict a trained token go through the output layer (a large share of
        # the work with big vocabularies: prompts and observations are masked)
        columns = (labels[:, 1:] != IGNORE).any(dim=0).nonzero().squeeze(1)
        if len(columns) == 0:
            columns = torch.zeros(1, dtype=torch.long, device=labels.device)
        logits = model(**model_inputs(batch), logits_to_keep=columns).logits
        return LossOutput(*aligned_cross_entropy(logits, labels[:, columns + 1], weights[:, columns + 1],
                                                 batch.get("num_items_in_batch")))


@hookimpl
def register_losses(register):  # type: ignore[no-untyped-def]
    register(SFT)
