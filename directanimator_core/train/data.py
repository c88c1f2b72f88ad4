"""Training samples from the prepared cache (cache.py): same-ID samples, cross-ID pairs, batches, order.

Same-ID (stage 1): reference, cues and target all come from one clip. Cross-ID (stage 2): a manifest
pairs a target clip with a driving clip of another identity doing the same motion (PAPER.md §3; made
with any animation model); the target's own cues go to the frozen teacher, the driver's to the
student. The driver's cues are used as cached, in the driver's frame: pseudo driving videos made by
animating the target are already registered to it.

Randomness is a pure function of (seed, global sample index): which reference candidate, which pose
frames drop out, the noise and the timestep. So a resumed run and a run on any number of processes
see exactly the same samples, and the data position is just the number of samples consumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..models.conditioning import Conditioning, CueLatents
from .cache import entry_path, read_entry
from .config import DataConfig

CUE_KEYS = ("pose", "face", "pose_mask", "face_mask")


def read_manifest(path: str | Path) -> list[tuple[str, str]]:
    """The cross-ID pairs: a JSON list of {"target": clip name, "driving": clip name}.

    Args:
        path: the manifest file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"cross-ID manifest {path} does not exist: write a JSON list of "
                         '{"target": clip, "driving": clip} pairs')
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        pairs = [(str(row["target"]), str(row["driving"])) for row in rows]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise InputError(f"cross-ID manifest {path.name} is not a JSON list of "
                         f'{{"target": ..., "driving": ...}} objects ({error}): fix the file') from None
    same = [p for p in pairs if p[0] == p[1]]
    if same or not pairs:
        raise InputError(f"cross-ID manifest {path.name} has {len(pairs)} pairs, {len(same)} pairing a clip with "
                         "itself: each pair needs a driving clip of another identity")
    return pairs


def sample_seed(seed: int, index: int) -> int:
    """The seed of global sample ``index`` (independent of process count and resumption)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The dataset order of one epoch: a permutation drawn from (seed, epoch)."""
    return np.random.default_rng([seed, epoch, 7]).permutation(count)


@dataclass(frozen=True, eq=False)
class Sample:
    """One training example, unbatched (C, T, h, w layouts as cache.py).

    cues: what the trained model sees in stage 1, the teacher in stage 2 (same-ID).
    cross: the driver's cues the student sees in stage 2; None in stage 1.
    """

    latent: torch.Tensor
    image: Optional[torch.Tensor]
    context: torch.Tensor
    clip_fea: Optional[torch.Tensor]
    cues: dict[str, torch.Tensor]
    cross: Optional[dict[str, torch.Tensor]]
    seed: int
    figure: Optional[torch.Tensor] = None  # (M, T, h, w) the target's own person mask, when cached


@dataclass(frozen=True, eq=False)
class Batch:
    """Samples stacked on a new batch axis, ready for the model."""

    latent: torch.Tensor  # (B, C, T, h, w)
    image: Optional[torch.Tensor]  # (B, 4 + C, T, h, w)
    context: torch.Tensor  # (B, L, D_text)
    clip_fea: Optional[torch.Tensor]  # (B, 257, 1280)
    cues: CueLatents
    cross: Optional[CueLatents]
    seeds: tuple[int, ...]
    figure: Optional[torch.Tensor] = None  # (B, M, T, h, w), None unless every sample's entry has one

    def condition(self, cues: Optional[CueLatents]) -> Conditioning:
        return Conditioning(image=self.image, clip_fea=self.clip_fea, cues=cues)


def collate(samples: Sequence[Sample], device: torch.device) -> Batch:
    """Stack samples into a Batch on ``device``.

    Args:
        samples: the local batch.
        device: the compute device.
    """
    def stack(tensors):
        return torch.stack(list(tensors)).to(device)

    def cues(dicts):
        return CueLatents(**{k: stack(d[k] for d in dicts) for k in CUE_KEYS})

    first = samples[0]
    return Batch(
        latent=stack(s.latent for s in samples),
        image=None if first.image is None else stack(s.image for s in samples),
        context=stack(s.context for s in samples),
        clip_fea=None if first.clip_fea is None else stack(s.clip_fea for s in samples),
        cues=cues([s.cues for s in samples]),
        cross=None if first.cross is None else cues([s.cross for s in samples]),
        seeds=tuple(s.seed for s in samples),
        figure=None if any(s.figure is None for s in samples) else stack(s.figure for s in samples),
    )


class ClipDataset:
    """Same-ID samples (no pairs) or cross-ID samples (``pairs`` of (target, driving) clip names).

    Entries are read from the cache per sample and checksum-verified on every read.
    """

    def __init__(self, config: DataConfig, fingerprints: dict[str, str], text_dim: int,
                 pairs: Optional[Sequence[tuple[str, str]]] = None) -> None:
        self.config, self.fingerprints, self.text_dim = config, fingerprints, text_dim
        self.pairs = list(pairs) if pairs is not None else None
        self.names = sorted(fingerprints) if pairs is None else None
        needed = {n for pair in self.pairs for n in pair} if self.pairs is not None else set(self.names)
        unknown = sorted(needed - set(fingerprints))
        if unknown:
            raise InputError(f"clips {unknown} have no cache entry fingerprint: prepare them first")

    def __len__(self) -> int:
        return len(self.pairs) if self.pairs is not None else len(self.names)

    def read(self, name: str) -> dict[str, torch.Tensor]:
        return read_entry(entry_path(self.config, name), self.fingerprints[name])

    def sample(self, index: int, seed: int) -> Sample:
        """Item ``index`` with its randomness drawn from ``seed``.

        Args:
            index: dataset item.
            seed: sample_seed of the global sample index.
        """
        generator = torch.Generator().manual_seed(seed)
        target_name, driving_name = self.pairs[index] if self.pairs is not None else (self.names[index], None)
        target = self.read(target_name)
        image = None
        if "image" in target:
            pick = int(torch.randint(target["image"].shape[0], (), generator=generator))
            image = target["image"][pick]
        context = target.get("context")
        if context is None:
            context = torch.zeros(self.config.text_tokens, self.text_dim)
        same = {k: target[k] for k in CUE_KEYS}
        cross = None
        if driving_name is not None:
            driving = self.read(driving_name)
            if driving["pose"].shape != target["pose"].shape:
                raise InputError(f"driving clip {driving_name} has latent shape {tuple(driving['pose'].shape)}, target "
                                 f"{target_name} {tuple(target['pose'].shape)}: pair clips of the same length and size")
            cross = dict({k: driving[k] for k in CUE_KEYS}, pose=self.drop_pose(driving, generator))
        else:
            same["pose"] = self.drop_pose(target, generator)
        return Sample(target["latent"], image, context, target.get("clip_fea"), same, cross, seed, target.get("figure"))

    def drop_pose(self, entry: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """The pose latent with poorly segmented latent frames blanked at random (PAPER.md §2.1).

        A latent frame whose quality is below ``dropout_quality`` becomes the blank cue's latent frame
        with probability ``pose_dropout``.
        """
        frames = entry["pose_quality"].shape[0]
        draw = torch.rand(frames, generator=generator)
        drop = (entry["pose_quality"] < self.config.dropout_quality) & (draw < self.config.pose_dropout)
        return torch.where(drop[None, :, None, None], entry["blank_pose"], entry["pose"])


class SampleStream:
    """Global sample index -> Sample: epoch permutations, this process's slice of every global batch.

    Global batch ``step`` holds samples step·G ... step·G + G - 1; process ``rank`` of ``world_size``
    takes a contiguous G / world_size of them. With ``overfit`` a sample's randomness follows its
    dataset item instead of its global index (the same noise every epoch).
    """

    def __init__(self, dataset: ClipDataset, seed: int, global_batch: int, rank: int = 0, world_size: int = 1,
                 overfit: bool = False) -> None:
        if global_batch % world_size:
            raise InputError(f"run.batch_size={global_batch} does not split over {world_size} processes: use a "
                             f"multiple of {world_size}")
        self.dataset, self.seed, self.global_batch = dataset, seed, global_batch
        self.rank, self.world_size, self.overfit = rank, world_size, overfit
        self._orders: dict[int, np.ndarray] = {}

    @property
    def local_batch(self) -> int:
        return self.global_batch // self.world_size

    def item(self, global_index: int) -> int:
        epoch, position = divmod(global_index, len(self.dataset))
        if epoch not in self._orders:
            self._orders = {epoch: epoch_order(len(self.dataset), self.seed, epoch)}
        return int(self._orders[epoch][position])

    def batch(self, step: int, device: torch.device) -> Batch:
        """This process's part of global batch ``step``.

        Args:
            step: the optimizer step (0-based).
            device: where the tensors go.
        """
        start = step * self.global_batch + self.rank * self.local_batch
        indices = range(start, start + self.local_batch)
        items = [self.item(g) for g in indices]
        seeds = [sample_seed(self.seed, item if self.overfit else g) for item, g in zip(items, indices)]
        return collate([self.dataset.sample(item, seed) for item, seed in zip(items, seeds)], device)
