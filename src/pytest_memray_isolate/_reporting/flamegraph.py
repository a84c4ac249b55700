"""HTML flame graphs of a test's capture, made by memray's own command line.

One renderer process per pytest process (flamegraph_worker.py) serves every graph of the
run: starting ``python -m memray`` for each graph cost 0.9 s, nearly all of it importing
memray's commands, which the renderer imports once.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

from .._capture_files import kept_file_name

__all__ = ["FlameGraphWriter"]

#: Flame graphs are named like kept capture files, from this fixed prefix and the node id.
_PREFIX = "flamegraph"

#: How long a closed renderer gets to exit before it is killed.
_STOP_GRACE = 5.0


class FlameGraphWriter:
    """Writes each test's flame graph through one renderer process, started on first use."""

    def __init__(self) -> None:
        self._renderer: Optional[subprocess.Popen[bytes]] = None

    def write(self, capture: Path, directory: Path, nodeid: str, *, leaks: bool) -> Optional[Path]:
        """Render ``capture`` with ``memray flamegraph`` (local assets, so it opens offline).

        A test whose graph cannot be made, or whose renderer died, still gets its verdict,
        just without the link; the next graph starts a new renderer.
        """
        output = directory / (kept_file_name(_PREFIX, nodeid)[: -len(".bin")] + ".html")
        arguments = ["flamegraph", "--no-web", "--force", "--output", str(output)]
        if leaks:
            arguments.append("--leaks")
        status = self._render([*arguments, str(capture)])
        return output if status == 0 and output.exists() else None

    @property
    def renderer_pid(self) -> Optional[int]:
        """The running renderer's process id, if one was started and not closed."""
        return None if self._renderer is None else self._renderer.pid

    def _render(self, arguments: List[str]) -> Optional[int]:
        renderer = self._started()
        assert renderer.stdin is not None
        assert renderer.stdout is not None
        try:
            renderer.stdin.write((json.dumps(arguments) + "\n").encode())
            renderer.stdin.flush()
            reply = renderer.stdout.readline()
        except OSError:  # it died before reading
            reply = b""
        if not reply:
            self.close()
            return None
        status = json.loads(reply)
        return status if isinstance(status, int) else None

    def _started(self) -> subprocess.Popen[bytes]:
        if self._renderer is not None and self._renderer.poll() is not None:
            self.close()  # it died since the last graph: its pipes go with it
        if self._renderer is None:
            self._renderer = subprocess.Popen(
                [sys.executable, "-m", "pytest_memray_isolate._reporting.flamegraph_worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                # Out of reach of Ctrl-C in the terminal: pytest ends it when the run ends.
                start_new_session=True,
            )
        return self._renderer

    def close(self) -> None:
        """End the renderer: it exits when its input ends; one that does not is killed."""
        renderer, self._renderer = self._renderer, None
        if renderer is None:
            return
        for stream in (renderer.stdin, renderer.stdout):
            if stream is not None:
                stream.close()
        try:
            renderer.wait(_STOP_GRACE)
        except subprocess.TimeoutExpired:
            renderer.kill()
            renderer.wait()
