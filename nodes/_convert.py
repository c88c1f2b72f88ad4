"""The only ComfyUI <-> core layout code.

ComfyUI IMAGE is float [B, H, W, C] in 0..1 and MASK float [B, H, W]; the cue core works on uint8
(F, H, W, 3) RGB and (F, H, W) masks. Conversions go chunk by chunk, so a long clip is never held
twice in float.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import torch

from ..directanimator_core.errors import InputError

log = logging.getLogger(__name__)

CHUNK = 32  # frames converted at once


def image_size(image: torch.Tensor, name: str = "frames") -> tuple[int, int, int]:
    """IMAGE [B, H, W, C] -> (B, H, W), checked as ``image_to_frames`` checks it, without converting a pixel."""
    if image.ndim != 4 or image.shape[-1] not in (1, 3, 4):
        raise InputError(f"{name} has shape {tuple(image.shape)}; expected an IMAGE batch [frames, height, width, 3]")
    if min(image.shape[:3]) == 0:
        raise InputError(f"{name} is empty (shape {tuple(image.shape)}): connect an image or video with at least "
                         "one frame")
    return int(image.shape[0]), int(image.shape[1]), int(image.shape[2])


def image_to_frames(image: torch.Tensor, name: str = "frames") -> np.ndarray:
    """IMAGE [B, H, W, C] float 0..1 -> (B, H, W, 3) uint8 RGB (alpha dropped, grey repeated)."""
    out = np.empty((*image_size(image, name), 3), np.uint8)
    for start in range(0, image.shape[0], CHUNK):
        part = image[start:start + CHUNK, ..., :3].float()
        if not bool(torch.isfinite(part).all()):
            raise InputError(f"{name} holds NaN or infinite pixel values (frames {start}-{start + len(part) - 1}): "
                             "re-run the node that made it")
        part = part.expand(-1, -1, -1, 3) if part.shape[-1] == 1 else part
        out[start:start + CHUNK] = (part * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return out


def frames_to_image(frames: np.ndarray) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> IMAGE [B, H, W, 3] float32 0..1."""
    return torch.from_numpy(frames).float().div_(255.0)


def mask_to_masks(mask: Optional[torch.Tensor], name: str = "mask") -> Optional[np.ndarray]:
    """MASK [B, H, W] (or [H, W]) float 0..1 -> (B, H, W) uint8 0..255, or None."""
    if mask is None:
        return None
    mask = mask[None] if mask.ndim == 2 else mask
    if mask.ndim != 3 or min(mask.shape) == 0:
        raise InputError(f"{name} has shape {tuple(mask.shape)}; expected a MASK [frames, height, width] with at "
                         "least one frame")
    if not bool(torch.isfinite(mask).all()):
        raise InputError(f"{name} holds NaN or infinite values: re-run the node that made it")
    return (mask.float() * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()


def single_mask(mask: Optional[torch.Tensor]) -> Optional[np.ndarray]:
    """MASK of one image [1, H, W] or [H, W] -> (H, W) uint8, or None."""
    masks = mask_to_masks(mask, "reference_mask")
    if masks is None:
        return None
    if masks.shape[0] != 1:
        raise InputError(f"reference_mask holds {masks.shape[0]} masks; connect the mask of the one reference image")
    return masks[0]


def masks_to_mask(masks: np.ndarray) -> torch.Tensor:
    """(B, H, W) uint8 -> MASK [B, H, W] float32 0..1."""
    return torch.from_numpy(masks).float().div_(255.0)


def single_image(image: torch.Tensor, name: str = "reference") -> np.ndarray:
    """IMAGE holding one picture -> (H, W, 3) uint8; a batch takes its first picture, as ComfyUI's
    I2V nodes do, and says so in the log."""
    if image.ndim == 4 and image.shape[0] > 1:
        log.warning("%s holds %d images; using the first", name, image.shape[0])
    return image_to_frames(image[:1], name)[0]


# -- sampler inputs -------------------------------------------------------------------------------------------

def reference_tensor(image: torch.Tensor) -> torch.Tensor:
    """IMAGE holding the reference -> (1, 3, H, W) float in [-1, 1] (a batch takes its first picture)."""
    picture = torch.from_numpy(single_image(image)).float()  # (H, W, 3)
    return (picture.permute(2, 0, 1)[None] / 127.5 - 1.0).contiguous()


def conditioning_tensor(conditioning: Optional[list], name: str = "positive") -> Optional[torch.Tensor]:
    """CONDITIONING [[tensor (1, L, D), {...}], ...] -> the first entry's (1, L, D) text embedding, or None."""
    if conditioning is None:
        return None
    if not conditioning or not torch.is_tensor(conditioning[0][0]):
        raise InputError(f"{name} is not a text conditioning: connect CLIP Text Encode with the Wan text encoder")
    if len(conditioning) > 1:
        log.warning("%s holds %d conditionings; using the first", name, len(conditioning))
    text = conditioning[0][0][:1].float()
    if text.numel() == 0:
        raise InputError(f"{name} is an empty conditioning (shape {tuple(conditioning[0][0].shape)}): connect CLIP "
                         "Text Encode with the Wan text encoder")
    return text


def clip_vision_tensor(output: Optional[object]) -> Optional[torch.Tensor]:
    """CLIP_VISION_OUTPUT -> its penultimate hidden states (1, 257, 1280), what Wan's image branch takes."""
    if output is None:
        return None
    states = getattr(output, "penultimate_hidden_states", None)
    if states is None:
        raise InputError("clip_vision_output has no penultimate hidden states: connect CLIP Vision Encode "
                         "(crop: none) with clip_vision_h")
    return states[:1].float()


def latent_samples(latent: Optional[dict]) -> Optional[torch.Tensor]:
    """LATENT {"samples": (B, 16, T, h, w)} -> its raw Wan latents, or None."""
    if latent is None:
        return None
    samples = latent.get("samples") if isinstance(latent, dict) else None
    if not torch.is_tensor(samples) or samples.numel() == 0:
        raise InputError("init_latent holds no latent samples: connect VAE Encode of the input video")
    return samples
