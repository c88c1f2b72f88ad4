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

pytestmark = [pytest.mark.comfy, pytest.mark.skipif(not (MODEL_FILE.is_file() and VAE_FILE.is_file()),
                                                    reason="the default model's weights are not committed yet")]

FRAMES = 5  # a short driver keeps the run small; the workflow takes the length from the video
WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"}


def widget_names(spec: dict) -> list:
    """Widget names in widgets_values order; None for the frontend's extra values: seed control after
    the seed, the upload button last (LoadImageMask stores [image, channel, "image"])."""
    names, uploads = [], []
    for section in ("required", "optional"):
        for name, s in spec.get(section, {}).items():
            if isinstance(s[0], list) or s[0] in WIDGET_TYPES:
                options = s[1] if len(s) > 1 else {}
                names.append(name)
                if options.get("control_after_generate"):
                    names.append(None)
                if any(key.endswith("_upload") and value for key, value in options.items()):
                    uploads.append(None)
    return names + uploads


def api_prompt(workflow: dict, info: dict, values: dict) -> dict:
    """The UI-format workflow as an API prompt (Note nodes left out), ``values`` overriding widgets per type."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] == "Note":
            continue
        names = widget_names(info[node["type"]]["input"])
        assert len(names) == len(node["widgets_values"]), node["type"]
        inputs = {name: value for name, value in zip(names, node["widgets_values"]) if name}
        inputs.update(values.get(node["type"], {}))
        for socket in node["inputs"]:
            link = links.get(socket.get("link"))
            if link is not None:
                inputs[socket["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


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
