"""Driving cue triplets of synthetic clips built from their exact ground truth instead of detectors.

The built-in segmenter and face detector are made for photographs: on the drawn figures the face
detector finds no face (so the face cue would be blank) and the segmenter's masks are rough. With
the exact person masks and face boxes the cues are what a perfect segmenter and face detector would
give, so a model trained on the synthetic world learns from clean cues. Everything after the
masks and boxes (cut-out, low-pass, face crop, soft location masks) is the cue pipeline's own.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..cues.config import CueConfig
from ..cues.triplet import CueTriplet, alignment_for, analyse, as_source, concatenate
from ..cues.triplet import render as render_cues
from ..errors import InputError


def exact_triplet(frames: np.ndarray, person: np.ndarray, face_boxes: np.ndarray,
                  config: CueConfig = CueConfig()) -> CueTriplet:
    """The cue triplet of a clip whose person masks and face boxes are known exactly.

    Args:
        frames: (F, H, W, 3) uint8 RGB.
        person: (F, H, W) bool person masks (Render.person, or load_truth()["person"]).
        face_boxes: (F, 4) x0, y0, x1, y1 (Render.face_boxes); an all-zero row means no face shows.
        config: cue settings.
    """
    if person.shape != frames.shape[:3] or face_boxes.shape != (len(frames), 4):
        raise InputError(f"frames {tuple(frames.shape)}, masks {tuple(person.shape)} and face boxes "
                         f"{tuple(face_boxes.shape)} disagree: pass one clip's Render.frames, .person, .face_boxes")
    source = as_source(frames)
    track = analyse(source, config, masks=person.astype(np.uint8) * 255)
    found = (face_boxes[:, 2] > face_boxes[:, 0]) & (face_boxes[:, 3] > face_boxes[:, 1])
    track = replace(track, face_boxes=face_boxes.astype(np.float64), face_found=found)
    return concatenate(list(render_cues(source, track, alignment_for(track, None), config)))
