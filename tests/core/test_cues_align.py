"""Driver-to-reference alignment on real footage: the vtest walker mapped onto the astronaut."""

from __future__ import annotations

import numpy as np
import pytest

from directanimator_core.cues import align
from directanimator_core.cues.boxes import mask_box
from directanimator_core.cues.config import CueConfig, LocationConfig
from directanimator_core.cues.reference import find_reference
from directanimator_core.cues.triplet import build_triplet
from directanimator_core.errors import CueError, InputError
from harness import media

HARD = CueConfig(location=LocationConfig(softness=0.0, grid=0))  # exact mask edges to measure


def _height_and_centre(box: np.ndarray) -> np.ndarray:
    return np.array([box[3] - box[1], (box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


@pytest.fixture(scope="module")
def walker_on_astronaut():
    return build_triplet(media.vtest_frames(8), HARD, reference=media.astronaut())


def test_driver_body_lands_on_the_reference_body(walker_on_astronaut) -> None:
    triplet = walker_on_astronaut
    alignment = triplet.alignment
    aligned = mask_box(triplet.body_mask[alignment.anchor_frame] > 127)
    reference = np.array(alignment.reference_box)
    assert triplet.body_mask.shape[1:] == (512, 512)  # rendered at the reference's size
    assert np.abs(_height_and_centre(aligned) - _height_and_centre(reference)).max() <= 4.0
    assert alignment.scale > 3  # the walker is ~80 px tall, the astronaut's body ~470 px


def test_the_pose_cue_moves_with_the_masks(walker_on_astronaut) -> None:
    triplet = walker_on_astronaut
    index = triplet.alignment.anchor_frame
    drawn = np.abs(triplet.pose[index].astype(int) - 128).max(-1) > 24  # off the neutral grey
    body = triplet.body_mask[index] > 0
    assert (drawn & body).sum() > 0.8 * drawn.sum()


def test_one_transform_for_the_whole_clip(walker_on_astronaut) -> None:
    """The walker keeps walking in the aligned cue: the masks move, the scale does not change.
    (Scaled 6x, he leaves the 512-pixel canvas after a few frames, as he leaves the real frame.)"""
    boxes = [mask_box(m > 127) for m in walker_on_astronaut.body_mask[:4]]
    heights = np.array([b[3] - b[1] for b in boxes])
    centres = np.array([(b[0] + b[2]) / 2 for b in boxes])
    assert centres[-1] < centres[0] - 20  # walking left, scaled up ~6x
    assert heights.std() / heights.mean() < 0.1


def test_reference_mask_gives_the_reference_body() -> None:
    mask = np.zeros((512, 512), np.uint8)
    mask[120:420, 200:300] = 255
    triplet = build_triplet(media.vtest_frames(3), HARD, reference=media.astronaut(), reference_mask=mask)
    assert triplet.alignment.reference_box == (200.0, 120.0, 300.0, 420.0)
    aligned = mask_box(triplet.body_mask[0] > 127)
    assert abs((aligned[3] - aligned[1]) - 300) <= 3 and abs((aligned[1] + aligned[3]) / 2 - 270) <= 3


def test_alignment_maps_box_onto_box() -> None:
    result = align.align_boxes(np.array([10.0, 20.0, 30.0, 100.0]), np.array([100.0, 50.0, 200.0, 450.0]), (512, 512))
    mapped = result.apply(np.array([10.0, 20.0, 30.0, 100.0]))
    assert result.scale == 5.0
    assert np.allclose(_height_and_centre(mapped), _height_and_centre(np.array([100.0, 50.0, 200.0, 450.0])))


def test_without_reference_the_cues_stay_in_the_driver_frame() -> None:
    triplet = build_triplet(media.vtest_frames(2), HARD)
    assert triplet.alignment.scale == 1.0 and triplet.pose.shape[1:3] == (576, 768)


def test_reference_faults_are_named() -> None:
    with pytest.raises(InputError, match="reference mask is 100x100 but the reference image is 512x512"):
        find_reference(media.astronaut(), np.ones((100, 100), np.uint8), HARD)
    with pytest.raises(InputError, match="reference mask is empty"):
        find_reference(media.astronaut(), np.zeros((512, 512), np.uint8), HARD)
    lawn = np.ascontiguousarray(media.vtest_frames(1)[0, 400:576, 0:250])
    with pytest.raises(CueError, match="no person was found in the reference image.*connect a reference mask"):
        find_reference(lawn, None, HARD)
