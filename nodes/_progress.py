"""Progress and interrupts: core loops take ``progress(done, total)`` and ``should_stop()``; these
map them onto ComfyUI's progress bar and its Cancel button."""

from __future__ import annotations

from typing import Callable

import comfy.model_management
import comfy.utils


def progress_bar(total: int) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback that moves ComfyUI's progress bar for the running node."""
    bar = comfy.utils.ProgressBar(total)

    def update(done: int, total: int) -> None:
        bar.update_absolute(done, total)

    return update


def should_stop() -> bool:
    """Raises ComfyUI's own interrupt exception when the user pressed Cancel (so the run ends the
    way every other node's does); otherwise returns False."""
    comfy.model_management.throw_exception_if_processing_interrupted()
    return False


def step_callback(total: int, latent_format: object = None):
    """A core ``callback(StepInfo)`` that moves the progress bar per step, with a latent preview image
    when ComfyUI's preview method allows one (``latent_format``: e.g. comfy.latent_formats.Wan21())."""
    import latent_preview  # ComfyUI's own previewer module (needs the server's args)

    bar = comfy.utils.ProgressBar(total)
    device = comfy.model_management.intermediate_device()
    previewer = None if latent_format is None else latent_preview.get_previewer(device, latent_format)

    def update(info) -> None:
        preview = None
        if previewer is not None:  # the middle frame: frame 0 is the reference, the middle shows the motion
            middle = info.denoised.shape[2] // 2
            preview = previewer.decode_latent_to_preview_image("JPEG", info.denoised[:, :, middle:middle + 1].float().cpu())
        bar.update_absolute(info.step + 1, info.total, preview)

    return update
