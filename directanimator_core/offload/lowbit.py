"""Weights stored in 8-bit floats, upcast one layer at a time at compute time.

fp8 storage halves the bytes of bf16, both in memory and over the bus when blocks stream. Two forms:
- plain fp8: the weight cast to ``float8_e4m3fn`` (or ``float8_e5m2``);
- scaled fp8: ``weight ≈ q · scale_weight`` with one fp32 scale per tensor, chosen so the largest
  magnitude maps to the format's largest finite value (ComfyUI's "scaled fp8" checkpoints use the
  same ``scale_weight`` key and convention, so they load with no renames).

Only Linear weights are stored low-bit; biases and the model's ``_keep_in_fp32_modules`` keep their
precision. The layer is the backbone's own CastLinear (models/layers.py), which upcasts its weight per
call on whatever device it is on, so a streamed block crosses the bus in fp8 and only one layer's
upcast copy exists at a time. This module only converts weights into that form (quantize_fp8).
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import InputError
from ..models.layers import CastLinear
from . import policy
from .plan import stores_low_bit

log = logging.getLogger(__name__)


def quantize_fp8(weight: torch.Tensor, dtype: torch.dtype = torch.float8_e4m3fn,
                 scaled: bool = True) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(q, scale)`` with ``q`` in ``dtype`` and ``weight ≈ q · scale``; scale is None when not scaled.

    Args:
        weight: the full-precision tensor.
        dtype: an fp8 dtype (policy.fp8_dtypes()).
        scaled: pick a per-tensor fp32 scale so the largest magnitude uses the whole fp8 range;
            without it values beyond the format's range saturate at its largest finite value.
    """
    _check_fp8(dtype)
    limit = torch.finfo(dtype).max
    scale = None
    source = weight.float()
    if scaled:
        amax = source.abs().max()
        scale = torch.where(amax > 0, amax / limit, torch.ones_like(amax)).reshape(())  # ()
        source = source / scale
    return source.clamp(-limit, limit).to(dtype), scale


def store_low_bit(module: nn.Module, dtype: torch.dtype = torch.float8_e4m3fn, scaled: bool = True,
                  keep: Sequence[str] = ()) -> int:
    """Store every nn.Linear weight inside ``module`` in ``dtype``; returns how many layers changed.

    The layers become (or stay) models.layers.CastLinear, the backbone's own upcast-per-call Linear,
    whose ``scale_weight`` buffer carries the per-tensor scale; a layer already stored in ``dtype``
    is left alone.

    Args:
        module: the model or a block; changed in place.
        dtype: an fp8 dtype.
        scaled: store a per-tensor scale for each weight.
        keep: name parts of layers to leave as they are (the model's ``_keep_in_fp32_modules``).
    """
    _check_fp8(dtype)
    targets = [(name, child) for name, child in module.named_modules()
               if stores_low_bit(name, child, keep) and child.weight.dtype != dtype]
    for name, linear in targets:
        layer = linear if isinstance(linear, CastLinear) else _swap_in_cast_linear(module, name, linear)
        with torch.no_grad():
            q, scale = quantize_fp8(layer.compute_weight(torch.float32), dtype, scaled)
        layer.weight = nn.Parameter(q, requires_grad=False)
        layer.scale_weight = scale
    log.info("stored %d linear layers of %s in %s%s", len(targets), type(module).__name__, dtype,
             " (scaled)" if scaled else "")
    return len(targets)


def _swap_in_cast_linear(root: nn.Module, name: str, linear: nn.Linear) -> CastLinear:
    layer = CastLinear(linear.in_features, linear.out_features, bias=False, device="meta")
    layer.weight, layer.bias = linear.weight, linear.bias
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, attr, layer)
    return layer


def _check_fp8(dtype: torch.dtype) -> None:
    if dtype not in policy.fp8_dtypes():
        names = ", ".join(str(d) for d in policy.fp8_dtypes()) or "none in this torch build"
        raise InputError(f"storage dtype {dtype} is not an fp8 type: use one of {names}.")
