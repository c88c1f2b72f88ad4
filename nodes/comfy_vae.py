"""ComfyUI's VAE as the core's encoder, and its working memory: what both samplers and Apply share."""

from __future__ import annotations

from typing import Callable

import torch

from ..directanimator_core.admission import WAN_VAE_ENCODE_BYTES_PER_PIXEL
from ..directanimator_core.errors import InputError

WAN21_LATENT_CHANNELS = 16


def comfy_encoder(vae) -> Callable[[torch.Tensor], torch.Tensor]:
    """ComfyUI's VAE as the core's encoder: (1, 3, F, H, W) [-1, 1] -> raw latents (1, 16, T, H/8, W/8)."""
    if getattr(vae, "latent_channels", None) != WAN21_LATENT_CHANNELS or getattr(vae, "latent_dim", None) != 3:
        raise InputError(f"the VAE has {getattr(vae, 'latent_channels', '?')} latent channels; DirectAnimator needs "
                         "the Wan 2.1 VAE: load wan_2.1_vae.safetensors with Load VAE")

    def encode(video: torch.Tensor) -> torch.Tensor:
        pixels = ((video[0].permute(1, 2, 3, 0) + 1.0) / 2.0).clamp(0.0, 1.0)  # (F, H, W, 3) in 0..1
        return vae.encode(pixels)

    return encode


def vae_encode_bytes(vae, frames: int, height: int, width: int) -> int:
    """The VAE encoder's working memory for one window: ComfyUI's own figure for this VAE when it has one."""
    estimate = getattr(vae, "memory_used_encode", None)
    dtype = getattr(vae, "vae_dtype", torch.float32)
    if callable(estimate):
        return int(estimate((1, 3, frames, height, width), dtype))
    return WAN_VAE_ENCODE_BYTES_PER_PIXEL * height * width * torch.empty((), dtype=dtype).element_size()
