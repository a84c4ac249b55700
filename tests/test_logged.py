"""What a child that died before its call report had logged: the subtests' reports and the
regions it measured, read back by the parent from the call's logged file."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

from pytest_memray_isolate._capture_files import region_capture
from pytest_memray_isolate._isolation.child_end import read_logged
from pytest_memray_isolate._isolation.messages import CallSpec, Logged, RegionMeasured, RegionOpened
from pytest_memray_isolate._judging.capture import RegionFigures

_MEASURED = RegionFigures(1, "/t/test_x.py", 5, peak_memory=2048, total_allocations=3, top_locations=())


def _spec(tmp_path: Path) -> CallSpec:
    return CallSpec("test_x.py::test_it", tmp_path / "test_it.bin", tmp_path / "test_it", regions=True)


def _die_tracking(capture: Path, *, allocating: int) -> None:
    """Leave ``capture`` as a child that died inside a region does: its Tracker never stopped."""
    code = (
        "import os, sys\n"
        "from memray import FileFormat, Tracker\n"
        "Tracker(sys.argv[1], file_format=FileFormat.ALL_ALLOCATIONS).__enter__()\n"
        "kept = bytearray(int(sys.argv[2]))\n"
        "os._exit(3)\n"
    )
    died = subprocess.run([sys.executable, "-c", code, str(capture), str(allocating)], check=False)
    assert died.returncode == 3


def _log(spec: CallSpec, *records: object) -> None:
    with open(spec.logged_file, "ab") as stream:
        for record in records:
            stream.write(pickle.dumps(record))


def test_nothing_logged_reads_as_no_reports_and_no_regions(tmp_path: Path) -> None:
    assert read_logged(_spec(tmp_path)) == ((), ())


def test_reports_and_ended_regions_are_read_in_order(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _log(
        spec,
        Logged({"n": 1}),
        RegionOpened(1, "/t/test_x.py", 5),
        RegionMeasured(_MEASURED),
        Logged({"n": 2}),
    )
    assert read_logged(spec) == (({"n": 1}, {"n": 2}), (_MEASURED,))


def test_the_region_a_child_died_in_is_read_from_its_capture(tmp_path: Path) -> None:
    """Its number and place come from the record written as it opened; its figures from
    its capture, up to the death; what it leaked is unknown."""
    spec = _spec(tmp_path)
    _die_tracking(region_capture(spec.capture, 2), allocating=4 * 1024 * 1024)
    _log(
        spec,
        RegionOpened(1, "/t/test_x.py", 5),
        RegionMeasured(_MEASURED),
        RegionOpened(2, "/t/test_x.py", 9),
    )
    reports, (first, died_in) = read_logged(spec)
    assert (reports, first) == ((), _MEASURED)
    assert (died_in.number, died_in.filename, died_in.lineno) == (2, "/t/test_x.py", 9)
    assert died_in.peak_memory >= 4 * 1024 * 1024
    assert died_in.leaked_memory is None


def test_a_region_that_died_before_writing_anything_is_left_out(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _log(spec, RegionMeasured(_MEASURED), RegionOpened(2, "/t/test_x.py", 9))
    region_capture(spec.capture, 2).write_bytes(b"")
    assert read_logged(spec) == ((), (_MEASURED,))


def test_a_record_torn_by_the_death_ends_what_is_read(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    _log(spec, Logged({"n": 1}), RegionMeasured(_MEASURED))
    torn = pickle.dumps(Logged({"n": 2}))
    with open(spec.logged_file, "ab") as stream:
        stream.write(torn[: len(torn) // 2])
    assert read_logged(spec) == (({"n": 1},), (_MEASURED,))
