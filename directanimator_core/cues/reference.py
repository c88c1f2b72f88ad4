"""The reference person's body and face boxes: from a user's mask, else from the same built-in
detectors the driver goes through (HOG for a standing figure, the face for a portrait)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import CueError, InputError
from . import align, detectors, segment
from .boxes import Box, area, mask_box
from .config import CueConfig


@dataclass(frozen=True)
class ReferenceBoxes:
    body: Box  # (4,) x0, y0, x1, y1
    face: Optional[Box]
    size: tuple[int, int]  # (H, W) of the reference image
    shoulders: Optional[float] = None  # the person mask's shoulder width (align.shoulder_width), when cut


def find_reference(image: np.ndarray, mask: Optional[np.ndarray], config: CueConfig) -> ReferenceBoxes:
    """Body and face boxes of the person in the reference image.

    Args:
        image: (H, W, 3) uint8 RGB.
        mask: optional (H, W) person mask (uint8 0..255 or float 0..1); its box is the body box.
        config: cue settings (detector choices).
    """
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise InputError(f"reference image has shape {image.shape} and dtype {image.dtype}; expected (H, W, 3) uint8 RGB")
    height, width = image.shape[:2]
    faces = detectors.detect_faces(image, segment.face_side(height, width), config.face.onnx_path)
    face = faces[0] if faces else None
    if mask is not None:
        body, person = _mask_body(mask, height, width)
    else:
        body, person = _detected_body(image, config, faces)
    shoulders = align.shoulder_width(person) if person is not None else None
    return ReferenceBoxes(body=body, face=face, size=(height, width), shoulders=shoulders)


def _mask_body(mask: np.ndarray, height: int, width: int) -> tuple[Box, np.ndarray]:
    if mask.shape != (height, width):
        raise InputError(f"reference mask is {mask.shape[1]}x{mask.shape[0]} but the reference image is "
                         f"{width}x{height}; give a mask of the reference's size")
    person = mask > (127 if mask.dtype == np.uint8 else 0.5)
    box = mask_box(person)
    if box is None:
        raise InputError("reference mask is empty; mask the person in the reference image or leave the input unconnected")
    return box, person


def _detected_body(image: np.ndarray, config: CueConfig, faces: list[Box]) -> tuple[Box, Optional[np.ndarray]]:
    people = segment.find_people(image, config.segment.hog_threshold, 0.01 * image.shape[0] * image.shape[1],
                                 faces=faces)
    if not people:
        raise CueError("no person was found in the reference image (no face, no standing figure); connect a "
                       "reference mask")
    rough = people[0]
    person = segment.cut_person(image, rough, None, config.segment)
    tight = mask_box(person)
    if tight is not None and area(tight) > 0.3 * area(rough):
        return tight, person
    return rough, None
