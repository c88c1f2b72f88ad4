"""The triplet as one value, its bad inputs, its streaming, and the ``extract`` command."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from directanimator_core.cues.config import CueConfig
from directanimator_core.cues.frames import ArraySource, VideoSource, stack_frames
from directanimator_core.cues.triplet import CueStopped, alignment_for, analyse, build_triplet, render
from directanimator_core.errors import InputError
from harness import media
from harness.paths import REPO


@pytest.fixture(scope="module")
def walker():
    return media.vtest_frames(6)


def test_triplet_holds_uint8_cues_and_flags(walker) -> None:
    triplet = build_triplet(walker, CueConfig(), reference=media.astronaut())
    assert triplet.pose.shape == (6, 512, 512, 3) and triplet.pose.dtype == np.uint8
    assert triplet.face.shape == (6, 512, 512, 3) and triplet.face.dtype == np.uint8
    assert triplet.body_mask.shape == triplet.face_mask.shape == (6, 512, 512)
    assert triplet.location.shape == (6, 512, 512, 3)
    assert triplet.person.dtype == bool and triplet.quality.dtype == np.float32
    with pytest.raises(dataclasses.FrozenInstanceError):
        triplet.pose = None
    preview = triplet.preview(128)
    assert preview.shape == (6, 128, 3 * 128 + 8, 3) and preview.dtype == np.uint8
    assert np.array_equal(preview[:, :, 128:132], np.full((6, 128, 4, 3), 255, np.uint8))


def test_streamed_chunks_equal_one_batch(walker) -> None:
    whole = build_triplet(walker, CueConfig(chunk_frames=16))
    small = build_triplet(walker, CueConfig(chunk_frames=4))
    for name in ("pose", "face", "body_mask", "face_mask", "person", "quality"):
        assert np.array_equal(getattr(whole, name), getattr(small, name)), name


def test_video_file_and_frames_give_the_same_cues(tmp_path, walker) -> None:
    path = media.write_clip(walker, tmp_path / "walk.avi")
    decoded = np.concatenate(list(VideoSource(str(path)).chunks(4)))
    assert decoded.shape == walker.shape
    from_file = build_triplet(VideoSource(str(path)), CueConfig())
    from_frames = build_triplet(decoded, CueConfig())
    assert np.array_equal(from_file.pose, from_frames.pose)


def test_one_frame_video_works() -> None:
    triplet = build_triplet(media.astronaut()[None], CueConfig(), reference=media.grace_hopper())
    assert triplet.num_frames == 1 and triplet.person.all() and triplet.face_found.all()
    assert triplet.pose.shape == (1, 600, 512, 3)


def test_progress_counts_both_passes_and_stop_is_honoured(walker) -> None:
    calls: list[tuple[int, int]] = []
    build_triplet(walker, CueConfig(chunk_frames=3), progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (12, 12) and all(b[0] >= a[0] for a, b in zip(calls, calls[1:]))
    polls = iter(range(100))
    with pytest.raises(CueStopped, match="stopped on request after 2 frames"):
        build_triplet(walker, CueConfig(), should_stop=lambda: next(polls) >= 2)


def test_empty_batch_is_named() -> None:
    with pytest.raises(InputError, match=r"frames is an empty batch \(0 frames\)"):
        build_triplet(np.zeros((0, 64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="empty batch"):
        stack_frames([])


def test_frames_of_different_sizes_are_named(walker) -> None:
    frames = [walker[0], walker[1][:500]]
    with pytest.raises(InputError, match=r"frames\[1\] is \(500, 768, 3\), frame 0 is \(576, 768, 3\)"):
        stack_frames(frames)
    with pytest.raises(InputError, match=r"frames\[1\] is \(500, 768, 3\).*all frames must have one size"):
        build_triplet(frames)


@pytest.mark.parametrize("frames, words", [
    (np.zeros((2, 64, 64), np.uint8), "expected (frames, height, width, 3)"),
    (np.zeros((2, 64, 64, 3), np.float32), "dtype float32; expected uint8"),
    (np.zeros((2, 8, 8, 3), np.uint8), "need at least 16x16"),
])
def test_malformed_frames_are_named(frames, words) -> None:
    with pytest.raises(InputError) as error:
        build_triplet(frames)
    assert words in str(error.value) and "\n" not in str(error.value)


def test_memory_stays_in_uint8_and_masks_compressed(walker) -> None:
    track = analyse(ArraySource(walker), CueConfig())
    stored = sum(len(m) for m in track.masks)
    assert stored < 0.05 * walker[..., 0].nbytes  # PNG masks: a few kB per frame, not H*W bytes
    chunks = list(render(ArraySource(walker), track, alignment_for(track, None), CueConfig(chunk_frames=2)))
    assert [c.num_frames for c in chunks] == [2, 2, 2]


def test_extract_command_writes_cues_and_report(tmp_path) -> None:
    clip = media.vtest_clip(8)
    reference = tmp_path / "astronaut.png"
    cv2.imwrite(str(reference), cv2.cvtColor(media.astronaut(), cv2.COLOR_RGB2BGR))
    out = tmp_path / "cues"
    result = subprocess.run(
        [sys.executable, "-m", "directanimator_core", "extract", "--driving", str(clip), "--reference",
         str(reference), "--out", str(out), "--face-size", "128"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 8 and report["frames_with_person"] == 8 and report["frames_with_face"] == 0
    assert report["face_cue"].startswith("blank") and report["alignment"]["size"] == [512, 512]
    for name, size in (("pose", (512, 512)), ("face", (128, 128)), ("location", (512, 512))):
        capture = cv2.VideoCapture(str(out / f"{name}.mp4"))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8, name
        ok, frame = capture.read()
        assert ok and frame.shape[:2] == size, name
    assert (out / "preview.mp4").stat().st_size > 1000


def test_extract_answers_bad_input_in_one_line(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "directanimator_core", "extract", "--driving", str(tmp_path / "none.mp4"),
         "--out", str(tmp_path / "o")], cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"error: --driving {tmp_path / 'none.mp4'} does not exist; "
                                                  "give the path of a video file"]


def _extract(tmp_path, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "directanimator_core", "extract", *options],
                          cwd=REPO, capture_output=True, text=True, timeout=300)


def test_extract_reports_the_frames_the_driver_leaves_the_canvas(tmp_path) -> None:
    """The vtest walker scaled ~6x onto the astronaut: the fixed map loses him within a few frames and
    report.json says which; --align in-place keeps him on the canvas in every frame."""
    clip = media.vtest_clip(12)
    reference = tmp_path / "astronaut.png"
    cv2.imwrite(str(reference), cv2.cvtColor(media.astronaut(), cv2.COLOR_RGB2BGR))
    reports = {}
    for mode in ("fixed", "in-place"):
        out = tmp_path / mode
        result = _extract(tmp_path, "--driving", str(clip), "--reference", str(reference), "--out", str(out),
                          "--face-size", "64", "--align", mode)
        assert result.returncode == 0, result.stderr[-2000:]
        reports[mode] = json.loads((out / "report.json").read_text())
    fixed, steady = reports["fixed"], reports["in-place"]
    assert fixed["alignment"]["mode"] == "fixed" and steady["alignment"]["mode"] == "in-place"
    assert fixed["frames_off_canvas"] >= 4 and steady["frames_off_canvas"] == 0
    assert len(fixed["flagged_frames"]["off_canvas"]) == fixed["frames_off_canvas"]
    assert all(fixed["quality"][i] <= 0.1 for i in fixed["flagged_frames"]["off_canvas"])
    assert f"{fixed['frames_off_canvas']} off the canvas" in fixed["warning"]
    for key in ("frames_blank", "frames_suspect_switch", "frames_mostly_background"):
        assert key in fixed and key in steady
    assert len(steady["alignment"]["shifts"]) == 12 and fixed["alignment"]["shifts"] is None


def test_extract_refuses_align_without_a_reference(tmp_path) -> None:
    result = _extract(tmp_path, "--driving", str(media.vtest_clip(12)), "--out", str(tmp_path / "o"),
                      "--align", "in-place")
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --align in-place is given without --reference; give the reference image to align the driver to, "
        "or leave --align out"]
