"""What a flame graph costs (``--memray-flamegraph``, ``--memray-flamegraph-all``): one
``python -m memray flamegraph`` per graph, as the plugin made them before 2026-12-02,
against the plugin's renderer, which serves every graph of a pytest process from one
process that imported memray's commands once (src/pytest_memray_isolate/_reporting/flamegraph.py).

Both render the same capture (a small test's, 1,000 allocations) into files of their own,
interleaved graph by graph; the renderer's first graph, which pays its start, is shown
apart. pytest-memray 1.11 makes no flame graphs, so there is nothing of it to put beside
these.

    python bench/flamegraphs.py [--graphs 20]

Prints the medians and writes bench/results/flamegraphs.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

from pytest_memray_isolate._reporting.flamegraph import FlameGraphWriter

ROOT = Path(__file__).resolve().parent.parent

_WORKLOAD = """
import sys
from memray import Tracker
with Tracker(sys.argv[1]):
    data = [bytearray(1000) for _ in range(1000)]
"""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--graphs", type=int, default=20)
    graphs = parser.parse_args().graphs
    folder = Path(tempfile.mkdtemp())
    capture = folder / "capture.bin"
    subprocess.run([sys.executable, "-c", _WORKLOAD, str(capture)], check=True)

    writer = FlameGraphWriter()
    timings: Dict[str, List[float]] = {"memray flamegraph, a process per graph": [], "renderer": []}
    start = time.perf_counter()
    assert writer.write(capture, folder, "test_bench.py::test_first", leaks=False) is not None
    first = time.perf_counter() - start
    for number in range(graphs):
        start = time.perf_counter()
        command = [sys.executable, "-m", "memray", "flamegraph", "--no-web", "--force"]
        command += ["--output", str(folder / f"own-{number}.html"), str(capture)]
        subprocess.run(command, capture_output=True, check=True)
        timings["memray flamegraph, a process per graph"].append(time.perf_counter() - start)
        start = time.perf_counter()
        assert writer.write(capture, folder, f"test_bench.py::test_{number}", leaks=False) is not None
        timings["renderer"].append(time.perf_counter() - start)
    writer.close()

    medians = {name: round(statistics.median(values), 4) for name, values in timings.items()}
    document = {
        "graphs": graphs,
        "renderer's first graph": round(first, 4),
        "median seconds per graph": medians,
    }
    print(
        f"flame graphs, median seconds per graph over {graphs} graphs (pytest-memray 1.11: no flame graphs):"
    )
    for name, value in medians.items():
        print(f"  {name:42}{value:>8.3f}")
    print(f"  {'renderer, its first graph (start included)':42}{first:>8.3f}")
    ratio = medians["memray flamegraph, a process per graph"] / medians["renderer"]
    print(f"  each graph after the first: {ratio:.1f}x cheaper")
    output = ROOT / "bench" / "results" / "flamegraphs.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
