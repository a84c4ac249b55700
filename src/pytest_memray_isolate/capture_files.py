"""Where each test's capture file goes: a private temporary directory, or kept for the user."""

from __future__ import annotations

import hashlib
import itertools
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Optional, Set, Tuple

__all__ = ["CaptureFiles", "kept_file_name"]

#: Most file systems cap one path component at 255 bytes. Kept names leave room for what
#: is added to them, such as the ``.lz4.tmp`` of memray's compression when tracking stops.
_MAX_NAME_BYTES = 255 - 40
_SUFFIX = ".bin"
_UNPORTABLE = re.compile(r"[^\w.\-\[\]=+,@]+")


def kept_file_name(prefix: str, nodeid: str) -> str:
    """A portable file name for a test's kept capture: ``PREFIX-path-to-test.py-test_name[id].bin``.

    Characters that some systems refuse become ``-``; a name too long for one path
    component keeps its start and ends with a digest of the whole node id, so it stays unique.
    """
    name = _UNPORTABLE.sub("-", f"{prefix}-{nodeid.replace('::', '-')}").strip("-.") + _SUFFIX
    if len(name.encode()) <= _MAX_NAME_BYTES:
        return name
    digest = "-" + hashlib.sha256(nodeid.encode()).hexdigest()[:16] + _SUFFIX
    head = name.encode()[: _MAX_NAME_BYTES - len(digest)].decode(errors="ignore")
    return head + digest


class CaptureFiles:
    """Hands out one fresh capture path (and message path) per tracked test."""

    def __init__(self, keep_in: Optional[Path], prefix: Optional[str]) -> None:
        self.keep_in = keep_in
        self.prefix = prefix or uuid.uuid4().hex
        self.scratch = Path(tempfile.mkdtemp(prefix="pytest-memray-isolate-"))
        self._kept: Set[Path] = set()
        self._numbers = itertools.count()

    def paths_for(self, nodeid: str) -> Tuple[Path, Path]:
        """The capture path, and a stem for the job's other scratch files, for one run of a test."""
        stem = self.scratch / str(next(self._numbers))
        if self.keep_in is None:
            return stem.with_suffix(".bin"), stem
        capture = self.keep_in / kept_file_name(self.prefix, nodeid)
        capture.unlink(missing_ok=True)  # a file from an earlier run of the same test
        return capture, stem

    def done_with(self, capture: Path, stem: Path) -> None:
        """Delete a job's scratch files, and its capture unless the user keeps them."""
        for leftover in (".report", ".faults"):
            stem.with_suffix(leftover).unlink(missing_ok=True)
        if self.keep_in is None:
            capture.unlink(missing_ok=True)

    def record_kept(self, capture: str) -> None:
        """Count a kept capture file (reported by this process or by a pytest-xdist worker)."""
        self._kept.add(Path(capture))

    def summary_line(self) -> Optional[str]:
        """What the report says about kept files, as pytest-memray words it."""
        if self.keep_in is None:
            return None
        return f"Created {len(self._kept)} binary dumps at {self.keep_in} with prefix {self.prefix}"

    def remove_scratch(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
