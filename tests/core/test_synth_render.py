"""Synthetic world rendering: determinism, exact masks, self-occlusion by depth, face boxes, joints."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from directanimator_core.errors import InputError
from directanimator_core.synth import (
    ANGLE_NAMES, JOINT_NAMES, Motion, flat_scene, render, same_id_clip, sample_identity, sample_motion,
    sample_scene)
from directanimator_core.synth.figure import LABEL
from directanimator_core.synth.identity import FIGURE_MAX, FIGURE_MIN

SIZE = 64


def still_motion(frames: int = 1, **angles: float) -> Motion:
    """A motion holding fixed angles, facing the camera, centred, eyes open, mouth shut."""
    values = np.zeros((frames, len(ANGLE_NAMES)), dtype=np.float32)
    for name, value in angles.items():
        values[:, ANGLE_NAMES.index(name)] = value
    zeros, ones = np.zeros(frames, np.float32), np.ones(frames, np.float32)
    return Motion(seed=0, kind="smooth", angles=values, root_x=zeros, bounce=zeros, yaw=zeros, mouth=zeros, eyes=ones)


def test_same_seed_gives_identical_bytes_and_other_seeds_differ() -> None:
    first, again, other = same_id_clip(3, 4, SIZE, SIZE), same_id_clip(3, 4, SIZE, SIZE), same_id_clip(5, 4, SIZE, SIZE)
    for field in dataclasses.fields(first.render):
        assert np.array_equal(getattr(first.render, field.name), getattr(again.render, field.name)), field.name
    assert first.identity == again.identity
    assert not np.array_equal(first.render.frames, other.render.frames)
    assert first.identity != other.identity


def test_same_seed_gives_identical_bytes_in_a_fresh_process() -> None:
    import hashlib
    import subprocess
    import sys

    from harness.paths import REPO

    code = ("import hashlib; from directanimator_core.synth import same_id_clip; "
            "r = same_id_clip(3, 3, 64, 64).render; "
            "print(hashlib.sha256(r.frames.tobytes() + r.person.tobytes() + r.joints.tobytes()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    r = same_id_clip(3, 3, 64, 64).render
    assert out.stdout.strip() == hashlib.sha256(r.frames.tobytes() + r.person.tobytes() + r.joints.tobytes()).hexdigest()


def test_outputs_have_the_documented_shapes_and_types() -> None:
    clip = same_id_clip(2, 3, SIZE, 96)
    r = clip.render
    assert r.frames.shape == (3, SIZE, 96, 3) and r.frames.dtype == np.uint8
    assert r.person.shape == r.face.shape == r.parts.shape == (3, SIZE, 96) and r.person.dtype == bool
    assert r.face_boxes.shape == (3, 4) and r.face_boxes.dtype == np.int32
    assert r.joints.shape == (3, len(JOINT_NAMES), 2) and r.joint_visible.shape == r.joint_depth.shape == (3, 18)
    assert r.joint_names == JOINT_NAMES


@pytest.mark.parametrize("colour", [(0, 0, 0), (255, 255, 255), (255, 0, 255)])
def test_person_mask_is_exactly_the_pixels_the_figure_painted(colour) -> None:
    # The figure's palette keeps to [16, 239], so on a background outside it every painted pixel moves.
    motion = sample_motion(7, 5, "dance")
    for seed in (1, 4):
        r = render(sample_identity(seed), motion, flat_scene(colour, jitter=0.01), SIZE, SIZE)
        painted = (r.frames != np.array(colour, np.uint8)).any(axis=-1)
        assert np.array_equal(painted, r.person)
        assert r.person.any(axis=(1, 2)).all()
        assert not (r.face & ~r.person).any()  # the face is part of the person


def test_identity_palette_stays_in_the_studio_range() -> None:
    for seed in range(20):
        identity = sample_identity(seed)
        colours = [v for v in dataclasses.asdict(identity).values() if isinstance(v, tuple)]
        assert colours and all(FIGURE_MIN <= c <= FIGURE_MAX for colour in colours for c in colour)


def test_arm_in_front_changes_torso_pixels_and_arm_behind_does_not() -> None:
    # Flexion +b and -b project to the same picture at yaw 0; only the depth (front / behind) differs.
    across = dict(r_shoulder_abd=-0.5, r_elbow=0.0)
    front = still_motion(r_shoulder_flex=0.6, **across)
    behind = still_motion(r_shoulder_flex=-0.6, **across)
    down = still_motion(r_shoulder_abd=0.15)
    identity, scene = sample_identity(6), flat_scene((0, 0, 0))
    front_r, behind_r, down_r = (render(identity, m, scene, 128, 128) for m in (front, behind, down))
    torso = (down_r.parts[0] == LABEL["torso"]).astype(np.uint8)
    interior = cv2.erode(torso, np.ones((3, 3), np.uint8), iterations=2).astype(bool)  # away from AA edges
    assert interior.sum() > 200
    assert np.array_equal(behind_r.frames[0][interior], down_r.frames[0][interior])
    changed = (front_r.frames[0] != down_r.frames[0]).any(-1) & interior
    assert changed.sum() > 30
    arm_labels = {LABEL["r_upper_arm"], LABEL["r_forearm"], LABEL["r_hand"]}
    arm = np.isin(front_r.parts[0], list(arm_labels)).astype(np.uint8)
    assert not (changed & ~cv2.dilate(arm, np.ones((3, 3), np.uint8)).astype(bool)).any()  # the arm (+ its AA edge)
    wrist = JOINT_NAMES.index("r_wrist")
    assert front_r.joint_visible[0, wrist] and not behind_r.joint_visible[0, wrist]
    assert front_r.joint_depth[0, wrist] > 0 > behind_r.joint_depth[0, wrist]
    assert np.allclose(front_r.joints, behind_r.joints)


def test_face_boxes_are_the_tight_boxes_of_the_face_masks() -> None:
    r = same_id_clip(9, 6, SIZE, SIZE, kind="turn").render
    for face, (x0, y0, x1, y1) in zip(r.face, r.face_boxes):
        ys, xs = np.nonzero(face)
        assert len(xs), "a turning figure keeps its face in view"
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_visible_joints_sit_on_their_own_parts() -> None:
    r = same_id_clip(4, 4, SIZE, SIZE).render
    assert r.joint_visible.mean() > 0.5
    x, y = np.rint(r.joints[..., 0]).astype(int), np.rint(r.joints[..., 1]).astype(int)
    frames = np.arange(4)[:, None]
    on_person = r.person[frames, np.clip(y, 0, SIZE - 1), np.clip(x, 0, SIZE - 1)]
    assert on_person[r.joint_visible].all()


def test_walking_crosses_the_frame_and_turning_changes_facing() -> None:
    walk = sample_motion(12, 30, "walk")
    r = render(sample_identity(0), walk, flat_scene(), SIZE, SIZE)
    neck = r.joints[:, JOINT_NAMES.index("neck"), 0]
    assert abs(neck[-1] - neck[0]) > 0.3 * SIZE
    turn = sample_motion(3, 30, "turn")
    assert abs(turn.yaw[-1] - turn.yaw[0]) > 1.0


def test_expression_changes_only_the_face() -> None:
    identity = sample_identity(8)
    shut, open_ = still_motion(), still_motion()
    open_ = dataclasses.replace(open_, mouth=np.ones(1, np.float32), eyes=np.zeros(1, np.float32))
    a, b = (render(identity, m, flat_scene(), 128, 128) for m in (shut, open_))
    differs = (a.frames[0] != b.frames[0]).any(-1)
    assert differs.sum() > 10
    assert a.face[0][differs].all()


@pytest.mark.parametrize("call, named", [
    (lambda: render(sample_identity(0), sample_motion(0, 2), sample_scene(0), 16, 64), "height=16"),
    (lambda: render(sample_identity(0), sample_motion(0, 2), sample_scene(0), 64, 4096), "width=4096"),
    (lambda: sample_motion(0, 0), "frames=0"),
    (lambda: same_id_clip(0, 0, 64, 64), "frames=0"),
    (lambda: sample_motion(0, 4, "moonwalk"), "'moonwalk'"),
    (lambda: same_id_clip(-2, 4, 64, 64), "seed=-2"),
])
def test_bad_arguments_raise_a_one_line_input_error(call, named) -> None:
    with pytest.raises(InputError) as error:
        call()
    assert named in str(error.value) and "\n" not in str(error.value)


def test_clothing_pattern_puts_high_frequency_texture_on_the_torso() -> None:
    identity = sample_identity(6)
    motion, scene = still_motion(), flat_scene()
    spread = {}
    for pattern in ("plain", "stripes", "checks", "dots"):
        r = render(dataclasses.replace(identity, shirt_pattern=pattern), motion, scene, 256, 256)
        torso = cv2.erode((r.parts[0] == LABEL["torso"]).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=2)
        spread[pattern] = r.frames[0][torso.astype(bool)].astype(float).std(axis=0).max()
    assert spread["plain"] < 1.0
    assert min(spread["stripes"], spread["checks"], spread["dots"]) > 20.0


def test_pose_cue_low_pass_removes_the_clothing_pattern() -> None:
    from directanimator_core.cues.config import PoseConfig
    from directanimator_core.cues.lowpass import high_frequency_energy, lowpass

    identity = dataclasses.replace(sample_identity(6), shirt_pattern="checks", pants_pattern="stripes")
    frames = render(identity, still_motion(), flat_scene((128, 128, 128)), 128, 128).frames
    before = high_frequency_energy(frames)
    after = high_frequency_energy(lowpass(frames, PoseConfig().cutoff))
    assert before > 0.02 and after < 0.01 * before
