"""Weights stored in 8-bit floats, upcast one layer at a time at compute time.

fp8 storage halves the bytes of bf16, both in memory and over the bus when blocks stream. Two forms:
- plain fp8: the weight cast to ``float8_e4m3fn`` (or ``float8_e5m2``);
- scaled fp8: ``weight ≈ q · scale_weight`` with one fp32 scale per tensor, chosen so the largest
  magnitude maps to the format's largest finite value (ComfyUI's "scaled fp8" checkpoints use the
  same ``scale_weight`` key and convention, so they load with no renames).

Only weight matrices are stored low-bit; biases and the model's ``_keep_in_fp32_modules`` keep their
precision. The upcast happens inside LowBitLinear.forward, on whatever device the layer is on, so a
streamed block crosses the bus in fp8 and only one layer's upcast copy exists at a time.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
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


def dequantize_fp8(q: torch.Tensor, scale: Optional[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
    """``q · scale`` in ``dtype`` (the compute dtype), the upcast LowBitLinear does per call.

    Args:
        q: fp8 tensor.
        scale: per-tensor fp32 scale, or None for plain fp8.
        dtype: compute dtype of the result.
    """
    weight = q.to(dtype)
    return weight if scale is None else weight.mul_(scale.to(device=weight.device, dtype=dtype))


class LowBitLinear(nn.Linear):
    """nn.Linear with an fp8 ``weight`` (and, when scaled, an fp32 ``scale_weight``), upcast per call.

    Keeps nn.Linear's parameter names, so checkpoint keys are unchanged. Forward: input (..., in) in
    the compute dtype -> output (..., out) in the same dtype.
    """

    scale_weight: Optional[torch.Tensor]

    @classmethod
    def from_linear(cls, linear: nn.Linear, dtype: torch.dtype = torch.float8_e4m3fn,
                    scaled: bool = True) -> "LowBitLinear":
        """A LowBitLinear holding ``linear``'s weight quantised to ``dtype`` (the bias is kept as is).

        Args:
            linear: the layer to convert (its weight may already be in ``dtype``).
            dtype: an fp8 dtype.
            scaled: store a per-tensor scale (quantize_fp8).
        """
        layer = cls(linear.in_features, linear.out_features, bias=False, device="meta")
        if linear.weight.dtype == dtype:
            q, scale = linear.weight.data, None  # already stored low-bit (a plain fp8 checkpoint)
        else:
            q, scale = quantize_fp8(linear.weight.data, dtype, scaled)
        layer.weight = nn.Parameter(q, requires_grad=False)
        layer.bias = linear.bias
        layer.register_buffer("scale_weight", scale)
        return layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = dequantize_fp8(self.weight, self.scale_weight, x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, weight, bias)


def store_low_bit(module: nn.Module, dtype: torch.dtype = torch.float8_e4m3fn, scaled: bool = True,
                  keep: Sequence[str] = ()) -> int:
    """Replace every nn.Linear inside ``module`` by a LowBitLinear in ``dtype``; returns how many.

    Args:
        module: the model or a block; changed in place.
        dtype: an fp8 dtype.
        scaled: store a per-tensor scale for each weight.
        keep: name parts of layers to leave in full precision (the model's ``_keep_in_fp32_modules``).
    """
    _check_fp8(dtype)
    targets = [(name, child) for name, child in module.named_modules()
               if stores_low_bit(name, child, keep) and not isinstance(child, LowBitLinear)]
    for name, linear in targets:
        parent_name, _, attr = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, attr, LowBitLinear.from_linear(linear, dtype, scaled))
    log.info("stored %d linear layers of %s in %s%s", len(targets), type(module).__name__, dtype,
             " (scaled)" if scaled else "")
    return len(targets)


def _check_fp8(dtype: torch.dtype) -> None:
    if dtype not in policy.fp8_dtypes():
        names = ", ".join(str(d) for d in policy.fp8_dtypes()) or "none in this torch build"
        raise InputError(f"storage dtype {dtype} is not an fp8 type: use one of {names}.")
