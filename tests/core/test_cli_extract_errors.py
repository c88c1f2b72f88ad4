"""``extract`` on bad input: one line naming the input and what to do, exit 2, before the heavy work;
an interrupted run leaves the previous outputs as they were and no partial file.

The CLI runs as a subprocess (as tests/core/test_cli.py does), except where the test counts what the
run did (frames searched), which needs it in-process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from directanimator_core import cli
from directanimator_core.cues import outputs, segment, triplet
from harness import media
from harness.paths import REPO

OUTPUT_FILES = {"pose.mp4", "face.mp4", "location.mp4", "preview.mp4", "report.json"}


def _extract(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "directanimator_core", "extract", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


def _refusal(result: subprocess.CompletedProcess, *words: str) -> str:
    """The one line of a refused run; asserts exit 2, no traceback, and that it holds ``words``."""
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]
    return lines[0]


# -- clips ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    """Small real clips: a person (scikit-image's astronaut, a camera panning over her), brick
    (scikit-image's brick wall, a still camera with sensor noise: no person) and noise."""
    from skimage import data

    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    brick = np.repeat(data.brick()[:160, :160, None], 3, axis=-1).astype(np.int16)
    still = np.stack([np.clip(brick + rng.integers(-3, 4, brick.shape), 0, 255) for _ in range(60)]).astype(np.uint8)
    return {
        "person": media.write_clip(media.pan_clip(media.astronaut(), count=12, size=200), folder / "astronaut.avi"),
        "texture": media.write_clip(still, folder / "brick.avi"),
        "noise": media.write_clip(rng.integers(0, 256, (30, 120, 160, 3), dtype=np.uint8), folder / "noise.avi"),
    }


def _old_outputs(out: Path) -> dict[str, bytes]:
    """An earlier run's outputs (and a file of the user's) in ``out``; returns their bytes."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"report.json": b'{"frames": 99}', "pose.mp4": b"an older pose cue", "notes.txt": b"mine"}
    for name, content in files.items():
        (out / name).write_bytes(content)
    return files


def _contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in out.iterdir()}


# -- model files ------------------------------------------------------------------------------------
@pytest.mark.parametrize("option", ["--segmenter-onnx", "--face-onnx"])
def test_a_damaged_onnx_file_is_refused_in_one_line(option, clips, tmp_path) -> None:
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07not really a protobuf")
    line = _refusal(_extract("--driving", str(clips["person"]), "--out", str(tmp_path / "out"), option, str(bad)),
                    option, "model.onnx is not an ONNX model OpenCV can read")
    assert "or the built-in one" in line
    assert not (tmp_path / "out").exists()


def test_a_face_detector_given_as_the_segmenter_is_refused(clips, tmp_path) -> None:
    line = _refusal(_extract("--driving", str(clips["person"]), "--out", str(tmp_path / "out"),
                             "--segmenter-onnx", str(media.centerface_onnx())),
                    "--segmenter-onnx", "centerface.onnx is not a person segmenter")
    assert "(1, 10, 80, 80)" in line  # CenterFace's landmarks output, named
    assert not (tmp_path / "out").exists()


def test_a_model_that_does_not_run_as_a_face_detector_is_refused(clips, tmp_path) -> None:
    # CenterFace under a YuNet name is run as YuNet, which it is not
    wrong = tmp_path / "face_yunet.onnx"
    wrong.write_bytes(media.centerface_onnx().read_bytes())
    _refusal(_extract("--driving", str(clips["person"]), "--out", str(tmp_path / "out"), "--face-onnx", str(wrong)),
             "--face-onnx", "face_yunet.onnx does not run as a CenterFace or YuNet face detector")


@pytest.mark.parametrize("value, words", [
    ("", "--segmenter-onnx is empty"),
    ("missing.onnx", "--segmenter-onnx missing.onnx does not exist"),
    (".", "--segmenter-onnx . is a folder, not a file"),
])
def test_a_wrong_segmenter_value_is_refused(value, words, clips, tmp_path) -> None:
    _refusal(_extract("--driving", str(clips["person"]), "--out", str(tmp_path / "out"), "--segmenter-onnx", value),
             words, "give the path of an .onnx or .tflite file")


# -- paths and values -------------------------------------------------------------------------------
def test_out_naming_a_file_is_refused(clips, tmp_path) -> None:
    file = tmp_path / "taken"
    file.write_text("not a folder")
    _refusal(_extract("--driving", str(clips["person"]), "--out", str(file)), f"--out {file} is a file, not a folder")
    _refusal(_extract("--driving", str(clips["person"]), "--out", str(file / "below")),
             f"{file} is a file, so no folder can be made there")
    assert file.read_text() == "not a folder"


def test_a_missing_reference_mask_is_refused_not_ignored(clips, tmp_path) -> None:
    reference = tmp_path / "reference.png"
    cv2.imwrite(str(reference), cv2.cvtColor(media.astronaut(), cv2.COLOR_RGB2BGR))
    missing = tmp_path / "mask.png"
    out = tmp_path / "out"
    _refusal(_extract("--driving", str(clips["person"]), "--out", str(out), "--reference", str(reference),
                      "--reference-mask", str(missing)), f"--reference-mask {missing} does not exist")
    _refusal(_extract("--driving", str(clips["person"]), "--out", str(out), "--reference-mask", str(reference)),
             "--reference-mask is given without --reference")
    not_an_image = tmp_path / "mask.txt"
    not_an_image.write_text("white = person")
    _refusal(_extract("--driving", str(clips["person"]), "--out", str(out), "--reference", str(reference),
                      "--reference-mask", str(not_an_image)), f"--reference-mask {not_an_image} cannot be read")
    assert not out.exists()


@pytest.mark.parametrize("option, value, words", [
    ("--chunk-frames", "0", "--chunk-frames 0 is below 1"),
    ("--max-frames", "0", "--max-frames 0 is below 1"),
    ("--face-size", "3", "--face-size 3 is below 16"),
    ("--person-index", "-1", "--person-index -1 is negative"),
    ("--grid", "-2", "--grid -2 is negative"),
    ("--softness", "nan", "--softness nan is not a finite number"),
    ("--cutoff", "0.9", "cutoff=0.9 is outside (0, 0.5]"),
])
def test_a_bad_option_value_is_refused(option, value, words, clips, tmp_path) -> None:
    _refusal(_extract("--driving", str(clips["person"]), "--out", str(tmp_path / "out"), option, value), words)
    assert not (tmp_path / "out").exists()


def test_bad_input_is_refused_before_torch_or_opencv_is_imported(tmp_path) -> None:
    script = ("import sys; from directanimator_core.cli import main; code = main(sys.argv[1:]); "
              "print(sorted(m for m in ('torch', 'cv2') if m in sys.modules)); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script, "extract", "--driving", str(tmp_path / "none.mp4"),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    _refusal(result, f"--driving {tmp_path / 'none.mp4'} does not exist")
    assert result.stdout.strip() == "[]"


# -- nobody to follow -------------------------------------------------------------------------------
def test_person_index_past_the_people_present_is_refused(clips, tmp_path) -> None:
    for index in ("1", "4"):
        _refusal(_extract("--driving", str(clips["person"]), "--out", str(tmp_path / "out"), "--person-index", index),
                 f"--driving {clips['person']}: person_index={index} but at most 1 person is in view",
                 "use --person-index 0")
    assert not (tmp_path / "out").exists()


def test_a_noise_clip_says_no_person_was_found(clips, tmp_path) -> None:
    line = _refusal(_extract("--driving", str(clips["noise"]), "--out", str(tmp_path / "out")),
                    f"--driving {clips['noise']}: no person was found", "give a clip that shows the driver")
    assert "person_index" not in line and "index below" not in line


def test_candidates_that_never_cut_out_are_no_person_not_a_person_index_problem() -> None:
    # what a noise clip gave: one candidate seen (best_count 1), none of it cut out as a person
    error = segment.no_person_error(30, 1, 0)
    assert str(error).startswith("no person was found in any of the 30 driving frames;") and error.people == 0
    error = segment.no_person_error(30, 2, 3)
    assert str(error).startswith("person_index=3 but at most 2 people were found in one frame;")


def test_a_clip_without_a_person_fails_on_a_sample_of_its_frames(clips, tmp_path, monkeypatch, capsys) -> None:
    searched, analysed = [], []
    find_people, analyse_frame = segment.find_people, triplet._analyse_frame
    monkeypatch.setattr(segment, "find_people", lambda image, *a, **k: searched.append(1) or find_people(image, *a, **k))
    monkeypatch.setattr(triplet, "_analyse_frame", lambda *a: analysed.append(1) or analyse_frame(*a))
    assert cli.main(["extract", "--driving", str(clips["texture"]), "--out", str(tmp_path / "out")]) == 2
    line = capsys.readouterr().err.strip()
    assert line == (f"error: --driving {clips['texture']}: no person was found in any of the 12 frames sampled across "
                    "the 60 driving frames; give a clip that shows the driver (the built-in detectors look for a "
                    "standing figure or a face)")
    assert len(searched) == 12 and analysed == []  # 12 of 60 frames searched; the frame pass never began


# -- interrupts and the output folder ---------------------------------------------------------------
INTERRUPTER = """
import os, signal, sys
from pathlib import Path
from directanimator_core import cli
from directanimator_core.cues import triplet

# A terminal's Ctrl-C raises KeyboardInterrupt; a shell running this in the background may have
# started it with SIGINT ignored, so the handler is set as a terminal session has it.
signal.signal(signal.SIGINT, signal.default_int_handler)
number, record, out = getattr(signal, sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
render = triplet.render

def interrupted_render(*args, **kwargs):
    for done, chunk in enumerate(render(*args, **kwargs)):
        if done == 1:  # the first chunk is written: note the partial files, then the signal arrives
            record.write_text("\\n".join(sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())))
            os.kill(os.getpid(), number)
        yield chunk

triplet.render = interrupted_render
sys.exit(cli.main(sys.argv[4:]))
"""


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_an_interrupt_leaves_the_old_outputs_and_no_partial_file(name, clips, tmp_path) -> None:
    out = tmp_path / "out"
    before = _old_outputs(out)
    record = tmp_path / "partial.txt"
    result = subprocess.run([sys.executable, "-c", INTERRUPTER, name, str(record), str(out), "extract",
                             "--driving", str(clips["person"]), "--out", str(out), "--chunk-frames", "4"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    partial = record.read_text().split()
    assert any(p.startswith(".extract.") and p.endswith("/pose.mp4") for p in partial), partial  # mid-write
    assert result.returncode == 130 and result.stderr.strip() == "error: interrupted", result.stderr
    assert _contents(out) == before  # old outputs as they were, nothing half-written beside them


def test_a_finished_run_replaces_the_outputs_and_removes_a_dead_runs_leftovers(clips, tmp_path) -> None:
    out = tmp_path / "out"
    before = _old_outputs(out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = out / f".extract.{outputs.HOST}.{dead.pid}.tmp"  # a run killed with kill -9
    live = out / f".extract.{outputs.HOST}.{os.getpid()}.tmp"  # a run still going (this process)
    for scratch in (left, live):
        scratch.mkdir()
        (scratch / "pose.mp4").write_bytes(b"partial")
    result = _extract("--driving", str(clips["person"]), "--out", str(out), "--chunk-frames", "4")
    assert result.returncode == 0, result.stderr
    assert set(os.listdir(out)) == OUTPUT_FILES | {"notes.txt", live.name}
    assert (out / "notes.txt").read_bytes() == before["notes.txt"]
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 12 and report["frames_with_person"] > 0
    assert all((out / name).stat().st_size > 1000 for name in OUTPUT_FILES - {"report.json"})


def test_the_report_names_the_detectors_that_ran(clips, tmp_path) -> None:
    built_in = _extract("--driving", str(clips["person"]), "--out", str(tmp_path / "a"), "--chunk-frames", "4")
    assert built_in.returncode == 0, built_in.stderr
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert (report["segmenter"], report["face_detector"]) == ("opencv (built-in)", "opencv haar (built-in)")
    given = _extract("--driving", str(clips["person"]), "--out", str(tmp_path / "b"), "--chunk-frames", "4",
                     "--face-onnx", str(media.centerface_onnx()))
    assert given.returncode == 0, given.stderr
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert (report["segmenter"], report["face_detector"]) == ("opencv (built-in)", "centerface.onnx")
