"""The attention mask of padded and packed rows under sdpa: built once per batch, as floats, shared by every layer.

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
"""

from __future__ import annotations

from typing import Any

IMPLEMENTATION = "misstep_sdpa"


def float_sdpa_mask(*args: Any, dtype: Any = None, **kwargs: Any) -> Any:
    """transformers' sdpa mask as an additive float mask (0 where attended, the dtype's minimum elsewhere)."""
    import torch
    from transformers.masking_utils import sdpa_mask

    mask = sdpa_mask(*args, **kwargs)
    if mask is None:
        return None
    device = mask.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
    dtype = dtype or torch.float32
    return torch.where(mask, torch.zeros((), dtype=dtype, device=mask.device), torch.finfo(dtype).min)


def share_float_masks(model: Any) -> bool:
    """Have ``model`` (a transformers model, or one wrapped by PEFT) build float sdpa masks if it uses sdpa;
    returns whether it does. Its saved config is unchanged."""
    config = getattr(model, "config", None)
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    AttentionInterface.register(IMPLEMENTATION, ALL_ATTENTION_FUNCTIONS["sdpa"])
    AttentionMaskInterface.register(IMPLEMENTATION, float_sdpa_mask)
    model.set_attn_implementation(IMPLEMENTATION)
    return True
