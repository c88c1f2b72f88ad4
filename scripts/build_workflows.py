"""Write the shipped workflows (workflows/*.json, ComfyUI's UI format) from short graph descriptions.

Sockets, widget order and defaults are read from a real ComfyUI's /object_info (the test harness's
ComfyUI with this pack), so the files match what the frontend builds. Run from the repo root:

    .venv/bin/python scripts/build_workflows.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from harness.comfyui import PACK_NAME, ComfyServer  # noqa: E402

WIDGETS = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"}
BASE = "wan2.1_i2v_480p_14B_fp16.safetensors"
ADAPTER = "directanimator_wan2.1_i2v_14B.safetensors"
VAE = "wan_2.1_vae.safetensors"
TEXT = "umt5_xxl_fp8_e4m3fn_scaled.safetensors"
VISION = "clip_vision_h.safetensors"
NOTE = f"""Model files (nothing is downloaded):
- models/diffusion_models/{BASE}  (the Wan 2.1 image-to-video 14B checkpoint, as ComfyUI's Wan templates name it)
- models/directanimator/{ADAPTER}  (the DirectAnimator adapter trained on it; pick '(merged in base)' for a merged file)
- models/vae/{VAE}
- models/text_encoders/{TEXT}
- models/clip_vision/{VISION}
No DirectAnimator weights are public yet: train an adapter with `python -m directanimator_core train` (README).
Inputs: the reference picture (input/reference.png) and the driving video (input/driving.mp4).
Output size = the reference's unless width/height are set on the sampler (multiples of 16)."""


def is_widget(spec: list) -> bool:
    return isinstance(spec[0], list) or spec[0] in WIDGETS


def default_of(spec: list):
    options = spec[1] if len(spec) > 1 else {}
    if isinstance(spec[0], list):
        return options.get("default", spec[0][0] if spec[0] else "")
    if spec[0] == "COMBO":
        return options.get("default", (options.get("options") or [""])[0])
    return options.get("default", {"INT": 0, "FLOAT": 0.0, "BOOLEAN": False, "STRING": ""}[spec[0]])


class Graph:
    def __init__(self, info: dict) -> None:
        self.info, self.nodes, self.links = info, [], []

    def add(self, kind: str, pos: tuple[int, int], title: str = "", size: tuple[int, int] = (320, 0), **values) -> dict:
        spec = self.info[kind]
        inputs, widgets = [], []
        for section in ("required", "optional"):
            for name, s in spec["input"].get(section, {}).items():
                if is_widget(s):
                    widgets.append(values.pop(name, default_of(s)))
                    if len(s) > 1 and s[1].get("control_after_generate"):
                        widgets.append("fixed")
                    if kind in ("LoadImage", "LoadVideo") and name in ("image", "file"):
                        widgets.append("image")  # the upload button's widget value
                else:
                    inputs.append({"name": name, "type": s[0], "link": None})
        assert not values, f"{kind} has no widgets {list(values)}"
        outputs = [{"name": name, "type": kind_, "links": [], "slot_index": i}
                   for i, (name, kind_) in enumerate(zip(spec["output_name"], spec["output"]))]
        height = size[1] or 60 + 26 * (len(inputs) + len(widgets) + len(outputs))
        node = {"id": len(self.nodes) + 1, "type": kind, "pos": list(pos), "size": [size[0], height], "flags": {},
                "order": len(self.nodes), "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind}, "widgets_values": widgets}
        if title:
            node["title"] = title
        self.nodes.append(node)
        return node

    def note(self, pos: tuple[int, int], text: str, size=(520, 260)) -> None:
        self.nodes.append({"id": len(self.nodes) + 1, "type": "Note", "pos": list(pos), "size": list(size),
                           "flags": {}, "order": len(self.nodes), "mode": 0, "inputs": [], "outputs": [],
                           "title": "Model files", "properties": {}, "widgets_values": [text],
                           "color": "#432", "bgcolor": "#653"})

    def link(self, source: dict, output: str, target: dict, input_name: str) -> None:
        slot = next(i for i, o in enumerate(source["outputs"]) if o["name"] == output)
        kind = source["outputs"][slot]["type"]
        names = [s["name"] for s in target["inputs"]]
        if input_name not in names:  # a widget fed by a link: the frontend keeps a socket for it
            target["inputs"].append({"name": input_name, "type": kind, "widget": {"name": input_name}, "link": None})
            names.append(input_name)
        target_slot = names.index(input_name)
        link_id = len(self.links) + 1
        self.links.append([link_id, source["id"], slot, target["id"], target_slot, kind])
        source["outputs"][slot]["links"].append(link_id)
        target["inputs"][target_slot]["link"] = link_id

    def workflow(self) -> dict:
        for node in self.nodes:
            for output in node["outputs"]:
                output["links"] = output["links"] or None
        return {"last_node_id": len(self.nodes), "last_link_id": len(self.links), "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {"ds": {"scale": 0.6, "offset": [40, 60]}},
                "version": 0.4}


def animation(info: dict, long_video: bool = False, external_mask: bool = False) -> dict:
    """Reference + driving video -> cue triplet -> sampler -> decode -> Create Video -> Save Video."""
    g = Graph(info)
    ref = g.add("LoadImage", (40, 60), "Reference image", (320, 360), image="reference.png")
    clip = g.add("LoadVideo", (40, 460), "Driving video", (320, 360), file="driving.mp4")
    parts = g.add("GetVideoComponents", (400, 460))
    g.link(clip, "VIDEO", parts, "video")
    cues = g.add("DirectAnimatorCueTriplet", (760, 60), size=(340, 0))
    g.link(parts, "images", cues, "frames")
    g.link(ref, "IMAGE", cues, "reference")
    if external_mask:
        mask_clip = g.add("LoadVideo", (40, 860), "Driver's mask video (white = driver)", (320, 360),
                          file="driving_mask.mp4")
        mask_parts = g.add("GetVideoComponents", (400, 860))
        to_mask = g.add("ImageToMask", (400, 1000), channel="red")
        g.link(mask_clip, "VIDEO", mask_parts, "video")
        g.link(mask_parts, "images", to_mask, "image")
        g.link(to_mask, "MASK", cues, "mask")
    loader = g.add("DirectAnimatorModelLoader", (760, 560), size=(380, 0), base_model=BASE, adapter=ADAPTER)
    vae = g.add("VAELoader", (760, 820), vae_name=VAE)
    text = g.add("CLIPLoader", (760, 920), clip_name=TEXT, type="wan")
    positive = g.add("CLIPTextEncode", (1160, 880), "Prompt", (380, 160),
                     text="a person moving naturally, high quality, detailed")
    negative = g.add("CLIPTextEncode", (1160, 1060), "Negative prompt", (380, 160),
                     text="blurry, distorted, extra limbs, low quality, static")
    g.link(text, "CLIP", positive, "clip")
    g.link(text, "CLIP", negative, "clip")
    vision = g.add("CLIPVisionLoader", (760, 1060), clip_name=VISION)
    seen = g.add("CLIPVisionEncode", (760, 1160), crop="none")
    g.link(vision, "CLIP_VISION", seen, "clip_vision")
    g.link(ref, "IMAGE", seen, "image")
    window = {"window_frames": 81, "window_overlap": 16} if long_video else {}
    sampler = g.add("DirectAnimatorSampler", (1160, 60), size=(360, 0), steps=30, cfg=5.0, shift=5.0, **window)
    for source, output, name in ((loader, "model", "model"), (vae, "VAE", "vae"), (ref, "IMAGE", "reference"),
                                 (cues, "cues", "cues"), (positive, "CONDITIONING", "positive"),
                                 (negative, "CONDITIONING", "negative"),
                                 (seen, "CLIP_VISION_OUTPUT", "clip_vision_output")):
        g.link(source, output, sampler, name)
    decode = g.add("DirectAnimatorDecode", (1560, 60))
    g.link(sampler, "latent", decode, "samples")
    g.link(vae, "VAE", decode, "vae")
    g.link(parts, "fps", decode, "fps")
    video = g.add("CreateVideo", (1560, 340))
    g.link(decode, "images", video, "images")
    g.link(decode, "fps", video, "fps")
    save = g.add("SaveVideo", (1560, 500), size=(400, 400), filename_prefix="video/DirectAnimator")
    g.link(video, "VIDEO", save, "video")
    preview = g.add("PreviewImage", (400, 60), "Cue preview", (340, 360))
    g.link(cues, "preview", preview, "images")
    note = NOTE
    if long_video:
        note += ("\nLong videos: clips longer than window_frames (81 = Wan's length) are sampled in windows that "
                 "share window_overlap frames, blended in latent space; the reference conditions every window.")
    if external_mask:
        note += ("\nExternal mask: input/driving_mask.mp4 holds the driver's mask (white on black), e.g. exported "
                 "from a SAM 2 or BiRefNet workflow; any MASK node can feed the cue triplet's mask input instead.")
    g.note((1560, 940), note, (560, 320))
    return g.workflow()


WORKFLOWS = {
    "directanimator_basic": lambda info: animation(info),
    "directanimator_long_video": lambda info: animation(info, long_video=True),
    "directanimator_external_mask": lambda info: animation(info, external_mask=True),
}


def main() -> None:
    with tempfile.TemporaryDirectory() as base, ComfyServer(base=Path(base), packs={PACK_NAME: REPO}) as server:
        info = server.object_info()
    for name, build in WORKFLOWS.items():
        path = REPO / "workflows" / f"{name}.json"
        path.write_text(json.dumps(build(info), indent=1) + "\n")
        print(path)


if __name__ == "__main__":
    main()
