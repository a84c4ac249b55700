"""HTML flame graphs of a test's capture, made by memray's own reporter."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional

from .._capture_files import kept_file_name

__all__ = ["write_flamegraph"]

#: Flame graphs are named like kept capture files, from this fixed prefix and the node id.
_PREFIX = "flamegraph"


def write_flamegraph(capture: Path, directory: Path, nodeid: str, *, leaks: bool) -> Optional[Path]:
    """Render ``capture`` with ``memray flamegraph`` (local assets, so it opens offline).

    memray's command line is the interface it keeps stable across versions; a test
    whose graph cannot be made still gets its verdict, just without the link.
    """
    output = directory / (kept_file_name(_PREFIX, nodeid)[: -len(".bin")] + ".html")
    command = [sys.executable, "-m", "memray", "flamegraph", "--no-web", "--force", "--output", str(output)]
    if leaks:
        command.append("--leaks")
    done = subprocess.run([*command, str(capture)], capture_output=True, text=True, check=False)
    return output if done.returncode == 0 and output.exists() else None
