"""The native path against our own engine, on the same weights, inside ComfyUI's Python (run as a script).

    python native_path.py COMFY_DIR BASE_DIR REPORT.json

ComfyUI is imported with ``--cpu --base-directory BASE_DIR`` (models written by harness.models.write_native_models,
inputs as .npy files); the pack is imported as ComfyUI imports a custom node package. Core's own nodes
(UNETLoader, LoraLoaderModelOnly, ModelSamplingSD3, VAELoader, KSampler's common_ksampler) run the native
path; the engine runs animate_latents (ComfyUI's VAE as encoder, what our sampler node runs) and animate()
(our own VAE on the same file). The report holds the measured figures; the test asserts on them.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path

COMFY_DIR, BASE_DIR, REPORT = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, COMFY_DIR)
sys.path.extend([str(REPO / "tests"), str(REPO)])  # after ComfyUI: its nodes.py, not our nodes/
sys.argv = [sys.argv[0], "--cpu", "--base-directory", str(BASE_DIR)]

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.model_management as mm  # noqa: E402
import comfy.model_patcher  # noqa: E402
import comfy.patcher_extension  # noqa: E402
import comfy.utils  # noqa: E402
import nodes as core_nodes  # noqa: E402
import torch  # noqa: E402
from comfy_extras import nodes_custom_sampler as custom  # noqa: E402
from comfy_extras.nodes_model_advanced import ModelSamplingSD3  # noqa: E402

from harness.in_comfyui import import_pack, read_inputs  # noqa: E402
from harness.models import (  # noqa: E402
    NATIVE_ADAPTER, NATIVE_BASE, NATIVE_BF16, NATIVE_CLIP_BASE, NATIVE_LORA, NATIVE_MERGED, NATIVE_SCALED_FP8,
    NATIVE_T2V, VAE)

torch.set_num_threads(1)
pack_nodes, NODES = import_pack()
core = importlib.import_module("DirectAnimatorPack.directanimator_core")
animate = importlib.import_module("DirectAnimatorPack.directanimator_core.pipeline.single_pass")
windows = importlib.import_module("DirectAnimatorPack.directanimator_core.pipeline.windowed")
checkpoints = importlib.import_module("DirectAnimatorPack.directanimator_core.models.checkpoints.adapter")
vae_keys = importlib.import_module("DirectAnimatorPack.directanimator_core.models.checkpoints.vae")
sampling = importlib.import_module("DirectAnimatorPack.directanimator_core.sampling")
comfy_vae = importlib.import_module("DirectAnimatorPack.nodes.comfy_vae")
convert = importlib.import_module("DirectAnimatorPack.nodes._convert")

BUNDLED, BUNDLED_VAE = "directanimator_default.safetensors", "directanimator_default_vae.safetensors"  # as the demo names them
STEPS, SHIFT, SEED = 4, 5.0, 3  # 4 divides 1000: ComfyUI's "simple" schedule is then our shifted one


def inputs() -> dict:
    frames, masks, reference = read_inputs(BASE_DIR)  # (F, 64, 64, 3), (F, 64, 64), (1, 64, 64, 3)
    body = torch.zeros(1, 64, 64)
    body[:, 8:64, 16:48] = 1.0  # the astronaut's figure
    cues = NODES["DirectAnimatorCueTriplet"].execute(
        frames, reference, 0.04, False, 8.0, 16, 1.3, 0, "opencv (built-in)", "opencv haar (built-in)", 64,
        mask=masks, reference_mask=body).args[0]
    generator = torch.Generator().manual_seed(11)
    text = [[torch.randn(1, 4, 4096, generator=generator), {}]]
    negative = [[torch.randn(1, 2, 4096, generator=generator), {}]]
    vision = VisionOutput(torch.randn(1, 257, 1280, generator=generator))
    return {"reference": reference, "cues": cues, "text": text, "negative": negative, "vision": vision}


class VisionOutput:
    """What CLIP Vision Encode returns, as far as Wan reads it."""

    def __init__(self, states: torch.Tensor) -> None:
        self.penultimate_hidden_states = states


class LoadedModelsProbe:
    """DIFFUSION_MODEL wrapper recording, at each model call, what ComfyUI's model manager holds loaded."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def __call__(self, executor, *args, **kwargs):
        self.seen.append(sorted(type(m.model.model).__name__ for m in mm.current_loaded_models if m.model is not None))
        return executor(*args, **kwargs)


def native(data: dict, base: str = NATIVE_BASE, lora: bool = False, cfg: float = 1.0, weight_dtype: str = "default",
           probe: LoadedModelsProbe | None = None, text: bool = False, patched: bool = True,
           advanced: bool = False, adapter: str = NATIVE_ADAPTER, vae_name: str = VAE,
           vision: bool = False, cue_cfg: float | None = None) -> torch.Tensor:
    """Load Diffusion Model -> (LoRA) -> ModelSamplingSD3 -> DirectAnimator Apply -> KSampler: raw latents
    (``patched=False`` samples the MODEL that went into Apply, with Apply's conditioning: no cues; ``cue_cfg``:
    SamplerCustomAdvanced with DirectAnimator Guider)."""
    model = core_nodes.UNETLoader().load_unet(base, weight_dtype)[0]
    if lora:
        model = core_nodes.LoraLoaderModelOnly().load_lora_model_only(model, NATIVE_LORA, 1.0)[0]
    model = ModelSamplingSD3().patch(model, SHIFT)[0]
    patch = NODES["DirectAnimatorAdapterLoader"].execute(adapter).args[0]
    vae = core_nodes.VAELoader().load_vae(vae_name)[0]
    conds = {"positive": data["text"], "negative": data["negative"]} if text else {}
    if vision:
        conds["clip_vision_output"] = data["vision"]
    plain = model
    model, positive, negative, latent = NODES["DirectAnimatorApply"].execute(
        model, patch, vae, data["reference"], data["cues"], 0, 0, 0, **conds).args
    model = model if patched else plain
    if probe is not None:
        model = model.clone()
        model.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "probe", probe)
    if advanced:  # SamplerCustomAdvanced: RandomNoise, CFGGuider, KSamplerSelect, BasicScheduler
        sigmas = custom.BasicScheduler.execute(model, "simple", STEPS, 1.0).args[0]
        guider = custom.CFGGuider.execute(model, positive, negative, cfg).args[0] if cue_cfg is None else \
            NODES["DirectAnimatorGuider"].execute(model, positive, negative, cfg, cue_cfg).args[0]
        out = custom.SamplerCustomAdvanced.execute(custom.RandomNoise.execute(SEED).args[0], guider,
                                                   custom.KSamplerSelect.execute("euler").args[0], sigmas, latent).args[0]
    else:
        out = core_nodes.common_ksampler(model, SEED, STEPS, cfg, "euler", "simple", positive, negative, latent)[0]
    return out["samples"].float().cpu()


def engine(data: dict, cfg: float = 1.0, own_vae: bool = False, base: str = NATIVE_BASE,
           adapter: str | None = NATIVE_ADAPTER, vae_name: str = VAE, vision: bool = False,
           cue_cfg: float = 1.0) -> torch.Tensor:
    """Our own path on the same files: animate_latents with ComfyUI's VAE, or animate() with ours
    (``adapter=None``: the adapter in the base file, a merged model)."""
    models = BASE_DIR / "models"
    model = checkpoints.load_model(models / "diffusion_models" / base,
                                   None if adapter is None else models / "directanimator" / adapter,
                                   compute_dtype=torch.float32)
    config = sampling.SamplerConfig(steps=STEPS, shift=SHIFT, solver="euler", seed=SEED, cfg_text=cfg, cfg_cues=cue_cfg)
    reference = convert.reference_tensor(data["reference"])
    text = convert.conditioning_tensor(data["text"]) if cfg != 1.0 else None
    negative = convert.conditioning_tensor(data["negative"]) if cfg != 1.0 else None
    clip_fea = convert.clip_vision_tensor(data["vision"]) if vision else None
    if own_vae:
        vae = vae_keys.load_wan_vae(models / "vae" / vae_name)[0]
        return animate.animate(reference, data["cues"], model, vae, config, text=text, negative_text=negative,
                               clip_fea=clip_fea, decode=False).latents.float()
    encode = comfy_vae.comfy_encoder(core_nodes.VAELoader().load_vae(vae_name)[0])
    return windows.animate_latents(reference, data["cues"], model, encode, config, text=text,
                                   negative_text=negative, clip_fea=clip_fea).float()


def long_cues(data: dict) -> object:
    """The cue triplet of a 13-frame clip (the 5 frames there and back again): two 9-frame windows."""
    frames, masks, reference = read_inputs(BASE_DIR)
    there_and_back = lambda t: torch.cat([t, t.flip(0)[1:], t[1:]])[:13]  # noqa: E731
    body = torch.zeros(1, 64, 64)
    body[:, 8:64, 16:48] = 1.0
    return NODES["DirectAnimatorCueTriplet"].execute(
        there_and_back(frames), reference, 0.04, False, 8.0, 16, 1.3, 0, "opencv (built-in)", "opencv haar (built-in)",
        64, mask=there_and_back(masks), reference_mask=body).args[0]


def our_sampler(data: dict, model, model_patch=None, cues=None, cfg: float = 1.0, cue_cfg: float = 1.0,
                solver: str = "euler", scheduler: str = "linear_shifted", steps: int = STEPS) -> torch.Tensor:
    """DirectAnimator Sampler on ``model`` (a DA_MODEL, or a core MODEL with ``model_patch``): raw latents."""
    vae = core_nodes.VAELoader().load_vae(VAE)[0]
    text = {"positive": data["text"], "negative": data["negative"]} if cfg != 1.0 else {}
    out = NODES["DirectAnimatorSampler"].execute(
        model, vae, data["reference"], cues or data["cues"], 0, 0, steps, cfg, cue_cfg, SHIFT, solver, SEED, 1.0, 9, 4,
        scheduler, model_patch=model_patch, **text).args[0]
    return out["samples"].float().cpu()


class ProgressProbe:
    """ComfyUI's progress-bar hook: the (value, total, has preview) of every update."""

    def __init__(self) -> None:
        self.updates: list[list] = []

    def __call__(self, value, total, preview, node_id=None) -> None:
        self.updates.append([int(value), int(total), preview is not None])


def one_sampler(data: dict) -> dict:
    """The sampler node on both worlds: our DA_MODEL and core's MODEL + the adapter, same files, seed, settings."""
    da_model = NODES["DirectAnimatorModelLoader"].execute(NATIVE_BASE, NATIVE_ADAPTER, "auto", "auto", 0.0, 1,
                                                          "sdpa").args[0]
    patch = NODES["DirectAnimatorAdapterLoader"].execute(NATIVE_ADAPTER).args[0]
    wan = core_nodes.UNETLoader().load_unet(NATIVE_BASE, "default")[0]
    out = {}
    probe, progress = LoadedModelsProbe(), ProgressProbe()
    probed = wan.clone()
    probed.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "probe", probe)
    comfy.utils.set_progress_bar_global_hook(progress)
    native_euler = our_sampler(data, probed, patch)
    comfy.utils.set_progress_bar_global_hook(None)
    out["euler"] = diff(native_euler, our_sampler(data, da_model))
    out["euler_loaded_while_sampling"] = probe.seen
    out["euler_progress"] = progress.updates
    out["euler_vs_ksampler"] = diff(our_sampler(data, wan, patch, scheduler="simple"), native(data))
    guided = dict(cfg=3.0, cue_cfg=2.5, solver="unipc_wan")
    out["guided"] = diff(our_sampler(data, wan, patch, **guided), our_sampler(data, da_model, **guided))
    out["guided_vs_unguided"] = diff(our_sampler(data, wan, patch, **guided), native_euler)
    cues = long_cues(data)
    for solver in ("uni_pc", "dpmpp_2m_flow"):
        windows = dict(cues=cues, cue_cfg=2.0, solver=solver)
        out[f"windows_{solver}"] = diff(our_sampler(data, wan, patch, **windows), our_sampler(data, da_model, **windows))
    out["missing_patch"] = refusal(our_sampler, data, wan)
    out["patch_on_da_model"] = refusal(our_sampler, data, da_model, patch)
    mm.interrupt_current_processing(True)
    out["interrupted"] = refusal(our_sampler, data, wan, patch)
    mm.interrupt_current_processing(False)
    return out


def refusal(function, *args, **kwargs) -> str:
    """The one-line message of the pack's error a call raises ("" when it runs)."""
    try:
        function(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - the report names the type; the test checks it is ours
        return f"{type(error).__name__}: {error}"
    return ""


def low_vram_load() -> dict:
    """Bytes of the adapter a low-VRAM load (1 byte of budget) puts on the load device: ours, and a plain ModelPatcher's."""
    ours = NODES["DirectAnimatorAdapterLoader"].execute(NATIVE_ADAPTER).args[0]
    plain = comfy.model_patcher.ModelPatcher(ours.model, load_device=ours.load_device, offload_device=ours.offload_device)
    out = {"size": ours.model_size()}
    for name, patcher in (("ours", ours), ("plain", plain)):
        patcher.load(torch.device("cpu"), lowvram_model_memory=1)
        out[name] = patcher.model.model_loaded_weight_memory
        patcher.detach()
    return out


def bundled(data: dict) -> dict:
    """The bundled default model (merged file) on the native path, when the test copied it in: its adapter part as
    a MODEL_PATCH, the whole file through core's Load Diffusion Model, and, when core loads it, native vs engine."""
    if not (BASE_DIR / "models" / "diffusion_models" / BUNDLED).is_file():
        return {}
    out = {"adapter_blocks": len(NODES["DirectAnimatorAdapterLoader"].execute(BUNDLED).args[0].model.blocks)}
    try:
        core_nodes.UNETLoader().load_unet(BUNDLED, "default")
    except RuntimeError as error:  # a refusal by core's loader is the figure this reports
        out["core_loader"] = " ".join(str(error).split())[-300:]
        return out
    out["core_loader"] = "loaded"
    try:
        out["native_vs_engine"] = diff(native(data, base=BUNDLED, adapter=BUNDLED, vae_name=BUNDLED_VAE),
                                       engine(data, base=BUNDLED, adapter=None, vae_name=BUNDLED_VAE))
    except Exception as error:  # noqa: BLE001 - reported for the test's message, not hidden
        out["error"] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
    return out


def diff(a: torch.Tensor, b: torch.Tensor) -> dict:
    return {"max_abs": float((a - b).abs().max()), "scale": float(b.abs().max()),
            "shape_a": list(a.shape), "shape_b": list(b.shape)}


def main() -> None:
    data = inputs()
    report = {}
    probe = LoadedModelsProbe()
    ours = engine(data)
    report["cfg1"] = diff(native(data, probe=probe), ours)
    report["cfg1_without_patch"] = diff(native(data, patched=False), ours)
    report["cfg1_own_vae"] = diff(ours, engine(data, own_vae=True))
    report["loaded_while_sampling"] = probe.seen
    mm.unload_all_models()
    report["loaded_after_unload"] = sorted(type(m.model.model).__name__ for m in mm.current_loaded_models
                                           if m.model is not None)
    ours_cfg3 = engine(data, cfg=3.0)
    report["cfg3_text"] = diff(native(data, cfg=3.0, text=True), ours_cfg3)
    report["advanced_cfg3_text"] = diff(native(data, cfg=3.0, text=True, advanced=True), ours_cfg3)
    report["cfg3_vs_cfg1"] = diff(native(data, cfg=3.0, text=True), ours)
    report["guider_node_cue_cfg"] = diff(native(data, cfg=3.0, text=True, advanced=True, cue_cfg=2.5),
                                         engine(data, cfg=3.0, cue_cfg=2.5))
    report["guider_node_unpatched"] = refusal(NODES["DirectAnimatorGuider"].execute,
                                              core_nodes.UNETLoader().load_unet(NATIVE_BASE, "default")[0],
                                              data["text"], data["negative"], 3.0, 2.5)
    with_lora = native(data, lora=True)
    report["lora_vs_merged"] = diff(with_lora, native(data, base=NATIVE_MERGED))
    report["lora_vs_base"] = diff(with_lora, ours)
    report["fp8"] = diff(native(data, weight_dtype="fp8_e4m3fn"), ours)
    for name, base in (("bf16_file", NATIVE_BF16), ("scaled_fp8_file", NATIVE_SCALED_FP8)):
        report[name] = diff(native(data, base=base), engine(data, base=base))
    report["clip_branch_cfg3"] = diff(native(data, base=NATIVE_CLIP_BASE, cfg=3.0, text=True, vision=True),
                                      engine(data, base=NATIVE_CLIP_BASE, cfg=3.0, vision=True))
    report["clip_branch_missing"] = refusal(native, data, base=NATIVE_CLIP_BASE)
    report["t2v"] = {"native": refusal(native, data, base=NATIVE_T2V),
                     "engine": refusal(engine, data, base=NATIVE_T2V)}
    report["one_sampler"] = one_sampler(data)
    report["bundled"] = bundled(data)
    report["low_vram_load"] = low_vram_load()
    REPORT.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
