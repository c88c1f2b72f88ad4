"""What the DiT is conditioned on besides noise, timestep and text: typed, frozen, one field per input.

The model's call is ``v = model(x, timestep, context, cond)`` (see wan_dit.WanDiT.forward); a new
kind of conditioning becomes a field here, never a new forward keyword.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True, eq=False)
class CueLatents:
    """The driving cue triplet in latent space, on the video latent's grid (PAPER.md §2.2-2.3).

    pose: (B, C, T, H, W) VAE latent of the low-passed pose-cue video.
    face: (B, C, T, H, W) VAE latent of the face-cue video (crops zoomed to the frame size).
    pose_mask: (B, M, T, H, W) body location mask at latent resolution (cue_embed.pack_mask).
    face_mask: (B, M, T, H, W) face location mask at latent resolution.
    """

    pose: torch.Tensor
    face: torch.Tensor
    pose_mask: torch.Tensor
    face_mask: torch.Tensor


@dataclass(frozen=True, eq=False)
class Conditioning:
    """Everything but the noise, the timestep and the text.

    image: (B, 4 + C, T, H, W) Wan's image-to-video ``y``: 4 mask channels (1 where a frame is given)
        then the reference image's latent, concatenated to x in channels. Needed when the backbone's
        ``in_dim`` exceeds the noise channels (I2V 14B: 36 = 16 + 4 + 16).
    clip_fea: (B, 257, 1280) CLIP vision penultimate states, for backbones with Wan 2.1's image branch
        (required there; backbones without it, Wan 2.2, ignore it as ComfyUI does).
    cues: the driving cue latents for a CueFusion model; None runs the base model (cue-free guidance).
    """

    image: Optional[torch.Tensor] = None
    clip_fea: Optional[torch.Tensor] = None
    cues: Optional[CueLatents] = None


NO_CONDITIONING = Conditioning()
