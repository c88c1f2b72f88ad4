"""Fuzz every node's execute inside ComfyUI's own Python environment (run as a script, in a subprocess).

    python fuzz_nodes.py COMFY_DIR BASE_DIR EXAMPLES REPORT.json

ComfyUI is imported with ``--cpu --base-directory BASE_DIR`` (the model folders the test filled), the
pack is imported as ComfyUI imports a custom node package, and every node's ``execute`` is called with
arguments drawn by hypothesis from the node's own declared inputs: integers and floats anywhere in
their declared ranges, every combo option, and IMAGE / MASK / LATENT / CONDITIONING values of random
shapes (empty ones included) and random contents (NaN and inf included). A call may return or raise the
pack's own errors (DirectAnimatorError) with a one-line message; anything else is a finding. The report
lists, per node, the examples run, the refusals by message start and the findings.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

COMFY_DIR, BASE_DIR, EXAMPLES, REPORT = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, COMFY_DIR)
sys.path.extend([str(REPO / "tests"), str(REPO)])  # after ComfyUI: its nodes.py, not our nodes/
sys.argv = [sys.argv[0], "--cpu", "--base-directory", BASE_DIR]

import comfy.options  # noqa: E402

comfy.options.enable_args_parsing()
import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402
import nodes as core_nodes  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from harness.in_comfyui import import_pack, read_inputs  # noqa: E402
from harness.models import ADAPTER, BASE, NATIVE_BASE  # noqa: E402

torch.set_num_threads(1)
nodes, NODES = import_pack()
errors = importlib.import_module("DirectAnimatorPack.directanimator_core.errors")

# The step count is a matter of time, not of memory or validity: capped so the fuzz stays bounded.
CAPS = {("DirectAnimatorSampler", "steps"): 3}
# Values that let a node run where its default does not (cfg 5 needs a negative prompt the fuzz has none of).
VALID = {("DirectAnimatorSampler", "cfg"): 1.0, ("DirectAnimatorSampler", "steps"): 2,
         ("DirectAnimatorCueTriplet", "preview_height"): 64,
         ("DirectAnimatorCutOut", "grow"): 2}  # the default 0 passes the mask through: grow it
APPLIED_INPUTS = {"DirectAnimatorGuider": ("model", "positive", "negative")}  # valid: DirectAnimator Apply's outputs
WILD_INPUTS = 3  # at most this many inputs of one example are drawn at random; the rest are valid


def floats(nan: bool = True) -> st.SearchStrategy:
    return st.floats(allow_nan=nan, allow_infinity=nan, width=32) if nan else st.floats(0.0, 1.0, width=32)


def tensors(shape: st.SearchStrategy) -> st.SearchStrategy:
    """Float tensors of a drawn shape: mostly 0..1, sometimes any float (NaN, inf, huge)."""
    def build(args):
        dims, wild, seed = args
        generator = torch.Generator().manual_seed(seed)
        t = torch.rand(dims, generator=generator)
        if wild and t.numel():
            t.view(-1)[0] = wild
        return t
    return st.tuples(shape, st.one_of(st.none(), st.sampled_from([float("nan"), float("inf"), -3.0, 1e30])),
                     st.integers(0, 2**16)).map(build)


SMALL = st.integers(0, 9)
SIDE = st.sampled_from([0, 1, 7, 16, 32, 48, 64])
IMAGES = tensors(st.tuples(SMALL, SIDE, SIDE, st.sampled_from([1, 3, 4])))
MASKS = tensors(st.one_of(st.tuples(SMALL, SIDE, SIDE), st.tuples(SIDE, SIDE)))
LATENTS = tensors(st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from([0, 4, 16]), st.sampled_from([0, 1, 2, 3]),
                            st.sampled_from([0, 1, 2, 4, 8]), st.sampled_from([0, 1, 2, 4, 8]))).map(
    lambda t: {"samples": t})
CONDITIONING = tensors(st.tuples(st.sampled_from([0, 1, 2]), st.sampled_from([0, 1, 5]),
                                 st.sampled_from([0, 32, 64, 4096]))).map(lambda t: [[t, {}]])


class VisionOutput:
    def __init__(self, states: torch.Tensor) -> None:
        self.penultimate_hidden_states = states


VISION = tensors(st.tuples(st.sampled_from([0, 1]), st.sampled_from([0, 257]), st.sampled_from([0, 1280]))).map(
    VisionOutput)


def shared_objects() -> dict:
    """Real values of the pack's and ComfyUI's object types: the loaded DA model, a ComfyUI VAE, cue triplets."""
    vae_file = next(Path(BASE_DIR, "models", "vae").glob("*.safetensors"))
    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(vae_file)))
    loader = NODES["DirectAnimatorModelLoader"]
    model = loader.execute(BASE, ADAPTER, "auto", "auto", 0.0, 1, "sdpa").args[0]
    wan = core_nodes.UNETLoader().load_unet(NATIVE_BASE, "default")[0]  # core's own MODEL, for the native path
    patch = NODES["DirectAnimatorAdapterLoader"].execute(ADAPTER).args[0]
    frames, masks, reference = read_inputs(BASE_DIR)  # real footage: a walker, its box, the astronaut
    body = torch.zeros(1, 64, 64)
    body[:, 8:64, 16:48] = 1.0  # the astronaut's figure
    triplet = NODES["DirectAnimatorCueTriplet"].execute(
        frames, reference, 0.04, False, 8.0, 16, 1.3, 0, "opencv (built-in)",
        "opencv haar (built-in)", 64, mask=masks, reference_mask=body).args[0]
    media = {"frames": frames, "mask": masks, "reference": reference,
             "reference_mask": body, "samples": {"samples": torch.randn(1, 16, 2, 8, 8)}}
    applied = NODES["DirectAnimatorApply"].execute(wan, patch, vae, reference, triplet, 0, 0, 0).args
    return {"vae": vae, "model": model, "cues": triplet, "reference": reference, "media": media, "wan": wan,
            "patch": patch, "applied": applied[0], "applied_positive": applied[1], "applied_negative": applied[2]}


def valid_value(node: str, item, objects: dict):
    """A value of one input that lets the node run: its default, or the real footage for media inputs."""
    if (node, item.id) in VALID:
        return VALID[(node, item.id)]
    if item.id in APPLIED_INPUTS.get(node, ()):
        return objects["applied" if item.id == "model" else f"applied_{item.id}"]
    if item.id in objects["media"]:
        return objects["media"][item.id]
    if item.optional and item.get_io_type() not in ("INT", "FLOAT", "BOOLEAN", "COMBO"):
        return None
    if item.get_io_type() == "COMBO":
        return item.default if item.default is not None else list(item.options)[0]
    objects_by_type = {"VAE": objects["vae"], "DA_MODEL": objects["model"], "DA_CUES": objects["cues"],
                       "MODEL": objects["wan"], "MODEL_PATCH": objects["patch"]}
    kind = item.get_io_type().split(",")[0]  # a MultiType input ("DA_MODEL,MODEL"): its first type
    if kind in objects_by_type:
        return objects_by_type[kind]
    return item.default if item.default is not None else item.min


def adapter_names() -> list[str]:
    return sorted(p.name for p in Path(BASE_DIR, "models", "directanimator").glob("*.safetensors"))


def strategy_for(node: str, item, objects: dict) -> st.SearchStrategy:
    """Values of one declared input."""
    kind = item.get_io_type()
    if kind == "INT":
        return st.integers(item.min, CAPS.get((node, item.id), item.max))
    if kind == "FLOAT":
        return st.floats(item.min, item.max, allow_nan=False)
    if kind == "BOOLEAN":
        return st.booleans()
    if kind == "COMBO":
        return st.sampled_from(list(item.options))
    fixed = {"IMAGE": st.one_of(IMAGES, st.just(objects["reference"])), "MASK": MASKS, "LATENT": LATENTS,
             "CONDITIONING": CONDITIONING, "CLIP_VISION_OUTPUT": VISION, "VAE": st.just(objects["vae"]),
             "DA_MODEL": st.just(objects["model"]), "DA_CUES": st.just(objects["cues"]),
             "MODEL": st.sampled_from([objects["wan"], objects["applied"]]), "MODEL_PATCH": st.just(objects["patch"])}
    if kind in fixed:
        return fixed[kind]
    if "," in kind and all(part in fixed for part in kind.split(",")):  # a MultiType input: any of its types
        return st.one_of(*(fixed[part] for part in kind.split(",")))
    raise AssertionError(f"{node}.{item.id}: no strategy for input type {kind}")


def fuzz(node: str, cls, objects: dict, examples: int) -> dict:
    inputs = cls.define_schema().inputs
    wild = {i.id: strategy_for(node, i, objects) for i in inputs}
    wild.update({i.id: st.one_of(st.none(), wild[i.id]) for i in inputs if i.optional})
    valid = {i.id: valid_value(node, i, objects) for i in inputs}
    record = {"examples": 0, "returned": 0, "refused": {}, "findings": []}

    @settings(max_examples=examples, deadline=None, database=None, derandomize=True, print_blob=False,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def call(data):
        record["examples"] += 1
        chosen = data.draw(st.sets(st.sampled_from(sorted(wild)), max_size=WILD_INPUTS))
        kwargs = {k: data.draw(wild[k]) if k in chosen else valid[k] for k in wild}
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        try:
            cls.execute(**kwargs)
            record["returned"] += 1
        except errors.DirectAnimatorError as error:
            message = str(error)
            if "\n" in message or not message:
                record["findings"].append(f"multi-line or empty {type(error).__name__}: {message!r}")
            key = f"{type(error).__name__}: {message[:60]}"
            record["refused"][key] = record["refused"].get(key, 0) + 1
        except Exception as error:  # noqa: BLE001 - any other exception is what the fuzz looks for
            shapes = {k: describe(v) for k, v in kwargs.items() if k in chosen}
            record["findings"].append(f"raw {type(error).__name__}: {str(error)[:200]} with {shapes}")

    call()
    return record


def describe(value) -> str:
    if torch.is_tensor(value):
        return f"tensor{tuple(value.shape)}"
    if isinstance(value, dict) and "samples" in value:
        return f"latent{tuple(value['samples'].shape)}"
    if isinstance(value, list) and value and isinstance(value[0], list):
        return f"conditioning{tuple(value[0][0].shape)}"
    return repr(value)[:40]


def largest_run(objects: dict) -> str:
    """The sampler at its own declared maximum size on the small clip (what once took the server down)."""
    sampler = NODES["DirectAnimatorSampler"]
    values = {i.id: valid_value("DirectAnimatorSampler", i, objects) for i in sampler.define_schema().inputs}
    values.update(width=4096, height=4096, steps=1)
    try:
        sampler.execute(**{k: v for k, v in values.items() if v is not None})
    except errors.DirectAnimatorError as error:
        return f"{type(error).__name__}: {error}"
    return "ran"


def main() -> None:
    start = time.monotonic()
    objects = shared_objects()
    report = {}
    for node, cls in sorted(NODES.items()):
        began = time.monotonic()
        report[node] = fuzz(node, cls, objects, EXAMPLES)
        report[node]["seconds"] = round(time.monotonic() - began, 1)
    report["_admission"] = largest_run(objects)
    report["_seconds"] = round(time.monotonic() - start, 1)
    REPORT.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
