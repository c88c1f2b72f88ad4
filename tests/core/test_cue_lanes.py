"""The cue passes' second lane (cues/lanes.py): calls in order, errors in the caller, bounded work in
flight, detectors per thread, and cues bit for bit the same as with everything on one thread."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from directanimator_core.cues import lanes
from directanimator_core.cues.config import CueConfig
from directanimator_core.cues.triplet import build_triplet
from harness import media

needs_two_cores = pytest.mark.skipif(lanes.cores() < 2, reason="one core: the lanes run inline")


@needs_two_cores
def test_a_lane_runs_calls_in_order_with_a_bounded_queue():
    done, waiting, most = [], [0], [0]
    lock = threading.Lock()

    def call(k: int) -> None:
        time.sleep(0.002 * (k % 3))
        with lock:
            waiting[0] -= 1
        done.append(k)

    with lanes.Lane(depth=2) as lane:
        for k in range(30):
            with lock:
                waiting[0] += 1
                most[0] = max(most[0], waiting[0])
            lane.submit(call, k)
        lane.drain()
    assert done == list(range(30))
    assert most[0] <= 3  # the queue's two and the one just submitted


@needs_two_cores
def test_a_lane_raises_its_calls_error_in_the_caller():
    def fail() -> None:
        raise ValueError("frame 3 broke")

    with pytest.raises(ValueError, match="frame 3 broke"):
        with lanes.Lane() as lane:
            lane.submit(fail)
            lane.drain()


def test_ordered_map_keeps_order_and_stops_taking_items_when_closed():
    taken = []

    def items():
        for k in range(100):
            taken.append(k)
            yield k

    out = lanes.ordered_map(lambda k: (time.sleep(0.001 * (k % 4)), k * k)[1], items())
    assert [next(out) for _ in range(10)] == [k * k for k in range(10)]
    out.close()
    assert len(taken) <= 13  # a stream stays a stream: a few items ahead, not all 100
    assert list(lanes.ordered_map(lambda k: -k, range(7))) == [0, -1, -2, -3, -4, -5, -6]


def test_ordered_map_raises_the_first_error():
    def call(k: int) -> int:
        if k == 5:
            raise RuntimeError("chunk 5")
        return k

    with pytest.raises(RuntimeError, match="chunk 5"):
        list(lanes.ordered_map(call, range(20)))


def test_per_thread_builds_one_object_a_thread():
    built = lanes.per_thread(lambda name: object())
    here = built("haar")
    assert built("haar") is here and built("other") is not here
    there = []
    worker = threading.Thread(target=lambda: there.append(built("haar")))
    worker.start()
    worker.join()
    assert there[0] is not here


@needs_two_cores
@pytest.mark.parametrize("clip", ["carphone", "vtest"])
def test_cues_on_two_lanes_equal_cues_on_one(clip, monkeypatch):
    """The tracker and the cut-out run side by side, and two chunks render at once; nothing they share
    may change a cue: the same clip with every lane inline gives the very same arrays."""
    frames = media.carphone_frames(30) if clip == "carphone" else media.vtest_frames(30)
    reference = media.astronaut()
    threaded = build_triplet(frames, CueConfig(), reference=reference)
    monkeypatch.setattr(lanes, "cores", lambda: 1)
    inline = build_triplet(frames, CueConfig(), reference=reference)
    for name in ("pose", "face", "body_mask", "face_mask", "person", "face_found", "quality"):
        assert np.array_equal(getattr(threaded, name), getattr(inline, name)), name
