"""Our cue nodes into core's WanAnimateToVideo, inside ComfyUI's Python (run as a script).

    python wan_animate.py COMFY_DIR BASE_DIR REPORT.json       the checks (the report holds the figures)
    python wan_animate.py COMFY_DIR BASE_DIR --write-models    only the model files, into BASE_DIR/models

ComfyUI is imported with ``--cpu --base-directory BASE_DIR``; the pack is imported as ComfyUI imports a custom
node package (harness.in_comfyui.import_pack). Driving footage is a panned real portrait
(``BASE_DIR/animate_frames.npy``, a face in every frame), segmented by the pose cue's built-in segmenter, the
person then grown and cut out of the frames by the Cut Out Person node. The Wan-Animate checkpoint is core's own
AnimateWanModel at width 128 (head width 128, 5 blocks: one face-adapter block) with seeded random weights, saved
in core's key layout (``model.diffusion_model.``), so core's Load Diffusion Model detects it as Wan 2.2 Animate.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

COMFY_DIR, BASE_DIR = sys.argv[1], Path(sys.argv[2])
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, COMFY_DIR)
sys.path.extend([str(REPO / "tests"), str(REPO)])  # after ComfyUI: its nodes.py, not our nodes/
ARGS = sys.argv[3:]
sys.argv = [sys.argv[0], "--cpu", "--base-directory", str(BASE_DIR)]

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.ops  # noqa: E402
import nodes as core_nodes  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from comfy.ldm.wan.model_animate import AnimateWanModel  # noqa: E402
from comfy_extras.nodes_model_advanced import ModelSamplingSD3  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from harness.in_comfyui import import_pack  # noqa: E402

ANIMATE = "da_wan_animate_tiny.safetensors"  # stands where the workflow's wan2.2_animate_14B_bf16 would
VAE = "da_wan_vae_tiny.safetensors"  # our Wan 2.1 VAE at 1/12 width, real key names
WIDTH = HEIGHT = 64
LENGTH = 5  # pixel frames: 2 latent frames, after the reference's one
SHIFT, SEED, STEPS = 5.0, 3, 1  # one step: each runs the motion encoder on 5 faces at 512x512


# -- the model files -----------------------------------------------------------------------------------------

def animate_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Core's AnimateWanModel, small, every weight drawn at a scale that keeps activations of order 1."""
    model = AnimateWanModel(dim=128, ffn_dim=256, num_heads=1, num_layers=5, in_dim=36, out_dim=16, text_dim=4096,
                            operations=comfy.ops.disable_weight_init)  # num_layers // 5 = 1 face-adapter block
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, value in model.state_dict().items():
        if value.ndim <= 1:
            # norms' gains 1, biases 0; the blur kernel buffers of the motion encoder are data, kept
            kept = name.endswith("kernel")
            value = value if kept else (torch.ones_like(value) if name.endswith("weight") else torch.zeros_like(value))
        elif name.startswith("motion_encoder."):  # EqualConv2d / EqualLinear scale by 1/sqrt(fan_in) themselves
            value = torch.randn(value.shape, generator=generator)
        else:
            fan_in = value[0].numel()
            value = torch.randn(value.shape, generator=generator) / fan_in ** 0.5
        state[f"model.diffusion_model.{name}"] = value.float().contiguous()
    return state


def write_models(models: Path) -> None:
    from directanimator_core.models.vae import TINY_VAE, build_vae

    for folder in ("diffusion_models", "vae"):
        (models / folder).mkdir(parents=True, exist_ok=True)
    save_file(animate_state_dict(), str(models / "diffusion_models" / ANIMATE))
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in build_vae(TINY_VAE).state_dict().items()}, str(models / "vae" / VAE))


def stats(a: torch.Tensor, b: torch.Tensor) -> dict:
    return {"shape_a": list(a.shape), "shape_b": list(b.shape),
            "max_abs": float((a.float() - b.float()).abs().max()) if a.shape == b.shape else None}


# -- the checks ---------------------------------------------------------------------------------------------

def main(report_path: Path) -> None:
    from comfy_extras.nodes_wan import WanAnimateToVideo

    torch.set_num_threads(1)
    ours = import_pack()[1]
    frames = torch.from_numpy(np.load(BASE_DIR / "animate_frames.npy")).float() / 255  # (F, H, W, 3)
    pose, cut = ours["DirectAnimatorPoseCue"].execute(frames, 0.04, False, 0, "opencv (built-in)").args  # built-in
    background, person = ours["DirectAnimatorCutOut"].execute(frames, cut, 2).args  # the mask grown by 2 px
    face, found = ours["DirectAnimatorFaceCue"].execute(frames, 512, 512, 1.6, 3.0, "opencv haar (built-in)",
                                                        mask=cut).args
    vae = core_nodes.VAELoader().load_vae(VAE)[0]
    generator = torch.Generator().manual_seed(11)
    text = [[torch.randn(1, 4, 4096, generator=generator), {}]]
    negative = [[torch.randn(1, 2, 4096, generator=generator), {}]]
    reference = frames[:1]

    def animate(face_video=face, character_mask=person, background_video=background):
        return WanAnimateToVideo.execute(text, negative, vae, WIDTH, HEIGHT, LENGTH, 1, 5, 0,
                                         reference_image=reference, face_video=face_video,
                                         character_mask=character_mask, background_video=background_video).args

    positive, negative_out, latent, trim_latent, trim_image, offset = animate()
    cond, uncond = positive[0][1], negative_out[0][1]
    report: dict = {"frames": int(frames.shape[0]), "faces_found": int(found[:, 0, 0].sum()),
                    "face_cue_shape": list(face.shape), "person_mask_shape": list(person.shape),
                    "background_shape": list(background.shape), "pose_shape": list(pose.shape),
                    "cut_mask_pixels": int((cut > 0.5).sum()), "grown_mask_pixels": int((person > 0.5).sum()),
                    "grown_covers_cut": bool((person[cut > 0.5] > 0.5).all()),
                    "trim_latent": trim_latent, "trim_image": trim_image, "video_frame_offset": offset,
                    "latent_shape": list(latent["samples"].shape)}

    # face_video: our cue at 512x512, mapped to [-1, 1], (1, C, F, 512, 512); the negative gets -1 (black)
    expected_face = (face[:LENGTH] * 2 - 1).movedim(-1, 0)[None]  # (1, 3, F, 512, 512)
    report["face_video"] = stats(cond["face_video_pixels"], expected_face)
    report["negative_face_is_black"] = bool((uncond["face_video_pixels"] == -1).all())
    report["black_face_frames"] = int((face.flatten(1).amax(1) == 0).sum())

    # character_mask: core's mask after the reference frame holds our mask at latent size, nearest (1 = generate)
    mask = cond["concat_mask"]  # (1, 4, 1 + T, h, w)
    report["concat_mask_shape"] = list(mask.shape)
    report["reference_frame_mask_max"] = float(mask[:, :, 0].max())  # 0: the reference is kept
    per_frame = mask[0, :, 1:].transpose(0, 1).reshape(-1, mask.shape[-2], mask.shape[-1])  # (4 T, h, w)
    small = torch.nn.functional.interpolate(person[:, None], size=mask.shape[-2:], mode="nearest-exact")[:, 0]
    report["character_mask"] = stats(per_frame[:LENGTH], small[:LENGTH])
    report["mask_padding_frames_are_ones"] = bool((per_frame[LENGTH:] == 1).all())
    inside = small[:LENGTH] > 0.5
    report["mask_mean_on_person"] = float(per_frame[:LENGTH][inside].mean())
    report["mask_mean_off_person"] = float(per_frame[:LENGTH][~inside].mean())

    # background_video: the frames after the reference latent are our background, encoded by the VAE
    import comfy.utils

    resized = comfy.utils.common_upscale(background[:LENGTH].movedim(-1, 1), WIDTH, HEIGHT, "area",
                                         "center").movedim(1, -1)
    report["background_latent"] = stats(cond["concat_latent_image"][:, :, 1:], vae.encode(resized))
    report["cut_out_pixels_black"] = bool((background[person > 0.5] == 0).all())
    report["kept_pixels_unchanged"] = stats(background[person < 0.5], frames[person < 0.5])

    report["model"] = run_model(positive, negative_out, latent, animate)
    report_path.write_text(json.dumps(report, indent=1))


def run_model(positive, negative, latent, animate) -> dict:
    """Core's Load Diffusion Model -> ModelSamplingSD3 -> KSampler on WanAnimateToVideo's outputs: the face cue
    and the mask reach the Wan-Animate model (changing them changes the latent)."""
    model = core_nodes.UNETLoader().load_unet(ANIMATE, "default")[0]
    found = {"model_class": type(model.model).__name__, "diffusion_model": type(model.model.diffusion_model).__name__}
    model = ModelSamplingSD3().patch(model, SHIFT)[0]

    def sample(pos, neg, lat) -> torch.Tensor:
        return core_nodes.common_ksampler(model, SEED, STEPS, 1.0, "euler", "simple", pos, neg, lat)[0]["samples"]

    base = sample(positive, negative, latent)
    found["latent"] = list(base.shape)
    found["finite"] = bool(torch.isfinite(base).all())
    found["scale"] = float(base.float().std())
    pos, neg, lat = animate(face_video=torch.zeros(LENGTH, 512, 512, 3))[:3]
    found["black_faces_vs_ours"] = stats(sample(pos, neg, lat), base)
    pos, neg, lat = animate(character_mask=torch.ones(LENGTH, *positive[0][1]["concat_mask"].shape[-2:]))[:3]
    found["all_ones_mask_vs_ours"] = stats(sample(pos, neg, lat), base)
    return found


if __name__ == "__main__":
    if ARGS == ["--write-models"]:
        write_models(BASE_DIR / "models")
    else:
        with torch.inference_mode():
            main(Path(ARGS[0]))
