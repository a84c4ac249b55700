"""The machine-readable report (--memray-json): one JSON document per run.

Schema, version 1, minor version 2 (documented in docs/reports.rst)::

    {
      "schema": "pytest-memray-isolate/report", "version": 1, "minor_version": 2,
      "exit_status": 0,
      "settings": {"isolate": "fork", "capture_format": "aggregated", "follow_fork": false,
                   "repeat_leaks": {"warmups": 1, "repeats": 3} | null, ...},
      "summary": {"tracked": 12, "outcomes": {"passed": 11, "failed": 1},
                  "highest_peak": {"nodeid": "...", "peak_memory": 40509536} | null},
      "tests": [
        {"nodeid": "...", "outcome": "passed", "mode": "fork" | "in-process",
         "duration": 0.0123 | null,
         "peak_memory": 40509536 | null, "total_allocations": 4 | null,
         "rss_growth": 67108864 | null,
         "limit": {"kind": "limit_memory", "bytes": ..., "text": "24 MB", "source": "marker"}
                | {"kind": "limit_leaks", ..., "warmups": 1, "repeats": 3} | null,
         "top_locations": [{"function": ..., "filename": ..., "lineno": ..., "size": ...}],
         "capture_file": "/path/prefix-test.bin" | null,
         "flamegraph": "/path/flamegraph-test.html" | null,
         "child": {"exit_code": 3 | null, "signal": "SIGSEGV" | null,
                   "killed_for": "timeout" | "memory" | null, "max_rss": ...} | null,
         "leaks": [{"size": ..., "function": ..., "filename": ..., "lineno": ...,
                    "growth": [..., ...]}] | null,
         "processes": [{"pid": 4242, "role": "test" | "forked", "peak_memory": ... | null,
                        "total_allocations": ... | null, "counted": true, "note": ... | null,
                        "capture_file": ... | null}] | null,
         "regions": [{"number": 1, "filename": ..., "lineno": ..., "peak_memory": ...,
                      "total_allocations": ..., "top_locations": [...],
                      "leaked_memory": ... | null, "capture_file": ... | null}] | null}
      ]
    }

Sizes are integers in bytes; ``duration`` is the call phase's seconds. A minor version
only adds keys (minor version 1 added ``minor_version`` and ``duration``; minor version 2
each test's ``rss_growth`` and ``regions``, and the setting ``limit_rss``), so a reader of
version 1 reads every minor version; ``version`` changes when a key is removed or changed.
``leaks`` lists, for a ``limit_leaks`` test that passed its
own checks, the leaks that counted against the limit (``growth``: bytes leaked there on
each tracked repetition). ``rss_growth`` is how many bytes the peak resident size of the
process that ran the test grew by during its call (Linux; ``null`` where it cannot be
measured, or when the test's child ended without reporting). ``child`` is set when an isolated child ended without
reporting (a crash, or killed at its deadline or memory ceiling). ``processes`` is set
with --memray-follow-fork: the test's process and each one it forked; ``peak_memory``
and ``total_allocations`` of the test are then the sums over the counted ones.
``regions`` is set for a test that uses the ``memray_region`` fixture (``null`` for
others, and for a child that died before reporting them): each region in the order the
test opened it, ``total_allocations`` counting its allocation events, ``leaked_memory``
with ``leaks=True`` only; the test's ``peak_memory`` and ``total_allocations`` are then
the highest of its regions'.

Each entry of ``tests`` is a ``TestRecord`` (record.py), which keeps this schema.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Dict, Iterable, List, Tuple

from .._settings import Settings
from .record import TestRecord

__all__ = [
    "MINOR_VERSION",
    "SCHEMA",
    "VERSION",
    "build_document",
    "write_atomically",
    "write_text_atomically",
]

SCHEMA = "pytest-memray-isolate/report"
#: Changes when a key is removed or changes meaning.
VERSION = 1
#: Changes when keys are added (readers of the version keep working).
MINOR_VERSION = 2


def _settings(settings: Settings) -> Dict[str, Any]:
    tolerance = settings.fail_on_increase
    repetition = settings.repeat_leaks
    return {
        "memray": settings.memray,
        "isolate": settings.isolate,
        "capture_format": settings.capture_format,
        "follow_fork": settings.follow_fork,
        "repeat_leaks": None
        if repetition is None
        else {"warmups": repetition.warmups, "repeats": repetition.repeats},
        "native": settings.native,
        "trace_python_allocators": settings.trace_python_allocators,
        "stacks": settings.stacks,
        "limit_memory": settings.limit_memory,
        "limit_rss": settings.limit_rss,
        "fail_on_increase": None if tolerance is None else tolerance.text,
        "timeout": settings.timeout,
        "max_rss": settings.max_rss,
        "bin_path": None if settings.bin_path is None else str(settings.bin_path),
    }


def build_document(records: Iterable[TestRecord], settings: Settings, *, exitstatus: int) -> Dict[str, Any]:
    """The whole report: every tracked test, the run's figures and its settings."""
    tests: List[Dict[str, Any]] = [record.to_dict() for record in records]
    measured = [test for test in tests if test["peak_memory"] is not None]
    highest = max(measured, key=lambda test: test["peak_memory"], default=None)
    return {
        "schema": SCHEMA,
        "version": VERSION,
        "minor_version": MINOR_VERSION,
        "exit_status": exitstatus,
        "settings": _settings(settings),
        "summary": {
            "tracked": len(tests),
            "outcomes": dict(Counter(test["outcome"] for test in tests)),
            "highest_peak": None
            if highest is None
            else {"nodeid": highest["nodeid"], "peak_memory": highest["peak_memory"]},
        },
        "tests": tests,
    }


def _new_file_beside(path: Path) -> Tuple[int, Path]:
    """A new file next to ``path``, with the permissions the umask gives (as the kept
    captures and flame graphs have; ``tempfile.mkstemp`` would make it private)."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), temporary


def write_atomically(path: Path, document: Dict[str, Any]) -> None:
    """Write ``document`` to ``path`` so that readers never see half a file."""
    write_text_atomically(path, json.dumps(document, indent=2) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a file beside it, renamed once complete (the
    JSON and HTML reports alike)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = _new_file_beside(path)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
