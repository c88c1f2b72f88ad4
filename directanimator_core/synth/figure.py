"""The figure's parts for one frame: polygons, fills, part labels and depths, ready to paint back to front.

Depth is the posed z of each part (towards the camera positive), so an arm swung forward lands in
front of the torso and one swung back lands behind it, and in a side view the far limbs fall behind
the body: the self-occlusion that skeletons get wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .identity import Identity, studio
from .kinematics import POINT_NAMES
from .paint import Fill, Flat, Pattern, capsule, clip_half_plane, ellipse

PART_NAMES = ("background", "torso", "pelvis", "neck", "head", "hair",
              "r_upper_arm", "r_forearm", "r_hand", "l_upper_arm", "l_forearm", "l_hand",
              "r_thigh", "r_shin", "r_foot", "l_thigh", "l_shin", "l_foot")
LABEL = {name: i for i, name in enumerate(PART_NAMES)}
INDEX = {name: i for i, name in enumerate(POINT_NAMES)}
MOUTH_INSIDE = (110, 30, 42)
EYE_WHITE = (236, 234, 228)
# How far round the head (z from the head centre, head radii) a face point may turn and still show:
# a profile keeps its nose (it sticks out past the outline), an eye needs to face the camera.
FACING = {"nose": -0.05, "r_eye": 0.25, "l_eye": 0.25, "mouth": 0.0, "r_ear": -0.6, "l_ear": -0.6}


@dataclass(frozen=True, eq=False)
class Part:
    depth: float
    label: int
    polygon: np.ndarray  # (N, 2) pixels
    fill: Fill


@dataclass(frozen=True, eq=False)
class FrameGeometry:
    """One frame's placed points: xy (P, 2) pixels, z (P,) stature units; scale: pixels per stature unit."""

    xy: np.ndarray
    z: np.ndarray
    scale: float
    yaw: float
    mouth: float
    eyes: float

    def __call__(self, name: str) -> np.ndarray:
        return self.xy[INDEX[name]]

    def depth(self, *names: str) -> float:
        return sum(float(self.z[INDEX[n]]) for n in names) / len(names)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.hypot(v[0], v[1])), 1e-6)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return studio(np.array(colour, dtype=np.float64) * factor)


def _pattern(identity: Identity, g: FrameGeometry, which: str, origin: np.ndarray, axis: np.ndarray) -> Pattern:
    kind, colour, accent = ((identity.shirt_pattern, identity.shirt, identity.shirt_accent) if which == "shirt"
                            else (identity.pants_pattern, identity.pants, identity.pants_accent))
    angle = float(np.arctan2(axis[1], axis[0])) + identity.pattern_angle
    period = max(identity.pattern_period * g.scale, 2.0)  # below 2 px a pattern is pure aliasing
    return Pattern(kind, colour, accent, period, (float(origin[0]), float(origin[1])), angle)


def trunk_parts(identity: Identity, g: FrameGeometry) -> list[Part]:
    """Torso (shirt), pelvis (pants) and neck."""
    neck, pelvis = g("neck"), g("pelvis")
    up = _unit(neck - pelvis)
    across = np.array([-up[1], up[0]])
    c, s = abs(np.cos(g.yaw)), abs(np.sin(g.yaw))
    chest = g.scale * np.hypot(identity.shoulder_half * c, identity.chest_depth_half * s)
    waist = g.scale * np.hypot(identity.hip_half * c, identity.chest_depth_half * 0.9 * s)
    drop = 0.035 * g.scale * up
    torso = np.array([pelvis - waist * across, neck - drop - chest * across, neck - 0.6 * chest * across + 0.3 * drop,
                      neck + 0.6 * chest * across + 0.3 * drop, neck - drop + chest * across, pelvis + waist * across])
    hips = np.array([pelvis + 0.06 * g.scale * up - waist * across, pelvis + 0.06 * g.scale * up + waist * across,
                     pelvis - 0.07 * g.scale * up + 0.95 * waist * across,
                     pelvis - 0.07 * g.scale * up - 0.95 * waist * across])
    neck_width = 0.42 * identity.head_radius * g.scale
    return [
        Part(0.0, LABEL["torso"], torso, _pattern(identity, g, "shirt", neck, up)),
        Part(-0.02, LABEL["pelvis"], hips, _pattern(identity, g, "pants", pelvis, up)),
        Part(-0.03, LABEL["neck"], capsule(neck + drop, g("head"), neck_width), Flat(_shade(identity.skin, 0.92))),
    ]


def limb_parts(identity: Identity, g: FrameGeometry, side: str) -> list[Part]:
    """One arm (sleeve, forearm, hand) and one leg (thigh, shin, shoe)."""
    arm, leg = identity.arm_width * g.scale, identity.leg_width * g.scale
    p = lambda n: g(f"{side}_{n}")  # noqa: E731
    z = lambda *n: g.depth(*(f"{side}_{k}" for k in n))  # noqa: E731
    skin = Flat(identity.skin)
    sleeve = lambda a, b: _pattern(identity, g, "shirt", p(a), p(b) - p(a))  # noqa: E731
    trouser = lambda a, b: _pattern(identity, g, "pants", p(a), p(b) - p(a))  # noqa: E731
    forearm_fill = sleeve("elbow", "wrist") if identity.long_sleeves else skin
    # Arms at z = 0 (hanging at the sides) sit just in front of the torso; legs sit behind the pelvis.
    return [
        Part(z("shoulder", "elbow") + 0.01, LABEL[f"{side}_upper_arm"],
             capsule(p("shoulder"), p("elbow"), 1.1 * arm, 0.9 * arm), sleeve("shoulder", "elbow")),
        Part(z("elbow", "wrist") + 0.011, LABEL[f"{side}_forearm"],
             capsule(p("elbow"), p("wrist"), 0.88 * arm, 0.72 * arm), forearm_fill),
        Part(z("wrist", "hand") + 0.012, LABEL[f"{side}_hand"], ellipse(p("hand"), (1.05 * arm, 0.85 * arm),
             float(np.arctan2(*(p("hand") - p("wrist"))[::-1]))), skin),
        Part(z("hip", "knee") - 0.1, LABEL[f"{side}_thigh"], capsule(p("hip"), p("knee"), 1.15 * leg, 0.9 * leg),
             trouser("hip", "knee")),
        Part(z("knee", "ankle") - 0.1, LABEL[f"{side}_shin"], capsule(p("knee"), p("ankle"), 0.9 * leg, 0.65 * leg),
             trouser("knee", "ankle")),
        Part(z("ankle", "toe") - 0.099, LABEL[f"{side}_foot"], capsule(p("ankle"), p("toe"), 0.6 * leg, 0.5 * leg),
             Flat(identity.shoes)),
    ]


def head_parts(identity: Identity, g: FrameGeometry) -> list[Part]:
    """Head, ears, face (eyes, brows, nose, mouth) and hair, each at the head's depth with a tie order."""
    head = g("head")
    r = identity.head_radius * g.scale
    up = _unit(g("head_top") - head)
    across = np.array([-up[1], up[0]])
    angle = float(np.arctan2(up[1], up[0]))
    base = g.depth("head")
    outline = ellipse(head, (1.08 * r, 0.93 * r), angle, 32)
    parts = [Part(base + 0.05, LABEL["head"], outline, Flat(identity.skin))]
    parts += _ears(identity, g, base, r)
    parts += [Part(base + 0.05 + 1e-4 * (i + 1), LABEL["head"], poly, fill)
              for i, (poly, fill) in enumerate(_face(identity, g, r, up, across))]
    parts += _hair(identity, g, base, r, up, across, angle)
    return parts


def _ears(identity: Identity, g: FrameGeometry, base: float, r: float) -> list[Part]:
    ears = []
    for side in "rl":
        if _facing(identity, g, f"{side}_ear"):
            ears.append(Part(base + 0.049, LABEL["head"], ellipse(g(f"{side}_ear"), (0.3 * r, 0.2 * r), np.pi / 2, 12),
                             Flat(_shade(identity.skin, 0.9))))
    return ears


def _facing(identity: Identity, g: FrameGeometry, name: str) -> bool:
    return g.z[INDEX[name]] - g.z[INDEX["head"]] > FACING[name] * identity.head_radius


def _face(identity: Identity, g: FrameGeometry, r: float, up: np.ndarray, across: np.ndarray):
    """(polygon, fill) pairs painted on the head in order: nose, eyes, pupils, brows, mouth."""
    shapes = []
    tilt = float(np.arctan2(across[1], across[0]))
    if _facing(identity, g, "nose"):
        tip = g("nose")
        shapes.append((capsule(tip + 0.3 * r * up, tip, 0.09 * r, 0.13 * r), Flat(_shade(identity.skin, 0.82))))
    brow_colour = Flat(_shade(identity.hair, 0.7))
    size = identity.eye_size * r
    for side, sign in (("r", -1.0), ("l", 1.0)):
        if not _facing(identity, g, f"{side}_eye"):
            continue
        eye = g(f"{side}_eye")
        squeeze = 0.35 + 0.65 * abs(np.cos(g.yaw))  # a side view foreshortens the eye
        if g.eyes > 0.25:
            shapes.append((ellipse(eye, (size * squeeze, 0.62 * size * g.eyes), tilt, 16), Flat(EYE_WHITE)))
            look = eye + 0.35 * size * np.sin(g.yaw) * across
            shapes.append((ellipse(look, (0.5 * size, 0.5 * size * min(1.0, g.eyes * 1.3)), tilt, 12),
                           Flat(identity.eye_colour)))
        else:  # shut: a lid line
            shapes.append((capsule(eye - size * squeeze * across, eye + size * squeeze * across, 0.12 * size),
                           Flat(_shade(identity.skin, 0.6))))
        brow_axis = across * np.cos(identity.brow_tilt) + sign * up * np.sin(identity.brow_tilt)
        brow = eye + 0.32 * r * up
        shapes.append((capsule(brow - 1.3 * size * squeeze * brow_axis, brow + 1.3 * size * squeeze * brow_axis,
                               0.5 * identity.brow_thickness * r), brow_colour))
    if _facing(identity, g, "mouth"):
        mouth = g("mouth")
        width = 0.5 * identity.mouth_width * r * (0.4 + 0.6 * abs(np.cos(g.yaw)))
        if g.mouth > 0.15:
            shapes.append((ellipse(mouth, (width, max(0.32 * r * g.mouth, 0.6)), tilt, 16), Flat(MOUTH_INSIDE)))
        else:
            lip = studio(np.array(identity.skin) * 0.6 + np.array([150, 40, 50]) * 0.4)
            shapes.append((capsule(mouth - width * across, mouth + width * across, max(0.06 * r, 0.5)), Flat(lip)))
    return shapes


def _hair(identity: Identity, g: FrameGeometry, base: float, r: float, up: np.ndarray, across: np.ndarray,
          angle: float) -> list[Part]:
    if identity.hair_style == "bald":
        return []
    head, fill = g("head"), Flat(identity.hair)
    back = -np.sin(g.yaw)  # +1 when the back of the head is to picture-right
    slope = 0.8 * np.sin(g.yaw)
    # The cap: the hair ellipse above a fringe line that drops towards the back of the head.
    normal = -(up - slope * across)
    cap = clip_half_plane(ellipse(head, (1.18 * r, 1.03 * r), angle, 40), normal,
                          float(normal @ head) - 0.5 * r)
    parts = [Part(base + 0.051 + 0.01, LABEL["hair"], cap, fill)]
    if identity.hair_style == "long":
        tail = head - 1.7 * r * up + 0.5 * r * back * across
        parts.append(Part(base - 0.2, LABEL["hair"], capsule(head + 0.2 * r * up, tail, 1.1 * r, 0.85 * r), fill))
    elif identity.hair_style == "bun":
        bun = head + 1.05 * r * up + 0.55 * r * back * across
        parts.append(Part(base + 0.048, LABEL["hair"], ellipse(bun, (0.45 * r, 0.45 * r), 0.0, 16), fill))
    return parts


def figure_parts(identity: Identity, g: FrameGeometry) -> list[Part]:
    """Every part of the figure in paint order (back to front; ties keep build order).

    Args:
        identity: the look.
        g: this frame's placed points.
    """
    parts = trunk_parts(identity, g) + limb_parts(identity, g, "r") + limb_parts(identity, g, "l")
    parts += head_parts(identity, g)
    order = sorted(range(len(parts)), key=lambda i: (parts[i].depth, i))
    return [parts[i] for i in order]
