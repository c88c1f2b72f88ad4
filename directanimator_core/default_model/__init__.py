"""The default model: a small Wan VAE and a small DirectAnimator trained on the synthetic world.

No public DirectAnimator weights exist, so the pack ships its own, small enough for a CPU:

    recipe.py     the frozen recipe (sizes, seeds, steps) the committed weights were trained with
    world.py      synthetic clips -> cue triplets from their exact masks and face boxes
    vae_train.py  the small VAE (Wan VAE architecture at width 16) trained on synthetic frames
    cache.py      the trainer's clip cache written from exact cues (train/cache.py format)
    train.py      ``python -m directanimator_core.default_model.train``: VAE, cache, Same2X stages 1 and 2
    metrics.py    PSNR and SSIM against exact ground truth
    baselines.py  copy-the-reference and warp-the-reference
    weights/      the committed safetensors and the record of the run that made them
"""

from pathlib import Path

WEIGHTS = Path(__file__).parent / "weights"
VAE_FILE = WEIGHTS / "vae.safetensors"
MODEL_FILE = WEIGHTS / "model.safetensors"
RECORD_FILE = WEIGHTS / "record.json"
