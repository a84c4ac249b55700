"""Where each test's capture file goes: a private temporary directory, or kept for the user."""

from __future__ import annotations

import glob
import hashlib
import itertools
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import List, Optional, Tuple

__all__ = [
    "CaptureFiles",
    "derived_captures",
    "forked_captures",
    "kept_file_name",
    "no_scratch_message",
    "region_capture",
    "repetition_capture",
    "run_prefix",
]

#: Most file systems cap one path component at 255 bytes. Kept names leave room for what
#: is added to them, such as the ``.lz4.tmp`` of memray's compression when tracking
#: stops, ``-repeatN``, and a forked process's ``.PID``.
_MAX_NAME_BYTES = 255 - 40
_SUFFIX = ".bin"
_UNPORTABLE = re.compile(r"[^\w.\-\[\]=+,@]+")
#: What a node id may hold for its name to need no digest: characters the name keeps as
#: they are, plus ``/`` in its path and ``::`` between its names (both written ``-``).
_KEPT_AS_IS = re.compile(r"[\w.\[\]=+,@]+")
_DIGEST_CHARACTERS = 8


def _digest(nodeid: str, length: int) -> str:
    return "-" + hashlib.sha256(nodeid.encode()).hexdigest()[:length]


def _readable_alone(nodeid: str) -> bool:
    """Whether ``nodeid`` can be told from its readable name alone.

    The name turns ``/`` and ``::`` into ``-`` and any other character a file name cannot
    hold into ``-`` too; only a node id with no such character and no ``-`` of its own
    maps back to one test (a path cannot be both a file and a directory).
    """
    path, *names = nodeid.split("::")
    parts = [*path.split("/"), *names]
    return all(_KEPT_AS_IS.fullmatch(part) for part in parts)


def kept_file_name(prefix: str, nodeid: str) -> str:
    """A portable file name for a test's kept capture: ``PREFIX-path-to-test.py-test_name[id].bin``.

    Characters that some systems refuse become ``-``. A node id that lost characters that
    way ends with a short digest of itself (``...test_name[a-b]-1f2e3d4c.bin``), so tests
    whose ids differ only there never share a file; a name too long for one path
    component keeps its start and ends with a longer digest.
    """
    readable = _UNPORTABLE.sub("-", f"{prefix}-{nodeid.replace('::', '-')}").strip("-.")
    digest = "" if _readable_alone(nodeid) else _digest(nodeid, _DIGEST_CHARACTERS)
    name = readable + digest + _SUFFIX
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    ending = _digest(nodeid, 16) + _SUFFIX
    head = name.encode()[: _MAX_NAME_BYTES - len(ending)].decode(errors="ignore")
    return head + ending


def repetition_capture(capture: Path, number: int, repeats: int) -> Path:
    """The capture of tracked repetition ``number`` (from 1): ``NAME-repeatN.bin``, the last one ``capture``."""
    if number == repeats:
        return capture
    return capture.with_name(f"{capture.stem}-repeat{number}{capture.suffix}")


def region_capture(capture: Path, number: int) -> Path:
    """The capture of a test's ``memray_region`` ``number`` (from 1): ``NAME-regionN.bin``."""
    return capture.with_name(f"{capture.stem}-region{number}{capture.suffix}")


def forked_captures(capture: Path) -> List[Tuple[int, Path]]:
    """The captures memray wrote for processes forked while ``capture`` was being written.

    With ``follow_fork`` memray names each forked process's capture ``NAME.bin.PID``
    (forks of forks too: they keep the first name). Each comes with its pid, in pid order.
    """
    pattern = re.compile(re.escape(capture.name) + r"\.(\d+)")
    found = []
    for path in capture.parent.glob(glob.escape(capture.name) + ".*"):
        match = pattern.fullmatch(path.name)
        if match is not None:
            found.append((int(match.group(1)), path))
    return sorted(found)


def derived_captures(capture: Path) -> List[Path]:
    """Every capture memray may write for the same test besides ``capture``: earlier
    repetitions' (``NAME-repeatN.bin``), forked processes' (``NAME.bin.PID``) and
    regions' (``NAME-regionN.bin``)."""
    pattern = re.compile(
        re.escape(capture.stem) + r"(-repeat\d+|-region\d+)?" + re.escape(capture.suffix) + r"(\.\d+)?"
    )
    return [
        path
        for path in capture.parent.glob(glob.escape(capture.stem) + "*")
        if path != capture and pattern.fullmatch(path.name)
    ]


def run_prefix(given: Optional[str]) -> str:
    """The prefix of the run's kept capture files: the one given, or a random one."""
    return given or uuid.uuid4().hex


class CaptureFiles:
    """Hands out one fresh capture path (and message path) per tracked test."""

    def __init__(self, keep_in: Optional[Path], prefix: Optional[str]) -> None:
        self.keep_in = keep_in
        self.prefix = run_prefix(prefix)
        self._scratch: Optional[Path] = None
        self._numbers = itertools.count()

    @property
    def scratch(self) -> Path:
        """The run's private directory (see :meth:`make_scratch`)."""
        return self.make_scratch()

    def make_scratch(self) -> Path:
        """Make the run's private directory, once: a run that tracks nothing needs none,
        and may have no usable temporary directory at all.

        Raises ``OSError`` when it cannot be made (see :func:`no_scratch_message`).
        """
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="pytest-memray-isolate-"))
        return self._scratch

    def paths_for(self, nodeid: str, *, derived: bool = False) -> Tuple[Path, Path]:
        """The capture path, and a stem for the job's other scratch files, for one run of a test.

        ``derived``: the test may write more than one capture (repetitions, forked processes).
        """
        stem = self.scratch / str(next(self._numbers))
        if self.keep_in is None:
            return stem.with_suffix(".bin"), stem
        capture = self.keep_in / kept_file_name(self.prefix, nodeid)
        # Files from an earlier run of the same test: memray refuses to overwrite them,
        # and a forked process's file must not be read as this run's.
        for earlier in (capture, *(derived_captures(capture) if derived else ())):
            earlier.unlink(missing_ok=True)
        return capture, stem

    def done_with(self, capture: Path, stem: Path, *, derived: bool = False) -> None:
        """Delete a job's scratch files, and its captures unless the user keeps them."""
        for leftover in (".report", ".faults", ".running", ".request", ".startup", ".start", ".logged"):
            stem.with_suffix(leftover).unlink(missing_ok=True)
        if self.keep_in is None:
            for path in (capture, *(derived_captures(capture) if derived else ())):
                path.unlink(missing_ok=True)

    def remove_scratch(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def no_scratch_message(who: str, error: OSError) -> str:
    """What to tell the user when the private directory cannot be made, and what to set."""
    return f"{who} needs a temporary directory for the tests' captures: {error}; set TMPDIR to a writable directory"
