"""PSNR and SSIM of generated frames against the exact ground truth, per clip (mean over frames).

SSIM is Wang et al. (2004) with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, on
8-bit RGB (data range 255), each channel scored alone and the three averaged, as scikit-image's
``structural_similarity(channel_axis=-1, gaussian_weights=True)`` does; 'valid' borders are not
scored (the window must fit), as the paper's evaluation code commonly does.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

SSIM_WINDOW, SSIM_SIGMA, K1, K2 = 11, 1.5, 0.01, 0.03


def _check(result: np.ndarray, truth: np.ndarray) -> None:
    if result.shape != truth.shape or result.ndim != 4 or result.shape[-1] != 3:
        raise InputError(f"result {result.shape} and ground truth {truth.shape} must both be (F, H, W, 3) uint8 "
                         "of one size: resize the result to the ground truth first")


def psnr(result: np.ndarray, truth: np.ndarray) -> float:
    """Mean over frames of 10·log10(255² / MSE), on (F, H, W, 3) uint8 frames; an exact frame counts 100 dB."""
    _check(result, truth)
    error = (result.astype(np.float64) - truth.astype(np.float64)) ** 2
    mse = error.reshape(len(error), -1).mean(1)
    return float(np.mean([100.0 if m == 0 else 10 * np.log10(255.0 ** 2 / m) for m in mse]))


def _window(device: torch.device) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - SSIM_WINDOW // 2
    g = torch.exp(-x ** 2 / (2 * SSIM_SIGMA ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]  # (1, 1, k, k)


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of (N, 1, H, W) float64 images in [0, 255]; (N, 1, H - 10, W - 10)."""
    window = _window(a.device)
    blur = lambda x: F.conv2d(x, window)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    # sample (unbiased) covariances over the window, as scikit-image uses
    n = SSIM_WINDOW ** 2
    correction = n / (n - 1)
    var_a = correction * (blur(a * a) - mu_a ** 2)
    var_b = correction * (blur(b * b) - mu_b ** 2)
    cov = correction * (blur(a * b) - mu_a * mu_b)
    c1, c2 = (K1 * 255) ** 2, (K2 * 255) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))


def ssim(result: np.ndarray, truth: np.ndarray) -> float:
    """Mean SSIM over frames and channels of (F, H, W, 3) uint8 frames (module docstring)."""
    _check(result, truth)
    if min(result.shape[1:3]) < SSIM_WINDOW:
        raise InputError(f"frames of {result.shape[2]}x{result.shape[1]} are smaller than the {SSIM_WINDOW}-pixel SSIM "
                         "window: score larger frames")
    to_planes = lambda x: torch.from_numpy(x).double().permute(0, 3, 1, 2).reshape(-1, 1, *x.shape[1:3])  # noqa: E731
    return float(ssim_map(to_planes(result), to_planes(truth)).mean())


def scores(result: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """{"psnr": dB, "ssim": 0..1} of one clip."""
    return {"psnr": psnr(result, truth), "ssim": ssim(result, truth)}
