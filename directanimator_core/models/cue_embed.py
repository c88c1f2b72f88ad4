"""Patch embedders for the pose and face cue latents, each with its location mask (PAPER.md §2.3).

A cue latent (B, C, T, H, W) from the frozen VAE is concatenated in channels with its location mask at
latent resolution (B, M, T, H, W) and patch-embedded on the video latent's own patch grid, so each cue
token lines up with one video token and can be added to it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..errors import InputError
from .layers import CastConv3d

WAN_TIME_STRIDE = 4  # pixel frames per latent frame (the first latent frame holds one pixel frame)
WAN_SPACE_STRIDE = 8


class CuePatchEmbed(nn.Module):
    """Conv3d with kernel = stride = the backbone's patch, run in fp32 like Wan's patch embedding."""

    def __init__(self, cue_channels: int, mask_channels: int, dim: int, patch_size: tuple[int, int, int]) -> None:
        super().__init__()
        self.proj = CastConv3d(cue_channels + mask_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """latent (B, C, T, H, W), mask (B, M, T, H, W) -> tokens (B, L, D) fp32 in (t h w) order."""
        tokens = self.proj(torch.cat([latent, mask.to(latent.dtype)], dim=1).float())  # (B, D, T', H', W')
        return rearrange(tokens, "b d t h w -> b (t h w) d")


def pack_mask(mask: torch.Tensor, time_stride: int = WAN_TIME_STRIDE, space_stride: int = WAN_SPACE_STRIDE) -> torch.Tensor:
    """A pixel-rate location mask -> latent resolution, the way Wan packs its image-to-video mask.

    Space: area average over ``space_stride`` pixels (soft edges survive). Time: the first frame is
    repeated ``time_stride`` times, then every ``time_stride`` frames become the channels of one latent
    frame, matching the causal VAE (F = 4(T - 1) + 1 pixel frames -> T latent frames).

    Args:
        mask: (B, F, H, W) or (B, 1, F, H, W) in [0, 1].
        time_stride: pixel frames per latent frame.
        space_stride: pixels per latent pixel.

    Returns:
        (B, time_stride, T, H / space_stride, W / space_stride).
    """
    if mask.ndim == 5:
        mask = mask[:, 0]
    b, frames, h, w = mask.shape
    if (frames - 1) % time_stride or h % space_stride or w % space_stride:
        raise InputError(f"mask of {frames} frames at {h}x{w} does not map onto the latent grid: use "
                         f"{time_stride}k + 1 frames and sides that are multiples of {space_stride}")
    small = F.avg_pool2d(mask.float().reshape(b * frames, 1, h, w), space_stride).reshape(b, frames, h // space_stride, -1)
    padded = torch.cat([small[:, :1].expand(-1, time_stride - 1, -1, -1), small], dim=1)  # (B, F + 3, h, w)
    return rearrange(padded, "b (t k) h w -> b k t h w", k=time_stride)


def pack_uint8_mask(mask: np.ndarray, chunk: int = 16) -> torch.Tensor:
    """(F, H, W) uint8 location mask (0..255) -> :func:`pack_mask`'s (1, time_stride, T, H/8, W/8), pooled
    ``chunk`` frames at a time: a float copy of a whole 81-frame 832x480 mask would be 130 MB, the pooled
    one is 1/64 of that."""
    frames, height, width = mask.shape
    if height % WAN_SPACE_STRIDE or width % WAN_SPACE_STRIDE:
        raise InputError(f"mask of {height}x{width} does not map onto the latent grid: use sides that are "
                         f"multiples of {WAN_SPACE_STRIDE}")
    small = [F.avg_pool2d(torch.from_numpy(np.ascontiguousarray(mask[i:i + chunk]))[:, None].float() / 255.0,
                          WAN_SPACE_STRIDE) for i in range(0, frames, chunk)]
    return pack_mask(torch.cat(small)[None, :, 0], space_stride=1)
