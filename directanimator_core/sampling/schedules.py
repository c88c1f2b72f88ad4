"""Noise schedules for rectified flow: the sigmas a solver walks, from the start sigma down to 0.

Convention (Wan, SD3, ComfyUI's ``CONST`` model sampling): ``x_sigma = (1 - sigma) * x0 + sigma * noise``
with sigma in [0, 1]; sigma = 1 is pure noise. Every schedule returns a float64 1-D tensor of
``steps + 1`` sigmas that ends with 0, so a solver's last step lands on the data.
"""

from __future__ import annotations

import torch


def shift_sigmas(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's time shift ``sigma' = shift * s / (1 + (shift - 1) * s)`` (SD3, Esser et al. 2024, Eq. 23).

    A shift above 1 keeps the schedule longer at high noise, where large video models need more steps
    to lay out motion; it maps 0 to 0 and 1 to 1.
    """
    return shift * sigmas / (1 + (shift - 1) * sigmas)


def sigmas_linear(steps: int, start: float = 1.0) -> torch.Tensor:
    """Evenly spaced sigmas from ``start`` to 0: ``steps + 1`` values."""
    return torch.linspace(start, 0.0, steps + 1, dtype=torch.float64)


def sigmas_shifted(steps: int, shift: float, start: float = 1.0) -> torch.Tensor:
    """Wan's sampling schedule: evenly spaced times from ``start`` to 0, each shifted by ``shift``.

    ``start`` below 1 is the denoise strength: the walk begins at ``shift_sigmas(start)``, the sigma at
    which an input latent video is noised (img2img / vid2vid). Wan's own pipelines start at
    ``start=0.999`` (1 - 1/1000, the last training sigma); ComfyUI and this pack start at 1.
    """
    return shift_sigmas(sigmas_linear(steps, start), shift)
