"""Fixtures of the trainer tests: synthetic moving-shape clips, a tiny VAE file, a tiny image-to-video
Wan DiT file, a prepared cache, and a config over them."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from directanimator_core.models.checkpoints.backbone import BACKBONE_METADATA
from directanimator_core.models.config import BackboneConfig
from directanimator_core.models.vae import TINY_VAE, build_vae
from directanimator_core.models.wan_dit import build_backbone, init_weights
from directanimator_core.train.config import DataConfig, ModelConfig, OptimConfig, RunConfig, Same2XConfig, TrainConfig

FRAMES, SIZE = 5, 64
TINY_I2V = BackboneConfig(dim=32, ffn_dim=64, num_layers=2, num_heads=2, text_dim=16, in_dim=36)
CLIPS = ("ann", "ben")  # two identities doing the same walk
PAIRS = [{"target": "ann", "driving": "ben"}, {"target": "ben", "driving": "ann"}]


def moving_person(seed: int, frames: int = FRAMES, size: int = SIZE, motion: int = 0) -> np.ndarray:
    """A body (ellipse) with a head walking across a plain background: (F, H, W, 3) uint8 RGB.
    ``motion`` picks the path, the seed the identity (colours, sizes)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(20, 70, 3)
    body, head = tuple(int(c) for c in rng.integers(120, 255, 3)), tuple(int(c) for c in rng.integers(150, 255, 3))
    width = int(rng.integers(6, 10))
    out = np.empty((frames, size, size, 3), np.uint8)
    for f in range(frames):
        img = np.empty((size, size, 3), np.uint8)
        img[:] = background
        x = 16 + f * 3 if motion % 2 == 0 else 48 - f * 3
        y = 36 + (f % 2) * (motion // 2)
        cv2.ellipse(img, (x, y), (width, 16), 0, 0, 360, body, -1)
        cv2.circle(img, (x, y - 20), 6, head, -1)
        out[f] = img
    return out


def write_clip(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, Path]:
    """Clip folder (2 identities, same motion), cross-ID manifest, VAE and backbone files."""
    root = tmp_path_factory.mktemp("train-assets")
    for i, name in enumerate(CLIPS):
        write_clip(root / "clips" / name, moving_person(seed=i))
    (root / "pairs.json").write_text(json.dumps(PAIRS))
    torch.manual_seed(0)
    vae = build_vae(TINY_VAE)
    save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, str(root / "vae.safetensors"))
    backbone = init_weights(build_backbone(TINY_I2V, torch.device("cpu")), torch.Generator().manual_seed(0))
    torch.nn.init.normal_(backbone.head.head.weight, std=0.02)  # a head that says something, so gradients flow
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, str(root / "dit.safetensors"),
              metadata={BACKBONE_METADATA: TINY_I2V.to_json()})
    return {"root": root, "clips": root / "clips", "manifest": root / "pairs.json", "vae": root / "vae.safetensors",
            "backbone": root / "dit.safetensors"}


@pytest.fixture(scope="session")
def prepared_cache(assets) -> Path:
    """The cache of every clip, built once per session (tests copy it when they change it)."""
    from directanimator_core.train.distributed import Processes
    from directanimator_core.train.loop import prepare

    config = make_config(assets, assets["root"] / "unused", assets["root"] / "cache")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see one_thread
    try:
        prepare(config, Processes(0, 1, 0, torch.device("cpu")))
    finally:
        torch.set_num_threads(threads)
    return assets["root"] / "cache"


def make_config(assets: dict[str, Path], out: Path, cache: Path, **sections) -> TrainConfig:
    """A tiny run: 2 clips of 5 frames at 64x64 -> latents (16, 2, 8, 8), 32 tokens; fp32 for exactness."""
    config = TrainConfig(
        data=DataConfig(clips=str(assets["clips"]), cache=str(cache), vae=str(assets["vae"]), frames=FRAMES,
                        height=SIZE, width=SIZE, reference_frames=1, cross_manifest=str(assets["manifest"]),
                        text_tokens=4),
        model=ModelConfig(backbone=str(assets["backbone"]), num_heads=TINY_I2V.num_heads, lora_rank=4),
        same2x=Same2XConfig(stage=1, depth=1, teacher_dtype="fp32"),
        optim=OptimConfig(lr=3e-3, grad_clip=1.0),
        run=RunConfig(out=str(out), steps=4, batch_size=2, precision="fp32", checkpoint_every=2, device="cpu"),
    )
    return replace(config, **{name: replace(getattr(config, name), **values) for name, values in sections.items()})


@pytest.fixture
def cache_copy(prepared_cache, tmp_path) -> Path:
    return Path(shutil.copytree(prepared_cache, tmp_path / "cache"))


@pytest.fixture
def config_for(assets):
    """make_config bound to the session's assets: config_for(out, cache, run={...}, ...)."""
    return lambda out, cache, **sections: make_config(assets, out, cache, **sections)


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and on a shared CPU two spinning threads per matmul
    cost far more than they give (a 4x slower suite under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
