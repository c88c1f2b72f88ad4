"""The native path (DirectAnimator on core's own Wan MODEL) against our own engine, inside ComfyUI.

harness/native_path.py runs in ComfyUI's Python (a subprocess, stopped by its PID): core's Load Diffusion
Model reads a small Wan image-to-video DiT in core's layout (head width 128, patch 2), our adapter goes on
as a MODEL_PATCH, core's KSampler (euler, simple, ModelSamplingSD3 shift 5, 4 steps: the schedules then
coincide) samples it; our engine samples the same files with the same seed. Driving footage is a 64x64 crop
of vtest.avi around a walker, the reference the astronaut.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from directanimator_core.default_model import MODEL_FILE, VAE_FILE
from harness import media
from harness.comfyui import ComfyServer, comfyui_dir
from harness.in_comfyui import prepare_base, run_script
from harness.models import NATIVE_BASE, NATIVE_LORA, write_native_models
from harness.paths import REPO
from harness.prompts import api_prompt

pytestmark = [pytest.mark.comfy, pytest.mark.slow]
LIMIT_S = 600
TOLERANCE = 1e-4  # fp32 on both sides; the latents are of order 1



@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("native")
    prepare_base(base)
    if MODEL_FILE.is_file() and VAE_FILE.is_file():  # the bundled default model, named as the demo workflow names it
        for folder in ("diffusion_models", "directanimator"):
            shutil.copyfile(MODEL_FILE, base / "models" / folder / "directanimator_default.safetensors")
        shutil.copyfile(VAE_FILE, base / "models" / "vae" / "directanimator_default_vae.safetensors")
    out = base / "report.json"
    run_script("native_path.py", [str(comfyui_dir()), str(base), str(out)], base, LIMIT_S)
    return json.loads(out.read_text())


def test_ksampler_on_core_wan_with_the_patch_gives_our_engines_latent(report: dict) -> None:
    cfg1 = report["cfg1"]
    assert cfg1["shape_a"] == cfg1["shape_b"] == [1, 16, 2, 8, 8]
    assert cfg1["scale"] > 0.5  # a real latent, not zeros
    assert cfg1["max_abs"] < TOLERANCE, report
    assert report["cfg1_without_patch"]["max_abs"] > 100 * TOLERANCE, report  # the cues did act
    # our own VAE on the same file encodes the same conditioning: animate() agrees too
    assert report["cfg1_own_vae"]["max_abs"] < 1e-3, report


def test_cfg_batches_cond_and_uncond_and_still_matches(report: dict) -> None:
    # KSampler runs cond and uncond in one batch of 2; the cues are shared by both, as in our sampler
    assert report["cfg3_text"]["max_abs"] < TOLERANCE, report
    # SamplerCustomAdvanced (RandomNoise, CFGGuider, KSamplerSelect euler, BasicScheduler simple) likewise
    assert report["advanced_cfg3_text"]["max_abs"] < TOLERANCE, report
    assert report["cfg3_vs_cfg1"]["max_abs"] > 100 * TOLERANCE, report  # the prompt and cfg did act


def test_wan21_i2v_with_its_clip_image_branch_matches_too(report: dict) -> None:
    # Wan 2.1 I2V 14B's layout: img_emb and k_img / v_img, fed by CLIP Vision Encode through the conditioning
    assert report["clip_branch_cfg3"]["max_abs"] < TOLERANCE, report
    assert report["clip_branch_missing"] == (
        "InputError: this Wan 2.1 image-to-video model needs the reference's CLIP vision features: connect CLIP "
        "Vision Encode (clip_vision_h) to clip_vision_output"), report


def test_a_text_to_video_base_is_refused_on_both_paths(report: dict) -> None:
    # the reference enters as Wan's image-to-video channels; a t2v base (in_dim 16) has none, on either path
    t2v = report["t2v"]
    assert t2v["native"] == ("InputError: this Wan MODEL takes 16 input channels; the reference enters as 20 image "
                             "channels beside the 16 noise channels: load an image-to-video Wan checkpoint (in_dim 36)")
    assert t2v["engine"].startswith("InputError: this backbone (in_dim 16) has no image input"), t2v


def test_lora_before_the_patch_acts_as_merging_it_into_the_base(report: dict) -> None:
    assert report["lora_vs_merged"]["max_abs"] < TOLERANCE, report
    assert report["lora_vs_base"]["max_abs"] > 10 * TOLERANCE, report  # the LoRA changed the result


def test_the_adapter_is_a_loaded_model_while_sampling_and_freed_after(report: dict) -> None:
    seen = report["loaded_while_sampling"]
    assert len(seen) == 4 and all("CueFusion" in names and "WAN21" in names for names in seen), seen
    assert "CueFusion" not in report["loaded_after_unload"], report


def test_a_low_vram_load_places_the_whole_adapter(report: dict) -> None:
    # its layers are not ComfyUI's cast-per-call ops: what a partial load left behind would sit on the wrong device
    low = report["low_vram_load"]
    assert low["ours"] == low["size"] > low["plain"], low


def test_an_fp8_base_from_core_loader_runs_the_patch(report: dict) -> None:
    fp8 = report["fp8"]
    assert fp8["shape_a"] == [1, 16, 2, 8, 8] and np.isfinite(fp8["max_abs"])
    assert fp8["max_abs"] < 0.25 * fp8["scale"], report  # fp8 weights: close, not equal


BUNDLED = pytest.mark.skipif(not (MODEL_FILE.is_file() and VAE_FILE.is_file()),
                             reason="the default model's weights are not committed")


@BUNDLED
# -- one sampler for both worlds: DirectAnimator Sampler on the core MODEL + the adapter ---------------------------

def test_our_sampler_on_a_core_model_gives_the_latent_it_gives_on_our_model(report: dict) -> None:
    one = report["one_sampler"]
    assert one["euler"]["shape_a"] == one["euler"]["shape_b"] == [1, 16, 2, 8, 8]
    assert one["euler"]["scale"] > 0.5 and one["euler"]["max_abs"] < TOLERANCE, one
    # on the schedule where the names coincide it is core's KSampler's latent, to the bit here
    assert one["euler_vs_ksampler"]["max_abs"] < TOLERANCE, one


def test_cue_and_text_guidance_on_the_core_model_match_our_engine(report: dict) -> None:
    one = report["one_sampler"]
    assert one["guided"]["max_abs"] < TOLERANCE, one  # cfg 3 with a negative prompt, cue_cfg 2.5, unipc_wan
    assert one["guided_vs_unguided"]["max_abs"] > 100 * TOLERANCE, one  # the guidance did act


def test_the_guider_node_gives_samplercustomadvanced_cue_guidance(report: dict) -> None:
    # Apply -> DirectAnimator Guider (cfg 3, cue_cfg 2.5) -> SamplerCustomAdvanced == our engine's guidance
    assert report["guider_node_cue_cfg"]["max_abs"] < TOLERANCE, report
    assert report["guider_node_unpatched"].startswith("InputError: this MODEL has no DirectAnimator on it"), report


def test_long_clips_in_blended_windows_on_the_core_model_match_our_engine(report: dict) -> None:
    one = report["one_sampler"]
    for solver in ("uni_pc", "dpmpp_2m_flow"):  # ComfyUI's own uni_pc on the core MODEL; ours as a KSAMPLER
        result = one[f"windows_{solver}"]
        assert result["shape_a"] == result["shape_b"] == [1, 16, 4, 8, 8], one  # 13 frames, two 9-frame windows
        assert result["max_abs"] < TOLERANCE, one


def test_our_sampler_on_a_core_model_runs_on_comfyuis_machinery(report: dict) -> None:
    one = report["one_sampler"]
    # the model manager holds the adapter with the Wan model at every call; ComfyUI's progress bar counts the steps
    seen = one["euler_loaded_while_sampling"]
    assert len(seen) == 4 and all("CueFusion" in names and "WAN21" in names for names in seen), seen
    assert [u[:2] for u in one["euler_progress"]] == [[1, 4], [2, 4], [3, 4], [4, 4]], one
    # ComfyUI's interrupt stops it with ComfyUI's own exception (the executor reports it as interrupted, not failed)
    assert one["interrupted"].startswith("InterruptProcessingException"), one
    assert one["missing_patch"].startswith("InputError: a core Wan MODEL needs the DirectAnimator adapter"), one
    assert one["patch_on_da_model"].startswith("InputError: model_patch is for a core Wan MODEL"), one


@pytest.mark.parametrize("stored", ["bf16_file", "scaled_fp8_file"])
def test_bf16_and_scaled_fp8_files_through_core_loader_match_our_engine_on_them(report: dict, stored: str) -> None:
    # the same stored weights on both paths: core dequantises (scale_weight) as our loader does
    result = report[stored]
    assert result["shape_a"] == [1, 16, 2, 8, 8] and result["scale"] > 0.5, report
    assert result["max_abs"] < TOLERANCE, report  # measured 1.9e-6 (bf16) and 1.4e-6 (scaled fp8)


def test_the_bundled_models_adapter_part_loads_as_a_model_patch(report: dict) -> None:
    assert report["bundled"]["adapter_blocks"] == 4, report["bundled"]


@BUNDLED
def test_the_bundled_model_runs_the_native_path_and_matches_our_engine(report: dict) -> None:
    bundled = report["bundled"]
    assert bundled["core_loader"] == "loaded", bundled
    assert bundled["native_vs_engine"]["max_abs"] < TOLERANCE, bundled  # measured 8.1e-6 (fp16 weights)


# -- the shipped native workflow in a real ComfyUI server --------------------------------------------------------

REFERENCE, DRIVING = "da_native_ref.png", "da_native_drive5.avi"
ENCODERS = frozenset({"CLIPLoader", "CLIPTextEncode", "CLIPVisionLoader", "CLIPVisionEncode"})  # multi-GB models
LORA_NODE = 6  # the workflow's LoRA loader, bypassed as shipped


@pytest.fixture(scope="module")
def server(comfy_server: ComfyServer) -> ComfyServer:
    write_native_models(comfy_server.base / "models")
    shutil.copy(media.vtest_clip(5), comfy_server.base / "input" / DRIVING)
    cv2.imwrite(str(comfy_server.base / "input" / REFERENCE), cv2.cvtColor(media.astronaut(), cv2.COLOR_RGB2BGR))
    return comfy_server


def native_prompt(server: ComfyServer, lora: bool) -> dict:
    workflow = json.loads((REPO / "workflows" / "directanimator_native.json").read_text())
    if lora:
        next(n for n in workflow["nodes"] if n["id"] == LORA_NODE)["mode"] = 0
    lora_name = next(n for n in workflow["nodes"] if n["id"] == LORA_NODE)["widgets_values"][0]
    values = {"UNETLoader": {"unet_name": NATIVE_BASE}, "KSampler": {"steps": 2, "cfg": 1.0, "seed": 3 + lora},
              "DirectAnimatorApply": {"width": 64, "height": 64}, "DirectAnimatorCueTriplet": {"preview_height": 64}}
    return api_prompt(workflow, server.object_info(), values,
                      {"reference.png": REFERENCE, "driving.mp4": DRIVING, lora_name: NATIVE_LORA}, ENCODERS)


def saved_video(server: ComfyServer, prompt: dict, outputs: dict) -> np.ndarray:
    node = next(i for i, n in prompt.items() if n["class_type"] == "SaveVideo")
    capture, frames = cv2.VideoCapture(str(server.output_file(outputs[node]["images"][0]))), []
    while (read := capture.read())[0]:
        frames.append(read[1])
    capture.release()
    return np.stack(frames)


def test_native_workflow_runs_core_nodes_to_a_saved_video(server: ComfyServer) -> None:
    prompt = native_prompt(server, lora=False)
    assert "LoraLoaderModelOnly" not in {n["class_type"] for n in prompt.values()}  # bypassed as shipped
    assert {"UNETLoader", "KSampler", "VAEDecode", "CreateVideo", "SaveVideo"} <= {n["class_type"] for n in prompt.values()}
    frames = saved_video(server, prompt, server.run(prompt))
    assert frames.shape == (5, 64, 64, 3) and frames.std() > 1.0
    assert "Requested to load CueFusion" in server.log()  # the adapter went through ComfyUI's model manager


def test_native_workflow_with_its_lora_enabled_runs(server: ComfyServer) -> None:
    prompt = native_prompt(server, lora=True)
    lora = next(n for n in prompt.values() if n["class_type"] == "LoraLoaderModelOnly")
    assert lora["inputs"]["lora_name"] == NATIVE_LORA
    frames = saved_video(server, prompt, server.run(prompt))
    assert frames.shape == (5, 64, 64, 3) and frames.std() > 1.0


def test_native_sampler_workflow_runs_our_sampler_on_the_core_model(server: ComfyServer) -> None:
    workflow = json.loads((REPO / "workflows" / "directanimator_native_sampler.json").read_text())
    lora_name = next(n for n in workflow["nodes"] if n["id"] == LORA_NODE)["widgets_values"][0]
    values = {"UNETLoader": {"unet_name": NATIVE_BASE}, "DirectAnimatorCueTriplet": {"preview_height": 64},
              "DirectAnimatorSampler": {"steps": 2, "cfg": 1.0, "width": 64, "height": 64, "window_frames": 9,
                                        "window_overlap": 4}}
    prompt = api_prompt(workflow, server.object_info(), values,
                        {"reference.png": REFERENCE, "driving.mp4": DRIVING, lora_name: NATIVE_LORA}, ENCODERS)
    sampler = next(n for n in prompt.values() if n["class_type"] == "DirectAnimatorSampler")
    assert sampler["inputs"]["cue_cfg"] == 1.5 and isinstance(sampler["inputs"]["model_patch"], list)
    assert "DirectAnimatorModelLoader" not in {n["class_type"] for n in prompt.values()}  # core's loader only
    frames = saved_video(server, prompt, server.run(prompt))
    assert frames.shape == (5, 64, 64, 3) and frames.std() > 1.0


# -- the bundled model: a graph of core loaders, our cue and apply nodes, core's KSampler and VAE Decode ------

DEMO_FRAMES = 5


@pytest.fixture(scope="module")
def demo_server(comfy_server: ComfyServer) -> ComfyServer:
    from directanimator_core.default_model.evaluate import heldout_pair
    from directanimator_core.default_model.recipe import DEFAULT
    from directanimator_core.demo import write_comfyui_inputs

    models = comfy_server.base / "models"
    for folder in ("diffusion_models", "directanimator", "vae"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    for folder in ("diffusion_models", "directanimator"):  # the merged file: core's loader, and its adapter part
        shutil.copyfile(MODEL_FILE, models / folder / "directanimator_default.safetensors")
    shutil.copyfile(VAE_FILE, models / "vae" / "directanimator_default_vae.safetensors")
    pair = heldout_pair(DEFAULT, 0, DEMO_FRAMES)
    write_comfyui_inputs(comfy_server.base / "input", pair.reference, pair.reference_render.person[0],
                         pair.driving.render.frames, pair.driving.render.person)
    return comfy_server


@BUNDLED
def test_the_demo_through_core_nodes_gives_the_demo_workflows_frames(demo_server: ComfyServer) -> None:
    workflow = json.loads((REPO / "workflows" / "directanimator_demo.json").read_text())
    prompt = api_prompt(workflow, demo_server.object_info(), {"DirectAnimatorSampler": {"steps": 4}})
    sampler = next(i for i, n in prompt.items() if n["class_type"] == "DirectAnimatorSampler")
    settings = prompt[sampler]["inputs"]
    assert (settings["solver"], settings["cfg"], settings["cue_cfg"]) == ("euler", 1.0, 1.0)
    vae, reference, cues = settings["vae"], settings["reference"], settings["cues"]
    merged = "directanimator_default.safetensors"
    prompt |= {
        "n_unet": {"class_type": "UNETLoader", "inputs": {"unet_name": merged, "weight_dtype": "default"}},
        "n_shift": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["n_unet", 0], "shift": settings["shift"]}},
        "n_patch": {"class_type": "DirectAnimatorAdapterLoader", "inputs": {"adapter": merged}},
        "n_apply": {"class_type": "DirectAnimatorApply", "inputs": {
            "model": ["n_shift", 0], "model_patch": ["n_patch", 0], "vae": vae, "reference": reference, "cues": cues,
            "width": settings["width"], "height": settings["height"], "length": 0}},
        "n_sample": {"class_type": "KSampler", "inputs": {
            "model": ["n_apply", 0], "positive": ["n_apply", 1], "negative": ["n_apply", 2],
            "latent_image": ["n_apply", 3], "seed": settings["seed"], "steps": 4, "cfg": 1.0, "sampler_name": "euler",
            "scheduler": "simple", "denoise": 1.0}},
        "n_decode": {"class_type": "VAEDecode", "inputs": {"samples": ["n_sample", 0], "vae": vae}},
        "n_save": {"class_type": "SaveImage", "inputs": {"images": ["n_decode", 0], "filename_prefix": "da_native_demo"}},
        "o_decode": {"class_type": "VAEDecode", "inputs": {"samples": [sampler, 0], "vae": vae}},
        "o_save": {"class_type": "SaveImage", "inputs": {"images": ["o_decode", 0], "filename_prefix": "da_engine_demo"}},
    }
    outputs = demo_server.run(prompt)
    native, ours = (np.stack([cv2.imread(str(demo_server.output_file(item))) for item in outputs[node]["images"]])
                    for node in ("n_save", "o_save"))
    assert native.shape == ours.shape == (DEMO_FRAMES, 128, 128, 3) and ours.std() > 1.0
    assert np.abs(native.astype(int) - ours.astype(int)).max() <= 1  # the same video, to 8-bit rounding
