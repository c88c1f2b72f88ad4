"""DirectAnimator Sampler on a core Wan MODEL: ComfyUI's own sampling machinery, plus what KSampler lacks.

The sampler node takes our DA_MODEL or a core Wan MODEL (Load Diffusion Model, LoRAs, ModelSamplingSD3...)
with the adapter as a MODEL_PATCH. On the second, ``sample_on_core_model`` runs:
  - the VAE half of our own sampler (pipeline.windowed.encode_windows): cue latents per window of a long
    clip, the reference's image condition of one window's length (every window has that length);
  - the MODEL patched as DirectAnimator Apply patches it (native.patched_model), one CueFusionPatch per window;
  - ``CueGuider``, a CFGGuider whose predict_noise does cue guidance and the latent-blended windows with the
    engine's own formulas (sampling.denoiser.guided_velocity, sampling.windows.windowed_velocity) on
    ComfyUI's denoised predictions: the guidance weights sum to 1, so combining x0 equals combining v;
  - CFGGuider.sample: ComfyUI's model manager loads the MODEL and the adapter (the block patches' models()),
    ComfyUI's preview and progress bar run, its interrupt stops it. Solvers with ComfyUI's names are
    ComfyUI's own; ours (unipc_wan, dpmpp_2m_flow) run as KSAMPLERs (they have k-diffusion's signature).
    Sigmas and noise are our sampler's (sampling.loop), so both worlds give the same latent.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import comfy.model_management
import comfy.model_patcher
import comfy.samplers
import comfy.utils
import latent_preview
import torch
from comfy_api.latest import io

from ..directanimator_core.errors import InputError
from ..directanimator_core.models.cuefusion_patch import CueFusionPatch
from ..directanimator_core.models.vae import SPACE_STRIDE
from ..directanimator_core.pipeline.windowed import (
    WindowConfig, WindowInputs, check_finite, check_init_latent, encode_windows, output_size)
from ..directanimator_core.sampling import SOLVERS, SamplerConfig
from ..directanimator_core.sampling.denoiser import GuidanceConds, guided_velocity
from ..directanimator_core.sampling.loop import initial_noise, sampling_sigmas
from ..directanimator_core.sampling.windows import WindowPlan, plan_windows, windowed_velocity
from . import _progress
from .native import (
    CATEGORY, CueState, admit_encoding, applied_state, check_apply_inputs, conditioning_values, patched_model,
    refuse_applied, wan_of, with_image)
from .comfy_vae import comfy_encoder

log = logging.getLogger(__name__)

FULL, NO_TEXT, NO_CUES = "full", "no_text", "no_cues"  # the guidance variants, as GuidanceConds names them
OURS_ONLY = frozenset(SOLVERS) - frozenset(comfy.samplers.KSampler.SAMPLERS)  # solvers ComfyUI has no name for


class CueGuider(comfy.samplers.CFGGuider):
    """Text and cue guidance over latent-blended windows, on a MODEL patched with ``state``.

    Conditioning is processed for one window (every window has the same length and the reference in its first
    latent frame), so the same c_concat serves each; ``predict_noise`` cuts x into the plan's windows, asks each
    window's predictions of ComfyUI (cond and uncond in one batch, the no-cue prediction in another, with the
    window's cues named in transformer_options) and blends them.
    """

    def __init__(self, model: Any, state: CueState, plan: Optional[WindowPlan], cfg: float, cue_cfg: float) -> None:
        """``plan`` None: one window, the whole latent (the cues DirectAnimator Apply encoded for the clip)."""
        super().__init__(model)
        self.state, self.plan, self.cue_cfg = state, plan, cue_cfg
        self.set_cfg(cfg)

    def plan_for(self, frames: int) -> WindowPlan:
        return self.plan if self.plan is not None else plan_windows(frames, frames, 1)

    def predict_noise(self, x: torch.Tensor, timestep: torch.Tensor, model_options: dict = {}, seed=None):  # noqa: B006 - CFGGuider's signature
        variants = GuidanceConds(full=FULL, no_text=NO_TEXT if self.cfg != 1.0 else None,
                                 no_cues=NO_CUES if self.cue_cfg != 1.0 else None)

        def window(xw: torch.Tensor, sigma: torch.Tensor, index: int) -> torch.Tensor:
            predictions: dict[str, torch.Tensor] = {}

            def denoised(_x, _sigma, variant: str) -> torch.Tensor:
                if variant not in predictions:
                    predictions.update(self.window_predictions(xw, sigma, model_options, index, variant))
                return predictions[variant]

            return guided_velocity(denoised, xw, sigma, variants, self.cfg, self.cue_cfg)

        return windowed_velocity(window, self.plan_for(x.shape[2]), should_stop=interrupted)(x, timestep)

    def window_predictions(self, x: torch.Tensor, timestep: torch.Tensor, model_options: dict, index: int,
                           variant: str) -> dict[str, torch.Tensor]:
        """ComfyUI's denoised predictions for window ``index``: full (with no_text when cfg is on), or no_cues."""
        positive = self.conds.get("positive")
        if variant == NO_CUES:
            options = self.state.options(model_options, index, cues=False)
            return {NO_CUES: comfy.samplers.calc_cond_batch(self.inner_model, [positive], x, timestep, options)[0]}
        conds = [positive] + ([self.conds.get("negative")] if self.cfg != 1.0 else [])
        options = self.state.options(model_options, index, cues=True)
        return dict(zip((FULL, NO_TEXT), comfy.samplers.calc_cond_batch(self.inner_model, conds, x, timestep, options)))

    def inner_sample(self, noise, latent_image, device, sampler, sigmas, denoise_mask, callback, disable_pbar, seed,
                     latent_shapes=None):
        """CFGGuider.inner_sample with the conditioning processed for one window, not the whole video."""
        if latent_image is not None and torch.count_nonzero(latent_image) > 0:  # as CFGGuider: an empty latent stays
            latent_image = self.inner_model.process_latent_in(latent_image)
        window = slice(0, self.plan_for(noise.shape[2]).length)
        self.conds = comfy.samplers.process_conds(self.inner_model, noise[:, :, window], self.conds, device,
                                                  latent_image[:, :, window], denoise_mask, seed)
        options = comfy.model_patcher.create_model_options_clone(self.model_options)
        options.setdefault("transformer_options", {})["sample_sigmas"] = sigmas
        extra_args = {"model_options": options, "seed": seed}
        samples = sampler.sample(self, sigmas, extra_args, callback, noise, latent_image, denoise_mask, disable_pbar)
        return self.inner_model.process_latent_out(samples.to(torch.float32))


def interrupted() -> bool:
    """ComfyUI's interrupt, polled between windows (raises ComfyUI's own exception, as its samplers do)."""
    comfy.model_management.throw_exception_if_processing_interrupted()
    return False


def ksampler(solver: str) -> Any:
    """The solver as ComfyUI sampler: ComfyUI's own for its names, ours (k-diffusion's signature) otherwise."""
    if solver not in OURS_ONLY:
        return comfy.samplers.sampler_object(solver)
    solve = SOLVERS[solver]

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        return solve(model, x, sigmas, extra_args, callback)

    return comfy.samplers.KSAMPLER(sample)


def check_model_patch(model_patch: Optional[Any]) -> None:
    if model_patch is None:
        raise InputError("a core Wan MODEL needs the DirectAnimator adapter: connect DirectAnimator Adapter Loader "
                         "to model_patch (or use DirectAnimator Model Loader's DA_MODEL)")


def sample_on_core_model(model: Any, model_patch: Any, vae: Any, picture: torch.Tensor, cues: Any,
                         size: Optional[tuple[int, int]], config: SamplerConfig, windows: WindowConfig,
                         positive: Optional[list], negative: Optional[list], clip_vision_output: Optional[Any],
                         init: Optional[torch.Tensor], frames: int) -> torch.Tensor:
    """The sampler node's run on a core Wan MODEL + the adapter: raw latents (1, 16, T, h, w) on the CPU.

    Args:
        model: a core Wan image-to-video MODEL (not patched by DirectAnimator Apply).
        model_patch: from DirectAnimator Adapter Loader.
        vae: ComfyUI's Wan 2.1 VAE.
        picture: (1, 3, H, W) reference in [-1, 1].
        cues: the cue triplet.
        size: (H, W) output size, or None for the reference's.
        config: steps, guidance, shift, solver, scheduler, seed, denoise.
        windows: window length and overlap for long clips.
        positive, negative, clip_vision_output: ComfyUI conditioning (None: a zero text token, no CLIP).
        init: raw latents a denoise < 1 run starts from.
        frames: the pixel frames of one window (for the host-memory admission).
    """
    diffusion, adapter, size = check_core_run(model, model_patch, vae, picture, cues, size, config, positive,
                                              negative, clip_vision_output, init)
    admit_encoding(vae, frames, size)  # all checks made: now the VAE
    inputs = encode_windows(picture, cues, adapter.backbone_config, comfy_encoder(vae), windows, size,
                            _progress.should_stop)
    state = window_state(adapter, inputs, model_patch, diffusion)
    text_dim = diffusion.text_embedding[0].weight.shape[1]
    values = conditioning_values(inputs.image, clip_vision_output)
    guider = CueGuider(patched_model(model, state), state, inputs.plan, config.cfg_text, config.cfg_cues)
    guider.set_conds(with_image(positive, text_dim, values), with_image(negative, text_dim, values))
    shape = (1, diffusion.out_dim, inputs.plan.total, inputs.size[0] // SPACE_STRIDE, inputs.size[1] // SPACE_STRIDE)
    latent = init.float() if init is not None else torch.zeros(shape)
    log.info("DirectAnimator Sampler on %s: %s, cues fused into %d blocks", type(diffusion).__name__,
             inputs.plan.describe(), len(state.patch.blocks))
    samples = guider.sample(initial_noise(shape, config.seed), latent, ksampler(config.solver),
                            sampling_sigmas(config).float(),  # ComfyUI's samplers take float32 sigmas
                            callback=latent_preview.prepare_callback(guider.model_patcher, config.steps),
                            disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED, seed=config.seed)
    return samples.float().cpu()


def check_core_run(model: Any, model_patch: Optional[Any], vae: Any, picture: torch.Tensor, cues: Any,
                   size: Optional[tuple[int, int]], config: SamplerConfig, positive: Optional[list],
                   negative: Optional[list], clip_vision_output: Optional[Any],
                   init: Optional[torch.Tensor]) -> tuple[Any, Any, tuple[int, int]]:
    """InputError for anything the run cannot use, before the VAE runs; (Wan model, adapter, output size)."""
    check_model_patch(model_patch)
    diffusion = wan_of(model)
    refuse_applied(model)
    height, width = size if size is not None else (0, 0)
    adapter = check_apply_inputs(diffusion, model_patch, width, height, positive, negative, clip_vision_output)
    comfy_encoder(vae)  # checks it is the Wan 2.1 VAE
    check_finite(init, "init_latent")
    if config.denoise < 1.0 and init is None:
        raise InputError(f"denoise={config.denoise} < 1 starts from an input video, but no init_latent is connected: "
                         "connect the encoded input video (VAE Encode) or set denoise to 1")
    size = output_size(picture, cues, size, adapter.backbone_config)
    if init is not None:
        check_init_latent(init, cues.num_frames, size)
    return diffusion, adapter, size


def window_state(adapter: Any, inputs: WindowInputs, model_patch: Any, diffusion: Any) -> CueState:
    """One CueFusionPatch per window, each checked against the window's latent grid."""
    patches = tuple(CueFusionPatch(adapter, cues) for cues in inputs.cues)
    grid = (inputs.plan.length, inputs.size[0] // SPACE_STRIDE, inputs.size[1] // SPACE_STRIDE)
    for patch in patches:
        patch.check_latent(torch.Size((1, diffusion.patch_embedding.weight.shape[1], *grid)))
    return CueState(patches, model_patch)


# -- cue guidance for SamplerCustomAdvanced --------------------------------------------------------------------

class DirectAnimatorGuider(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorGuider",
            display_name="DirectAnimator Guider",
            category=CATEGORY,
            description="Text and cue guidance for SamplerCustomAdvanced on DirectAnimator Apply's model: cue_cfg "
                        "above 1 follows the driver more (one more model call per step).",
            inputs=[io.Model.Input("model", tooltip="DirectAnimator Apply's model."),
                    io.Conditioning.Input("positive", tooltip="DirectAnimator Apply's positive."),
                    io.Conditioning.Input("negative", tooltip="DirectAnimator Apply's negative."),
                    io.Float.Input("cfg", default=5.0, min=0.0, max=30.0, step=0.1, round=0.01,
                                   tooltip="Guidance on the prompt (1 = off)."),
                    io.Float.Input("cue_cfg", default=1.0, min=0.0, max=30.0, step=0.1, round=0.01,
                                   tooltip="Guidance on the driving cues (1 = off).")],
            outputs=[io.Guider.Output("guider", display_name="guider", tooltip="For SamplerCustomAdvanced.")],
        )

    @classmethod
    def execute(cls, model, positive, negative, cfg, cue_cfg) -> io.NodeOutput:
        state = applied_state(model)
        if state is None:
            raise InputError("this MODEL has no DirectAnimator on it: connect DirectAnimator Apply's model output")
        guider = CueGuider(model, state, None, cfg, cue_cfg)
        guider.set_conds(positive, negative)
        return io.NodeOutput(guider)


NODES: list[type[io.ComfyNode]] = [DirectAnimatorGuider]
