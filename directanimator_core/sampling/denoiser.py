"""From a velocity model to the denoiser the solvers call, with classifier-free guidance on text and cues.

The sampler never names a backbone. The caller hands it

- ``velocity(x, sigma, cond) -> v``: x [B, C, T, H, W], sigma [B], v like x. ``cond`` is opaque here;
  a Wan backbone wraps itself as ``lambda x, sigma, cond: dit(x, t=sigma * 1000, **cond)``.
- a :class:`GuidanceConds` holding the conditioning variants that guidance needs.

Rectified flow: ``x_sigma = (1 - sigma) x0 + sigma * noise``, the model predicts ``v = noise - x0``, so
``x0 = x - sigma * v`` (the denoiser) exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import torch

from ..errors import InputError


class VelocityModel(Protocol):
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, cond: Any) -> torch.Tensor: ...


@dataclass(frozen=True)
class GuidanceConds:
    """The conditioning variants for one sampling run, built by the caller (opaque to the sampler).

    full: text and cues. no_text: cues with the negative / empty text (needed when cfg_text != 1).
    no_cues: text without the driving cues (needed when cfg_cues != 1).
    """

    full: Any
    no_text: Optional[Any] = None
    no_cues: Optional[Any] = None


def denoised_from_velocity(x: torch.Tensor, sigma: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """x0 = x - sigma * v, with sigma [B] broadcast over the other axes of x."""
    return x - sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype) * v


def check_guidance(conds: GuidanceConds, cfg_text: float, cfg_cues: float) -> None:
    """Raise before sampling when a guidance scale asks for a conditioning variant that is missing."""
    if cfg_text != 1.0 and conds.no_text is None:
        raise InputError(f"cfg_text={cfg_text} needs the no-text conditioning, but GuidanceConds.no_text is None: "
                         "pass the negative-prompt conditioning or set cfg_text to 1.0")
    if cfg_cues != 1.0 and conds.no_cues is None:
        raise InputError(f"cfg_cues={cfg_cues} needs the no-cue conditioning, but GuidanceConds.no_cues is None: "
                         "pass the conditioning without cues or set cfg_cues to 1.0")


def guided_velocity(velocity: VelocityModel, x: torch.Tensor, sigma: torch.Tensor, conds: GuidanceConds,
                    cfg_text: float, cfg_cues: float) -> torch.Tensor:
    """Classifier-free guidance on text and on cues, anchored at the fully conditioned prediction:

        v = v(full) + (cfg_text - 1) (v(full) - v(no_text)) + (cfg_cues - 1) (v(full) - v(no_cues))

    With one scale at 1 this is ordinary CFG on the other (``v(no_x) + s (v(full) - v(no_x))``); with both
    at 1 it is the conditional prediction and costs one model call. Each scale above 1 costs one more
    call, run one after the other so peak memory stays that of one call. The weights sum to 1, so the same
    combination of denoised predictions is identical (x0 is affine in v at fixed x and sigma).
    """
    v_full = velocity(x, sigma, conds.full)
    v = v_full
    if cfg_text != 1.0:
        v = v + (cfg_text - 1.0) * (v_full - velocity(x, sigma, conds.no_text))
    if cfg_cues != 1.0:
        v = v + (cfg_cues - 1.0) * (v_full - velocity(x, sigma, conds.no_cues))
    return v


def build_denoiser(velocity: VelocityModel, conds: GuidanceConds, cfg_text: float = 1.0,
                   cfg_cues: float = 1.0) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The solvers' ``model(x, sigma) -> denoised`` for a velocity model under guidance.

    Args:
        velocity: ``velocity(x [B,C,T,H,W], sigma [B], cond) -> v [B,C,T,H,W]``.
        conds: the conditioning variants; checked against the scales here, before any model call.
        cfg_text: guidance scale on the text (1 = off).
        cfg_cues: guidance scale on the driving cues (1 = off).
    """
    check_guidance(conds, cfg_text, cfg_cues)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        v = guided_velocity(velocity, x, sigma, conds, cfg_text, cfg_cues)
        return denoised_from_velocity(x, sigma, v)

    return denoise
