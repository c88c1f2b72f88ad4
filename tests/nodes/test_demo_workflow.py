"""workflows/directanimator_demo.json inside a real ComfyUI, with the bundled default model copied into the
server's model folders and the demo's held-out pair as inputs (what ``demo`` writes to comfyui_input/)."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from directanimator_core.default_model import MODEL_FILE, VAE_FILE
from directanimator_core.default_model.evaluate import heldout_pair
from directanimator_core.default_model.recipe import DEFAULT
from directanimator_core.demo import write_comfyui_inputs
from harness.comfyui import ComfyServer
from harness.paths import REPO
from harness.prompts import api_prompt

pytestmark = [pytest.mark.comfy, pytest.mark.skipif(not (MODEL_FILE.is_file() and VAE_FILE.is_file()),
                                                    reason="the default model's weights are not committed yet")]

FRAMES = 5  # a short driver keeps the run small; the workflow takes the length from the video
@pytest.fixture(scope="module")
def server(comfy_server: ComfyServer) -> ComfyServer:
    models = comfy_server.base / "models"
    for folder in ("diffusion_models", "vae"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(MODEL_FILE, models / "diffusion_models" / "directanimator_default.safetensors")
    shutil.copyfile(VAE_FILE, models / "vae" / "directanimator_default_vae.safetensors")
    pair = heldout_pair(DEFAULT, 0, FRAMES)
    write_comfyui_inputs(comfy_server.base / "input", pair.reference, pair.reference_render.person[0],
                         pair.driving.render.frames,
                         pair.driving.render.person)
    return comfy_server


def test_demo_workflow_runs_the_default_model(server: ComfyServer) -> None:
    workflow = json.loads((REPO / "workflows" / "directanimator_demo.json").read_text())
    prompt = api_prompt(workflow, server.object_info(), {"DirectAnimatorSampler": {"steps": 2}})
    outputs = server.run(prompt)
    node = next(i for i, n in prompt.items() if n["class_type"] == "SaveVideo")
    capture, frames = cv2.VideoCapture(str(server.output_file(outputs[node]["images"][0]))), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    video = np.stack(frames)
    assert video.shape == (FRAMES, DEFAULT.height, DEFAULT.width, 3)
    assert video.std() > 1.0  # a decoded video, not a blank
