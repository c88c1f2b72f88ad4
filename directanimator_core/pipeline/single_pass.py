"""animate(): a reference image and a driving cue triplet -> the animated video; the path the nodes call.

    1. check every input against the model and the VAE (before any heavy work)
    2. encode the pose and face cue videos with the frozen VAE, pack the location masks (PAPER.md §2.2)
    3. build Wan's image-to-video conditioning from the reference (4 mask channels + its latent)
    4. sample the flow with guidance on the text and on the cues (sampling/)
    5. decode, whole frames or in blended tiles

The model is any callable with the WanDiT call ``v = model(x, timestep, context, cond)`` (a
``CueFusionDiT``); Wan's timestep is sigma * 1000. Latents the model sees are normalised
(``vae.normalize_latents``); ``Animation.latents`` are raw, as ComfyUI's LATENT holds Wan latents.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..cues.triplet import CueTriplet
from ..errors import InputError, NumericError
from ..models.conditioning import Conditioning, CueLatents
from ..models.config import BackboneConfig
from ..models.cue_embed import pack_uint8_mask
from ..models.vae import (
    SPACE_STRIDE, TIME_STRIDE, FrameReader, WanVAE, decode_tiled, denormalize_latents, latent_frames,
    normalize_latents)
from ..sampling import GuidanceConds, SamplerConfig, StepInfo, sample

log = logging.getLogger(__name__)

WAN_TIMESTEPS = 1000.0  # Wan's timestep = sigma * 1000
StopCheck = Callable[[], bool]


@dataclass(frozen=True, eq=False)
class ModelInputs:
    """One guidance variant's inputs to the model besides x and the timestep."""

    context: torch.Tensor  # (1, L, D_text)
    cond: Conditioning


@dataclass(frozen=True, eq=False)
class Animation:
    """What animate() returns."""

    latents: torch.Tensor  # (1, 16, T, H/8, W/8) raw VAE latents (ComfyUI LATENT layout)
    frames: Optional[torch.Tensor]  # (1, 3, F, H, W) in [-1, 1]; None when decoding was skipped


# -- 1. checks -------------------------------------------------------------------------------------------

def backbone_config(model: nn.Module) -> BackboneConfig:
    """The BackboneConfig of a CueFusionDiT (``model.backbone.config``) or a bare WanDiT (``model.config``)."""
    inner = getattr(model, "backbone", model)
    config = getattr(inner, "config", None)
    if not isinstance(config, BackboneConfig):
        raise InputError(f"{type(model).__name__} carries no BackboneConfig: pass a CueFusionDiT "
                         "(models.cuefusion) or a WanDiT")
    return config


def check_animation_inputs(reference: torch.Tensor, triplet: CueTriplet, config: BackboneConfig,
                           text: Optional[torch.Tensor], clip_fea: Optional[torch.Tensor]) -> None:
    """Raise InputError for inputs that cannot make a video with this model, before any encoding.

    Args:
        reference: (1, 3, H, W) reference image in [-1, 1].
        triplet: the driving cues, F frames at the reference's size.
        config: the backbone's config.
        text: (1, L, D_text) text embedding, or None.
        clip_fea: (1, 257, 1280) CLIP vision features, or None.
    """
    if reference.ndim != 4 or reference.shape[:2] != (1, 3):
        raise InputError(f"reference of shape {tuple(reference.shape)} must be one RGB image (1, 3, H, W) in [-1, 1]")
    frames, height, width = triplet.pose.shape[:3]
    if (frames - 1) % TIME_STRIDE:
        raise InputError(f"the cue triplet has {frames} frames; the causal VAE needs 4n + 1: trim the driving "
                         f"video to {4 * ((frames - 1) // 4) + 1} frames")
    if (height, width) != tuple(reference.shape[2:]):
        raise InputError(f"cue frames are {height}x{width} but the reference is {reference.shape[2]}x{reference.shape[3]}: "
                         "build the triplet for the reference (its size is the output size)")
    stride = SPACE_STRIDE * config.patch_size[1]
    if height % stride or width % stride:
        raise InputError(f"output size {height}x{width} must be a multiple of {stride} on both sides: crop or resize "
                         "the reference")
    if config.in_dim == config.out_dim:
        raise InputError(f"this backbone (in_dim {config.in_dim}) has no image input, so the reference cannot "
                         "enter: load an image-to-video Wan checkpoint (in_dim 36)")
    if text is not None and (text.ndim != 3 or text.shape[0] != 1 or text.shape[2] != config.text_dim):
        raise InputError(f"text embedding of shape {tuple(text.shape)}; the model takes (1, L, {config.text_dim})")
    if config.has_image_branch and clip_fea is None:
        raise InputError("this Wan 2.1 image-to-video backbone needs the reference's CLIP vision features: "
                         "pass clip_fea (1, 257, 1280)")


# -- 2-3. encoding -----------------------------------------------------------------------------------------

def video_tensor(frames: np.ndarray, size: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """(F, H, W, 3) uint8 -> (1, 3, F, H', W') float in [-1, 1], resized to ``size`` when given."""
    video = rearrange(torch.from_numpy(np.ascontiguousarray(frames)), "f h w c -> f c h w").float() / 127.5 - 1
    if size is not None and tuple(video.shape[2:]) != tuple(size):
        video = F.interpolate(video, size=size, mode="bilinear", align_corners=False, antialias=True)
    return rearrange(video, "f c h w -> 1 c f h w")


def encode_latents(vae: WanVAE, read: FrameReader, frames: int, should_stop: Optional[StopCheck] = None) -> torch.Tensor:
    """Pixels read chunk by chunk -> (1, 16, T, H/8, W/8) normalised latents (only one chunk is ever float)."""
    device = next(vae.parameters()).device
    with torch.no_grad():
        latents = vae.encode_frames(lambda part: read(part).to(device), frames, should_stop=should_stop)
    return normalize_latents(latents.float())


def uint8_reader(frames: np.ndarray, size: Optional[tuple[int, int]] = None) -> FrameReader:
    """Read (F, H, W, 3) uint8 frames as [-1, 1] chunks (1, 3, f, H', W'), resized to ``size`` when given."""
    return lambda part: video_tensor(frames[part], size)


def reference_reader(reference: torch.Tensor, height: int, width: int) -> FrameReader:
    """Wan's I2V video: the reference as frame 0, then zeros ([-1, 1] mid-grey), built chunk by chunk."""

    def read(part: slice) -> torch.Tensor:
        chunk = torch.zeros(1, 3, part.stop - part.start, height, width)
        if part.start == 0:
            chunk[:, :, 0] = reference[0].float().cpu()
        return chunk

    return read


def encode_cues(vae: WanVAE, triplet: CueTriplet, size: tuple[int, int],
                should_stop: Optional[StopCheck] = None) -> CueLatents:
    """The triplet in latent space: pose and face videos through the VAE, location masks packed."""
    frames = triplet.num_frames
    masks = [pack_uint8_mask(m) for m in (triplet.body_mask, triplet.face_mask)]
    return CueLatents(pose=encode_latents(vae, uint8_reader(triplet.pose), frames, should_stop),
                      face=encode_latents(vae, uint8_reader(triplet.face, size), frames, should_stop),  # zoomed
                      pose_mask=masks[0], face_mask=masks[1])


def image_condition(vae: WanVAE, reference: torch.Tensor, frames: int,
                    should_stop: Optional[StopCheck] = None) -> torch.Tensor:
    """Wan's image-to-video ``y`` (1, 4 + 16, T, h, w): a mask that marks frame 0 as given, then the latent of
    the video [reference, mid-grey, mid-grey, ...], as Wan's I2V pipeline builds it."""
    height, width = reference.shape[2:]
    # pack_mask of "frame 0 given" (frame 0 fills all 4 slots of latent frame 0), built at latent size
    given = torch.zeros(1, TIME_STRIDE, latent_frames(frames), height // SPACE_STRIDE, width // SPACE_STRIDE)
    given[:, :, 0] = 1.0
    latents = encode_latents(vae, reference_reader(reference, height, width), frames, should_stop)
    return torch.cat([given, latents.cpu()], dim=1)


# -- 4. sampling --------------------------------------------------------------------------------------------

def guidance_inputs(text: torch.Tensor, negative_text: Optional[torch.Tensor], cond: Conditioning) -> GuidanceConds:
    """The three model inputs of guidance: everything; the negative text; no cues (the base model)."""
    no_cues = Conditioning(image=cond.image, clip_fea=cond.clip_fea, cues=None)
    return GuidanceConds(full=ModelInputs(text, cond),
                         no_text=None if negative_text is None else ModelInputs(negative_text, cond),
                         no_cues=ModelInputs(text, no_cues))


def wan_velocity(model: nn.Module) -> Callable[[torch.Tensor, torch.Tensor, ModelInputs], torch.Tensor]:
    """The sampler's ``velocity(x, sigma, inputs)`` for a model with the WanDiT call (timestep = sigma * 1000)."""

    def velocity(x: torch.Tensor, sigma: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
        out = model(x, sigma * WAN_TIMESTEPS, inputs.context, inputs.cond)
        check_velocity(out, x, float(sigma.flatten()[0]))
        return out

    return velocity


def check_velocity(velocity: torch.Tensor, x: torch.Tensor, sigma: float) -> None:
    """NumericError at the first model call whose output (or input state) is not finite, naming which."""
    if bool(torch.isfinite(velocity).all()):
        return
    source = "the sampler's state" if not bool(torch.isfinite(x).all()) else "the model's output"
    raise NumericError(f"{source} became NaN or infinite at sigma {sigma:.3f}: the model's weights or its inputs "
                       "hold non-finite values (reload the model file; in fp16 try bf16 or fp32)")


def _on(device: torch.device, tensor: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return None if tensor is None else tensor.to(device)


def _conditioning_on(device: torch.device, image: torch.Tensor, clip_fea: Optional[torch.Tensor],
                     cues: CueLatents) -> Conditioning:
    cues = CueLatents(*(t.to(device) for t in (cues.pose, cues.face, cues.pose_mask, cues.face_mask)))
    return Conditioning(image=image.to(device), clip_fea=_on(device, clip_fea), cues=cues)


# -- the whole path ---------------------------------------------------------------------------------------------

def animate(reference: torch.Tensor, triplet: CueTriplet, model: nn.Module, vae: WanVAE,
            config: SamplerConfig = SamplerConfig(), *, text: Optional[torch.Tensor] = None,
            negative_text: Optional[torch.Tensor] = None, clip_fea: Optional[torch.Tensor] = None,
            decode: bool = True, tile: Optional[tuple[int, int]] = None, tile_overlap: int = 64,
            callback: Optional[Callable[[StepInfo], None]] = None,
            should_stop: Optional[Callable[[], bool]] = None) -> Animation:
    """Animate ``reference`` with the motion and expression of the driving cues.

    Args:
        reference: (1, 3, H, W) reference image in [-1, 1]; H, W is the output size.
        triplet: the driving cue triplet (cues.triplet.build_triplet), F = 4n + 1 frames at H x W.
        model: a CueFusionDiT (or WanDiT) with an image-to-video backbone; its device is where sampling runs.
        vae: the Wan 2.1 VAE.
        config: steps, guidance scales (cfg_text needs ``negative_text``), shift, solver, seed.
            ``denoise`` must be 1: animate starts from noise.
        text: (1, L, D_text) umT5 embedding of the prompt; None = one zero token (no prompt).
        negative_text: (1, L', D_text) embedding of the negative prompt, for cfg_text != 1.
        clip_fea: (1, 257, 1280) CLIP vision features of the reference (Wan 2.1 I2V backbones need them).
        decode: False returns latents only (frames None), e.g. to decode with ComfyUI's own VAE node.
        tile: (H, W) pixel tile for a tiled decode, None decodes whole frames.
        tile_overlap: pixels neighbouring tiles share.
        callback: called once per sampling step with a StepInfo.
        should_stop: polled between VAE chunks and sampling steps; True raises Interrupted.

    Raises:
        InputError: inputs that do not fit the model or each other (before any encoding).
        Interrupted: should_stop() returned True.
    """
    # 1. checks
    backbone = backbone_config(model)
    check_animation_inputs(reference, triplet, backbone, text, clip_fea)
    if config.denoise != 1.0:
        raise InputError(f"denoise={config.denoise}: animate() starts from noise, so it must be 1")
    if config.cfg_text != 1.0 and negative_text is None:
        raise InputError(f"cfg_text={config.cfg_text} needs negative_text (the negative prompt's embedding): "
                         "pass it or set cfg_text to 1.0")
    frames, height, width = triplet.pose.shape[:3]
    # 2-3. encode cues and reference
    cues = encode_cues(vae, triplet, (height, width), should_stop)
    image = image_condition(vae, reference, frames, should_stop)
    return animate_encoded(image, cues, frames, model, vae, config, text=text, negative_text=negative_text,
                           clip_fea=clip_fea, decode=decode, tile=tile, tile_overlap=tile_overlap,
                           callback=callback, should_stop=should_stop)


def animate_encoded(image: torch.Tensor, cues: CueLatents, frames: int, model: nn.Module, vae: WanVAE,
                    config: SamplerConfig = SamplerConfig(), *, text: Optional[torch.Tensor] = None,
                    negative_text: Optional[torch.Tensor] = None, clip_fea: Optional[torch.Tensor] = None,
                    decode: bool = True, tile: Optional[tuple[int, int]] = None, tile_overlap: int = 64,
                    callback: Optional[Callable[[StepInfo], None]] = None,
                    should_stop: Optional[Callable[[], bool]] = None) -> Animation:
    """Steps 4-5 of animate() on inputs already encoded (image_condition, encode_cues): a bench that scores
    many models on the same pairs encodes each pair's reference and cues once. The arguments are
    animate()'s, checked there; ``frames`` is the pixel frame count."""
    backbone = backbone_config(model)
    device = next(model.parameters()).device
    context = text if text is not None else torch.zeros(1, 1, backbone.text_dim)
    cond = _conditioning_on(device, image, clip_fea, cues)
    conds = guidance_inputs(context.to(device), _on(device, negative_text), cond)
    # 4. sample
    shape = (1, backbone.out_dim, latent_frames(frames), *image.shape[-2:])
    with torch.no_grad():
        latents = sample(wan_velocity(model), conds, config, shape=shape, device=device,
                         callback=callback, should_stop=should_stop)
    raw = denormalize_latents(latents)
    # 5. decode
    if not decode:
        return Animation(latents=raw, frames=None)
    return Animation(latents=raw, frames=decode_frames(vae, raw, tile, tile_overlap, should_stop))


def decode_frames(vae: WanVAE, latents: torch.Tensor, tile: Optional[tuple[int, int]] = None,
                  overlap: int = 64, should_stop: Optional[StopCheck] = None) -> torch.Tensor:
    """Raw latents -> (B, 3, F, H, W) frames clamped to [-1, 1], in blended tiles when ``tile`` is given.

    Args:
        vae: the Wan 2.1 VAE.
        latents: (B, 16, T, h, w) raw latents.
        tile: (H, W) pixels per tile, or None for whole frames.
        overlap: pixels shared by neighbouring tiles.
        should_stop: polled between VAE chunks; True raises Interrupted.
    """
    latents = latents.to(next(vae.parameters()).device)
    with torch.no_grad():
        if tile is None:
            pixels = vae.decode(latents, should_stop=should_stop)
        else:
            pixels = decode_tiled(vae, latents, tile, overlap, should_stop=should_stop)
    return pixels.float().clamp(-1.0, 1.0)
