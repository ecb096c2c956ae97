"""Which precision to train and generate in: ``auto`` picks bf16 where the hardware does it natively.

On a GPU that supports bf16, and on a CPU with native bf16 instructions (AVX512-BF16 or AMX), ``auto``
means bf16: training with bf16 autocast over float32 master weights, generation with bf16 weights.
Elsewhere it means float32, because bf16 arithmetic emulated on an older CPU is many times slower than
float32. Every choice comes with the reason, for the run log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from misstep.errors import MisstepError

Precision = Literal["bf16", "fp16", "fp32"]


@dataclass(frozen=True)
class Choice:
    """A precision and why it was chosen."""

    precision: Precision
    reason: str

    @property
    def dtype_name(self) -> str:
        """The torch dtype name of model weights for generation in this precision."""
        return {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}[self.precision]

    def __str__(self) -> str:
        return f"{self.precision} ({self.reason})"


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 natively (AVX512-BF16 or AMX tiles), per torch's CPU checks."""
    import torch

    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def choose(requested: str, *, cuda: bool) -> Choice:
    """The precision for ``requested`` (``auto``, ``bf16``, ``fp16``, ``fp32``) on this machine.

    ``bf16`` on a CPU without native support is allowed (correct, but slow: the reason says so);
    ``fp16`` needs a GPU.
    """
    import torch

    if requested == "fp32":
        return Choice("fp32", "asked for")
    if requested == "fp16":
        if not cuda:
            raise MisstepError("precision fp16 needs a GPU; on CPU use `precision: bf16`, `fp32` or `auto`")
        return Choice("fp16", "asked for")
    if cuda:
        supported = torch.cuda.is_bf16_supported()
        if requested == "bf16":
            if not supported:
                raise MisstepError("precision bf16: this GPU does not support bf16; use `precision: fp16` or `fp32`")
            return Choice("bf16", "asked for")
        if requested != "auto":
            raise MisstepError(f"unknown precision {requested!r}; choose auto, bf16, fp16 or fp32")
        if supported:
            return Choice("bf16", "auto: the GPU supports bf16")
        return Choice("fp32", "auto: the GPU has no bf16")
    native = cpu_has_bf16()
    if requested == "bf16":
        return Choice("bf16", "asked for" if native else "asked for; this CPU emulates bf16 (slow)")
    if requested != "auto":
        raise MisstepError(f"unknown precision {requested!r}; choose auto, bf16, fp16 or fp32")
    if native:
        return Choice("bf16", "auto: the CPU has native bf16 (AVX512-BF16/AMX)")
    return Choice("fp32", "auto: the CPU has no native bf16 (AVX512-BF16/AMX), where float32 is faster")


def from_dtype(dtype: str) -> str:
    """A model spec's ``dtype`` (auto, bfloat16, float16, float32) as a precision request."""
    return {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}.get(dtype, "auto")
