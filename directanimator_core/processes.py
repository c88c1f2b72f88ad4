"""Processes: is one of this host still running (leftover scratch files of a dead writer may be
removed), and SIGTERM ending a command-line run the way Ctrl-C does."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager
from typing import Iterator


def alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running, or might be; this process counts as running.

    Errs toward "running": a file a live writer still needs must never be taken from it.
    """
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if handle:
            kernel32.CloseHandle(handle)
            return True
        return kernel32.GetLastError() != 87  # ERROR_INVALID_PARAMETER: no such process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt for the length of the block, as Ctrl-C does, so a command's
    scratch files are removed on the way out (Python's default for SIGTERM ends the process at once).
    Only the main thread can install a handler; elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(number: int, _frame) -> None:
        raise KeyboardInterrupt(signal.Signals(number).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
