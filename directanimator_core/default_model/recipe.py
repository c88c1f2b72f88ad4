"""The recipe of the default model: one frozen dataclass, so the committed weights name what made them."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

from ..models.config import BackboneConfig, CueFusionConfig
from ..models.vae import VAEConfig
from ..sampling import SamplerConfig


@dataclass(frozen=True)
class Recipe:
    """Sizes, seeds and step counts of the default-model run (train.py).

    Clips are synthetic (synth/): training seeds are even, held-out seeds odd (synth.dataset), so no
    held-out identity, motion or scene is ever trained on. Sizes are small so the whole run fits a
    2-core CPU in about 1.6 hours (record.json).
    """

    seed: int = 0
    threads: int = 1  # torch CPU threads; fixed because float sums depend on it (and 1 wins on a busy CPU)
    height: int = 128  # frames the DiT animates; 128 with a 2x2 patch gives 8x8 tokens a frame, in Wan's layout
    width: int = 128
    frames: int = 17  # 4n + 1 (5 latent frames)
    # VAE (Wan VAE architecture, width vae_dim; z 16 so Wan's latent normalisation applies)
    vae_dim: int = 16
    vae_size: int = 64  # side of the frames the VAE trains on (it is convolutional: it runs at any size, 128 too)
    vae_clips: int = 160  # training clips whose frames the VAE sees
    vae_image_steps: int = 5000  # phase 1: single frames (the causal first-frame path; 5x cheaper)
    vae_image_batch: int = 4
    vae_image_crop: int = 64  # whole frames: the figure and the scene in one view
    vae_steps: int = 500  # phase 2: clips of vae_window frames (trains the temporal layers too)
    vae_batch: int = 4
    vae_window: int = 5  # pixel frames per VAE training clip (1 + 4: the causal first frame and one chunk)
    vae_clip_steps: int = 100  # phase 3 (fresh optimizer, vae_clip_lr): whole clips of ``frames`` frames, so the
    vae_clip_lr: float = 1.5e-4  # causal cache across chunks is trained (frames after the first chunk)
    vae_crop: int = 32  # square crops (the VAE is convolutional; attention only at 1/8 scale)
    vae_lr: float = 5e-4
    # DirectAnimator (Wan DiT image-to-video layout + CueFusion)
    dim: int = 128
    ffn_dim: int = 256
    num_layers: int = 4
    num_heads: int = 1  # head width 128, as ComfyUI's Wan detection assumes (num_heads = dim / 128)
    patch: int = 2  # spatial patch of the DiT: Wan's (1, 2, 2), so core ComfyUI's loader reads it as a Wan model
    text_dim: int = 32
    same2x_depth: int = 2
    same_id_clips: int = 384  # twice the clips of earlier runs: with 192 the cue use was partly memorised
    cross_id_pairs: int = 128
    stage1_steps: int = 11000
    stage2_steps: int = 1500
    batch_size: int = 4
    lr: float = 5e-4  # warm-up, then cosine to a tenth (train.config.OptimConfig)
    ema: float = 0.999  # the exported weights are this EMA of the trained ones
    same2x_weight: float = 0.5
    timestep_shift: float = 3.0
    figure_weight: float = 2.0  # the figure's extra weight in the denoising loss (train.config.RunConfig)
    gate_init: float = 1.0  # CueFusion's injection gates at the start: open, since nothing pretrained needs protecting
    adapter_lr_scale: float = 1.0  # the adapter's learning rate over the backbone's
    cue_dropout: float = 0.1  # share of training steps shown no cues (train.config.RunConfig), so cue_cfg works
    cue_cfg: float = 1.0  # the cue guidance every sampler of this recipe (bench, demo, evaluation) uses
    # cues
    pose_cue: str = "pixels"  # "pixels" (the paper's low-passed cut-out) or "skeleton" (ablation)
    face_cue: bool = True
    location_cue: bool = True
    lowpass: bool = True
    # the pose cue's low-pass sigma in cycles per pixel (cues.config.PoseConfig; the library's 0.04 is for
    # people hundreds of pixels tall: on a 128-pixel frame it leaves a smudge), and greyscale: with the
    # driver's colours, same-ID training teaches the model to read the person's look off its own pose
    # cue, which another person's cue cannot give (docs/driven.md)
    pose_cutoff: float = 0.08
    pose_greyscale: bool = True

    def sampler(self, steps: int, seed: int = 0) -> SamplerConfig:
        """The sampler the recipe's model is scored and shown with: Euler on Wan's shifted schedule, no text
        guidance, the recipe's cue guidance."""
        return SamplerConfig(steps=steps, cfg_text=1.0, cfg_cues=self.cue_cfg, shift=self.timestep_shift,
                             solver="euler", seed=seed)

    def vae_config(self) -> VAEConfig:
        return VAEConfig(dim=self.vae_dim, z_dim=16)

    def backbone_config(self) -> BackboneConfig:
        return BackboneConfig(dim=self.dim, ffn_dim=self.ffn_dim, num_layers=self.num_layers,
                              num_heads=self.num_heads, in_dim=36, out_dim=16, text_dim=self.text_dim,
                              patch_size=(1, self.patch, self.patch))

    def cuefusion_config(self) -> CueFusionConfig:
        return CueFusionConfig(same2x_depth=self.same2x_depth)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


DEFAULT = Recipe()


def quick(recipe: Recipe = DEFAULT) -> Recipe:
    """A much shorter run of the same recipe (tests, smoke checks): a few clips and steps."""
    return replace(recipe, height=64, width=64, vae_clips=2, vae_image_steps=2, vae_image_batch=1, vae_steps=2, vae_batch=1, vae_clip_steps=1,
                   vae_crop=16, vae_image_crop=16, same_id_clips=2, cross_id_pairs=2, stage1_steps=2, stage2_steps=2, batch_size=1,
                   dim=32, ffn_dim=64, num_layers=2, same2x_depth=1)
