"""The demo command on the bundled default model, at reduced length and steps: outputs, finite scores,
determinism, and a clear error when the weights are missing."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from directanimator_core import cli
from directanimator_core.default_model import MODEL_FILE, VAE_FILE
from directanimator_core.demo import enlarge

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
    metrics = run_demo(tmp_path / "a", "--driven")
    for name in ("result.mp4", "side_by_side.mp4"):
        video = read_video(tmp_path / "a" / name)
        assert len(video) == 5
    side = read_video(tmp_path / "a" / "side_by_side.mp4")
    result = read_video(tmp_path / "a" / "result.mp4")
    scale = enlarge(result.shape[1])
    assert side.shape[2] == 4 * side.shape[1] and side.shape[1] == scale * result.shape[1]  # 4 panels, enlarged
    still = cv2.imread(str(tmp_path / "a" / "side_by_side.png"))
    half = scale // 2 or 1
    assert still.shape == (3 * half * result.shape[1], 4 * half * result.shape[2], 3)  # first, middle, last frame
    first = cv2.resize(side[0], None, fx=half / scale, fy=half / scale, interpolation=cv2.INTER_NEAREST)  # lossy video
    assert np.abs(still[:half * result.shape[1]].astype(int) - first).mean() < 12
    assert set(metrics["scores"]) == {"ours", "copy", "warp"}
    values = [v for s in metrics["scores"].values() for v in s.values()] + list(metrics["vae_ceiling"].values())
    assert all(np.isfinite(values))
    assert metrics["pair"]["split"] == "heldout" and metrics["pair"]["seed"] % 2 == 1
    assert metrics["pair"]["identity_reference"] != metrics["pair"]["identity_driver"]
    driven = metrics["driven"]
    assert set(driven["mean"]) == {"own", "other", "blank", "copy", "warp", "vae"}
    assert set(driven["margins"]) == {f"own_minus_{m}" for m in ("other", "blank", "copy", "warp", "vae")}
    assert driven["headroom_over_blank"] == driven["mean"]["vae"]["fig_psnr"] - driven["mean"]["blank"]["fig_psnr"]
    assert metrics["vae_ceiling"]["psnr"] == driven["mean"]["vae"]["psnr"]
    assert driven["mean"]["own"]["psnr"] == metrics["scores"]["ours"]["psnr"]
    assert all(np.isfinite([v for s in driven["mean"].values() for v in s.values()]))


def test_demo_is_deterministic(tmp_path) -> None:
    first, second = run_demo(tmp_path / "a"), run_demo(tmp_path / "b")
    assert first["scores"] == second["scores"]
    assert (read_video(tmp_path / "a" / "result.mp4") == read_video(tmp_path / "b" / "result.mp4")).all()


def test_demo_names_a_missing_model(tmp_path, capsys) -> None:
    assert cli.main(["demo", "--out", str(tmp_path), "--model", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors does not exist" in capsys.readouterr().err
