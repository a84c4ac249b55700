"""Shared runs with a temporary directory of their own, for checks that the plugin leaves
nothing behind in it.

A shared run (conftest's ``run_once``) is started by one xdist worker and read by the
others from what it saved, so what the run left in its TMPDIR is listed beside its output
when it ends, and the directory removed; every test sharing the run reads that list.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

from conftest import run_suites

#: The file, in a shared run's directory, listing what the run left in its TMPDIR.
_LEFT_IN_TMP = "left-in-tmp.json"


def run_with_private_tmp(
    directory: Path,
    suites: Dict[str, str],
    *args: str,
    environment: Optional[Dict[str, str]] = None,
    keep: Sequence[str] = (),
) -> pytest.RunResult:
    """``run_suites`` with a TMPDIR of the run's own, listed when the run ends (``left_in_tmp``),
    or up to five seconds later while it is not empty, as ``conftest.gone`` waits for processes.

    The directory is short (directly in the system's temporary directory): multiprocessing
    puts Unix sockets in it, whose paths may not be longer than about 100 bytes.
    """
    tmp = Path(tempfile.mkdtemp(prefix="pmi-"))
    try:
        variables = {**(environment or {}), "TMPDIR": str(tmp)}
        result = run_suites(directory, suites, *args, environment=variables, keep=keep)
        # The run's processes may still be ending (a forkserver removes its files as it
        # exits, after pytest has): what is left is read once they had time to end.
        give_up = time.monotonic() + 5
        while any(tmp.iterdir()) and time.monotonic() < give_up:
            time.sleep(0.05)
        (directory / _LEFT_IN_TMP).write_text(json.dumps(sorted(path.name for path in tmp.iterdir())))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def left_in_tmp(directory: Path) -> List[str]:
    """What the run ``run_with_private_tmp`` started in ``directory`` left in its TMPDIR."""
    names: List[str] = json.loads((directory / _LEFT_IN_TMP).read_text())
    return names
