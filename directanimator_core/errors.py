"""Errors a user can act on.

Every message names the bad value, the rule it broke and what to do, in one line, and is raised
before heavy work starts (diffusers' ``check_inputs`` habit).
"""


class DirectAnimatorError(Exception):
    """Base of every error the pack raises on purpose."""


class InputError(DirectAnimatorError, ValueError):
    """A value handed in by the user (frames, masks, sizes, options) breaks a rule."""


class CueError(DirectAnimatorError):
    """The driving cues cannot be built from this footage (no person, no frames...)."""


class CheckpointError(DirectAnimatorError):
    """A weights file is not what was expected (wrong model, missing keys, bad shapes)."""


class MemoryPlanError(DirectAnimatorError):
    """No placement of the weights fits the memory budget."""


class NumericError(DirectAnimatorError):
    """Non-finite values (NaN, inf) where numbers were expected: in weights, inputs or the sampler's state."""


class NotImplementedYet(DirectAnimatorError):
    """A command or option that a later part of the project fills in."""


class Interrupted(DirectAnimatorError):
    """The caller asked a long loop (sampling, decoding) to stop; raised between steps, never mid-step."""
