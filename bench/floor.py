"""The floor of isolation, each step measured alone: fork + wait, Tracker enter + exit
(in this process and in a forked child), a Tracker started in a child and left running
(as isolated children leave theirs), settling the child's allocator, reading a capture.

Run by bench/run.py inside the plugin's benchmark venv; prints one JSON object.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import _pytest.python  # noqa: F401 - load what a pytest process has loaded
import pytest  # noqa: F401
from memray import FileFormat, Tracker

from pytest_memray_isolate._judging.capture import read_capture
from pytest_memray_isolate._tracking.heap import settle
from pytest_memray_isolate._tracking.tracker import prepare_for_forks
from pytest_memray_isolate._tracking.window import end_window, new_marker

MARKER = new_marker()

REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 50


def _median_ms(samples: List[float]) -> float:
    return round(statistics.median(samples) * 1000, 3)


def _in_child(step: Callable[[], None], results: Path) -> float:
    """Time ``step`` inside a forked child (written to a file the parent reads)."""
    pid = os.fork()
    if pid == 0:
        start = time.perf_counter()
        step()
        results.write_text(str(time.perf_counter() - start))
        os._exit(0)
    os.waitpid(pid, 0)
    return float(results.read_text())


def _track(path: Path) -> None:
    with Tracker(path, file_format=FileFormat.AGGREGATED_ALLOCATIONS):
        pass


def _track_left_running(path: Path) -> None:
    tracker = Tracker(path, file_format=FileFormat.ALL_ALLOCATIONS)
    tracker.__enter__()
    end_window(MARKER)


def _settle() -> None:
    settle()


def main() -> None:
    prepare_for_forks()  # what a forking runner does once: memray's imports, the heap's fill
    folder = Path(tempfile.mkdtemp())
    samples: Dict[str, List[float]] = {
        name: []
        for name in (
            "fork+wait",
            "tracker in process",
            "tracker in child",
            "tracker left running in child",
            "settle in child",
            "read capture",
        )
    }
    for number in range(REPEATS):
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        samples["fork+wait"].append(time.perf_counter() - start)

        capture = folder / f"in-{number}.bin"
        start = time.perf_counter()
        with Tracker(capture, file_format=FileFormat.AGGREGATED_ALLOCATIONS):
            pass
        samples["tracker in process"].append(time.perf_counter() - start)

        start = time.perf_counter()
        read_capture(capture, "bench")
        samples["read capture"].append(time.perf_counter() - start)

        child_capture = folder / f"child-{number}.bin"
        samples["tracker in child"].append(_in_child(functools.partial(_track, child_capture), folder / "t"))
        open_capture = folder / f"open-{number}.bin"
        samples["tracker left running in child"].append(
            _in_child(functools.partial(_track_left_running, open_capture), folder / "o")
        )
        samples["settle in child"].append(_in_child(_settle, folder / "s"))
    print(json.dumps({name: _median_ms(values) for name, values in samples.items()}))


if __name__ == "__main__":
    main()
