"""How much a test's process grew its peak resident set during the call (limit_rss).

Linux keeps each process's peak resident size (``VmHWM`` in ``/proc/self/status``) and
resets it to the current size when ``5`` is written to ``/proc/self/clear_refs``. Right
before the test's call the probe resets it and notes the resident size; right after the
call it reads the peak again. The growth is the difference: what the operating system
had to give the test (memory-mapped pages it touched, allocators memray does not see),
which memray's heap figures do not show.

The size at the reset is the resident size psutil gives (``memory_info().rss``), which
psutil reads from ``/proc/self/statm``; the probe reads that file itself, a third of
psutil's cost (about 10 µs against 30 µs here). psutil gives neither the peak nor a way
to reset it, so those are read and written directly. Both reads go into buffers made
before the Tracker starts, so that reading allocates nothing memray would charge to the
test beyond a short-lived integer or two; the figures are parsed only after the tracked
window. Elsewhere (not Linux, or ``clear_refs`` not writable) the figure is unavailable.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import List, Optional, Union, final

__all__ = [
    "CLEAR_REFS",
    "NOT_REPORTED",
    "STATM",
    "STATUS",
    "Resident",
    "ResidentProbe",
    "statm_resident",
    "status_value",
]

CLEAR_REFS = "/proc/self/clear_refs"
STATUS = "/proc/self/status"
STATM = "/proc/self/statm"
#: What ``clear_refs`` takes to reset the peak resident size to the current one.
_RESET_PEAK = b"5"
#: Room for ``/proc/self/status`` (about 1.5 KiB on Linux 6) and ``/proc/self/statm``.
_STATUS_ROOM = 4096
#: The units ``/proc/self/status`` may give sizes in.
_UNITS = {b"kB": 1024, b"mB": 1024**2, b"B": 1}

UNAVAILABLE_HERE = "unavailable on this platform (it needs Linux's /proc/self/clear_refs)"
#: Why an isolated test has no figure when its child ended without reporting.
NOT_REPORTED = "unknown: the test's child ended before it reported"
#: Why a test has no figure when its call never reached the probe.
NOT_MEASURED = "unknown: not measured"


def statm_resident(statm: Union[bytes, bytearray], page_size: int) -> Optional[int]:
    """The resident size in ``/proc/self/statm`` text (its second field, in pages), in
    bytes, or ``None`` when the text is not such a line. Trailing zero bytes are ignored."""
    fields = bytes(statm.split(b"\0", 1)[0]).split()
    if len(fields) < 2 or not fields[1].isdigit():
        return None
    return int(fields[1]) * page_size


def status_value(status: Union[bytes, bytearray], key: bytes) -> Optional[int]:
    """The size ``key`` (``b"VmHWM"``, ``b"VmRSS"``) has in ``/proc/self/status`` text, in
    bytes, or ``None`` when the text has no such line or an unreadable one. Anything after
    the text (a buffer's unused zero bytes) is ignored."""
    start = status.find(b"\n" + key + b":")
    if start < 0:
        if not status.startswith(key + b":"):
            return None
        start = -1
    line_end = status.find(b"\n", start + 1)
    line = status[start + 1 + len(key) + 1 : line_end if line_end >= 0 else len(status)]
    parts = bytes(line).split()
    if len(parts) != 2 or not parts[0].isdigit() or parts[1] not in _UNITS:
        return None
    return int(parts[0]) * _UNITS[parts[1]]


@final
@dataclass(frozen=True)
class Resident:
    """A test's resident figures: the size at the call's start and the peak during it, or
    why there are none (``unavailable``)."""

    start: Optional[int] = None
    peak: Optional[int] = None
    unavailable: Optional[str] = None

    @property
    def growth(self) -> Optional[int]:
        """How far the peak rose above the size at the start (never negative), if known."""
        if self.start is None or self.peak is None:
            return None
        return max(0, self.peak - self.start)

    @property
    def description(self) -> str:
        """The figure as a sentence's end: the reason when there is no figure."""
        return self.unavailable or NOT_MEASURED


@final
class ResidentProbe:
    """Resets the process's peak resident size before a call and reads it after.

    Make it before the Tracker starts (its buffers are then not the test's); call
    :meth:`reset` right before the call and :meth:`read_peak` right after it, and
    :meth:`figures` once nothing is tracked any more.
    """

    __slots__ = ("_after", "_after_buffers", "_at_reset", "_at_reset_buffers", "_error", "_read")

    def __init__(self) -> None:
        self._at_reset = bytearray(_STATUS_ROOM)
        self._after = bytearray(_STATUS_ROOM)
        # os.readv takes a sequence of buffers: made here, not during the call.
        self._at_reset_buffers: List[bytearray] = [self._at_reset]
        self._after_buffers: List[bytearray] = [self._after]
        self._error: Optional[OSError] = None
        self._read = False

    def reset(self) -> None:
        """Set the peak resident size to the current size, and note that size."""
        try:
            handle = os.open(CLEAR_REFS, os.O_WRONLY)
            try:
                os.write(handle, _RESET_PEAK)
            finally:
                os.close(handle)
            _read_into(STATM, self._at_reset_buffers)
        except OSError as error:
            self._error = error

    def read_peak(self) -> None:
        """Note the peak resident size since :meth:`reset`."""
        if self._error is not None:
            return
        try:
            _read_into(STATUS, self._after_buffers)
            self._read = True
        except OSError as error:
            self._error = error

    def figures(self) -> Resident:
        """What the probe measured, or why it could not."""
        if self._error is not None:
            return Resident(unavailable=_why_unavailable(self._error))
        if not self._read:
            return Resident(unavailable=NOT_MEASURED)
        start = statm_resident(self._at_reset, mmap.PAGESIZE)
        peak = status_value(self._after, b"VmHWM")
        if start is None or peak is None:
            return Resident(unavailable=f"unavailable here: {STATM} or {STATUS} could not be read")
        return Resident(start=start, peak=peak)


def _read_into(path: str, buffers: List[bytearray]) -> None:
    handle = os.open(path, os.O_RDONLY)
    try:
        os.readv(handle, buffers)
    finally:
        os.close(handle)


def _why_unavailable(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return UNAVAILABLE_HERE
    return f"unavailable here: {error.filename or CLEAR_REFS} could not be used ({error.strerror or error})"
