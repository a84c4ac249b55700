"""End to end: HTML flame graphs for memory failures, made by memray and rendered by a browser."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chromium_page import chromium
from conftest import Runner, gone
from pytest_memray_isolate._reporting.flamegraph import FlameGraphWriter

_SUITE = """
import pytest

LEAKED = []

@pytest.mark.limit_memory("1 MB")
def test_over():
    data = bytearray(3 * 1024 * 1024)
    assert data is not None

@pytest.mark.limit_leaks("1 MB")
def test_leaks():
    LEAKED.append(bytearray(2 * 1024 * 1024))

def test_passes():
    data = bytearray(2 * 1024 * 1024)
    assert data is not None
"""


def test_failures_get_a_linked_flame_graph(pytester: pytest.Pytester, run: Runner, mode_flag: str) -> None:
    """--memray-flamegraph: one HTML file per memory failure, linked from its section and the JSON."""
    pytester.makepyfile(_SUITE)
    result = run(mode_flag, "--memray-flamegraph=graphs", "--memray-json=out.json")
    result.assert_outcomes(passed=1, failed=2)
    graphs = sorted(path.name for path in (pytester.path / "graphs").iterdir())
    assert graphs == [
        "flamegraph-test_failures_get_a_linked_flame_graph.py-test_leaks.html",
        "flamegraph-test_failures_get_a_linked_flame_graph.py-test_over.html",
    ]
    result.stdout.fnmatch_lines(
        [
            "*- memray-max-memory -*",
            "List of allocations:",
            "*",
            "*",
            "*",
            f"Flame graph: {pytester.path}/graphs/*test_over.html",
        ]
    )
    result.stdout.fnmatch_lines([f"Flame graph: {pytester.path}/graphs/*test_leaks.html"])
    tests = {
        test["nodeid"].split("::")[-1]: test
        for test in json.loads((pytester.path / "out.json").read_text())["tests"]
    }
    assert tests["test_over"]["flamegraph"].endswith("test_over.html")
    assert tests["test_passes"]["flamegraph"] is None


def test_flamegraph_all_covers_passing_tests_and_quiet_runs_keep_the_link(
    pytester: pytest.Pytester, run: Runner
) -> None:
    """--memray-flamegraph-all graphs every tracked test, also one failing on its own; with -q the link shows."""
    pytester.makepyfile(
        _SUITE + "\ndef test_fails_itself():\n    data = bytearray(1024 * 1024)\n    assert data is None\n"
    )
    pytester.makeini("[pytest]\nmemray_flamegraph = graphs\nmemray_flamegraph_all = true\n")
    result = run("--memray-isolate", "-q")
    result.assert_outcomes(passed=1, failed=3)
    assert len(list((pytester.path / "graphs").glob("*.html"))) == 4
    result.stdout.fnmatch_lines(["*- memray-flamegraph -*", "Flame graph: *test_over.html"])


def test_a_flame_graph_renders_in_headless_chromium(
    pytester: pytest.Pytester, run: Runner, tmp_path: Path
) -> None:
    """The HTML (memray's, with local assets) draws its flame graph in a browser, offline."""
    browser = chromium()
    pytester.makepyfile(_SUITE)
    run("--memray-isolate", "--memray-flamegraph=graphs").assert_outcomes(passed=1, failed=2)
    page = next((pytester.path / "graphs").glob("*test_over.html"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    flags += [f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'class="partition d3-flame-graph"' in dom
    assert 'class="frame"' in dom
    assert "test_over" in dom


# -- the renderer: one process per pytest process ----------------------------------


def _capture(path: Path) -> Path:
    """A small capture, made by memray in a process of its own."""
    code = (
        "import sys\nfrom memray import Tracker\n"
        "with Tracker(sys.argv[1]):\n    data = [bytearray(1000) for _ in range(100)]\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True)
    return path


def test_one_renderer_writes_every_graph_and_ends_when_closed(tmp_path: Path) -> None:
    """Each graph after the first costs no new process: memray's commands are imported once."""
    capture = _capture(tmp_path / "capture.bin")
    writer = FlameGraphWriter()
    first = writer.write(capture, tmp_path, "test_x.py::test_a", leaks=False)
    pid = writer.renderer_pid
    second = writer.write(capture, tmp_path, "test_x.py::test_b", leaks=True)
    assert writer.renderer_pid == pid
    assert first == tmp_path / "flamegraph-test_x.py-test_a.html"
    assert second == tmp_path / "flamegraph-test_x.py-test_b.html"
    for graph in (first, second):
        assert "d3-flame-graph" in graph.read_text(encoding="utf-8")
    assert pid is not None
    writer.close()
    assert writer.renderer_pid is None
    assert gone([pid])


def test_a_graph_that_cannot_be_made_gets_no_link_and_the_renderer_goes_on(tmp_path: Path) -> None:
    """memray refusing one capture (here: none there) costs only that graph."""
    writer = FlameGraphWriter()
    try:
        assert writer.write(tmp_path / "missing.bin", tmp_path, "test_x.py::test_a", leaks=False) is None
        pid = writer.renderer_pid
        graph = writer.write(_capture(tmp_path / "capture.bin"), tmp_path, "test_x.py::test_b", leaks=False)
        assert graph is not None
        assert graph.exists()
        assert writer.renderer_pid == pid
    finally:
        writer.close()


def test_a_renderer_that_died_is_replaced_for_the_next_graph(tmp_path: Path) -> None:
    """A renderer killed between two graphs (out of memory, a signal) costs no link: a new one starts."""
    capture = _capture(tmp_path / "capture.bin")
    writer = FlameGraphWriter()
    try:
        assert writer.write(capture, tmp_path, "test_x.py::test_a", leaks=False) is not None
        pid = writer.renderer_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert gone([pid])
        assert writer.write(capture, tmp_path, "test_x.py::test_b", leaks=False) is not None
        assert writer.renderer_pid not in (None, pid)
    finally:
        writer.close()
