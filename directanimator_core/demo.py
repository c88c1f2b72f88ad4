"""``python -m directanimator_core demo``: the main job on the bundled defaults.

Until the synthetic world and the trained default model exist (issue 8), the demo runs every part
of the pipeline that exists, end to end, on real footage, and says what is still missing:

1. the driving cue triplet (pose, face and location cues, aligned to the reference), written as
   videos with a side-by-side preview and a JSON report;
2. what remains: the generative model has no trained weights to run with yet.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .cues import cli as extract_cli

log = logging.getLogger(__name__)

MISSING = (
    "no trained DirectAnimator weights are bundled yet: the synthetic world and the default model "
    "that make the demo animate (issue 8) are still to come"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--driving", required=True, help="driving video (scripts/demo.sh fetches real footage)")
    parser.add_argument("--reference", required=True, help="reference image of a person")
    parser.add_argument("--out", default="out/demo", help="output folder")
    parser.add_argument("--frames", type=int, default=48, help="driving frames to use")


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    cues_dir = out / "cues"
    extract_args = _extract_parser().parse_args(
        ["--driving", args.driving, "--reference", args.reference, "--out", str(cues_dir),
         "--max-frames", str(args.frames)]
    )
    extract_cli.run(extract_args)
    report = json.loads((cues_dir / "report.json").read_text())
    summary = {
        "cues": {key: report[key] for key in ("frames", "frames_with_person", "frames_with_face")},
        "outputs": sorted(str(path.relative_to(out)) for path in cues_dir.glob("*.mp4")),
        "missing": MISSING,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=1))
    print(f"cue triplet: {summary['cues']['frames']} frames, {summary['cues']['frames_with_person']} with "
          f"the driver, {summary['cues']['frames_with_face']} with a face -> {cues_dir}/preview.mp4")
    print(f"still missing: {MISSING}.")
    return 0


def _extract_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    extract_cli.add_arguments(parser)
    return parser
