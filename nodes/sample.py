"""DirectAnimatorSampler: model + ComfyUI VAE + reference + cue triplet -> a standard Wan LATENT.

The reference and the cue videos are encoded with ComfyUI's own VAE (raw Wan latents, normalised in
the core as ComfyUI's Wan model does with process_in); the result is a raw Wan LATENT, so ComfyUI's
VAE Decode (or DirectAnimator Decode) turns it into frames. Long clips run in blended latent windows.
"""

from __future__ import annotations

import logging
from typing import Optional

import comfy.latent_formats
import comfy.model_management
import torch
from comfy_api.latest import io

from ..directanimator_core.pipeline import loaded_model as core
from ..directanimator_core.admission import admit, sampler_need
from ..directanimator_core.pipeline.windowed import (
    WindowConfig, check_run, encode_windows, output_size, sample_windows, usable_frames)
from ..directanimator_core.errors import InputError
from ..directanimator_core.sampling import RENAMED_SOLVERS, SCHEDULERS, SOLVERS, SamplerConfig
from . import _convert, _progress
from . import native_sampling
from .comfy_vae import comfy_encoder, vae_encode_bytes
from .native import ModelPatch
from .types import DACues, DAModel

log = logging.getLogger(__name__)

CATEGORY = "DirectAnimator/sampling"
EVERYTHING = 2**62  # a budget nothing exceeds: "plan it fully resident"


def sampling_budget(animator: core.Animator, frames: int, height: int, width: int) -> Optional[int]:
    """Ask ComfyUI's model manager to free what the run needs (a fully resident run, or the user's budget),
    evicting other models, then return the budget: the user's, else the free memory ComfyUI reports;
    None on the CPU (nothing to plan)."""
    if animator.device.type == "cpu":
        return None
    budget = animator.offload.budget_bytes
    wanted = core.placement(animator, frames, height, width, EVERYTHING).predicted_peak_bytes
    comfy.model_management.free_memory(min(wanted, budget or wanted), animator.device)
    return budget or int(comfy.model_management.get_free_memory(animator.device))


def placed(animator: core.Animator, frames: int, height: int, width: int):
    """The run's placement, logged in one line; a context manager (weights go home on exit)."""
    budget = sampling_budget(animator, frames, height, width)
    plan = core.placement(animator, frames, height, width, budget)
    log.info("%s", core.placement_line(animator, plan, frames, height, width))
    return core.place(animator, frames, height, width, budget)


def admit_run(model: DAModel, vae, window: int, size: tuple[int, int]) -> None:
    """Refuse, before any encoding, a run whose host memory cannot fit (admission.py); the VAE's and the
    DiT's working memory count only when they compute on the CPU."""
    on_host = lambda device: torch.device(device).type == "cpu"  # noqa: E731
    vae_bytes = vae_encode_bytes(vae, window, *size) if on_host(getattr(vae, "device", "cpu")) else 0
    need = sampler_need(window, *size, vae_bytes, core.activation_bytes(model, window, *size),
                        dit_on_host=on_host(model.device))
    admit(need, f"a window of {window} frames at {size[1]}x{size[0]}")


SOLVER_TOOLTIP = ("ODE solver. unipc_wan: the UniPC Wan samples with (flow form; was 'unipc'). dpmpp_2m_flow: "
                  "DPM++ 2M in the flow's log-SNR (ComfyUI's dpmpp_2m_sde at eta 0). euler, dpmpp_2m, uni_pc, "
                  "uni_pc_bh2: ComfyUI's samplers of those names, with KSampler's numbers.")
SCHEDULER_TOOLTIP = ("linear_shifted: Wan's shifted schedule, exact at any step count. simple: ComfyUI's simple "
                     "(the same times rounded to its 1000-step table; equal when steps divides 1000).")


def window_input(name: str, default: int, minimum: int, tooltip: str) -> io.Int.Input:
    return io.Int.Input(name, default=default, min=minimum, max=100001, step=4, tooltip=tooltip)


class DirectAnimatorSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorSampler",
            display_name="DirectAnimator Sampler",
            category=CATEGORY,
            description="Animates the reference with the driving cue triplet: encodes the reference and the cue "
                        "videos with the Wan VAE, samples the flow, and outputs a Wan LATENT for VAE Decode. "
                        "Clips longer than one window run in overlapping windows blended in latent space.",
            inputs=[
                io.MultiType.Input(DAModel.Input("model", tooltip="DirectAnimator Model Loader's model, or a Wan "
                                                 "image-to-video MODEL from Load Diffusion Model (LoRAs allowed) "
                                                 "with the adapter on model_patch."), types=[io.Model]),
                io.Vae.Input("vae", tooltip="The Wan 2.1 VAE (wan_2.1_vae.safetensors) from Load VAE."),
                io.Image.Input("reference", tooltip="The picture of the person to animate (the first frame)."),
                DACues.Input("cues", tooltip="From DirectAnimator Cue Triplet, built for this reference."),
                io.Conditioning.Input("positive", optional=True, tooltip="Prompt from CLIP Text Encode with the Wan "
                                      "text encoder (umt5-xxl); empty = no prompt."),
                io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt, used when cfg is not 1."),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True, tooltip="CLIP Vision Encode of the "
                                          "reference (clip_vision_h, crop none); Wan 2.1 I2V 14B needs it."),
                io.Latent.Input("init_latent", optional=True, tooltip="A Wan latent video to start from when "
                                "denoise is below 1."),
                io.Int.Input("width", default=0, min=0, max=4096, step=16, tooltip="Output width; 0 = the "
                             "reference's. When set (with height), reference and cues are resized to it."),
                io.Int.Input("height", default=0, min=0, max=4096, step=16, tooltip="Output height; 0 = the "
                             "reference's."),
                io.Int.Input("steps", default=30, min=1, max=1000, tooltip="Sampling steps."),
                io.Float.Input("cfg", default=5.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Guidance on the prompt (1 = off, then no negative prompt is needed)."),
                io.Float.Input("cue_cfg", default=1.0, min=0.0, max=30.0, step=0.1, round=0.01,
                               tooltip="Guidance on the driving cues (1 = off; above 1 follows the driver more)."),
                io.Float.Input("shift", default=5.0, min=0.1, max=100.0, step=0.1, round=0.01,
                               tooltip="Wan's noise schedule shift (5 for 480p, higher for larger videos)."),
                io.Combo.Input("solver", options=list(SOLVERS), default="unipc_wan", tooltip=SOLVER_TOOLTIP),
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate=True,
                             tooltip="Noise seed; the same seed gives the same video."),
                io.Float.Input("denoise", default=1.0, min=0.01, max=1.0, step=0.01,
                               tooltip="1 starts from noise; lower keeps more of init_latent."),
                window_input("window_frames", 81, 9, "Frames per window for long clips (4n + 1; Wan: 81)."),
                window_input("window_overlap", 16, 4, "Frames neighbouring windows share and blend (multiple of 4)."),
                # last and optional, so workflows and API prompts saved before it still line up and run
                io.Combo.Input("scheduler", options=list(SCHEDULERS), default="linear_shifted", optional=True,
                               tooltip=SCHEDULER_TOOLTIP),
                ModelPatch.Input("model_patch", optional=True, tooltip="DirectAnimator Adapter Loader's adapter, when "
                                 "model is a core Wan MODEL (ComfyUI's model manager then loads both)."),
            ],
            outputs=[io.Latent.Output("latent", display_name="latent",
                                      tooltip="The animation as a Wan latent: connect VAE Decode or "
                                              "DirectAnimator Decode.")],
        )

    @classmethod
    def validate_inputs(cls, solver: str) -> bool | str:
        """The solver list, plus the old names a saved workflow may hold (read as their new ones)."""
        if solver in SOLVERS or solver in RENAMED_SOLVERS:
            return True
        return f"solver {solver!r} is unknown: choose one of {list(SOLVERS)}"

    @classmethod
    def execute(cls, model, vae, reference, cues, width, height, steps, cfg, cue_cfg, shift, solver, seed, denoise,
                window_frames, window_overlap, scheduler="linear_shifted", positive=None, negative=None,
                clip_vision_output=None, init_latent=None, model_patch=None) -> io.NodeOutput:
        # convert and check everything before any encoding
        config = SamplerConfig(steps=steps, cfg_text=cfg, cfg_cues=cue_cfg, shift=shift, solver=solver, seed=seed,
                               denoise=denoise, scheduler=scheduler)
        windows = WindowConfig(frames=window_frames, overlap=window_overlap)
        init = _convert.latent_samples(init_latent)
        picture = _convert.reference_tensor(reference)
        if bool(width) != bool(height):
            raise InputError(f"width={width} and height={height}: set both (multiples of 16) or leave both at 0 "
                             "for the reference's size")
        requested = (height, width) if width and height else None
        if not isinstance(model, core.Animator):  # a core Wan MODEL: ComfyUI's own sampling (native_sampling.py)
            latents = native_sampling.sample_on_core_model(
                model, model_patch, vae, picture, cues, requested, config, windows, positive, negative,
                clip_vision_output, init, min(windows.frames, usable_frames(cues.num_frames)))
            return io.NodeOutput({"samples": latents})
        if model_patch is not None:
            raise InputError("model_patch is for a core Wan MODEL; DirectAnimator Model Loader's model already holds "
                             "its adapter: disconnect model_patch")
        encode = comfy_encoder(vae)
        text, negative_text = _convert.conditioning_tensor(positive), _convert.conditioning_tensor(negative, "negative")
        clip_fea = _convert.clip_vision_tensor(clip_vision_output)
        size = output_size(picture, cues, requested, model.config)
        check_run(model.config, config, text, negative_text, clip_fea, init, cues.num_frames, size)
        admit_run(model, vae, min(windows.frames, usable_frames(cues.num_frames)), size)
        # the VAE runs first, so it never shares the device with the DiT
        inputs = encode_windows(picture, cues, model.config, encode, windows, size, _progress.should_stop)
        with placed(model, min(windows.frames, usable_frames(cues.num_frames)), *inputs.size) as swap:
            latents = sample_windows(
                model.model, inputs, config, text=text, negative_text=negative_text, clip_fea=clip_fea,
                init_latent=init, device=model.device, swap=swap,
                callback=_progress.step_callback(steps, comfy.latent_formats.Wan21()), should_stop=_progress.should_stop)
        return io.NodeOutput({"samples": latents})


NODES: list[type[io.ComfyNode]] = [DirectAnimatorSampler]
