"""Synthetic clips -> Driving Cue Triplets cut from their exact masks and face boxes.

The cue pipeline (cues/) runs as for real footage, except that the person masks and face boxes come
from the renderer (synth/render.py) instead of the built-in segmenter and face detector: the synthetic
world knows them exactly, so the default model learns from clean cues and the scores measure the
animator, not a detector. The recipe's ablations (recipe.py) change the cues here, once, for
training, the demo and the bench alike.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import cv2
import numpy as np

from ..cues import align
from ..cues.boxes import mask_box
from ..cues.config import CueConfig, PoseConfig
from ..cues.frames import ArraySource
from ..cues.reference import ReferenceBoxes
from ..cues.triplet import CueTriplet, DriverTrack, analyse, concatenate, render
from ..synth import draw_skeleton
from ..synth.render import Render
from .recipe import Recipe

NO_LOWPASS_CUTOFF = 0.5  # Nyquist: the low-pass keeps every frequency


def cue_config(recipe: Recipe) -> CueConfig:
    """Cue settings of ``recipe``: the library defaults, the recipe's low-pass cut-off, opened fully when
    the low-pass is ablated."""
    cutoff = recipe.pose_cutoff if recipe.lowpass else NO_LOWPASS_CUTOFF
    return replace(CueConfig(), pose=PoseConfig(cutoff=cutoff, greyscale=recipe.pose_greyscale))


def exact_track(clip: Render) -> DriverTrack:
    """The analysis pass's result (cues/triplet.analyse) from the renderer's exact masks and face boxes."""
    masks = clip.person.astype(np.uint8) * 255  # (F, H, W)
    boxes = [mask_box(m) for m in masks]
    face_found = clip.face_boxes[:, 2] > clip.face_boxes[:, 0]
    return DriverTrack(
        height=masks.shape[1], width=masks.shape[2],
        body_boxes=np.stack([b if b is not None else np.full(4, np.nan) for b in boxes]),
        person=np.array([b is not None for b in boxes]), quality=np.ones(len(masks), np.float32),
        face_boxes=clip.face_boxes.astype(np.float64), face_found=face_found,
        masks=tuple(cv2.imencode(".png", m)[1].tobytes() for m in masks))


def reference_boxes(reference: Render) -> ReferenceBoxes:
    """Body and face boxes of a one-frame reference render."""
    face = reference.face_boxes[0].astype(np.float64)
    return ReferenceBoxes(body=mask_box(reference.person[0]), face=face if face[2] > face[0] else None,
                          size=reference.frames.shape[1:3])


def exact_triplet(clip: Render, recipe: Recipe, reference: Optional[Render] = None) -> CueTriplet:
    """The cue triplet of a rendered driving clip, aligned to ``reference`` (a one-frame render) when given.

    Args:
        clip: the driving clip's render.
        recipe: which cues (pixel pose or skeleton map, face, location, low-pass).
        reference: the reference picture's render; None keeps the driver's frame (same-ID clips).
    """
    return triplet_of(clip, exact_track(clip), recipe, reference)


def segmented_triplet(clip: Render, recipe: Recipe, reference: Optional[Render] = None) -> CueTriplet:
    """The cue triplet as real footage gets it: masks and face boxes from the built-in segmenter and face
    detector (cues/triplet.analyse) instead of the renderer, so the masks are noisy (the reproduction
    table's segmenter row). The reference's boxes stay exact: the row is about the driver's masks."""
    return triplet_of(clip, analyse(ArraySource(clip.frames), cue_config(recipe)), recipe, reference)


def triplet_of(clip: Render, track: DriverTrack, recipe: Recipe, reference: Optional[Render]) -> CueTriplet:
    """Render the cues of ``track`` (the clip's analysis), aligned to ``reference``, with the recipe's ablations."""
    config = cue_config(recipe)
    if reference is None:
        alignment = align.identity(track.height, track.width)
    else:
        anchor = int(np.argmax(track.person))
        alignment = align.align_boxes(track.body_boxes[anchor], reference_boxes(reference).body,
                                      reference.frames.shape[1:3], anchor)
    triplet = concatenate(render(ArraySource(clip.frames), track, alignment, config), track.num_frames)
    return ablate(triplet, clip, recipe)


def ablate(triplet: CueTriplet, clip: Render, recipe: Recipe) -> CueTriplet:
    """The recipe's cue ablations: skeleton map for the pose cue, no face cue, no location cue."""
    if recipe.pose_cue == "skeleton":
        skeleton = draw_skeleton(clip.joints, clip.frames.shape[1], clip.frames.shape[2], clip.joint_visible)
        triplet = replace(triplet, pose=align.warp(skeleton, triplet.alignment, fill=0))
    if not recipe.face_cue:
        triplet = replace(triplet, face=np.zeros_like(triplet.face), face_mask=np.zeros_like(triplet.face_mask))
    if not recipe.location_cue:
        triplet = replace(triplet, body_mask=np.zeros_like(triplet.body_mask),
                          face_mask=np.zeros_like(triplet.face_mask))
    return triplet
