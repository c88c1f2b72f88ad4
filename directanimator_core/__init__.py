"""DirectAnimator core: the engine behind the ComfyUI nodes, usable without ComfyUI.

Animates a reference image of a person with the motion and expression of a driving video, driven by
cues cut straight from the driving video's pixels (DirectAnimator, ICLR 2026).

Axis letters, used in every shape comment and einops pattern of the package:
    B batch, C channels, F pixel frames, T latent frames, H height, W width,
    L tokens, D hidden width.

Importing this package does no work: no device detection, no CUDA initialisation, no ComfyUI.
"""

from .errors import (
    CheckpointError,
    CueError,
    DirectAnimatorError,
    InputError,
    Interrupted,
    MemoryPlanError,
    NotImplementedYet,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "CueError",
    "DirectAnimatorError",
    "InputError",
    "Interrupted",
    "MemoryPlanError",
    "NotImplementedYet",
    "__version__",
]
