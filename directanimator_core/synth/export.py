"""Write the synthetic world as the trainer's clip folder (train/cache.py, train/data.py).

    python -m directanimator_core.synth.export OUT --split train --pairs 64 --frames 17 --size 64

Each cross-ID pair seed p gives two clips that perform the same motion: ``p<p>_a`` (identity A in
A's scene, the exact ground truth) and ``p<p>_b`` (identity B in B's scene, the driver). Both are
ordinary same-ID clips for stage 1; ``cross_manifest.json`` pairs them both ways for stage 2
({"target": a, "driving": b} and the reverse), so the student's driver cues come from another
identity doing exactly the target's motion. Clips are folders of PNG frames (lossless: no codec
noise in the targets). Beside each clip, ``<name>.truth.npz`` holds the exact ground truth (person
and face masks bit-packed, face boxes, joints, visibility, depth) for scoring and ablations; the
trainer ignores it. ``<name>.txt`` is a caption naming the seeds.

With ``--vae FILE`` it also writes, beside the clip folder, a fresh small backbone and
``stage1.json`` / ``stage2.json`` (training.py): a starting point for ``python -m directanimator_core
train stage1.json`` then ``stage2.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from ..errors import InputError
from .dataset import SPLITS, Clip, cross_id_pair, split_seed
from .render import Render

log = logging.getLogger(__name__)
MANIFEST = "cross_manifest.json"


@dataclass(frozen=True)
class ExportReport:
    folder: Path
    clips: tuple[str, ...]
    manifest: Path
    frames: int


def write_frames(folder: Path, frames: np.ndarray) -> None:
    """(F, H, W, 3) uint8 RGB -> folder/00000.png ... (numbered, so name order is frame order)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        if not cv2.imwrite(str(folder / f"{i:05d}.png"), np.ascontiguousarray(frame[..., ::-1])):
            raise InputError(f"could not write {folder / f'{i:05d}.png'}: check the output folder is writable")


def save_truth(path: Path, rendered: Render) -> None:
    """The exact ground truth of a rendered clip, as a compressed npz (masks bit-packed on W)."""
    np.savez_compressed(
        path, person=np.packbits(rendered.person, axis=-1), face=np.packbits(rendered.face, axis=-1),
        width=np.array(rendered.frames.shape[2]), face_boxes=rendered.face_boxes, joints=rendered.joints,
        joint_visible=rendered.joint_visible, joint_depth=rendered.joint_depth,
        joint_names=np.array(rendered.joint_names))


def load_truth(path: str | Path) -> dict[str, np.ndarray]:
    """save_truth() read back, masks unpacked to (F, H, W) bool.

    Args:
        path: a ``<clip>.truth.npz`` file.
    """
    with np.load(path) as data:
        truth = {k: data[k] for k in data.files}
    width = int(truth.pop("width"))
    for key in ("person", "face"):
        truth[key] = np.unpackbits(truth[key], axis=-1, count=width).astype(bool)
    return truth


def _write_clip(folder: Path, name: str, clip: Clip, seeds: str) -> None:
    write_frames(folder / name, clip.render.frames)
    save_truth(folder / f"{name}.truth.npz", clip.render)
    (folder / f"{name}.txt").write_text(f"synthetic {clip.motion.kind}; {seeds}\n", encoding="utf-8")


def export_pairs(folder: str | Path, split: str, pairs: int, frames: int = 17, height: int = 64, width: int = 64,
                 start: int = 0, kind: Optional[str] = None) -> ExportReport:
    """Render ``pairs`` cross-ID pairs of ``split`` into ``folder`` as clips plus a manifest.

    Args:
        folder: the clip folder (created); existing clips of the same names are overwritten.
        split: "train" or "heldout" (seed parity, dataset.py).
        pairs: how many pairs (two clips each).
        frames: F per clip (4n + 1 for the Wan VAE).
        height: H.
        width: W.
        start: index of the first pair within the split (to extend a folder).
        kind: motion kind, or None to draw each from its seed.
    """
    if split not in SPLITS:
        raise InputError(f"split {split!r} is unknown: use one of {SPLITS}")
    if pairs < 1:
        raise InputError(f"pairs={pairs} is below 1: export at least one pair")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names, manifest = [], []
    for index in range(start, start + pairs):
        seed = split_seed(split, index)
        pair = cross_id_pair(seed, frames, height, width, kind)
        a, b = f"p{seed}_a", f"p{seed}_b"
        seeds = f"pair seed {seed}, motion {pair.truth.motion.seed}"
        _write_clip(folder, a, pair.truth, f"{seeds}, identity {pair.truth.identity.seed}")
        _write_clip(folder, b, pair.driving, f"{seeds}, identity {pair.driving.identity.seed}")
        names += [a, b]
        manifest += [{"target": a, "driving": b}, {"target": b, "driving": a}]
        log.info("wrote pair %d (%s, %s)", seed, a, b)
    path = folder / MANIFEST
    path.write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return ExportReport(folder, tuple(names), path, frames)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Write synthetic cross-ID clips as a training clip folder.")
    parser.add_argument("out", type=Path)
    parser.add_argument("--split", choices=SPLITS, default="train")
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=64, help="frame height and width")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--vae", help="also write stage1.json / stage2.json training configs using this VAE file")
    args = parser.parse_args(argv)
    report = export_pairs(args.out, args.split, args.pairs, args.frames, args.size, args.size, args.start)
    print(f"wrote {len(report.clips)} clips of {report.frames} frames and {report.manifest}")
    if args.vae:
        from .training import training_configs, write_initial_backbone

        backbone = write_initial_backbone(args.out.parent / "backbone_init.safetensors")
        configs = training_configs(args.out, args.vae, backbone, args.out.parent / "runs", args.frames, args.size)
        for stage, config in enumerate(configs, start=1):
            path = args.out.parent / f"stage{stage}.json"
            path.write_text(json.dumps(json.loads(config.to_json()), indent=1), encoding="utf-8")
            print(f"wrote {path}: python -m directanimator_core train {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
