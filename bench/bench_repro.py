"""The reproduction table: the paper's claims at small scale, on a fixed held-out cross-ID set, PSNR and
SSIM against the exact ground truth (synthetic world, default_model/).

    python bench/bench_repro.py --run out/default_model [--pairs 8] [--steps 20] [--rows s2x pose face location lowpass]
                                [--figure PNG]

Rows may run as separate processes side by side (one --rows each): they merge into one table.json.

Rows (each a short training run beside the default run, in RUN/repro/<row>/, reusing its VAE):
    default    the default model itself (stage 2 with L_S2X), and the copy / warp baselines
    s2x        stage 2 again from the same stage 1 with λ = 0 (no L_S2X); also prints, from the two
               stage-2 loss logs, how many steps each needs to reach the denoising loss the λ = 0 run
               ends at (the paper's "same loss 6.7x faster")
    pose       pose cue = skeleton map from the exact joints instead of the low-passed pixels
    face / location / lowpass   without the face cue / without the location masks / without the low-pass
The pose and cue rows retrain both stages on re-cut cues (same clips, seeds and steps as the default).
Every number printed comes from runs this command makes (or finds finished in RUN/repro/).
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import logging
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from directanimator_core.default_model.evaluate import heldout_pair, mean_scores, run_pair  # noqa: E402
from directanimator_core.default_model.recipe import Recipe  # noqa: E402
from directanimator_core.default_model.same2x_run import run_same2x, train_config  # noqa: E402
from directanimator_core.models.checkpoints.adapter import load_model  # noqa: E402
from directanimator_core.models.checkpoints.vae import load_wan_vae  # noqa: E402
from directanimator_core.train.loop import train  # noqa: E402

log = logging.getLogger("bench_repro")

CUE_ROWS = {"pose": {"pose_cue": "skeleton"}, "face": {"face_cue": False}, "location": {"location_cue": False},
            "lowpass": {"lowpass": False}}


def recipe_of(run: Path) -> Recipe:
    return Recipe(**json.loads((run / "recipe.json").read_text()))


def train_no_s2x(run: Path, recipe: Recipe) -> Path:
    """Stage 2 with λ = 0 from the default run's stage 1 and cache, into RUN/repro/s2x/stage2."""
    out = run / "repro" / "s2x" / "stage2"
    config = train_config(replace(recipe, same2x_weight=0.0), run, 2)
    config = replace(config, run=replace(config.run, out=str(out)))
    from directanimator_core.default_model.world import cue_config

    train(config, prepare_data=False, cue_config=cue_config(recipe))
    return out


def train_cue_row(run: Path, recipe: Recipe, row: str) -> Path:
    """Both stages on cues re-cut as ``row`` ablates them, in RUN/repro/<row>/ (the default run's VAE)."""
    variant = replace(recipe, **CUE_ROWS[row])
    out = run / "repro" / row
    out.mkdir(parents=True, exist_ok=True)
    for name in ("vae.safetensors", "vae_record.json"):
        if not (out / name).is_file():
            shutil.copyfile(run / name, out / name)
    (out / "recipe.json").write_text(variant.to_json())
    torch.set_num_threads(variant.threads)
    run_same2x(variant, out, ("world", "stage1", "stage2"))
    return out / "stage2"


def steps_to_reach(loss_csv: Path, target: float, column: str = "denoise", window: int = 5) -> Optional[int]:
    """First logged step whose running mean (over ``window`` log rows) of ``column`` is <= target."""
    with open(loss_csv, newline="", encoding="utf-8") as handle:
        rows = [(int(r["step"]), float(r[column])) for r in csv.DictReader(handle)]
    values = np.array([v for _, v in rows])
    for i in range(len(rows)):
        if values[max(0, i - window + 1):i + 1].mean() <= target:
            return rows[i][0]
    return None


ROW_LABELS = {"s2x": "stage 2 without L_S2X", "pose": "pose cue = skeleton map", "face": "without face cue",
              "location": "without location cue", "lowpass": "without low-pass"}
ROW_ORDER = ["ours (stage 2, L_S2X)", "copy the reference", "warp the reference", *ROW_LABELS.values()]


def no_s2x_row(run: Path, recipe: Recipe, vae_file: Path, args: argparse.Namespace, table: dict) -> dict:
    """Train and score stage 2 with λ = 0 (into ``table``); returns the steps-to-same-loss note."""
    model = train_no_s2x(run, recipe)
    table[ROW_LABELS["s2x"]] = evaluate(model / "model.safetensors", vae_file, recipe, args.pairs, args.steps)["ours"]
    with open(model / "loss.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    target = float(np.mean([float(r["denoise"]) for r in rows[-5:]]))
    with_s2x = steps_to_reach(run / "stage2" / "loss.csv", target)
    without = steps_to_reach(model / "loss.csv", target)
    return {"target_denoise_loss": target, "steps_with_s2x": with_s2x, "steps_without": without,
            "speed_up": (without / with_s2x) if with_s2x and without else None}


def evaluate(model_file: Path, vae_file: Path, recipe: Recipe, pairs: int, steps: int) -> dict:
    """Mean scores over the held-out pairs for one model (and the baselines)."""
    model = load_model(model_file, compute_dtype=torch.float32).eval()
    vae = load_wan_vae(vae_file)[0]
    sampler = recipe.sampler(steps, seed=0)
    return mean_scores([run_pair(model, vae, recipe, heldout_pair(recipe, i), sampler).scores for i in range(pairs)])


def print_table(table: dict[str, dict]) -> None:
    print(f"\n{'row':<34} {'PSNR dB':>8} {'SSIM':>7}")
    for name, s in table.items():
        print(f"{name:<34} {s['psnr']:>8.2f} {s['ssim']:>7.4f}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", default="out/default_model", help="the default-model run folder")
    parser.add_argument("--pairs", type=int, default=8, help="held-out cross-ID pairs scored")
    parser.add_argument("--steps", type=int, default=20, help="sampling steps")
    parser.add_argument("--rows", nargs="*", default=["s2x", "pose", "face", "location", "lowpass"],
                        choices=["s2x", *CUE_ROWS], help="extra rows to train and score")
    parser.add_argument("--figure", default=None, help="PNG of the table and stage-2 losses (default RUN/repro/table.png)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    run = Path(args.run)
    recipe = recipe_of(run)
    torch.set_num_threads(recipe.threads)
    vae_file = run / "vae.safetensors"
    table, notes = {}, {}
    for row in args.rows:  # first: the cue rows need only the default run's VAE, so they can start early
        start = time.time()
        if row == "s2x":
            notes["s2x"] = no_s2x_row(run, recipe, vae_file, args, table)
        else:
            model = train_cue_row(run, recipe, row)
            variant = replace(recipe, **CUE_ROWS[row])
            table[ROW_LABELS[row]] = evaluate(model / "model.safetensors", vae_file, variant, args.pairs,
                                              args.steps)["ours"]
        log.info("row %s took %.0f s: %s", row, time.time() - start, list(table.items())[-1])
        save(run, args, table, notes)  # after every row, so an interrupted bench keeps what it measured
    default = evaluate(run / "stage2" / "model.safetensors", vae_file, recipe, args.pairs, args.steps)
    table |= {"ours (stage 2, L_S2X)": default["ours"], "copy the reference": default["copy"],
              "warp the reference": default["warp"]}
    merged = save(run, args, table, notes)
    table, notes = merged["table"], merged["notes"]
    print_table(table)
    if "s2x" in notes:
        n = notes["s2x"]
        print(f"\nstage 2, denoising loss {n['target_denoise_loss']:.4f} (where λ = 0 ends): reached at step "
              f"{n['steps_with_s2x']} with L_S2X, {n['steps_without']} without -> speed-up {n['speed_up']}")
    figure = draw_figure(run, Path(args.figure) if args.figure else run / "repro" / "table.png")
    if figure is not None:
        print(f"figure: {figure}")
    return 0


def draw_figure(run: Path, png: Path) -> Optional[Path]:
    """RUN/repro/table.json and the stage-2 loss logs as one PNG: PSNR and SSIM per row (the baselines as
    lines), and stage 2's denoising loss with and without L_S2X. None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no figure drawn (the table is in %s)", run / "repro" / "table.json")
        return None
    from directanimator_core.train.plot import series, smooth

    saved = json.loads((run / "repro" / "table.json").read_text())
    rows = {k: v for k, v in saved["table"].items() if not k.endswith("the reference")}
    baselines = {k: v for k, v in saved["table"].items() if k.endswith("the reference")}
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    for ax, metric in zip(axes[:2], ("psnr", "ssim")):
        ax.barh(list(rows)[::-1], [r[metric] for r in rows.values()][::-1], color="tab:blue")
        for (name, score), style in zip(baselines.items(), ("--", ":")):
            ax.axvline(score[metric], color="tab:red", linestyle=style, label=name)
        values = [r[metric] for r in saved["table"].values()]
        span = max(values) - min(values)
        ax.set(xlim=(min(values) - span, max(values) + 0.3 * span),
               title=f"{metric.upper()} on {saved['pairs']} held-out cross-ID pairs")
        ax.legend(fontsize=8, loc="lower right")
    logs = [p for p in (run / "stage2" / "loss.csv", run / "repro" / "s2x" / "stage2" / "loss.csv") if p.is_file()]
    for (_stage, label), (steps, values) in series(logs).items():
        axes[2].plot(steps, smooth(values), label=label.split(": ", 1)[1])
    axes[2].set(title="stage 2 denoising loss (smoothed)", xlabel="step", yscale="log")
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(png, dpi=90)
    plt.close(figure)
    return png


def save(run: Path, args: argparse.Namespace, table: dict, notes: dict) -> dict:
    """Merge this invocation's rows into RUN/repro/table.json (under a lock, written atomically), so rows
    run as separate processes side by side (one --rows each) build one table. Returns the merged table."""
    path = run / "repro" / "table.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        old = json.loads(path.read_text()) if path.is_file() else {}
        same = old.get("pairs") == args.pairs and old.get("steps") == args.steps
        merged = {"pairs": args.pairs, "steps": args.steps,
                  "table": (old.get("table", {}) if same else {}) | table,
                  "notes": (old.get("notes", {}) if same else {}) | notes}
        merged["table"] = dict(sorted(merged["table"].items(), key=lambda item: ROW_ORDER.index(item[0])))
        partial = path.with_suffix(".json.partial")
        partial.write_text(json.dumps(merged, indent=1))
        partial.replace(path)
    return merged


if __name__ == "__main__":
    sys.exit(main())
