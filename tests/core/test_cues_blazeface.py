"""MediaPipe's short-range face detector (face_detection_short_range.tflite from the mediapipe 0.10.21
wheel) run by cv2.dnn and decoded by cues/blazeface.py: the anchor layout and the box decoding without
the model, then real portraits (a pan over Grace Hopper, non-square crops of the astronaut) with it."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from directanimator_core.cues import blazeface, detectors
from directanimator_core.cues.boxes import iou
from directanimator_core.cues.config import CueConfig, FaceConfig
from directanimator_core.cues.triplet import build_face_cue, with_face_size
from directanimator_core.errors import CheckpointError
from harness import media


@pytest.fixture(scope="module")
def model() -> str:
    try:
        return str(media.blazeface_tflite())
    except (subprocess.CalledProcessError, OSError) as error:
        pytest.skip(f"face_detection_short_range.tflite not available (pip could not fetch mediapipe 0.10.21: "
                    f"{type(error).__name__})")


# -- without the model ---------------------------------------------------------------------------
def test_anchors_are_the_short_range_models_896() -> None:
    """16x16 cells x 2 at stride 8, then 8x8 cells x 6 at stride 16; row-major, cell centres."""
    centres = blazeface.anchors()
    assert centres.shape == (896, 2)
    assert np.allclose(centres[0], [0.5 / 16, 0.5 / 16]) and np.allclose(centres[1], centres[0])
    assert np.allclose(centres[2], [1.5 / 16, 0.5 / 16])  # the next cell along x (x first)
    assert np.allclose(centres[32], [0.5 / 16, 1.5 / 16])  # the next row after 16 cells x 2
    assert np.allclose(centres[511], [15.5 / 16, 15.5 / 16])
    assert np.allclose(centres[512:518], [0.5 / 8, 0.5 / 8])  # six anchors share the first stride-16 cell
    assert np.allclose(centres[518], [1.5 / 8, 0.5 / 8]) and np.allclose(centres[-1], [7.5 / 8, 7.5 / 8])


def test_a_known_box_is_decoded() -> None:
    """Regressors are input pixels from the anchor's centre: (+8, -4) and 32x48 pixels on anchor 600."""
    logits, regressors = np.full(896, -1000.0, np.float32), np.zeros((896, 16), np.float32)
    logits[600], regressors[600, :4] = 2.0, [8, -4, 32, 48]
    boxes, scores = blazeface.decode(logits, regressors)
    cx, cy = blazeface.anchors()[600] * 128 + [8, -4]
    assert np.allclose(boxes[600] * 128, [cx - 16, cy - 24, cx + 16, cy + 24], atol=1e-4)
    assert scores[600] == pytest.approx(1 / (1 + np.exp(-2.0))) and scores.argmax() == 600
    assert scores[np.arange(896) != 600].max() < 1e-40  # a logit of -1000 is clipped, not an overflow


def test_weighted_nms_merges_overlaps_and_keeps_apart() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    kept = blazeface.weighted_nms(boxes, np.array([0.9, 0.3, 0.6]))
    assert len(kept) == 2 and kept[0][1] == pytest.approx(0.9) and kept[1][1] == pytest.approx(0.6)
    assert np.allclose(kept[0][0], [0.25, 0, 10.25, 10])  # (0.9 * 0 + 0.3 * 1) / 1.2
    assert np.allclose(kept[1][0], boxes[2])


def test_letterbox_keeps_the_aspect() -> None:
    canvas, scale, offset = blazeface.letterbox(np.full((300, 600, 3), 200, np.uint8))
    assert canvas.shape == (128, 128, 3) and scale == pytest.approx(128 / 600) and list(offset) == [0, 32]
    assert canvas[31].max() == 0 and canvas[32].min() == 200 and canvas[96].max() == 0


def test_the_selfie_segmenter_is_not_offered_as_a_face_detector() -> None:
    assert blazeface.is_face_model("face_detection_short_range.tflite") and blazeface.is_face_model("centerface.onnx")
    assert not blazeface.is_face_model("selfie_segmentation.tflite")


# -- with the model, on real portraits -------------------------------------------------------------
def test_a_panned_portrait_has_its_face_where_the_pan_moves_it(model) -> None:
    """Grace Hopper's portrait panned (12 frames, 400-pixel crops shown at 320): the face found on the
    whole still, moved by the pan's known crop, is found in every frame; it is the face Haar finds."""
    still, count = media.grace_hopper(), 12
    whole, haar = detectors.detect_faces(still, 12, model)[0], detectors.detect_faces(still, 12)[0]
    assert iou(whole, haar) > 0.6
    for index, frame in enumerate(media.pan_clip(still, count)):
        t = index / (count - 1)
        x, y = round(t * (still.shape[1] - 400)), round(t * 20)
        truth = (whole - [x, y, x, y]) * 320 / 400
        found = detectors.detect_faces(frame, 12, model)
        assert len(found) == 1 and iou(found[0], truth) > 0.85, (index, found, truth)


def test_non_square_frames_give_the_same_face(model) -> None:
    """The astronaut, and tall and wide crops of it: the same face box in the still's pixels."""
    still = media.astronaut()
    square = detectors.detect_faces(still, 12, model)[0]
    tall = detectors.detect_faces(np.ascontiguousarray(still[:, 100:400]), 12, model)[0] + [100, 0, 100, 0]
    wide = detectors.detect_faces(np.ascontiguousarray(still[:300]), 12, model)[0]
    assert iou(square, tall) > 0.8 and iou(square, wide) > 0.8, (square, tall, wide)


def test_the_face_cue_runs_on_it_and_vtest_has_no_face_for_it(model) -> None:
    clip = media.pan_clip(media.astronaut(), count=6)
    faces, found = build_face_cue(clip, with_face_size(CueConfig(face=FaceConfig(onnx_path=model)), 192, 192))
    assert found.all()
    for frame in faces:  # checked by the other detector
        box = detectors.detect_faces(frame, 40)[0]
        assert np.abs((box[:2] + box[2:]) / 2 - 96).max() < 16
    assert not detectors.detect_faces(np.ascontiguousarray(media.vtest_frames(1)[0]), 6, model)


def test_a_damaged_or_wrong_tflite_is_refused_in_one_line(model, tmp_path) -> None:
    detectors.check_face_detector(model)
    broken = tmp_path / "face_detection_short_range.tflite"
    with open(model, "rb") as source:
        broken.write_bytes(source.read()[:50_000])
    for path in (broken, media.selfie_segmenter()):
        with pytest.raises(CheckpointError) as error:
            detectors.check_face_detector(str(path))
        assert path.name in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="is not a TFLite model OpenCV can run"):
        detectors.detect_faces(media.astronaut(), 12, str(broken))
