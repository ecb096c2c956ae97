"""Attention of padded and packed rows under sdpa: no dense mask per layer, and on a CPU none for packed rows.

Packed rows need a mask that keeps each example's tokens to themselves, and padded rows one that hides
the padding. Flash attention takes the examples' boundaries instead (``cu_seq_lens_q/k``, which packed
batches carry) and flex attention a sparse block mask: no dense mask at all. For sdpa, transformers
builds a dense boolean ``[rows, 1, width, width]`` mask once per forward pass, but torch's
``scaled_dot_product_attention`` turns a boolean mask into a float one in every call, and autograd keeps
every layer's copy for the backward pass: 4 bytes per entry per layer (30 layers: 120 bytes per entry).
A float mask is used as it is, and kept once.

:func:`share_float_masks` switches a model that uses sdpa to the implementation ``misstep_sdpa``: the
same attention function, with the mask transformers builds (padding, packing, sliding windows) turned
into floats once, in the dtype the attention computes in (bf16 under bf16 autocast). Without padding
or packing there is still no mask at all (causal attention).

On a CPU, ``misstep_sdpa`` attends packed rows (a forward pass given ``cu_seq_lens_q``) one sequence at a
time, causally, as flash attention does on a GPU (:func:`packed_sdpa`), and no mask is built for them:
under a mask, torch's CPU kernel computes every entry of a row's ``width x width`` scores, masked or not,
with keys and values repeated for every query head; per sequence it computes the causal half of each
sequence's own scores, with grouped keys as they are. A row then costs only its tokens, so the engine
packs each batch into one row there (:func:`attends_per_sequence`): no padding at all. On a GPU, where
each call is a kernel launch, and for models with a sliding window (:func:`has_sliding_window`), packed
rows keep the mask.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

IMPLEMENTATION = "misstep_sdpa"

_per_sequence: ContextVar[bool] = ContextVar("misstep_per_sequence", default=False)
"""True during the forward pass of a model that attends its packed rows one sequence at a time."""


def float_sdpa_mask(*args: Any, dtype: Any = None, **kwargs: Any) -> Any:
    """transformers' sdpa mask as an additive float mask (0 where attended, the dtype's minimum elsewhere);
    None for packed rows attended one sequence at a time."""
    import torch
    from transformers.masking_utils import sdpa_mask

    if _per_sequence.get():
        return None
    mask = sdpa_mask(*args, **kwargs)
    if mask is None:
        return None
    device = mask.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    dtype = dtype or torch.float32
    return torch.where(mask, torch.zeros((), dtype=dtype, device=mask.device), torch.finfo(dtype).min)


def packed_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any) -> tuple[Any, None]:
    """transformers' sdpa attention (``[rows, heads, width, head size]`` in, ``[rows, width, heads, head size]``
    out); on a CPU, packed rows (``cu_seq_lens_q``: where each sequence starts in the flattened rows) are
    attended one sequence at a time, causally, unless the model has a sliding window."""
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    bounds = kwargs.pop("cu_seq_lens_q", None)
    sliding = has_sliding_window(getattr(module, "config", None))
    if bounds is None or query.device.type != "cpu" or query.shape[2] != key.shape[2] or sliding:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    rows, heads, width, size = query.shape

    def flat(states: Any) -> Any:  # [rows, heads, width, size] -> [1, heads, rows * width, size]
        return states.transpose(1, 2).reshape(1, rows * width, states.shape[1], size).transpose(1, 2)

    query, key, value = flat(query), flat(key), flat(value)
    edges = bounds.tolist()
    parts = [sdpa_attention_forward(module, query[:, :, start:end], key[:, :, start:end], value[:, :, start:end],
                                    None, **kwargs)[0] for start, end in zip(edges, edges[1:])]
    return torch.cat(parts, dim=1).view(rows, width, heads, size), None


def has_sliding_window(config: Any) -> bool:
    """Whether a model with ``config`` restricts some layers' attention to a sliding window (Mistral, Gemma 2/3,
    Qwen2 with ``use_sliding_window``): per-sequence sdpa calls without a mask would not."""
    if config is None:
        return False
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if "sliding_attention" in (getattr(text, "layer_types", None) or ()):
        return True
    return getattr(text, "sliding_window", None) is not None and getattr(text, "use_sliding_window", None) is not False


def attends_per_sequence(model: Any, device: Any) -> bool:
    """Whether ``model`` attends packed rows one sequence at a time on ``device`` (sdpa, or misstep's, on a CPU,
    without a sliding window)."""
    config = getattr(model, "config", None)
    implementation = getattr(config, "_attn_implementation", None)
    return (getattr(device, "type", device) == "cpu" and implementation in ("sdpa", IMPLEMENTATION)
            and not has_sliding_window(config))


def _enter(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    tokens = kwargs.get("input_ids", kwargs.get("inputs_embeds"))
    _per_sequence.set(kwargs.get("cu_seq_lens_q") is not None and tokens is not None and tokens.device.type == "cpu")


def _leave(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> None:
    _per_sequence.set(False)


def share_float_masks(model: Any) -> bool:
    """Have ``model`` (a transformers model, or one wrapped by PEFT) build float sdpa masks, and attend packed
    rows one sequence at a time on a CPU, if it uses sdpa; returns whether it does. Its saved config is
    unchanged."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(IMPLEMENTATION, packed_sdpa)
    AttentionMaskInterface.register(IMPLEMENTATION, float_sdpa_mask)
    model.set_attn_implementation(IMPLEMENTATION)
    if not has_sliding_window(config):  # a sliding window needs the mask: packed rows keep it
        model.register_forward_pre_hook(_enter, with_kwargs=True)
        model.register_forward_hook(_leave, with_kwargs=True, always_call=True)
    return True
