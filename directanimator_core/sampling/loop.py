"""sample(): the one entry point of sampling: config -> sigmas -> noise -> solver, with progress and cancel.

Progress, previews and cancellation come in as plain callables (``callback(StepInfo)``, ``should_stop()``)
so the core never imports ComfyUI; ``nodes/_progress.py`` maps them onto ComfyUI's progress bar,
latent preview and interrupt flag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..errors import InputError, Interrupted
from .config import SamplerConfig
from .denoiser import GuidanceConds, VelocityModel, build_denoiser
from .schedules import sigmas_shifted, sigmas_simple
from .solvers import DISCARD_PENULTIMATE_SIGMA, SOLVERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepInfo:
    """What a caller learns after each solver step (one model evaluation, all guidance variants)."""

    step: int  # 0-based
    total: int
    sigma: float  # the noise level the model just saw
    denoised: torch.Tensor  # [B, C, T, H, W] latent preview: the model's estimate of the clean video


FULL_DENOISE = 0.9999  # ComfyUI's KSampler treats a denoise above this as 1


def sampling_sigmas(config: SamplerConfig) -> torch.Tensor:
    """The ``config.steps + 1`` sigmas of a run, as ComfyUI's KSampler lays them out for the same names.

    linear_shifted: shifted evenly spaced times from ``shift_sigmas(config.denoise)`` to 0. simple: ComfyUI's
    rule for denoise below 1, the last ``steps + 1`` sigmas of ``int(steps / denoise)`` steps. uni_pc and
    uni_pc_bh2 take the schedule of one step more, less its penultimate sigma (KSampler's
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS), with either scheduler.
    """
    extra = int(config.solver in DISCARD_PENULTIMATE_SIGMA)
    if config.scheduler == "simple":
        full = config.denoise > FULL_DENOISE
        sigmas = sigmas_simple((config.steps if full else int(config.steps / config.denoise)) + extra, config.shift)
    else:
        sigmas = sigmas_shifted(config.steps + extra, config.shift, start=config.denoise)
    if extra:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas[-(config.steps + 1):]


def initial_noise(shape: Sequence[int], seed: int) -> torch.Tensor:
    """Unit Gaussian noise drawn on the CPU from ``seed``: the same seed gives the same noise on any device."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float32)


def noised_start(noise: torch.Tensor, sigma: float, init_latent: Optional[torch.Tensor]) -> torch.Tensor:
    """x at the first sigma: ``(1 - sigma) * init + sigma * noise`` (pure noise when sigma = 1 or no init)."""
    if init_latent is None:
        return sigma * noise
    return (1.0 - sigma) * init_latent.to(noise) + sigma * noise


def _check_inputs(config: SamplerConfig, shape: Optional[Sequence[int]], init_latent: Optional[torch.Tensor]) -> tuple[int, ...]:
    if init_latent is not None:
        if shape is not None and tuple(shape) != tuple(init_latent.shape):
            raise InputError(f"shape={tuple(shape)} differs from init_latent's {tuple(init_latent.shape)}: "
                             "pass one of them")
        shape = init_latent.shape
    if shape is None:
        raise InputError("sample() needs a latent shape [B, C, T, H, W] or an init_latent: pass shape=...")
    if len(shape) != 5:
        raise InputError(f"latent shape {tuple(shape)} must have 5 axes [B, C, T, H, W]")
    if config.denoise < 1.0 and init_latent is None:
        raise InputError(f"denoise={config.denoise} < 1 starts from an input video, but init_latent is None: "
                         "pass the encoded input video or set denoise to 1")
    return tuple(int(n) for n in shape)


def _step_reporter(total: int, callback: Optional[Callable[[StepInfo], None]],
                   should_stop: Optional[Callable[[], bool]]) -> Callable[[dict], None]:
    """The solver callback: report the step, then honour should_stop before the next model call."""

    def report(state: dict) -> None:
        if callback is not None:
            callback(StepInfo(step=state["i"], total=total, sigma=float(state["sigma"]), denoised=state["denoised"]))
        if should_stop is not None and should_stop():
            raise Interrupted(f"sampling stopped on request after step {state['i'] + 1} of {total}")

    return report


def sample(velocity: VelocityModel, conds: GuidanceConds, config: SamplerConfig, *,
           shape: Optional[Sequence[int]] = None, init_latent: Optional[torch.Tensor] = None,
           device: Optional[torch.device] = None, dtype: torch.dtype = torch.float32,
           callback: Optional[Callable[[StepInfo], None]] = None,
           should_stop: Optional[Callable[[], bool]] = None) -> torch.Tensor:
    """Sample a latent video [B, C, T, H, W] by integrating the guided flow from noise to data.

    Args:
        velocity: ``velocity(x [B,C,T,H,W], sigma [B], cond) -> v``; see ``denoiser.py``.
        conds: the conditioning variants the guidance scales need.
        config: steps, guidance scales, shift, solver, seed, denoise.
        shape: the latent shape, when there is no ``init_latent``.
        init_latent: the (normalised) latent video that ``denoise < 1`` starts from.
        device: where x lives (default: the init latent's device, else the CPU).
        dtype: dtype of the solver state x.
        callback: called once per step with a :class:`StepInfo`.
        should_stop: polled before the first step and after every step; True raises ``Interrupted``.

    Raises:
        InputError: bad shape, missing init latent or missing guidance variant (before any model call).
        Interrupted: ``should_stop()`` returned True.
    """
    shape = _check_inputs(config, shape, init_latent)
    denoiser = build_denoiser(velocity, conds, config.cfg_text, config.cfg_cues)
    if device is None:
        device = init_latent.device if init_latent is not None else torch.device("cpu")
    sigmas = sampling_sigmas(config)
    noise = initial_noise(shape, config.seed).to(device=device, dtype=dtype)
    x = noised_start(noise, float(sigmas[0]), init_latent)
    if should_stop is not None and should_stop():
        raise Interrupted(f"sampling stopped on request before step 1 of {config.steps}")
    log.debug("sampling %s steps with %s from sigma %.4f", config.steps, config.solver, float(sigmas[0]))
    solver = SOLVERS[config.solver]
    return solver(denoiser, x, sigmas, callback=_step_reporter(config.steps, callback, should_stop))
