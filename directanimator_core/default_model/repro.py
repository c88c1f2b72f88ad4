"""The seeded reproduction table (issue 12): the paper's claims as rows, each trained from scratch with
several seeds on one short recipe, every model scored for driven-ness on the same held-out pairs.

A row is a trained variant (its recipe change and the world it trains on) or a scoring of one on other
cues or pairs:

    ours            stage 1 + stage 2 with L_S2X, the bundled recipe's cues
    no_s2x          stage 2 again from ours' stage 1 with λ = 0 (and the steps each needs to the same loss)
    skeleton        the pose cue is a skeleton map of the exact joints (occluded joints left out, as a
                    pose estimator leaves them), not the low-passed pixels
    no_face / no_location / no_lowpass   without the face cue / the location masks / the low-pass
    segmenter       ours and no_lowpass scored on cues cut with the built-in segmenter and face detector
                    (noisy masks) instead of the exact ones: what the low-pass is claimed to hide
    occlusion       ours and skeleton scored on held-out pairs whose motion puts a wrist over the torso
                    (an arm in front of or behind the body: a skeleton map loses that depth order)

Every trained model is scored with its own driver's cues and with blank cues on PAIRS held-out cross-ID
pairs (drivenness.py: whole frame, figure region, figure IoU); the table gives mean ± standard deviation
over the seeds. Rows of one seed share that seed's random start, data order and sampling noise.
"""

from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import torch

from ..models.checkpoints.adapter import load_model
from ..models.checkpoints.vae import load_wan_vae
from ..models.vae import WanVAE
from ..pipeline.single_pass import animate_encoded, encode_cues, image_condition
from ..synth import CrossPair
from ..synth.kinematics import JOINT_NAMES
from ..synth.render import Render
from . import VAE_FILE
from .cache import ENCODED
from .drivenness import CEILING, FigureTruth, blank_triplet, through_vae
from .baselines import copy_reference, warp_reference
from .evaluate import heldout_pair, reference_tensor, to_uint8
from .recipe import DEFAULT, Recipe
from .same2x_run import stage_train, stage_world, write_base
from .world import exact_triplet, segmented_triplet

log = logging.getLogger(__name__)

# The bundled recipe, shortened so 3 seeds of every row take about one session of a 2-core CPU (measured: about
# 14 minutes of training and 5-15 of scoring a run, two runs side by side): a third of the clips and pairs, a
# fifth of the stage-1 and a third of the stage-2 steps.
TABLE_RECIPE = replace(DEFAULT, same_id_clips=128, cross_id_pairs=48, stage1_steps=2000, stage2_steps=500)
SEEDS = (0, 1, 2)
PAIRS = 8
STEPS = 4  # Euler steps: the bundled model scores better with 4 than with 20 (docs/driven.md), at a fifth the time
OCCLUSION_MIN_FRAMES = 4  # frames with a wrist over the torso, in the driver's clip and in the truth
OCCLUSION_SEARCH = 200  # held-out pair indices searched for the occlusion subset


@dataclass(frozen=True)
class Row:
    """A trained row: its recipe change, the world it trains on, and what its world re-encodes."""

    name: str
    label: str
    change: dict = field(default_factory=dict)  # Recipe fields
    world: str = "base"
    encode: frozenset = ENCODED  # the tensors its world encodes anew over the base world (cache.EntryWriter)


TRAINED = {row.name: row for row in (
    Row("ours", "ours (stage 2, L_S2X)"),
    Row("no_s2x", "stage 2 without L_S2X", {"same2x_weight": 0.0}),
    Row("skeleton", "pose cue = skeleton map", {"pose_cue": "skeleton"}, "skeleton", frozenset({"pose"})),
    Row("no_face", "without face cue", {"face_cue": False}, "no_face", frozenset({"face"})),
    Row("no_location", "without location cue", {"location_cue": False}, "no_location", frozenset()),
    Row("no_lowpass", "without low-pass", {"lowpass": False}, "no_lowpass", frozenset({"pose"})),
)}
# (trained row, evaluation set) pairs scored; sets: "main" (own + blank), "segmenter" and "occlusion" (own)
SCORED = {"ours": ("main", "segmenter", "occlusion"), "no_s2x": ("main",), "skeleton": ("main", "occlusion"),
          "no_face": ("main",), "no_location": ("main",), "no_lowpass": ("main", "segmenter")}
TABLE_ROWS = (  # (label, trained row, evaluation set) in print order
    ("ours (stage 2, L_S2X)", "ours", "main"),
    ("stage 2 without L_S2X", "no_s2x", "main"),
    ("pose cue = skeleton map", "skeleton", "main"),
    ("without face cue", "no_face", "main"),
    ("without location cue", "no_location", "main"),
    ("without low-pass", "no_lowpass", "main"),
    ("ours, built-in segmenter cues", "ours", "segmenter"),
    ("without low-pass, built-in segmenter cues", "no_lowpass", "segmenter"),
    ("ours, self-occlusion pairs", "ours", "occlusion"),
    ("skeleton map, self-occlusion pairs", "skeleton", "occlusion"),
)


def row_recipe(row: str, seed: int, base: Recipe = TABLE_RECIPE) -> Recipe:
    return replace(base, seed=seed, **TRAINED[row].change)


# -- which held-out pairs ------------------------------------------------------------------------------------

def _inside(point: np.ndarray, polygon: np.ndarray) -> bool:
    """Whether a 2D point lies inside (or on) a convex polygon given in order, (N, 2)."""
    edges = np.roll(polygon, -1, axis=0) - polygon
    to_point = point[None] - polygon
    cross = edges[:, 0] * to_point[:, 1] - edges[:, 1] * to_point[:, 0]
    return bool((cross >= 0).all() or (cross <= 0).all())


def wrist_over_torso(render: Render) -> np.ndarray:
    """(F,) bool: frames where a wrist's pixel lies inside the torso quadrilateral (shoulders and hips), an
    arm crossing in front of the body (the wrist visible) or behind it (hidden)."""
    index = {name: i for i, name in enumerate(JOINT_NAMES)}
    torso = [index[n] for n in ("r_shoulder", "l_shoulder", "l_hip", "r_hip")]
    wrists = [index["r_wrist"], index["l_wrist"]]
    return np.array([any(_inside(frame[w], frame[torso]) for w in wrists) for frame in render.joints])


def occlusion_indices(recipe: Recipe, count: int = PAIRS, min_frames: int = OCCLUSION_MIN_FRAMES,
                      search: int = OCCLUSION_SEARCH) -> list[int]:
    """The first ``count`` held-out pair indices whose driver and truth both have a wrist over the torso in at
    least ``min_frames`` frames (the rule picks them; the main set's pairs may be among them)."""
    found = []
    for index in range(search):
        pair = heldout_pair(recipe, index)
        if min(wrist_over_torso(pair.driving.render).sum(), wrist_over_torso(pair.truth.render).sum()) >= min_frames:
            found.append(index)
            if len(found) == count:
                return found
    raise ValueError(f"only {len(found)} of the first {search} held-out pairs have a wrist over the torso in "
                     f"{min_frames} frames: search further or ask for fewer")


# -- scoring many models on the same pairs -------------------------------------------------------------------

class Scorer:
    """Scores models on held-out pairs, encoding each pair's reference, cues and truth once for all models."""

    def __init__(self, vae: WanVAE, recipe: Recipe, pairs: int = PAIRS, steps: int = STEPS) -> None:
        self.vae, self.recipe, self.steps, self.pairs = vae, recipe, steps, pairs
        self._pairs: dict[int, CrossPair] = {}
        self._memo: dict[tuple, object] = {}

    def indices(self, evaluation: str) -> list[int]:
        """The held-out pair indices of an evaluation set ("main", "segmenter", "occlusion")."""
        if evaluation == "occlusion":
            return self._once(("occlusion",), lambda: occlusion_indices(self.recipe, self.pairs))
        return list(range(self.pairs))

    def pair(self, index: int) -> CrossPair:
        if index not in self._pairs:
            self._pairs[index] = heldout_pair(self.recipe, index)
        return self._pairs[index]

    def _once(self, key: tuple, make: Callable[[], object]):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def inputs(self, index: int, cues: Recipe, source: str, variant: str):
        """(image condition, cue latents) of pair ``index`` for ``cues``' cue settings, cut from the exact
        masks or by the built-in segmenter (``source``), for ``variant`` "own" or "blank"."""
        pair = self.pair(index)
        cue_key = (cues.pose_cue, cues.face_cue, cues.location_cue, cues.lowpass)
        cut = exact_triplet if source == "exact" else segmented_triplet
        triplet = self._once(("triplet", index, source, cue_key),
                             lambda: cut(pair.driving.render, cues, pair.reference_render))
        if variant == "blank":
            triplet = blank_triplet(triplet)
        size = triplet.pose.shape[1:3]
        encoded = self._once(("cues", index, source, cue_key, variant), lambda: encode_cues(self.vae, triplet, size))
        image = self._once(("image", index),
                           lambda: image_condition(self.vae, reference_tensor(pair.reference), triplet.num_frames))
        return image, encoded, triplet

    def truth(self, index: int) -> FigureTruth:
        return self._once(("truth", index), lambda: FigureTruth.of(self.pair(index)))

    def baselines(self, index: int) -> dict[str, dict[str, float]]:
        """Scores of copy, warp and the truth through the VAE on pair ``index`` (model-independent)."""
        def make() -> dict:
            pair, truth = self.pair(index), self.truth(index)
            _image, _cues, triplet = self.inputs(index, self.recipe, "exact", "own")
            from ..cues import align

            masks = align.warp(pair.driving.render.person.astype(np.uint8) * 255, triplet.alignment, nearest=True)
            videos = {"copy": copy_reference(pair.reference, len(truth.frames)),
                      "warp": warp_reference(pair.reference, masks), CEILING: through_vae(self.vae, truth.frames)}
            return {name: truth.score(video) for name, video in videos.items()}
        return self._once(("baselines", index), make)

    def score(self, model: torch.nn.Module, cues: Recipe, evaluation: str, seed: int) -> dict:
        """Mean scores of ``model`` over an evaluation set (own, and blank on "main"), per pair too."""
        source = "segmenter" if evaluation == "segmenter" else "exact"
        variants = ("own", "blank") if evaluation == "main" else ("own",)
        sampler = cues.sampler(self.steps, seed=seed)
        rows = []
        for index in self.indices(evaluation):
            row = {}
            for variant in variants:
                image, encoded, triplet = self.inputs(index, cues, source, variant)
                frames = animate_encoded(image, encoded, triplet.num_frames, model, self.vae, sampler).frames
                row[variant] = self.truth(index).score(to_uint8(frames))
            if evaluation == "main":
                row |= self.baselines(index)
            rows.append(row)
        mean = {m: {k: float(np.nanmean([r[m][k] for r in rows])) for k in rows[0][m]} for m in rows[0]}
        return {"pairs": self.indices(evaluation), "per_pair": rows, "mean": mean}


# -- training -----------------------------------------------------------------------------------------------

def build_world(out: Path, name: str, recipe: Recipe = TABLE_RECIPE) -> Path:
    """The world ``name`` (a row's cues) in OUT/worlds/NAME, made once: the base world from scratch, a
    variant from the base world's entries, re-encoding only what its cues change."""
    folder = out / "worlds" / name
    if (folder / "world.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "vae.safetensors").is_file():
        shutil.copyfile(VAE_FILE, folder / "vae.safetensors")
    if name == "base":
        stage_world(recipe, folder, base=False)
        return folder
    row = next(r for r in TRAINED.values() if r.world == name)
    base = build_world(out, "base", recipe)
    stage_world(replace(recipe, **row.change), folder, reuse=base, encode=row.encode, base=False)
    return folder


def train_row(out: Path, row: str, seed: int, recipe: Recipe = TABLE_RECIPE) -> Path:
    """Train (or find trained) ``row`` with ``seed``: OUT/runs/ROW/seedS/stage2/model.safetensors."""
    variant = row_recipe(row, seed, recipe)
    world = build_world(out, TRAINED[row].world, recipe)
    run = out / "runs" / row / f"seed{seed}"
    run.mkdir(parents=True, exist_ok=True)
    if row == "no_s2x":  # stage 2 only, from ours' stage 1 of the same seed
        ours = out / "runs" / "ours" / f"seed{seed}" / "stage1"
        if not (ours / "stage_record.json").is_file():
            ours = train_row(out, "ours", seed, recipe).parent.parent / "stage1"
        stage1 = run / "stage1"
        stage1.mkdir(exist_ok=True)
        if not (stage1 / "model.safetensors").is_file():
            shutil.copyfile(ours / "model.safetensors", stage1 / "model.safetensors")
    else:
        if not (run / "base.safetensors").is_file():
            write_base(variant, run / "base.safetensors")
        stage_train(variant, run, 1, world)
    stage_train(variant, run, 2, world)
    return run / "stage2" / "model.safetensors"


def steps_to_reach(loss_csv: Path, target: float, column: str = "denoise", window: int = 5) -> Optional[int]:
    """First logged step whose running mean (over ``window`` log rows) of ``column`` is <= target."""
    with open(loss_csv, newline="", encoding="utf-8") as handle:
        rows = [(int(r["step"]), float(r[column])) for r in csv.DictReader(handle)]
    values = np.array([v for _, v in rows])
    for i in range(len(rows)):
        if values[max(0, i - window + 1):i + 1].mean() <= target:
            return rows[i][0]
    return None


def same_loss_steps(out: Path, seed: int) -> dict:
    """The paper's "same loss in fewer steps": the steps stage 2 needs, with and without L_S2X, to reach the
    denoising loss the λ = 0 run ends at (mean of its last 5 log rows)."""
    with_s2x = out / "runs" / "ours" / f"seed{seed}" / "stage2" / "loss.csv"
    without = out / "runs" / "no_s2x" / f"seed{seed}" / "stage2" / "loss.csv"
    with open(without, newline="", encoding="utf-8") as handle:
        target = float(np.mean([float(r["denoise"]) for r in list(csv.DictReader(handle))[-5:]]))
    steps = steps_to_reach(with_s2x, target), steps_to_reach(without, target)
    return {"target_denoise_loss": target, "steps_with_s2x": steps[0], "steps_without": steps[1],
            "speed_up": steps[1] / steps[0] if all(steps) else None}


def result_path(results: Path, row: str, seed: int) -> Path:
    return results / f"{row}_seed{seed}.json"


def run_row(out: Path, row: str, seed: int, scorer: Scorer, recipe: Recipe = TABLE_RECIPE,
            results: Optional[Path] = None) -> dict:
    """Train and score one (row, seed), unless its result is already saved in ``results`` (OUT/results);
    a saved result that lacks one of the row's evaluation sets (SCORED) gets it added. Returns the result."""
    path = result_path(results or out / "results", row, seed)
    saved = json.loads(path.read_text()) if path.is_file() else None
    if saved is not None and complete(saved):
        return saved
    start = time.time()
    model_file = train_row(out, row, seed, recipe)
    trained = time.time()
    model = load_model(model_file, compute_dtype=torch.float32).eval()
    variant = row_recipe(row, seed, recipe)
    if saved is not None:
        missing = [e for e in SCORED[row] if e not in saved["scores"]]
        saved["scores"].update({e: scorer.score(model, variant, e, seed) for e in missing})
        saved["scores"] = {e: saved["scores"][e] for e in SCORED[row]}
        saved.setdefault("rescored", []).extend(missing)
        result = saved
    else:
        result = {"row": row, "seed": seed, "recipe": json.loads(variant.to_json()),
                  "scores": {evaluation: scorer.score(model, variant, evaluation, seed) for evaluation in SCORED[row]},
                  "train_s": round(trained - start, 1), "score_s": round(time.time() - trained, 1)}
    if row == "no_s2x" and "same_loss" not in result:
        result["same_loss"] = same_loss_steps(out, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".json.partial")
    partial.write_text(json.dumps(result, indent=1))
    partial.replace(path)
    return result


def complete(result: dict) -> bool:
    """Whether a saved result holds every evaluation set its row is scored on."""
    return all(e in result["scores"] for e in SCORED[result["row"]])


def load_results(folder: Path) -> Iterator[dict]:
    for path in sorted(folder.glob("*_seed*.json")):
        yield json.loads(path.read_text())


def vae_for(out: Path) -> WanVAE:
    return load_wan_vae(build_world(out, "base") / "vae.safetensors")[0]


# -- the table -----------------------------------------------------------------------------------------------

COLUMNS = ("fig_psnr", "own_minus_blank", "iou", "psnr", "ssim", "minus_ours")


def row_values(results: dict[tuple[str, int], dict], row: str, evaluation: str, seed: int) -> Optional[dict]:
    """The table's numbers for one (trained row, evaluation set, seed), None when not run: own cues' figure
    PSNR, IoU, whole-frame PSNR / SSIM; own minus blank in the figure (blank from the same model's "main"
    set, since blank cues are the same whatever cut the own ones); figure PSNR minus ours' on the same set
    and seed (paired: same start, data order and noise)."""
    result = results.get((row, seed))
    if result is None or evaluation not in result["scores"]:
        return None
    own = result["scores"][evaluation]["mean"]["own"]
    main = result["scores"]["main"]["mean"]
    values = {"fig_psnr": own["fig_psnr"], "iou": own["iou"], "psnr": own["psnr"], "ssim": own["ssim"],
              "own_minus_blank": own["fig_psnr"] - main["blank"]["fig_psnr"] if evaluation != "occlusion" else None}
    ours = results.get(("ours", seed))
    values["minus_ours"] = (own["fig_psnr"] - ours["scores"][evaluation]["mean"]["own"]["fig_psnr"]
                            if ours and evaluation in ours["scores"] and row != "ours" else None)
    return values


def summary(results: list[dict]) -> dict:
    """Mean, standard deviation (ddof 1) and count over seeds of every column of every table row, the
    baselines (identical across seeds) and the steps-to-same-loss of L_S2X."""
    by_key = {(r["row"], r["seed"]): r for r in results}
    seeds = sorted({r["seed"] for r in results})
    table = {}
    for label, row, evaluation in TABLE_ROWS:
        per_seed = {s: v for s in seeds if (v := row_values(by_key, row, evaluation, s)) is not None}
        if not per_seed:
            continue
        table[label] = {"seeds": sorted(per_seed), **{c: spread([v[c] for v in per_seed.values() if v[c] is not None])
                                                      for c in COLUMNS}}
    ours = [r for r in results if r["row"] == "ours"]
    baselines = {}
    if ours:
        mean = ours[0]["scores"]["main"]["mean"]
        baselines = {m: {k: mean[m][k] for k in ("fig_psnr", "iou", "psnr", "ssim")} for m in ("copy", "warp", CEILING)}
        baselines["blank (ours)"] = spread([r["scores"]["main"]["mean"]["blank"]["fig_psnr"] for r in ours])
    same_loss = [r["same_loss"] for r in results if "same_loss" in r]
    return {"table": table, "baselines": baselines, "same_loss": same_loss,
            "occlusion_pairs": next((r["scores"]["occlusion"]["pairs"] for r in ours if "occlusion" in r["scores"]), None)}


def spread(values: list[float]) -> Optional[dict]:
    """{"mean", "std", "n"} of ``values`` (std None for one value), None for none."""
    if not values:
        return None
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            "n": len(values)}


def format_cell(cell: Optional[dict], digits: int = 2) -> str:
    if cell is None:
        return "-"
    text = f"{cell['mean']:+.{digits}f}" if cell["mean"] < 0 else f"{cell['mean']:.{digits}f}"
    return text + (f" ± {cell['std']:.{digits}f}" if cell["std"] is not None else " (1 seed)")


def markdown(summary_: dict) -> str:
    """The table as markdown: one line a row, mean ± std over seeds."""
    head = ("| row | seeds | figure PSNR (own cues) | own - blank | figure IoU | whole PSNR | whole SSIM "
            "| figure PSNR - ours (paired) |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for label, row in summary_["table"].items():
        cells = [format_cell(row[c], 3 if c in ("iou", "ssim") else 2) for c in COLUMNS]
        lines.append(f"| {label} | {len(row['seeds'])} | " + " | ".join(
            [cells[0], cells[1], cells[2], cells[3], cells[4], cells[5]]) + " |")
    for name, b in summary_["baselines"].items():
        if name.startswith("blank"):
            continue
        lines.append(f"| {name} (no model) | | {b['fig_psnr']:.2f} | | {b['iou']:.3f} | {b['psnr']:.2f} | "
                     f"{b['ssim']:.3f} | |")
    return "\n".join(lines)
