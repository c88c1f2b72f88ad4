"""A second lane of work beside the caller's: calls run on worker threads, results come back in order.

The cue passes are chains of OpenCV calls, which let go of Python's lock while they run, so on a CPU
with two or more cores one frame's cut-out (GrabCut, the face search) can run while the tracker
searches the next frame, and one chunk renders while the next is read. Each lane keeps a bounded
number of calls in flight (memory stays bounded on long clips) and raises a call's error in the
caller's thread, at the next ``submit`` or ``drain``.
"""

from __future__ import annotations

import functools
import os
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class Lane:
    """Calls run one at a time, in the order submitted, on one worker thread (or inline on a single
    core, where a second thread would only add switching); at most ``depth`` wait at once."""

    def __init__(self, depth: int = 2):
        self.depth = max(1, depth)
        self._pool: Optional[ThreadPoolExecutor] = \
            ThreadPoolExecutor(1, thread_name_prefix="directanimator-cues") if cores() > 1 else None
        self._pending: deque[Future] = deque()

    def submit(self, call: Callable[..., None], *args) -> None:
        if self._pool is None:
            call(*args)
            return
        while len(self._pending) >= self.depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(call, *args))

    def drain(self) -> None:
        """Wait for every call submitted; the first error is raised here."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Drop the calls not yet started and wait for the running one (nothing outlives the pass)."""
        for future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "Lane":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ordered_map(call: Callable[[T], R], items: Iterable[T], workers: int = 2) -> Iterator[R]:
    """``call`` of each item, in order, with up to ``workers`` calls running at once (inline on a single
    core). Items are taken from ``items`` only as workers free up, so a stream stays a stream; closing
    the iterator early waits for the calls running and starts no more."""
    workers = min(workers, cores())
    if workers <= 1:
        yield from map(call, items)
        return
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(workers, thread_name_prefix="directanimator-cues") as pool:
        try:
            for item in items:
                pending.append(pool.submit(call, item))
                if len(pending) >= workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def per_thread(build: Callable[..., R], keep: int = 4) -> Callable[..., R]:
    """``build(*args)`` made once per thread and kept (the ``keep`` latest argument tuples): OpenCV's cascade
    classifiers and dnn nets hold their working buffers in the object, so two threads must not run one at
    the same time. A lane's worker thread builds its own and drops them when it ends."""
    local = threading.local()

    @functools.wraps(build)
    def cached(*args) -> R:
        made = local.__dict__.setdefault("made", {})
        if args not in made:
            made[args] = build(*args)
            while len(made) > keep:
                made.pop(next(iter(made)))
        return made[args]

    return cached
