"""The contract of a token loss: what a token batch holds and the helpers that score it correctly.

A loss without its own ``collate`` receives, in ``compute(model, batch)``, a token batch: padded rows
(one example each) or packed rows (several examples each, padding-free). Tensors are ``[rows, width]``:

- ``input_ids``; ``attention_mask`` (padded) or ``position_ids`` restarting at 0 per example plus
  flash attention's ``cu_seq_lens_q/k`` and ``max_length_q/k`` (packed). Pass them to the model with
  :func:`model_inputs`, which also turns the cache off: with a cache, transformers does not see packed
  rows and the examples of a row attend to each other.
- ``labels``, unshifted: ``labels[r, t] == input_ids[r, t]`` where token t is trained and
  :data:`IGNORE_INDEX` elsewhere. The logits at column t predict the token at t + 1. The first token of
  every example is never trained, so no token predicts across an example boundary of a packed row.
- ``weights``: token t's loss weight (the message weight or a weight span's; 0 where not trained).
- ``example_index``: which entry of ``batch["examples"]`` token t belongs to (-1: padding). Packed
  rows hold several examples: look examples up through this, never by row.

and ``batch["examples"]``, one :class:`ExampleInfo` (id, label, reward, metadata of the
:class:`~misstep.Example`) per example. A ``per_token`` loss also gets ``batch["num_items_in_batch"]``
from the trainer: the trained tokens of the whole optimizer step; divide the summed token losses by it.

:func:`token_logprobs` runs the model and returns :class:`TokenScores`: the log-probability of every
trained token with its weight and example, computing the output layer only at the columns that
predict a trained token. Everything here imports torch lazily: ``import misstep`` stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from misstep.datamodel import Example

if TYPE_CHECKING:
    from torch import Tensor

IGNORE_INDEX = -100
"""The label of a token that is not trained (padding, prompts, observations, masked messages)."""

MODEL_INPUTS = ("input_ids", "attention_mask", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k", "max_length_q",
                "max_length_k")


@dataclass(frozen=True)
class ExampleInfo:
    """What a loss knows about the example a token belongs to (an entry of ``batch["examples"]``)."""

    id: str = ""
    label: str | None = None
    reward: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, example: Example) -> ExampleInfo:
        return cls(id=example.id, label=example.label, reward=example.reward, metadata=example.metadata)


def model_inputs(batch: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of a causal LM's forward pass for a padded or packed batch.

    ``use_cache=False`` is what lets transformers see packed rows (with a cache it skips the check).
    """
    return {key: batch[key] for key in MODEL_INPUTS if key in batch} | {"use_cache": False}


def trained_columns(labels: Tensor) -> Tensor:
    """The columns whose logits predict a trained token in some row (at least one column, for a graph)."""
    import torch

    columns = (labels[:, 1:] != IGNORE_INDEX).any(dim=0).nonzero().squeeze(1)
    return columns if len(columns) else torch.zeros(1, dtype=torch.long, device=labels.device)


@dataclass
class TokenScores:
    """Every trained token of a batch, flattened in batch order (row by row, left to right).

    ``logprobs`` (float32, with the model's graph) is the log-probability the model gave the token,
    ``correct`` whether it was the model's top choice, ``weights`` its loss weight and ``example`` the
    index of its example in ``batch["examples"]``; ``examples`` is how many examples the batch holds.
    """

    logprobs: Tensor
    correct: Tensor
    weights: Tensor
    example: Tensor
    examples: int

    @property
    def count(self) -> int:
        """How many tokens are trained."""
        return len(self.logprobs)

    def nll(self, total: Any = None) -> Tensor:
        """``-sum(weight * logprob) / total``: token-weighted cross-entropy. ``total`` defaults to
        :attr:`count` (pass ``batch.get("num_items_in_batch")``); no trained token gives 0 with a graph."""
        return -(self.logprobs * self.weights).sum() / (max(self.count, 1) if total is None else total)

    def per_example(self, values: Tensor | None = None) -> Tensor:
        """The sum of ``values`` (one per trained token; default: ``logprobs``) over each example's tokens:
        a tensor of length :attr:`examples` (a sequence's log-probability, by default)."""
        import torch

        values = self.logprobs if values is None else values
        return torch.zeros(self.examples, dtype=values.dtype, device=values.device).index_add(0, self.example, values)

    def metrics(self) -> dict[str, float]:
        """``ce`` (unweighted mean), ``token_accuracy`` and ``trained_tokens``, for the trainer's log."""
        if self.count == 0:
            return {"ce": 0.0, "token_accuracy": 0.0, "trained_tokens": 0.0}
        return {"ce": -self.logprobs.detach().mean().item(), "token_accuracy": self.correct.float().mean().item(),
                "trained_tokens": float(self.count)}


def score_logits(logits: Tensor, targets: Tensor, weights: Tensor, example: Tensor | None = None,
                 examples: int = 1) -> TokenScores:
    """:class:`TokenScores` from logits that are already aligned: ``logits[:, i]`` predicts ``targets[:, i]``.

    Only trained targets (not :data:`IGNORE_INDEX`) are scored; ``example`` (same shape as ``targets``,
    default all 0) says which example each target belongs to.
    """
    import torch

    trained = targets != IGNORE_INDEX
    scored = logits[trained].float()
    wanted = targets[trained]
    logprobs = torch.log_softmax(scored, dim=-1).gather(-1, wanted.unsqueeze(-1)).squeeze(-1)
    owner = example[trained] if example is not None else torch.zeros_like(wanted)
    return TokenScores(logprobs=logprobs, correct=scored.detach().argmax(-1) == wanted,
                       weights=weights[trained].to(logprobs.dtype), example=owner, examples=examples)


def token_logprobs(model: Any, batch: Mapping[str, Any]) -> TokenScores:
    """Run ``model`` on a token batch and score its trained tokens (see the module docstring).

    Only the columns that predict a trained token go through the output layer (``logits_to_keep``):
    with a large vocabulary that is much of the work, and prompts and observations are masked.
    """
    labels = batch["labels"]
    columns = trained_columns(labels)
    logits = model(**model_inputs(batch), logits_to_keep=columns).logits
    return score_logits(logits, labels[:, columns + 1], batch["weights"][:, columns + 1],
                        batch["example_index"][:, columns + 1], len(batch["examples"]))


def aligned_cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor,
                          total: Any = None) -> tuple[Tensor, dict[str, float]]:
    """Token-weighted cross-entropy ``sum(weight * CE) / total`` where ``logits[:, i]`` predicts
    ``targets[:, i]``, and its metrics. ``total`` defaults to the number of trained targets."""
    scores = score_logits(logits, targets, weights)
    return scores.nll(total), scores.metrics()

