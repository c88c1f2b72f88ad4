"""MediaPipe's short-range face detector (BlazeFace, Bazarevsky et al. 2019; face_detection_short_range.tflite
from the mediapipe 0.10.21 wheel, which scripts/fetch_detectors.py takes), run by ``cv2.dnn`` and decoded here.

The model sees a 128x128 RGB image in [-1, 1] and gives, for each of 896 SSD anchors, one face logit
(``classificators`` (1, 896, 1)) and 16 regressors (``regressors`` (1, 896, 16)): box centre x, y, width,
height, then six keypoints (x, y), all in input pixels relative to the anchor's centre. The anchors are
MediaPipe's for this model: stride 8 (16x16 cells, 2 anchors each) then stride 16 (8x8 cells, 6 each),
centred in their cells, fixed size. A frame is letterboxed (centred, black bars) so faces keep their aspect.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import cv2
import numpy as np

from ..errors import CheckpointError
from . import lanes

log = logging.getLogger(__name__)

INPUT_SIDE = 128
ANCHOR_LAYOUT = ((8, 2), (16, 6))  # (stride, anchors per cell) of the short-range model
SCORE_THRESHOLD = 0.5  # MediaPipe's min_score_thresh for this model
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold
LOGIT_CLIP = 100.0  # MediaPipe's score_clipping_thresh
OUTPUTS = {"classificators": (1, 896, 1), "regressors": (1, 896, 16)}
FACE_MODEL = "face_detection_short_range.tflite (scripts/fetch_detectors.py)"


def is_blazeface(path: str) -> bool:
    """Whether a face detector file is run as this model: any .tflite (the only TFLite face detector read)."""
    return Path(path).suffix.lower() == ".tflite"


def is_face_model(name: str) -> bool:
    """Whether a file in the model folder is offered as a face detector: an .onnx, or a .tflite whose name
    says face_detection (so the selfie segmenter is not)."""
    name = name.lower()
    return name.endswith(".onnx") or (name.endswith(".tflite") and "face_detection" in name)


@functools.lru_cache(maxsize=1)
def anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1] of the input, in the model's output order (row, column, anchor)."""
    centres = []
    for stride, per_cell in ANCHOR_LAYOUT:
        cells = INPUT_SIDE // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = (np.stack([xs, ys], -1).reshape(-1, 2) + 0.5) / cells  # (cells*cells, 2) as x, y
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def decode(logits: np.ndarray, regressors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (896, 4) x0, y0, x1, y1 in [0, 1] of the input and scores (896,) from the raw outputs.

    Args:
        logits: (896,) face logits.
        regressors: (896, 16) centre x, y, width, height, keypoints, in input pixels.
    """
    centre = regressors[:, :2] / INPUT_SIDE + anchors()  # (896, 2)
    half = regressors[:, 2:4] / INPUT_SIDE / 2  # (896, 2)
    scores = 1 / (1 + np.exp(-np.clip(logits.astype(np.float64), -LOGIT_CLIP, LOGIT_CLIP)))
    return np.concatenate([centre - half, centre + half], 1), scores


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: each kept face is the score-weighted mean of the boxes that overlap it."""
    order = list(np.argsort(-scores))
    kept = []
    while order:
        overlap = _iou(boxes[order[0]], boxes[order])
        group = [order[k] for k in np.nonzero(overlap > iou)[0]] or [order[0]]
        weights = scores[group][:, None]
        kept.append(((boxes[group] * weights).sum(0) / weights.sum(), float(scores[order[0]])))
        order = [order[k] for k in np.nonzero(overlap <= iou)[0] if order[k] not in group]
    return kept


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    lo, hi = np.maximum(box[:2], others[:, :2]), np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), 1)
    areas = np.prod(others[:, 2:] - others[:, :2], 1)
    return inter / np.maximum(np.prod(box[2:] - box[:2]) + areas - inter, 1e-12)


def letterbox(image: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """The image shrunk into a centred INPUT_SIDE square with black bars, its scale and (x, y) offset."""
    height, width = image.shape[:2]
    scale = INPUT_SIDE / max(height, width)
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    offset = np.array([(INPUT_SIDE - w) // 2, (INPUT_SIDE - h) // 2])
    canvas = np.zeros((INPUT_SIDE, INPUT_SIDE, 3), np.uint8)
    canvas[offset[1]:offset[1] + h, offset[0]:offset[0] + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return canvas, scale, offset


def faces(image: np.ndarray, tflite_path: str, threshold: float = SCORE_THRESHOLD) -> list[tuple[np.ndarray, float]]:
    """Faces in an (H, W, 3) uint8 RGB image as (box x0, y0, x1, y1 in its pixels, score)."""
    canvas, scale, offset = letterbox(image)
    logits, regressors = run(_net(tflite_path), canvas)
    boxes, scores = decode(logits, regressors)
    keep = scores >= threshold
    height, width = image.shape[:2]
    found = weighted_nms(boxes[keep], scores[keep])
    return [(np.clip((box * INPUT_SIDE - np.tile(offset, 2)) / scale, 0, [width, height] * 2).astype(np.float64), s)
            for box, s in found]


def run(net: cv2.dnn.Net, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw logits (896,) and regressors (896, 16) for a (128, 128, 3) uint8 RGB canvas."""
    net.setInput(cv2.dnn.blobFromImage(canvas, 2 / 255.0, (INPUT_SIDE, INPUT_SIDE), (127.5,) * 3, swapRB=False))
    names = net.getUnconnectedOutLayersNames()
    outputs = {name: np.asarray(out) for name, out in zip(names, net.forward(names))}
    return outputs["classificators"].reshape(-1), outputs["regressors"].reshape(-1, 16)


@lanes.per_thread
def _net(tflite_path: str) -> cv2.dnn.Net:
    """The model read and run once on a black canvas; CheckpointError in one line when it cannot be read
    or is another model (its outputs are not OUTPUTS)."""
    name = Path(tflite_path).name
    try:
        net = cv2.dnn.readNetFromTFLite(tflite_path)
        names = net.getUnconnectedOutLayersNames()
        net.setInput(np.zeros((1, 3, INPUT_SIDE, INPUT_SIDE), np.float32))
        shapes = {n: tuple(np.asarray(out).shape) for n, out in zip(names, net.forward(names))}
    except cv2.error:
        raise CheckpointError(f"{name} is not a TFLite model OpenCV can run at {INPUT_SIDE}x{INPUT_SIDE} (empty, "
                              f"damaged or another model): pick {FACE_MODEL} in models/directanimator, or the "
                              "built-in one") from None
    if shapes != OUTPUTS:
        raise CheckpointError(f"{name} is not MediaPipe's short-range face detector: its outputs are {shapes}, not "
                              f"{OUTPUTS}: pick {FACE_MODEL} in models/directanimator, or the built-in one")
    log.info("face detector: MediaPipe short-range %s", tflite_path)
    return net
