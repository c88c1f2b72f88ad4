"""Every node's execute, fuzzed within its declared input types inside ComfyUI's Python (harness/fuzz_nodes.py).

A call may succeed or refuse with the pack's own one-line error; a raw exception, a multi-line message or
a dead process (the OOM killer included) is a failure. The fuzz runs in a subprocess bounded in examples
and time, started and stopped by its own PID.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from harness import media
from harness.comfyui import comfyui_dir
from harness.models import write_native_models
from harness.paths import REPO

pytestmark = [pytest.mark.comfy, pytest.mark.slow]
EXAMPLES = 60  # per node (about a minute in all)
LIMIT_S = 900


def write_inputs(base) -> None:
    """A 64x64 crop of vtest.avi around a walker with the walker's box as mask, and the astronaut."""
    crop = [f[160:360, 560:760] for f in media.vtest_frames(5)]
    np.save(base / "fuzz_frames.npy", np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in crop]))
    masks = np.zeros((5, 64, 64), np.uint8)
    masks[:, 22:56, 24:44] = 255
    np.save(base / "fuzz_masks.npy", masks)
    np.save(base / "fuzz_reference.npy", cv2.resize(media.astronaut(), (64, 64), interpolation=cv2.INTER_AREA))


def test_no_node_input_within_its_declared_types_raises_a_raw_error(tmp_path) -> None:
    write_native_models(tmp_path / "models")
    for sub in ("input", "output", "temp", "user", "custom_nodes"):
        (tmp_path / sub).mkdir(exist_ok=True)
    write_inputs(tmp_path)
    report = tmp_path / "fuzz.json"
    command = [sys.executable, str(REPO / "tests" / "harness" / "fuzz_nodes.py"), str(comfyui_dir()), str(tmp_path),
               str(EXAMPLES), str(report)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        output, _ = process.communicate(timeout=LIMIT_S)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert process.returncode == 0, f"the fuzz process ended with {process.returncode}:\n{output.decode()[-4000:]}"
    results = json.loads(report.read_text())
    nodes = {k: v for k, v in results.items() if not k.startswith("_")}
    # the adapter loader's one input is a combo of the adapter files: a run or two covers it
    assert len(nodes) == 9 and all(v["examples"] >= 10 for k, v in nodes.items() if k != "DirectAnimatorAdapterLoader") \
        and nodes["DirectAnimatorAdapterLoader"]["examples"] >= 1, results
    findings = {node: v["findings"] for node, v in nodes.items() if v["findings"]}
    assert not findings, json.dumps(findings, indent=1)
    assert results["_admission"].startswith("InputError: a window of 5 frames at 4096x4096 needs about"), results
    # the fuzz reaches past the checks: every node also ran to completion on some inputs
    assert all(v["returned"] > 0 for v in nodes.values()), results
