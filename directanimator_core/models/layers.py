"""Layers whose stored dtype may differ from the compute dtype: upcast per call, fp32 norms.

A checkpoint's weights stay in the dtype they were stored in (fp32, bf16, fp16, fp8 e4m3fn / e5m2);
each layer casts its own weight to the input's dtype when it runs, so an fp8 model holds fp8 bytes and
only one layer's upcast copy exists at a time. ComfyUI's "scaled fp8" keeps one fp32 ``scale_weight``
per Linear (``weight ≈ stored · scale_weight``, comfy/ops.py ``scaled_fp8_op``); CastLinear applies it.
Parameter and buffer names are nn.Linear's plus ``scale_weight``, so checkpoint keys load unchanged.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class CastLinear(nn.Linear):
    """nn.Linear that computes in its input's dtype whatever its weight's stored dtype.

    Forward: x (..., in) -> (..., out), same dtype as x. ``scale_weight`` (a 0-d fp32 tensor or None)
    multiplies the upcast weight.
    """

    scale_weight: Optional[torch.Tensor]

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.register_buffer("scale_weight", None)

    def compute_weight(self, dtype: torch.dtype) -> torch.Tensor:
        """The weight in ``dtype``, scaled when the checkpoint stored a ``scale_weight``."""
        weight = self.weight.to(dtype)
        if self.scale_weight is not None:
            weight = weight * self.scale_weight.to(device=weight.device, dtype=dtype)
        return weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.compute_weight(x.dtype), bias)


class CastConv3d(nn.Conv3d):
    """nn.Conv3d computing in its input's dtype (the patch embeddings; Wan runs them in fp32)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return self._conv_forward(x, self.weight.to(x.dtype), bias)


class FP32LayerNorm(nn.LayerNorm):
    """LayerNorm computed in fp32 whatever the input dtype (Wan's ``WanLayerNorm``); returns fp32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps)


class RMSNorm(nn.Module):
    """Wan's q/k RMS norm over the whole width (all heads), fp32 inside, input dtype out."""

    def __init__(self, dim: int, eps: float = 1e-6, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.rms_norm(x.float(), (x.shape[-1],), self.weight.float(), self.eps)
        return normed.to(x.dtype)


# -- adaLN helpers (per-frame tables over (t h w)-ordered tokens) -------------------------------------

def per_token(table: torch.Tensor, length: int) -> torch.Tensor:
    """A per-frame table (B, T_e, D) stretched over tokens (B, L, D) in (t h w) order; T_e = 1 broadcasts."""
    frames = table.shape[1]
    return table if frames == 1 else table.repeat_interleave(length // frames, dim=1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x · (1 + scale) + shift, x (B, L, D), shift / scale (B, T_e, D)."""
    return torch.addcmul(per_token(shift, x.shape[1]), x, 1 + per_token(scale, x.shape[1]))
