"""Frozen configs of a training run, read from one JSON (or TOML) file.

The file mirrors ``TrainConfig``: top-level sections ``data``, ``model``, ``same2x``, ``optim`` and
``run``, each a table of the matching dataclass's fields. Unknown keys are errors (a typo must not
silently become a default), and the whole config is written into every checkpoint as JSON.

    {"data": {"clips": "clips/", "cache": "cache/", "vae": "wan_2.1_vae.safetensors",
              "frames": 17, "height": 256, "width": 256},
     "model": {"backbone": "wan2.2_i2v_low_noise_14B_fp16.safetensors", "train": "adapter"},
     "same2x": {"stage": 1},
     "run": {"out": "runs/stage1", "steps": 10000, "batch_size": 8}}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Optional, Union

from ..errors import InputError

TRAINABLE = ("adapter", "lora", "full")
PRECISIONS = ("bf16", "fp32")
STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DataConfig:
    """The clips and their cache (data.py).

    clips: folder of clips (video files, or folders of numbered frames); beside each, optionally
        ``<name>.txt`` (caption, kept in the cache for reference) and ``<name>.text.safetensors``
        (precomputed text states ``context`` (L, D_text), and ``clip_fea`` (257, 1280) for backbones
        with a CLIP branch).
    cache: folder of prepared clips (one safetensors file each).
    vae: Wan 2.1 VAE safetensors used by the preparation step.
    frames / height / width: every clip is trimmed to ``frames`` (4n + 1) and centre-cropped and
        resized to height x width (multiples of 16).
    reference_frames: reference candidates kept per clip (evenly spaced frames from frame 0; one is
        drawn per sample) for an image-to-video backbone; 1 keeps Wan's own meaning (the given image
        is the first frame); 0 for a text-to-video backbone, which has no image input.
    cross_manifest: JSON list of {"target": clip, "driving": clip} pairs (stage 2).
    pose_dropout: probability of blanking a pose-cue latent frame whose segmentation quality is below
        ``dropout_quality`` (PAPER.md: poor frames are dropped so the model infers them).
    text: "embeddings" needs a ``.text.safetensors`` per clip; "none" trains with an all-zero context.
    text_tokens: tokens of the zero context when text is "none".
    """

    clips: str = "clips"
    cache: str = "cache"
    vae: Optional[str] = None
    frames: int = 17
    height: int = 256
    width: int = 256
    reference_frames: int = 1
    cross_manifest: Optional[str] = None
    pose_dropout: float = 0.5
    dropout_quality: float = 0.5
    text: str = "none"
    text_tokens: int = 1

    def __post_init__(self) -> None:
        if self.frames < 1 or (self.frames - 1) % 4:
            raise InputError(f"data.frames={self.frames}: the Wan VAE needs 4n + 1 frames; use e.g. "
                             f"{4 * max((self.frames - 1) // 4, 0) + 1} or {4 * max((self.frames - 1) // 4 + 1, 1) + 1}")
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise InputError(f"data.height/width={self.height}x{self.width}: both must be positive multiples "
                             "of 16 (VAE stride 8 x patch 2)")
        if self.text not in ("none", "embeddings"):
            raise InputError(f"data.text={self.text!r}: use 'embeddings' (a .text.safetensors per clip) or 'none'")
        if not 0.0 <= self.pose_dropout <= 1.0:
            raise InputError(f"data.pose_dropout={self.pose_dropout}: a probability, between 0 and 1")


@dataclass(frozen=True)
class ModelConfig:
    """What is built and what is trained (same2x.py, lora.py).

    backbone: a Wan DiT safetensors file (any layout models/checkpoint.py reads, or a merged base +
        adapter file), or a preset name of models/registry.py with random weights (tests, toys).
    adapter: a CueFusion adapter file to start from (stage 2 starts from stage 1's); None = a fresh,
        zero-gated adapter.
    lora: a LoRA file (lora.py format) to start from; stage 1's when it trained LoRA.
    train: "adapter" (the CueFusion adapter alone), "lora" (adapter + LoRA on the blocks' Linears),
        "full" (everything).
    lora_rank / lora_alpha / lora_targets: LoRA size, scale alpha / rank, and which Linears of each
        block get one (names relative to the block).
    cue_blocks: the fused blocks (None = every block); mask_channels / cue_channels: cue latent widths.
    num_heads: attention heads when the width is not a multiple of 128 (tiny test models).
    """

    backbone: str = "tiny"
    adapter: Optional[str] = None
    lora: Optional[str] = None
    train: str = "adapter"
    lora_rank: int = 16
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = ("self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o",
                                     "cross_attn.q", "cross_attn.o", "ffn.0", "ffn.2")
    cue_blocks: Optional[tuple[int, ...]] = None
    cue_channels: int = 16
    mask_channels: int = 4
    num_heads: Optional[int] = None

    def __post_init__(self) -> None:
        if self.train not in TRAINABLE:
            raise InputError(f"model.train={self.train!r}: choose one of {list(TRAINABLE)}")
        if self.lora_rank < 1:
            raise InputError(f"model.lora_rank={self.lora_rank}: a LoRA needs rank 1 or more")


@dataclass(frozen=True)
class Same2XConfig:
    """Stage 1 (same-ID) or stage 2 (cross-ID with the Same2X alignment; PAPER.md §3).

    depth: block D whose output tokens are aligned (paper: 10); weight: λ (paper: 0.5; 0 trains
    stage 2 on the denoising loss alone, the ablation). teacher_dtype: "bf16" keeps the frozen
    teacher's weights in bf16 (half the memory), "fp32" as the student. teacher_budget_gb: stream the
    teacher's blocks through offload/ within this much device memory; None keeps it resident.
    """

    stage: int = 1
    depth: int = 10
    weight: float = 0.5
    teacher_dtype: str = "bf16"
    teacher_budget_gb: Optional[float] = None

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise InputError(f"same2x.stage={self.stage}: 1 (same-ID) or 2 (cross-ID with Same2X)")
        if self.teacher_dtype not in PRECISIONS:
            raise InputError(f"same2x.teacher_dtype={self.teacher_dtype!r}: choose one of {list(PRECISIONS)}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up, then a constant rate or a cosine decay over the run to
    ``min_lr_ratio`` of ``lr`` (``decay="cosine"``); gradient norm clipped (0 = off). The CueFusion
    adapter's parameters run at ``adapter_lr_scale`` times the rate of the rest."""

    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    grad_clip: float = 1.0
    decay: str = "constant"
    min_lr_ratio: float = 0.1
    adapter_lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.decay not in ("constant", "cosine"):
            raise InputError(f'optim.decay="{self.decay}": use "constant" or "cosine"')
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise InputError(f"optim.min_lr_ratio={self.min_lr_ratio}: a fraction of lr in [0, 1]")
        if not self.adapter_lr_scale > 0:
            raise InputError(f"optim.adapter_lr_scale={self.adapter_lr_scale}: a positive factor (1 = the same rate "
                             "as the backbone)")


@dataclass(frozen=True)
class RunConfig:
    """How the loop runs (loop.py, distributed.py).

    batch_size is the global batch (split evenly over processes). timestep_shift: Wan's time shift
    applied to uniformly drawn sigmas. precision "bf16" runs the forward under bf16 autocast with fp32
    master weights. strategy "ddp" or "fsdp" (FSDP2 fully_shard) when launched by torchrun with more
    than one process. ema: decay of an EMA of the trained weights (0 = off); the export uses it.
    overfit: draw each clip's noise, timestep, reference and dropout once and reuse them every epoch
    (the "overfit one batch" sanity check: a working model then drives the loss toward zero).
    figure_weight: the denoising loss weighs the latent pixels the target's person covers (the cache's
    ``figure`` mask) 1 + figure_weight times the rest (0 = plain mean), so a small figure is not
    outweighed by the background the reference already gives (losses.figure_weights).
    cue_dropout: probability that a training step shows the model no cues at all (the cue-free
    prediction, CueFusion off), as text-to-image training drops its caption: cue guidance (the
    sampler's cue_cfg above 1) extrapolates from that prediction, which is otherwise never trained.
    """

    out: str = "runs/train"
    seed: int = 0
    steps: int = 1000
    batch_size: int = 1
    timestep_shift: float = 5.0
    figure_weight: float = 0.0
    cue_dropout: float = 0.0
    precision: str = "bf16"
    grad_checkpointing: bool = False
    ema: float = 0.0
    strategy: str = "ddp"
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    log_every: int = 1
    device: Optional[str] = None
    overfit: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(f"run.precision={self.precision!r}: choose one of {list(PRECISIONS)}")
        if self.strategy not in STRATEGIES:
            raise InputError(f"run.strategy={self.strategy!r}: choose one of {list(STRATEGIES)}")
        if not 0.0 <= self.ema < 1.0:
            raise InputError(f"run.ema={self.ema}: an EMA decay in [0, 1), e.g. 0.999 (0 = off)")
        if not 0.0 <= self.cue_dropout < 1.0:
            raise InputError(f"run.cue_dropout={self.cue_dropout}: a probability in [0, 1) (0 = off, e.g. 0.1)")
        if not 0.0 <= self.figure_weight <= 1000.0:
            raise InputError(f"run.figure_weight={self.figure_weight}: a weight in [0, 1000] (0 = off, e.g. 4)")
        if self.batch_size < 1 or self.steps < 0 or self.checkpoint_every < 1:
            raise InputError(f"run.batch_size={self.batch_size}, steps={self.steps}, checkpoint_every="
                             f"{self.checkpoint_every}: batch and checkpoint interval at least 1, steps at least 0")


@dataclass(frozen=True)
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    same2x: Same2XConfig = field(default_factory=Same2XConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        if self.same2x.stage == 2 and self.data.cross_manifest is None:
            raise InputError("same2x.stage=2 needs data.cross_manifest, the JSON list of {target, driving} clip "
                             "pairs: make cross-identity driving clips first (PAPER.md §3)")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def from_dict(values: dict[str, Any], kind: type = TrainConfig, where: str = "config") -> Any:
    """A config dataclass from nested dicts; unknown keys raise InputError naming them.

    Args:
        values: the parsed file (or a section of it).
        kind: the dataclass to build.
        where: the section's path, for messages.
    """
    if not isinstance(values, dict):
        raise InputError(f"{where} must be a table of fields, got {type(values).__name__}")
    known = {f.name: f for f in fields(kind)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise InputError(f"{where} has unknown fields {unknown}: known fields are {sorted(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(kind(), name) if name in _sections(kind) else None
        if is_dataclass(default):
            kwargs[name] = from_dict(value, type(default), f"{where}.{name}")
        else:
            kwargs[name] = tuple(value) if isinstance(value, list) else value
    return kind(**kwargs)


def _sections(kind: type) -> set[str]:
    return {f.name for f in fields(kind) if kind is TrainConfig}


def load_config(path: Union[str, Path]) -> TrainConfig:
    """Read a TrainConfig from a .json or .toml file (TOML needs Python 3.11's tomllib).

    Args:
        path: the config file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"training config {path} does not exist: give a .json (or .toml) file")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            import tomllib
        except ModuleNotFoundError:
            raise InputError(f"{path.name} is TOML, which needs Python 3.11 or later: write it as JSON") from None
        values = tomllib.loads(text)
    else:
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(f"{path.name} is not valid JSON ({error}): fix the file") from None
    return from_dict(values)


def config_from_json(text: str) -> TrainConfig:
    """The TrainConfig written by ``TrainConfig.to_json`` (checkpoints)."""
    return from_dict(json.loads(text))


def with_overrides(config: TrainConfig, **sections: dict[str, Any]) -> TrainConfig:
    """``config`` with some fields of some sections replaced, e.g. ``run={"steps": 10}``."""
    return replace(config, **{name: replace(getattr(config, name), **values) for name, values in sections.items()})
