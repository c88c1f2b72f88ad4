"""Our cue nodes feeding core's Wan 2.2 Animate (WanAnimateToVideo), inside a real ComfyUI.

harness/wan_animate.py runs in ComfyUI's Python (a subprocess, stopped by its PID): our Pose Cue, Cut Out Person
and Face Cue nodes on a panned real portrait, core's WanAnimateToVideo on their outputs, and core's Load Diffusion Model +
KSampler on a small Wan-Animate checkpoint in core's key layout (core's own AnimateWanModel class at width 128,
random weights). Then the shipped workflows/directanimator_wan_animate.json runs in a ComfyUI server, with a
test-only text-conditioning node where its text encoder would be.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from harness import media
from harness.comfyui import PACK_NAME, ComfyServer, comfyui_dir
from harness.in_comfyui import FOLDERS, run_script
from harness.paths import REPO
from harness.prompts import api_prompt

pytestmark = [pytest.mark.comfy, pytest.mark.slow]
LIMIT_S = 600
ANIMATE, VAE = "da_wan_animate_tiny.safetensors", "da_wan_vae_tiny.safetensors"  # as harness/wan_animate.py names them


def has_wan_animate() -> bool:
    source = comfyui_dir() / "comfy_extras" / "nodes_wan.py"
    return source.is_file() and "class WanAnimateToVideo" in source.read_text()


@pytest.fixture(scope="module", autouse=True)
def wan_animate_present() -> None:
    if not has_wan_animate():
        pytest.skip("this ComfyUI has no WanAnimateToVideo (comfy_extras/nodes_wan.py): nothing to feed")


def run(base, *args: str) -> str:
    return run_script("wan_animate.py", [str(comfyui_dir()), str(base), *args], base, LIMIT_S)


def driving_clip() -> np.ndarray:
    return media.pan_clip(media.grace_hopper(), count=5, side=400, size=128)  # (5, 128, 128, 3), a face in each


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("wan-animate-models")
    for sub in FOLDERS:
        (base / sub).mkdir(exist_ok=True)
    run(base, "--write-models")
    return base / "models"


@pytest.fixture(scope="module")
def report(models) -> dict:
    base = models.parent
    np.save(base / "animate_frames.npy", driving_clip())
    run(base, str(base / "report.json"))
    return json.loads((base / "report.json").read_text())


def test_the_face_cue_is_wan_animates_face_video_unchanged(report: dict) -> None:
    assert report["faces_found"] == report["frames"] == 5
    assert report["face_cue_shape"] == [5, 512, 512, 3]
    face = report["face_video"]  # core keeps it at 512x512, maps it to [-1, 1], lays it out (1, C, F, H, W)
    assert face["shape_a"] == [1, 3, 5, 512, 512] and face["max_abs"] < 1e-6, face
    assert report["negative_face_is_black"]  # what our face cue gives where no face was found


def test_the_person_mask_is_the_character_mask_with_the_same_polarity(report: dict) -> None:
    assert report["concat_mask_shape"] == [1, 4, 3, 8, 8]  # the reference's latent frame, then 2 of the video
    assert report["reference_frame_mask_max"] == 0.0  # the reference frame is kept
    assert report["character_mask"]["max_abs"] == 0.0, report["character_mask"]  # our mask at latent size, nearest
    # 1 on the person (the reference character is drawn there), 0 off it (the background video is kept)
    assert report["mask_mean_on_person"] == 1.0 and report["mask_mean_off_person"] == 0.0, report
    assert report["mask_padding_frames_are_ones"]  # 4n pixel frames past the clip: generated


def test_cut_out_grows_the_pose_cues_mask(report: dict) -> None:
    assert report["pose_shape"] == report["background_shape"] == [5, 128, 128, 3]
    assert report["person_mask_shape"] == [5, 128, 128]
    assert report["grown_covers_cut"] and report["grown_mask_pixels"] > report["cut_mask_pixels"] > 0, report


def test_cut_outs_background_is_the_background_video_with_the_person_cut_out(report: dict) -> None:
    assert report["cut_out_pixels_black"]
    assert report["kept_pixels_unchanged"]["max_abs"] == 0.0, report["kept_pixels_unchanged"]
    assert report["background_latent"]["max_abs"] < 1e-5, report["background_latent"]
    assert report["latent_shape"] == [1, 16, 3, 8, 8] and report["trim_latent"] == 1


def test_a_wan_animate_checkpoint_in_cores_layout_samples_our_cues(report: dict) -> None:
    model = report["model"]
    assert (model["model_class"], model["diffusion_model"]) == ("WAN22_Animate", "AnimateWanModel"), model
    assert model["latent"] == [1, 16, 3, 8, 8] and model["finite"] and model["scale"] > 0.1, model
    # the face cue reaches the model (through its motion encoder), and so does the mask
    assert model["black_faces_vs_ours"]["max_abs"] > 1e-3, model
    assert model["all_ones_mask_vs_ours"]["max_abs"] > 1e-3, model


# -- the shipped workflow in a ComfyUI server ----------------------------------------------------------------

STUB = "stub_text_encoder"  # tests/harness/stub_text_encoder: CONDITIONING without the 11 GB umT5-XXL
DROP = frozenset({"CLIPLoader", "CLIPVisionLoader", "CLIPVisionEncode"})
REFERENCE, DRIVING = "da_wa_ref.png", "da_wa_drive5.avi"


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    base = tmp_path_factory.mktemp("wan-animate-server")
    shutil.copytree(models, base / "models")
    (base / "input").mkdir()
    media.write_clip(driving_clip(), base / "input" / DRIVING)
    cv2.imwrite(str(base / "input" / REFERENCE), cv2.cvtColor(media.astronaut(), cv2.COLOR_RGB2BGR))
    server = ComfyServer(base=base, packs={PACK_NAME: REPO, STUB: REPO / "tests" / "harness" / STUB})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_the_wan_animate_workflow_runs_to_a_saved_video(server: ComfyServer) -> None:
    workflow = json.loads((REPO / "workflows" / "directanimator_wan_animate.json").read_text())
    values = {"UNETLoader": {"unet_name": ANIMATE}, "VAELoader": {"vae_name": VAE},
              "KSampler": {"steps": 1, "seed": 3},
              "WanAnimateToVideo": {"width": 64, "height": 64, "length": 5}}
    prompt = api_prompt(workflow, server.object_info(), values, {"reference.png": REFERENCE, "driving.mp4": DRIVING},
                        DROP)
    for node in prompt.values():
        if node["class_type"] == "CLIPTextEncode":
            node["class_type"], node["inputs"] = "DATestTextConditioning", {"text": node["inputs"]["text"]}
    animate = next(n for n in prompt.values() if n["class_type"] == "WanAnimateToVideo")["inputs"]
    pose = next(i for i, n in prompt.items() if n["class_type"] == "DirectAnimatorPoseCue")
    cut = next(i for i, n in prompt.items() if n["class_type"] == "DirectAnimatorCutOut")
    face = next(i for i, n in prompt.items() if n["class_type"] == "DirectAnimatorFaceCue")
    assert animate["face_video"] == [face, 0]
    assert prompt[cut]["inputs"]["mask"] == [pose, 1] and prompt[face]["inputs"]["mask"] == [pose, 1]
    assert animate["character_mask"] == [cut, 1] and animate["background_video"] == [cut, 0]
    assert "pose_video" not in animate  # a skeleton goes there, not our pose cue
    outputs = server.run(prompt)
    node = next(i for i, n in prompt.items() if n["class_type"] == "SaveVideo")
    capture, frames = cv2.VideoCapture(str(server.output_file(outputs[node]["images"][0]))), []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    video = np.stack(frames)
    assert video.shape == (5, 64, 64, 3), video.shape  # the reference's latent frame trimmed off
    assert "WAN22_Animate" in server.log()
