"""Core's KSampler on a tiny random Wan DiT, for each sampler name we share with ComfyUI (run as a script).

    python ksampler_names.py COMFY_DIR BASE_DIR CASES.json OUT.safetensors

ComfyUI is imported with ``--cpu --base-directory BASE_DIR``; core's own nodes run the model:
UNETLoader (the tiny text-to-video file in core's Wan layout), ModelSamplingSD3 (the shift), KSampler's
common_ksampler at cfg 1 on an empty Wan latent and the given text states. For each case {sampler,
scheduler, steps, shift, seed} the raw latent goes into OUT under the case's index.
"""

from __future__ import annotations

import json
import sys

COMFY_DIR, BASE_DIR, CASES, OUT = sys.argv[1:5]
sys.path.insert(0, COMFY_DIR)
sys.argv = [sys.argv[0], "--cpu", "--base-directory", BASE_DIR]

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import nodes as core_nodes  # noqa: E402
import torch  # noqa: E402
from comfy_extras.nodes_model_advanced import ModelSamplingSD3  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

torch.set_num_threads(1)
data = load_file(f"{BASE_DIR}/inputs.safetensors")
positive = [[data["text"], {}]]
base = core_nodes.UNETLoader().load_unet("tiny_t2v.safetensors", "default")[0]
out = {}
for index, case in enumerate(json.loads(open(CASES).read())):
    model = ModelSamplingSD3().patch(base, case["shift"])[0]
    latent = {"samples": torch.zeros_like(data["latent"])}
    result = core_nodes.common_ksampler(model, case["seed"], case["steps"], 1.0, case["sampler"], case["scheduler"],
                                        positive, positive, latent)[0]
    out[str(index)] = result["samples"].float().contiguous()
save_file(out, OUT)
