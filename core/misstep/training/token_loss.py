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
- ``weights``: token t's loss weight (the message weight or a weight span's; 0 where not trained). A
  negative weight asks for an unlikelihood term, ``-|w| * log(1 - p)`` (:meth:`TokenScores.losses`).
- ``example_index``: which entry of ``batch["examples"]`` token t belongs to (-1: padding). Packed
  rows hold several examples: look examples up through this, never by row.

and ``batch["examples"]``, one :class:`ExampleInfo` (id, label, reward, metadata of the
:class:`~misstep.Example`) per example. A ``per_token`` loss also gets ``batch["num_items_in_batch"]``
from the trainer: the trained tokens of the whole optimizer step; divide the summed token losses by it.

:func:`token_logprobs` runs the model and returns :class:`TokenScores`: the log-probability of every
trained token with its weight and example (and ``log(1 - p)`` for tokens of negative weight), sending
only the trained tokens through the output layer, in chunks that never hold the logits of the whole
batch (:mod:`misstep.training.output_layer`). Everything here imports torch lazily: ``import misstep``
stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from misstep.datamodel import Example
from misstep.training.output_layer import DEFAULT_CHUNK_SIZE, head_scores, output_layer, run_hidden, scores

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
    ``complements`` is ``log(1 - p(token))`` for the tokens of negative weight (0 for the others), or None
    when no weight is negative.
    """

    logprobs: Tensor
    correct: Tensor
    weights: Tensor
    example: Tensor
    examples: int
    complements: Tensor | None = None

    @property
    def count(self) -> int:
        """How many tokens are trained."""
        return len(self.logprobs)

    def losses(self) -> Tensor:
        """Each token's loss: ``-w * log p`` for a positive weight ``w`` (likelihood) and ``-|w| * log(1 - p)``
        for a negative one (unlikelihood: pushes ``p`` down, and is bounded as ``p`` falls, unlike ``+log p``)."""
        likelihood = -self.logprobs * self.weights.clamp(min=0)
        if self.complements is None:
            return likelihood
        return likelihood + self.complements * self.weights.clamp(max=0)

    def nll(self, total: Any = None) -> Tensor:
        """``sum(losses()) / total``: token-weighted cross-entropy, with unlikelihood terms for negative weights.
        ``total`` defaults to :attr:`count` (pass ``batch.get("num_items_in_batch")``); no trained token gives 0
        with a graph."""
        return self.losses().sum() / (max(self.count, 1) if total is None else total)

    def per_example(self, values: Tensor | None = None) -> Tensor:
        """The sum of ``values`` (one per trained token; default: ``logprobs``) over each example's tokens:
        a tensor of length :attr:`examples` (a sequence's log-probability, by default)."""
        import torch

        values = self.logprobs if values is None else values
        return torch.zeros(self.examples, dtype=values.dtype, device=values.device).index_add(0, self.example, values)

    def metrics(self) -> dict[str, float]:
        """``ce`` (unweighted mean) and ``token_accuracy`` over the tokens of positive weight, ``trained_tokens``,
        and where some weight is negative ``unlikelihood`` (mean ``-log(1 - p)``) and ``negative_tokens``."""
        positive = self.weights > 0
        count = int(positive.sum())
        metrics = {"ce": -self.logprobs.detach()[positive].mean().item() if count else 0.0,
                   "token_accuracy": self.correct[positive].float().mean().item() if count else 0.0,
                   "trained_tokens": float(self.count)}
        if self.complements is not None:
            negative = ~positive
            metrics |= {"unlikelihood": -self.complements.detach()[negative].mean().item(),
                        "negative_tokens": float(negative.sum())}
        return metrics


def score_logits(logits: Tensor, targets: Tensor, weights: Tensor, example: Tensor | None = None,
                 examples: int = 1) -> TokenScores:
    """:class:`TokenScores` from logits that are already aligned: ``logits[:, i]`` predicts ``targets[:, i]``.

    Only trained targets (not :data:`IGNORE_INDEX`) are scored; ``example`` (same shape as ``targets``,
    default all 0) says which example each target belongs to.
    """
    import torch

    trained = targets != IGNORE_INDEX
    wanted = targets[trained]
    owner = example[trained] if example is not None else torch.zeros_like(wanted)
    return _token_scores(scores(logits[trained], wanted, weights[trained] < 0), weights[trained], owner, examples)


def _token_scores(values: tuple[Tensor, Tensor, Tensor], weights: Tensor, example: Tensor,
                  examples: int) -> TokenScores:
    logprobs, complements, correct = values
    signed = bool((weights < 0).any())
    return TokenScores(logprobs=logprobs, correct=correct, weights=weights.to(logprobs.dtype), example=example,
                       examples=examples, complements=complements if signed else None)


def token_logprobs(model: Any, batch: Mapping[str, Any], *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> TokenScores:
    """Run ``model`` on a token batch and score its trained tokens (see the module docstring).

    Only the trained tokens go through the output layer, ``chunk_size`` at a time, each chunk's logits
    recomputed in the backward pass (:mod:`misstep.training.output_layer`; Liger's fused kernel on a GPU
    when it is installed): the logits of the whole batch never exist. ``chunk_size=0``, and models whose
    output layer cannot be run apart from them (``output_layer.output_layer``), have the model compute the
    logits of the columns that predict a trained token, all at once (more memory).
    """
    labels = batch["labels"]
    targets = labels[:, 1:]
    trained = targets != IGNORE_INDEX
    wanted = targets[trained]
    weights = batch["weights"][:, 1:][trained]
    owner = batch["example_index"][:, 1:][trained]
    negative = weights < 0
    head = output_layer(model) if chunk_size > 0 else None
    if head is None:
        columns = trained_columns(labels)
        logits = model(**model_inputs(batch), logits_to_keep=columns).logits
        keep = trained[:, columns]
        values = scores(logits[keep], targets[:, columns][keep], negative)
    else:
        hidden, autocast = run_hidden(model, model_inputs(batch), head)
        values = head_scores(head, hidden[:, :-1][trained], wanted, negative, chunk_size, autocast)
    return _token_scores(values, weights, owner, len(batch["examples"]))


def aligned_cross_entropy(logits: Tensor, targets: Tensor, weights: Tensor,
                          total: Any = None) -> tuple[Tensor, dict[str, float]]:
    """Token-weighted cross-entropy ``sum(weight * CE) / total`` where ``logits[:, i]`` predicts
    ``targets[:, i]``, and its metrics. ``total`` defaults to the number of trained targets (negative
    weights are unlikelihood terms, as in :meth:`TokenScores.losses`)."""
    scored = score_logits(logits, targets, weights)
    return scored.nll(total), scored.metrics()
