"""What writing the HTML pages costs for a big suite: time and file size.

Builds the records of N synthetic tests (5,000 by default) as a run would hand them to
the reporter: node ids of the length real suites have, peaks spread over six orders of
magnitude, a limit_memory on every fifth test, failures, a few crashed children, a flame
graph and a kept capture for a third of them, named as the plugin names them, and a
resident growth for each (as on Linux). Then, in each of several rounds, writes the
--memray-html page (``write_page``, as the reporter calls it at the end of a run) and the
comparison page of two such runs (``compare --html``), and prints the median time and
each file's size. The time is the wall clock's, as a user waits for it; the CPU time
beside it shows how much of it a busy machine added. The first round includes loading
and compiling the templates, as a run's one write does; it is reported apart.

The budget (issue 19): under 1 s and under 2 MB for the page of 5,000 tests. The script
exits with status 1 when the median or the size is over it.

    python bench/html_pages.py [--tests 5000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from pytest_memray_isolate._capture_files import kept_file_name
from pytest_memray_isolate._isolation.messages import ExitFacts
from pytest_memray_isolate._reporting.compare import METRICS, compare
from pytest_memray_isolate._reporting.compare import page_text as comparison_page
from pytest_memray_isolate._reporting.html_report import write_page
from pytest_memray_isolate._reporting.json_report import write_text_atomically
from pytest_memray_isolate._reporting.record import TestRecord

ROOT = Path(__file__).resolve().parent.parent
BUDGET_SECONDS = 1.0
BUDGET_BYTES = 2 * 1000 * 1000
#: A run's prefix for kept captures, random by default: 32 hex digits.
PREFIX = "3f2a9c4e5b6d7e8f9a0b1c2d3e4f5a6b"


def flamegraph_name(nodeid: str) -> str:
    """The name the plugin gives a test's flame graph (see _reporting/flamegraph.py)."""
    return kept_file_name("flamegraph", nodeid)[: -len(".bin")] + ".html"


def records(count: int, folder: Path, seed: int) -> List[TestRecord]:
    """``count`` tests' records, the same for the same ``seed``."""
    chance = random.Random(seed)
    made = []
    for index in range(count):
        module = f"tests/integration/test_module_{index % 120:03d}.py"
        nodeid = f"{module}::TestFeature::test_case_{index:05d}[parameter-{index % 9}]"
        peak = int(chance.lognormvariate(15, 2.5))
        limit = None
        if index % 5 == 0:
            limit = {"kind": "limit_memory", "bytes": peak * 3 // 2, "text": "96 MB", "source": "marker"}
        child = None
        if index % 499 == 0:
            child = ExitFacts(exit_code=None, signal="SIGSEGV", killed_for=None, max_rss=peak)
        kept = index % 3 == 0
        made.append(
            TestRecord(
                nodeid=nodeid,
                outcome="failed" if index % 17 == 0 or child else "passed",
                mode="fork",
                limit=limit,
                duration=chance.random(),
                peak_memory=peak,
                total_allocations=chance.randint(1, 500_000),
                rss_growth=int(peak * chance.uniform(0.9, 1.3)),
                capture_file=str(folder / "captures" / kept_file_name(PREFIX, nodeid)) if kept else None,
                flamegraph=str(folder / "graphs" / flamegraph_name(nodeid)) if kept else None,
                child=child,
            )
        )
    return made


def _document(tests: List[TestRecord]) -> Dict[str, Any]:
    return {
        "schema": "pytest-memray-isolate/report",
        "version": 1,
        "tests": [test.to_dict() for test in tests],
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "html_pages.json")
    options = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        base, new = records(options.tests, folder, seed=1), records(options.tests, folder, seed=2)
        page, comparison = folder / "reports" / "memray.html", folder / "reports" / "compare.html"
        documents = _document(base), _document(new)  # as the command reads them from the files
        page_times, comparison_times, page_cpu, comparison_cpu = [], [], [], []
        for _ in range(options.rounds):
            start, cpu = time.perf_counter(), time.process_time()
            write_page(page, base, exitstatus=1)
            page_times.append(time.perf_counter() - start)
            page_cpu.append(time.process_time() - cpu)
            start, cpu = time.perf_counter(), time.process_time()
            compared = compare(*documents, METRICS["peak"])
            text = comparison_page(compared, names=("base.json", "new.json"), threshold=None)
            write_text_atomically(comparison, text)
            comparison_times.append(time.perf_counter() - start)
            comparison_cpu.append(time.process_time() - cpu)
        page_size, comparison_size = page.stat().st_size, comparison.stat().st_size
    page_figures = {
        "first_s": page_times[0],
        "median_s": statistics.median(page_times),
        "median_cpu_s": statistics.median(page_cpu),
        "bytes": page_size,
    }
    comparison_figures = {
        "first_s": comparison_times[0],
        "median_s": statistics.median(comparison_times),
        "median_cpu_s": statistics.median(comparison_cpu),
        "bytes": comparison_size,
    }
    print(f"{options.tests} tests, {options.rounds} rounds (Python {platform.python_version()})")
    for label, entry in (("--memray-html page", page_figures), ("comparison page", comparison_figures)):
        print(
            f"  {label}: median {entry['median_s']:.3f} s ({entry['median_cpu_s']:.3f} s of CPU; the first,"
            f" with the templates' compilation, {entry['first_s']:.3f} s), {entry['bytes'] / 1e6:.2f} MB"
        )
    document = {
        "tests": options.tests,
        "rounds": options.rounds,
        "python": platform.python_version(),
        "page": page_figures,
        "comparison": comparison_figures,
    }
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(document, indent=2) + "\n")
    within = page_figures["median_s"] < BUDGET_SECONDS and page_size < BUDGET_BYTES
    verdict = "met" if within else "NOT met"
    print(f"  budget for the page: < {BUDGET_SECONDS:.0f} s and < {BUDGET_BYTES / 1e6:.0f} MB: {verdict}")
    return 0 if within else 1


if __name__ == "__main__":
    sys.exit(main())
