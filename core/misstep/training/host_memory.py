"""CPU training with gradient checkpointing without the C heap's holes in its peak memory.

On a CPU PyTorch allocates tensors with the C library's ``malloc``. glibc serves blocks below its mmap
threshold (which rises to the largest block freed so far, up to 32 MiB) from its heap and keeps what is
freed there; a step's activations and gradients, freed and allocated again among longer-lived tensors,
leave holes that stay resident. With gradient checkpointing, where the live tensors are few, the holes
were a third of the peak (SmolLM2-135M, full fine-tuning, docs/training.md#memory). There the engine:

- zeroes the gradients in place for the next step (:func:`reuse_gradients`) instead of letting the
  Trainer free them and the next backward pass allocate them again among its activations;
- hands the heap's free pages back to the operating system (:func:`release`, glibc's ``malloc_trim``)
  before the forward pass, before the backward pass and after it.

Neither changes what is computed. Without checkpointing both cost more than they save: the peak is then
at the start of the backward pass, when every activation is live and the gradients are not yet
allocated, and pages handed back are faulted in again by the next forward pass (measured: 2% less
memory for 16% fewer tokens/s with both, 6% more memory with reused gradients alone). On a GPU
PyTorch's caching allocator reuses its blocks; neither applies.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import Any


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, Windows, musl)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None)
    except OSError:
        return None


def release() -> None:
    """Give the C heap's free pages back to the operating system (a no-op without glibc)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def reuse_gradients(model: Any) -> Any:
    """A TrainerCallback that gives every trainable parameter of ``model`` its previous step's gradient
    tensor back, zeroed, at the start of each optimizer step, after the Trainer's ``zero_grad`` freed it;
    the backward pass then accumulates into it as into a fresh one."""
    from transformers import TrainerCallback

    parameters = [p for p in model.parameters() if p.requires_grad]

    class ReuseGradients(TrainerCallback):
        def __init__(self) -> None:
            self.kept: list[Any] = []

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.kept = [p.grad for p in parameters]

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            for parameter, gradient in zip(parameters, self.kept):
                if gradient is not None and parameter.grad is None:
                    parameter.grad = gradient.zero_()
            self.kept = []

    return ReuseGradients()
