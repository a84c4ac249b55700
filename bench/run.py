"""Per-test overhead of this plugin next to pytest-memray 1.11, measured in one run.

Builds two virtual environments with the same pytest and memray versions (one with this
plugin, one with pytest-memray 1.11.0), generates a suite of trivial tests, then runs
every configuration in interleaved rounds (A B C D A B C D ...) and reports medians:
the per-test overhead over plain pytest in the same environment, and its ratio to
pytest-memray's ``--memray``.

    python bench/run.py [--tests 500] [--rounds 5] [--json bench/results/trivial.json]
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
import venv
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
VENVS = ROOT / "bench" / ".venvs"
PYTEST_MEMRAY = "pytest-memray==1.11.0"


@dataclass(frozen=True)
class Configuration:
    """One way of running the suite: which environment, which pytest arguments."""

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
    Configuration(
        "this plugin --memray-isolate=fork", "this", ["--memray-isolate=fork"], "plain pytest (this venv)"
    ),
]
REFERENCE = "pytest-memray 1.11 --memray"


def _python(environment: str) -> Path:
    return VENVS / environment / "bin" / "python"


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
    versions = {name: _version("this", name) for name in ("pytest", "memray")}
    pins = [f"{name}=={number}" for name, number in versions.items()]
    _pip("pytest-memray", PYTEST_MEMRAY, *pins)
    return versions


def write_trivial_suite(directory: Path, count: int) -> None:
    """``count`` tests that do almost nothing: what remains is the per-test cost of tracking."""
    lines = [
        "import pytest",
        "",
        "",
        f"@pytest.mark.parametrize('n', range({count}))",
        "def test_trivial(n):",
    ]
    lines.append("    assert n >= 0")
    (directory / "test_trivial.py").write_text("\n".join(lines) + "\n")
    (directory / "pytest.ini").write_text("[pytest]\n")


def time_run(configuration: Configuration, suite: Path) -> float:
    """Wall time of one pytest run of the suite, in seconds."""
    command = [str(_python(configuration.environment)), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["-p", "no:randomly", *configuration.args, str(suite)]
    start = time.perf_counter()
    completed = subprocess.run(command, cwd=suite, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if completed.returncode != 0:
        raise SystemExit(f"{configuration.name} failed:\n{completed.stdout}\n{completed.stderr}")
    return elapsed


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tests", type=int, default=500, help="number of trivial tests (default 500)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "trivial.json")
    options = parser.parse_args(argv)

    versions = build_environments()
    timings: Dict[str, List[float]] = {configuration.name: [] for configuration in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as temporary:
        suite = Path(temporary)
        write_trivial_suite(suite, options.tests)
        for round_number in range(options.rounds):
            for configuration in CONFIGURATIONS:
                timings[configuration.name].append(time_run(configuration, suite))
            print(f"round {round_number + 1}/{options.rounds} done", file=sys.stderr)

    medians = {name: statistics.median(values) for name, values in timings.items()}
    overheads = {
        c.name: (medians[c.name] - medians[c.baseline]) / options.tests * 1000
        for c in CONFIGURATIONS
        if c.baseline
    }
    reference = overheads[REFERENCE]
    print(f"\n{options.tests} trivial tests, {options.rounds} interleaved rounds, medians")
    print(
        f"pytest {versions['pytest']}, memray {versions['memray']}, Python {platform.python_version()}, "
        f"{os.cpu_count()} cores"
    )
    print(f"{'configuration':40} {'run (s)':>8} {'ms/test over plain':>19} {'x pytest-memray':>16}")
    for configuration in CONFIGURATIONS:
        name = configuration.name
        overhead = overheads.get(name)
        extra = f"{overhead:19.2f} {overhead / reference:16.2f}" if overhead is not None else ""
        print(f"{name:40} {medians[name]:8.2f} {extra}")

    options.json.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "tests": options.tests,
        "rounds": options.rounds,
        "versions": {**versions, "python": platform.python_version()},
        "timings_s": timings,
        "median_s": medians,
        "overhead_ms_per_test": overheads,
    }
    options.json.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
