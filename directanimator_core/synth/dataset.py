"""Synthetic clips and cross-identity pairs with exact ground truth, and the train / held-out split.

Split convention: a seed's parity is its split. Even seeds are training, odd seeds held out, for clip
seeds, pair seeds and every identity, motion and scene seed derived from them (derived seeds keep
their parent's parity), so no held-out identity, motion or scene can ever appear in training.
``split_seed("heldout", i)`` gives the i-th held-out seed.

A cross-ID pair (PAPER.md §3) is: a reference frame of identity A (in a pose of its own, standing where
M starts), a driving clip of identity B performing motion M, and the ground truth A performing M, in
A's scene, the clip a perfect animator would produce from that reference and that driver.

"Perfect" is defined by the cues the animator is given. The driver's cues are moved onto the reference
once, by the fixed map of cues/align.py (the driver's first body box onto the reference's), and a pose-
guided animator draws the person where the aligned cues put it. So the truth is A doing M placed as the
aligned driver is, frame by frame (pelvis, feet, size and camera shake follow B's aligned picture;
A's proportions, look and joint angles are A's own), over A's background as the reference shows it.
Before, the truth was A doing M in A's own placement and camera, which the aligned cues miss by up to a
token at 128 px (IoU 0.10-0.76 with the truth's figure; docs/driven.md), so every animator was scored,
and trained in stage 2, for an answer its cues contradict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..cues.align import Alignment, align_boxes
from ..cues.boxes import mask_box
from ..errors import InputError
from .identity import Identity, sample_identity
from .motion import Motion, sample_motion
from .render import Render, check_size, render, render_retargeted
from .scene import Scene, sample_scene

SPLITS = ("train", "heldout")
PAIR_TAG = 0x51


def split_seed(split: str, index: int) -> int:
    """The ``index``-th seed of ``split`` (train: even, heldout: odd).

    Args:
        split: "train" or "heldout".
        index: 0, 1, 2...
    """
    if split not in SPLITS:
        raise InputError(f"split {split!r} is unknown: use one of {SPLITS}")
    if index < 0:
        raise InputError(f"index={index} is negative: seeds are numbered from 0")
    return 2 * int(index) + SPLITS.index(split)


def split_of(seed: int) -> str:
    """Which split ``seed`` belongs to."""
    return SPLITS[int(seed) % 2]


def derived_seed(seed: int, role: int) -> int:
    """A child seed of ``seed`` for one role (identity B, reference motion...), same parity as ``seed``.

    Args:
        seed: the parent (clip or pair) seed.
        role: a small integer naming the role.
    """
    drawn = int(np.random.SeedSequence([PAIR_TAG, int(seed), int(role)]).generate_state(1, dtype=np.uint32)[0])
    return 2 * drawn + int(seed) % 2


@dataclass(frozen=True, eq=False)
class Clip:
    """One identity performing one motion in one scene, rendered."""

    identity: Identity
    motion: Motion
    scene: Scene
    render: Render


@dataclass(frozen=True, eq=False)
class CrossPair:
    """reference: (H, W, 3) uint8, identity A in its own pose. driving: B performs the motion in B's
    scene. truth: A performs the same motion where the driver's aligned cues put it, over A's scene (the
    exact answer). alignment: the driver-to-reference map the truth follows (driver_alignment)."""

    reference: np.ndarray
    reference_render: Render  # one frame, with its masks and joints
    driving: Clip
    truth: Clip
    alignment: Alignment


def driver_alignment(driving: Render, reference: Render) -> Alignment:
    """The fixed map of the driver's cues onto the reference (cues/align.align_boxes): the first frame that
    shows the driver, its body box onto the reference's, as the cue pipeline aligns them."""
    shown = driving.person.reshape(len(driving.person), -1).any(axis=1)
    if not shown.any():
        raise InputError("the driving clip shows no person in any frame: pick another seed or motion")
    anchor = int(np.argmax(shown))
    return align_boxes(mask_box(driving.person[anchor]), mask_box(reference.person[0]),
                       reference.frames.shape[1:3], anchor)


def _check(seed: int, frames: int, height: int, width: int) -> None:
    if int(seed) < 0:
        raise InputError(f"seed={seed} is negative: seeds are non-negative integers (parity = split)")
    check_size(height, width, frames)


def same_id_clip(seed: int, frames: int = 17, height: int = 128, width: int = 128,
                 kind: Optional[str] = None) -> Clip:
    """The clip of ``seed``: identity, motion and scene all drawn from it.

    Args:
        seed: clip seed (even = train, odd = held out).
        frames: F.
        height: H.
        width: W.
        kind: motion kind (motion.MOTION_KINDS) or None to draw it from the seed.
    """
    _check(seed, frames, height, width)
    identity, motion, scene = sample_identity(seed), sample_motion(seed, frames, kind), sample_scene(seed)
    return Clip(identity, motion, scene, render(identity, motion, scene, height, width))


def cross_id_pair(seed: int, frames: int = 17, height: int = 128, width: int = 128,
                  kind: Optional[str] = None) -> CrossPair:
    """Identity A, identity B != A and motion M drawn from ``seed``; see the module docstring.

    Args:
        seed: pair seed (even = train, odd = held out).
        frames: F of the driving and ground-truth clips.
        height: H.
        width: W.
        kind: motion kind of M, or None to draw it.
    """
    _check(seed, frames, height, width)
    a, b, m = (derived_seed(seed, role) for role in (1, 2, 3))
    identity_a, identity_b = sample_identity(a), sample_identity(b)
    motion = sample_motion(m, frames, kind)
    scene_a, scene_b = sample_scene(a), sample_scene(b)
    # A's own pose for the reference picture, standing where M starts: an animator places the motion where
    # the reference person stands (the location cue is aligned to the reference's body), so a truth that
    # started elsewhere would score every animator for a move it was never asked to make.
    rest = replace(sample_motion(derived_seed(seed, 4), 1, "smooth"), root_x=motion.root_x[:1].copy(),
                   bounce=motion.bounce[:1].copy())
    reference = render(identity_a, rest, scene_a, height, width)
    driving = render(identity_b, motion, scene_b, height, width)
    alignment = driver_alignment(driving, reference)
    truth = render_retargeted(identity_a, motion, scene_a, identity_b, scene_b, alignment.matrix, height, width)
    return CrossPair(
        reference=reference.frames[0],
        reference_render=reference,
        driving=Clip(identity_b, motion, scene_b, driving),
        truth=Clip(identity_a, motion, scene_a, truth),
        alignment=alignment,
    )
