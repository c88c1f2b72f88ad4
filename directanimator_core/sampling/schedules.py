"""Noise schedules for rectified flow: the sigmas a solver walks, from the start sigma down to 0.

Two schedules: ``sigmas_shifted`` (this pack's ``linear_shifted``: Wan's shift of evenly spaced times)
and ``sigmas_simple`` (ComfyUI's ``simple`` on a Wan model, equal to it when the step count divides 1000).

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


COMFY_FLOW_TIMESTEPS = 1000  # ComfyUI's ModelSamplingDiscreteFlow table: sigma at t = 1/1000 .. 1000/1000


def comfy_flow_sigma_table(shift: float) -> torch.Tensor:
    """ComfyUI's sigma table for a Wan model with ``shift`` (model_sampling.ModelSamplingDiscreteFlow):
    shift_sigmas(i / 1000) for i = 1..1000, computed in float32 with the same operations, so every entry
    is bit for bit ComfyUI's."""
    times = (torch.arange(1, COMFY_FLOW_TIMESTEPS + 1) / COMFY_FLOW_TIMESTEPS) * 1000 / 1000  # float32
    return times if shift == 1.0 else shift * times / (1 + (shift - 1) * times)


def sigmas_simple(steps: int, shift: float) -> torch.Tensor:
    """ComfyUI's ``simple`` scheduler on a Wan model: entry ``-(1 + int(i * 1000 / steps))`` of the sigma
    table for i < steps, then 0. That is ``sigmas_shifted`` with each time rounded down to a multiple of
    1/1000, so the two agree exactly when ``steps`` divides 1000 (up to float32 rounding)."""
    table = comfy_flow_sigma_table(shift)
    stride = len(table) / steps
    picked = [float(table[-(1 + int(i * stride))]) for i in range(steps)] + [0.0]
    return torch.tensor(picked, dtype=torch.float32).to(torch.float64)
