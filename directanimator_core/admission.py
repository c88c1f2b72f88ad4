"""Admission: refuse, before any heavy work, a run whose predicted host memory exceeds what is free.

The device side is planned by offload/plan.py (block swap against the device's free memory). The host
side was never checked, so an allowed setting (4096 x 4096 on the CPU) grew until the kernel's OOM
killer ended the whole ComfyUI server. Here the run's host peak is predicted from its sizes and
compared with the available host memory (MemAvailable), with a one-line refusal naming the figures.

The prediction counts what the run adds on top of what is already loaded (the weights sit in memory
before the check, and MemAvailable already excludes them):

- encoding: one window of a cue video as float32 pixels, twice (the resize's input and output), plus
  the VAE encoder's working memory (ComfyUI's own ``memory_used_encode`` figure when the VAE has one);
- sampling on the host: the DiT's activations (offload/plan.estimate_activation_bytes) and the
  sampler's latents (the state, the noise and the solver's history, a handful of latent videos).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .errors import InputError
from .offload.plan import GiB
from .offload.policy import host_available_bytes

HEADROOM = 0.85  # of the available memory a run may plan to use (the OS, ComfyUI and fragmentation keep the rest)
LATENT_COPIES = 12  # latent videos alive at once in a sampler run (state, noise, guidance branches, history)
WAN_VAE_ENCODE_BYTES_PER_PIXEL = 6000  # ComfyUI's own estimate for the Wan 2.1 VAE encoder (per pixel, x dtype size)


@dataclass(frozen=True)
class HostNeed:
    """Predicted host bytes of a run's two phases."""

    encode_bytes: int
    sample_bytes: int

    @property
    def peak_bytes(self) -> int:
        return max(self.encode_bytes, self.sample_bytes)


def pixel_window_bytes(frames: int, height: int, width: int) -> int:
    """A window of one cue video as float32 pixels, resized (input and output alive at once)."""
    return 2 * frames * 3 * height * width * 4


def latent_bytes(frames: int, height: int, width: int, channels: int = 16) -> int:
    """One float32 Wan latent video of ``frames`` pixel frames at ``height`` x ``width``."""
    return channels * ((frames - 1) // 4 + 1) * (height // 8) * (width // 8) * 4


def sampler_need(frames: int, height: int, width: int, vae_encode_bytes: int, activation_bytes: int,
                 dit_on_host: bool) -> HostNeed:
    """The host memory a sampler run adds.

    Args:
        frames: pixel frames per window.
        height: output height.
        width: output width.
        vae_encode_bytes: the VAE encoder's working memory for one window at this size.
        activation_bytes: the DiT's activations for one call on one window.
        dit_on_host: the DiT computes on the CPU (its activations then live in host memory).
    """
    encode = pixel_window_bytes(frames, height, width) + vae_encode_bytes
    sample = LATENT_COPIES * latent_bytes(frames, height, width) + (activation_bytes if dit_on_host else 0)
    return HostNeed(int(encode), int(sample))


def output_video_bytes(frames: int, height: int, width: int) -> int:
    """A cue video built as uint8 and handed to ComfyUI as a float32 IMAGE (both alive at once)."""
    return frames * height * width * 3 * (1 + 4)


def admit_output(frames: int, height: int, width: int, what: str, available: Optional[int] = None) -> None:
    """InputError when a node's output video alone cannot fit the host's available memory."""
    need = output_video_bytes(frames, height, width)
    available = host_available_bytes() if available is None else available
    if need > int(available * HEADROOM):
        raise InputError(f"{what} of {frames} frames at {width}x{height} needs about {need / GiB:.1f} GiB of host "
                         f"memory but {available / GiB:.1f} GiB is free: lower its width and height, or cut the clip")


def admit(need: HostNeed, what: str, available: Optional[int] = None) -> None:
    """InputError when ``need`` does not fit the host's available memory (HEADROOM of it).

    Args:
        need: the run's predicted host memory.
        what: the run, in words, for the message (e.g. "81 frames at 4096x4096").
        available: available host bytes; None reads them now.
    """
    available = host_available_bytes() if available is None else available
    allowed = int(available * HEADROOM)
    if need.peak_bytes <= allowed:
        return
    phase = "encoding the cues" if need.encode_bytes >= need.sample_bytes else "sampling"
    raise InputError(f"{what} needs about {need.peak_bytes / GiB:.1f} GiB of host memory for {phase} but "
                     f"{available / GiB:.1f} GiB is free: lower width and height (or window_frames), or free memory")
