"""The ``sft`` loss: token-weighted cross-entropy over the trained tokens of a batch."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from misstep.components import Loss, LossOutput, Options
from misstep.hookspecs import Register, hookimpl
from misstep.training.token_loss import token_logprobs


class SFT(Loss[Options]):
    """Supervised fine-tuning: token-weighted cross-entropy normalised by the number of trained tokens.

    ``loss = sum_t(w_t * CE_t) / #trained tokens`` with ``w_t`` the message weight (or a weight span's)
    of token t, normalised over the whole optimizer step (all accumulated micro-batches and processes).
    Padding and masked messages are never counted. Works on padded batches (``attention_mask``) and
    packed ones (``position_ids`` restarting per example, no mask). Logs ``ce`` (unweighted mean),
    ``token_accuracy`` and ``trained_tokens`` per batch.
    """

    name = "sft"
    per_token = True

    def compute(self, model: Any, batch: Mapping[str, Any]) -> LossOutput:
        scores = token_logprobs(model, batch)
        return LossOutput(scores.nll(batch.get("num_items_in_batch")), scores.metrics())


@hookimpl
def register_losses(register: Register) -> None:
    register(SFT)
