"""SamplerConfig: every knob of one sampling run, validated when it is built."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from ..errors import InputError
from .solvers import RENAMED_SOLVERS, SOLVERS, resolve_solver

log = logging.getLogger(__name__)

MAX_STEPS = 1000
MAX_CFG = 30.0
MAX_SEED = 2**64 - 1
# linear_shifted: Wan's shift of evenly spaced times (schedules.sigmas_shifted); simple: ComfyUI's simple
SCHEDULERS = ("linear_shifted", "simple")


@dataclass(frozen=True)
class SamplerConfig:
    """One sampling run.

    steps: solver steps (model calls per guidance variant). cfg_text / cfg_cues: guidance scales,
    1 = off (see ``denoiser.guided_velocity``). shift: Wan's schedule shift (5 for Wan 2.1 480p, 8 is
    ComfyUI's Wan default). solver: a name in ``solvers.SOLVERS`` (an old name in ``RENAMED_SOLVERS`` is read
as its new one). scheduler: a name in ``SCHEDULERS``. seed: the noise seed (CPU generator,
    so one seed gives one video on every device). denoise: 1 starts from pure noise; below 1 starts from
    the input latent video noised to ``shift_sigmas(denoise)``.
    """

    steps: int = 30
    cfg_text: float = 5.0
    cfg_cues: float = 1.0
    shift: float = 5.0
    solver: str = "unipc_wan"
    seed: int = 0
    denoise: float = 1.0
    scheduler: str = "linear_shifted"

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or not 1 <= self.steps <= MAX_STEPS:
            raise InputError(f"steps={self.steps!r} must be an integer in [1, {MAX_STEPS}]: pick e.g. 30")
        for name in ("cfg_text", "cfg_cues"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= MAX_CFG):
                raise InputError(f"{name}={value!r} must be a number in [0, {MAX_CFG}] (1 turns guidance off)")
        if not (isinstance(self.shift, (int, float)) and math.isfinite(self.shift) and self.shift > 0):
            raise InputError(f"shift={self.shift!r} must be a positive number: Wan uses 3 to 8, 1 is no shift")
        if self.solver in RENAMED_SOLVERS:
            log.warning("solver %r is the old name of %r (same numbers); choose %r to silence this", self.solver,
                        resolve_solver(self.solver), resolve_solver(self.solver))
            object.__setattr__(self, "solver", resolve_solver(self.solver))
        if self.solver not in SOLVERS:
            raise InputError(f"solver={self.solver!r} is unknown: choose one of {sorted(SOLVERS)}")
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"scheduler={self.scheduler!r} is unknown: choose one of {list(SCHEDULERS)}")
        if not isinstance(self.seed, int) or not 0 <= self.seed <= MAX_SEED:
            raise InputError(f"seed={self.seed!r} must be an integer in [0, 2**64 - 1]")
        if not (isinstance(self.denoise, (int, float)) and 0.0 < self.denoise <= 1.0):
            raise InputError(f"denoise={self.denoise!r} must be in (0, 1]: 1 = from noise, lower keeps more "
                             "of the input video")
