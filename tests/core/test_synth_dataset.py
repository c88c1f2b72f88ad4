"""Synthetic world datasets: cross-ID ground truth, the seed-parity split, skeleton maps."""

from __future__ import annotations

import numpy as np
import pytest

from directanimator_core.cues import align
from directanimator_core.cues.boxes import mask_box
from directanimator_core.default_model.recipe import DEFAULT
from directanimator_core.default_model.world import exact_triplet
from directanimator_core.errors import InputError
from directanimator_core.synth import JOINT_NAMES, cross_id_pair, draw_skeleton, same_id_clip, split_of, split_seed
from directanimator_core.synth.dataset import derived_seed
from directanimator_core.synth.skeleton_map import BONES

SIZE = 64
LIMBS = [("r_shoulder", "r_elbow"), ("r_elbow", "r_wrist"), ("l_shoulder", "l_elbow"), ("l_elbow", "l_wrist"),
         ("r_hip", "r_knee"), ("r_knee", "r_ankle"), ("l_hip", "l_knee"), ("l_knee", "l_ankle"), ("neck", "r_shoulder"), ("r_hip", "l_hip")]


def bone_directions(joints: np.ndarray) -> np.ndarray:
    """Unit picture-plane direction of each limb, (F, len(LIMBS), 2)."""
    a = joints[:, [JOINT_NAMES.index(p) for p, _ in LIMBS]]
    b = joints[:, [JOINT_NAMES.index(q) for _, q in LIMBS]]
    v = (b - a).astype(np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize("kind", ["dance", "walk"])
def test_cross_pair_driver_and_truth_share_the_joint_angles_and_differ_in_look(kind) -> None:
    pair = cross_id_pair(20, 6, SIZE, SIZE, kind=kind)
    driving, truth = pair.driving, pair.truth
    assert driving.motion is truth.motion and driving.identity != truth.identity
    # Orthographic projection of the same 3D limb directions: equal picture directions, body's own lengths.
    np.testing.assert_allclose(bone_directions(driving.render.joints), bone_directions(truth.render.joints), atol=2e-3)
    lengths = lambda j: np.linalg.norm(j[:, 2] - j[:, 3], axis=-1)  # noqa: E731 - right upper arm
    assert not np.allclose(lengths(driving.render.joints), lengths(truth.render.joints), rtol=0.02)
    assert np.abs(driving.render.frames.astype(int) - truth.render.frames.astype(int)).mean() > 10


def test_cross_pair_reference_is_identity_a_in_its_own_scene() -> None:
    pair = cross_id_pair(21, 3, SIZE, SIZE)
    assert pair.reference.shape == (SIZE, SIZE, 3)
    assert np.array_equal(pair.reference, pair.reference_render.frames[0])
    # Same identity and scene as the truth: where neither shows the figure, the background pixels agree.
    empty = ~pair.reference_render.person[0] & ~pair.truth.render.person[0]
    assert np.array_equal(pair.reference[empty], pair.truth.render.frames[0][empty])


def test_cross_pair_truth_stands_where_the_aligned_driver_cues_put_it() -> None:
    # The truth follows the fixed cue alignment: the driver's silhouette warped by the pair's alignment
    # covers the truth's figure in every frame (what differs is only A's own proportions), and the cue
    # pipeline computes the very alignment the truth was placed by.
    for seed in (split_seed("heldout", 10_000), split_seed("heldout", 10_003), 40):
        pair = cross_id_pair(seed, 9, 128, 128)
        warped = align.warp(pair.driving.render.person.astype(np.uint8) * 255, pair.alignment) > 127
        truth = pair.truth.render.person
        iou = (warped & truth).sum(axis=(1, 2)) / (warped | truth).sum(axis=(1, 2))
        assert iou.min() > 0.65, iou
        triplet = exact_triplet(pair.driving.render, DEFAULT, pair.reference_render)
        assert triplet.alignment.scale == pytest.approx(pair.alignment.scale)
        assert (triplet.alignment.tx, triplet.alignment.ty) == pytest.approx((pair.alignment.tx, pair.alignment.ty))
        # The joints are the driver's joints moved by the alignment, up to A's own bone lengths.
        drive = pair.driving.render.joints.astype(np.float64) * pair.alignment.scale
        pelvis = [JOINT_NAMES.index("r_hip"), JOINT_NAMES.index("l_hip")]
        moved = drive[:, pelvis].mean(1) + np.array([pair.alignment.tx, pair.alignment.ty]) + 0.5 * pair.alignment.scale - 0.5
        np.testing.assert_allclose(pair.truth.render.joints[:, pelvis].mean(1), moved, atol=5)  # A's own hip width


def test_cross_pair_truth_background_is_the_reference_background_held_still() -> None:
    pair = cross_id_pair(split_seed("heldout", 10_001), 6, SIZE, SIZE)
    for frame, person in zip(pair.truth.render.frames, pair.truth.render.person):
        empty = ~pair.reference_render.person[0] & ~person
        assert np.array_equal(pair.reference[empty], frame[empty])


def test_same_seed_cross_pair_is_reproducible() -> None:
    a, b = cross_id_pair(8, 2, SIZE, SIZE), cross_id_pair(8, 2, SIZE, SIZE)
    assert np.array_equal(a.truth.render.frames, b.truth.render.frames)
    assert np.array_equal(a.driving.render.frames, b.driving.render.frames)


def test_train_and_heldout_seeds_never_overlap_even_when_derived() -> None:
    train = {split_seed("train", i) for i in range(200)}
    heldout = {split_seed("heldout", i) for i in range(200)}
    assert not train & heldout
    assert {split_of(s) for s in train} == {"train"} and {split_of(s) for s in heldout} == {"heldout"}
    for seed in list(train)[:20] + list(heldout)[:20]:
        assert all(split_of(derived_seed(seed, role)) == split_of(seed) for role in range(5))
    pair = cross_id_pair(split_seed("heldout", 3), 1, SIZE, SIZE)
    assert split_of(pair.truth.identity.seed) == split_of(pair.driving.identity.seed) == "heldout"
    assert split_of(pair.truth.motion.seed) == "heldout"
    with pytest.raises(InputError, match="'test'"):
        split_seed("test", 0)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=-1)


def test_skeleton_map_draws_at_the_joints_and_nowhere_else() -> None:
    r = same_id_clip(6, 2, SIZE, SIZE).render
    maps = draw_skeleton(r.joints, SIZE, SIZE, thickness=2)
    assert maps.shape == (2, SIZE, SIZE, 3) and maps.dtype == np.uint8
    for f in range(2):
        for x, y in np.rint(r.joints[f]).astype(int):
            if 0 <= x < SIZE and 0 <= y < SIZE:
                assert maps[f, y, x].any()
        ys, xs = np.nonzero(maps[f].any(-1))
        lit = np.stack([xs, ys], axis=1).astype(np.float64)
        near = np.min([_segment_distance(lit, r.joints[f, a], r.joints[f, b]) for a, b in BONES], axis=0)
        assert near.max() < 5.0  # dot radius 2 + anti-aliasing; the figure spans ~40 px


def test_skeleton_map_leaves_out_invisible_joints() -> None:
    r = same_id_clip(6, 1, SIZE, SIZE).render
    visible = np.ones((1, len(JOINT_NAMES)), bool)
    visible[0, JOINT_NAMES.index("l_wrist")] = False
    all_, some = draw_skeleton(r.joints, SIZE, SIZE), draw_skeleton(r.joints, SIZE, SIZE, visible)
    assert (all_ != some).any()
    with pytest.raises(InputError, match=r"\(F, 18, 2\)"):
        draw_skeleton(r.joints[..., :1], SIZE, SIZE)


def test_cross_pair_reference_stands_where_the_motion_starts_in_a_pose_of_its_own() -> None:
    for seed in (21, 23, 25):
        pair = cross_id_pair(seed, 3, SIZE, SIZE)
        reference, truth = pair.reference_render.joints[0], pair.truth.render.joints[0]
        # Same place: the alignment puts the driver's first box on the reference's, and the truth follows it.
        centre = lambda mask: np.argwhere(mask).mean(0)  # noqa: E731
        box = lambda mask: (lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]))(mask_box(mask))  # noqa: E731
        assert np.abs(box(pair.reference_render.person[0]) - box(pair.truth.render.person[0])).max() < 0.06 * SIZE
        assert np.abs(centre(pair.reference_render.person[0]) - centre(pair.truth.render.person[0])).max() < 0.08 * SIZE
        assert np.abs(reference - truth).max() > 2  # another pose
