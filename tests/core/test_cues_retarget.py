"""Retargeting an artist can rely on: the alignment modes on exact ground truth.

A synthetic walker (directanimator_core/synth, exact masks and face boxes) crosses the frame; the
reference is a half-body picture cut from the walker's own first frame and zoomed by a known factor,
so the true scale between the two is known, and where the fixed map puts the walker can be worked
out by hand from the exact boxes. Real stills (the astronaut, Grace Hopper) moved by a known pan check the
face mask against the reference's own detected face.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from directanimator_core.cues.align import shoulder_width
from directanimator_core.cues.boxes import mask_box
from directanimator_core.cues.config import AlignConfig, CueConfig, LocationConfig
from directanimator_core.cues.detectors import detect_faces
from directanimator_core.cues.frames import ArraySource
from directanimator_core.cues.reference import ReferenceBoxes, find_reference
from directanimator_core.cues.segment import body_from_face
from directanimator_core.cues.triplet import DriverTrack, alignment_for, concatenate, render
from directanimator_core.default_model.world import exact_track
from directanimator_core.errors import InputError
from directanimator_core.synth import flat_scene, render as synth_render, sample_identity, sample_motion
from harness import media

HARD = CueConfig(location=LocationConfig(softness=0.0, grid=0))  # exact mask edges to measure
FRAMES, SIDE = 40, 256
ZOOM = 3.0  # reference pixels per driver pixel, by construction


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


@pytest.fixture(scope="module")
def walker():
    """A full-body walker crossing a 256-pixel frame from right to left (exact masks)."""
    return synth_render(sample_identity(1), sample_motion(1, FRAMES, "walk"), flat_scene((20, 60, 200)), SIDE, SIDE)


def half_body(still, zoom: float = ZOOM):
    """The upper half of a render's first frame (head to hips), zoomed by ``zoom``: the picture, its
    exact person mask and its exact face box."""
    body = mask_box(still.person[0])
    x0, y0 = int(body[0]) - 4, int(body[1]) - 4
    x1, y1 = int(body[2]) + 4, int(body[1] + 0.5 * (body[3] - body[1]))
    size = (round((x1 - x0) * zoom), round((y1 - y0) * zoom))
    image = cv2.resize(still.frames[0, y0:y1, x0:x1], size, interpolation=cv2.INTER_LINEAR)
    mask = cv2.resize(still.person[0, y0:y1, x0:x1].astype(np.uint8) * 255, size, interpolation=cv2.INTER_NEAREST)
    face = (still.face_boxes[0].astype(np.float64) - [x0, y0, x0, y0]) * zoom
    return image, mask, face


@pytest.fixture(scope="module")
def portrait(walker):
    """The walker's own first frame cut to a half-body reference, zoomed ZOOM times."""
    image, mask, face = half_body(walker)
    return image, ReferenceBoxes(body=mask_box(mask), face=face, size=image.shape[:2], shoulders=shoulder_width(mask))


def cues(walker, reference: ReferenceBoxes, mode: str, **align):
    track = exact_track(walker)
    alignment = alignment_for(track, reference, AlignConfig(mode=mode, **align))
    return concatenate(list(render(ArraySource(walker.frames), track, alignment, HARD)))


def test_the_fixed_map_is_the_old_one(walker, portrait) -> None:
    """fixed stays StableAnimator's map: the first body box scaled to the reference's height, centred."""
    _, reference = portrait
    driver = mask_box(walker.person[0])
    triplet = cues(walker, reference, "fixed")
    scale = (reference.body[3] - reference.body[1]) / (driver[3] - driver[1])
    assert triplet.alignment.scale == pytest.approx(scale)
    mapped = triplet.alignment.apply(driver)
    assert mapped[3] - mapped[1] == pytest.approx(reference.body[3] - reference.body[1])
    assert _centre(mapped) == pytest.approx(_centre(reference.body))
    assert triplet.alignment.shifts is None and triplet.alignment.mode == "fixed"


def test_fixed_map_reports_the_frames_the_walker_leaves_the_canvas(walker, portrait) -> None:
    _, reference = portrait
    triplet = cues(walker, reference, "fixed")
    # Truth by hand: the fixed map from the exact first box, applied to every exact mask pixel.
    driver = mask_box(walker.person[0])
    scale = (reference.body[3] - reference.body[1]) / (driver[3] - driver[1])
    shift = _centre(reference.body) - scale * _centre(driver)
    height, width = reference.size
    share = []
    for person in walker.person:
        ys, xs = np.nonzero(person)
        x, y = scale * (xs + 0.5) + shift[0], scale * (ys + 0.5) + shift[1]
        share.append(np.mean((x >= 0) & (x < width) & (y >= 0) & (y < height)))
    share = np.array(share)
    gone, there = share < 0.2, share > 0.6
    assert gone.sum() >= 15  # the walk does leave the canvas
    assert triplet.flags.off_canvas[gone].all() and not triplet.flags.off_canvas[there].any()
    assert (triplet.quality[triplet.flags.off_canvas] <= 0.1).all() and (triplet.quality[there] == 1).all()
    report = triplet.report()
    assert report["frames_off_canvas"] == int(triplet.flags.off_canvas.sum())
    assert report["flagged_frames"]["off_canvas"] == np.nonzero(triplet.flags.off_canvas)[0].tolist()
    assert f"{report['frames_off_canvas']} off the canvas" in report["warning"] and "\n" not in report["warning"]


def test_in_place_keeps_the_walker_where_the_reference_stands(walker, portrait) -> None:
    _, reference = portrait
    fixed = cues(walker, reference, "fixed")
    steady = cues(walker, reference, "in-place")
    exact = cues(walker, reference, "in-place", smooth_frames=0)
    target = _centre(reference.body)
    on_canvas = lambda t: np.array([(m > 127).any() for m in t.body_mask])  # noqa: E731
    assert on_canvas(fixed).sum() < FRAMES - 15  # the fixed map loses the walker ...
    assert on_canvas(steady).all() and on_canvas(exact).all()  # ... in place, every frame keeps him
    assert steady.flags.off_canvas.sum() == exact.flags.off_canvas.sum() == 0
    assert steady.alignment.scale == pytest.approx(fixed.alignment.scale)  # the scale stays the fixed one
    for triplet, tolerance in ((exact, 2.0), (steady, 12.0)):
        # the aligned box: the exact box moved by the frame's map (the mask's box can be cut by the canvas)
        centres = np.array([_centre(triplet.alignment.apply(mask_box(p), i)) for i, p in enumerate(walker.person)])
        assert np.abs(centres - target).max() <= tolerance
    # with smoothing, a steady walk is removed whole: the median miss is a few pixels
    centres = np.array([_centre(steady.alignment.apply(mask_box(p), i)) for i, p in enumerate(walker.person)])
    assert np.median(np.abs(centres - target)) <= 4.0


def test_face_framing_scales_by_the_parts_both_show(walker, portrait) -> None:
    """The reference is the walker's own first frame cut at the hips and zoomed 3x: the true scale is 3.
    Body heights (fixed) see a full body against half of one; the faces see the truth."""
    _, reference = portrait
    fixed = cues(walker, reference, "fixed")
    by_face = cues(walker, reference, "face")
    assert by_face.alignment.framing == "face"
    assert by_face.alignment.scale == pytest.approx(ZOOM, rel=0.03)
    assert abs(fixed.alignment.scale - ZOOM) > 0.3 * ZOOM
    # the driver's face lands on the reference's face in the anchor frame
    anchor = by_face.alignment.anchor_frame
    face = by_face.alignment.apply(walker.face_boxes[anchor].astype(np.float64), anchor)
    assert np.abs(_centre(face) - _centre(reference.face)).max() <= 1.0


def test_face_framing_falls_back_to_the_body_widths(walker, portrait) -> None:
    _, reference = portrait
    faceless = ReferenceBoxes(body=reference.body, face=None, size=reference.size, shoulders=reference.shoulders)
    triplet = cues(walker, faceless, "face")
    assert triplet.alignment.framing == "width"
    assert triplet.alignment.scale == pytest.approx(ZOOM, rel=0.15)
    driver = mask_box(walker.person[0])
    assert triplet.alignment.apply(driver)[1] == pytest.approx(reference.body[1])  # heads together


def test_face_in_place_keeps_a_framed_walker_on_the_canvas(walker, portrait) -> None:
    _, reference = portrait
    framed = cues(walker, reference, "face")
    steady = cues(walker, reference, "face-in-place")
    assert framed.flags.off_canvas.sum() >= 15 and steady.flags.off_canvas.sum() == 0
    assert steady.alignment.scale == pytest.approx(framed.alignment.scale)


def panned_still(image: np.ndarray, count: int, side: int, size: int) -> tuple[np.ndarray, DriverTrack]:
    """media.pan_clip of ``image`` and its exact track: the still's face (found once by the cues' face
    detector on the whole still) and a body box hung below it, moved by the pan's known crop and zoom."""
    frames = media.pan_clip(image, count=count, side=side, size=size, drop=0)
    height, width = image.shape[:2]
    face = detect_faces(image, 40)[0]
    body = body_from_face(face, height, width)
    zoom = size / side
    moved = lambda box, i: (box - [pan_x(i, count, width, side), 0] * 2) * zoom  # noqa: E731
    masks = []
    for i in range(count):
        mask = np.zeros((size, size), np.uint8)
        x0, y0, x1, y1 = np.clip(moved(body, i), 0, size).round().astype(int)
        mask[y0:y1, x0:x1] = 255
        masks.append(mask)
    track = DriverTrack(height=size, width=size, body_boxes=np.stack([mask_box(m) for m in masks]),
                        person=np.ones(count, bool), quality=np.ones(count, np.float32),
                        face_boxes=np.stack([moved(face, i) for i in range(count)]), face_found=np.ones(count, bool),
                        masks=tuple(cv2.imencode(".png", m)[1].tobytes() for m in masks))
    return frames, track


def pan_x(index: int, count: int, width: int, side: int) -> int:
    """The crop's left edge in frame ``index`` of media.pan_clip."""
    return int(round(index / max(count - 1, 1) * (width - side)))


@pytest.mark.parametrize("mode", ["fixed", "in-place"])
def test_face_mask_is_the_references_own_face_moved_as_the_driver_moves(mode) -> None:
    """Grace Hopper panned by a known amount drives the astronaut: the face mask is the astronaut's own
    face box (found by the cues' face detector) in the first frame, then moves as the driver's face
    does on the canvas: by the pan times the alignment's scale (fixed), as it moves within the body's
    box (in place, where the body box stands still)."""
    count, side, size = 8, 400, 320
    frames, track = panned_still(media.grace_hopper(), count, side, size)
    reference = find_reference(media.astronaut(), None, HARD)
    assert reference.face is not None
    alignment = alignment_for(track, reference, AlignConfig(mode=mode, smooth_frames=0))
    triplet = concatenate(list(render(ArraySource(frames), track, alignment, HARD)))
    assert alignment.reference_face == pytest.approx(tuple(reference.face))
    ref_centre, ref_side = _centre(reference.face), reference.face[2] - reference.face[0]
    for index in range(count):
        box = mask_box(triplet.face_mask[index] > 127)
        travel = _centre(alignment.apply(track.face_boxes[index], index)) - _centre(alignment.apply(track.face_boxes[0]))
        assert np.abs(_centre(box) - (ref_centre + travel)).max() <= 1.5
        assert box[2] - box[0] == pytest.approx(ref_side, abs=2)  # the reference's face, not the driver's
        if mode == "fixed" and index == count - 1:
            pan = (pan_x(index, count, 512, side) - pan_x(0, count, 512, side)) * size / side
            assert travel[0] == pytest.approx(-alignment.scale * pan)
        if mode == "in-place":  # the body's box stays put; the face mask moves as the face does within it
            body = _centre(alignment.apply(track.body_boxes[index], index))
            assert np.abs(body - _centre(alignment.apply(track.body_boxes[0], 0))).max() <= 1e-6


def test_bad_align_mode_is_named() -> None:
    with pytest.raises(InputError, match="align mode 'sideways' is unknown; use one of fixed, in-place, face, "
                                         "face-in-place"):
        AlignConfig(mode="sideways")
