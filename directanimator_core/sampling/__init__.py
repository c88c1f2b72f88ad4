"""Flow-matching schedules, solvers, guidance and the sampling loop.

``sample(velocity, conds, SamplerConfig(...), shape=...)`` is the entry point; a backbone enters only as a
``velocity(x, sigma, cond)`` callable, so nothing here names one.
"""

from .config import SamplerConfig
from .denoiser import GuidanceConds, build_denoiser, guided_velocity
from .loop import StepInfo, initial_noise, sample, sampling_sigmas
from .config import SCHEDULERS
from .schedules import shift_sigmas, sigmas_linear, sigmas_shifted, sigmas_simple
from .solvers import (
    RENAMED_SOLVERS, SOLVERS, resolve_solver, sample_dpmpp_2m, sample_dpmpp_2m_flow, sample_euler, sample_uni_pc,
    sample_uni_pc_bh2, sample_unipc_wan)

__all__ = [
    "GuidanceConds",
    "RENAMED_SOLVERS",
    "SCHEDULERS",
    "SOLVERS",
    "SamplerConfig",
    "StepInfo",
    "build_denoiser",
    "guided_velocity",
    "initial_noise",
    "sample",
    "resolve_solver",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_flow",
    "sample_euler",
    "sample_uni_pc",
    "sample_uni_pc_bh2",
    "sample_unipc_wan",
    "sampling_sigmas",
    "shift_sigmas",
    "sigmas_linear",
    "sigmas_shifted",
    "sigmas_simple",
]
