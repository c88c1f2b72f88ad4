"""The small VAE: the Wan 2.1 VAE architecture at width 16, trained on synthetic frames.

The network starts as a pass-through (vae_init.py: average pooling in, nearest upsampling out), because
from PyTorch's default start it falls into decoding the mean picture and never leaves. Two phases:
single frames first (the causal first-frame path, five times cheaper, where the spatial
layers learn), then clips of ``vae_window`` frames (the causal first frame and one 4-frame chunk, the
unit the VAE streams in, so longer clips decode the same way). Loss:
    L1 + MSE of the reconstruction, decoded from the latent mean plus a little noise (so the decoder
    tolerates a DiT's small latent errors), + a statistics term that keeps the latents, after Wan's
    fixed normalisation (vae.normalize_latents), near zero mean and unit variance per channel: the
    scale the DiT and its flow-matching noise assume.
The encoder's log-variance half of ``conv1`` is kept (the loader expects Wan's full layout) but unused.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from ..models.vae import WanVAE, build_vae, denormalize_latents, normalize_latents
from ..synth import same_id_clip, split_seed
from .recipe import Recipe
from .vae_init import passthrough_init

log = logging.getLogger(__name__)

LATENT_NOISE = 0.1  # std of the noise added to normalised latents before decoding, in training
STATS_WEIGHT = 0.02
WARMUP_STEPS = 50
INIT_BATCH = 32  # pictures the pass-through start fits its heads on (vae_init.py)


def training_frames(recipe: Recipe) -> np.ndarray:
    """(N, F, H, W, 3) uint8 frames of the first ``vae_clips`` training-split clips."""
    clips = [same_id_clip(split_seed("train", 10_000 + i), recipe.frames, recipe.vae_size, recipe.vae_size)
             for i in range(recipe.vae_clips)]
    return np.stack([c.render.frames for c in clips])


def draw_batch(frames: np.ndarray, recipe: Recipe, generator: torch.Generator, window: int,
               batch: int, crop: Optional[int] = None) -> torch.Tensor:
    """A batch of random ``window``-frame windows, cropped to ``crop`` (default ``vae_crop``): (B, 3, f, c, c) in [-1, 1].

    Args:
        frames: (N, F, H, W, 3) uint8 training frames.
        recipe: crop size.
        generator: draws clips, start frames and crop corners.
        window: frames per window (1 or 4n + 1).
        batch: windows in the batch.
        crop: square crop side.
    """
    count, length, height, width = frames.shape[:4]
    crop = crop or recipe.vae_crop
    clips = torch.randint(count, (batch,), generator=generator).tolist()
    starts = torch.randint(length - window + 1, (batch,), generator=generator).tolist()
    tops = torch.randint(height - crop + 1, (batch,), generator=generator).tolist()
    lefts = torch.randint(width - crop + 1, (batch,), generator=generator).tolist()
    windows = np.stack([frames[c, s:s + window, y:y + crop, x:x + crop]
                        for c, s, y, x in zip(clips, starts, tops, lefts)])
    return torch.from_numpy(windows).permute(0, 4, 1, 2, 3).float() / 127.5 - 1


def vae_losses(vae: WanVAE, video: torch.Tensor, generator: torch.Generator,
               weight: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Reconstruction and latent-statistics losses of one batch (module docstring).

    Args:
        vae: the VAE being trained.
        video: (B, 3, f, H, W) in [-1, 1].
        generator: draws the latent noise.
        weight: (B, 1, f, H, W) per-pixel weight of the reconstruction terms (e.g. more on the person,
            ``figure_weights``); None = every pixel alike. The terms are weighted means, so their scale is kept.
    """
    latent = normalize_latents(vae.encode(video, chunk_frames=None))  # (B, 16, T, h, w)
    noisy = latent + LATENT_NOISE * torch.randn(latent.shape, generator=generator)
    recon = vae.decode(denormalize_latents(noisy), chunk_latents=None)
    per_channel = latent.transpose(0, 1).flatten(1)  # (16, B·T·h·w)
    stats = per_channel.mean(1).square().mean() + (per_channel.var(1) - 1).square().mean()
    if weight is None:
        l1, l2 = F.l1_loss(recon, video), F.mse_loss(recon, video)
    else:
        total = weight.expand_as(video).sum()
        l1, l2 = (weight * (recon - video).abs()).sum() / total, (weight * (recon - video).square()).sum() / total
    return {"loss": l1 + l2 + STATS_WEIGHT * stats, "l1": l1, "mse": l2, "stats": stats}


def figure_weights(masks: torch.Tensor, figure_weight: float, radius: int = 4) -> torch.Tensor:
    """Per-pixel loss weights: 1 + ``figure_weight`` on the person's mask dilated by ``radius`` pixels.

    Args:
        masks: (B, f, H, W) person masks in [0, 1].
        figure_weight: the person's extra weight (0 = none).
        radius: dilation, so the figure's edge counts as the figure.
    """
    b, f, h, w = masks.shape
    grown = F.max_pool2d(masks.float().reshape(b * f, 1, h, w), 2 * radius + 1, 1, radius)
    return 1.0 + figure_weight * grown.reshape(b, 1, f, h, w)


def train_vae(recipe: Recipe, log_step: Optional[Callable[[int, dict], None]] = None) -> WanVAE:
    """Train the small VAE from ``recipe.seed``; deterministic for a given recipe and thread count.

    Args:
        recipe: sizes, clips, steps, learning rate.
        log_step: called with (step, losses as floats) after every step.
    """
    torch.manual_seed(recipe.seed)
    generator = torch.Generator().manual_seed(recipe.seed)
    frames = training_frames(recipe)
    vae = build_vae(recipe.vae_config())
    passthrough_init(vae, draw_batch(frames, recipe, generator, 1, INIT_BATCH, crop=recipe.vae_image_crop))
    vae.train()
    optimizer = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_lr, weight_decay=0.0)
    total = recipe.vae_image_steps + recipe.vae_steps
    for step in range(total):
        for group in optimizer.param_groups:  # warm-up, then cosine decay to a tenth over the run
            warm = min(1.0, (step + 1) / WARMUP_STEPS)
            group["lr"] = recipe.vae_lr * warm * (0.55 + 0.45 * np.cos(np.pi * step / max(total, 1)))
        images = step < recipe.vae_image_steps
        video = draw_batch(frames, recipe, generator, 1 if images else recipe.vae_window,
                           recipe.vae_image_batch if images else recipe.vae_batch,
                           crop=recipe.vae_image_crop if images else None)
        losses = vae_losses(vae, video, generator)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        if log_step is not None:
            log_step(step + 1, {k: float(v.detach()) for k, v in losses.items()})
    return vae.eval().requires_grad_(False)


def finetune_clips(vae: WanVAE, recipe: Recipe, log_step: Optional[Callable[[int, dict], None]] = None) -> WanVAE:
    """Phase 3: whole ``recipe.frames``-frame clips (cropped), a fresh AdamW at ``vae_clip_lr``.

    Phase 2's windows hold one causal chunk, so latent frames after the first chunk (which see earlier
    chunks through the causal cache) are never trained there; whole clips train them.

    Args:
        vae: the VAE after phases 1 and 2.
        recipe: clips, crop, steps, learning rate, batch.
        log_step: called with (step, losses as floats) after every step.
    """
    torch.manual_seed(recipe.seed + 1)
    generator = torch.Generator().manual_seed(recipe.seed + 1)
    frames = training_frames(recipe)
    vae = vae.train().requires_grad_(True)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=recipe.vae_clip_lr, weight_decay=0.0)
    for step in range(recipe.vae_clip_steps):
        losses = vae_losses(vae, draw_batch(frames, recipe, generator, recipe.frames, recipe.vae_batch), generator)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        if log_step is not None:
            log_step(step + 1, {k: float(v.detach()) for k, v in losses.items()})
    return vae.eval().requires_grad_(False)


def save_vae(vae: WanVAE, path: Path) -> Path:
    """Write the VAE in Wan's own key layout (what checkpoints.vae.load_wan_vae reads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in vae.state_dict().items()}, str(path),
              metadata={"format": "wan2.1-vae", "trained_by": "directanimator_core.default_model"})
    return path
