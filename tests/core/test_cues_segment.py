"""Person masks on real footage: the built-in segmenter follows one walker through vtest.avi."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from directanimator_core.cues import segment
from directanimator_core.cues.config import CueConfig, SegmentConfig
from directanimator_core.cues.frames import ArraySource
from directanimator_core.cues.triplet import analyse
from directanimator_core.errors import CueError, InputError
from harness import media

# The walker in black who crosses vtest.avi from right to left in frames 0-23, boxed by hand
# (x0, y0, x1, y1) from enlarged crops; in between he walks at a steady pace.
WALKER = {0: (640, 240, 686, 322), 12: (524, 238, 564, 326), 23: (412, 240, 451, 313)}


def walker_box(frame: int) -> np.ndarray:
    keys = sorted(WALKER)
    lo = max(k for k in keys if k <= frame)
    hi = min(k for k in keys if k >= frame)
    t = 0.0 if hi == lo else (frame - lo) / (hi - lo)
    return (1 - t) * np.array(WALKER[lo], float) + t * np.array(WALKER[hi], float)


@pytest.fixture(scope="module")
def walker_track():
    frames = media.vtest_frames(24)
    return frames, analyse(ArraySource(frames), CueConfig())


def test_mask_covers_the_tracked_walker_in_most_frames(walker_track) -> None:
    frames, track = walker_track
    good = 0
    for index in range(len(frames)):
        mask = track.mask(index) > 0
        x0, y0, x1, y1 = walker_box(index).round().astype(int)
        pad = 6
        inside = mask[y0 - pad:y1 + pad, x0 - pad:x1 + pad].sum()
        covered = mask[y0:y1, x0:x1].mean()  # share of the walker's box the mask fills
        if mask.sum() and inside / mask.sum() > 0.8 and covered > 0.25:  # a walker fills about 45% of his box
            good += 1
    assert track.person.all()
    assert good >= 0.8 * len(frames), f"mask on the walker in only {good} of {len(frames)} frames"


def test_one_person_is_followed_not_whoever_is_largest(walker_track) -> None:
    _, track = walker_track
    centres = (track.body_boxes[:, :2] + track.body_boxes[:, 2:]) / 2
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
    assert steps.max() < 25, f"the followed box jumped {steps.max():.0f} px in one frame"


def test_person_index_picks_someone_else() -> None:
    frames = media.vtest_frames(4)
    first = analyse(ArraySource(frames), CueConfig())
    second = analyse(ArraySource(frames), CueConfig(segment=SegmentConfig(person_index=1)))
    a, b = first.body_boxes[0], second.body_boxes[0]
    assert np.abs((a[:2] + a[2:]) - (b[:2] + b[2:])).max() > 60


def test_external_masks_are_used_as_given() -> None:
    frames = media.vtest_frames(3)
    masks = np.zeros(frames.shape[:3], np.float32)
    masks[:, 100:200, 300:350] = 1.0
    track = analyse(ArraySource(frames), CueConfig(), masks=masks)
    assert track.person.all()
    assert np.array_equal(track.body_boxes[0], [300, 100, 350, 200])
    assert np.array_equal(track.mask(2) > 0, masks[2] > 0.5)


def test_empty_external_mask_frames_are_flagged() -> None:
    frames = media.vtest_frames(3)
    masks = np.zeros(frames.shape[:3], np.uint8)
    masks[1, 10:60, 10:40] = 255
    track = analyse(ArraySource(frames), CueConfig(), masks=masks)
    assert track.person.tolist() == [False, True, False]
    assert track.quality[0] == 0 and track.quality[2] == 0


@pytest.mark.parametrize("shape, words", [
    ((2, 576, 768), "is 2 x 768x576 but the video is 3 x 768x576"),
    ((3, 100, 768), "is 3 x 768x100 but the video is 3 x 768x576"),
    ((3, 576), "expected (frames, height, width)"),
])
def test_mask_count_or_size_mismatch_is_named(shape, words) -> None:
    frames = media.vtest_frames(3)
    with pytest.raises(InputError, match=None) as error:
        analyse(ArraySource(frames), CueConfig(), masks=np.zeros(shape, np.uint8))
    assert words in str(error.value) and "\n" not in str(error.value)


def test_no_person_anywhere_says_to_connect_a_mask() -> None:
    grass = media.vtest_frames(6)[:, 400:576, 0:250]  # the empty lawn at the bottom left
    with pytest.raises(CueError, match="no person was found in any of the 6 driving frames; connect a person mask"):
        analyse(ArraySource(np.ascontiguousarray(grass)), CueConfig())


def test_person_index_beyond_the_crowd_is_named() -> None:
    frames = media.vtest_frames(2)
    with pytest.raises(CueError, match="person_index=9 but at most"):
        analyse(ArraySource(frames), CueConfig(segment=SegmentConfig(person_index=9)))


def test_quality_scores_drop_poor_frames_reproducibly(walker_track) -> None:
    _, track = walker_track
    assert track.quality.min() >= 0 and track.quality.max() <= 1 and track.quality.mean() > 0.6
    scores = np.array([0.9, 0.1, 0.2, 0.95, 0.0])
    keep = segment.dropout(scores, 0.5, 1.0, np.random.default_rng(0))
    assert keep.tolist() == [True, False, False, True, False]
    again = [segment.dropout(scores, 0.5, 0.5, np.random.default_rng(7)).tolist() for _ in range(2)]
    assert again[0] == again[1]
    assert segment.dropout(scores, 0.5, 0.0, np.random.default_rng(0)).all()


def dark_pixel_segmenter(path) -> str:
    """A real ONNX file, exported by torch: person logit = 40 * (0.3 - mean RGB), i.e. dark pixels.
    The vtest walker wears black on grey pavement, so it is a crude but honest segmenter for him."""
    import torch

    pytest.importorskip("onnx")  # torch's exporter writes the file through it

    class Dark(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:  # (1, 3, S, S) RGB 0..1 -> (1, 1, S, S)
            return 40.0 * (0.3 - x.mean(dim=1, keepdim=True))

    torch.onnx.export(Dark(), torch.rand(1, 3, 64, 64), str(path), dynamo=False, opset_version=13)
    return str(path)


def test_onnx_segmenter_runs_through_cv2_dnn(tmp_path) -> None:
    from directanimator_core.cues import detectors

    net = detectors.onnx_segmenter(dark_pixel_segmenter(tmp_path / "dark.onnx"))
    crop = np.ascontiguousarray(media.vtest_frames(1)[0, 220:340, 620:710])
    probability = detectors.run_segmenter(net, crop, 64)
    assert probability.shape == crop.shape[:2] and 0 <= probability.min() and probability.max() <= 1
    small = cv2.resize(crop, (64, 64), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    expected = 1 / (1 + np.exp(-40 * (0.3 - small.mean(-1))))  # logits turned to probabilities
    got = cv2.resize(probability, (64, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(got - expected).mean() < 0.05


def test_onnx_backend_follows_the_walker(tmp_path) -> None:
    path = dark_pixel_segmenter(tmp_path / "dark.onnx")
    # The walker's side of the square, away from the man in dark clothes on the left whom this
    # crude dark-pixel model finds as large as him.
    frames = np.ascontiguousarray(media.vtest_frames(12)[:, 225:, 400:])
    track = analyse(ArraySource(frames), CueConfig(segment=SegmentConfig(onnx_path=path, onnx_size=128)))
    covered = []
    for index in range(len(frames)):
        x0, y0, x1, y1 = (walker_box(index) - [400, 225, 400, 225]).round().astype(int)
        covered.append((track.mask(index) > 0)[y0:y1, x0:x1].mean())
    assert np.mean(np.array(covered) > 0.25) >= 0.8, covered


def test_missing_onnx_file_is_named(tmp_path) -> None:
    config = CueConfig(segment=SegmentConfig(onnx_path=str(tmp_path / "nope.onnx")))
    with pytest.raises(InputError, match="nope.onnx does not exist; put the .onnx or .tflite in models/directanimator"):
        analyse(ArraySource(media.vtest_frames(2)), config)


def test_the_selfie_segmenter_runs_from_its_wheel_at_its_own_input_side() -> None:
    """MediaPipe's .tflite (taken out of its PyPI wheel by scripts/fetch_detectors.py) is read by cv2.dnn,
    its fixed 256 input is found by probing (the config's 320 does not run), and the check passes."""
    from directanimator_core.cues import detectors

    path = str(media.selfie_segmenter())
    assert detectors.segmenter_side(path, 320) == 256
    detectors.check_segmenter(path, 320)
    portrait = media.astronaut()
    probability = detectors.run_segmenter(detectors.onnx_segmenter(path), portrait, 256)
    assert probability.shape == portrait.shape[:2]
    assert probability[150:420, 150:330].mean() > 0.9  # her face and suit
    assert probability[:250, :40].mean() < 0.05 and probability[:180, 380:450].mean() < 0.05  # the flag, the shuttle


def test_the_selfie_segmenter_cuts_a_panned_portrait_without_its_background() -> None:
    """A slow pan over a real portrait: every frame's cut agrees with the segmenter's mask of the whole
    still moved by the pan's known crop, and takes in almost no background."""
    import cv2
    from directanimator_core.cues import detectors

    image, count = media.astronaut(), 8
    path = str(media.selfie_segmenter())
    whole = detectors.run_segmenter(detectors.onnx_segmenter(path), image, 256) > 0.5
    track = analyse(ArraySource(media.pan_clip(image, count)), CueConfig(segment=SegmentConfig(onnx_path=path)))
    assert track.person.all()
    for index in range(count):
        x, y = int(round(index / (count - 1) * (image.shape[1] - 400))), int(round(index / (count - 1) * 20))
        truth = cv2.resize(whole[y:y + 400, x:x + 400].astype(np.uint8), (320, 320), interpolation=cv2.INTER_NEAREST) > 0
        mask = track.mask(index) > 0
        assert (mask & truth).sum() / (mask | truth).sum() > 0.8, index
        assert (mask & ~truth).sum() / mask.sum() < 0.05, index


def test_a_segmenter_of_another_format_is_refused_by_name(tmp_path) -> None:
    from directanimator_core.cues import detectors

    other = tmp_path / "person.pb"
    other.write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match="person.pb is neither .onnx nor .tflite"):
        detectors.onnx_segmenter(str(other))


def test_extract_runs_the_selfie_segmenter(tmp_path) -> None:
    """``extract --segmenter-onnx selfie_segmentation.tflite`` on a panned portrait: every frame has the person."""
    from directanimator_core.cli import main

    clip = media.write_clip(media.pan_clip(media.grace_hopper(), 5), tmp_path / "pan.avi")
    assert main(["extract", "--driving", str(clip), "--segmenter-onnx", str(media.selfie_segmenter()),
                 "--out", str(tmp_path / "cues")]) == 0
    import json
    report = json.loads((tmp_path / "cues" / "report.json").read_text())
    assert report["frames"] == 5 and report["frames_with_person"] == 5
