"""Custom socket types of the pack; each payload is a typed core value, never a loose dict."""

from __future__ import annotations

from comfy_api.latest import io

from ..directanimator_core.pipeline.loaded_model import Animator
from ..directanimator_core.cues.triplet import CueTriplet


@io.comfytype(io_type="DA_CUES")
class DACues(io.ComfyTypeIO):
    """The Driving Cue Triplet of a clip: pose, face and location cues aligned to the reference."""

    Type = CueTriplet


@io.comfytype(io_type="DA_MODEL")
class DAModel(io.ComfyTypeIO):
    """A loaded DirectAnimator model (Wan backbone + CueFusion adapter) with its run settings."""

    Type = Animator
