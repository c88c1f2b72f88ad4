"""The extract command's output folder: every file is written under a scratch name, then renamed into place.

The scratch folder, ``.extract.<host>.<pid>.tmp``, lies inside the output folder (one file system,
so each rename is atomic). Until ``commit`` the previous outputs stay as they were; an error or an
interrupt (Ctrl-C, SIGTERM turned into one by the command) removes the scratch folder on the way
out. A run killed outright (kill -9, power loss) leaves its scratch folder behind: the next run into
that folder removes it once its process is gone (``remove_leftovers``); a live run's is left alone.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import InputError
from ..processes import alive as _alive

log = logging.getLogger(__name__)

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
SCRATCH = re.compile(r"^\.extract\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp$")


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the scratch folders that runs of this host, no longer running, left in ``folder``; returns them.

    Args:
        folder: the output folder (missing: nothing to do).
    """
    if not folder.is_dir():
        return []
    removed = []
    for path in sorted(folder.iterdir()):
        match = SCRATCH.match(path.name)
        ours = match and path.is_dir() and not path.is_symlink() and match["host"] == HOST
        if ours and not _alive(int(match["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed what %d interrupted run(s) left in %s: %s", len(removed), folder,
                 ", ".join(p.name for p in removed))
    return removed


@contextmanager
def scratch_folder(folder: Path) -> Iterator[Path]:
    """A folder to write the new outputs in, inside ``folder`` (created if missing); removed when the block ends.

    Args:
        folder: the output folder.
    """
    scratch = folder / f".extract.{HOST}.{os.getpid()}.tmp"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir()
    except OSError as error:
        raise InputError(f"--out {folder}: cannot write there ({error.strerror}); give a folder you can write "
                         "to") from None
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def commit(scratch: Path, folder: Path, names: Sequence[str]) -> None:
    """Flush the finished files in ``scratch`` to disk and rename them into ``folder``, in ``names``' order
    (the report last); SIGINT and SIGTERM wait until the renames are done.

    Args:
        scratch: the scratch folder (scratch_folder).
        folder: the output folder.
        names: the files to move.
    """
    for name in names:
        with open(scratch / name, "rb") as handle:
            os.fsync(handle.fileno())
    with _signals_deferred():
        for name in names:
            os.replace(scratch / name, folder / name)
        _fsync_dir(folder)


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM noted, not acted on, for the block (only the main thread can set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    wanted = (signal.SIGINT, signal.SIGTERM)
    previous = {number: signal.signal(number, lambda got, _frame: caught.append(got)) for number in wanted}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)
        if caught:
            log.warning("%s came while the finished outputs were renamed into place: they are complete",
                        signal.Signals(caught[0]).name)


def _fsync_dir(folder: Path) -> None:
    if os.name == "nt":  # directories cannot be opened for fsync on Windows
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)
