"""Following one person through a clip: whom to follow, and the same person in every frame after.

1. **Choosing** (``person_index``): at the first frame that shows more than ``person_index`` people,
   every one of them is followed for CHOOSE_FRAMES frames (a bounded look-ahead: later frames never
   change the choice, so a clip and a longer one agree on their common frames). People are the
   detections that move (MOVING_SHARE of the box differs from the background: a HOG hit on a wall
   is still; without a background every hit counts) and that are found again in most of those
   frames (followed by place and size alone: their looks are still being learnt), or, when the clip
   ends before those frames do, in its last frame (a short clip's median background hides a small
   walker in its middle frames; ``_steady``); they are ranked by
   the cut-out person's box in the first frame, largest first, and
   ``person_index`` picks among them. Too few such people, and later frames are tried.
2. **Following**: each frame, the person is looked for around a constant-velocity prediction of the
   box, by HOG, then faces, then moving regions (each only when the one before found nobody who
   fits). A detection fits inside a motion gate (centre within GATE_HEIGHTS box heights, more per
   lost frame; height within SIZE_JUMP; not a blob much wider than the person) and when it looks like
   the person (``appearance``: an HSV histogram of the box's moving pixels; its Bhattacharyya
   distance to the track's signature at most LOOK_MARGIN over the person's usual distance, at least
   LOOK_FLOOR, at most APPEARANCE_GATE); of those, the cheapest (look + distance) wins. So a walker
   who crosses in front is not taken, nor a newcomer where the person left the frame. When nobody
   fits, the box coasts on the prediction and the frame is not found. Where the person merges with
   someone (a match much wider than their usual width, or another detection overlapping it) the
   merged boxes say nothing of where each one is going, so the velocity is held at its value before
   the merge and the prediction dead-reckons from the last box before it, until the two part (two
   apart detections fit: the one where the person's own motion put them wins) or MERGE_FRAMES pass:
   two people of one look who cross are told apart by where each was heading. A frame where another person's
   cost is within CLOSE_CALL of the winner's is a close call (``close_calls``): its cue is flagged as
   possibly on someone else (triplet.FrameFlags.suspect_switch).
3. **Re-acquiring**: after REACQUIRE_AFTER lost frames, every REACQUIRE_EVERY frames the whole frame
   is searched, HOG around each moving region that looks roughly like the person (BLOB_GATE)
   (every detector on the whole frame, every FULL_SEARCH_EVERY frames, without a background), for
   someone who looks like the person (under the gate, at most REACQUIRE_GATE) and no farther from where
   they were lost than they can have walked since (REACH + REACH_PER_FRAME a lost frame, in heights),
   and not where someone else was seen beside them in the last BESIDE_FRAMES frames.

The signature is the mean of the first looks, then updated slowly (SIGNATURE_RATE), only on clear
matches (under CLEAR_MATCH, nobody else's box close), so a crossing does not blend two people; the
first looks are kept too, and a detection is compared with the nearer of the two.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

from . import detectors
from .boxes import Box, area, centre, expand, iou, mask_box
from .checks import hsv_histogram
from .config import SegmentConfig

log = logging.getLogger(__name__)

HOG_TRACK_HEIGHT = 150  # person height the tracker rescales its search window to
CHOOSE_FRAMES = 6  # frames every candidate is followed for before person_index picks one
PERSISTENT = 0.5  # share of those frames a candidate must be found in to count as a person
MOVING_SHARE = 0.08  # share of a detection's box that must move (differ from the background) to be a person
SUBJECT_FACE = 0.1  # a face this large (of the frame's short side) is a person's, moving or not: a close-up
APPEARANCE_GATE = 0.45  # Bhattacharyya distance to the signature over which a detection is someone else
REACQUIRE_GATE = 0.35  # the (stricter) distance under which a detection found anywhere is the person
SIGNATURE_RATE = 0.1  # weight of a clear match's look in the running signature
CLEAR_MATCH = 0.25  # a match this close, with nobody else near, updates the signature
GATE_HEIGHTS = 0.4  # centre distance from the prediction, in box heights, a detection may be at
GATE_GROWTH = 0.15  # extra gate per lost frame (the prediction grows less certain)
GATE_MAX = 2.0
SIZE_JUMP = 1.3  # height ratio to the prediction beyond which a detection is someone else (+ SIZE_GROWTH a lost frame)
SIZE_GROWTH = 0.05
SIZE_STEP = 1.5  # the most a predicted box grows or shrinks against the last box, a frame
LOOK_MARGIN = 0.15  # a detection may look this much further from the person than their matches so far do
LOOK_FLOOR = 0.25  # ... and always this far
DISTANCE_COST = 0.5  # weight of the centre distance (box heights) against the look in the match cost
REACQUIRE_AFTER = 3  # lost frames before the whole frame is searched
REACQUIRE_EVERY = 2  # frames between two whole-frame searches while lost
REACH = 1.0  # a person found again is at most this many of their heights from where they were lost ...
REACH_PER_FRAME = 0.3  # ... plus this many a lost frame (a brisk walk is about 0.1)
CLOSE_CALL = 0.05  # a second person whose match cost is within this of the best makes the frame a close call
MERGE_WIDTH = 1.4  # a match this much wider than the person's usual width holds others too: a merge begins
MERGE_FRAMES = 10  # the longest a merge's held velocity is trusted
HOLD_AFTER = 5  # unmerged matches before the person's drift is trusted to be held
BESIDE_FRAMES = 8  # a person seen apart from the followed one this recently is not them when found again
BLOB_GATE = 0.6  # a moving region that looks further than this from the person is not searched (HOG costs)
FULL_SEARCH_EVERY = 10  # the same without a background (every detector on the whole frame; slow)
SIGNATURE_ROWS = 32  # a box is resized to this many rows for its look
# a box whose moving pixels are fewer is looked at by its middle: a walker fills most of their box, but the
# few moving pixels of a talking head in a car are the window's scenery (his look drifted past the gate)
LOOK_MOTION_SHARE = 0.3
BINS = (4, 2, 4)  # hue, saturation, value bins of the look (finer bins split one walker's frames apart)


def appearance(frame: np.ndarray, box: Box, moving: Optional[np.ndarray]) -> np.ndarray:
    """The look of whoever is in ``box``: an HSV histogram (prod(BINS),) float32 summing to 1 of the
    box's moving pixels (the box's middle 60 % of columns without a background, or when under
    LOOK_MOTION_SHARE of the box moves), on the box resized to SIGNATURE_ROWS rows. Zeros for an empty box.

    Args:
        frame: (H, W, 3) uint8 RGB.
        box: the person's box.
        moving: (H, W) uint8 motion mask, or None.
    """
    height, width = frame.shape[:2]
    x0, y0, x1, y1 = np.clip(np.round(box), 0, [width, height, width, height]).astype(int)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros(int(np.prod(BINS)), np.float32)
    scale = SIGNATURE_ROWS / (y1 - y0)
    size = (max(2, round((x1 - x0) * scale)), SIGNATURE_ROWS)
    hsv = cv2.cvtColor(cv2.resize(frame[y0:y1, x0:x1], size, interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2HSV)
    weight = None
    if moving is not None:
        weight = cv2.resize(moving[y0:y1, x0:x1], size, interpolation=cv2.INTER_NEAREST)
        weight = weight if np.count_nonzero(weight) >= LOOK_MOTION_SHARE * weight.size else None
    if weight is None:
        weight = np.zeros(hsv.shape[:2], np.uint8)
        weight[:, size[0] // 5: size[0] - size[0] // 5] = 255
    return hsv_histogram(hsv, weight, BINS)


def look_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Bhattacharyya distance of two looks, 0 (same colours) .. 1 (none in common); 1 when one is empty."""
    if a.sum() <= 0 or b.sum() <= 0:
        return 1.0
    return float(cv2.compareHist(a, b, cv2.HISTCMP_BHATTACHARYYA))


def moves(box: Box, moving: Optional[np.ndarray]) -> bool:
    """Whether at least MOVING_SHARE of ``box`` differs from the background (always, without one)."""
    if moving is None:
        return True
    x0, y0, x1, y1 = np.round(box).astype(int)
    inside = moving[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)]
    return inside.size > 0 and np.count_nonzero(inside) >= MOVING_SHARE * inside.size


@dataclass
class Track:
    """One followed person: box, velocity, looks, and what became of them frame by frame."""

    box: Box
    look: np.ndarray  # the running signature
    first_look: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    lost: int = 0
    usual: float = LOOK_FLOOR - LOOK_MARGIN  # running mean of the matches' look distances
    looks: int = 1  # looks blended into ``look``
    history: list[tuple[Box, bool]] = field(default_factory=list)  # (box, found) per frame followed
    width: float = 0.0  # running width of the person's own (unmerged) matches
    drift: np.ndarray = field(default_factory=lambda: np.zeros(2))  # slow running centre velocity
    held: Optional[np.ndarray] = None  # (2,) centre velocity held through a merge; None when not in one
    reckoned: Optional[Box] = None  # during a merge, the last box before it moved on by ``held``
    merged: int = 0  # frames into the merge
    steady: int = 0  # unmerged matches since the track began or was found again (its drift is learnt)
    by_face: bool = False  # last matched by their face (a portrait, a talking head): searched for by face when lost
    beside: deque = field(default_factory=lambda: deque(maxlen=BESIDE_FRAMES))  # per frame, others seen apart

    def __post_init__(self) -> None:
        self.width = self.width or float(max(self.box[2] - self.box[0], 1.0))

    @property
    def tall(self) -> float:
        return float(max(self.box[3] - self.box[1], 1.0))

    def distance(self, look: np.ndarray) -> float:
        return min(look_distance(look, self.look), look_distance(look, self.first_look))

    def gate(self, widest: float) -> float:
        """The look distance a detection may have: the usual distance of this person's matches plus
        LOOK_MARGIN (so a person whose frames look alike is told apart from a similar one), at least
        LOOK_FLOOR, at most ``widest``."""
        return min(widest, max(LOOK_FLOOR, self.usual + LOOK_MARGIN))

    def predicted(self, height: int, width: int) -> Box:
        # Coasting is kept inside the frame, so a lost person is looked for where they left.
        if self.held is None:
            ahead = _sized_like(self.box + self.velocity, self.box)
        else:  # in a merge: the person's own box before it, moved on (its size is theirs, not the blob's)
            ahead = self.reckoned + np.tile(self.held, 2)
        return np.clip(ahead, 0, [width, height] * 2).astype(np.float64)

    def wide(self, box: Box) -> bool:
        """A match much wider than the person's own: a blob of them and someone else."""
        return box[2] - box[0] > MERGE_WIDTH * self.width

    def found_at(self, box: Box, predicted: Box, merging: bool = False, parted: bool = False) -> None:
        """Matched to ``box``; ``merging``: it holds someone else too (a merge begins, or goes on);
        ``parted``: someone apart from it is seen too (a merge ends)."""
        new = 0.7 * box + 0.3 * predicted  # damps the detector's jitter
        if self.held is None and merging and self.steady >= HOLD_AFTER:
            self._hold()
        if self.held is not None:
            self._reckon(release=parted)
        else:
            self.velocity = 0.5 * self.velocity + 0.5 * (new - self.box)
            self.drift = 0.8 * self.drift + 0.2 * (centre(new) - centre(self.box))
            if not merging:
                self.width = 0.8 * self.width + 0.2 * float(box[2] - box[0])
                self.steady += 1
        self.box, self.lost = new, 0
        self.history.append((new, True))

    def coast(self, predicted: Box) -> None:
        self.lost += 1
        if self.held is not None:
            self._reckon()
        else:
            self.velocity = self.velocity * 0.5
        self.box = predicted
        self.history.append((predicted, False))

    def found_again(self, box: Box) -> None:
        """Found again somewhere else by a search: nothing of the old motion or width holds."""
        self.box, self.lost = box, 0
        self.velocity, self.drift, self.held, self.reckoned = np.zeros(4), np.zeros(2), None, None
        self.width, self.steady = float(max(box[2] - box[0], 1.0)), 0
        self.history.append((box, True))

    def _hold(self) -> None:
        self.held = self.drift.copy()
        self.reckoned, self.merged = self.box.copy(), 0

    def _reckon(self, release: bool = False) -> None:
        """One frame of a merge: the reckoned box moves on; at its end the held velocity is the velocity."""
        self.reckoned = self.reckoned + np.tile(self.held, 2)
        self.merged += 1
        if release or self.merged >= MERGE_FRAMES:
            self.velocity, self.held, self.reckoned = np.tile(self.held, 2), None, None

    def learn(self, look: np.ndarray) -> None:
        """Blend a clear match's look in: the plain mean over the first CHOOSE_FRAMES looks, then slowly."""
        self.looks += 1
        rate = max(SIGNATURE_RATE, 1.0 / self.looks)
        self.look = ((1 - rate) * self.look + rate * look).astype(np.float32)
        if self.looks <= CHOOSE_FRAMES:
            self.first_look = self.look.copy()


@dataclass
class PersonTracker:
    """Chooses one person and follows them (module docstring). ``push`` takes the frames in order and
    returns (box, found) for the oldest frames it has decided on (none while choosing); ``flush``
    decides the rest at the end of the clip."""

    config: SegmentConfig
    height: int
    width: int
    # the face detector the face cue uses (FaceConfig.onnx_path; None: Haar): the same one finds the
    # faces of portraits and talking heads here, so a better model helps the following as well
    face_model: Optional[str] = None
    target: Optional[Track] = None
    best_count: int = 0  # most people seen steadily at once while choosing (for the refusal's message)
    reacquired: int = 0  # times the person was found again by a whole-frame search
    surveyed: dict[int, list[Box]] = field(default_factory=dict)  # frame index -> detections (segment.survey)
    close_calls: set[int] = field(default_factory=set)  # followed frames where another person fit about as well
    _held: list[tuple[np.ndarray, Optional[np.ndarray]]] = field(default_factory=list)  # frames while choosing
    _tentative: list[Track] = field(default_factory=list)
    _wait: int = 0  # frames to skip before the next attempt to choose

    @property
    def min_area(self) -> float:
        return self.config.min_person_fraction * self.height * self.width

    # -- the frame pass ------------------------------------------------------------------------------
    def push(self, frame: np.ndarray, moving: Optional[np.ndarray],
             index: Optional[int] = None) -> list[tuple[Optional[Box], bool]]:
        """Take frame ``index``; return (box, found) for every frame now decided, oldest first."""
        if self.target is not None:
            box, found, close = self._follow(frame, moving)
            if close and index is not None:
                self.close_calls.add(index)
            return [(box, found)]
        if self._tentative:
            self._held.append((frame, moving))
            for track in self._tentative:
                self._step(track, frame, moving, search=False)
            return self._choose() if len(self._held) >= CHOOSE_FRAMES else []
        if self._wait > 0:
            self._wait -= 1
            return [(None, False)]
        people = self.candidates(frame, moving, index)
        if len(people) <= self.config.person_index:
            self.best_count = max(self.best_count, len(people))
            return [(None, False)]
        self._tentative = [self._start(frame, box, moving) for box in people]
        self._held = [(frame, moving)]
        return self._choose() if CHOOSE_FRAMES <= 1 else []

    def flush(self) -> list[tuple[Optional[Box], bool]]:
        """(box, found) of the frames still held at the end of the clip."""
        return self._choose(ended=True) if self._tentative else []

    def candidates(self, frame: np.ndarray, moving: Optional[np.ndarray], index: Optional[int] = None) -> list[Box]:
        """Everyone the detectors see in a frame who can be the driver: who moves (``moves``); when nobody
        does, whoever shows a subject's face (SUBJECT_FACE): a talking head or a portrait barely moves, and
        the median background of a short clip holds them. What the survey found for ``index`` if it looked."""
        if index is not None and index in self.surveyed:
            return self.surveyed[index]
        from .segment import blobs, face_side, find_people

        faces = detectors.detect_faces(frame, face_side(self.height, self.width), self.face_model)
        people = find_people(frame, self.config.hog_threshold, self.min_area, moving, faces) or \
            blobs(moving, self.min_area)
        subjects = [f for f in faces if f[2] - f[0] >= SUBJECT_FACE * min(self.height, self.width)]
        return [b for b in people if moves(b, moving)] or [b for b in people if any(_shows(b, f) for f in subjects)]

    # -- choosing --------------------------------------------------------------------------------------
    def _start(self, frame: np.ndarray, box: Box, moving: Optional[np.ndarray]) -> Track:
        look = appearance(frame, box, moving)
        return Track(box=box.astype(np.float64), look=look, first_look=look.copy(), history=[(box, True)])

    def _choose(self, ended: bool = False) -> list[tuple[Optional[Box], bool]]:
        held = len(self._held)
        steady = [t for t in self._tentative if _steady(t, held, ended)]
        self.best_count = max(self.best_count, len(steady))
        # Ranked by the cut-out person in the first frame, not by the detector's loose window.
        steady.sort(key=lambda t: -self._cut_area(*self._held[0], t.history[0][0]))
        steady = [t for k, t in enumerate(steady) if not any(_same(t, other) for other in steady[:k])]
        tracks, self._tentative, self._held = self._tentative, [], []
        if len(steady) <= self.config.person_index:
            log.info("%d of %d people seen steadily over %d frames; person %d not there yet",
                     len(steady), len(tracks), held, self.config.person_index)
            self._wait = CHOOSE_FRAMES
            return [(None, False)] * held
        self.target = steady[self.config.person_index]
        looks = [t for t in tracks if t is not self.target]
        log.info("following person %d of %d at %s (%d others)", self.config.person_index, len(steady),
                 self.target.box.round(), len(looks))
        decided = list(self.target.history)
        self.target.history = []
        return decided

    def _cut_area(self, frame: np.ndarray, moving: Optional[np.ndarray], box: Box) -> float:
        from .segment import cut_person

        tight = mask_box(cut_person(frame, box, moving, self.config))
        return area(tight) if tight is not None else 0.0

    # -- following -------------------------------------------------------------------------------------
    def _follow(self, frame: np.ndarray, moving: Optional[np.ndarray]) -> tuple[Box, bool, bool]:
        """(box, found, close call) of the followed person in this frame."""
        track = self.target
        close = self._step(track, frame, moving, search=True)
        box, found = track.history.pop()
        return box, found, close

    def _step(self, track: Track, frame: np.ndarray, moving: Optional[np.ndarray], search: bool) -> bool:
        """Advance ``track`` by one frame; True when its match was a close call (only judged with ``search``)."""
        predicted = track.predicted(self.height, self.width)
        # Detectors in turn, each only when the one before found nobody who fits: HOG around the
        # prediction, faces there (portraits, half-body shots), moving regions touching it.
        for by_face, find in ((False, lambda: self._people_near(frame, predicted, track.lost)),
                              (True, lambda: self._people_by_face(frame, expand(predicted, 1.5, self.height, self.width))),
                              (False, lambda: self._blobs_near(moving, predicted))):
            near = find()
            looks = [appearance(frame, b, moving) for b in near]
            costs = self._costs(track, predicted, near, looks, judge_look=search)
            if costs:
                best = min(costs, key=costs.get)
                clear = all(iou(near[best], other) < 0.2 for k, other in enumerate(near) if k != best)
                if clear:  # what this person's own frames look like, not a frame shared with another
                    track.usual = 0.8 * track.usual + 0.2 * track.distance(looks[best])
                if clear and track.distance(looks[best]) < CLEAR_MATCH:
                    track.learn(looks[best])
                apart = [other for k, other in enumerate(near) if k != best and iou(other, near[best]) < 0.2]
                track.beside.append(apart)
                parted = bool(apart)
                # a box at the frame's edge widens as the person comes into view: no merge
                merging = not clear or (track.wide(near[best]) and not self._at_edge(near[best]))
                track.found_at(near[best], predicted, merging=merging, parted=parted)
                track.by_face = by_face
                return search and close_call(costs, near, best)
        if search and track.lost + 1 >= REACQUIRE_AFTER and self._search_due(track, moving):
            again = self._search(track, frame, moving)
            if again is not None:
                track.found_again(again)
                self.reacquired += 1
                log.info("person found again at %s", again.round())
                return False
        track.beside.append([])
        track.coast(predicted)
        return False

    def _at_edge(self, box: Box) -> bool:
        return box[0] <= 1 or box[1] <= 1 or box[2] >= self.width - 1 or box[3] >= self.height - 1

    def _blobs_near(self, moving: Optional[np.ndarray], predicted: Box) -> list[Box]:
        from .segment import blobs

        return [b for b in blobs(moving, self.min_area * 0.5) if iou(b, predicted) > 0]

    def _costs(self, track: Track, predicted: Box, boxes: list[Box], looks: list[np.ndarray],
               judge_look: bool = True) -> dict[int, float]:
        """Match cost (look + distance) of each of ``boxes`` that fits the track's gates, by index; the
        cheapest is the person."""
        # While choosing (judge_look False) the look is still being learnt, and on a short clip the
        # background is too poor for a steady one: the candidates are followed by place and size.
        gate = min(GATE_MAX, GATE_HEIGHTS + GATE_GROWTH * track.lost)
        tall = max(predicted[3] - predicted[1], 1.0)
        costs: dict[int, float] = {}
        for k, (box, look) in enumerate(zip(boxes, looks)):
            moved = float(np.linalg.norm(centre(box) - centre(predicted))) / tall
            ratio = max(box[3] - box[1], 1.0) / tall
            # much wider: a blob of several people; much narrower: a part of the person (a moving head, an arm)
            wide = max(box[2] - box[0], 1.0) / max(predicted[2] - predicted[0], 1.0)
            seen = track.distance(look)
            size = SIZE_JUMP + SIZE_GROWTH * track.lost
            if moved > gate or not 1 / size < ratio < size or not 1 / (1.8 * size) < wide < 1.5 * size or \
                    (judge_look and seen > track.gate(APPEARANCE_GATE)):
                continue
            costs[k] = seen + DISTANCE_COST * moved
        return costs

    def _search_due(self, track: Track, moving: Optional[np.ndarray]) -> bool:
        every = REACQUIRE_EVERY if moving is not None else FULL_SEARCH_EVERY
        return (track.lost + 1 - REACQUIRE_AFTER) % every == 0

    def _search(self, track: Track, frame: np.ndarray, moving: Optional[np.ndarray]) -> Optional[Box]:
        """Someone anywhere in the frame who looks like the person (under REACQUIRE_GATE), or None."""
        from .segment import blobs, find_people

        if moving is not None:
            found = []
            for blob in blobs(moving, self.min_area * 0.5):
                # the region's own look first (a fraction of a millisecond): a newcomer in other
                # colours is not searched with HOG (tens of milliseconds)
                if 0.4 < (blob[3] - blob[1]) / track.tall < 3.0 and \
                        track.distance(appearance(frame, blob, moving)) <= BLOB_GATE:
                    found += self._people_near(frame, blob, 0, grow=2.0)
            if track.by_face:  # a talking head may not move against the background (a short clip's median holds them)
                found += self._people_by_face(frame, np.array([0.0, 0.0, self.width, self.height]))
        else:
            found = find_people(frame, self.config.hog_threshold, self.min_area, face_model=self.face_model)
        best, closest = None, track.gate(REACQUIRE_GATE)
        reach = REACH + REACH_PER_FRAME * track.lost  # no farther than the person can have walked since
        for box in found:
            if not 0.5 < (box[3] - box[1]) / track.tall < 2.0 or \
                    np.linalg.norm(centre(box) - centre(track.box)) > reach * track.tall or \
                    any(iou(box, other) > 0.3 for seen in track.beside for other in seen):
                continue
            seen = track.distance(appearance(frame, box, moving))
            if seen < closest:
                best, closest = box, seen
        return best

    def _people_near(self, frame: np.ndarray, around: Box, lost: int, grow: Optional[float] = None) -> list[Box]:
        factor = grow or (2.0 if lost <= self.config.max_lost else 3.0)
        roi = expand(around, factor, self.height, self.width).astype(int)
        crop = frame[roi[1]:roi[3], roi[0]:roi[2]]
        scale = float(np.clip(HOG_TRACK_HEIGHT / max(around[3] - around[1], 1), 0.3, 3.0))
        found = detectors.detect_people(crop, scale, self.config.hog_threshold)
        offset = np.array([roi[0], roi[1], roi[0], roi[1]], dtype=np.float64)
        return [b + offset for b, _ in found if area(b) >= 0.5 * self.min_area]

    def _people_by_face(self, frame: np.ndarray, region: Box) -> list[Box]:
        from .segment import body_from_face, face_side

        x0, y0, x1, y1 = region.astype(int)
        faces = detectors.detect_faces(frame[y0:y1, x0:x1], face_side(self.height, self.width), self.face_model)
        bodies = [body_from_face(f + np.array([x0, y0, x0, y0]), self.height, self.width) for f in faces]
        return [b for b in bodies if area(b) >= self.min_area]


def _shows(body: Box, face: Box) -> bool:
    """Whether ``face`` is the face of ``body``: its centre in the box's upper half."""
    cx, cy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    return bool(body[0] <= cx <= body[2] and body[1] <= cy <= body[1] + 0.5 * (body[3] - body[1]))


def _sized_like(ahead: Box, box: Box) -> Box:
    """``ahead`` with its width and height kept within SIZE_STEP of ``box``'s, about its own centre: each
    edge has its own velocity, and a box whose edges close in (a detector's loose box followed by a tight
    one) would otherwise shrink to nothing, or turn inside out, while it coasts."""
    size = box[2:] - box[:2]
    kept = np.clip(ahead[2:] - ahead[:2], size / SIZE_STEP, size * SIZE_STEP)
    middle = (ahead[:2] + ahead[2:]) / 2
    return np.concatenate([middle - kept / 2, middle + kept / 2])


def close_call(costs: dict[int, float], boxes: list[Box], best: int) -> bool:
    """Another person (a box apart from the best's) nearly as cheap as the best: the choice is a coin toss,
    and the frame's cue may be on the wrong one (a crossing of two people who look alike)."""
    return any(cost - costs[best] < CLOSE_CALL and iou(boxes[k], boxes[best]) < 0.2
               for k, cost in costs.items() if k != best)


def _steady(track: Track, held: int, ended: bool) -> bool:
    """Whether a candidate followed over the ``held`` frames of the look-ahead is a person: found again
    in PERSISTENT of them; or, when the clip ended before the look-ahead did (``ended``), found again
    in its last frame, where its motion put it. A short clip's median background is made of the few
    frames there are and holds a small or slow walker wherever they stand in most of them, so its
    middle frames show them in slivers or not at all (a 5-frame walker moving a third of their width
    a frame: found in the first and the last frame only; a 3-frame one, not in the middle frame)."""
    found = [f for _, f in track.history]
    if sum(found) >= max(1.0, PERSISTENT * held):
        return True
    return ended and held > 1 and found[-1]


def _same(a: Track, b: Track) -> bool:
    """Two tentative tracks that ended up on one person (boxes overlapping in most frames both found)."""
    both = [iou(x, y) > 0.5 for (x, fx), (y, fy) in zip(a.history, b.history) if fx and fy]
    return len(both) > 0 and sum(both) > 0.5 * len(both)
