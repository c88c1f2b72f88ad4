"""Frequency-domain low-pass of the pose cue: keeps silhouette, limbs and motion; drops clothing
and hair texture (DirectAnimator §3, "detail-suppressed foreground sequence").

The filter is a Gaussian in frequency, H(f) = exp(-|f|^2 / (2 sigma^2)) with f in cycles per pixel,
so it has no ringing (a hard FFT cut-off would draw halos around the body). That is a Gaussian blur of
1 / (2 pi sigma) pixels in space, which OpenCV runs separably in a few milliseconds a frame; the FFT
is kept for wide cut-offs, where the blur is under a pixel and a sampled kernel would alias.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np
import torch

SPATIAL_MIN_SIGMA = 1.0  # pixels: from here on a sampled 8-sigma kernel matches the frequency response


def gaussian_response(height: int, width: int, cutoff: float) -> torch.Tensor:
    """H(f) on the rfft2 grid (H, W//2+1), float32; ``cutoff`` is sigma in cycles per pixel."""
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    return torch.exp(-(fy ** 2 + fx ** 2) / (2 * cutoff ** 2))


BATCH = 4  # frames filtered at once: the float spectra of a whole chunk would cost ~40 bytes/pixel/frame


def lowpass(frames: np.ndarray, cutoff: float, greyscale: bool = False, flat: Optional[int] = None) -> np.ndarray:
    """Low-pass a chunk of frames.

    Args:
        frames: (n, H, W, 3) uint8 RGB.
        cutoff: Gaussian sigma in cycles per pixel, in (0, 0.5]; 0.5 leaves frames nearly as they are.
        greyscale: average the channels first (the cue then carries no colour of the driver's clothes).
        flat: the grey level (0..255) of a flat background around what is to be filtered (the pose cue's
            neutral grey), or None. With it, the blur runs only around the pixels of another value (a
            flat region blurs to itself), with the same result as on the whole frame.

    Returns:
        (n, H, W, 3) uint8.
    """
    sigma = 1 / (2 * np.pi * cutoff)
    if sigma >= SPATIAL_MIN_SIGMA and flat is not None:
        return np.stack([_blur_around(frame, sigma, greyscale, flat) for frame in frames]) if len(frames) else frames.copy()
    if sigma >= SPATIAL_MIN_SIGMA:
        return np.stack([_blur(frame, sigma, greyscale) for frame in frames]) if len(frames) else frames.copy()
    return np.concatenate([_lowpass(frames[i:i + BATCH], cutoff, greyscale) for i in range(0, len(frames), BATCH)])


def _blur(frame: np.ndarray, sigma: float, greyscale: bool) -> np.ndarray:
    """One (H, W, 3) uint8 frame blurred by a Gaussian of ``sigma`` pixels (mirrored borders), uint8."""
    x = frame.astype(np.float32)
    if greyscale:
        x = x @ np.array([0.299, 0.587, 0.114], np.float32)  # (H, W)
    side = 2 * int(np.ceil(4 * sigma)) + 1
    out = cv2.GaussianBlur(x, (side, side), sigma, borderType=cv2.BORDER_REFLECT_101)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.repeat(out[..., None], 3, -1) if greyscale else out


def _blur_around(frame: np.ndarray, sigma: float, greyscale: bool, flat: int) -> np.ndarray:
    """``_blur`` of a frame that is ``flat`` but for one region: that region, grown past the kernel's
    radius (so what is reflected at its edges is flat) or to the frame's border (reflected as the whole
    frame's is), is blurred; the rest stays ``flat``."""
    x, y, w, h = cv2.boundingRect(cv2.bitwise_not(cv2.inRange(frame, (flat,) * 3, (flat,) * 3)))  # not flat
    out = np.full_like(frame, flat)
    if w == 0:
        return out
    margin = int(np.ceil(4 * sigma)) + 2
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(frame.shape[1], x + w + margin), min(frame.shape[0], y + h + margin)
    out[y0:y1, x0:x1] = _blur(frame[y0:y1, x0:x1], sigma, greyscale)
    return out


def _lowpass(frames: np.ndarray, cutoff: float, greyscale: bool) -> np.ndarray:
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()  # (n, 3, H, W)
    if greyscale:
        x = (x * torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]).sum(1, keepdim=True)  # (n, 1, H, W)
    # Reflect-pad so the FFT's wrap-around does not bleed the right edge into the left.
    pad_h, pad_w = frames.shape[1] // 8, frames.shape[2] // 8
    padded = torch.nn.functional.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="reflect")
    spectrum = torch.fft.rfft2(padded)  # (n, c, H', W'//2+1)
    response = gaussian_response(padded.shape[-2], padded.shape[-1], cutoff)
    filtered = torch.fft.irfft2(spectrum * response, s=padded.shape[-2:])
    filtered = filtered[..., pad_h:pad_h + frames.shape[1], pad_w:pad_w + frames.shape[2]]
    filtered = filtered.expand(-1, 3, -1, -1)
    return filtered.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def high_frequency_energy(frames: np.ndarray, above: float = 0.15) -> float:
    """Share of spectral energy (mean removed) at frequencies above ``above`` cycles per pixel.

    Args:
        frames: (n, H, W, 3) uint8.
        above: frequency in cycles per pixel that splits low from high.
    """
    x = torch.from_numpy(frames).float().mean(-1)  # (n, H, W)
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(x).abs() ** 2
    fy = torch.fft.fftfreq(x.shape[-2])[:, None]
    fx = torch.fft.rfftfreq(x.shape[-1])[None, :]
    high = (fy ** 2 + fx ** 2).sqrt() > above
    return float(power[..., high].sum() / power.sum().clamp_min(1e-12))
