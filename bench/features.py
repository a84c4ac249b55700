"""What repeated leak checks and following forks cost per test, in one run.

Runs small generated suites with the Python it is started from (which must have this
plugin installed), every configuration in interleaved rounds, and prints the median
run time and the cost per test over plain pytest (``-p no:memray``) in the same
environment.

Suites:
  leaks     tests with limit_leaks("1 KB") that each build and drop a small table
  forks     tests that each fork a child allocating 1 MiB (os.fork, waited for)
  no-forks  tests that allocate 1 MiB and fork nothing: what following forks costs
            the tests that do not fork

    python bench/features.py [--tests 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent

_LEAKS = """
import pytest

@pytest.mark.limit_leaks("1 KB")
@pytest.mark.parametrize("n", range({count}))
def test_table(n):
    table = {{str(i): i for i in range(1000)}}
    assert len(table) == 1000
"""

_NO_FORKS = """
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_allocates(n):
    data = bytearray(1024 * 1024)
    assert data
"""

_FORKS = """
import os
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_forks(n):
    pid = os.fork()
    if pid == 0:
        data = bytearray(1024 * 1024)
        os._exit(0 if data else 1)
    _, status = os.waitpid(pid, 0)
    assert status == 0
"""

PLAIN = ["-p", "no:memray"]
#: The configurations of both fork suites: each tracking mode with and without following forks.
FOLLOW_FORK_CONFIGURATIONS = [
    ("plain pytest", PLAIN),
    ("--memray", ["--memray"]),
    ("--memray --memray-follow-fork", ["--memray", "--memray-follow-fork"]),
    ("--memray-isolate", ["--memray-isolate"]),
    ("--memray-isolate --memray-follow-fork", ["--memray-isolate", "--memray-follow-fork"]),
]
#: Each suite's configurations: a name and pytest's arguments; the first is the baseline.
SUITES: Dict[str, Tuple[str, List[Tuple[str, List[str]]]]] = {
    "leaks": (
        _LEAKS,
        [
            ("plain pytest", PLAIN),
            ("limit_leaks in process (--memray)", ["--memray"]),
            ("limit_leaks isolated (--memray-isolate)", ["--memray-isolate"]),
            ("repeated 1,3 isolated (--memray --memray-repeat-leaks)", ["--memray", "--memray-repeat-leaks"]),
            (
                "repeated 1,3 in process (--memray-isolate=off)",
                ["--memray", "--memray-isolate=off", "--memray-repeat-leaks"],
            ),
        ],
    ),
    "forks": (
        _FORKS,
        FOLLOW_FORK_CONFIGURATIONS,
    ),
    "no-forks": (
        _NO_FORKS,
        FOLLOW_FORK_CONFIGURATIONS,
    ),
}


def time_run(suite: Path, args: List[str]) -> float:
    """Wall time of one pytest run of the suite, in seconds."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    command += ["-p", "no:xdist", *args, "."]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=suite, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"pytest {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return elapsed


def bench(name: str, tests: int, rounds: int) -> Dict[str, Dict[str, float]]:
    source, configurations = SUITES[name]
    timings: Dict[str, List[float]] = {label: [] for label, _ in configurations}
    with tempfile.TemporaryDirectory() as temporary:
        suite = Path(temporary)
        (suite / "pytest.ini").write_text("[pytest]\n")
        (suite / f"test_{name.replace('-', '_')}.py").write_text(source.format(count=tests))
        for number in range(rounds):
            for label, args in configurations:
                timings[label].append(time_run(suite, args))
            print(f"{name}: round {number + 1}/{rounds} done", file=sys.stderr)
    baseline = statistics.median(timings[configurations[0][0]])
    results = {}
    for label, values in timings.items():
        median = statistics.median(values)
        results[label] = {"median_s": median, "ms_per_test": (median - baseline) / tests * 1000}
    return results


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=100, help="tests per suite (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "features.json")
    options = parser.parse_args(argv)
    print(f"Python {platform.python_version()}, {os.cpu_count()} cores, {options.tests} tests per suite")
    document: Dict[str, Any] = {"python": platform.python_version(), "tests": options.tests, "suites": {}}
    for name in SUITES:
        results = bench(name, options.tests, options.rounds)
        document["suites"][name] = results
        print(f"\n{name}: {options.rounds} interleaved rounds, medians")
        print(f"{'configuration':58} {'run (s)':>8} {'ms/test over plain':>19}")
        for label, figures in results.items():
            print(f"{label:58} {figures['median_s']:8.2f} {figures['ms_per_test']:19.2f}")
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
