"""End to end: isolated children that leave their Tracker running (one memray walk a test).

An isolated child ends the tracked window right after the test's call and exits without
stopping its Tracker; the parent cuts the capture there (_tracking/window.py). These tests
pin what users see of it: the same figures as a stopped Tracker gives, nothing of the
child's own work after the call, memray's figures after a crash, and kept files that
memray's own commands open.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Dict, Tuple

import pytest

from conftest import (
    ISOLATION_FLAGS,
    LOADED_AS_BEFORE,
    Runner,
    SharedRun,
    outcomes_in,
    report_sections,
    run_once,
    run_suites,
)

_SUITE = """
import threading

import pytest

KEPT = []


def test_lists_and_a_buffer():
    words = [str(n) * 3 for n in range(20_000)]
    buffer = bytearray(3 * 1024 * 1024)
    table = {word: len(word) for word in words[::3]}
    del buffer
    assert table


def test_keeps_memory():
    KEPT.append(bytearray(2 * 1024 * 1024))


@pytest.mark.limit_memory("1 MB")
def test_over_its_limit():
    data = bytearray(2 * 1024 * 1024)
    assert data


def test_fails_holding_memory():
    held = bytearray(1024 * 1024)
    assert not held


@pytest.mark.limit_allocations(1000)
def test_counted_allocations():
    data = [bytearray(1000) for _ in range(10)]
    assert data
"""

# Prints each test's exact figures at the end of the run.
_EXACT_FIGURES_CONFTEST = """
def pytest_terminal_summary(terminalreporter, config):
    reporter = config.pluginmanager.get_plugin("memray_isolate_reporter")
    for result in reporter.results.values():
        top = result.top_locations[0] if result.top_locations else None
        where = f"{top.function}:{top.lineno}:{top.size}" if top else "-"
        terminalreporter.write_line(
            f"EXACT {result.nodeid} {result.peak_memory} {result.total_allocations} {where}"
        )
"""

Figures = Dict[str, Tuple[int, int, str]]


def _figures(output: str) -> Figures:
    lines = re.findall(r"^EXACT \S+::(\S+) (\d+) (\d+) (\S+)$", output, re.MULTILINE)
    return {name: (int(peak), int(count), where) for name, peak, count, where in lines}


def test_figures_are_those_of_a_tracker_that_stopped(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """Peak, allocation count and biggest place of every test, and every outcome, are the
    same as with the children stopping their Tracker (``--memray-capture-format=aggregated``)."""
    pytester.makepyfile(_SUITE)
    pytester.makeconftest(_EXACT_FIGURES_CONFTEST)
    left_open = run(isolated_flag, "--most-allocations=0", plugins=LOADED_AS_BEFORE)
    stopped = run(
        isolated_flag, "--most-allocations=0", "--memray-capture-format=aggregated", plugins=LOADED_AS_BEFORE
    )
    for result in (left_open, stopped):
        result.assert_outcomes(passed=3, failed=2)
    left_open.stdout.fnmatch_lines(["Test was limited to 1.0MiB but allocated 2.0MiB"])
    figures = _figures(left_open.stdout.str())
    assert len(figures) == 5
    expected = _figures(stopped.stdout.str())
    # limit_allocations counts every allocation: its capture is of every allocation either way.
    for name in (
        "test_lists_and_a_buffer",
        "test_keeps_memory",
        "test_over_its_limit",
        "test_fails_holding_memory",
    ):
        assert figures[name] == expected[name], name
    assert figures["test_lists_and_a_buffer"][0] > 3 * 1024 * 1024


# -- checks that share one run per isolation mode ----------------------------------------

#: Ways for a child to die mid-test: the test's name, the statement, and the cause reported.
_DEATHS = [
    (
        "sigkill",
        "os.kill(os.getpid(), signal.SIGKILL)",
        "was killed by signal SIGKILL (9) before reporting a result.",
    ),
    ("sigsegv", "ctypes.string_at(0)", "was killed by signal SIGSEGV (11) before reporting a result."),
]

#: Each module is the suite of the test of the same name; one run per mode holds both.
_SHARED_SUITES = {
    "conftest": _EXACT_FIGURES_CONFTEST,
    "test_what_the_child_does_after_the_call_is_not_counted": """
def test_records_a_big_property(record_property):
    record_property("payload", "x" * (16 * 1024 * 1024))
""",
    "test_a_child_that_dies_mid_test_reports_memrays_peak_and_places": "import ctypes, os, signal\n"
    + "".join(
        f"""
def test_dies_{name}():
    held = bytearray(b"x") * (24 * 1024 * 1024)
    {ending}
"""
        for name, ending, _ in _DEATHS
    )
    + "\ndef test_after():\n    pass\n",
}


@pytest.fixture(scope="module", params=sorted(ISOLATION_FLAGS))
def shared(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    """_SHARED_SUITES run once per isolation mode (-rA, --memray-json), in a fresh interpreter."""
    flags = [ISOLATION_FLAGS[request.param], "-rA", "--memray-json=out.json"]
    key = f"open-capture-{request.param}"
    return run_once(tmp_path_factory, key, lambda path: run_suites(path, _SHARED_SUITES, *flags))


def test_what_the_child_does_after_the_call_is_not_counted(shared: SharedRun) -> None:
    """A 16 MiB property is pickled into the child's report after the call: only the test's
    own 16 MiB count, not the report's copy of it."""
    assert outcomes_in(shared.result, "test_what_the_child_does_after_the_call_is_not_counted.py") == {
        "passed": 1
    }
    peak, _, where = _figures(shared.result.stdout.str())["test_records_a_big_property"]
    assert 16 * 1024 * 1024 <= peak < 17 * 1024 * 1024
    assert where.startswith("test_records_a_big_property:")


def test_a_child_that_dies_mid_test_reports_memrays_peak_and_places(shared: SharedRun) -> None:
    """The failure message and the JSON entry carry memray's peak up to the death and the
    biggest places; memray's complaint about a torn last record never shows.

    Each way to die (SIGKILL, SIGSEGV) is a test of its own, checked in its own section.
    """
    result = shared.result
    module = "test_a_child_that_dies_mid_test_reports_memrays_peak_and_places.py"
    assert outcomes_in(result, module) == {"passed": 1, "failed": len(_DEATHS)}
    assert "Failed to process" not in result.stdout.str() + result.stderr.str()
    sections = report_sections(result.outlines)
    entries = {
        entry["nodeid"].split("::")[-1]: entry
        for entry in json.loads((shared.path / "out.json").read_text())["tests"]
    }
    for name, _, cause in _DEATHS:
        pytest.LineMatcher(sections[f"test_dies_{name}"]).fnmatch_lines(
            [
                f"The isolated child process running this test {cause}",
                "Memory allocated at the peak before the crash: 24.0MiB (memray).",
                "Biggest allocating places at that peak:",
                f"*- test_dies_{name}:*.py:* -> 24.0MiB",
            ]
        )
        assert entries[f"test_dies_{name}"]["peak_memory"] >= 24 * 1024 * 1024
        assert entries[f"test_dies_{name}"]["top_locations"][0]["function"] == f"test_dies_{name}"


def test_a_timed_out_child_reports_memrays_peak(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """A child killed at its deadline still has memray's figure in the failure."""
    pytester.makepyfile(
        """
        import time

        def test_hangs_holding_memory():
            held = bytearray(b"x") * (12 * 1024 * 1024)
            time.sleep(60)
        """
    )
    result = run(isolated_flag, "--memray-timeout=1")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "Timeout after 1 s: the isolated child process running this test was killed.",
            "Memory allocated at the peak before it was killed: 12.0MiB (memray).",
            "Biggest allocating places at that peak:",
            "*- test_hangs_holding_memory:*.py:* -> 12.0MiB",
        ]
    )


def test_kept_captures_open_with_memrays_commands(pytester: pytest.Pytester, run: Runner) -> None:
    """--memray-bin-path keeps files of every allocation, cut at the end of the call, that
    ``memray stats``, ``summary`` and ``flamegraph`` read like any capture."""
    pytester.makepyfile(
        """
        import os

        def test_allocates():
            data = [bytearray(1024 * 1024) for _ in range(4)]
            assert data

        def test_crashes():
            held = bytearray(4 * 1024 * 1024)
            os._exit(1)
        """
    )
    result = run("--memray-isolate", "--memray-bin-path=kept")
    result.assert_outcomes(passed=1, failed=1)
    files = sorted((pytester.path / "kept").glob("*.bin"))
    assert [path.name.split("-", 1)[1] for path in files] == [
        "test_kept_captures_open_with_memrays_commands.py-test_allocates.bin",
        "test_kept_captures_open_with_memrays_commands.py-test_crashes.bin",
    ]
    for path in files:
        stats = ""
        for command in (["stats"], ["summary"], ["flamegraph", "-o", str(path) + ".html"]):
            done = subprocess.run(
                [sys.executable, "-m", "memray", *command, str(path)], capture_output=True, text=True
            )
            assert done.returncode == 0, (command, path.name, done.stdout, done.stderr)
            assert "Failed to process" not in done.stderr
            stats = stats or done.stdout
        assert "Peak memory usage:\n\t4.194MB" in stats, stats  # 4 MiB, in decimal units
