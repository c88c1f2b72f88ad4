"""Flow-matching schedules, solvers, guidance and the sampling loop.

``sample(velocity, conds, SamplerConfig(...), shape=...)`` is the entry point; a backbone enters only as a
``velocity(x, sigma, cond)`` callable, so nothing here names one.
"""

from .config import SamplerConfig
from .denoiser import GuidanceConds, build_denoiser, guided_velocity
from .loop import StepInfo, initial_noise, sample, sampling_sigmas
from .schedules import shift_sigmas, sigmas_linear, sigmas_shifted
from .solvers import SOLVERS, sample_dpmpp_2m, sample_euler, sample_unipc

__all__ = [
    "GuidanceConds",
    "SOLVERS",
    "SamplerConfig",
    "StepInfo",
    "build_denoiser",
    "guided_velocity",
    "initial_noise",
    "sample",
    "sample_dpmpp_2m",
    "sample_euler",
    "sample_unipc",
    "sampling_sigmas",
    "shift_sigmas",
    "sigmas_linear",
    "sigmas_shifted",
]
