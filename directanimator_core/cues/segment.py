"""Person masks for the pose and location cues: from a user's masks, or a built-in segmenter.

The built-in segmenter needs no download: a median background of frames sampled across the clip
gives motion, OpenCV's HOG people detector names which moving things are people, and GrabCut (or an
optional ONNX segmenter) cuts the person out of their box. One person is followed through the whole
clip (tracking.py: a predicted box, the person's look, a search of the whole frame when they are lost).
"""

from __future__ import annotations

import logging
from typing import Optional

import cv2
import numpy as np

from ..errors import CueError
from . import detectors
from .boxes import Box, area, expand, mask_box
from .config import SegmentConfig
from .frames import FrameSource
from .tracking import PersonTracker

log = logging.getLogger(__name__)

GRABCUT_HEIGHT = 160  # person height GrabCut works at; finer gains little and costs time


def sample_frames(source: FrameSource, samples: int, chunk: int) -> dict[int, np.ndarray]:
    """Up to ``samples`` frames spread evenly over the clip, by frame index, in one read: the frames
    the background is the median of, and the frames ``survey`` looks for people in."""
    if samples < 1 or source.num_frames < 1:
        return {}
    wanted = sorted(set(np.linspace(0, source.num_frames - 1, min(samples, source.num_frames)).round().astype(int)))
    picked: dict[int, np.ndarray] = {}
    start = 0
    for frames in source.chunks(chunk):
        # copies, so a kept frame does not hold its whole chunk in memory
        picked.update({i: frames[i - start].copy() for i in wanted if start <= i < start + len(frames)})
        start += len(frames)
        if start > wanted[-1]:
            break
    return picked


def background_of(sample: dict[int, np.ndarray], num_frames: int) -> Optional[np.ndarray]:
    """Per-pixel median of the sampled frames (H, W, 3) uint8, or None for clips too short (or samples too
    few) to tell a still person from the background."""
    if num_frames < 3 or len(sample) < 3:
        return None
    frames = [sample[i] for i in sorted(sample)]
    # np.median(axis=0), partitioned along a contiguous axis: (pixels, n), several times faster
    values = np.stack([f.ravel() for f in frames], axis=1)  # (H * W * 3, n)
    n = len(frames)
    middle = np.partition(values, [(n - 1) // 2, n // 2], axis=1)
    median = (middle[:, (n - 1) // 2].astype(np.float64) + middle[:, n // 2]) / 2
    return median.astype(np.uint8).reshape(frames[0].shape)


def motion_mask(frame: np.ndarray, background: Optional[np.ndarray], threshold: int) -> Optional[np.ndarray]:
    """Pixels that differ from the background (H, W) uint8 0/255, cleaned of specks and holes."""
    if background is None:
        return None
    diff = cv2.absdiff(frame, background)
    largest = cv2.max(cv2.max(diff[..., 0], diff[..., 1]), diff[..., 2])  # of the channels, as .max(axis=2)
    moving = (largest > threshold).astype(np.uint8) * 255
    side = max(3, round(min(frame.shape[:2]) / 160)) | 1
    moving = cv2.morphologyEx(moving, cv2.MORPH_OPEN, np.ones((side, side), np.uint8))
    return cv2.morphologyEx(moving, cv2.MORPH_CLOSE, np.ones((3 * side, 3 * side), np.uint8))


def blobs(moving: Optional[np.ndarray], min_area: float, upright: bool = True) -> list[Box]:
    """Boxes of the connected moving regions at least ``min_area`` pixels large (``upright``: and taller
    than 0.8 of their width, as a standing person is)."""
    if moving is None:
        return []
    count, _, stats, _ = cv2.connectedComponentsWithStats(moving, connectivity=8)
    return [np.array([x, y, x + w, y + h], dtype=np.float64)
            for x, y, w, h, pixels in stats[1:count] if pixels >= min_area and (h > 0.8 * w or not upright)]


HOG_SCALES = (1.0, 1.5, 2.0)  # enlargements HOG is run at: people down to about 57 pixels tall are found
REGION_GROW = 2.5  # a moving region is searched grown by this factor: a person partly standing still, HOG's margin
SEARCHED_SHARE = 0.5  # when the moving regions cover more of the frame, the whole frame is searched


def find_people(image: np.ndarray, hog_threshold: float, min_area: float, moving: Optional[np.ndarray] = None,
                faces: Optional[list[Box]] = None, face_model: Optional[str] = None) -> list[Box]:
    """Everyone the built-in detectors see in one image, largest first.

    HOG knows whole standing people only; portraits and half-body shots are found by their face,
    the body taken to hang below it. A HOG box that holds a face near its top is that face's body.
    With a motion mask HOG looks only at windows inside its moving regions (search_regions): a still
    body does not count as a driver anyway (tracking.PersonTracker.candidates), and walkers are a
    fraction of the frame. The windows it looks at are the whole-frame search's own (hog_search), so
    what it finds does not hang on where the regions start. Faces are looked for in the whole image.

    Args:
        image: (H, W, 3) uint8 RGB.
        hog_threshold: least HOG score kept.
        min_area: least box area, in pixels.
        moving: the image's motion mask (motion_mask), or None to search the whole image.
        faces: the image's faces when the caller has already looked (detectors.detect_faces on the
            whole image), so they are not looked for twice.
        face_model: the face detector to look with when ``faces`` is None (detectors.detect_faces).
    """
    height, width = image.shape[:2]
    regions = None if moving is None else search_regions(moving, min_area)
    if regions == [(0, 0, width, height)]:
        regions = None  # detectMultiScale itself: the same windows, its levels in parallel
    # Small people need the image enlarged to the detector's 128-pixel window; every scale is tried,
    # as one person can be missed at one scale and found at the next.
    found = [] if regions == [] else [b for scale in HOG_SCALES
                                      for b, _ in detectors.detect_people(image, scale, hog_threshold, regions)]
    people = _merge([b for b in found if area(b) >= min_area])
    if faces is None:
        faces = detectors.detect_faces(image, face_side(height, width), face_model)
    for face in faces:
        if not any(_holds_head(body, face) for body in people):
            people.append(body_from_face(face, height, width))
    return sorted([b for b in people if area(b) >= min_area], key=area, reverse=True)


def face_side(height: int, width: int) -> int:
    """The smallest face (side, pixels) looked for in a whole frame of this size."""
    return max(12, int(0.04 * min(height, width)))


def search_regions(moving: np.ndarray, min_area: float) -> list[tuple[int, int, int, int]]:
    """Where in a frame with motion mask ``moving`` to look for people, as (x0, y0, x1, y1) pixel boxes:
    each moving region of at least a quarter of ``min_area``, grown by REGION_GROW, overlapping ones
    joined; the whole frame where they cover most of it (a moving camera); none when nothing moves."""
    height, width = moving.shape
    joined = _joined([expand(b, REGION_GROW, height, width) for b in blobs(moving, 0.25 * min_area, upright=False)])
    if sum(area(b) for b in joined) > SEARCHED_SHARE * height * width:
        return [(0, 0, width, height)]
    return [(int(b[0]), int(b[1]), int(np.ceil(b[2])), int(np.ceil(b[3]))) for b in joined]


def _joined(boxes: list[Box]) -> list[Box]:
    """Boxes with every overlapping pair replaced by the box around both, until none overlap."""
    boxes = list(boxes)
    k = 0
    while k < len(boxes):
        other = next((j for j in range(k + 1, len(boxes)) if _overlap_of_smaller(boxes[k], boxes[j]) > 0), None)
        if other is None:
            k += 1
            continue
        b = boxes.pop(other)
        boxes[k] = np.concatenate([np.minimum(boxes[k][:2], b[:2]), np.maximum(boxes[k][2:], b[2:])])
        k = 0
    return boxes


def _holds_head(body: Box, face: Box) -> bool:
    tall = body[3] - body[1]
    return body[0] <= face[0] and face[2] <= body[2] and body[1] - 0.1 * tall <= face[1] < body[1] + 0.3 * tall


def body_from_face(face: Box, height: int, width: int) -> Box:
    """A body box from a face box by the proportions of an adult: about 3 faces wide, the head
    about 1/7.5 of the height, cut at the image border."""
    side = face[2] - face[0]
    cx = (face[0] + face[2]) / 2
    box = np.array([cx - 1.6 * side, face[1] - 0.25 * side, cx + 1.6 * side, face[1] + 7.5 * side])
    return np.clip(box, 0, [width, height, width, height]).astype(np.float64)


def _merge(boxes: list[Box]) -> list[Box]:
    """Drop boxes that mostly repeat another (HOG fires at neighbouring scales, loose and tight):
    of two boxes where most of the smaller lies inside the larger, the smaller, tighter one stays."""
    kept: list[Box] = []
    for box in sorted(boxes, key=area):
        if all(_overlap_of_smaller(box, other) < 0.6 for other in kept):
            kept.append(box)
    return sorted(kept, key=area, reverse=True)


def _overlap_of_smaller(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return ix * iy / max(min(area(a), area(b)), 1e-6)


def cut_person(frame: np.ndarray, box: Box, moving: Optional[np.ndarray], config: SegmentConfig,
               face: Optional[Box] = None) -> np.ndarray:
    """The person inside ``box`` as a (H, W) uint8 0/255 mask: GrabCut seeded by motion, a torso prior
    and ``face`` (the person's face, where one was found; its chest hangs below it), or the ONNX
    segmenter when one is configured."""
    height, width = frame.shape[:2]
    roi = expand(box, 1.25, height, width).astype(int)
    x0, y0, x1, y1 = roi
    if x1 - x0 < 4 or y1 - y0 < 4:
        return np.zeros((height, width), np.uint8)
    crop = frame[y0:y1, x0:x1]
    scale = min(1.0, GRABCUT_HEIGHT / (box[3] - box[1]))
    if config.onnx_path:
        side = detectors.segmenter_side(config.onnx_path, config.onnx_size)
        person = detectors.run_segmenter(detectors.onnx_segmenter(config.onnx_path), crop, side) > 0.5
    else:
        offset = np.array([x0, y0, x0, y0])
        local_motion = None if moving is None else moving[y0:y1, x0:x1]
        local_face = None if face is None or not _inside(face, box) else face - offset
        person = _grabcut(crop, box - offset, local_motion, scale, config.grabcut_iters, local_face)
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = _largest_part(person.astype(np.uint8) * 255)
    return mask


def _inside(face: Box, box: Box) -> bool:
    middle = (face[:2] + face[2:]) / 2
    return bool(box[0] <= middle[0] <= box[2] and box[1] <= middle[1] <= box[3])


def _face_seeds(seeds: np.ndarray, face: Box, box: tuple[int, int, int, int]) -> None:
    """Mark the face's middle and the chest under it as the person, the shoulders' width below and the hair
    over the brow as likely the person: a torso prior at 0.4 of the box's height is the face itself in a
    close-up, whose box is cut by the frame's bottom, and GrabCut then drops dark clothing that looks
    like the seat behind it. Marks stay inside ``box``, but for the hair, which a body box hung from a
    face (body_from_face) cuts at the brow."""
    side = face[2] - face[0]
    cx, cy, chin = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2, face[3]
    whole = (0, 0, seeds.shape[1], seeds.shape[0])

    def mark(left: float, top: float, right: float, bottom: float, label: int, within=box) -> None:
        x0, y0, x1, y1 = within
        seeds[int(max(top, y0)):int(max(min(bottom, y1), 0)), int(max(left, x0)):int(max(min(right, x1), 0))] = label

    mark(cx - 1.6 * side, chin, cx + 1.6 * side, box[3], cv2.GC_PR_FGD)
    mark(cx - 0.6 * side, face[1] - 0.5 * side, cx + 0.6 * side, face[1], cv2.GC_PR_FGD, within=whole)
    mark(cx - 0.25 * side, cy - 0.25 * side, cx + 0.25 * side, cy + 0.25 * side, cv2.GC_FGD)
    mark(cx - 0.8 * side, chin + 0.4 * side, cx + 0.8 * side, chin + 1.6 * side, cv2.GC_FGD)


def _grabcut(crop: np.ndarray, box: Box, moving: Optional[np.ndarray], scale: float, iters: int,
             face: Optional[Box] = None) -> np.ndarray:
    small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else crop
    h, w = small.shape[:2]
    bx0, by0, bx1, by1 = (box * scale).round().astype(int)
    seeds = np.full((h, w), cv2.GC_BGD, np.uint8)
    seeds[max(by0, 0):by1, max(bx0, 0):bx1] = cv2.GC_PR_BGD
    torso = np.zeros((h, w), np.uint8)
    cx, bw, bh = (bx0 + bx1) // 2, bx1 - bx0, by1 - by0
    cv2.ellipse(torso, (cx, by0 + int(0.4 * bh)), (max(1, int(0.18 * bw)), max(1, int(0.3 * bh))), 0, 0, 360, 1, -1)
    seeds[torso > 0] = cv2.GC_PR_FGD
    if moving is not None:
        moved = cv2.resize(moving, (w, h), interpolation=cv2.INTER_NEAREST) > 0
        inside = seeds != cv2.GC_BGD
        seeds[moved & inside] = cv2.GC_PR_FGD
        seeds[moved & (torso > 0)] = cv2.GC_FGD
    if face is not None:
        _face_seeds(seeds, face * scale, (max(bx0, 0), max(by0, 0), bx1, by1))
    cv2.setRNGSeed(0)  # GrabCut seeds its colour models with k-means on OpenCV's global RNG
    try:
        cv2.grabCut(small, seeds, None, np.zeros((1, 65)), np.zeros((1, 65)), iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error as error:  # a crop of one colour has no two classes to model
        log.debug("grabcut gave up on a %dx%d crop: %s", w, h, error)
        return np.zeros(crop.shape[:2], bool)
    person = np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    return cv2.resize(person, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def _largest_part(mask: np.ndarray) -> np.ndarray:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return mask
    keep = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return np.where(labels == keep, 255, 0).astype(np.uint8)


def quality(mask: np.ndarray, box: Optional[Box], found: bool, previous_area: float) -> float:
    """How much a frame's segmentation can be trusted, 0..1 (the paper drops poor frames in training).

    The product of: the person was really found (not coasted); the mask fills a person-like share of
    its box (a near-empty or a full box is a failure); its area did not jump against the last frame.
    """
    if not found or box is None:
        return 0.0
    pixels = float(np.count_nonzero(mask))
    fill = pixels / max(area(box), 1.0)
    fill_score = float(np.clip(fill / 0.3, 0, 1) * np.clip((0.97 - fill) / 0.15, 0, 1))
    steady = min(pixels, previous_area) / max(pixels, previous_area) if previous_area > 0 and pixels > 0 else 1.0
    return round(fill_score * float(np.sqrt(steady)), 4)


def dropout(scores: np.ndarray, threshold: float, rate: float, generator: np.random.Generator) -> np.ndarray:
    """Training-time frame dropout: frames scoring below ``threshold`` are dropped with probability
    ``rate``; returns a keep flag per frame (F,) bool.

    Args:
        scores: per-frame quality (F,) from the triplet.
        threshold: frames at or above it are always kept.
        rate: chance that a poor frame is dropped.
        generator: numpy random generator, for reproducible draws.
    """
    poor = scores < threshold
    return ~(poor & (generator.random(len(scores)) < rate))


# -- nobody to follow -------------------------------------------------------------------------------
SURVEY_VOTES = 3  # sampled frames with anyone in view that decide how many people a clip shows


def survey(sample: dict[int, np.ndarray], background: Optional[np.ndarray], tracker: PersonTracker,
           num_frames: int) -> None:
    """Before the per-frame pass, check on the sampled frames that there is someone to follow, and raise
    NoPersonError now rather than after every frame went through the detectors.

    ``config.survey_samples`` of the sampled frames, spread over the clip, are searched in order. A
    frame shows as many people as it has candidates (the tracker's own detectors) that cut out to a
    non-empty mask. Nobody in any of them: no person. ``person_index`` k > 0 needs more than k people
    in most of the first SURVEY_VOTES searched frames that show anyone (one stray detection is not a
    second person). The candidates are kept in the tracker, so no frame is searched twice. A person
    in view only between the searched frames (fewer than about num_frames / survey_samples frames in
    a row) is missed: the clip is refused.

    Args:
        sample: frames by index (sample_frames).
        background: their median (motion), or None.
        tracker: the tracker of the pass to come; its config gives person_index.
        num_frames: frames in the clip, for the message.
    """
    config = tracker.config
    if not sample or config.survey_samples < 1:  # nothing to tell from, or no survey asked for
        return
    indices = sorted(sample)
    chosen = np.linspace(0, len(indices) - 1, min(config.survey_samples, len(indices))).round().astype(int)
    counts: list[int] = []
    for index in [indices[i] for i in sorted(set(chosen))]:
        frame = sample[index]
        moving = motion_mask(frame, background, config.motion_threshold)
        people = tracker.surveyed[index] = tracker.candidates(frame, moving)
        found = sum(mask_box(cut_person(frame, box, moving, config)) is not None for box in people)
        if found:
            counts.append(found)
        if (counts and config.person_index == 0) or len(counts) == SURVEY_VOTES:
            break
    if not counts:
        raise NoPersonError(_nobody(num_frames, len(set(chosen))), 0, config.person_index)
    # the most people that most of those frames show
    typical = max(n for n in range(1, max(counts) + 1) if 2 * sum(count >= n for count in counts) > len(counts))
    if typical <= config.person_index:
        raise NoPersonError(f"person_index={config.person_index} but at most {_people(typical)} "
                            f"{'is' if typical == 1 else 'are'} in view in most sampled frames",
                            typical, config.person_index)


class NoPersonError(CueError):
    """Nobody to follow: no person in view (``people`` 0), or ``people`` <= ``person_index``.

    ``finding`` says what was found, without advice; the message adds the advice for a node's user
    (a caller with other means, such as the command line, words its own from the fields).
    """

    def __init__(self, finding: str, people: int, person_index: int) -> None:
        self.finding, self.people, self.person_index = finding, people, person_index
        if people == 0:
            advice = "connect a person mask (e.g. from a SAM or BiRefNet node) to the mask input"
        else:
            advice = f"use an index below {people} or connect a person mask"
        super().__init__(f"{finding}; {advice}")


def no_person_error(frames: int, best_count: int, person_index: int) -> NoPersonError:
    """After the per-frame pass found no one: too few people for ``person_index``, or none at all
    (candidates that never cut out to a person count as none)."""
    if 0 < best_count <= person_index:
        return NoPersonError(f"person_index={person_index} but at most {_people(best_count)} were found in "
                             "one frame", best_count, person_index)
    return NoPersonError(_nobody(frames, frames), 0, person_index)


def _nobody(frames: int, checked: int) -> str:
    if checked >= frames:
        return f"no person was found in any of the {frames} driving frames"
    return f"no person was found in any of the {checked} frames sampled across the {frames} driving frames"


def _people(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"
