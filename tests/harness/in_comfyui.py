"""Harness scripts that run inside ComfyUI's own Python, in a subprocess: their base folder, their start.

A test prepares a ComfyUI base directory (``prepare_base``: the small native models, the folders ComfyUI
expects, the inputs as .npy files) and runs a script of tests/harness in a subprocess (``run_script``,
stopped by its own PID). The script, once ComfyUI is on its path, imports the pack as ComfyUI imports a
custom node package (``import_pack``) and reads the inputs back (``read_inputs``).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from .paths import REPO

FOLDERS = ("input", "output", "temp", "user", "custom_nodes")
INPUTS = ("walker_frames.npy", "walker_masks.npy", "reference.npy")


def write_inputs(base: Path) -> None:
    """A 64x64 crop of vtest.avi around a walker (5 frames), the walker's box as mask, and the astronaut."""
    import cv2
    import numpy as np

    from . import media

    crop = [f[160:360, 560:760] for f in media.vtest_frames(5)]
    np.save(base / INPUTS[0], np.stack([cv2.resize(f, (64, 64), interpolation=cv2.INTER_AREA) for f in crop]))
    masks = np.zeros((5, 64, 64), np.uint8)
    masks[:, 22:56, 24:44] = 255
    np.save(base / INPUTS[1], masks)
    np.save(base / INPUTS[2], cv2.resize(media.astronaut(), (64, 64), interpolation=cv2.INTER_AREA))


def prepare_base(base: Path) -> Path:
    """``base`` as a ComfyUI base directory: models/ (harness.models.write_native_models), the folders, inputs."""
    from .models import write_native_models

    write_native_models(base / "models")
    for sub in FOLDERS:
        (base / sub).mkdir(exist_ok=True)
    write_inputs(base)
    return base


def run_script(script: str, args: list[str], cwd: Path, limit_s: float) -> str:
    """Run tests/harness/``script`` with ``args`` (OMP_NUM_THREADS=1, offline); its output. Fails the test on a
    non-zero exit, with the output's tail; killed by its PID when it runs past ``limit_s``."""
    command = [sys.executable, str(REPO / "tests" / "harness" / script), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        output, _ = process.communicate(timeout=limit_s)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    text = output.decode(errors="replace")
    assert process.returncode == 0, f"{script} ended with {process.returncode}:\n{text[-6000:]}"
    return text


# -- inside the script, once ComfyUI is importable ---------------------------------------------------------------

def import_pack() -> tuple[ModuleType, dict[str, type]]:
    """The pack imported as ComfyUI imports a custom node package (as ``DirectAnimatorPack``), its model folder
    registered; (its nodes package, node_id -> node class)."""
    spec = importlib.util.spec_from_file_location("DirectAnimatorPack", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    pack = importlib.util.module_from_spec(spec)
    sys.modules["DirectAnimatorPack"] = pack
    spec.loader.exec_module(pack)
    pack_nodes = importlib.import_module("DirectAnimatorPack.nodes")
    pack_nodes.register_model_folder()
    return pack_nodes, {cls.define_schema().node_id: cls for cls in pack_nodes.node_list()}


def read_inputs(base: Path):
    """The inputs ``write_inputs`` saved, as ComfyUI tensors: IMAGE (F, 64, 64, 3), MASK (F, 64, 64), IMAGE (1, ...)."""
    import numpy as np
    import torch

    frames, masks, reference = (torch.from_numpy(np.load(Path(base) / name)).float() / 255 for name in INPUTS)
    return frames, masks, reference[None]
