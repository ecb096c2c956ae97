"""The ``sft`` loss: token-weighted cross-entropy over the trained tokens of a batch, with unlikelihood terms
for tokens of negative weight when asked."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from misstep import components
from misstep.components import Loss, LossOutput
from misstep.hookspecs import Register, hookimpl
from misstep.training.output_layer import DEFAULT_CHUNK_SIZE
from misstep.training.token_loss import token_logprobs


class SFT(Loss["SFT.Options"]):
    """Supervised fine-tuning: token-weighted cross-entropy normalised by the number of trained tokens.

    ``loss = sum_t(w_t * CE_t) / #trained tokens`` with ``w_t`` the message weight (or a weight span's)
    of token t, normalised over the whole optimizer step (all accumulated micro-batches and processes).
    With ``unlikelihood: true``, a token of negative weight contributes ``-|w_t| * log(1 - p_t)`` instead:
    it pushes the token's probability down (examples with negative weights are refused otherwise).
    Padding and masked messages are never counted. Works on padded batches (``attention_mask``) and
    packed ones (``position_ids`` restarting per example, no mask). Logs ``ce`` (unweighted mean over
    the tokens of positive weight), ``token_accuracy`` and ``trained_tokens`` per batch, and with
    unlikelihood ``unlikelihood`` (mean ``-log(1 - p)``) and ``negative_tokens``.
    """

    name = "sft"
    per_token = True

    class Options(components.Options):
        unlikelihood: bool = Field(
            default=False, description="train tokens of negative weight as unlikelihood terms -|w| * log(1 - p)")
        chunk_size: int = Field(
            default=DEFAULT_CHUNK_SIZE, ge=0, description="trained tokens per chunk of the output layer and "
            "cross-entropy (peak memory about 4 x chunk_size x vocabulary floats); 0: all at once")

    @property
    def takes_negative_weights(self) -> bool:
        return self.options.unlikelihood

    def compute(self, model: Any, batch: Mapping[str, Any]) -> LossOutput:
        scores = token_logprobs(model, batch, chunk_size=self.options.chunk_size)
        metrics = scores.metrics()
        if self.options.unlikelihood:  # the same keys in every batch, for the averages of the log
            metrics = {"unlikelihood": 0.0, "negative_tokens": 0.0} | metrics
        return LossOutput(scores.nll(batch.get("num_items_in_batch")), metrics)


@hookimpl
def register_losses(register: Register) -> None:
    register(SFT)
