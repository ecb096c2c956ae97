"""Preference losses over whole trajectories: ``dpo`` and ``simpo`` on (chosen, rejected) pairs, ``kto`` on
examples labelled desirable or undesirable (docs/preference.md).

Each side's log-probability sums only its trained tokens (assistant turns); tool, user and system tokens of
a multi-turn side are context and contribute nothing. Batches hold each prompt once with its continuations
beside it (:mod:`misstep.training.continuations`); ``dpo`` and ``kto`` compare with the reference
log-probabilities computed once before training (:mod:`misstep.training.reference`). Every loss logs TRL's
metrics (``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``, ``logps/chosen``, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar

from pydantic import Field, model_validator

from misstep.components import Loss, LossOutput, Options
from misstep.hookspecs import Register, hookimpl
from misstep.training.continuations import continuation_lengths, continuation_scores
from misstep.training.output_layer import DEFAULT_CHUNK_SIZE
from misstep.training.preference import (
    DPOLossType,
    dpo_losses,
    kl_estimate,
    kto_losses,
    pair_metrics,
    simpo_losses,
    unpaired_metrics,
)

if TYPE_CHECKING:
    from torch import Tensor


class ScoredOptions(Options):
    chunk_size: int = Field(default=DEFAULT_CHUNK_SIZE, ge=0, description="trained tokens per chunk of the output "
                            "layer (peak memory about 4 x chunk_size x vocabulary floats); 0: all at once")


class PairOptions(ScoredOptions):
    sft_weight: float = Field(default=0.0, ge=0, description="weight of an NLL term on the chosen side's trained "
                              "tokens (their mean negative log-likelihood over the batch), as in RPO; 0: none")


P = TypeVar("P", bound=PairOptions)


class PairLoss(Loss[P]):
    """A loss on (chosen, rejected) pairs: continuation 0 of each prompt is the chosen side, 1 the rejected one."""

    preference: ClassVar[Literal["paired", "unpaired"] | None] = "paired"

    def pair_losses(self, logps: Tensor, lengths: Tensor, batch: Mapping[str, Any]) -> tuple[Tensor, ...]:
        """Per-pair losses, the chosen and rejected rewards and the (pairs, 2) log-probabilities to log, from each
        side's summed log-probability and number of trained tokens (both (pairs, 2))."""
        raise NotImplementedError

    def compute(self, model: Any, batch: Mapping[str, Any]) -> LossOutput:
        tokens = continuation_scores(model, batch, chunk_size=self.options.chunk_size)
        logps = tokens.per_example().view_as(batch["rewards"])
        losses, chosen_rewards, rejected_rewards, logged = self.pair_losses(logps, continuation_lengths(batch), batch)
        loss = losses.mean()
        metrics = pair_metrics(chosen_rewards, rejected_rewards, logged[:, 0], logged[:, 1])
        if self.options.sft_weight:  # the chosen sides' trained tokens: continuation 0 of each pair
            nll = -tokens.logprobs[tokens.example % 2 == 0].mean()
            loss = loss + self.options.sft_weight * nll
            metrics["nll_loss"] = nll.item()
        return LossOutput(loss, metrics)


class DPO(PairLoss["DPO.Options"]):
    """DPO on (chosen, rejected) pairs against the reference model's log-probabilities (sigmoid, IPO or hinge)."""

    name = "dpo"

    class Options(PairOptions):
        beta: float = Field(default=0.1, gt=0, description="how far the policy may move from the reference "
                            "(IPO: the regularisation tau)")
        loss_type: DPOLossType = Field(default="sigmoid", description="sigmoid (DPO), ipo (squared, on per-token "
                                       "log-ratios), hinge (SLiC)")
        label_smoothing: float = Field(default=0.0, ge=0, lt=0.5, description="probability that a pair's "
                                       "preference is flipped (conservative DPO; sigmoid only)")

        @model_validator(mode="after")
        def _smoothing_is_for_sigmoid(self) -> DPO.Options:
            if self.label_smoothing and self.loss_type != "sigmoid":
                raise ValueError(f"label_smoothing applies to the sigmoid loss, not to loss_type {self.loss_type!r}")
            return self

    @property
    def uses_reference(self) -> bool:
        return True

    def pair_losses(self, logps: Tensor, lengths: Tensor, batch: Mapping[str, Any]) -> tuple[Tensor, ...]:
        opts, ref = self.options, batch["reference"]
        losses, chosen, rejected = dpo_losses(
            logps[:, 0], logps[:, 1], ref[:, 0], ref[:, 1], beta=opts.beta, loss_type=opts.loss_type,
            label_smoothing=opts.label_smoothing, chosen_lengths=lengths[:, 0], rejected_lengths=lengths[:, 1])
        return losses, chosen, rejected, logps


class SimPO(PairLoss["SimPO.Options"]):
    """SimPO on (chosen, rejected) pairs: reference-free, on mean per-token log-probabilities, with a margin."""

    name = "simpo"

    class Options(PairOptions):
        beta: float = Field(default=2.0, gt=0, description="scale of the mean log-probabilities (the paper: 2 to 2.5)")
        gamma: float = Field(default=0.5, ge=0, description="target reward margin (TRL's simpo_gamma)")
        label_smoothing: float = Field(default=0.0, ge=0, lt=0.5, description="probability that a pair's "
                                       "preference is flipped")

    def pair_losses(self, logps: Tensor, lengths: Tensor, batch: Mapping[str, Any]) -> tuple[Tensor, ...]:
        opts = self.options
        losses, chosen, rejected = simpo_losses(logps[:, 0], logps[:, 1], lengths[:, 0], lengths[:, 1],
                                                beta=opts.beta, gamma=opts.gamma, label_smoothing=opts.label_smoothing)
        return losses, chosen, rejected, logps / lengths.clamp(min=1)  # TRL logs SimPO's mean log-probabilities


class KTO(Loss["KTO.Options"]):
    """KTO on examples labelled desirable or undesirable, against the reference model and the batch's KL estimate."""

    name = "kto"
    preference: ClassVar[Literal["paired", "unpaired"] | None] = "unpaired"

    class Options(ScoredOptions):
        beta: float = Field(default=0.1, gt=0, description="how far the policy may move from the reference")
        desirable_weight: float = Field(default=1.0, gt=0, description="weight of desirable examples' losses (the "
                                        "paper: make weight x count of the two kinds about equal, up to 4:3)")
        undesirable_weight: float = Field(default=1.0, gt=0, description="weight of undesirable examples' losses")

    @property
    def uses_reference(self) -> bool:
        return True

    def compute(self, model: Any, batch: Mapping[str, Any]) -> LossOutput:
        opts = self.options
        logps = continuation_scores(model, batch, chunk_size=opts.chunk_size).per_example().view_as(batch["rewards"])
        ref = batch["reference"]
        kl = kl_estimate(logps[:, 1], ref[:, 1])  # each prompt with the previous example's continuation
        losses, rewards = kto_losses(logps[:, 0], ref[:, 0], batch["desirable"], kl, beta=opts.beta,
                                     desirable_weight=opts.desirable_weight,
                                     undesirable_weight=opts.undesirable_weight)
        return LossOutput(losses.mean(), unpaired_metrics(rewards, logps[:, 0], batch["desirable"], kl))


@hookimpl
def register_losses(register: Register) -> None:
    register(DPO)
    register(SimPO)
    register(KTO)
