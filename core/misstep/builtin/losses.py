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

    ``total`` defaults to this batch's number of trained tokens. Logits at position t predict label
    t+1. Only trained positions are scored, so padding and masked turns are never counted; a batch
    without trained tokens gives a zero loss that still has a graph.
    """
    import torch.nn.functional as F

    targets = labels[:, 1:]
    trained = targets != IGNORE
    count = int(trained.sum())
    scored = logits[:, :-1][trained].float()
    if count == 0:
        return logits.sum() * 0.0, {"ce": 0.0, "token_accuracy": 0.0, "trained_tokens": 0.0}
    ce = F.cross_entropy(scored, targets[trained], reduction="none")
    loss = (ce * weights[:, 1:][trained].to(ce.dtype)).sum() / (count if total is None else total)
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
        from misstep.training.packing import model_inputs

        logits = model(**model_inputs(batch)).logits
        loss, metrics = weighted_cross_entropy(logits, batch["labels"], batch["weights"],
                                               batch.get("num_items_in_batch"))
        return LossOutput(loss, metrics)


@hookimpl
def register_losses(register):  # type: ignore[no-untyped-def]
    register(SFT)
