"""What the resident figure costs each tracked test: the probe's reset and read around
the call (see src/pytest_memray_isolate/_tracking/resident.py), measured alone.

Each sample is one test's worth of work, in the order the plugin does it: make the probe
(before the Tracker), reset the peak and note the size, read the peak (Tracker running),
then parse the figures (Tracker stopped). It is timed in this process
and in a forked child (as an isolated test's child does it), with a memray Tracker
running around the reset and read as it is around a test. pytest-memray 1.11 has no
resident figure, so there is nothing of it to put beside these: the whole cost is new.
The budget is 0.1 ms a test.

    python bench/resident.py [--repeats 2000]

Prints the medians and writes bench/results/resident.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import _pytest.python  # noqa: F401 - load what a pytest process has loaded
import pytest  # noqa: F401
from memray import FileFormat, Tracker

from pytest_memray_isolate._tracking.resident import ResidentProbe

ROOT = Path(__file__).resolve().parent.parent
BUDGET_MS = 0.1
STEPS = ("make", "reset", "read", "figures")


def _samples(repeats: int, capture: Path) -> Dict[str, List[float]]:
    """Seconds each step of one test's probe took, ``repeats`` times, each step where the
    plugin runs it: making the probes before a Tracker starts, resetting and reading while
    it runs, parsing after it stopped.

    The probes made for all samples are kept until they are parsed; the cyclic garbage
    collector is held off while they are made, or its passes over the growing list would
    be charged to making them (a test makes one probe and drops it).
    """
    samples: Dict[str, List[float]] = {step: [] for step in STEPS}
    probes = []
    gc.disable()
    try:
        for _ in range(repeats):
            start = time.perf_counter()
            probes.append(ResidentProbe())
            samples["make"].append(time.perf_counter() - start)
    finally:
        gc.enable()
    with Tracker(capture, file_format=FileFormat.AGGREGATED_ALLOCATIONS):
        for probe in probes:
            start = time.perf_counter()
            probe.reset()
            reset = time.perf_counter()
            probe.read_peak()
            samples["reset"].append(reset - start)
            samples["read"].append(time.perf_counter() - reset)
    for probe in probes:
        start = time.perf_counter()
        figures = probe.figures()
        samples["figures"].append(time.perf_counter() - start)
        assert figures.growth is not None, figures.unavailable
    return samples


def _medians_ms(samples: Dict[str, List[float]]) -> Dict[str, float]:
    medians = {step: statistics.median(values) * 1000 for step, values in samples.items()}
    medians["per test"] = sum(medians[step] for step in STEPS)
    return {name: round(value, 4) for name, value in medians.items()}


def _in_child(repeats: int, folder: Path) -> Dict[str, float]:
    """The same in a forked child, which reads its own /proc/self (an isolated test's)."""
    results = folder / "child.json"
    pid = os.fork()
    if pid == 0:
        try:
            results.write_text(json.dumps(_medians_ms(_samples(repeats, folder / "child.bin"))))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    measured: Dict[str, float] = json.loads(results.read_text())
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=2000)
    repeats = parser.parse_args().repeats
    folder = Path(tempfile.mkdtemp())
    document = {
        "repeats": repeats,
        "budget_ms": BUDGET_MS,
        "in process (--memray)": _medians_ms(_samples(repeats, folder / "here.bin")),
        "in a forked child (--memray-isolate)": _in_child(repeats, folder),
    }
    print(f"resident figure, median ms per test over {repeats} tests (budget {BUDGET_MS} ms):")
    print(f"{'':38}{'make':>8}{'reset':>8}{'read':>8}{'figures':>9}{'per test':>10}   pytest-memray 1.11")
    for where in ("in process (--memray)", "in a forked child (--memray-isolate)"):
        row = document[where]
        assert isinstance(row, dict)
        cells = "".join(f"{row[step]:>8.4f}" for step in STEPS[:3]) + f"{row['figures']:>9.4f}"
        print(f"{where:38}{cells}{row['per test']:>10.4f}   no resident figure")
    output = ROOT / "bench" / "results" / "resident.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
