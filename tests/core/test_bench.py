"""``python -m directanimator_core bench``: dispatches to bench/ scripts; without a ComfyUI, one line and status 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.comfyui import comfyui_dir
from harness.paths import REPO


def _bench(*args: str, comfyui: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    if comfyui:
        env["COMFYUI_PATH"] = comfyui
    return subprocess.run([sys.executable, "-m", "directanimator_core", "bench", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_bench_dit_without_comfyui_says_so_in_one_line() -> None:
    result = _bench("dit", comfyui=None)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "COMFYUI_PATH" in lines[0]


@pytest.mark.comfy
def test_bench_dit_prints_ratio_and_difference() -> None:
    result = _bench("dit", "--no-load", "--repeats", "1", "--dim", "128", "--ffn", "256", "--heads", "1",
                    "--layers", "1", "--frames", "1", "--height", "4", "--width", "4", "--text-tokens", "8",
                    comfyui=str(comfyui_dir()))
    assert result.returncode == 0, result.stderr[-2000:]
    diffs = {}
    for mode in ("fp32", "bf16", "bf16-file"):
        assert f"{mode} forward, best of 1:" in result.stdout and "ratio ours/ComfyUI" in result.stdout
        diffs[mode] = float(result.stdout.split(f"{mode} largest |ours - ComfyUI|: ")[1].split()[0])
    # fp32, and a bf16 file as each runs it on a CPU (ours: bf16 weights, fp32 matmuls): ComfyUI's numbers
    assert diffs["fp32"] < 1e-4 and diffs["bf16-file"] < 1e-4
    assert "bf16 relative distance from the fp32 output: ours" in result.stdout
