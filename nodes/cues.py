"""Cue nodes: the Driving Cue Triplet from any video loader's frames (and any segmenter's MASK).

Each ``execute`` converts ComfyUI values to core values, makes one core call, converts back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Optional

import folder_paths
import torch
from comfy_api.latest import io, ui

from ..directanimator_core.admission import admit_output
from ..directanimator_core.cues.config import (ALIGN_MODES, AlignConfig, CueConfig, FaceConfig, LocationConfig,
                                                PoseConfig, SegmentConfig)
from ..directanimator_core.cues import blazeface, detectors
from ..directanimator_core.cues.frames import check_masks
from ..directanimator_core.cues.replace import cut_out, grow_masks
from ..directanimator_core.cues.triplet import CueTriplet, build_face_cue, build_triplet
from . import _convert, _progress
from .types import DACues

log = logging.getLogger(__name__)

CATEGORY = "DirectAnimator/cues"
MODEL_FOLDER = "directanimator"
BUILT_IN_SEGMENTER, BUILT_IN_FACE = detectors.BUILT_IN_SEGMENTER, detectors.BUILT_IN_FACE


def onnx_files(suffixes: tuple[str, ...] = (".onnx",)) -> list[str]:
    return [name for name in folder_paths.get_filename_list(MODEL_FOLDER) if name.lower().endswith(suffixes)]


SELFIE_SEGMENTER, CENTERFACE = "selfie_segmentation.tflite", "centerface.onnx"  # what fetch_detectors.py puts there


def segmenter_files() -> list[str]:
    """Person segmenters in models/directanimator: ONNX, or TFLite (MediaPipe's selfie segmenter, which
    scripts/fetch_detectors.py puts there); face detectors, named for faces, are not offered."""
    return [name for name in onnx_files((".onnx", ".tflite")) if "face" not in name.lower()]


def face_detector_files() -> list[str]:
    """Face detectors in models/directanimator: CenterFace or YuNet .onnx, MediaPipe's face_detection_*.tflite."""
    return [name for name in onnx_files((".onnx", ".tflite")) if blazeface.is_face_model(name)]


def preferred(options: list[str], best: str, built_in: str) -> str:
    """The default of a detector combo: the measured better model when it is in the folder, else the built-in."""
    return next((name for name in options if Path(name).name == best), built_in)


def onnx_path(choice: str, built_in: str) -> Optional[str]:
    return None if choice == built_in else folder_paths.get_full_path_or_raise(MODEL_FOLDER, choice)


# -- shared inputs ---------------------------------------------------------------------------------
def frames_input() -> io.Image.Input:
    return io.Image.Input("frames", tooltip="Driving video frames, e.g. from Load Video -> Get Video Components.")


def mask_input() -> io.Mask.Input:
    return io.Mask.Input("mask", optional=True, tooltip="Person mask per frame from any segmenter (SAM 2, BiRefNet, "
                         "RMBG...). Leave empty to use the built-in segmenter.")


def person_index_input() -> io.Int.Input:
    return io.Int.Input("person_index", default=0, min=0, max=16, tooltip="Whom to follow when several people are "
                        "in view: 0 = the largest person when first seen, 1 = the next largest...")


def segmenter_input() -> io.Combo.Input:
    files = segmenter_files()
    return io.Combo.Input("segmenter", options=[BUILT_IN_SEGMENTER, *files],
                          default=preferred(files, SELFIE_SEGMENTER, BUILT_IN_SEGMENTER),
                          tooltip="Person segmenter when no mask is connected: OpenCV's HOG + motion + GrabCut, or "
                                  "an ONNX / TFLite segmenter in models/directanimator (scripts/fetch_detectors.py "
                                  "puts MediaPipe's selfie_segmentation.tflite there: far less background; the "
                                  "default when it is there).")


def face_detector_input() -> io.Combo.Input:
    files = face_detector_files()
    return io.Combo.Input("face_detector", options=[BUILT_IN_FACE, *files],
                          default=preferred(files, CENTERFACE, BUILT_IN_FACE),
                          tooltip="Face detector for the face cue, the reference's face and the tracker's search for "
                                  "portraits and talking heads: OpenCV's Haar cascade, a CenterFace or YuNet .onnx, or "
                                  "MediaPipe's face_detection_short_range.tflite (fast; faces above about a tenth of the "
                                  "frame) in models/directanimator; scripts/fetch_detectors.py puts centerface.onnx (the "
                                  "default when it is there) and the MediaPipe model there.")


def cutoff_input() -> io.Float.Input:
    return io.Float.Input("cutoff", default=PoseConfig.cutoff, min=0.005, max=0.5, step=0.005,
                          tooltip="Low-pass strength, in cycles per pixel: lower blurs away more clothing and hair "
                                  "texture; 0.5 keeps the driver sharp.")


def greyscale_input() -> io.Boolean.Input:
    return io.Boolean.Input("greyscale", default=False, tooltip="Drop the driver's colours from the pose cue.")


def softness_input() -> io.Float.Input:
    return io.Float.Input("softness", default=LocationConfig.softness, min=0.0, max=64.0, step=0.5,
                          tooltip="Blur of the location masks' edges, in pixels.")


def grid_input() -> io.Int.Input:
    return io.Int.Input("grid", default=LocationConfig.grid, min=0, max=64, step=1,
                        tooltip="Body mask coarsened to cells of this many pixels so the driver's outline does not "
                                "leak their body shape (0 = keep the outline).")


def margin_input() -> io.Float.Input:
    return io.Float.Input("face_margin", default=FaceConfig.margin, min=1.0, max=4.0, step=0.05,
                          tooltip="Face crop side as a multiple of the detected face: lower zooms in.")


def align_input() -> io.Combo.Input:
    # optional, and the last widget, so workflows saved before it load and run as they did (fixed)
    return io.Combo.Input("align", options=list(ALIGN_MODES), default=AlignConfig.mode, optional=True,
                          tooltip="How the driver is placed on the reference. fixed: one scale and shift for the "
                                  "clip, the driver's first body box onto the reference's (StableAnimator; a "
                                  "walking driver may leave the picture). in-place: the same scale, the driver "
                                  "kept where the reference stands. face: scaled by the faces, for a full-body "
                                  "driver on a portrait or half-body reference (body widths where no face is "
                                  "found). face-in-place: both.")


def report_text(triplet: CueTriplet, ran: Optional[dict[str, str]] = None) -> str:
    """The cue report as one JSON text, with which segmenter and face detector ran (``ran``); its warning
    line is logged and shown on the node."""
    report = triplet.report() | (ran or {})
    if report.get("warning"):
        log.warning("%s", report["warning"])
    report.pop("flagged_frames", None)
    report["alignment"] = {k: v for k, v in report["alignment"].items() if k != "shifts"}
    return json.dumps(report)


def image_output(name: str, tooltip: str) -> io.Image.Output:
    return io.Image.Output(name, display_name=name, tooltip=tooltip)


def mask_output(name: str, tooltip: str) -> io.Mask.Output:
    return io.Mask.Output(name, display_name=name, tooltip=tooltip)


def progress_for(frames: torch.Tensor):
    return _progress.progress_bar(2 * frames.shape[0])


# -- nodes -----------------------------------------------------------------------------------------
class DirectAnimatorPoseCue(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorPoseCue",
            display_name="DirectAnimator Pose Cue",
            category=CATEGORY,
            description="The pose cue: the driver cut out of each frame, low-passed in the frequency domain so "
                        "silhouette and limbs stay and clothing texture goes, on neutral grey. One person is "
                        "followed through the clip.",
            inputs=[frames_input(), mask_input(), cutoff_input(), greyscale_input(), person_index_input(),
                    segmenter_input()],
            outputs=[image_output("pose", "The low-passed driver on neutral grey."),
                     mask_output("person_mask", "The followed person's mask in each frame (1 = the person). For "
                                 "core's WanAnimateToVideo, Cut Out Person grows it into character_mask and "
                                 "cuts it out of the frames for background_video.")],
        )

    @classmethod
    def execute(cls, frames, cutoff, greyscale, person_index, segmenter, mask=None) -> io.NodeOutput:
        config = CueConfig(
            segment=SegmentConfig(person_index=person_index, onnx_path=onnx_path(segmenter, BUILT_IN_SEGMENTER)),
            pose=PoseConfig(cutoff=cutoff, greyscale=greyscale),
            location=LocationConfig(softness=0.0, grid=0),  # the plain person mask, not the soft cue
        )
        triplet = build_triplet(_convert.image_to_frames(frames), config, masks=_convert.mask_to_masks(mask),
                                progress=progress_for(frames), should_stop=_progress.should_stop)
        return io.NodeOutput(_convert.frames_to_image(triplet.pose), _convert.masks_to_mask(triplet.body_mask))


class DirectAnimatorCutOut(io.ComfyNode):
    """Its own node, so the Pose Cue holds no second copy of the video when nothing wants a background."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorCutOut",
            display_name="DirectAnimator Cut Out Person",
            category=CATEGORY,
            description="Character replacement (core's WanAnimateToVideo): the person mask grown, and the driving "
                        "frames with the grown mask blacked out, as Wan's own preprocessing makes its "
                        "character_mask and background_video.",
            inputs=[
                frames_input(),
                io.Mask.Input("mask", tooltip="The person's mask in each frame (above 0.5 = the person), e.g. "
                              "the Pose Cue's person_mask: one per frame, at the frames' size."),
                io.Int.Input("grow", default=0, min=0, max=256, step=1,
                             tooltip="Grow the mask (and the hole cut in background) by this many pixels, so a "
                                     "character of another build fits: Wan's own preprocessing grows its mask by "
                                     "about 9 px at 720p. 0 keeps the mask as cut."),
            ],
            outputs=[image_output("background", "The frames with the person (grown_mask) blacked out: "
                                  "WanAnimateToVideo's background_video."),
                     mask_output("grown_mask", "The person's mask grown by grow (1 = the person): "
                                 "WanAnimateToVideo's character_mask, whose 1 is where the new character is "
                                 "drawn.")],
        )

    @classmethod
    def execute(cls, frames, mask, grow) -> io.NodeOutput:
        count, height, width = _convert.image_size(frames)
        masks = check_masks(_convert.mask_to_masks(mask), count, height, width)  # before the frames are converted
        admit_output(count, height, width, "the background")
        person = grow_masks(masks, grow)
        background = cut_out(_convert.image_to_frames(frames), person, in_place=True)  # no second uint8 video
        return io.NodeOutput(_convert.frames_to_image(background), _convert.masks_to_mask(person))


class DirectAnimatorFaceCue(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorFaceCue",
            display_name="DirectAnimator Face Cue",
            category=CATEGORY,
            description="The face cue: the driver's face found in each frame, its box smoothed over time, cropped, "
                        "zoomed and centred. Frames with no face come out black and are flagged in face_found.",
            inputs=[
                frames_input(),
                io.Mask.Input("mask", optional=True, tooltip="Person mask per frame: the face is then looked for "
                              "on that person only. Leave empty to take the clearest face in the frame."),
                io.Int.Input("width", default=512, min=64, max=4096, step=16, tooltip="Face cue width in pixels."),
                io.Int.Input("height", default=512, min=64, max=4096, step=16, tooltip="Face cue height in pixels."),
                margin_input(),
                io.Float.Input("smoothing", default=FaceConfig.smooth_frames, min=0.0, max=30.0, step=0.5,
                               tooltip="Temporal smoothing of the face box, in frames: higher holds the crop "
                                       "steadier; 0 follows every detection."),
                face_detector_input(),
            ],
            outputs=[image_output("face", "The driver's face, centred and zoomed; black where none was found. At "
                                  "512x512 it is core WanAnimateToVideo's face_video (its black frames are what "
                                  "that node feeds the negative: no face)."),
                     mask_output("face_found", "1 for frames where a face was found, 0 elsewhere.")],
        )

    @classmethod
    def execute(cls, frames, width, height, face_margin, smoothing, face_detector, mask=None) -> io.NodeOutput:
        admit_output(int(frames.shape[0]) if frames.ndim == 4 else 0, height, width, "the face cue")
        config = CueConfig(face=FaceConfig(size=(height, width), margin=face_margin, smooth_frames=smoothing,
                                           onnx_path=onnx_path(face_detector, BUILT_IN_FACE)))
        faces, found = build_face_cue(_convert.image_to_frames(frames), config, _convert.mask_to_masks(mask),
                                      progress_for(frames), _progress.should_stop)
        flags = torch.from_numpy(found).float()[:, None, None].expand(-1, height, width).contiguous()
        return io.NodeOutput(_convert.frames_to_image(faces), flags)


class DirectAnimatorLocationCue(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorLocationCue",
            display_name="DirectAnimator Location Cue",
            category=CATEGORY,
            description="The location cue: soft body and face masks of the driver, moved and scaled onto the "
                        "reference's body when a reference is connected (StableAnimator-style alignment).",
            inputs=[
                frames_input(), mask_input(),
                io.Image.Input("reference", optional=True, tooltip="Reference image to align the masks to; they "
                               "are then drawn at its size. Leave empty to keep the driver's frame."),
                io.Mask.Input("reference_mask", optional=True, tooltip="Mask of the person in the reference image; "
                              "without it the reference's body is found by the built-in detectors."),
                softness_input(), grid_input(), person_index_input(), segmenter_input(), align_input(),
            ],
            outputs=[mask_output("body_mask", "Soft body mask, aligned to the reference."),
                     mask_output("face_mask", "Soft face mask, aligned to the reference."),
                     image_output("preview", "Body mask in red, face mask in green.")],
        )

    @classmethod
    def execute(cls, frames, softness, grid, person_index, segmenter, mask=None, reference=None,
                reference_mask=None, align=AlignConfig.mode) -> io.NodeOutput:
        config = CueConfig(
            segment=SegmentConfig(person_index=person_index, onnx_path=onnx_path(segmenter, BUILT_IN_SEGMENTER)),
            location=LocationConfig(softness=softness, grid=grid), align=AlignConfig(mode=align),
        )
        triplet = build_triplet(
            _convert.image_to_frames(frames), config,
            reference=None if reference is None else _convert.single_image(reference),
            reference_mask=_convert.single_mask(reference_mask), masks=_convert.mask_to_masks(mask),
            progress=progress_for(frames), should_stop=_progress.should_stop)
        warning = triplet.report().get("warning")
        if warning:
            log.warning("%s", warning)
        return io.NodeOutput(_convert.masks_to_mask(triplet.body_mask), _convert.masks_to_mask(triplet.face_mask),
                             _convert.frames_to_image(triplet.location),
                             ui=ui.PreviewText(warning) if warning else None)


class DirectAnimatorCueTriplet(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="DirectAnimatorCueTriplet",
            display_name="DirectAnimator Cue Triplet",
            category=CATEGORY,
            description="All three driving cues (pose, face, location) from a driving video, aligned to the "
                        "reference image, for the DirectAnimator sampler; plus a side-by-side preview.",
            inputs=[
                frames_input(),
                io.Image.Input("reference", tooltip="The reference image to animate; the cues are aligned to its "
                               "person and drawn at its size."),
                mask_input(),
                io.Mask.Input("reference_mask", optional=True, tooltip="Mask of the person in the reference image; "
                              "without it the built-in detectors find them."),
                cutoff_input(), greyscale_input(), softness_input(), grid_input(), margin_input(),
                person_index_input(), segmenter_input(), face_detector_input(),
                io.Int.Input("preview_height", default=256, min=64, max=1024, step=16,
                             tooltip="Height of the side-by-side preview (pose | face | location)."),
                align_input(),
            ],
            outputs=[
                DACues.Output("cues", display_name="cues", tooltip="The cue triplet, for the DirectAnimator sampler."),
                image_output("preview", "Pose | face | location, side by side."),
                image_output("pose", "The pose cue at the reference's size."),
                image_output("face", "The face cue; black where no face was found."),
                image_output("location", "The location cue: body mask in red, face mask in green."),
                io.String.Output("report", display_name="report",
                                 tooltip="The cues' report as JSON: frames with a person and a face, the "
                                         "alignment, per-frame quality counts (frames_blank, frames_off_canvas, "
                                         "frames_suspect_switch, frames_mostly_background) and a warning line "
                                         "when any of them is not 0."),
            ],
        )

    @classmethod
    def execute(cls, frames, reference, cutoff, greyscale, softness, grid, face_margin, person_index, segmenter,
                face_detector, preview_height, mask=None, reference_mask=None,
                align=AlignConfig.mode) -> io.NodeOutput:
        config = CueConfig(
            segment=SegmentConfig(person_index=person_index, onnx_path=onnx_path(segmenter, BUILT_IN_SEGMENTER)),
            pose=PoseConfig(cutoff=cutoff, greyscale=greyscale),
            face=replace(FaceConfig(), margin=face_margin, onnx_path=onnx_path(face_detector, BUILT_IN_FACE)),
            location=LocationConfig(softness=softness, grid=grid), align=AlignConfig(mode=align),
        )
        triplet = build_triplet(
            _convert.image_to_frames(frames), config, reference=_convert.single_image(reference),
            reference_mask=_convert.single_mask(reference_mask), masks=_convert.mask_to_masks(mask),
            progress=progress_for(frames), should_stop=_progress.should_stop)
        image = _convert.frames_to_image
        ran = {"segmenter": "the connected mask" if mask is not None else segmenter, "face_detector": face_detector}
        report = report_text(triplet, ran)
        warning = json.loads(report).get("warning")
        return io.NodeOutput(triplet, image(triplet.preview(preview_height)), image(triplet.pose),
                             image(triplet.face), image(triplet.location), report,
                             ui=ui.PreviewText(warning) if warning else None)


NODES: list[type[io.ComfyNode]] = [
    DirectAnimatorPoseCue, DirectAnimatorCutOut, DirectAnimatorFaceCue, DirectAnimatorLocationCue,
    DirectAnimatorCueTriplet,
]
