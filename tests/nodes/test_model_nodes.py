"""Loader, sampler and decode nodes inside a real ComfyUI, with small checkpoints in the real formats.

The test writes into the server's model folders: a 2-block Wan image-to-video DiT in ComfyUI's layout
(``model.diffusion_model.`` keys) under the name ComfyUI's Wan templates use, a DirectAnimator adapter
file (safetensors + metadata) with open gates, and a Wan 2.1 VAE at 1/12 width in the real key names
(ComfyUI's VAELoader reads the width from ``decoder.head.0.gamma``). Driving footage is vtest.avi, the
reference the astronaut; videos are sampled at 64x64 in 2 steps.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from harness import media
from harness.comfyui import ComfyServer, PromptFailed, PromptRejected
from harness.models import ADAPTER, BASE, VAE, write_models
from harness import prompts
from harness.paths import REPO

pytestmark = pytest.mark.comfy

REFERENCE, DRIVING, LONG, MASK = "da_ref.png", "da_drive5.avi", "da_drive13.avi", "da_mask5.avi"
WALKER_FRAME0 = (640, 240, 686, 322)  # x0, y0, x1, y1 of the walker in black (tests/core/test_cues_segment.py)
SIZE = 64
# the text and CLIP-vision encoders are multi-GB models: the tiny backbone has no image branch and
# runs without a prompt, so the workflows' encoder nodes are left out of the API prompts here
ENCODERS = {"CLIPLoader", "CLIPTextEncode", "CLIPVisionLoader", "CLIPVisionEncode"}
FAST = {"DirectAnimatorSampler": {"steps": 2, "cfg": 1.0, "width": SIZE, "height": SIZE, "seed": 3},
        "DirectAnimatorCueTriplet": {"preview_height": 64}}
FILES = {"reference.png": REFERENCE, "driving.mp4": DRIVING, "driving_mask.mp4": MASK}


def write_media(inputs: Path) -> None:
    shutil.copy(media.vtest_clip(5), inputs / DRIVING)
    shutil.copy(media.vtest_clip(13), inputs / LONG)
    cv2.imwrite(str(inputs / REFERENCE), cv2.cvtColor(media.astronaut(), cv2.COLOR_RGB2BGR))
    masks = np.zeros((5, 576, 768, 3), np.uint8)
    x0, y0, x1, y1 = WALKER_FRAME0
    masks[:, y0 - 8:y1 + 8, x0 - 8:x1 + 8] = 255
    media.write_clip(masks, inputs / MASK)


@pytest.fixture(scope="module")
def server(comfy_server: ComfyServer) -> ComfyServer:
    write_models(comfy_server.base / "models")
    write_media(comfy_server.base / "input")
    return comfy_server


# -- UI workflow -> API prompt ------------------------------------------------------------------------------

def api_prompt(workflow: dict, info: dict, values: dict = FAST, files: dict = FILES, drop=ENCODERS) -> dict:
    """harness.prompts.api_prompt with this file's fast settings, media names and dropped encoders."""
    return prompts.api_prompt(workflow, info, values, files, frozenset(drop))


def workflow(name: str) -> dict:
    return json.loads((REPO / "workflows" / f"{name}.json").read_text())


def saved_video(server: ComfyServer, prompt: dict, outputs: dict) -> np.ndarray:
    """The frames of the file SaveVideo wrote, (F, H, W, 3) uint8 RGB."""
    node = next(i for i, n in prompt.items() if n["class_type"] == "SaveVideo")
    item = outputs[node]["images"][0]
    capture = cv2.VideoCapture(str(server.output_file(item)))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame[..., ::-1])
    capture.release()
    return np.stack(frames)


# -- shipped workflows, end to end ------------------------------------------------------------------------------

def test_basic_workflow_runs_to_a_saved_video(server: ComfyServer) -> None:
    prompt = api_prompt(workflow("directanimator_basic"), server.object_info())
    frames = saved_video(server, prompt, server.run(prompt))
    assert frames.shape == (5, SIZE, SIZE, 3)
    assert frames.std() > 1.0  # random weights, but a real decoded video, not a blank


def test_long_video_workflow_runs_in_windows(server: ComfyServer) -> None:
    values = {**FAST, "DirectAnimatorSampler": {**FAST["DirectAnimatorSampler"], "window_frames": 9,
                                                "window_overlap": 4}}
    prompt = api_prompt(workflow("directanimator_long_video"), server.object_info(), values,
                        {**FILES, "driving.mp4": LONG})
    frames = saved_video(server, prompt, server.run(prompt))
    assert frames.shape == (13, SIZE, SIZE, 3)  # 4 latent frames from 2 windows of 3, one shared
    assert "2 windows of 3 latent frames over 4, overlap 1" in server.log()


def test_external_mask_workflow_runs(server: ComfyServer) -> None:
    prompt = api_prompt(workflow("directanimator_external_mask"), server.object_info())
    frames = saved_video(server, prompt, server.run(prompt))
    assert frames.shape == (5, SIZE, SIZE, 3)


# -- the sampler's LATENT in ComfyUI's own nodes --------------------------------------------------------------------

def graph(sampler: dict | None = None, loader: dict | None = None, decode: str = "VAEDecode",
          prefix: str = "da_dec") -> dict:
    """Reference + 5-frame clip -> triplet -> loader/sampler -> ``decode`` -> SaveImage."""
    settings = {"width": SIZE, "height": SIZE, "steps": 2, "cfg": 1.0, "cue_cfg": 1.0, "shift": 5.0,
                "solver": "euler", "seed": 3, "denoise": 1.0, "window_frames": 81, "window_overlap": 16}
    model = {"base_model": BASE, "adapter": ADAPTER, "weight_dtype": "auto", "offload": "auto (free VRAM)",
             "vram_budget_gb": 0.0, "prefetch": 1, "attention": "sdpa"}
    decoder = {"samples": ["sampler", 0], "vae": ["vae", 0]}
    if decode == "DirectAnimatorDecode":
        decoder |= {"fps": 10.0, "tile_size": 0, "overlap": 64, "chunk_frames": 64}
    return {
        "ref": {"class_type": "LoadImage", "inputs": {"image": REFERENCE}},
        "v": {"class_type": "LoadVideo", "inputs": {"file": DRIVING}},
        "frames": {"class_type": "GetVideoComponents", "inputs": {"video": ["v", 0]}},
        "cues": {"class_type": "DirectAnimatorCueTriplet",
                 "inputs": {"frames": ["frames", 0], "reference": ["ref", 0], "cutoff": 0.04, "greyscale": False,
                            "softness": 8.0, "grid": 16, "face_margin": 1.6, "person_index": 0,
                            "segmenter": "opencv (built-in)", "face_detector": "opencv haar (built-in)",
                            "preview_height": 64}},
        "model": {"class_type": "DirectAnimatorModelLoader", "inputs": model | (loader or {})},
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "sampler": {"class_type": "DirectAnimatorSampler",
                    "inputs": {"model": ["model", 0], "vae": ["vae", 0], "reference": ["ref", 0],
                               "cues": ["cues", 0]} | settings | (sampler or {})},
        "decode": {"class_type": decode, "inputs": decoder},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["decode", 0], "filename_prefix": prefix}},
    }


def saved_images(server: ComfyServer, outputs: dict) -> np.ndarray:
    return np.stack([cv2.imread(str(server.output_file(item))) for item in outputs["save"]["images"]])


def test_latent_decodes_with_comfys_vae_decode_and_the_same_seed_reproduces(server: ComfyServer) -> None:
    first = saved_images(server, server.run(graph(prefix="da_first")))
    assert first.shape == (5, SIZE, SIZE, 3)
    # a setting that cannot matter for a one-window clip makes ComfyUI run the sampler again
    again = saved_images(server, server.run(graph({"window_overlap": 12}, prefix="da_again")))
    assert np.array_equal(first, again)
    ours = saved_images(server, server.run(graph(decode="DirectAnimatorDecode", prefix="da_ours")))
    assert np.abs(ours.astype(int) - first.astype(int)).max() <= 1  # the same VAE pass, whole frames
    other = saved_images(server, server.run(graph({"seed": 4}, prefix="da_other")))
    assert not np.array_equal(first, other)


def test_placement_is_logged_in_one_line(server: ComfyServer) -> None:
    server.run(graph({"seed": 5}, prefix="da_log"))
    lines = [line for line in server.log().splitlines() if "DirectAnimator placement of" in line]
    assert lines and all("blocks resident" in line and "predicted peak" in line for line in lines)
    assert any(f"5 frames at {SIZE}x{SIZE}: 2 blocks resident, 0 streamed" in line for line in lines)


# -- errors a user can fix ------------------------------------------------------------------------------------------

def test_missing_model_file_is_refused_with_what_to_do(server: ComfyServer) -> None:
    with pytest.raises(PromptRejected) as refused:
        server.queue(graph(loader={"base_model": "wan2.1_i2v_720p_14B_bf16.safetensors"}))
    assert ("wan2.1_i2v_720p_14B_bf16.safetensors is not in models/diffusion_models: put the file there"
            in str(refused.value))


def test_wan_checkpoint_without_adapter_says_to_pick_one(server: ComfyServer) -> None:
    error = server.execution_error(graph(loader={"adapter": "(merged in base)"}))
    assert error["node_type"] == "DirectAnimatorModelLoader" and error["exception_type"].endswith("CheckpointError")
    assert error["exception_message"].strip() == (
        f"{BASE} is a plain Wan checkpoint with no DirectAnimator adapter in it: pick the adapter file "
        "(models/directanimator) in the adapter input")


def test_triplet_of_another_size_says_to_connect_the_reference(server: ComfyServer) -> None:
    prompt = graph({"width": 0, "height": 0, "seed": 6})
    prompt["small"] = {"class_type": "ImageScale", "inputs": {"image": ["ref", 0], "upscale_method": "area",
                                                              "width": 256, "height": 256, "crop": "disabled"}}
    prompt["sampler"]["inputs"]["reference"] = ["small", 0]
    error = server.execution_error(prompt)
    assert error["node_type"] == "DirectAnimatorSampler"
    assert error["exception_message"].strip() == (
        "the cue triplet is 512x512 but the reference is 256x256: connect the same reference image to the Cue "
        "Triplet node, or set width and height")


def test_the_samplers_largest_size_is_refused_by_admission_and_the_server_lives(server: ComfyServer) -> None:
    # width = height = 4096, the sampler's own maximum: once the OOM killer ended ComfyUI (issue 15)
    error = server.execution_error(graph({"width": 4096, "height": 4096, "steps": 1, "seed": 10}))
    assert error["node_type"] == "DirectAnimatorSampler" and error["exception_type"].endswith("InputError")
    message = error["exception_message"].strip()
    assert message.startswith("a window of 5 frames at 4096x4096 needs about ") and "GiB of host memory" in message
    assert message.endswith("lower width and height (or window_frames), or free memory")
    assert server.process.poll() is None and "DirectAnimatorSampler" in server.object_info()


def test_interrupt_during_sampling_ends_the_prompt_and_the_next_runs(server: ComfyServer) -> None:
    server.run(graph({"seed": 7}, prefix="da_warm"))  # cues, model and VAE now come from the cache
    prompt_id = server.queue(graph({"seed": 8, "steps": 1000}, prefix="da_cancelled"))
    deadline = time.monotonic() + 60
    while not any(item[1] == prompt_id for item in server.get("/queue")["queue_running"]):
        assert time.monotonic() < deadline, "the prompt never started"
        time.sleep(0.05)
    time.sleep(0.2)  # into the sampler (the cues come from the cache); 1000 steps last far longer
    server.post("/interrupt", {})
    with pytest.raises(PromptFailed):
        server.wait(prompt_id, timeout=60)
    messages = server.get(f"/history/{prompt_id}")[prompt_id]["status"]["messages"]
    interrupted = [body for kind, body in messages if kind == "execution_interrupted"]
    assert interrupted and interrupted[0]["node_type"] == "DirectAnimatorSampler"
    after = saved_images(server, server.run(graph({"seed": 9}, prefix="da_after")))
    assert after.shape == (5, SIZE, SIZE, 3)


def test_decode_in_tiles(server: ComfyServer) -> None:
    prompt = graph({"seed": 10}, decode="DirectAnimatorDecode", prefix="da_tiled")
    prompt["decode"]["inputs"] |= {"tile_size": 32, "overlap": 8, "chunk_frames": 8}
    tiled = saved_images(server, server.run(prompt))
    assert tiled.shape == (5, SIZE, SIZE, 3)
    assert "decode: tiles of (32, 32) px, overlap 8" in server.log()


def test_an_old_solver_name_still_runs_and_an_unknown_one_is_refused_by_name(server: ComfyServer) -> None:
    """"unipc" (Wan's UniPC before it was called unipc_wan) is in saved workflows: it runs as unipc_wan."""
    old = saved_images(server, server.run(graph({"solver": "unipc"}, prefix="da_old_name")))
    new = saved_images(server, server.run(graph({"solver": "unipc_wan", "scheduler": "linear_shifted"},
                                                prefix="da_new_name")))
    assert np.array_equal(old, new)
    with pytest.raises(PromptRejected, match="solver 'heun' is unknown: choose one of .*unipc_wan"):
        server.queue(graph({"solver": "heun"}))
