"""The face cue on real faces: a panning shot of scikit-image's astronaut; vtest.avi has none."""

from __future__ import annotations

import numpy as np
import pytest

from directanimator_core.cues import detectors, face
from directanimator_core.cues.boxes import smooth_runs
from directanimator_core.cues.config import CueConfig, FaceConfig
from directanimator_core.cues.triplet import build_face_cue, build_triplet, with_face_size
from harness import media


@pytest.fixture(scope="module")
def pan_triplet():
    clip = media.pan_clip(media.astronaut(), count=10)
    return clip, build_triplet(clip, with_face_size(CueConfig(), 192, 192))


def test_face_crop_is_centred_on_the_face(pan_triplet) -> None:
    _, triplet = pan_triplet
    assert triplet.face_found.all()
    assert triplet.face.shape == (10, 192, 192, 3)
    for frame in triplet.face:
        found = detectors.detect_faces(frame, 40)
        assert found, "no face in the face cue"
        cx, cy = (found[0][:2] + found[0][2:]) / 2
        assert abs(cx - 96) < 12 and abs(cy - 96) < 12, (cx, cy)
        side = found[0][2] - found[0][0]
        assert 0.45 < side / 192 < 0.85  # zoomed: margin 1.6 puts the face at ~60% of the side


def test_face_cue_follows_the_pan(pan_triplet) -> None:
    """The camera pans right, so the face moves left in the driver: the crops keep it still."""
    clip, triplet = pan_triplet
    raw = [detectors.detect_faces(frame, 40)[0] for frame in clip]
    assert raw[-1][0] < raw[0][0] - 60


def test_box_smoothing_removes_jitter() -> None:
    rng = np.random.default_rng(0)
    steady = np.tile([100.0, 50.0, 180.0, 130.0], (40, 1)) + np.linspace(0, 40, 40)[:, None] * [1, 0, 1, 0]
    jittered = steady + rng.normal(0, 4, steady.shape)
    smoothed = smooth_runs(jittered, np.ones(40, bool), 3.0)
    assert np.abs(np.diff(smoothed, axis=0)).std() < 0.3 * np.abs(np.diff(jittered, axis=0)).std()
    inner = slice(6, -6)  # a steady move is followed, not lagged
    assert np.abs(smoothed[inner] - steady[inner]).mean() < 2.0


def test_smoothing_never_bridges_a_gap() -> None:
    boxes = np.array([[0, 0, 10, 10]] * 3 + [[0, 0, 0, 0]] * 2 + [[100, 100, 110, 110]] * 3, float)
    valid = np.array([True] * 3 + [False] * 2 + [True] * 3)
    out = smooth_runs(boxes, valid, 2.0)
    assert np.allclose(out[:3], boxes[:3]) and np.allclose(out[5:], boxes[5:]) and np.allclose(out[3:5], 0)


def test_frames_without_a_face_are_blank_and_flagged() -> None:
    clip = media.pan_clip(media.astronaut(), count=4)
    boxes = np.tile([100.0, 40.0, 180.0, 120.0], (4, 1))
    found = np.array([True, False, True, False])
    out = face.crop_faces(clip, boxes, found, FaceConfig(), (64, 64))
    assert (out[1] == 0).all() and (out[3] == 0).all() and out[0].std() > 10


def test_no_face_anywhere_gives_a_blank_cue_and_says_so() -> None:
    triplet = build_triplet(media.vtest_frames(6), CueConfig())
    assert not triplet.face_found.any() and (triplet.face == 0).all()
    report = triplet.report()
    assert report["frames_with_face"] == 0 and report["face_cue"].startswith("blank: no face")


def test_margin_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="margin=0.5 is below 1"):
        FaceConfig(margin=0.5)


def test_face_cue_alone_matches_the_triplet_flags(pan_triplet) -> None:
    from directanimator_core.cues.triplet import build_face_cue

    clip, triplet = pan_triplet
    faces, found = build_face_cue(clip, with_face_size(CueConfig(), 192, 192))
    assert found.all() and faces.shape == triplet.face.shape
    for alone, bundled in zip(faces, triplet.face):  # same face, same framing
        a, b = detectors.detect_faces(alone, 40)[0], detectors.detect_faces(bundled, 40)[0]
        assert np.abs(a - b).max() < 12
    masks = np.zeros(clip.shape[:3], np.uint8)  # a person mask that excludes the face: nothing found
    masks[:, 250:, :] = 255
    _, none = build_face_cue(clip, CueConfig(), masks=masks)
    assert not none.any()


def test_centerface_onnx_detector_gives_a_centred_face_cue() -> None:
    onnx = str(media.centerface_onnx())
    haar = detectors.detect_faces(media.astronaut(), 40)[0]
    net = detectors.detect_faces(media.astronaut(), 40, onnx)[0]
    assert np.abs((haar[:2] + haar[2:]) / 2 - (net[:2] + net[2:]) / 2).max() < 15  # two detectors, one face
    clip = media.pan_clip(media.astronaut(), count=6)
    config = with_face_size(CueConfig(face=FaceConfig(onnx_path=onnx)), 192, 192)
    faces, found = build_face_cue(clip, config)
    assert found.all()
    for frame in faces:  # checked by the other detector
        box = detectors.detect_faces(frame, 40)[0]
        assert np.abs((box[:2] + box[2:]) / 2 - 96).max() < 16
    assert not detectors.detect_faces(np.ascontiguousarray(media.vtest_frames(1)[0]), 6, onnx)  # no face that size


def test_unknown_onnx_face_detector_is_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="nope.onnx does not exist; put a CenterFace or YuNet .onnx"):
        detectors.detect_faces(media.astronaut(), 40, str(tmp_path / "nope.onnx"))


def test_a_close_up_portrait_gets_its_whole_face_in_every_frame() -> None:
    """A slow pan over Grace Hopper's portrait (her face a third of the frame, its chin past the middle
    of her box): the face is found in every frame and is the face the detector finds on the whole frame,
    chin included, not the eyes alone (the search once stopped half way down the person's box: 0 of 12)."""
    from directanimator_core.cues.boxes import iou
    from directanimator_core.cues.frames import ArraySource
    from directanimator_core.cues.triplet import analyse

    clip = media.pan_clip(media.grace_hopper(), 12)
    track = analyse(ArraySource(clip), CueConfig())
    assert track.face_found.all()
    for index, frame in enumerate(clip):
        whole = detectors.detect_faces(frame, 12)[0]  # one face in view; found on the whole frame
        assert whole[3] - whole[1] > 0.3 * clip.shape[1]  # a close-up
        assert iou(track.face_boxes[index], whole) > 0.7, index
