"""Training set-up over an exported synthetic clip folder: a small fresh backbone and the two stage configs.

    python -m directanimator_core.synth.export data/synth/train --pairs 256 --vae VAE.safetensors
    python -m directanimator_core train data/synth/stage1.json
    python -m directanimator_core train data/synth/stage2.json

The backbone is our Wan DiT at small width with the image-to-video input (36 channels: noise, mask,
reference latent) and no CLIP branch, so it needs neither text nor CLIP features. It is trained fully
(``model.train="full"``): there is no pretrained base to keep.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from ..models.checkpoints.backbone import BACKBONE_METADATA
from ..models.config import BackboneConfig
from ..models.wan_dit import build_backbone, init_weights
from ..train.config import DataConfig, ModelConfig, OptimConfig, RunConfig, Same2XConfig, TrainConfig, with_overrides
from .export import MANIFEST

SMALL_BACKBONE = BackboneConfig(dim=128, ffn_dim=512, num_layers=6, num_heads=2, text_dim=32, in_dim=36)


def write_initial_backbone(path: str | Path, config: BackboneConfig = SMALL_BACKBONE, seed: int = 0) -> Path:
    """A freshly initialised backbone file (Wan's init, then a small random head so the first steps
    already see gradients through it), with its config in the metadata.

    Args:
        path: the safetensors file to write.
        config: the backbone's sizes.
        seed: init seed.
    """
    generator = torch.Generator().manual_seed(seed)
    model = init_weights(build_backbone(config, torch.device("cpu")), generator)
    with torch.no_grad():
        model.head.head.weight.normal_(0.0, 0.02, generator=generator)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path),
              metadata={BACKBONE_METADATA: config.to_json()})
    return path


def training_configs(clips: str | Path, vae: str | Path, backbone: str | Path, runs: str | Path = "runs/synth",
                     frames: int = 17, size: int = 64, steps: int = 2000,
                     layers: int = SMALL_BACKBONE.num_layers, heads: int = SMALL_BACKBONE.num_heads):
    """(stage 1, stage 2) TrainConfigs over an exported clip folder: full training, fp32 on the CPU, the
    cache beside the clips; stage 2 starts from stage 1's exported model on the cross-ID manifest.

    Args:
        clips: the exported folder (with cross_manifest.json).
        vae: Wan VAE safetensors for the cache (the small synthetic-world VAE once trained).
        backbone: the DiT file stage 1 starts from (write_initial_backbone).
        runs: parent folder of the two run folders.
        frames: F per clip, as exported.
        size: H = W, as exported.
        steps: optimizer steps per stage.
        layers: the backbone's depth (Same2X aligns block layers // 3, as the paper's 10 of 30).
        heads: the backbone's attention heads.
    """
    clips, runs = Path(clips), Path(runs)
    stage1 = TrainConfig(
        data=DataConfig(clips=str(clips), cache=str(clips.parent / f"{clips.name}_cache"), vae=str(vae),
                        frames=frames, height=size, width=size, reference_frames=2,
                        cross_manifest=str(clips / MANIFEST)),
        model=ModelConfig(backbone=str(backbone), train="full", num_heads=heads),
        same2x=Same2XConfig(stage=1, depth=max(layers // 3, 1), teacher_dtype="fp32"),
        optim=OptimConfig(lr=3e-4, warmup_steps=50),
        run=RunConfig(out=str(runs / "stage1"), steps=steps, batch_size=4, precision="fp32", ema=0.999,
                      checkpoint_every=250, device="cpu"),
    )
    stage2 = with_overrides(stage1, model={"backbone": str(runs / "stage1" / "model.safetensors")},
                            same2x={"stage": 2}, run={"out": str(runs / "stage2")})
    return stage1, stage2
