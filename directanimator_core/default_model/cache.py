"""The trainer's clip cache (train/cache.py format), written from the synthetic world's exact cues.

The trainer's own preparation step cuts cues with the built-in segmenter and face detector; here the
renderer knows masks and face boxes exactly (world.py), so the entries are written directly, with the
fingerprint the trainer computes (train/cache.fingerprint), and the trainer runs with its
preparation step off. Clips are saved as folders of PNG frames (what the fingerprint identifies).

Stage 1 (same-ID) folder: one clip per training seed, cues from the clip itself, reference
candidates taken from its own frames. Stage 2 (cross-ID) folder: per pair, the target (identity A
performing motion M, referenced by A's own picture, cues of A itself for the teacher) and the driver
(identity B performing M, cues aligned to A's picture, as the demo aligns them).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np
import torch

from ..cues.triplet import CueTriplet
from ..models.cue_embed import pack_uint8_mask
from ..models.vae import WanVAE, normalize_latents
from ..synth import cross_id_pair, same_id_clip, split_seed
from ..train.cache import (FORMAT, POSE_BACKGROUND, checksum, entry_path, file_identity, fingerprint,
                           latent_quality, read_entry, reference_indices, write_atomic)
from ..train.config import DataConfig
from .recipe import Recipe
from .world import cue_config, exact_triplet

log = logging.getLogger(__name__)

ENCODE_BATCH = 8  # clips per VAE pass


def encode_many(vae: WanVAE, videos: Sequence[np.ndarray]) -> list[torch.Tensor]:
    """(F, H, W, 3) uint8 videos -> normalised latents (C, T, h, w), ENCODE_BATCH clips per pass."""
    out = []
    for start in range(0, len(videos), ENCODE_BATCH):
        batch = torch.from_numpy(np.stack(videos[start:start + ENCODE_BATCH])).float()
        batch = batch.permute(0, 4, 1, 2, 3) / 127.5 - 1  # (B, 3, F, H, W)
        with torch.no_grad():
            out.extend(normalize_latents(vae.encode(batch).float()))
    return out


def reference_video(reference: np.ndarray, frames: int) -> np.ndarray:
    """Wan's image-to-video pixels: the reference, then neutral grey frames."""
    video = np.full((frames, *reference.shape), POSE_BACKGROUND, np.uint8)
    video[0] = reference
    return video


def image_condition(latent: torch.Tensor) -> torch.Tensor:
    """(C, T, h, w) latent of reference_video -> Wan's ``y`` (4 + C, T, h, w): frame 0 marked as given."""
    mask = torch.zeros(4, *latent.shape[1:])
    mask[:, 0] = 1
    return torch.cat([mask, latent])


def save_frames(frames: np.ndarray, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


ENCODED = frozenset({"latent", "image", "pose", "face"})  # the entry tensors that cost a VAE pass


class EntryWriter:
    """Collects clips (frames, cues, references), encodes them in batches, writes trainer entries.

    With ``reuse`` (another world's cache folder of the same clips, VAE and sizes), only the tensors named in
    ``encode`` are encoded; the other ENCODED ones are read from the entry of the same name there. A
    variant world that changes one cue (the reproduction table's rows) then costs one VAE pass a clip, not
    five; masks are always recomputed from the triplet (no VAE).
    """

    def __init__(self, config: DataConfig, recipe: Recipe, vae: WanVAE, vae_file: Path,
                 reuse: Optional[Path] = None, encode: frozenset[str] = ENCODED) -> None:
        if not encode <= ENCODED:
            raise ValueError(f"encode={sorted(encode)}: only {sorted(ENCODED)} are encoded")
        self.config, self.recipe, self.vae = config, recipe, vae
        self.vae_identity = file_identity(vae_file)
        self.reuse, self.encode = reuse, encode if reuse is not None else ENCODED
        self.rows: list[tuple[str, np.ndarray, CueTriplet, list[np.ndarray], bool, np.ndarray]] = []

    def add(self, name: str, frames: np.ndarray, triplet: CueTriplet, references: list[np.ndarray],
            person: np.ndarray, target: bool = True) -> None:
        """Queue one clip with its exact (F, H, W) bool person mask; ``target`` False (a driver) skips its
        own latent and references."""
        self.rows.append((name, frames, triplet, references, target, person))

    def _encoded(self, key: str, videos: Callable[[], list[np.ndarray]], names: list[str]) -> Iterator[torch.Tensor]:
        """The ``key`` latents of ``names`` in order: encoded, or read from the reused world's entries."""
        if key in self.encode:
            return iter(encode_many(self.vae, videos()))
        reused = replace(self.config, cache=str(self.reuse))
        return (read_entry(entry_path(reused, name))[key] for name in names)

    def write(self) -> list[str]:
        """Encode every queued clip and write its entry; returns the clip names."""
        clip_dir = Path(self.config.clips)
        for name, frames, *_ in self.rows:
            save_frames(frames, clip_dir / name)
        frames_count = self.config.frames
        targets = [r for r in self.rows if r[4]]
        names, target_names = [r[0] for r in self.rows], [r[0] for r in targets]
        latents = self._encoded("latent", lambda: [r[1] for r in targets], target_names)
        poses = self._encoded("pose", lambda: [r[2].pose for r in self.rows], names)
        faces = self._encoded("face", lambda: [r[2].face for r in self.rows], names)
        if "image" in self.encode:
            refs = iter(encode_many(self.vae, [reference_video(ref, frames_count) for r in targets for ref in r[3]]))
            images = (torch.stack([image_condition(next(refs)) for _ in r[3]]) for r in targets)
        else:
            images = self._encoded("image", list, target_names)
        blank = encode_many(self.vae, [np.full_like(self.rows[0][1], POSE_BACKGROUND)])[0]
        for name, _frames, triplet, references, target, person in self.rows:
            masks = (triplet.body_mask, triplet.face_mask, person.astype(np.uint8) * 255)
            packed = torch.cat([pack_uint8_mask(m) for m in masks])  # (3, M, T, h, w)
            tensors = {"pose": next(poses), "face": next(faces), "blank_pose": blank,
                       "pose_mask": packed[0].contiguous(), "face_mask": packed[1].contiguous(),
                       "figure": packed[2].contiguous(), "pose_quality": latent_quality(triplet.quality)}
            if target:
                tensors["latent"] = next(latents)
                tensors["image"] = next(images)
            self._write_entry(name, tensors)
        return names

    def _write_entry(self, name: str, tensors: dict[str, torch.Tensor]) -> None:
        expected = fingerprint(Path(self.config.clips) / name, self.config, cue_config(self.recipe), self.vae_identity)
        metadata = {"format": FORMAT, "fingerprint": expected, "checksum": checksum(tensors), "caption": ""}
        write_atomic(tensors, entry_path(self.config, name), metadata)


def same_id_seeds(recipe: Recipe) -> list[int]:
    return [split_seed("train", i) for i in range(recipe.same_id_clips)]


def cross_id_seeds(recipe: Recipe) -> list[int]:
    return [split_seed("train", 5_000 + i) for i in range(recipe.cross_id_pairs)]


def write_same_id(config: DataConfig, recipe: Recipe, vae: WanVAE, vae_file: Path, reuse: Optional[Path] = None,
                  encode: frozenset[str] = ENCODED) -> list[str]:
    """Stage 1's clips and entries: every clip referenced by its own frames (reference_indices). ``reuse``
    and ``encode``: EntryWriter's."""
    writer = EntryWriter(config, recipe, vae, vae_file, reuse, encode)
    for seed in same_id_seeds(recipe):
        clip = same_id_clip(seed, recipe.frames, recipe.height, recipe.width).render
        picks = reference_indices(recipe.frames, config.reference_frames)
        writer.add(f"same_{seed:05d}", clip.frames, exact_triplet(clip, recipe), [clip.frames[i] for i in picks],
                   clip.person)
    return writer.write()


def write_cross_id(config: DataConfig, recipe: Recipe, vae: WanVAE, vae_file: Path, manifest: Path,
                   reuse: Optional[Path] = None, encode: frozenset[str] = ENCODED) -> list[tuple[str, str]]:
    """Stage 2's pairs, entries and manifest: target = A performing M (A's picture as the reference,
    A's own cues for the teacher); driver = B performing M, cues aligned to A's picture. ``reuse`` and
    ``encode``: EntryWriter's."""
    writer, pairs = EntryWriter(config, recipe, vae, vae_file, reuse, encode), []
    for seed in cross_id_seeds(recipe):
        pair = cross_id_pair(seed, recipe.frames, recipe.height, recipe.width)
        target, driver = f"pair_{seed:05d}_target", f"pair_{seed:05d}_driver"
        truth = pair.truth.render
        writer.add(target, truth.frames, exact_triplet(truth, recipe), [pair.reference], truth.person)
        drive = pair.driving.render
        writer.add(driver, drive.frames, exact_triplet(drive, recipe, pair.reference_render), [], drive.person,
                   target=False)
        pairs.append((target, driver))
    writer.write()
    manifest.write_text(json.dumps([{"target": t, "driving": d} for t, d in pairs], indent=1))
    return pairs


def load_frames(folder: Path, count: Optional[int] = None) -> np.ndarray:
    """A clip folder written by save_frames -> (F, H, W, 3) uint8 RGB."""
    files = sorted(folder.glob("*.png"))[:count]
    return np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in files])
