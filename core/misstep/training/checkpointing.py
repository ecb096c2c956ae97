"""Gradient checkpointing of the decoder layers: everything recomputed, or only the cheap operations.

transformers' gradient checkpointing keeps each decoder layer's input and recomputes the whole layer
in the backward pass (``full``): the least memory, at the cost of a second forward pass (about a third
more compute). ``selective`` keeps the outputs of the matrix products and of attention, and recomputes
only the element-wise operations between them (norms, activation functions, rotary embeddings,
products and sums) with torch's selective activation checkpointing: a little extra compute for about
half of the activations, the element-wise ones.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

Checkpointing = Literal["selective", "full"]

SAVED = ("mm", "addmm", "bmm", "baddbmm", "_scaled_dot_product_flash_attention_for_cpu",
         "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
         "_scaled_dot_product_cudnn_attention", "_flash_attention_forward", "_efficient_attention_forward")
"""aten operators whose outputs ``selective`` checkpointing keeps (matrix products and attention kernels)."""


def _policy(saved: frozenset[Any], ctx: Any, op: Any, *args: Any, **kwargs: Any) -> Any:
    from torch.utils.checkpoint import CheckpointPolicy

    return CheckpointPolicy.MUST_SAVE if op in saved else CheckpointPolicy.PREFER_RECOMPUTE


def checkpoint_arguments(mode: Checkpointing) -> dict[str, Any]:
    """Keyword arguments of ``torch.utils.checkpoint.checkpoint`` for ``mode`` (non-reentrant, which works with
    LoRA's frozen weights and with DDP)."""
    if mode == "full":
        return {"use_reentrant": False}
    import torch
    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    saved = frozenset(getattr(torch.ops.aten, name).default for name in SAVED if hasattr(torch.ops.aten, name))
    return {"use_reentrant": False,
            "context_fn": functools.partial(create_selective_checkpoint_contexts, functools.partial(_policy, saved))}


def enable(model: Any, mode: Checkpointing) -> None:
    """Turn gradient checkpointing of ``model``'s decoder layers on (a transformers or PEFT model)."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 renamed it
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=checkpoint_arguments(mode))
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=checkpoint_arguments(mode))


def enabled(model: Any) -> bool:
    """Whether ``model`` (a transformers or PEFT model) has gradient checkpointing on."""
    value = getattr(model, "is_activation_checkpointing", None)  # transformers 5; 4 below
    return bool(getattr(model, "is_gradient_checkpointing", False) if value is None else value)
