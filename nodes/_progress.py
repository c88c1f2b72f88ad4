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
