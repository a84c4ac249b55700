"""Per-test overhead of this plugin next to pytest-memray 1.11, measured in one run.

Builds two virtual environments with the same pytest and memray versions (one with this
plugin, one with pytest-memray 1.11.0), then for each suite runs every configuration in
interleaved rounds (A B C D A B C D ...) and reports medians: the per-test overhead over
plain pytest in the same environment, and its ratio to pytest-memray's ``--memray``.

Suites:
  trivial  N tests that do almost nothing: what remains is the cost of tracking
  heavy    tests that allocate many small objects and large buffers, some with limits
  real     more-itertools 11.2.1's own tests, from its sdist, run unchanged
           (unittest style: pytest-memray 1.11 does not track them at all)
  numpy    the trivial tests with ``import numpy`` at the top of their module: memray's
           walk over loaded libraries grows with what is loaded
  boltons  boltons 26.2.0's own tests, from its sdist, run unchanged (pytest style:
           both plugins track every test)

Also measures the floor of isolation (each step alone, see floor.py) and, with --rss N,
the growth of pytest's resident memory between test 500 and test N of an isolated run.

    python bench/run.py [--suites trivial,heavy,real] [--tests 500] [--rounds 5] [--rss 5000]
                        [--skip real:spawn]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / ".venvs"
CACHE = ROOT / "bench" / ".cache"
PYTEST_MEMRAY = "pytest-memray==1.11.0"
REAL_PROJECT = "more-itertools==11.2.1"
BOLTONS = "boltons==26.2.0"


@dataclass(frozen=True)
class Configuration:
    """One way of running a suite: which environment, which pytest arguments."""

    name: str
    environment: str
    args: List[str]
    baseline: Optional[str]  # the configuration whose time is subtracted


CONFIGURATIONS = [
    Configuration("plain pytest (this venv)", "this", ["-p", "no:memray"], None),
    Configuration("plain pytest (pytest-memray venv)", "pytest-memray", ["-p", "no:memray"], None),
    Configuration(
        "pytest-memray 1.11 --memray", "pytest-memray", ["--memray"], "plain pytest (pytest-memray venv)"
    ),
    Configuration("this plugin --memray", "this", ["--memray"], "plain pytest (this venv)"),
    *(
        Configuration(
            f"this plugin --memray-isolate={mode}",
            "this",
            [f"--memray-isolate={mode}"],
            "plain pytest (this venv)",
        )
        for mode in ("fork", "forkserver", "spawn")
    ),
]
REFERENCE = "pytest-memray 1.11 --memray"


def _python(environment: str) -> Path:
    return VENVS / environment / "bin" / "python"


def _environment() -> Dict[str, str]:
    """The environment of every measured run: the caller's, with bytecode caching on.

    pytest caches the modules it rewrites (test files, plugins) as bytecode; with
    ``PYTHONDONTWRITEBYTECODE`` set, as on some build machines, every run and every
    spawned child compiles them again, which users do not pay.
    """
    environment = dict(os.environ)
    environment.pop("PYTHONDONTWRITEBYTECODE", None)
    return environment


def _pip(environment: str, *args: str) -> None:
    subprocess.run([str(_python(environment)), "-m", "pip", "install", "-q", *args], check=True)


def _version(environment: str, distribution: str) -> str:
    code = f"from importlib.metadata import version; print(version({distribution!r}))"
    return subprocess.run(
        [str(_python(environment)), "-c", code], check=True, capture_output=True, text=True
    ).stdout.strip()


def build_environments() -> Dict[str, str]:
    """Create both venvs (once) with identical pytest and memray; return the versions used."""
    for environment in ("this", "pytest-memray"):
        if not _python(environment).exists():
            venv.create(VENVS / environment, with_pip=True)
    _pip("this", str(ROOT))
    _pip("this", "--force-reinstall", "--no-deps", str(ROOT))  # this checkout's code, whatever its version
    versions = {name: _version("this", name) for name in ("pytest", "memray")}
    pins = [f"{name}=={number}" for name, number in versions.items()]
    _pip("pytest-memray", PYTEST_MEMRAY, *pins)
    numpy = _version("this", "numpy") if _has("this", "numpy") else None
    if numpy is None:
        _pip("this", "numpy")
        numpy = _version("this", "numpy")
    _pip("pytest-memray", f"numpy=={numpy}")
    versions["numpy"] = numpy
    return versions


def _has(environment: str, distribution: str) -> bool:
    code = f"import importlib.util, sys; sys.exit(importlib.util.find_spec({distribution!r}) is None)"
    return subprocess.run([str(_python(environment)), "-c", code]).returncode == 0


def write_trivial_suite(directory: Path, count: int, imports: str = "") -> int:
    """``count`` tests that do almost nothing."""
    lines = [
        *([imports] if imports else []),
        "import pytest",
        "",
        "",
        f"@pytest.mark.parametrize('n', range({count}))",
        "def test_trivial(n):",
    ]
    lines.append("    assert n >= 0")
    (directory / "test_trivial.py").write_text("\n".join(lines) + "\n")
    return count


def write_numpy_suite(directory: Path, count: int) -> int:
    """The trivial tests in a module that imports numpy (and so loads its native libraries)."""
    return write_trivial_suite(directory, count, imports="import numpy  # noqa: F401")


_HEAVY = """
import pytest

@pytest.mark.parametrize("n", range(40))
def test_small_objects(n):
    words = [str(i) * 3 for i in range(20_000 + n * 500)]
    table = {{word: len(word) for word in words[::3]}}
    assert table

@pytest.mark.parametrize("mib", [1, 4, 16, 32])
def test_buffers(mib):
    chunks = [bytearray(256 * 1024) for _ in range(mib * 4)]
    assert sum(map(len, chunks)) == mib * 1024 * 1024

@pytest.mark.limit_memory("64 MB")
@pytest.mark.parametrize("n", range(16))
def test_limited(n):
    rows = [tuple(range(20)) for _ in range(5_000 + n * 100)]
    assert rows
"""


def write_heavy_suite(directory: Path, count: int) -> int:
    """Allocation-heavy tests: many small objects, large buffers, some under a limit."""
    (directory / "test_heavy.py").write_text(_HEAVY.format())
    return 60


def _unpack_sdist(directory: Path, requirement: str) -> None:
    """A project's sdist (downloaded once into bench/.cache), unpacked into ``directory``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    stem = requirement.split("==")[0].replace("-", "_")
    archives = list(CACHE.glob(f"{stem}-*.tar.gz"))
    if not archives:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "-d",
                str(CACHE),
                requirement,
            ],
            check=True,
            capture_output=True,
        )
        archives = list(CACHE.glob(f"{stem}-*.tar.gz"))
    with tarfile.open(archives[0]) as archive:
        archive.extractall(directory, filter="data") if sys.version_info >= (3, 12) else archive.extractall(
            directory
        )
    project = next(directory.glob(f"{stem}-*"))
    for item in project.iterdir():
        item.rename(directory / item.name)
    (directory / "pytest.ini").unlink(missing_ok=True)  # the project's own configuration rules


def _collected(directory: Path) -> int:
    """How many tests pytest collects in ``directory`` (plain pytest, this plugin's venv)."""
    done = subprocess.run(
        [
            str(_python("this")),
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:memray",
            "-p",
            "no:randomly",
            "tests",
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        env=_environment(),
        check=True,
    )
    last = [line for line in done.stdout.splitlines() if "collected" in line][-1]
    return int(last.split()[0])


def write_real_suite(directory: Path, count: int) -> int:
    """more-itertools' tests from its sdist."""
    _unpack_sdist(directory, REAL_PROJECT)
    return _collected(directory)


def write_boltons_suite(directory: Path, count: int) -> int:
    """boltons' tests from its sdist."""
    _unpack_sdist(directory, BOLTONS)
    return _collected(directory)


#: Each suite writes its tests into a folder and returns how many pytest collects there.
SUITES: Dict[str, Callable[[Path, int], int]] = {
    "trivial": write_trivial_suite,
    "numpy": write_numpy_suite,
    "heavy": write_heavy_suite,
    "real": write_real_suite,
    "boltons": write_boltons_suite,
}


def _pytest_command(configuration: Configuration, suite: Path) -> List[str]:
    target = "tests" if (suite / "tests").is_dir() else "."
    python = str(_python(configuration.environment))
    return [
        python,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        *configuration.args,
        target,
    ]


def warm_up(configurations: List[Configuration], suite: Path) -> None:
    """Collect the suite once in each environment, so the bytecode of the plugins and of
    the rewritten test files is cached before the first timed run, for every configuration."""
    for environment in sorted({configuration.environment for configuration in configurations}):
        command = _pytest_command(Configuration("warm-up", environment, ["--collect-only"], None), suite)
        subprocess.run(command, cwd=suite, capture_output=True, env=_environment(), check=True)


def time_run(configuration: Configuration, suite: Path) -> float:
    """Wall time of one pytest run of the suite, in seconds."""
    command = _pytest_command(configuration, suite)
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=suite, capture_output=True, text=True, env=_environment())
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(
            f"{configuration.name} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    return elapsed


def bench_suite(name: str, tests: int, rounds: int, configurations: List[Configuration]) -> Dict[str, Any]:
    timings: Dict[str, List[float]] = {configuration.name: [] for configuration in configurations}
    with tempfile.TemporaryDirectory() as temporary:
        suite = Path(temporary)
        (suite / "pytest.ini").write_text("[pytest]\n")
        count = SUITES[name](suite, tests)
        warm_up(configurations, suite)
        for round_number in range(rounds):
            for configuration in configurations:
                timings[configuration.name].append(time_run(configuration, suite))
            print(f"{name}: round {round_number + 1}/{rounds} done", file=sys.stderr)
    medians = {key: statistics.median(values) for key, values in timings.items()}
    overheads = {
        c.name: (medians[c.name] - medians[c.baseline]) / count * 1000 for c in configurations if c.baseline
    }
    return {
        "tests": count,
        "rounds": rounds,
        "timings_s": timings,
        "median_s": medians,
        "overhead_ms_per_test": overheads,
    }


def print_suite(name: str, result: Dict[str, Any]) -> None:
    reference = result["overhead_ms_per_test"][REFERENCE]
    print(f"\n{name}: {result['tests']} tests, {result['rounds']} interleaved rounds, medians")
    print(f"{'configuration':40} {'run (s)':>8} {'ms/test over plain':>19} {'x pytest-memray':>16}")
    for configuration in CONFIGURATIONS:
        if configuration.name not in result["median_s"]:
            continue
        overhead = result["overhead_ms_per_test"].get(configuration.name)
        ratio = f"{overhead / reference:16.2f}" if overhead is not None and reference > 0 else ""
        extra = f"{overhead:19.2f} {ratio}" if overhead is not None else ""
        print(f"{configuration.name:40} {result['median_s'][configuration.name]:8.2f} {extra}")


def measure_floor() -> Dict[str, float]:
    done = subprocess.run(
        [str(_python("this")), str(ROOT / "bench" / "floor.py"), "50"],
        check=True,
        capture_output=True,
        text=True,
        env=_environment(),
    )
    floor: Dict[str, float] = json.loads(done.stdout)
    return floor


_RSS_CONFTEST = """
import psutil, pytest

SEEN = []

def pytest_runtest_logfinish(nodeid, location):
    SEEN.append(psutil.Process().memory_info().rss)

def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_line(f"RSS-AT-500 {SEEN[499]} RSS-AT-END {SEEN[-1]}")
"""


#: Whose memory growth is measured, side by side: pytest's own is the floor.
RSS_CONFIGURATIONS = [
    "plain pytest (this venv)",
    "pytest-memray 1.11 --memray",
    "this plugin --memray",
    "this plugin --memray-isolate=fork",
]


def measure_rss(count: int) -> Dict[str, Dict[str, int]]:
    """pytest's resident memory after test 500 and after the last of ``count`` tests, for
    plain pytest, pytest-memray and this plugin in process and isolated."""
    by_name = {configuration.name: configuration for configuration in CONFIGURATIONS}
    figures: Dict[str, Dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as temporary:
        suite = Path(temporary)
        (suite / "pytest.ini").write_text("[pytest]\n")
        write_trivial_suite(suite, count)
        (suite / "conftest.py").write_text(_RSS_CONFTEST)
        for environment in ("this", "pytest-memray"):
            _pip(environment, "psutil")
        for name in RSS_CONFIGURATIONS:
            done = subprocess.run(
                _pytest_command(by_name[name], suite),
                cwd=suite,
                capture_output=True,
                text=True,
                check=True,
                env=_environment(),
            )
            line = next(line for line in done.stdout.splitlines() if line.startswith("RSS-AT-500"))
            words = line.split()
            figures[name] = {"tests": count, "rss_after_500": int(words[1]), "rss_at_end": int(words[3])}
    return figures


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--suites",
        default="trivial,numpy,heavy,real,boltons",
        help="comma-separated: trivial, numpy, heavy, real, boltons",
    )
    parser.add_argument("--tests", type=int, default=500, help="number of trivial tests (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--rss", type=int, default=0, help="also check pytest's RSS over N isolated tests")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "benchmark.json")
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated SUITE:MODE pairs to leave out, e.g. real:spawn (an interpreter per test is slow)",
    )
    options = parser.parse_args(argv)
    skipped = {tuple(pair.split(":", 1)) for pair in options.skip.split(",") if ":" in pair}

    versions = build_environments()
    document: Dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
        },
        "versions": versions,
        "suites": {},
    }
    print(
        f"pytest {versions['pytest']}, memray {versions['memray']}, Python {platform.python_version()}, {os.cpu_count()} cores"
    )
    for name in options.suites.split(","):
        configurations = [
            c
            for c in CONFIGURATIONS
            if not any(c.name.endswith(f"={mode}") for suite, mode in skipped if suite == name)
        ]
        result = bench_suite(name, options.tests, options.rounds, configurations)
        document["suites"][name] = result
        print_suite(name, result)

    floor = measure_floor()
    document["floor_ms"] = floor
    isolation_floor = (
        floor["fork+wait"]
        + floor["tracker left running in child"]
        + floor["settle in child"]
        + floor["read capture"]
    )
    print(
        "\nfloor of isolation, each step alone (medians, ms): "
        + ", ".join(f"{k} {v:.2f}" for k, v in floor.items())
    )
    print(f"sum for one isolated test: {isolation_floor:.2f} ms")
    if "trivial" in document["suites"]:
        measured = document["suites"]["trivial"]["overhead_ms_per_test"]["this plugin --memray-isolate=fork"]
        print(
            f"--memray-isolate on the trivial suite: {measured:.2f} ms = {measured / isolation_floor:.2f} x the floor"
        )
    if options.rss:
        rss = measure_rss(options.rss)
        document["rss"] = rss
        print(f"\npytest's resident memory over {options.rss} trivial tests, between test 500 and the end:")
        for name, figures in rss.items():
            growth = (figures["rss_at_end"] - figures["rss_after_500"]) / 1024 / 1024
            print(f"{name:40} {growth:+6.1f} MiB")
    options.json.parent.mkdir(parents=True, exist_ok=True)
    options.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
