"""The README's first command: the example suite runs isolated and prints the MEMRAY REPORT."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_suite_runs_as_the_readme_says() -> None:
    """``pytest --memray-isolate examples/`` from the project's root passes and reports memory.

    The examples carry their own pytest.ini, so the project's test settings (which name
    test-only plugins) do not apply to them.
    """
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "--memray-isolate",
            "examples/",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"rootdir: {ROOT / 'examples'}" in done.stdout
    assert "configfile: pytest.ini" in done.stdout
    assert "= MEMRAY REPORT =" in done.stdout
    assert "Allocation results for test_example.py::test_build_a_list at the high watermark" in done.stdout
    assert "6 passed" in done.stdout.splitlines()[-1]
