"""DirectAnimatorDecode: a Wan LATENT + ComfyUI's VAE -> IMAGE frames and their frame rate.

Tiles come from the memory plan (offload.plan_vae_tiles) for the VAE's device, or from the user;
whole frames when they fit. The fps input is passed straight through, so Create Video takes it.
"""

from __future__ import annotations

import logging

import comfy.model_management
import torch
from comfy_api.latest import io

from ..directanimator_core.errors import InputError
from ..directanimator_core.offload import TilePlan, plan_vae_tiles
from ..directanimator_core.offload.plan import WAN_VAE_DECODE_ELEMS_PER_PIXEL

log = logging.getLogger(__name__)

CATEGORY = "DirectAnimator/decode"
SPACE_STRIDE = 8  # Wan 2.1 VAE: pixels per latent pixel
TIME_STRIDE = 4
MIN_TILE = 4 * SPACE_STRIDE  # 4 latent pixels: the overlap (at least one latent pixel) then leaves a stride


def tile_plan(vae, latents: torch.Tensor, tile_size: int, overlap: int) -> TilePlan:
    """The user's tile, or the largest one the VAE's free device memory fits (whole frames when they do)."""
    height, width = latents.shape[-2] * SPACE_STRIDE, latents.shape[-1] * SPACE_STRIDE
    if tile_size:
        if tile_size < MIN_TILE:
            raise InputError(f"tile_size={tile_size} is below {MIN_TILE} pixels: set 0 (planned from the free memory) "
                             f"or at least {MIN_TILE}")
        return TilePlan((tile_size, tile_size), min(overlap, tile_size // 4), 1, 0)
    budget = int(comfy.model_management.get_free_memory(vae.device))
    return plan_vae_tiles(budget, height, width, weight_bytes=int(vae.model_size()),
                          elems_per_pixel=WAN_VAE_DECODE_ELEMS_PER_PIXEL, dtype=vae.vae_dtype)


def decode(vae, latents: torch.Tensor, plan: TilePlan, chunk_frames: int) -> torch.Tensor:
    """(B, 16, T, h, w) -> IMAGE (B * F, H, W, 3), whole frames or tiled in space and chunked in time."""
    if plan.tile is None:
        images = vae.decode(latents)
    else:
        tile = max(plan.tile) // SPACE_STRIDE
        images = vae.decode_tiled(latents, tile_x=tile, tile_y=tile, overlap=max(plan.overlap // SPACE_STRIDE, 1),
                                  tile_t=max(2, chunk_frames // TIME_STRIDE), overlap_t=1)
    return images.reshape(-1, *images.shape[-3:]) if images.ndim == 5 else images


class DirectAnimatorDecode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorDecode",
            display_name="DirectAnimator Decode",
            category=CATEGORY,
            description="Decodes a Wan latent video with the Wan VAE into frames, in tiles when the frames do not "
                        "fit the free memory, and passes the frame rate on for Create Video.",
            inputs=[
                io.Latent.Input("samples", tooltip="The latent from DirectAnimator Sampler (any Wan 2.1 latent)."),
                io.Vae.Input("vae", tooltip="The Wan 2.1 VAE (wan_2.1_vae.safetensors)."),
                io.Float.Input("fps", default=16.0, min=1.0, max=240.0, step=0.01,
                               tooltip="Frame rate, e.g. from Get Video Components of the driving video; passed "
                                       "through to the fps output."),
                io.Int.Input("tile_size", default=0, min=0, max=4096, step=32,
                             tooltip="Tile side in pixels; 0 = planned from the free memory (whole frames when "
                                     "they fit)."),
                io.Int.Input("overlap", default=64, min=0, max=1024, step=32,
                             tooltip="Pixels neighbouring tiles share and blend."),
                io.Int.Input("chunk_frames", default=64, min=8, max=4096, step=4,
                             tooltip="Frames decoded at a time when tiling."),
            ],
            outputs=[io.Image.Output("images", display_name="images", tooltip="The decoded frames."),
                     io.Float.Output("frame_rate", display_name="fps", tooltip="The frame rate, for Create Video.")],
        )

    @classmethod
    def execute(cls, samples, vae, fps, tile_size, overlap, chunk_frames) -> io.NodeOutput:
        latents = samples["samples"]
        if latents.ndim != 5 or latents.shape[1] != 16:
            raise InputError(f"latent of shape {tuple(latents.shape)} is not a Wan 2.1 video latent [B, 16, T, h, w]: "
                             "connect the DirectAnimator Sampler's latent")
        if latents.numel() == 0:
            raise InputError(f"latent of shape {tuple(latents.shape)} is empty: connect a sampler's latent that "
                             "holds at least one frame")
        if not bool(torch.isfinite(latents).all()):
            raise InputError("the latent holds NaN or infinite values: re-run the sampler (check its model files "
                             "and settings) before decoding")
        plan = tile_plan(vae, latents, tile_size, overlap)
        log.info("decode: %s", "whole frames" if plan.tile is None else f"tiles of {plan.tile} px, overlap {plan.overlap}")
        return io.NodeOutput(decode(vae, latents, plan, chunk_frames), float(fps))


NODES: list[type[io.ComfyNode]] = [DirectAnimatorDecode]
