"""Render (identity, motion, scene) to frames with exact ground truth: masks, face boxes, joints, depth.

    rendered = render(sample_identity(1), sample_motion(2, 17), sample_scene(3), 128, 128)
    rendered.frames  # (F, H, W, 3) uint8 RGB

Placement: the pelvis sits at ``root_x`` of the frame width from the centre, the lowest foot point on
the scene's ground line, one stature unit is ``identity.stature`` x H pixels; the camera's per-frame
shake (scene.camera_path) then moves figure and background together.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import cv2
import numpy as np

from ..errors import InputError
from .figure import FACING, INDEX, LABEL, PART_NAMES, FrameGeometry, figure_parts
from .identity import Identity
from .kinematics import JOINT_NAMES, POINT_NAMES, forward_kinematics
from .motion import Motion
from .paint import Canvas
from .scene import Scene, camera_path, render_background

MIN_SIZE, MAX_SIZE = 32, 1024

# Parts whose pixels may sit over a visible joint (a joint covered by any other part is occluded).
JOINT_PARTS = {
    "nose": ("head",), "neck": ("neck", "torso", "head"), "r_eye": ("head",), "l_eye": ("head",),
    "r_ear": ("head",), "l_ear": ("head",),
    **{f"{s}_shoulder": ("torso", f"{s}_upper_arm", "neck") for s in "rl"},
    **{f"{s}_elbow": (f"{s}_upper_arm", f"{s}_forearm") for s in "rl"},
    **{f"{s}_wrist": (f"{s}_forearm", f"{s}_hand") for s in "rl"},
    **{f"{s}_hip": ("pelvis", "torso", f"{s}_thigh") for s in "rl"},
    **{f"{s}_knee": (f"{s}_thigh", f"{s}_shin") for s in "rl"},
    **{f"{s}_ankle": (f"{s}_shin", f"{s}_foot") for s in "rl"},
}


@dataclass(frozen=True, eq=False)
class Render:
    """A rendered clip and its exact ground truth.

    frames (F, H, W, 3) uint8 RGB. person (F, H, W) bool: every pixel the figure painted. parts (F, H, W)
    uint8: the top part per pixel (PART_NAMES; 0 background and faint edges). face (F, H, W) bool: the
    visible head skin and face (hair excluded). face_boxes (F, 4) int32 x0, y0, x1, y1 (exclusive) of the
    face mask, all zero where no face pixel shows. joints (F, J, 2) float32 pixel x, y in JOINT_NAMES
    order. joint_visible (F, J) bool: inside the frame and not covered by an unrelated part. joint_depth
    (F, J) float32: towards the camera, stature units.
    """

    frames: np.ndarray
    person: np.ndarray
    parts: np.ndarray
    face: np.ndarray
    face_boxes: np.ndarray
    joints: np.ndarray
    joint_visible: np.ndarray
    joint_depth: np.ndarray
    joint_names: ClassVar[tuple[str, ...]] = JOINT_NAMES
    part_names: ClassVar[tuple[str, ...]] = PART_NAMES


def check_size(height: int, width: int, frames: int) -> None:
    """Raise InputError unless the frame size and count can be rendered.

    Args:
        height: H.
        width: W.
        frames: F.
    """
    for name, value in (("height", height), ("width", width)):
        if not MIN_SIZE <= int(value) <= MAX_SIZE:
            raise InputError(f"{name}={value} is outside [{MIN_SIZE}, {MAX_SIZE}]: the figure's face needs at least "
                             f"{MIN_SIZE} pixels; pick a size in that range")
    if int(frames) < 1:
        raise InputError(f"frames={frames} is below 1: render at least one frame")


def place(identity: Identity, motion: Motion, scene: Scene, height: int, width: int) -> tuple[np.ndarray, ...]:
    """Pixel positions (F, P, 2) and depths (F, P) of every posed point, pixels per stature unit (F,)
    and the camera path (F, 3) they were placed with.

    Args:
        identity: proportions and stature.
        motion: angles, root and yaw.
        scene: ground line and camera shake.
        height: H.
        width: W.
    """
    pose = forward_kinematics(identity, motion).points.astype(np.float64)  # (F, P, 3)
    return place_points(pose, identity.stature, motion, scene, height, width)


def place_points(pose: np.ndarray, stature: float, motion: Motion, scene: Scene, height: int,
                 width: int) -> tuple[np.ndarray, ...]:
    """``place`` for posed points (F, P, 3) in stature units, at ``stature`` of the frame height."""
    camera = camera_path(scene, motion.frames).astype(np.float64)  # (F, 3)
    unit = stature * height
    x = width / 2 + motion.root_x[:, None] * width + pose[..., 0] * unit
    y = scene.ground * height + pose[..., 1] * unit
    cx, cy, zoom = (width - 1) / 2, (height - 1) / 2, camera[:, 2:3]
    x = cx + zoom * (x - cx) + camera[:, 0:1] * width
    y = cy + zoom * (y - cy) + camera[:, 1:2] * height
    return np.stack([x, y], axis=-1), pose[..., 2], unit * camera[:, 2], camera


def shake(background: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """The background as this frame's camera sees it (same affine map as the figure's points)."""
    if camera[0] == 0.0 and camera[1] == 0.0 and camera[2] == 1.0:
        return background
    height, width = background.shape[:2]
    cx, cy, zoom = (width - 1) / 2, (height - 1) / 2, camera[2]
    matrix = np.array([[zoom, 0.0, cx * (1 - zoom) + camera[0] * width],
                       [0.0, zoom, cy * (1 - zoom) + camera[1] * height]], dtype=np.float64)
    return cv2.warpAffine(background, matrix, (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT_101)


def render(identity: Identity, motion: Motion, scene: Scene, height: int = 128, width: int = 128) -> Render:
    """Draw ``identity`` performing ``motion`` in ``scene``; deterministic (same inputs, same bytes).

    Args:
        identity: the look (identity.py).
        motion: the trajectories (motion.py).
        scene: background and camera (scene.py).
        height: H pixels.
        width: W pixels.
    """
    check_size(height, width, motion.frames)
    xy, z, scale, camera = place(identity, motion, scene, height, width)
    background = render_background(scene, height, width)
    return draw(identity, motion, xy, z, scale, [shake(background, c) for c in camera])


def render_retargeted(identity: Identity, motion: Motion, scene: Scene, stand_in: Identity, stand_in_scene: Scene,
                      matrix: np.ndarray, height: int = 128, width: int = 128) -> Render:
    """``identity`` performing ``motion`` where an aligned picture of ``stand_in`` doing it shows it.

    The figure is placed as ``stand_in`` is in its own scene (its stature, ground line and camera), then
    moved by ``matrix`` (the cue alignment's warpAffine map, cues/align.py), so its pelvis, feet and
    size follow the aligned driver frame by frame while its proportions, look and joint angles stay its
    own. The background is ``scene`` held still as its first frame shows it (the reference picture).

    Args:
        identity: the look (identity.py).
        motion: the trajectories (motion.py).
        scene: the background (its camera held at frame 0).
        stand_in: the identity whose placement is followed (the driver).
        stand_in_scene: the stand-in's scene (ground line and camera path).
        matrix: (2, 3) map from the stand-in's pixels to this picture's.
        height: H pixels.
        width: W pixels.
    """
    check_size(height, width, motion.frames)
    pose = forward_kinematics(identity, motion).points.astype(np.float64)  # (F, P, 3)
    xy, _, scale, _ = place_points(pose, stand_in.stature, motion, stand_in_scene, height, width)
    xy = xy @ matrix[:, :2].T + matrix[:, 2]
    scale = scale * float(matrix[0, 0])
    still = shake(render_background(scene, height, width), camera_path(scene, 1)[0].astype(np.float64))
    return draw(identity, motion, xy, pose[..., 2], scale, [still] * motion.frames)


def draw(identity: Identity, motion: Motion, xy: np.ndarray, z: np.ndarray, scale: np.ndarray,
         backgrounds: list[np.ndarray]) -> Render:
    """Paint the placed figure (xy (F, P, 2) pixels, z (F, P), scale (F,) pixels per stature unit) over
    one (H, W, 3) float background per frame."""
    frames = motion.frames
    height, width = backgrounds[0].shape[:2]
    out = np.empty((frames, height, width, 3), dtype=np.uint8)
    person = np.empty((frames, height, width), dtype=bool)
    parts = np.empty((frames, height, width), dtype=np.uint8)
    for f in range(frames):
        canvas = Canvas(backgrounds[f])
        geometry = FrameGeometry(xy[f], z[f], float(scale[f]), float(motion.yaw[f]), float(motion.mouth[f]),
                                 float(motion.eyes[f]))
        for part in figure_parts(identity, geometry):
            canvas.paint(part.polygon, part.fill, part.label)
        out[f] = np.rint(np.clip(canvas.rgb, 0, 255))
        person[f] = canvas.cover > 0
        parts[f] = canvas.label
    face = parts == LABEL["head"]
    joints = xy[:, [INDEX[n] for n in JOINT_NAMES]].astype(np.float32)  # (F, J, 2)
    depth = z[:, [INDEX[n] for n in JOINT_NAMES]].astype(np.float32)  # (F, J)
    visible = joint_visibility(joints, parts, z, identity)
    return Render(out, person, parts, face, face_boxes(face), joints, visible, depth)


def face_boxes(face: np.ndarray) -> np.ndarray:
    """Tight boxes x0, y0, x1, y1 (exclusive) of each frame's face mask, (F, 4) int32; zeros when empty.

    Args:
        face: (F, H, W) bool.
    """
    rows, cols = face.any(axis=2), face.any(axis=1)  # (F, H), (F, W)
    boxes = np.zeros((face.shape[0], 4), dtype=np.int32)
    for f in range(face.shape[0]):
        ys, xs = np.flatnonzero(rows[f]), np.flatnonzero(cols[f])
        if len(xs):
            boxes[f] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
    return boxes


def joint_visibility(joints: np.ndarray, parts: np.ndarray, z: np.ndarray, identity: Identity) -> np.ndarray:
    """(F, J) bool: the joint's pixel is inside the frame and shows one of its own parts (JOINT_PARTS);
    face points must also face the camera.

    Args:
        joints: (F, J, 2) pixel positions.
        parts: (F, H, W) part labels.
        z: (F, P) depths of all posed points.
        identity: for the head radius.
    """
    frames, height, width = parts.shape
    px = np.rint(joints).astype(np.int64)
    inside = (px[..., 0] >= 0) & (px[..., 0] < width) & (px[..., 1] >= 0) & (px[..., 1] < height)
    label = parts[np.arange(frames)[:, None], np.clip(px[..., 1], 0, height - 1), np.clip(px[..., 0], 0, width - 1)]
    allowed = np.zeros((len(JOINT_NAMES), len(PART_NAMES)), dtype=bool)
    for j, name in enumerate(JOINT_NAMES):
        allowed[j, [LABEL[p] for p in JOINT_PARTS[name]]] = True
    visible = inside & allowed[np.arange(len(JOINT_NAMES))[None, :], label]
    head = z[:, POINT_NAMES.index("head")]
    for name, threshold in FACING.items():
        if name not in JOINT_NAMES:
            continue
        j = JOINT_NAMES.index(name)
        visible[:, j] &= z[:, INDEX[name]] - head > threshold * identity.head_radius
    return visible
