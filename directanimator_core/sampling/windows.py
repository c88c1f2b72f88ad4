"""Long videos: overlapping windows along latent time, blended in latent space at every model call.

A driving clip longer than the model's window (81 pixel frames = 21 latent frames for Wan) is cut
into windows of ``length`` latent frames that overlap by ``overlap``; the last window is moved back so
it ends on the last frame, so every window has the same length (one reference conditioning serves
them all). At each solver step the velocity of every window is computed and the windows are blended
in latent space, so the solver integrates one long latent video: there is no decode / re-encode
round trip between windows, the known source of colour drift.

Blending is a running ``lerp`` from the frames already written towards the new window, with weights
``j / overlap`` over the overlap: where two windows agree the result equals them bit for bit, and a
later window's first latent frame (the slot of Wan's image conditioning, i.e. the reference) gets
weight 0.

Pixel frames of latent window [s, s + n): frames 4s .. 4(s + n - 1) (4(n - 1) + 1 frames). Through the
causal VAE its latent j >= 1 covers the same pixels as the whole video's latent s + j; latent 0 stands
for pixel frame 4s alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from ..errors import InputError, Interrupted

TIME_STRIDE = 4  # pixel frames per latent frame of the Wan 2.1 VAE


@dataclass(frozen=True)
class WindowPlan:
    """Windows over ``total`` latent frames: ``starts`` ascending, each ``length`` long."""

    total: int
    length: int
    overlap: int
    starts: tuple[int, ...]

    def latent_slice(self, index: int) -> slice:
        return slice(self.starts[index], self.starts[index] + self.length)

    def pixel_slice(self, index: int) -> slice:
        """Pixel frames of window ``index`` (4(length - 1) + 1 of them; module docstring)."""
        start = self.starts[index] * TIME_STRIDE
        return slice(start, start + (self.length - 1) * TIME_STRIDE + 1)

    def describe(self) -> str:
        return (f"{len(self.starts)} windows of {self.length} latent frames over {self.total}, "
                f"overlap {self.overlap}")


def plan_windows(total: int, length: int, overlap: int) -> WindowPlan:
    """Windows of ``length`` latent frames covering ``total``, neighbours sharing at least ``overlap``.

    Args:
        total: latent frames of the whole video.
        length: latent frames per window (21 for Wan's 81 pixel frames).
        overlap: latent frames neighbouring windows share (blended), 1 <= overlap < length.
    """
    if length < 2 or not 1 <= overlap < length:
        raise InputError(f"window of {length} latent frames with overlap {overlap}: the window needs at least 2 "
                         "latent frames (9 pixel frames) and the overlap must be between 1 and window - 1")
    if total <= length:
        return WindowPlan(total=total, length=total, overlap=0, starts=(0,))
    stride = length - overlap
    starts = list(range(0, total - length, stride)) + [total - length]
    return WindowPlan(total=total, length=length, overlap=overlap, starts=tuple(starts))


def blend_windows(parts: Sequence[torch.Tensor], plan: WindowPlan) -> torch.Tensor:
    """Window outputs [B, C, length, H, W] -> the video [B, C, total, H, W], ramps over each overlap.

    Args:
        parts: one tensor per window of ``plan``, in order.
        plan: the windows.
    """
    if len(parts) != len(plan.starts):
        raise InputError(f"{len(parts)} window outputs for a plan of {len(plan.starts)} windows")
    first = parts[0]
    out = first.new_empty((*first.shape[:2], plan.total, *first.shape[3:]))
    written = 0  # latent frames [0, written) hold earlier windows
    for start, part in zip(plan.starts, parts):
        shared = written - start
        if shared > 0:
            ramp = torch.arange(shared, dtype=part.dtype, device=part.device) / shared  # 0 at the window's start
            ramp = ramp.view(1, 1, -1, 1, 1)
            out[:, :, start:written] = torch.lerp(out[:, :, start:written], part[:, :, :shared], ramp)
        out[:, :, max(written, start):start + plan.length] = part[:, :, max(shared, 0):]
        written = start + plan.length
    return out


WindowVelocity = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]


def windowed_velocity(velocity: WindowVelocity, plan: WindowPlan,
                      should_stop: Optional[Callable[[], bool]] = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One velocity over the whole latent video from a per-window velocity.

    Args:
        velocity: ``velocity(x_window [B, C, length, H, W], sigma, index) -> v_window``; ``index`` picks
            the window's own conditioning (its cues).
        plan: the windows.
        should_stop: polled between windows, so a cancel lands within one window's model call.
    """

    def run(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        parts = []
        for index in range(len(plan.starts)):
            if index and should_stop is not None and should_stop():
                raise Interrupted(f"sampling stopped on request at window {index + 1} of {len(plan.starts)}")
            parts.append(velocity(x[:, :, plan.latent_slice(index)], sigma, index))
        return parts[0] if len(parts) == 1 else blend_windows(parts, plan)

    return run
