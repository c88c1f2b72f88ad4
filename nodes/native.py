"""The native path: DirectAnimator on ComfyUI's own Wan MODEL, the adapter as a model patch.

DirectAnimatorAdapterLoader: a DirectAnimator file in models/directanimator (an adapter file, or the adapter
part of a merged model) -> MODEL_PATCH, a ModelPatcher around the CueFusion module, so ComfyUI's model
manager loads, moves and frees its weights with the MODEL it is applied to.

DirectAnimatorApply: MODEL + MODEL_PATCH + VAE + reference + cue triplet -> MODEL, positive, negative, LATENT
for KSampler / SamplerCustomAdvanced. The VAE encodes the cue videos (the same core calls as our own sampler)
and the reference, which enters as WanImageToVideo's ``concat_latent_image`` / ``concat_mask``. The MODEL
clone gets
  - a DIFFUSION_MODEL wrapper that computes the timestep embedding e with the Wan model's own layers (core's
    block-replace patches see only e0 = time_projection(e), and CueFusion's Eq. 1 starts from e) and begins
    one CueFusionHook per forward call, kept in that call's transformer_options;
  - a ``patches_replace["dit"][("double_block", i)]`` per fused block that fuses the cues into the tokens
    entering block i (core.models.cuefusion_patch) and runs the block (or a patch that was there before).
The block patches carry ``models()`` (the MODEL_PATCH, loaded with the MODEL) and ``to()`` (the cue latents).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any, Optional

import comfy.ldm.wan.model as wan_model
import comfy.model_management
import comfy.model_patcher
import comfy.patcher_extension
import node_helpers
import torch
from comfy_api.latest import io

from ..directanimator_core.admission import admit, sampler_need
from ..directanimator_core.pipeline.windowed import (
    check_finite, output_size, reference_condition, resized, usable_frames, window_cues)
from ..directanimator_core.errors import InputError
from ..directanimator_core.models.checkpoints.adapter import load_adapter
from ..directanimator_core.models.cuefusion_patch import CueFusionPatch, check_host
from ..directanimator_core.models.vae import SPACE_STRIDE, denormalize_latents, latent_frames
from . import _convert
from .load import MODEL_FOLDER, adapter_files, missing_file_message, model_path
from .comfy_vae import WAN21_LATENT_CHANNELS, comfy_encoder, vae_encode_bytes
from .types import DACues

log = logging.getLogger(__name__)

CATEGORY = "DirectAnimator/native"
ModelPatch = io.Custom("MODEL_PATCH")
# ComfyUI 0.3.75 has ModelPatcher; newer releases add CoreModelPatcher, the class core's own model patches use
PATCHER = getattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
WAN_IMAGE_CHANNELS = 4 + WAN21_LATENT_CHANNELS  # mask + reference latent, Wan's image-to-video input


class AdapterPatcher(PATCHER):
    """The adapter's ModelPatcher, always loaded whole: its layers are the core's cast-per-call layers, not
    ComfyUI's ops, so a partial (low-VRAM) load would leave the layers that did not fit on the offload device
    while the rest computes on the GPU. The adapter is small beside its backbone (2 % of Wan 14B)."""

    def load(self, *args, **kwargs):
        if len(args) >= 4:  # load(device_to, lowvram_model_memory, force_patch_weights, full_load)
            args = (*args[:3], True, *args[4:])
        else:
            kwargs["full_load"] = True
        return super().load(*args, **kwargs)


class DirectAnimatorAdapterLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorAdapterLoader",
            display_name="DirectAnimator Adapter Loader",
            category=CATEGORY,
            description="Loads the DirectAnimator (CueFusion) adapter as a MODEL_PATCH for DirectAnimator Apply, "
                        "which puts it on a Wan MODEL from Load Diffusion Model. ComfyUI's model manager loads "
                        "and frees its weights with that model.",
            inputs=[io.Combo.Input("adapter", options=adapter_files(),
                                   tooltip="The adapter in models/directanimator (a merged DirectAnimator model "
                                           "file works too: only its adapter part is read).")],
            outputs=[ModelPatch.Output("model_patch", display_name="model_patch",
                                       tooltip="The adapter, for DirectAnimator Apply.")],
        )

    @classmethod
    def validate_inputs(cls, adapter) -> bool | str:
        if model_path(MODEL_FOLDER, adapter) is None:
            return missing_file_message(MODEL_FOLDER, adapter)
        return True

    @classmethod
    def execute(cls, adapter) -> io.NodeOutput:
        path = model_path(MODEL_FOLDER, adapter)
        if path is None:
            raise InputError(missing_file_message(MODEL_FOLDER, adapter))
        module = load_adapter(path)  # fp32 on the CPU; the model manager places it
        return io.NodeOutput(AdapterPatcher(module, load_device=comfy.model_management.get_torch_device(),
                                     offload_device=comfy.model_management.unet_offload_device()))


# -- the patch on the MODEL -------------------------------------------------------------------------------------

class CueState:
    """What one Apply (or one native sampler run) made: the core patches (adapter + cue latents, one per window
    of a long clip) and the MODEL_PATCH holding the weights.

    A model call finds in its transformer_options which window it samples (``window_key``, default 0) and
    whether its cues are off (``off_key``: the no-cue prediction of cue guidance, the base Wan model).
    Shared, never copied: ComfyUI deep-copies model_options on every clone of the MODEL, and a copy of this
    would copy the adapter's weights out of the model manager's sight.
    """

    def __init__(self, patches: CueFusionPatch | tuple[CueFusionPatch, ...], model_patch: Any) -> None:
        self.patches = patches if isinstance(patches, tuple) else (patches,)
        self.model_patch = model_patch
        self.key = f"directanimator_cues_{uuid.uuid4().hex}"  # one run's hook in transformer_options
        self.window_key, self.off_key = f"{self.key}/window", f"{self.key}/off"

    @property
    def patch(self) -> CueFusionPatch:
        return self.patches[0]

    def __deepcopy__(self, memo: dict) -> "CueState":
        return self

    def options(self, model_options: dict, window: int, cues: bool) -> dict:
        """A shallow copy of ``model_options`` whose transformer_options name the window and the cue switch."""
        transformer = dict(model_options.get("transformer_options", {}))
        transformer[self.window_key], transformer[self.off_key] = window, not cues
        return {**model_options, "transformer_options": transformer}

    def to(self, device: torch.device) -> None:
        for patch in self.patches:
            patch.to(device)


def transformer_options_of(args: tuple, kwargs: dict) -> dict:
    """The transformer_options dict among WanModel.forward's arguments (positional in ComfyUI's own call)."""
    options = kwargs.get("transformer_options")
    if options is None:
        options = next((a for a in args if isinstance(a, dict)), None)
    if options is None:
        raise InputError("the Wan model was called without transformer_options: this ComfyUI's Wan forward is not "
                         "one DirectAnimator knows; update the pack")
    return options


class CueFusionWrapper:
    """DIFFUSION_MODEL wrapper: e from the Wan model's own time embedding, one CueFusionHook per forward call."""

    def __init__(self, state: CueState) -> None:
        self.state = state

    def __deepcopy__(self, memo: dict) -> "CueFusionWrapper":
        return self

    def __call__(self, executor, x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor, *args, **kwargs):
        wan = executor.class_obj
        options = transformer_options_of(args, kwargs)
        if options.get(self.state.off_key):  # cue guidance's no-cue prediction: the base model
            return executor(x, timestep, context, *args, **kwargs)
        # as WanModel.forward_orig computes it: (B, T_e, D)
        e = wan.time_embedding(wan_model.sinusoidal_embedding_1d(wan.freq_dim, timestep.flatten()).to(dtype=x.dtype))
        patch = self.state.patches[options.get(self.state.window_key, 0)]
        options[self.state.key] = patch.begin(e.reshape(timestep.shape[0], -1, e.shape[-1]), x.shape,
                                              window_frames(options))
        try:
            return executor(x, timestep, context, *args, **kwargs)
        finally:
            options.pop(self.state.key, None)


def window_frames(options: dict) -> Optional[list[int]]:
    """The latent frames of this call when ComfyUI samples in context windows along time (WAN Context Windows:
    ``transformer_options["context_window"]``, dim 2), else None. Not yet run inside ComfyUI: 0.3.75's own windows
    fail earlier on an image-to-video Wan (its concat conditioning is not cut to the window)."""
    window = options.get("context_window")
    if window is None or getattr(window, "dim", None) != 2:
        return None
    return list(window.index_list)


class CueFusionBlockPatch:
    """patches_replace["dit"][("double_block", index)]: fuse the cues into the tokens, then run the block."""

    def __init__(self, state: CueState, index: int, previous: Optional[Any]) -> None:
        self.state, self.index, self.previous = state, index, previous

    def __deepcopy__(self, memo: dict) -> "CueFusionBlockPatch":
        return self

    def __call__(self, args: dict, extra: dict) -> dict:
        options = args["transformer_options"]
        if not options.get(self.state.off_key):
            hook = options.get(self.state.key)
            patch = self.state.patches[options.get(self.state.window_key, 0)]
            args = dict(args, img=patch.fuse(hook, self.index, args["img"]))
        if self.previous is not None:
            return self.previous(args, extra)
        return extra["original_block"](args)

    def to(self, device_or_dtype) -> "CueFusionBlockPatch":
        if isinstance(device_or_dtype, torch.device):
            self.state.to(device_or_dtype)
        if self.previous is not None and hasattr(self.previous, "to"):
            self.previous = self.previous.to(device_or_dtype)
        return self

    def models(self) -> list:
        earlier = self.previous.models() if self.previous is not None and hasattr(self.previous, "models") else []
        return [self.state.model_patch, *earlier]


def wan_of(model) -> Any:
    """The MODEL's diffusion model when it is a Wan 2.1-style DiT with an image input, else InputError."""
    diffusion = model.get_model_object("diffusion_model")
    if not isinstance(diffusion, wan_model.WanModel):
        raise InputError(f"the MODEL is a {type(diffusion).__name__}, not a Wan model: load a Wan 2.1 / 2.2 "
                         "image-to-video checkpoint with Load Diffusion Model")
    in_dim = diffusion.patch_embedding.weight.shape[1]
    if in_dim != diffusion.out_dim + WAN_IMAGE_CHANNELS:
        raise InputError(f"this Wan MODEL takes {in_dim} input channels; the reference enters as {WAN_IMAGE_CHANNELS} "
                         f"image channels beside the {diffusion.out_dim} noise channels: load an image-to-video Wan "
                         f"checkpoint (in_dim {diffusion.out_dim + WAN_IMAGE_CHANNELS})")
    return diffusion


def applied_state(model: Any) -> Optional[CueState]:
    """The CueState DirectAnimator Apply put on ``model`` (its DIFFUSION_MODEL wrapper), or None."""
    wrappers = getattr(model, "wrappers", {})  # ModelPatcher.add_wrapper_with_key keeps them on the patcher
    for by_key in wrappers.values():
        for key, functions in by_key.items():
            found = [f for f in functions if isinstance(f, CueFusionWrapper)]
            if found:
                return found[-1].state
    return None


def refuse_applied(model: Any) -> None:
    """InputError when DirectAnimator is on ``model`` already: the cues would be fused twice."""
    if applied_state(model) is not None:
        raise InputError("this MODEL already has DirectAnimator on it (DirectAnimator Apply's output): connect the "
                         "MODEL that went into Apply instead")


def patched_model(model, state: CueState) -> Any:
    """A clone of ``model`` with the wrapper and one block patch per fused block (InputError when DirectAnimator is
    on it already: the cues would be fused twice)."""
    refuse_applied(model)
    model = model.clone()
    model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, state.key, CueFusionWrapper(state))
    earlier = model.model_options["transformer_options"].get("patches_replace", {}).get("dit", {})
    for index in state.patch.blocks:
        patch = CueFusionBlockPatch(state, index, earlier.get(("double_block", index)))
        model.set_model_patch_replace(patch, "dit", "double_block", index)
    return model


def with_image(conditioning: Optional[list], text_dim: int, values: dict) -> list:
    """CONDITIONING with ``values`` set; None becomes one zero text token (our sampler's "no prompt")."""
    if conditioning is None:
        conditioning = [[torch.zeros(1, 1, text_dim), {}]]
    return node_helpers.conditioning_set_values(conditioning, values)


def clip_length(cues, length: int) -> int:
    """Frames animated: the whole clip (4n + 1 of it) for 0, else ``length`` (4n + 1, within the clip)."""
    usable = usable_frames(cues.num_frames)
    if length == 0:
        return usable
    if (length - 1) % 4 or length > usable:
        raise InputError(f"length={length}: use 4n + 1 frames, at most the driving clip's {usable} (or 0 for "
                         "the whole clip)")
    return length


class DirectAnimatorApply(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorApply",
            display_name="DirectAnimator Apply",
            category=CATEGORY,
            description="Puts the DirectAnimator adapter on a Wan image-to-video MODEL (from Load Diffusion Model, "
                        "LoRAs allowed) with the driving cues and the reference, and makes the conditioning and "
                        "the empty latent for KSampler; decode its LATENT with VAE Decode.",
            inputs=[
                io.Model.Input("model", tooltip="A Wan image-to-video model from Load Diffusion Model (LoRAs and "
                               "ModelSamplingSD3 may come before this node)."),
                ModelPatch.Input("model_patch", tooltip="From DirectAnimator Adapter Loader."),
                io.Vae.Input("vae", tooltip="The Wan 2.1 VAE (wan_2.1_vae.safetensors) from Load VAE."),
                io.Image.Input("reference", tooltip="The picture of the person to animate (the first frame)."),
                DACues.Input("cues", tooltip="From DirectAnimator Cue Triplet, built for this reference."),
                io.Conditioning.Input("positive", optional=True, tooltip="Prompt from CLIP Text Encode (umt5-xxl); "
                                      "empty = no prompt (one zero token)."),
                io.Conditioning.Input("negative", optional=True, tooltip="Negative prompt for KSampler's cfg; empty "
                                      "= no prompt."),
                io.ClipVisionOutput.Input("clip_vision_output", optional=True, tooltip="CLIP Vision Encode of the "
                                          "reference (clip_vision_h, crop none); Wan 2.1 I2V 14B needs it."),
                io.Int.Input("width", default=0, min=0, max=4096, step=16, tooltip="Output width; 0 = the "
                             "reference's. When set (with height), reference and cues are resized to it."),
                io.Int.Input("height", default=0, min=0, max=4096, step=16, tooltip="Output height; 0 = the "
                             "reference's."),
                io.Int.Input("length", default=0, min=0, max=100001, tooltip="Frames to animate (4n + 1) from the "
                             "start of the driving clip; 0 = the whole clip."),
            ],
            outputs=[io.Model.Output("patched_model", display_name="model", tooltip="The Wan model with DirectAnimator on "
                                     "it, for KSampler."),
                     io.Conditioning.Output("positive_out", display_name="positive"),
                     io.Conditioning.Output("negative_out", display_name="negative"),
                     io.Latent.Output("latent", display_name="latent", tooltip="The empty Wan latent to sample.")],
        )

    @classmethod
    def execute(cls, model, model_patch, vae, reference, cues, width, height, length, positive=None, negative=None,
                clip_vision_output=None) -> io.NodeOutput:
        # 1. checks, before the VAE runs
        diffusion = wan_of(model)
        refuse_applied(model)
        adapter = check_apply_inputs(diffusion, model_patch, width, height, positive, negative, clip_vision_output)
        picture = _convert.reference_tensor(reference)
        size = output_size(picture, cues, (height, width) if width and height else None, adapter.backbone_config)
        frames = clip_length(cues, length)
        encode = comfy_encoder(vae)  # checks it is the Wan 2.1 VAE
        admit_encoding(vae, frames, size)
        # 2. the VAE: cue latents (normalised, as our sampler makes them) and the reference's image condition
        state = CueState(CueFusionPatch(adapter, window_cues(encode, cues, slice(0, frames), size)), model_patch)
        grid = (latent_frames(frames), size[0] // SPACE_STRIDE, size[1] // SPACE_STRIDE)
        state.patch.check_latent(torch.Size((1, diffusion.patch_embedding.weight.shape[1], *grid)))
        values = conditioning_values(reference_condition(encode, resized(picture, size), frames), clip_vision_output)
        latent = torch.zeros(1, diffusion.out_dim, *grid, device=comfy.model_management.intermediate_device())
        log.info("DirectAnimator on %s: %d frames at %dx%d, cues fused into %d blocks", type(diffusion).__name__,
                 frames, size[1], size[0], len(state.patch.blocks))
        text_dim = diffusion.text_embedding[0].weight.shape[1]
        return io.NodeOutput(patched_model(model, state), with_image(positive, text_dim, values),
                             with_image(negative, text_dim, values), {"samples": latent})


def check_apply_inputs(diffusion, model_patch, width: int, height: int, positive: Optional[list],
                       negative: Optional[list], clip_vision_output: Optional[Any]) -> Any:
    """InputError for inputs Apply cannot use with this Wan model; returns the adapter (CueFusion)."""
    adapter = getattr(model_patch, "model", None)
    if not hasattr(adapter, "bind") or not hasattr(adapter, "backbone_config"):
        raise InputError("model_patch is not a DirectAnimator adapter: connect DirectAnimator Adapter Loader")
    check_host(adapter, diffusion.dim, len(diffusion.blocks), diffusion.patch_size)
    if bool(width) != bool(height):
        raise InputError(f"width={width} and height={height}: set both (multiples of 16) or leave both at 0 "
                         "for the reference's size")
    text_dim = diffusion.text_embedding[0].weight.shape[1]
    for name, conditioning in (("positive", positive), ("negative", negative)):
        tensor = _convert.conditioning_tensor(conditioning, name)
        if tensor is not None and tensor.shape[-1] != text_dim:
            raise InputError(f"{name} conditioning has width {tensor.shape[-1]}; this Wan model takes {text_dim}: "
                             "encode the prompt with the Wan text encoder (umt5-xxl)")
        check_finite(tensor, name)
    if getattr(diffusion, "img_emb", None) is not None and clip_vision_output is None:
        raise InputError("this Wan 2.1 image-to-video model needs the reference's CLIP vision features: connect "
                         "CLIP Vision Encode (clip_vision_h) to clip_vision_output")
    check_finite(_convert.clip_vision_tensor(clip_vision_output), "clip_vision_output")
    return adapter


def admit_encoding(vae, frames: int, size: tuple[int, int]) -> None:
    """Refuse, before the VAE runs, an encoding the host memory cannot hold (admission.py, as our sampler does)."""
    on_host = torch.device(getattr(vae, "device", "cpu")).type == "cpu"
    vae_bytes = vae_encode_bytes(vae, frames, *size) if on_host else 0
    admit(sampler_need(frames, *size, vae_bytes, 0, False), f"{frames} frames at {size[1]}x{size[0]}")


def conditioning_values(image: torch.Tensor, clip_vision_output: Optional[Any]) -> dict:
    """The conditioning values WanImageToVideo sets, from our own image condition (pipeline.windowed's
    reference_condition: (1, 4 + 16, T, h, w), the "given" mask and the normalised reference latent)."""
    values = {"concat_latent_image": denormalize_latents(image[:, 4:]),  # ComfyUI normalises it again
              "concat_mask": 1.0 - image[:, :1]}  # 0 where a frame is given, as WanImageToVideo writes it
    if clip_vision_output is not None:
        values["clip_vision_output"] = clip_vision_output
    return values


NODES: list[type[io.ComfyNode]] = [DirectAnimatorAdapterLoader, DirectAnimatorApply]
