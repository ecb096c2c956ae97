"""The output layer and the cross-entropy of trained tokens, without the logits of the whole batch.

With a large vocabulary the logits and their gradient are most of a training step's memory: the
logits of ``n`` tokens take ``n x vocabulary`` floats, several times over (softmax, gradient, bf16
copies). :func:`run_hidden` runs the model so that its output layer computes almost nothing and
returns the final hidden states of the tokens to score; :func:`head_scores` then sends them through
the output layer ``chunk_size`` tokens at a time, each chunk in ``torch.utils.checkpoint``: the
forward pass keeps only each token's log-probability, and the backward pass recomputes one chunk's
logits at a time. Peak memory for the loss is one chunk's logits (a few ``chunk_size x vocabulary``
float32 tensors) instead of the whole batch's.

On a GPU, when ``liger-kernel`` (0.8.2 or newer, ``pip install 'misstep[liger]'``) is installed and
the output layer is a plain ``torch.nn.Linear``, Liger's fused linear cross-entropy does the same in
Triton kernels (:func:`liger_cross_entropy`); a LoRA-wrapped or DeepSpeed-partitioned output layer,
a CPU, an older or missing Liger, and batches with negative weights (unlikelihood, which Liger does
not compute) use the chunked path. Where the output layer cannot be run apart from the model (it
changes its logits afterwards, or DeepSpeed ZeRO-3 partitions its weights: :func:`output_layer`), the
model computes the logits of the columns that predict trained tokens itself, all at once.

Each token gets ``log p(token)``, whether it was the model's top choice, and, where it is asked for
(tokens of negative weight), ``log(1 - p(token))``: the log-sum-exp of the logits without the
token minus the log-sum-exp of all of them, which stays finite when ``p`` is close to 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import metadata
from typing import TYPE_CHECKING, Any

from misstep.errors import MisstepError

if TYPE_CHECKING:
    from torch import Tensor
    from torch.nn import Module

DEFAULT_CHUNK_SIZE = 256
"""Trained tokens per chunk of the output layer: with a 49k vocabulary a chunk's float32 logits take 50 MB."""

LIGER_VERSION = (0, 8, 2)
"""The first liger-kernel whose fused linear cross-entropy returns per-token losses with their gradient."""

LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling")
"""Config settings with which a model changes its logits after the output layer (Gemma 2/3, Cohere, Granite)."""

Scores = tuple["Tensor", "Tensor", "Tensor"]  # log p(token), log(1 - p(token)) where asked (else 0), top choice


def scores(logits: Tensor, targets: Tensor, negative: Tensor) -> Scores:
    """Each row's log-probability of its target, ``log(1 - p)`` where ``negative`` (0 elsewhere), and whether
    the target is the row's top choice; computed in float32."""
    import torch

    logits = logits.float()
    total = logits.logsumexp(-1)
    logprobs = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - total
    correct = logits.detach().argmax(-1) == targets
    complements = torch.zeros_like(logprobs)
    if negative.any():
        rows = negative.nonzero().squeeze(1)
        others = logits[rows].scatter(-1, targets[rows].unsqueeze(-1), float("-inf")).logsumexp(-1)
        complements = complements.index_put((rows,), others - total[rows])
    return logprobs, complements, correct


def _head_scores(head: Module, hidden: Tensor, targets: Tensor, negative: Tensor) -> Scores:
    return scores(head(hidden), targets, negative)


def head_scores(head: Module, hidden: Tensor, targets: Tensor, negative: Tensor, chunk_size: int,
                autocast: Any = None) -> Scores:
    """:func:`scores` of ``head(hidden)`` (hidden states ``[tokens, hidden size]``), ``chunk_size`` tokens at a
    time, recomputing each chunk's logits in the backward pass; under ``autocast`` (a dtype, as in the model's
    forward pass) when given. Liger's kernel does it where it can."""
    import contextlib

    import torch
    from torch.utils.checkpoint import checkpoint

    device = hidden.device.type
    with torch.autocast(device, dtype=autocast) if autocast is not None else contextlib.nullcontext():
        fused = liger_cross_entropy(head, hidden)
        if fused is not None and not negative.any():
            output = fused(hidden, head.weight, targets, getattr(head, "bias", None), reduction="none",
                           return_predicted_tokens=True)
            logprobs = -output.loss
            return logprobs, torch.zeros_like(logprobs), output.predicted_tokens == targets
        parts = [checkpoint(_head_scores, head, hidden[start:start + chunk_size], targets[start:start + chunk_size],
                            negative[start:start + chunk_size], use_reentrant=False)
                 for start in range(0, max(len(hidden), 1), chunk_size)]  # one chunk at least: a graph for 0 tokens
    logprobs, complements, correct = (torch.cat(values) for values in zip(*parts))
    return logprobs, complements, correct


def liger_cross_entropy(head: Module, hidden: Tensor) -> Callable[..., Any] | None:
    """Liger's ``liger_fused_linear_cross_entropy`` when it can replace the chunked path: on a GPU, for a plain
    ``torch.nn.Linear`` output layer (not one wrapped by LoRA), with liger-kernel 0.8.2 or newer installed."""
    import torch

    if hidden.device.type != "cuda" or type(head) is not torch.nn.Linear:
        return None
    try:
        version = tuple(int(part) for part in metadata.version("liger-kernel").split(".")[:3])
        from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy
    except (ImportError, metadata.PackageNotFoundError, ValueError):
        return None
    return liger_fused_linear_cross_entropy if version >= LIGER_VERSION else None


def output_layer(model: Any) -> Module | None:
    """The model's output layer (through DDP/DeepSpeed wrappers and PEFT) when it can be run apart from the
    model, else None: a model that changes its logits after it (:data:`LOGIT_TRANSFORMS`), or an output layer
    whose weights DeepSpeed ZeRO-3 partitions (each call gathers them, a collective that every rank would have
    to make as often as the others, whatever their number of trained tokens)."""
    while hasattr(model, "module"):  # torch DDP, DeepSpeed engines
        model = model.module
    config = getattr(model, "config", None)
    if config is not None:
        text = config.get_text_config() if hasattr(config, "get_text_config") else config
        if any(getattr(text, name, None) not in (None, 1.0) for name in LOGIT_TRANSFORMS):
            return None
    get = getattr(model, "get_output_embeddings", None)
    head = get() if callable(get) else None
    if head is None or any(hasattr(parameter, "ds_id") for parameter in head.parameters()):
        return None
    return head


def run_hidden(model: Any, inputs: Mapping[str, Any], head: Module) -> tuple[Tensor, Any]:
    """Run ``model`` with ``inputs``; return the input of its output layer ``head`` (the final hidden states,
    ``[rows, width, hidden size]``) and the autocast dtype the forward pass ran under (None: none).

    The output layer itself only computes the logits of the first column, which are checked against ``head``
    to be sure that the model does nothing to its logits after the output layer."""
    import contextlib

    import torch

    captured: list[tuple[Tensor, Any]] = []

    def capture(module: Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        device = args[0].device.type
        captured.append((args[0], torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else None))
        return (args[0][:, :1], *args[1:])

    handle = head.register_forward_pre_hook(capture)
    try:
        logits = model(**inputs).logits
    finally:
        handle.remove()
    if len(captured) != 1 or captured[0][0].dim() != 3:
        raise MisstepError(f"the model called its output layer {len(captured)} times (or not on hidden states of "
                           "[rows, width, hidden size]): misstep cannot compute its loss in chunks; set the loss's "
                           "`chunk_size: 0`")
    hidden, autocast = captured[0]
    with torch.no_grad(), (torch.autocast(hidden.device.type, dtype=autocast) if autocast is not None
                           else contextlib.nullcontext()):
        expected = head(hidden[:, :1]).to(logits.dtype)
    if not torch.allclose(expected, logits, rtol=1e-3, atol=1e-3):
        raise MisstepError("the model changes its logits after the output layer, so misstep cannot compute its "
                           "loss in chunks; set the loss's `chunk_size: 0`")
    return hidden, autocast
