"""Loss curves from the trainer's ``loss.csv`` files as a PNG: stage 1 on the left, stage 2 on the right,
one stage-2 curve per Same2X weight λ (λ = 0 is training without L_S2X), so the paper's comparison
(the same stage-2 loss reached faster with L_S2X) can be read off.

matplotlib is not a dependency of the pack: it is imported here, lazily, and without it the PNG is
skipped with a logged note.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Optional, Sequence

log = logging.getLogger(__name__)


def read_loss_log(path: str | Path) -> list[dict]:
    """Rows of a loss.csv with numbers parsed (empty same2x -> None)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{"stage": int(r["stage"]), "step": int(r["step"]), "weight": float(r["weight"]),
                 "loss": float(r["loss"]), "denoise": float(r["denoise"]),
                 "same2x": float(r["same2x"]) if r["same2x"] else None} for r in csv.DictReader(handle)]


def series(paths: Sequence[str | Path]) -> dict[tuple[int, str], tuple[list[int], list[float]]]:
    """(stage, label) -> (steps, denoising losses), one per run file."""
    out = {}
    for path in paths:
        rows = read_loss_log(path)
        if not rows:
            continue
        stage, weight = rows[0]["stage"], rows[0]["weight"]
        label = f"{Path(path).parent.name}: stage 1" if stage == 1 else \
            f"{Path(path).parent.name}: stage 2, " + (f"with L_S2X (λ={weight:g})" if weight > 0 else "without L_S2X")
        out[(stage, label)] = ([r["step"] for r in rows], [r["denoise"] for r in rows])
    return out


def smooth(values: list[float], factor: float = 0.9) -> list[float]:
    """Exponential moving average, bias-corrected (TensorBoard-style) so the first points are not pulled to 0."""
    out, average = [], 0.0
    for i, value in enumerate(values, 1):
        average = factor * average + (1 - factor) * value
        out.append(average / (1 - factor ** i))
    return out


def plot_losses(paths: Sequence[str | Path], png: str | Path) -> Optional[Path]:
    """Draw the denoising-loss curves of the given loss.csv files into ``png``; None without matplotlib.

    Args:
        paths: loss.csv files (one per run: a stage-1 run, stage-2 runs with and without L_S2X).
        png: the image to write.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: loss curves stay in %s, no PNG drawn", ", ".join(map(str, paths)))
        return None
    curves = series(paths)
    stages = sorted({stage for stage, _ in curves}) or [1]
    figure, axes = plt.subplots(1, len(stages), figsize=(6 * len(stages), 4), squeeze=False)
    for ax, stage in zip(axes[0], stages):
        for (s, label), (steps, values) in curves.items():
            if s == stage:
                ax.plot(steps, values, alpha=0.25)
                ax.plot(steps, smooth(values), label=label, color=ax.lines[-1].get_color())
        ax.set(title=f"stage {stage} ({'same-ID' if stage == 1 else 'cross-ID'})", xlabel="step",
               ylabel="denoising loss", yscale="log")
        ax.legend(fontsize=8)
    figure.tight_layout()
    png = Path(png)
    figure.savefig(png, dpi=100)
    plt.close(figure)
    return png
