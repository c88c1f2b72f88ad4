"""``animate``: a reference + a driving video (or extract's cue folder) + a model -> an mp4 of the clip's
usable frames at the output size; bad input is one line (exit 2) before torch is imported; the mp4 is
written under a temporary name and renamed, so a failed run leaves the previous file as it was.

The real runs use the bundled default model on a held-out synthetic pair (the demo's, 5 frames at
128x128, 2 steps): a driving video with its exact mask video, and the cue folder extract writes from it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from directanimator_core.pipeline import command
from directanimator_core.default_model import MODEL_FILE, VAE_FILE
from harness.paths import REPO

FRAMES = 5
needs_model = pytest.mark.skipif(not (MODEL_FILE.is_file() and VAE_FILE.is_file()),
                                 reason="the default model's weights are not there")


def _cli(*args: str, command: str = "animate") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "directanimator_core", command, *args], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _refusal(result: subprocess.CompletedProcess, *words: str) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and all(w in lines[0] for w in words), lines[0]
    return lines[0]


def _read(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """The demo's held-out pair as files: reference (+ mask), driving video (+ mask video)."""
    import torch

    from directanimator_core.demo import write_comfyui_inputs
    from directanimator_core.default_model.evaluate import heldout_pair
    from directanimator_core.default_model.recipe import DEFAULT

    torch.set_num_threads(1)
    held = heldout_pair(DEFAULT, 0, FRAMES)
    folder = write_comfyui_inputs(tmp_path_factory.mktemp("pair"), held.reference, held.reference_render.person[0],
                                  held.driving.render.frames, held.driving.render.person)
    names = {"reference": "reference.png", "reference_mask": "reference_mask.png", "driving": "driving.mp4",
             "driving_mask": "driving_mask.mp4"}
    return {key: folder / f"directanimator_demo_{name}" for key, name in names.items()}


# -- refusals, before torch ---------------------------------------------------------------------------
def test_bad_input_is_refused_before_torch_or_opencv_is_imported(pair, tmp_path) -> None:
    script = ("import sys; from directanimator_core.cli import main; code = main(sys.argv[1:]); "
              "print(sorted(m for m in ('torch', 'cv2') if m in sys.modules)); sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", script, "animate", "--reference", str(pair["reference"]),
                             "--driving", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "a.mp4")],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    _refusal(result, f"--driving {tmp_path / 'none.mp4'} does not exist")
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("change", "words"), [
    ({"--reference": "missing.png"}, ("--reference", "does not exist")),
    ({"--out": "result.avi"}, ("--out", "does not end in .mp4")),
    ({"--steps": "0"}, ("--steps 0", "out of range")),
    ({"--seed": "-1"}, ("--seed -1",)),
    ({"--width": "128"}, ("--width 128 and --height 0", "give both")),
    ({"--shift": "nan"}, ("--shift nan", "positive number")),
    ({"--adapter": "REFERENCE"}, ("--adapter is given without --model",)),
    ({"--model": "REFERENCE"}, ("--model is given without --vae",)),
    ({"--solver": "heun"}, ("solver='heun' is unknown", "unipc_wan")),
    ({"--scheduler": "karras"}, ("scheduler='karras' is unknown", "simple")),
])
def test_a_bad_option_is_refused_in_one_line(change, words, pair, tmp_path) -> None:
    options = {"--reference": str(pair["reference"]), "--driving": str(pair["driving"]),
               "--out": str(tmp_path / "a.mp4")}
    options.update({k: str(pair["reference"]) if v == "REFERENCE" else v for k, v in change.items()})
    _refusal(_cli(*[item for pair_ in options.items() for item in pair_]), *words)
    assert list(tmp_path.iterdir()) == []


def test_a_cue_folder_without_the_cue_videos_is_refused(pair, tmp_path) -> None:
    (tmp_path / "cues").mkdir()
    (tmp_path / "cues" / "pose.mp4").write_bytes(b"")
    _refusal(_cli("--reference", str(pair["reference"]), "--cues", str(tmp_path / "cues"), "--out",
                  str(tmp_path / "a.mp4")), "holds no face.mp4, location.mp4", "extract")


def test_a_mask_with_a_cue_folder_is_refused_not_ignored(pair, tmp_path) -> None:
    folder = tmp_path / "cues"
    folder.mkdir()
    for name in command.CUE_FILES:
        (folder / name).write_bytes(b"")
    _refusal(_cli("--reference", str(pair["reference"]), "--cues", str(folder), "--driving-mask",
                  str(pair["driving_mask"]), "--out", str(tmp_path / "a.mp4")), "--driving-mask is given with --cues")


@needs_model
def test_a_reference_without_a_findable_person_asks_for_its_mask(pair, tmp_path) -> None:
    _refusal(_cli("--reference", str(pair["reference"]), "--driving", str(pair["driving"]), "--driving-mask",
                  str(pair["driving_mask"]), "--out", str(tmp_path / "a.mp4")),
             f"--reference {pair['reference']}: no person was found in it", "give --reference-mask")
    assert list(tmp_path.iterdir()) == []


def test_driving_and_cues_together_are_refused(pair, tmp_path) -> None:
    result = _cli("--reference", str(pair["reference"]), "--driving", str(pair["driving"]), "--cues", str(tmp_path),
                  "--out", str(tmp_path / "a.mp4"))
    assert result.returncode == 2 and "not allowed with argument" in result.stderr


# -- the output file ---------------------------------------------------------------------------------
def test_a_failed_write_leaves_the_previous_output_and_no_temporary_file(tmp_path) -> None:
    out = tmp_path / "result.mp4"
    out.write_bytes(b"the previous result")

    class Interrupted:  # a video whose second frame never comes: Ctrl-C mid-write
        shape = (2, 32, 32, 3)

        def __iter__(self):
            yield np.zeros(self.shape[1:], np.uint8)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        command._write_mp4(out, Interrupted(), 8.0)
    assert out.read_bytes() == b"the previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["result.mp4"]


def test_a_dead_runs_temporary_file_is_removed_a_live_ones_kept(tmp_path) -> None:
    out = tmp_path / "result.mp4"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    leftovers = {pid: command.partial_name(out, pid) for pid in (dead.pid, os.getpid())}
    for path in leftovers.values():
        path.write_bytes(b"half a video")
    assert command.remove_dead_partials(out) == [leftovers[dead.pid]]
    assert not leftovers[dead.pid].exists() and leftovers[os.getpid()].exists()


@needs_model
def test_sigterm_mid_run_leaves_the_previous_output_and_no_temporary_file(pair, tmp_path) -> None:
    out = tmp_path / "result.mp4"
    out.write_bytes(b"the previous result")
    process = subprocess.Popen([sys.executable, "-m", "directanimator_core", "animate", "--reference",
                                str(pair["reference"]), "--reference-mask", str(pair["reference_mask"]), "--driving",
                                str(pair["driving"]), "--driving-mask", str(pair["driving_mask"]), "--out", str(out),
                                "--steps", "50"], cwd=REPO, stderr=subprocess.PIPE, text=True, bufsize=1)
    seen = []
    while not (seen and seen[-1].startswith("sampling: step 2/")):  # the model is loaded, the cues are cut
        seen.append(process.stderr.readline())
        assert seen[-1], "".join(seen)
    process.send_signal(signal.SIGTERM)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(seen) + rest
    assert rest.strip().splitlines()[-1] == "error: interrupted"
    assert out.read_bytes() == b"the previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["result.mp4"]


# -- real runs with the bundled model ----------------------------------------------------------------
@needs_model
def test_a_driving_video_and_its_mask_animate_to_an_mp4(pair, tmp_path) -> None:
    out = tmp_path / "sub" / "result.mp4"
    result = _cli("--reference", str(pair["reference"]), "--reference-mask", str(pair["reference_mask"]),
                  "--driving", str(pair["driving"]), "--driving-mask", str(pair["driving_mask"]), "--out", str(out),
                  "--steps", "2")
    assert result.returncode == 0, result.stderr
    assert "sampling: step 2/2" in result.stderr and f"wrote {out}" in result.stderr
    video = _read(out)
    assert video.shape == (FRAMES, 128, 128, 3)
    assert video.std() > 1.0  # a picture, not one flat colour
    assert [p.name for p in out.parent.iterdir()] == ["result.mp4"]  # the temporary file was renamed


@needs_model
def test_extracts_cue_folder_animates_to_the_same_frame_count(pair, tmp_path) -> None:
    cues = tmp_path / "cues"
    extract = _cli("--driving", str(pair["driving"]), "--reference", str(pair["reference"]), "--reference-mask",
                   str(pair["reference_mask"]), "--out", str(cues), command="extract")
    assert extract.returncode == 0, extract.stderr
    out = tmp_path / "result.mp4"
    out.write_bytes(b"an older result")
    result = _cli("--reference", str(pair["reference"]), "--cues", str(cues), "--out", str(out), "--steps", "2",
                  "--width", "64", "--height", "64")
    assert result.returncode == 0, result.stderr
    assert _read(out).shape == (FRAMES, 64, 64, 3)
