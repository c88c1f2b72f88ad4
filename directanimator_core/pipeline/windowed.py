"""animate_latents(): reference + cue triplet -> latent video, in overlapping windows, any VAE encoder.

The path the sampler node takes. It differs from ``animate.animate`` in three ways the node needs:
    - the VAE is any ``encode(video) -> raw latents`` callable (ComfyUI's own VAE through the node),
      and nothing is decoded: the result is a raw Wan latent, as ComfyUI's LATENT holds one;
    - a driving clip longer than one window is sampled in windows blended in latent space at every
      step (sampling/windows.py), the reference conditioning the first latent frame of every window;
    - the driving frames stay uint8 and are encoded window by window, so host memory holds one
      window's float pixels at a time, plus the latents (small: 1/48 of the pixels).

    1. checks (sizes, frame count, model fit), before any encoding
    2. per window: pose and face cue latents, packed location masks
    3. the reference's image conditioning (one for all windows: they share a length)
    4. sample the whole latent video, the velocity blended over windows

``encode_windows`` (2-3, the VAE) and ``sample_windows`` (4, the DiT) are separate calls so a node can
place the DiT on the device only after the VAE is done; ``animate_latents`` runs both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .single_pass import WAN_TIMESTEPS, ModelInputs, backbone_config, check_velocity, guidance_inputs, video_tensor
from ..cues.triplet import CueTriplet
from ..errors import InputError, Interrupted
from ..models.conditioning import Conditioning, CueLatents
from ..models.config import BackboneConfig
from ..models.cue_embed import pack_mask
from ..models.hooks import BlockHook
from ..models.vae import (
    SPACE_STRIDE, TIME_STRIDE, denormalize_latents, latent_frames, normalize_latents, pixel_frames)
from ..offload import BlockSwap, run_with_recovery
from ..sampling import GuidanceConds, SamplerConfig, StepInfo, sample
from ..sampling.windows import WindowPlan, plan_windows, windowed_velocity

log = logging.getLogger(__name__)

Encoder = Callable[[torch.Tensor], torch.Tensor]  # (1, 3, F, H, W) in [-1, 1] -> raw latents (1, 16, T, h, w)
StopCheck = Callable[[], bool]
LATENT_CHANNELS = 16  # the Wan 2.1 VAE's latent channels


@dataclass(frozen=True)
class WindowConfig:
    """Long-video windows in pixel frames: ``frames`` per window (4n + 1; Wan: 81), ``overlap`` shared (4k)."""

    frames: int = 81
    overlap: int = 16

    def __post_init__(self) -> None:
        if self.frames < 9 or (self.frames - 1) % TIME_STRIDE:
            raise InputError(f"window of {self.frames} frames: use 4n + 1 frames, at least 9 (Wan: 81)")
        if self.overlap % TIME_STRIDE or not TIME_STRIDE <= self.overlap < self.frames - 1:
            raise InputError(f"window overlap of {self.overlap} frames: use a multiple of 4, at least 4 and less "
                             f"than the window ({self.frames} frames)")

    def plan(self, frames: int) -> WindowPlan:
        """Windows over a clip of ``frames`` pixel frames (4n + 1)."""
        return plan_windows(latent_frames(frames), latent_frames(self.frames), self.overlap // TIME_STRIDE)


# -- 1. checks ---------------------------------------------------------------------------------------------

def usable_frames(frames: int) -> int:
    """The most frames of a clip the causal VAE takes (4n + 1)."""
    if frames < 1:
        raise InputError("the cue triplet holds no frames: connect a driving video with at least 5 frames")
    return (frames - 1) // TIME_STRIDE * TIME_STRIDE + 1


def output_size(reference: torch.Tensor, triplet: CueTriplet, size: Optional[tuple[int, int]],
                config: BackboneConfig) -> tuple[int, int]:
    """(H, W) of the video: ``size`` when given (reference and cues are resized to it), else the reference's,
    which must then be the triplet's."""
    ref_hw = tuple(reference.shape[2:])
    cue_hw = tuple(triplet.pose.shape[1:3])
    if size is None:
        if cue_hw != ref_hw:
            raise InputError(f"the cue triplet is {cue_hw[1]}x{cue_hw[0]} but the reference is {ref_hw[1]}x{ref_hw[0]}: "
                             "connect the same reference image to the Cue Triplet node, or set width and height")
        size = ref_hw
    stride = SPACE_STRIDE * config.patch_size[1]
    if size[0] % stride or size[1] % stride or min(size) < stride:
        raise InputError(f"output size {size[1]}x{size[0]} must be a multiple of {stride} on both sides: set width "
                         f"and height to multiples of {stride} (e.g. {size[1] // stride * stride or stride}x"
                         f"{size[0] // stride * stride or stride})")
    return size


def check_model_fit(config: BackboneConfig, text: Optional[torch.Tensor], clip_fea: Optional[torch.Tensor]) -> None:
    """InputError when the conditioning does not fit the backbone."""
    if config.in_dim == config.out_dim:
        raise InputError(f"this backbone (in_dim {config.in_dim}) has no image input, so the reference cannot enter: "
                         "load an image-to-video Wan checkpoint (in_dim 36)")
    if text is not None and (text.ndim != 3 or text.shape[2] != config.text_dim):
        raise InputError(f"text embedding of shape {tuple(text.shape)}; the model takes (1, L, {config.text_dim}): "
                         "encode the prompt with the Wan text encoder (umt5-xxl)")
    if config.has_image_branch and clip_fea is None:
        raise InputError("this Wan 2.1 image-to-video model needs the reference's CLIP vision features: connect "
                         "CLIP Vision Encode (clip_vision_h) to clip_vision_output")


# -- 2-3. encoding -------------------------------------------------------------------------------------------

def resized(reference: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(1, 3, H, W) -> (1, 3, *size), antialiased."""
    if tuple(reference.shape[2:]) == size:
        return reference
    return F.interpolate(reference.float(), size=size, mode="bilinear", align_corners=False, antialias=True)


def mask_latents(masks: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(F, H, W) uint8 masks -> (1, 4, T, h, w) at latent resolution (cue_embed.pack_mask)."""
    mask = torch.from_numpy(np.ascontiguousarray(masks)).float()[:, None] / 255.0  # (F, 1, H, W)
    if tuple(mask.shape[2:]) != size:
        mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=False, antialias=True)
    return pack_mask(mask[:, 0][None])


def window_cues(encode: Encoder, triplet: CueTriplet, part: slice, size: tuple[int, int]) -> CueLatents:
    """One window's cue latents: pose and face videos through the VAE (normalised), masks packed."""
    return CueLatents(pose=normalize_latents(encode(video_tensor(triplet.pose[part], size)).float()),
                      face=normalize_latents(encode(video_tensor(triplet.face[part], size)).float()),  # zoomed
                      pose_mask=mask_latents(triplet.body_mask[part], size),
                      face_mask=mask_latents(triplet.face_mask[part], size))


def reference_condition(encode: Encoder, reference: torch.Tensor, frames: int) -> torch.Tensor:
    """Wan's image-to-video ``y`` (1, 4 + 16, T, h, w) for a window of ``frames``: "frame 0 given" packed,
    then the latent of [reference, mid-grey...]."""
    height, width = reference.shape[2:]
    video = torch.zeros(1, 3, frames, height, width)
    video[:, :, 0] = reference[0].float().cpu()
    given = torch.zeros(1, TIME_STRIDE, latent_frames(frames), height // SPACE_STRIDE, width // SPACE_STRIDE)
    given[:, :, 0] = 1.0
    return torch.cat([given, normalize_latents(encode(video).float().cpu())], dim=1)


def _stop(should_stop: Optional[StopCheck], where: str) -> None:
    if should_stop is not None and should_stop():
        raise Interrupted(f"stopped on request {where}")


def _to(device: torch.device, cues: CueLatents) -> CueLatents:
    return CueLatents(*(t.to(device) for t in (cues.pose, cues.face, cues.pose_mask, cues.face_mask)))


# -- 4. the model call ---------------------------------------------------------------------------------------

class StopHook(BlockHook):
    """Polls ``should_stop`` before every block, so a cancel lands within one block, not one step."""

    def __init__(self, should_stop: StopCheck) -> None:
        self.should_stop = should_stop

    def before_block(self, index: int, tokens: torch.Tensor) -> torch.Tensor:
        if self.should_stop():
            raise Interrupted(f"sampling stopped on request before block {index}")
        return tokens


def model_velocity(model: nn.Module, should_stop: Optional[StopCheck] = None, swap: Optional[BlockSwap] = None
                   ) -> Callable[[torch.Tensor, torch.Tensor, ModelInputs], torch.Tensor]:
    """``velocity(x, sigma, inputs)`` for a CueFusionDiT (Wan timestep = sigma * 1000), cancellable per block;
    with ``swap``, a call that runs out of memory is re-planned with more streaming and retried once."""

    def velocity(x: torch.Tensor, sigma: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
        hook = None if should_stop is None else StopHook(should_stop)

        def call() -> torch.Tensor:
            return model(x, sigma * WAN_TIMESTEPS, inputs.context, inputs.cond, hook=hook)

        out = call() if swap is None else run_with_recovery(call, swap)
        check_velocity(out, x, float(sigma.flatten()[0]))
        return out

    return velocity


# -- the whole path ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class WindowInputs:
    """Everything the VAE makes for a run, on the CPU: per-window cue latents and the reference's ``y``."""

    plan: WindowPlan
    size: tuple[int, int]  # (H, W) of the video
    cues: tuple[CueLatents, ...]  # one per window, normalised latents + packed masks
    image: torch.Tensor  # (1, 4 + 16, length, h, w) Wan image-to-video conditioning, shared by every window


def check_run(backbone: BackboneConfig, config: SamplerConfig, text: Optional[torch.Tensor],
              negative_text: Optional[torch.Tensor], clip_fea: Optional[torch.Tensor],
              init_latent: Optional[torch.Tensor] = None, frames: Optional[int] = None,
              size: Optional[tuple[int, int]] = None) -> None:
    """InputError for a model / conditioning / guidance / init-latent mismatch, before any encoding.

    Args:
        backbone: the DiT's config.
        config: the sampler settings.
        text: prompt embedding or None.
        negative_text: negative prompt embedding or None.
        clip_fea: CLIP vision states or None.
        init_latent: raw latents a denoise < 1 run starts from, or None.
        frames: pixel frames of the driving clip (checked against ``init_latent``).
        size: (H, W) of the output (checked against ``init_latent``).
    """
    check_model_fit(backbone, text, clip_fea)
    if config.cfg_text != 1.0 and negative_text is None:
        raise InputError(f"cfg {config.cfg_text} needs a negative prompt: connect negative conditioning or set cfg to 1")
    if config.denoise < 1.0 and init_latent is None:
        raise InputError(f"denoise={config.denoise} < 1 starts from an input video, but no init_latent is connected: "
                         "connect the encoded input video (VAE Encode) or set denoise to 1")
    for name, tensor in (("positive", text), ("negative", negative_text), ("clip_vision_output", clip_fea),
                         ("init_latent", init_latent)):
        check_finite(tensor, name)
    if init_latent is not None:
        check_init_latent(init_latent, frames, size)


def check_finite(tensor: Optional[torch.Tensor], name: str) -> None:
    """InputError when an input tensor holds NaN or infinite values (they would give all-NaN frames)."""
    if tensor is not None and tensor.numel() and not bool(torch.isfinite(tensor).all()):
        raise InputError(f"{name} holds NaN or infinite values: re-run the node that made it (check its model "
                         "files and settings) before sampling")


def check_init_latent(init_latent: torch.Tensor, frames: Optional[int], size: Optional[tuple[int, int]]) -> None:
    """InputError unless ``init_latent`` is a Wan video latent as long and as large as the run."""
    if init_latent.ndim != 5 or init_latent.shape[1] != LATENT_CHANNELS:
        raise InputError(f"init latent of shape {tuple(init_latent.shape)} is not a Wan 2.1 video latent "
                         f"[B, {LATENT_CHANNELS}, T, h, w]: encode the input video with the Wan 2.1 VAE")
    if frames is not None:
        total = latent_frames(usable_frames(frames))
        if init_latent.shape[2] != total:
            raise InputError(f"init latent of shape {tuple(init_latent.shape)} does not fit a clip of {total} latent "
                             "frames: encode a video as long as the driving clip")
    if size is not None:
        wanted = (size[0] // SPACE_STRIDE, size[1] // SPACE_STRIDE)
        if tuple(init_latent.shape[3:]) != wanted:
            raise InputError(f"init latent is {init_latent.shape[4] * SPACE_STRIDE}x{init_latent.shape[3] * SPACE_STRIDE} "
                             f"pixels but the output is {size[1]}x{size[0]}: encode the input video at the output "
                             "size, or set width and height to its size")


def encode_windows(reference: torch.Tensor, triplet: CueTriplet, backbone: BackboneConfig, encode: Encoder,
                   windows: WindowConfig = WindowConfig(), size: Optional[tuple[int, int]] = None,
                   should_stop: Optional[StopCheck] = None) -> WindowInputs:
    """The VAE half of a run (before the DiT is placed on the device, so the two never share its memory).

    Args:
        reference: (1, 3, H, W) reference image in [-1, 1].
        triplet: the driving cues (a clip of 4n + 1 frames is used, extra frames dropped).
        backbone: the DiT's config (for the size rule).
        encode: the VAE encoder, ``(1, 3, F, H, W) [-1, 1] -> raw latents (1, 16, T, H/8, W/8)``.
        windows: window length and overlap.
        size: (H, W) output size; None = the reference's (the triplet must match it).
        should_stop: polled between VAE passes.
    """
    size = output_size(reference, triplet, size, backbone)
    frames = usable_frames(triplet.num_frames)
    if frames != triplet.num_frames:
        log.info("driving clip of %d frames: using the first %d (the causal VAE takes 4n + 1)", triplet.num_frames, frames)
    plan = windows.plan(frames)
    log.info("long-video windows: %s", plan.describe())
    cues = []
    for index in range(len(plan.starts)):
        _stop(should_stop, f"while encoding window {index + 1}")
        cues.append(window_cues(encode, triplet, plan.pixel_slice(index), size))
    _stop(should_stop, "before encoding the reference")
    image = reference_condition(encode, resized(reference, size), (plan.length - 1) * TIME_STRIDE + 1)
    return WindowInputs(plan=plan, size=size, cues=tuple(cues), image=image)


def guidance_per_window(inputs: WindowInputs, context: torch.Tensor, negative: Optional[torch.Tensor],
                        clip: Optional[torch.Tensor], device: torch.device) -> GuidanceConds:
    """GuidanceConds whose variants are tuples of per-window ModelInputs, on ``device``."""
    image = inputs.image.to(device)
    per_window = [guidance_inputs(context, negative, Conditioning(image=image, clip_fea=clip, cues=_to(device, c)))
                  for c in inputs.cues]
    return GuidanceConds(full=tuple(g.full for g in per_window), no_cues=tuple(g.no_cues for g in per_window),
                         no_text=None if negative is None else tuple(g.no_text for g in per_window))


def sample_windows(model: nn.Module, inputs: WindowInputs, config: SamplerConfig = SamplerConfig(), *,
                   text: Optional[torch.Tensor] = None, negative_text: Optional[torch.Tensor] = None,
                   clip_fea: Optional[torch.Tensor] = None, init_latent: Optional[torch.Tensor] = None,
                   device: Optional[torch.device] = None, swap: Optional[BlockSwap] = None,
                   callback: Optional[Callable[[StepInfo], None]] = None,
                   should_stop: Optional[StopCheck] = None) -> torch.Tensor:
    """The DiT half of a run: the whole latent video, the velocity blended over windows; raw latents out.

    Args:
        model: a CueFusionDiT (the WanDiT call) with an image-to-video backbone.
        inputs: what encode_windows made.
        config: steps, guidance scales, shift, solver, seed, denoise.
        text: (1, L, D_text) prompt embedding; None = one zero token.
        negative_text: (1, L', D_text) negative prompt embedding (cfg_text != 1).
        clip_fea: (1, 257, 1280) CLIP vision states of the reference (Wan 2.1 I2V image branch).
        init_latent: raw latents (1, 16, T, h, w) a denoise < 1 run starts from.
        device: where sampling runs (default: the model's device).
        swap: the BlockSwap placing the model (loaded_model.place); an out-of-memory model call re-plans and retries.
        callback: called once per sampling step.
        should_stop: polled before every block; True raises Interrupted.
    """
    backbone, plan = backbone_config(model), inputs.plan
    check_run(backbone, config, text, negative_text, clip_fea, init_latent, pixel_frames(plan.total))
    device = device or next(model.parameters()).device
    context = (text if text is not None else torch.zeros(1, 1, backbone.text_dim)).to(device)
    conds = guidance_per_window(inputs, context, None if negative_text is None else negative_text.to(device),
                                None if clip_fea is None else clip_fea.to(device), device)
    wan = model_velocity(model, should_stop, swap)

    def velocity(x: torch.Tensor, sigma: torch.Tensor, variant: tuple[ModelInputs, ...]) -> torch.Tensor:
        return windowed_velocity(lambda xw, s, i: wan(xw, s, variant[i]), plan, should_stop)(x, sigma)

    shape = (1, backbone.out_dim, plan.total, inputs.size[0] // SPACE_STRIDE, inputs.size[1] // SPACE_STRIDE)
    start = None if init_latent is None else normalize_latents(init_latent.float()).to(device)
    with torch.no_grad():
        latents = sample(velocity, conds, config, shape=None if start is not None else shape, init_latent=start,
                         device=device, callback=callback, should_stop=should_stop)
    return denormalize_latents(latents.float().cpu())


def animate_latents(reference: torch.Tensor, triplet: CueTriplet, model: nn.Module, encode: Encoder,
                    config: SamplerConfig = SamplerConfig(), *, windows: WindowConfig = WindowConfig(),
                    size: Optional[tuple[int, int]] = None, text: Optional[torch.Tensor] = None,
                    negative_text: Optional[torch.Tensor] = None, clip_fea: Optional[torch.Tensor] = None,
                    init_latent: Optional[torch.Tensor] = None, device: Optional[torch.device] = None,
                    swap: Optional[BlockSwap] = None, callback: Optional[Callable[[StepInfo], None]] = None,
                    should_stop: Optional[StopCheck] = None) -> torch.Tensor:
    """Sample the latent video of ``reference`` driven by ``triplet``; returns raw latents (1, 16, T, h, w).

    encode_windows then sample_windows, with every check made before the first VAE pass.

    Args:
        reference: (1, 3, H, W) reference image in [-1, 1].
        triplet: the driving cues (F frames; a clip of 4n + 1 frames is used, extra frames dropped).
        model: a CueFusionDiT (the WanDiT call) with an image-to-video backbone.
        encode: the VAE encoder, ``(1, 3, F, H, W) [-1, 1] -> raw latents (1, 16, T, H/8, W/8)``.
        config: steps, guidance scales, shift, solver, seed, denoise.
        windows: window length and overlap for clips longer than one window.
        size: (H, W) output size; None = the reference's (the triplet must match it).
        text: (1, L, D_text) prompt embedding; None = one zero token.
        negative_text: (1, L', D_text) negative prompt embedding (cfg_text != 1).
        clip_fea: (1, 257, 1280) CLIP vision states of the reference (Wan 2.1 I2V image branch).
        init_latent: raw latents (1, 16, T, h, w) a denoise < 1 run starts from.
        device: where sampling runs (default: the model's device).
        swap: the BlockSwap placing the model (loaded_model.place); an out-of-memory model call re-plans and retries.
        callback: called once per sampling step.
        should_stop: polled between VAE passes and before every block; True raises Interrupted.
    """
    backbone = backbone_config(model)
    size = output_size(reference, triplet, size, backbone)
    check_run(backbone, config, text, negative_text, clip_fea, init_latent, triplet.num_frames, size)
    inputs = encode_windows(reference, triplet, backbone, encode, windows, size, should_stop)
    return sample_windows(model, inputs, config, text=text, negative_text=negative_text, clip_fea=clip_fea,
                          init_latent=init_latent, device=device, swap=swap, callback=callback,
                          should_stop=should_stop)
