"""Captures whose Tracker never stopped (_tracking/window.py), read back as if it had.

Each test forks a child that tracks a small workload and ends as an isolated child does:
with ``end_window`` and ``os._exit``, its Tracker still running, or by stopping the
Tracker, for comparison.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Callable, List, Optional

import pytest
from memray import FileFormat, FileReader, Tracker

from pytest_memray_isolate._judging.capture import MemoryResult, read_capture
from pytest_memray_isolate._tracking.heap import settle
from pytest_memray_isolate._tracking.tracker import prepare_for_forks
from pytest_memray_isolate._tracking.window import close_window, end_window, new_marker, quiet_memray

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

KEPT: List[bytearray] = []


def _workload() -> None:
    """Lists, a large buffer freed before the end, a dict, and memory kept past the end."""
    words = [str(n) * 3 for n in range(20_000)]
    buffer = bytearray(3 * 1024 * 1024)
    table = {word: len(word) for word in words[::3]}
    del buffer
    KEPT.append(bytearray(100_000))
    assert table


def _threaded_workload() -> None:
    """Allocations from threads of the test's own, besides the test's thread."""

    def allocate() -> None:
        chunks = [bytearray(1000) for _ in range(200)]
        assert chunks

    threads = [threading.Thread(target=allocate) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _in_child(
    capture: Path,
    file_format: FileFormat,
    workload: Callable[[], None],
    marker: Optional[str],
    after: Callable[[], None] = lambda: None,
) -> int:
    """Track ``workload`` in a forked child; with ``marker`` end as an isolated child does."""
    prepare_for_forks()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            # As an isolated child does: the allocator settled, so that no collection
            # or free block the parent left changes one capture against another.
            tracker = Tracker(capture, file_format=file_format)
            keep = settle()
            tracker.__enter__()
            workload()
            if marker is None:
                tracker.__exit__(None, None, None)
            else:
                end_window(marker)
                after()
            del keep
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return status


def _figures(path: Path, *, count_places: bool) -> MemoryResult:
    return read_capture(path, "test", count_places=count_places)


@pytest.mark.parametrize("workload", [_workload, _threaded_workload], ids=["one thread", "threads"])
def test_a_capture_left_open_reads_like_one_whose_tracker_stopped(
    tmp_path: Path, workload: Callable[[], None]
) -> None:
    """Same peak, biggest places and allocation count as a stopped Tracker's capture of every
    allocation; the count of places is that of the aggregated capture of the same workload."""
    stopped = tmp_path / "stopped.bin"
    aggregated = tmp_path / "aggregated.bin"
    left_open = tmp_path / "open.bin"
    marker = new_marker()
    _in_child(stopped, FileFormat.ALL_ALLOCATIONS, workload, None)
    _in_child(aggregated, FileFormat.AGGREGATED_ALLOCATIONS, workload, None)
    _in_child(left_open, FileFormat.ALL_ALLOCATIONS, workload, marker)
    assert close_window(left_open, marker)

    from_stopped = _figures(stopped, count_places=False)
    from_open = _figures(left_open, count_places=False)
    with FileReader(aggregated) as reader:
        aggregated_count = reader.metadata.total_allocations
    places = _figures(left_open, count_places=True).total_allocations
    if workload is _workload:
        # Two processes ran the workload: the interpreter's own rare allocations may differ
        # between them by some KiB and a couple of records (pymalloc's address map takes
        # 3 KiB nodes or not, depending on where new arenas were mapped; 12 KiB and two
        # records once, on Python 3.9 in CI). The slack stays well below the 100 kB buffer
        # allocated last, so a capture that lost the workload's end still fails. The
        # biggest places at the peak must be the same, their sizes as close, and the
        # record written last must be there.
        slack = 32 * 1024
        assert from_stopped.peak_memory > 3 * 1024 * 1024
        assert abs(from_open.peak_memory - from_stopped.peak_memory) < slack
        assert len(from_open.top_locations) >= 3
        assert len(from_stopped.top_locations) >= 3
        for open_place, stopped_place in zip(from_open.top_locations[:3], from_stopped.top_locations[:3]):
            assert (open_place.function, open_place.filename, open_place.lineno) == (
                stopped_place.function,
                stopped_place.filename,
                stopped_place.lineno,
            )
            assert abs(open_place.size - stopped_place.size) < slack
        assert abs(from_open.total_allocations - from_stopped.total_allocations) <= 4
        assert abs(places - aggregated_count) <= 4
        with FileReader(left_open) as reader:
            sizes = [record.size for record in reader.get_allocation_records()]
        assert 100_001 in sizes  # the buffer kept past the peak, allocated last
    else:
        # Threads start and end at their own pace: a few hundred bytes and a few places of
        # their own bookkeeping differ from run to run (9 places once, on a loaded
        # machine), whichever way the capture ends.
        assert abs(from_open.peak_memory - from_stopped.peak_memory) < 2048
        assert from_open.top_locations[0] == from_stopped.top_locations[0]
        assert abs(from_open.total_allocations - from_stopped.total_allocations) <= 16
        # A thread's start allocates through two allocators from one place, which the
        # aggregated format counts twice.
        assert 0 < places <= aggregated_count


def test_what_the_child_does_after_the_window_is_not_counted(tmp_path: Path) -> None:
    """Allocations after ``end_window`` (the child building its report) are cut off."""
    capture = tmp_path / "open.bin"
    marker = new_marker()
    later = []

    def allocate_after() -> None:
        later.append(bytearray(64 * 1024 * 1024))

    _in_child(capture, FileFormat.ALL_ALLOCATIONS, _workload, marker, after=allocate_after)
    assert close_window(capture, marker)
    figures = _figures(capture, count_places=False)
    assert 3 * 1024 * 1024 < figures.peak_memory < 16 * 1024 * 1024


def test_a_closed_capture_ends_with_memrays_trailer_and_no_padding(tmp_path: Path) -> None:
    """The cut file is as long as what was written, so readers need not skip zeros."""
    capture = tmp_path / "open.bin"
    marker = new_marker()
    _in_child(capture, FileFormat.ALL_ALLOCATIONS, _workload, marker)
    assert close_window(capture, marker)
    data = capture.read_bytes()
    assert data.endswith(b"\x01")
    assert marker.encode() not in data


def test_without_the_marker_the_file_is_trimmed_and_reports_false(tmp_path: Path) -> None:
    """A child that died during the call wrote no marker: the capture is trimmed, still readable."""
    capture = tmp_path / "killed.bin"

    def die() -> None:
        _workload()
        os.kill(os.getpid(), signal.SIGKILL)

    status = _in_child(capture, FileFormat.ALL_ALLOCATIONS, die, new_marker())
    assert os.WIFSIGNALED(status)
    padded = capture.stat().st_size
    assert not close_window(capture, new_marker())
    assert 0 < capture.stat().st_size < padded
    with quiet_memray():
        figures = _figures(capture, count_places=True)
    assert figures.peak_memory > 3 * 1024 * 1024


def test_a_missing_or_empty_capture_is_not_closed(tmp_path: Path) -> None:
    """A child that died before its Tracker started left no file, or an empty one."""
    assert not close_window(tmp_path / "missing.bin", new_marker())
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert not close_window(empty, new_marker())


def _closed_capture(path: Path) -> bytes:
    """The bytes of a capture left open by its child, then closed by ``close_window``."""
    marker = new_marker()
    _in_child(path, FileFormat.ALL_ALLOCATIONS, _workload, marker)
    assert close_window(path, marker)
    return path.read_bytes()


def test_a_torn_last_record_is_dropped_without_memrays_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Cut anywhere in its last records, a capture reads, and memray prints nothing."""
    whole = _closed_capture(tmp_path / "open.bin")
    torn = tmp_path / "torn.bin"
    peaks = set()
    for cut in range(len(whole) - 1, len(whole) - 60, -1):
        torn.write_bytes(whole[:cut])
        with quiet_memray():
            peaks.add(_figures(torn, count_places=False).peak_memory)
    captured = capfd.readouterr()
    assert captured.err == ""
    assert min(peaks) > 3 * 1024 * 1024


def test_quiet_memray_puts_memrays_error_messages_back_afterwards(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Outside ``quiet_memray`` the same torn file makes memray print its error (the control)."""
    capture = tmp_path / "open.bin"
    whole = _closed_capture(capture)
    errors = []
    for cut in range(len(whole) - 2, len(whole) - 30, -1):
        capture.write_bytes(whole[:cut])
        with quiet_memray():
            _figures(capture, count_places=False)
        quiet = capfd.readouterr().err
        _figures(capture, count_places=False)
        errors.append((quiet, capfd.readouterr().err))
    assert all(quiet == "" for quiet, _ in errors)
    assert any("Failed" in loud for _, loud in errors)
