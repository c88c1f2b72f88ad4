"""The seeded reproduction table: the paper's claims at small scale, each row trained from scratch with
several seeds, every model scored for driven-ness on the same held-out cross-ID pairs against exact
ground truth (default_model/repro.py says what each row is).

    python bench/bench_repro.py --out out/repro [--results DIR] [--rows ROW ...] [--seeds 0 1 2]   # train, score
    python bench/bench_repro.py --results docs/repro --report [--json FILE] [--figure PNG]   # the table

Rows may run as separate processes side by side (each with its own --rows): the worlds are built once
under a lock, each (row, seed) result is saved as it finishes (--results, default OUT/results/; the
committed table's are in docs/repro), and --report gathers every result found. Every number printed
comes from runs this command made.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from directanimator_core.default_model import repro  # noqa: E402
from directanimator_core.default_model.recipe import quick  # noqa: E402

log = logging.getLogger("bench_repro")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (worlds built by one process while the others wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def tasks(rows: Sequence[str], seeds: Sequence[int]) -> list[tuple[str, int]]:
    """(row, seed) in the order they run: seed by seed, so a stopped bench has whole seeds of every row; within
    a seed no_s2x last, since it starts from ours' stage 1."""
    ordered = sorted(rows, key=lambda r: (r == "no_s2x", list(repro.TRAINED).index(r)))
    return [(row, seed) for seed in seeds for row in ordered]


def claim(out: Path, results: Path, row: str, seed: int) -> bool:
    """Take (row, seed) for this process: False when its result exists or a live process holds it. A claim
    left by a dead process (its PID gone) is taken over."""
    saved = repro.result_path(results, row, seed)
    if saved.is_file() and repro.complete(json.loads(saved.read_text())):
        return False
    path = out / "claims" / f"{row}_seed{seed}"
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(out / "claims.lock"):
        if held_by_another(path):
            return False
        path.write_text(str(os.getpid()))
    return True


def held_by_another(claim_file: Path) -> bool:
    """Whether a live process other than this one holds the claim."""
    try:
        pid = int(claim_file.read_text())
        os.kill(pid, 0)
        return pid != os.getpid()
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return False  # no claim, or its process is gone


def wait_for_ours(out: Path, seed: int, poll_s: float = 10.0) -> None:
    """no_s2x starts from ours' stage 1: wait while another process trains it (when nobody does, train_row
    trains it itself, e.g. when ours' result was kept from an earlier run but its run folder was not)."""
    record = out / "runs" / "ours" / f"seed{seed}" / "stage1" / "stage_record.json"
    while not record.is_file() and held_by_another(out / "claims" / f"ours_seed{seed}"):
        time.sleep(poll_s)


def train_and_score(out: Path, results: Path, rows: Sequence[str], seeds: Sequence[int], recipe: repro.Recipe,
                    pairs: int, steps: int) -> None:
    """Every (row, seed) not done and not taken by another process running this bench on the same OUT."""
    with locked(out / "worlds" / "base.lock"):
        repro.build_world(out, "base", recipe)
    scorer = repro.Scorer(repro.vae_for(out), recipe, pairs, steps)
    for row, seed in tasks(rows, seeds):
        if not claim(out, results, row, seed):
            continue
        start = time.time()
        world = repro.TRAINED[row].world
        with locked(out / "worlds" / f"{world}.lock"):
            repro.build_world(out, world, recipe)
        if row == "no_s2x":
            wait_for_ours(out, seed)
        result = repro.run_row(out, row, seed, scorer, recipe, results)
        own = result["scores"]["main"]["mean"]["own"]
        log.info("%s seed %d (%.0f s): figure PSNR %.2f, IoU %.3f", row, seed, time.time() - start,
                 own["fig_psnr"], own["iou"])


def report(results_folder: Path, json_file: Optional[Path], figure: Optional[Path]) -> int:
    results = list(repro.load_results(results_folder))
    if not results:
        print(f"no results in {results_folder}: run the rows first (without --report)")
        return 2
    summary = repro.summary(results)
    print(repro.markdown(summary))
    for note in summary["same_loss"]:
        print(f"stage 2 denoising loss {note['target_denoise_loss']:.4f} (where λ = 0 ends): step "
              f"{note['steps_with_s2x']} with L_S2X, {note['steps_without']} without -> speed-up {note['speed_up']}")
    if summary["occlusion_pairs"]:
        print(f"self-occlusion pairs (held-out indices): {summary['occlusion_pairs']}")
    if json_file:
        json_file.write_text(json.dumps(summary, indent=1))
    if figure and draw(summary, figure):
        print(f"figure: {figure}")
    return 0


def draw(summary: dict, png: Path) -> bool:
    """Figure PSNR and IoU per row, mean ± std over seeds (the baselines as lines); False without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no figure drawn")
        return False
    rows = summary["table"]
    labels = list(rows)[::-1]
    names = [f"{k} ({len(rows[k]['seeds'])} seed{'s' if len(rows[k]['seeds']) > 1 else ''})" for k in labels]
    figure, axes = plt.subplots(1, 2, figsize=(14, 0.45 * len(labels) + 1.5))
    for ax, metric in zip(axes, ("fig_psnr", "iou")):
        means = [rows[k][metric]["mean"] for k in labels]
        errors = [rows[k][metric]["std"] or 0.0 for k in labels]
        ax.barh(names, means, xerr=errors, color="tab:blue", capsize=3)
        for (name, base), style in zip(summary["baselines"].items(), ("--", ":", "-.")):
            if metric in base:
                ax.axvline(base[metric], color="tab:red", linestyle=style, label=name)
        low = min(means) - 2 * max(errors) - (0.5 if metric == "fig_psnr" else 0.05)
        ax.set(xlim=(max(0.0, low), None), title=f"{'figure PSNR dB' if metric == 'fig_psnr' else 'figure IoU'}, "
                                                 "own cues, mean ± std over seeds")
        ax.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=90)
    plt.close(figure)
    return True


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/repro", help="worlds, runs and results")
    parser.add_argument("--results", type=Path, default=None,
                        help="where each (row, seed) result is saved and found (default OUT/results; the committed "
                             "table's are in docs/repro: with --results docs/repro a run adds the rows it lacks)")
    parser.add_argument("--rows", nargs="*", default=list(repro.TRAINED), choices=list(repro.TRAINED))
    parser.add_argument("--seeds", nargs="*", type=int, default=list(repro.SEEDS))
    parser.add_argument("--pairs", type=int, default=repro.PAIRS, help="held-out cross-ID pairs scored")
    parser.add_argument("--steps", type=int, default=repro.STEPS, help="sampling steps")
    parser.add_argument("--quick", action="store_true", help="a tiny recipe: checks the path, measures nothing")
    parser.add_argument("--report", action="store_true", help="print the table of the results found")
    parser.add_argument("--json", type=Path, default=None, help="with --report: write the summary here")
    parser.add_argument("--figure", type=Path, default=None, help="with --report: a PNG of the table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    out = Path(args.out)
    results = args.results or out / "results"
    if args.report:
        return report(results, args.json, args.figure)
    recipe = quick(repro.TABLE_RECIPE) if args.quick else repro.TABLE_RECIPE
    torch.set_num_threads(recipe.threads)
    train_and_score(out, results, args.rows, args.seeds, recipe, args.pairs, args.steps)
    return report(results, None, None)


if __name__ == "__main__":
    sys.exit(main())
