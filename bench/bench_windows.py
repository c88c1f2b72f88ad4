"""Long-video host memory: peak RAM of the sampler's windowed latent path as the clip grows.

    python bench/bench_windows.py [--frames 81 1001] [--size 64] [--window 81] [--overlap 16]

For each clip length, a fresh subprocess builds a cue triplet of that many frames (uint8, as the cue
node hands it over), runs ``animate_latents`` with the tiny test model and the tiny VAE (1 step) in
81-frame windows, and prints its peak RSS above the process's baseline next to the triplet's own size
and what one float copy of the clip's pixels would take. Bounded means the growth tracks the uint8
triplet and the latents, never float pixels of the whole clip.

Measured (2 shared CPU cores, 64x64): 81 frames +123 MiB, 1001 frames +179 MiB over the baseline; the
56 MiB growth is the uint8 triplet (+28 MiB) and the latents, under the 94 MiB one float copy of the
1001-frame pose and face videos would take on its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

RUN = """
import json, sys, numpy as np, torch
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
frames, size, window, overlap = (int(a) for a in sys.argv[1:5])
from directanimator_core.pipeline.windowed import WindowConfig, animate_latents
from directanimator_core.cues.triplet import CueTriplet
from directanimator_core.models.config import CueFusionConfig
from directanimator_core.models.cuefusion import CueFusion, CueFusionDiT
from directanimator_core.models.registry import get_preset
from directanimator_core.models.vae import TINY_VAE, build_vae
from directanimator_core.models.wan_dit import build_backbone, init_weights
from directanimator_core.sampling import SamplerConfig
torch.set_num_threads(2)
config = get_preset("tiny-i2v")
g = torch.Generator().manual_seed(0)
model = CueFusionDiT(init_weights(build_backbone(config, device=torch.device("cpu")), g),
                     CueFusion(config, CueFusionConfig(same2x_depth=1)).init_weights(g)).eval()
vae = build_vae(TINY_VAE).eval()
base = peak_mib()
rng = np.random.default_rng(0)
pose = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
face = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
mask = np.full((frames, size, size), 255, np.uint8)
flags = np.ones(frames, bool)
triplet = CueTriplet(pose, face, mask, mask.copy(), flags, flags, np.ones(frames, np.float32), None)
reference = torch.zeros(1, 3, size, size)
with torch.no_grad():
    out = animate_latents(reference, triplet, model, lambda v: vae.encode(v), SamplerConfig(steps=1, cfg_text=1.0),
                          windows=WindowConfig(window, overlap), clip_fea=torch.zeros(1, 257, 1280))
triplet_mib = sum(a.nbytes for a in (pose, face, mask, triplet.face_mask)) / 2**20
print(json.dumps({"frames": frames, "peak_over_base_mib": peak_mib() - base, "triplet_mib": triplet_mib,
                  "float_pixels_mib": frames * size * size * 3 * 4 / 2**20, "latent": list(out.shape)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[81, 1001])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--window", type=int, default=81)
    parser.add_argument("--overlap", type=int, default=16)
    args = parser.parse_args()
    print(f"windowed latent path, {args.size}x{args.size}, windows of {args.window} frames sharing {args.overlap}")
    print(f"{'frames':>7} {'peak over base MiB':>19} {'uint8 triplet MiB':>18} {'float pixels MiB':>17}  latent")
    for frames in args.frames:
        result = subprocess.run([sys.executable, "-c", RUN, str(frames), str(args.size), str(args.window),
                                 str(args.overlap)], cwd=REPO, capture_output=True, text=True, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(f"{row['frames']:>7} {row['peak_over_base_mib']:>19.0f} {row['triplet_mib']:>18.0f} "
              f"{row['float_pixels_mib']:>17.0f}  {row['latent']}")


if __name__ == "__main__":
    main()
