"""Captures whose Tracker never stops: the child marks where the call ended, the parent closes the file there.

Stopping a Tracker costs as much as starting one: memray walks the relocations of every
loaded library again to put back the symbols it patched (``SymbolPatcher::restore_symbols``
in memray's ``elf_shenanigans.cpp``). An isolated child is about to exit anyway, so it
leaves its Tracker running and ends with ``os._exit``. Nothing is lost: memray's
``ALL_ALLOCATIONS`` sink copies each record into a shared mapping of the file as it
happens, and its reader accepts a file whose Tracker never wrote a trailer.

What the child does after the call (building and sending its report) is recorded too,
so the window must end right after the call. The child renames its thread to a marker
unique to the job: memray writes the new name at once as one ``THREAD_RECORD``, under the
lock every record write takes, so the marker is a whole record between the test's last
record and the child's own work. The parent finds it, writes memray's ``TRAILER`` token
in its place and cuts the file there: the reader then stops where a stopped Tracker's
file would end, and the file opens with every ``memray`` command.

A child that crashed or was killed wrote no marker. Its file is cut after the last
byte that is not zero (memray's reader would otherwise step back over the padding one
byte at a time); its last record may be torn, and memray then drops it with an error
that ``quiet_memray`` keeps off the user's terminal.
"""

from __future__ import annotations

import logging
import mmap
import os
import secrets
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import memray

__all__ = ["close_window", "end_window", "new_marker", "quiet_memray", "trim_padding"]

_MARKER_PREFIX = "pytest-memray-isolate: end of the tracked call "
_THREAD_RECORD = b"\x0a"  # memray's RecordType::THREAD_RECORD
_TRAILER = b"\x01"  # memray's RecordType::TRAILER
_CHUNK = 1 << 16
#: memray's own switch for what its C++ side prints to stderr (missing from its type stubs).
_set_log_level: Callable[[int], None] = memray.__dict__["set_log_level"]


def new_marker() -> str:
    """A thread name no test can produce by chance: the end of one job's window."""
    return _MARKER_PREFIX + secrets.token_hex(16)


def end_window(marker: str) -> None:
    """End the tracked window here (in the child, with its Tracker still running).

    memray's profile function, which follows every Python call to know the stacks of
    allocations, is taken off too: nothing after the window is read, and the child's
    own work (its report) runs at full speed.
    """
    thread = threading.current_thread()
    name = thread.name
    thread.name = marker  # memray records the name as it is set
    sys.setprofile(None)
    threading.setprofile(None)
    thread.name = name


def close_window(path: Path, marker: str) -> bool:
    """Cut ``path`` at the end of its window, as a stopped Tracker's file would end.

    Returns whether the marker was found; without it (the child died during the call)
    the file is only trimmed (see ``trim_padding``).
    """
    needle = _THREAD_RECORD + marker.encode() + b"\0"
    try:
        with open(path, "r+b") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size == 0:
                return False
            with mmap.mmap(stream.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                found = mapped.rfind(needle)
            if found < 0:
                _trim(stream.fileno(), size)
                return False
            stream.seek(found)
            stream.write(_TRAILER)
            stream.truncate(found + len(_TRAILER))
    except FileNotFoundError:
        return False
    return True


def trim_padding(path: Path) -> None:
    """Cut the zero bytes memray's sink left after the last record it wrote."""
    try:
        with open(path, "r+b") as stream:
            size = os.fstat(stream.fileno()).st_size
            if size:
                _trim(stream.fileno(), size)
    except FileNotFoundError:
        pass


def _trim(fileno: int, size: int) -> None:
    with mmap.mmap(fileno, size, access=mmap.ACCESS_READ) as mapped:
        end = size
        while end > 0:
            start = max(0, end - _CHUNK)
            kept = len(mapped[start:end].rstrip(b"\0"))
            if kept:
                end = start + kept
                break
            end = start
    os.ftruncate(fileno, end)


@contextmanager
def quiet_memray() -> Iterator[None]:
    """Keep memray's reader from printing errors about a torn last record (a crashed child's)."""
    _set_log_level(logging.CRITICAL)
    try:
        yield
    finally:
        _set_log_level(logging.WARNING)  # memray's default
