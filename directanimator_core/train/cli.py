"""``python -m directanimator_core train CONFIG``: prepare the cache, train (resuming when the run folder
has checkpoints), export; under ``torchrun`` the same command runs on every process.

    python -m directanimator_core train stage1.json
    torchrun --nproc_per_node 4 -m directanimator_core train stage2.json
    python -m directanimator_core train --plot runs/stage1 runs/stage2 runs/stage2_no_s2x --png curves.png
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from ..errors import InputError

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="training config, .json (or .toml on Python 3.11+)")
    parser.add_argument("--prepare-only", action="store_true",
                        help="build the clip cache, verify every entry's checksum (rebuilding damaged ones) and stop")
    parser.add_argument("--verify-cache", action="store_true",
                        help="kept for old scripts: the preparation step always verifies every entry now")
    parser.add_argument("--no-prepare", action="store_true", help="skip the preparation step (the cache must be complete)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="N",
                        help="stop after N optimizer steps; run again to resume")
    parser.add_argument("--plot", nargs="+", metavar="RUN", help="draw the loss curves of these run folders and stop")
    parser.add_argument("--png", default="loss_curves.png", help="image written by --plot")


def run(args: argparse.Namespace) -> int:
    if args.plot:
        from .plot import plot_losses

        paths = [Path(p) / "loss.csv" if Path(p).is_dir() else Path(p) for p in args.plot]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"no loss log at {missing}: give run folders written by the trainer")
        written = plot_losses(paths, args.png)
        print(f"wrote {written}" if written else "matplotlib is not installed: no PNG written")
        return 0
    if args.config is None:
        raise InputError("train needs a CONFIG file (or --plot RUN...): see directanimator_core/train/config.py")
    from .config import load_config

    config = load_config(args.config)
    if args.prepare_only:
        from .distributed import setup, teardown
        from .loop import prepare

        processes = setup(config.run.device)
        try:
            names = prepare(config, processes, verify=True)
        finally:
            teardown(processes)
        print(f"cache ready: {len(names)} clips in {config.data.cache}, every entry verified")
        return 0
    from .loop import train

    result = train(config, stop_after=args.stop_after, prepare_data=not args.no_prepare)
    done = "done" if result.step == config.run.steps else "stopped"
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{done} at step {result.step} of {config.run.steps}: {result.out}"
              + "".join(f"\n  {p}" for p in result.exported))
    return 0
