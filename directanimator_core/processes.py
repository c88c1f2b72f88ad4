"""Is a process of this host still running? (Leftover scratch files of a dead writer may be removed.)"""

from __future__ import annotations

import os


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
