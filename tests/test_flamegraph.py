"""End to end: HTML flame graphs for memory failures, made by memray and rendered by a browser."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from chromium_page import chromium
from conftest import Runner

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
