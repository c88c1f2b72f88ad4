"""The cue nodes (and Cut Out Person) inside a real ComfyUI, on real footage: vtest.avi through ComfyUI's own
LoadVideo -> GetVideoComponents, the astronaut through LoadImage, results through SaveImage."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from harness import media
from harness.comfyui import ComfyServer
from harness.paths import REPO

pytestmark = pytest.mark.comfy

CLIP = "da_vtest_16.avi"
PAN = "da_astronaut_pan.avi"
LAWN = "da_lawn.avi"
REFERENCE = "da_astronaut.png"
WALKER_FRAME0 = (640, 240, 686, 322)  # the walker in black, boxed by hand (tests/core/test_cues_segment.py)


@pytest.fixture(scope="module")
def server(comfy_server: ComfyServer) -> ComfyServer:
    inputs = comfy_server.base / "input"
    shutil.copy(media.vtest_clip(16), inputs / CLIP)
    media.write_clip(media.pan_clip(media.astronaut(), count=8), inputs / PAN)
    lawn = np.ascontiguousarray(media.vtest_frames(4)[:, 400:576, 0:256])
    media.write_clip(lawn, inputs / LAWN)
    cv2.imwrite(str(inputs / REFERENCE), cv2.cvtColor(media.astronaut(), cv2.COLOR_RGB2BGR))
    return comfy_server


def video(clip: str) -> dict:
    return {
        "v": {"class_type": "LoadVideo", "inputs": {"file": clip}},
        "frames": {"class_type": "GetVideoComponents", "inputs": {"video": ["v", 0]}},
    }


def reference() -> dict:
    return {"ref": {"class_type": "LoadImage", "inputs": {"image": REFERENCE}}}


def save(node: str, output: int, prefix: str, mask: bool = False) -> dict:
    nodes = {}
    source = [node, output]
    if mask:
        nodes[f"{prefix}_img"] = {"class_type": "MaskToImage", "inputs": {"mask": source}}
        source = [f"{prefix}_img", 0]
    nodes[f"{prefix}_save"] = {"class_type": "SaveImage", "inputs": {"images": source, "filename_prefix": prefix}}
    return nodes


def saved(server: ComfyServer, outputs: dict, prefix: str) -> list[np.ndarray]:
    items = outputs[f"{prefix}_save"]["images"]
    return [cv2.cvtColor(cv2.imread(str(server.output_file(item))), cv2.COLOR_BGR2RGB) for item in items]


TRIPLET_SETTINGS = {"cutoff": 0.04, "greyscale": False, "softness": 8.0, "grid": 16, "face_margin": 1.6,
                    "person_index": 0, "segmenter": "opencv (built-in)", "face_detector": "opencv haar (built-in)",
                    "preview_height": 256}


def test_cue_triplet_node_on_vtest(server: ComfyServer) -> None:
    prompt = {**video(CLIP), **reference(),
              "cues": {"class_type": "DirectAnimatorCueTriplet",
                       "inputs": {"frames": ["frames", 0], "reference": ["ref", 0], **TRIPLET_SETTINGS}},
              **save("cues", 1, "da_preview"), **save("cues", 2, "da_pose"), **save("cues", 3, "da_face")}
    outputs = server.run(prompt)
    preview, pose, faces = (saved(server, outputs, p) for p in ("da_preview", "da_pose", "da_face"))
    assert len(preview) == len(pose) == len(faces) == 16
    assert preview[0].shape == (256, 3 * 256 + 8, 3)
    assert pose[0].shape == (512, 512, 3)  # drawn at the reference's size
    assert all((f == 0).all() for f in faces)  # vtest's faces are too small: blank, not invented
    drawn = np.abs(pose[0].astype(int) - 128).max(-1) > 24
    assert 0.02 < drawn.mean() < 0.5  # the walker, scaled onto the astronaut's body


def drawn_frames(frames: list[np.ndarray]) -> int:
    """Pose-cue frames with any driver pixel (off the neutral grey)."""
    return sum(int((np.abs(f.astype(int) - 128).max(-1) > 24).any()) for f in frames)


def test_cue_triplet_node_align_modes_and_report(server: ComfyServer) -> None:
    """The vtest walker on the astronaut: with the fixed map he leaves the canvas within a few frames
    and the node says so (its report output and a warning line on the node); in place, never."""
    reports, drawn, texts = {}, {}, {}
    for mode in ("fixed", "in-place"):
        prompt = {**video(CLIP), **reference(),
                  "cues": {"class_type": "DirectAnimatorCueTriplet",
                           "inputs": {"frames": ["frames", 0], "reference": ["ref", 0], **TRIPLET_SETTINGS,
                                      "align": mode}},
                  "show": {"class_type": "PreviewAny", "inputs": {"source": ["cues", 5]}},
                  **save("cues", 2, f"da_pose_{mode}")}
        outputs = server.run(prompt)
        reports[mode] = json.loads(outputs["show"]["text"][0])
        texts[mode] = outputs.get("cues", {}).get("text")
        drawn[mode] = drawn_frames(saved(server, outputs, f"da_pose_{mode}"))
    fixed, steady = reports["fixed"], reports["in-place"]
    assert fixed["frames"] == steady["frames"] == 16
    assert fixed["frames_off_canvas"] >= 6 and steady["frames_off_canvas"] == 0
    assert drawn["fixed"] < 16 and drawn["in-place"] == 16  # fixed: frames without one driver pixel
    assert texts["fixed"] == [fixed["warning"]] and "off the canvas" in fixed["warning"]
    for key in ("frames_blank", "frames_suspect_switch", "frames_mostly_background"):
        assert isinstance(fixed[key], int) and isinstance(steady[key], int)
    if steady["warning"] is None:
        assert texts["in-place"] is None


def test_pose_cue_node_follows_the_walker(server: ComfyServer) -> None:
    prompt = {**video(CLIP),
              "pose": {"class_type": "DirectAnimatorPoseCue",
                       "inputs": {"frames": ["frames", 0], "cutoff": 0.05, "greyscale": True, "person_index": 0,
                                  "segmenter": "opencv (built-in)"}},
              **save("pose", 0, "da_posecue"), **save("pose", 1, "da_personmask", mask=True)}
    outputs = server.run(prompt)
    pose, masks = saved(server, outputs, "da_posecue"), saved(server, outputs, "da_personmask")
    assert len(pose) == len(masks) == 16 and pose[0].shape == (576, 768, 3)
    assert np.array_equal(pose[0][..., 0], pose[0][..., 1])  # greyscale
    mask = masks[0][..., 0] > 127
    x0, y0, x1, y1 = WALKER_FRAME0
    assert mask[y0:y1, x0:x1].mean() > 0.25 and mask[y0 - 6:y1 + 6, x0 - 6:x1 + 6].sum() > 0.8 * mask.sum()


def test_cut_out_node_grows_the_pose_cues_mask_and_blacks_it_out(server: ComfyServer) -> None:
    prompt = {**video(CLIP),
              "pose": {"class_type": "DirectAnimatorPoseCue",
                       "inputs": {"frames": ["frames", 0], "cutoff": 0.05, "greyscale": True, "person_index": 0,
                                  "segmenter": "opencv (built-in)"}},
              "cut": {"class_type": "DirectAnimatorCutOut",
                      "inputs": {"frames": ["frames", 0], "mask": ["pose", 1], "grow": 6}},
              **save("frames", 0, "da_cutframes"), **save("pose", 1, "da_cutperson", mask=True),
              **save("cut", 0, "da_cutbg"), **save("cut", 1, "da_cutgrown", mask=True)}
    outputs = server.run(prompt)
    frames, person = saved(server, outputs, "da_cutframes"), saved(server, outputs, "da_cutperson")
    background, grown = saved(server, outputs, "da_cutbg"), saved(server, outputs, "da_cutgrown")
    assert len(background) == len(grown) == 16 and background[0].shape == (576, 768, 3)
    for frame, cut, hole, kept in zip(frames, person, grown, background):
        cut, hole = cut[..., 0] > 127, hole[..., 0] > 127
        assert hole[cut].all() and hole.sum() > cut.sum() > 0  # grown by 6 px around the person
        assert (kept[hole] == 0).all() and np.array_equal(kept[~hole], frame[~hole])


def test_cut_out_refuses_a_mask_of_another_count_or_size(server: ComfyServer) -> None:
    for source, mask, expected in (
            (video(CLIP), (768, 576), "mask is 1 x 768x576 but the video is 16 x 768x576"),
            ({"frames": reference()["ref"]}, (64, 64), "mask is 1 x 64x64 but the video is 1 x 512x512")):
        width, height = mask
        prompt = {**source,
                  "m": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": width, "height": height}},
                  "cut": {"class_type": "DirectAnimatorCutOut",
                          "inputs": {"frames": ["frames", 0], "mask": ["m", 0], "grow": 4}},
                  **save("cut", 0, "da_cutbad")}
        error = server.execution_error(prompt)
        assert error["node_type"] == "DirectAnimatorCutOut" and error["exception_type"].endswith("InputError")
        message = error["exception_message"].strip()
        assert message.startswith(expected) and "\n" not in message, message


def test_face_cue_node_centres_the_face(server: ComfyServer) -> None:
    from directanimator_core.cues.detectors import detect_faces

    prompt = {**video(PAN),
              "face": {"class_type": "DirectAnimatorFaceCue",
                       "inputs": {"frames": ["frames", 0], "width": 256, "height": 256, "face_margin": 1.6,
                                  "smoothing": 3.0, "face_detector": "opencv haar (built-in)"}},
              **save("face", 0, "da_facecue"), **save("face", 1, "da_facefound", mask=True)}
    outputs = server.run(prompt)
    faces, found = saved(server, outputs, "da_facecue"), saved(server, outputs, "da_facefound")
    assert len(faces) == 8 and faces[0].shape == (256, 256, 3)
    assert all((f > 127).all() for f in found)
    for frame in faces:
        box = detect_faces(frame, 50)[0]
        assert np.abs((box[:2] + box[2:]) / 2 - 128).max() < 16


def test_location_cue_node_aligns_to_the_reference(server: ComfyServer) -> None:
    mask = np.zeros((512, 512), np.uint8)
    mask[100:460, 180:330] = 255  # the reference's person, given as a mask (LoadImageMask reads a channel)
    cv2.imwrite(str(server.base / "input" / "da_refmask.png"), mask)
    prompt = {**video(CLIP), **reference(),
              "refmask": {"class_type": "LoadImageMask", "inputs": {"image": "da_refmask.png", "channel": "red"}},
              "loc": {"class_type": "DirectAnimatorLocationCue",
                      "inputs": {"frames": ["frames", 0], "reference": ["ref", 0], "reference_mask": ["refmask", 0],
                                 "softness": 0.0, "grid": 0, "person_index": 0, "segmenter": "opencv (built-in)"}},
              **save("loc", 0, "da_body", mask=True), **save("loc", 2, "da_locprev")}
    outputs = server.run(prompt)
    body = saved(server, outputs, "da_body")
    assert len(body) == 16 and body[0].shape == (512, 512, 3)
    ys, xs = np.nonzero(body[0][..., 0] > 127)
    assert abs((ys.max() + 1 - ys.min()) - 360) <= 4 and abs((ys.max() + 1 + ys.min()) / 2 - 280) <= 4
    assert abs((xs.max() + 1 + xs.min()) / 2 - 255) <= 4
    assert len(saved(server, outputs, "da_locprev")) == 16


def test_no_person_fails_with_the_cue_message(server: ComfyServer) -> None:
    prompt = {**video(LAWN), **reference(),
              "cues": {"class_type": "DirectAnimatorCueTriplet",
                       "inputs": {"frames": ["frames", 0], "reference": ["ref", 0], **TRIPLET_SETTINGS}},
              **save("cues", 1, "da_lawn")}
    error = server.execution_error(prompt)
    # NoPersonError: the CueError of a clip with nobody in it (cues/segment.py)
    assert error["node_type"] == "DirectAnimatorCueTriplet" and error["exception_type"].endswith(".NoPersonError")
    assert error["exception_message"].strip() == ("no person was found in any of the 4 driving frames; connect a person "
                                          "mask (e.g. from a SAM or BiRefNet node) to the mask input")


def test_mask_count_mismatch_fails_with_its_message(server: ComfyServer) -> None:
    prompt = {**video(CLIP),
              "m": {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 768, "height": 576}},
              "pose": {"class_type": "DirectAnimatorPoseCue",
                       "inputs": {"frames": ["frames", 0], "mask": ["m", 0], "cutoff": 0.05, "greyscale": False,
                                  "person_index": 0, "segmenter": "opencv (built-in)"}},
              **save("pose", 0, "da_badmask")}
    error = server.execution_error(prompt)
    assert error["exception_message"].startswith("mask is 1 x 768x576 but the video is 16 x 768x576")


def test_cue_nodes_describe_every_input(server: ComfyServer) -> None:
    info = server.object_info()
    for name in ("DirectAnimatorPoseCue", "DirectAnimatorCutOut", "DirectAnimatorFaceCue",
                 "DirectAnimatorLocationCue", "DirectAnimatorCueTriplet"):
        node = info[name]
        assert node["category"] == "DirectAnimator/cues" and node["description"].strip()
        for section in ("required", "optional"):
            for input_name, spec in node["input"].get(section, {}).items():
                assert len(spec) > 1 and spec[1].get("tooltip"), f"{name}.{input_name} has no tooltip"
    assert info["DirectAnimatorCueTriplet"]["output"][0] == "DA_CUES"


WIDGET_TYPES = {"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"}


def api_prompt(workflow: dict, info: dict, files: dict[str, str]) -> dict:
    """A UI-format workflow as an API prompt: widget values by the node's widget order, links as
    [node, slot], file names swapped for the test's inputs."""
    links = {link[0]: link for link in workflow["links"]}
    prompt = {}
    for node in workflow["nodes"]:
        if node["type"] == "Note":
            continue
        spec = info[node["type"]]["input"]
        widgets = [name for section in ("required", "optional") for name, s in spec.get(section, {}).items()
                   if isinstance(s[0], list) or s[0] in WIDGET_TYPES]
        inputs = {name: files.get(value, value) for name, value in zip(widgets, node["widgets_values"])}
        if node["type"].startswith("DirectAnimator"):
            assert len(node["widgets_values"]) == len(widgets), node["type"]
        for socket in node["inputs"]:
            if socket.get("link") is not None:
                link = links[socket["link"]]
                inputs[socket["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


def test_cue_preview_workflow_runs(server: ComfyServer) -> None:
    workflow = json.loads((REPO / "workflows" / "directanimator_cue_preview.json").read_text())
    prompt = api_prompt(workflow, server.object_info(), {"reference.png": REFERENCE, "driving.mp4": CLIP})
    outputs = server.run(prompt)
    preview = next(out["images"] for node_id, out in outputs.items() if prompt[node_id]["class_type"] == "PreviewImage")
    assert len(preview) == 16
    frame = cv2.imread(str(server.output_file(preview[0])))
    assert frame.shape == (256, 3 * 256 + 8, 3)


def test_face_cue_node_with_an_onnx_detector_from_the_model_folder(server: ComfyServer) -> None:
    from directanimator_core.cues.detectors import detect_faces

    folder = server.base / "models" / "directanimator"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(media.centerface_onnx(), folder / "centerface.onnx")
    options = server.object_info()["DirectAnimatorFaceCue"]["input"]["required"]["face_detector"][1]["options"]
    assert "centerface.onnx" in options
    prompt = {**video(PAN),
              "face": {"class_type": "DirectAnimatorFaceCue",
                       "inputs": {"frames": ["frames", 0], "width": 192, "height": 192, "face_margin": 1.8,
                                  "smoothing": 2.0, "face_detector": "centerface.onnx"}},
              **save("face", 0, "da_centerface")}
    faces = saved(server, server.run(prompt), "da_centerface")
    assert len(faces) == 8
    for frame in faces:
        box = detect_faces(frame, 40)[0]
        assert np.abs((box[:2] + box[2:]) / 2 - 96).max() < 16


def test_detector_combos_offer_each_model_in_its_own_list_and_default_to_the_better_one(server: ComfyServer) -> None:
    """With fetch_detectors.py's three files in models/directanimator: the segmenter list holds the selfie segmenter
    (not the face models), the face list CenterFace and MediaPipe's short-range model (not the segmenter); the
    defaults are the selfie segmenter and CenterFace (the measured better ones, docs/face_detectors.md)."""
    folder = server.base / "models" / "directanimator"
    folder.mkdir(parents=True, exist_ok=True)
    for source, name in ((media.selfie_segmenter(), "selfie_segmentation.tflite"),
                         (media.centerface_onnx(), "centerface.onnx"),
                         (media.blazeface_tflite(), "face_detection_short_range.tflite")):
        shutil.copy(source, folder / name)
    inputs = server.object_info()["DirectAnimatorCueTriplet"]["input"]["required"]
    segmenters, faces = inputs["segmenter"], inputs["face_detector"]
    names = lambda combo: combo[1]["options"] if isinstance(combo[0], str) else combo[0]  # noqa: E731 - V3 or V1 combo
    assert set(names(segmenters)) >= {"opencv (built-in)", "selfie_segmentation.tflite"}
    assert not {"centerface.onnx", "face_detection_short_range.tflite"} & set(names(segmenters))
    assert set(names(faces)) >= {"opencv haar (built-in)", "centerface.onnx", "face_detection_short_range.tflite"}
    assert "selfie_segmentation.tflite" not in names(faces)
    assert segmenters[1]["default"] == "selfie_segmentation.tflite" and faces[1]["default"] == "centerface.onnx"


def test_the_selfie_segmenter_in_the_model_folder_runs_in_the_triplet_node(server: ComfyServer) -> None:
    """MediaPipe's .tflite, put in models/directanimator (as scripts/fetch_detectors.py does), is offered by
    the segmenter combo, cuts the panned portrait, and the report names it; the built-in is named too."""
    folder = server.base / "models" / "directanimator"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(media.selfie_segmenter(), folder / "selfie_segmentation.tflite")
    options = server.object_info()["DirectAnimatorCueTriplet"]["input"]["required"]["segmenter"]
    assert "selfie_segmentation.tflite" in json.dumps(options)
    assert options[1]["default"] == "selfie_segmentation.tflite"  # the measured better segmenter, once it is there
    reports, bodies = {}, {}
    for name in ("selfie_segmentation.tflite", "opencv (built-in)"):
        prompt = {**video(PAN), **reference(),
                  "cues": {"class_type": "DirectAnimatorCueTriplet",
                           "inputs": {"frames": ["frames", 0], "reference": ["ref", 0], **TRIPLET_SETTINGS,
                                      "segmenter": name, "align": "in-place"}},
                  "show": {"class_type": "PreviewAny", "inputs": {"source": ["cues", 5]}},
                  **save("cues", 4, f"da_loc_{name[:6]}")}
        outputs = server.run(prompt)
        reports[name] = json.loads(outputs["show"]["text"][0])
        bodies[name] = np.stack([f[..., 0] > 127 for f in saved(server, outputs, f"da_loc_{name[:6]}")])
    assert reports["selfie_segmentation.tflite"]["segmenter"] == "selfie_segmentation.tflite"
    assert reports["opencv (built-in)"]["segmenter"] == "opencv (built-in)"
    assert reports["selfie_segmentation.tflite"]["frames_with_person"] == 8
    assert bodies["selfie_segmentation.tflite"].any(axis=(1, 2)).all()
