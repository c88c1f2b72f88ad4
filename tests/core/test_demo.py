"""The demo command on the bundled default model, at reduced length and steps: outputs, finite scores,
determinism, and a clear error when the weights are missing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from directanimator_core import cli
from directanimator_core.default_model import MODEL_FILE, VAE_FILE

pytestmark = pytest.mark.skipif(not (MODEL_FILE.is_file() and VAE_FILE.is_file()),
                                reason="the default model's weights are not committed yet")


def run_demo(out, *extra: str) -> dict:
    assert cli.main(["demo", "--out", str(out), "--frames", "5", "--steps", "2", *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def read_video(path) -> np.ndarray:
    capture, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return np.stack(frames)


def test_demo_writes_videos_and_finite_scores(tmp_path) -> None:
    metrics = run_demo(tmp_path / "a")
    for name in ("result.mp4", "side_by_side.mp4"):
        video = read_video(tmp_path / "a" / name)
        assert len(video) == 5
    side = read_video(tmp_path / "a" / "side_by_side.mp4")
    result = read_video(tmp_path / "a" / "result.mp4")
    assert side.shape[2] == 4 * side.shape[1] and side.shape[1] == 4 * result.shape[1]  # 4 panels, enlarged 4x
    still = cv2.imread(str(tmp_path / "a" / "side_by_side.png"))
    assert still.shape == (3 * 2 * result.shape[1], 4 * 2 * result.shape[2], 3)  # first, middle, last; 2x
    first = cv2.resize(side[0], None, fx=0.5, fy=0.5, interpolation=cv2.INTER_NEAREST)  # the video is lossy
    assert np.abs(still[:2 * result.shape[1]].astype(int) - first).mean() < 12
    assert set(metrics["scores"]) == {"ours", "copy", "warp"}
    values = [v for s in metrics["scores"].values() for v in s.values()] + list(metrics["vae_ceiling"].values())
    assert all(np.isfinite(values))
    assert metrics["pair"]["split"] == "heldout" and metrics["pair"]["seed"] % 2 == 1
    assert metrics["pair"]["identity_reference"] != metrics["pair"]["identity_driver"]


def test_demo_is_deterministic(tmp_path) -> None:
    first, second = run_demo(tmp_path / "a"), run_demo(tmp_path / "b")
    assert first["scores"] == second["scores"]
    assert (read_video(tmp_path / "a" / "result.mp4") == read_video(tmp_path / "b" / "result.mp4")).all()


def test_demo_names_a_missing_model(tmp_path, capsys) -> None:
    assert cli.main(["demo", "--out", str(tmp_path), "--model", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors does not exist" in capsys.readouterr().err
