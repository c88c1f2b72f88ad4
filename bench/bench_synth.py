"""Synthetic-world rendering speed, and a contact sheet to look at.

    python bench/bench_synth.py [--sizes 64 128 256] [--frames 48] [--clips 4]
    python bench/bench_synth.py --sheet test-artifacts/synth/sheet.png [--size 160]

The speed bench renders whole clips (identity + motion + scene + ground truth), one thread, and
prints frames per second per frame size. The sheet has one row per clip: a few frames of each motion
kind on different identities, the person mask and skeleton map of the last one, and a cross-ID pair.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from directanimator_core.synth import (  # noqa: E402
    MOTION_KINDS, cross_id_pair, draw_skeleton, render, sample_identity, sample_motion, sample_scene)


def frames_per_second(size: int, frames: int, clips: int) -> float:
    """Rendered frames per second at ``size`` x ``size``, averaged over ``clips`` clips (all motion kinds)."""
    render(sample_identity(0), sample_motion(0, 2), sample_scene(0), size, size)  # warm-up (imports, caches)
    start = time.perf_counter()
    for seed in range(clips):
        kind = MOTION_KINDS[seed % len(MOTION_KINDS)]
        render(sample_identity(seed), sample_motion(seed, frames, kind), sample_scene(seed), size, size)
    return clips * frames / (time.perf_counter() - start)


def contact_sheet(size: int, columns: int = 6) -> np.ndarray:
    """Rows of frames (RGB uint8): two clips per motion kind, then masks / skeleton, then a cross-ID pair."""
    rows = []
    for seed in range(2 * len(MOTION_KINDS)):
        kind = MOTION_KINDS[seed // 2]
        motion = sample_motion(seed, 8 * columns, kind)
        clip = render(sample_identity(seed), motion, sample_scene(seed), size, size)
        rows.append(np.concatenate(list(clip.frames[:: 8][:columns]), axis=1))
    person = np.repeat(clip.person[::8][:columns, ..., None] * 255, 3, axis=-1).astype(np.uint8)
    rows.append(np.concatenate(list(person), axis=1))
    skeleton = draw_skeleton(clip.joints[::8][:columns], size, size, clip.joint_visible[::8][:columns])
    rows.append(np.concatenate(list(skeleton), axis=1))
    pair = cross_id_pair(11, 4 * 3, size, size)
    cells = [pair.reference] + list(pair.driving.render.frames[::4][:2]) + list(pair.truth.render.frames[::4][:2])
    cells += [draw_skeleton(pair.truth.render.joints[:1], size, size)[0]]
    rows.append(np.concatenate(cells[:columns], axis=1))
    return np.concatenate(rows, axis=0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--sheet", type=Path, help="write a contact sheet PNG here instead of timing")
    parser.add_argument("--size", type=int, default=160, help="frame size of the contact sheet")
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    if args.sheet:
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), contact_sheet(args.size)[..., ::-1])
        print(f"wrote {args.sheet}")
        return 0
    print(f"{'size':>6} {'frames/s':>10}   ({args.clips} clips x {args.frames} frames, 1 thread)")
    for size in args.sizes:
        print(f"{size:>6} {frames_per_second(size, args.frames, args.clips):>10.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
