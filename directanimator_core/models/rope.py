"""Wan's 3D rotary position embedding: the head width split into time, height and width parts.

For head width d (c = d / 2 rotation pairs) the pairs split as [c - 2(c//3), c//3, c//3] over
(t, h, w), each axis with frequencies theta^(-2i / d_axis) (Wan's ``rope_params`` / ``rope_apply``;
ComfyUI's ``EmbedND`` with axes_dim [d - 4(d//6), 2(d//6), 2(d//6)] is the same table). Pairs are
adjacent channels (2i, 2i+1), rotated as complex numbers. Computed in float64, applied in fp32.
"""

from __future__ import annotations

import torch


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """Channels per axis (t, h, w) of a head of width ``head_dim``."""
    pairs = head_dim // 2
    return (2 * (pairs - 2 * (pairs // 3)), 2 * (pairs // 3), 2 * (pairs // 3))


def _axis_angles(positions: torch.Tensor, channels: int, theta: float) -> torch.Tensor:
    omega = theta ** -(torch.arange(0, channels, 2, dtype=torch.float64) / channels)  # (channels / 2,)
    return positions.to(torch.float64)[:, None] * omega[None]  # (N, channels / 2)


def rope_table(grid: tuple[int, int, int], head_dim: int, theta: float = 10000.0,
               device: torch.device | None = None) -> torch.Tensor:
    """cos / sin of every token's rotation angles, tokens in (t h w) order.

    Args:
        grid: token grid (T, H, W) after patchify.
        head_dim: attention head width.
        theta: RoPE base.
        device: where the table goes.

    Returns:
        (L, d / 2, 2) fp32: [..., 0] cos, [..., 1] sin, L = T·H·W.
    """
    t, h, w = grid
    axes = rope_axes(head_dim)
    angles = [_axis_angles(torch.arange(n), c, theta) for n, c in zip(grid, axes)]
    full = torch.cat([
        angles[0][:, None, None].expand(t, h, w, -1),
        angles[1][None, :, None].expand(t, h, w, -1),
        angles[2][None, None, :].expand(t, h, w, -1),
    ], dim=-1).reshape(t * h * w, -1)  # (L, d / 2)
    return torch.stack([full.cos(), full.sin()], dim=-1).to(device=device, dtype=torch.float32)


def apply_rope(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Rotate adjacent channel pairs of ``x`` (B, L, heads, d) by ``table`` (L, d/2, 2); dtype of x out."""
    pairs = x.float().unflatten(-1, (-1, 2))  # (B, L, heads, d/2, 2)
    real, imag = pairs[..., 0], pairs[..., 1]
    cos, sin = table[None, :, None, :, 0], table[None, :, None, :, 1]
    rotated = torch.stack([real * cos - imag * sin, real * sin + imag * cos], dim=-1)
    return rotated.flatten(-2).to(x.dtype)
