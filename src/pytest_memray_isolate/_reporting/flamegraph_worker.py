"""A process that runs ``memray flamegraph`` once per request, importing memray's commands once.

Started by flamegraph.py for one pytest process. ``python -m memray flamegraph`` spends
most of its 0.9 s importing memray's command modules; here every request after the first
takes only the rendering (50 to 80 ms on this project's machine). Each request runs
memray's ``__main__`` module, as ``python -m memray`` does, with the request's arguments:
the command line stays the interface with memray.

Protocol: one JSON list of arguments per line on standard input; one JSON exit status per
line on the descriptor that was standard output. memray's own output, written to Python's
streams or straight to descriptors 1 and 2, goes nowhere.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from typing import List, NoReturn

__all__ = ["main", "render"]


def render(arguments: List[str]) -> int:
    """Run ``memray ARGUMENTS`` in this process; its exit status."""
    sys.argv = ["memray", *arguments]
    try:
        runpy.run_module("memray", run_name="__main__", alter_sys=True)
    except SystemExit as end:
        if end.code is None:
            return 0
        return end.code if isinstance(end.code, int) else 1
    except Exception:  # a graph that cannot be made leaves its test without a link
        return 1
    return 0


def main() -> NoReturn:
    """Serve requests until standard input ends, then exit at once: every graph is written
    and closed by then, and tearing down memray's modules would only keep pytest waiting."""
    replies = os.fdopen(os.dup(1), "w")
    silent = os.open(os.devnull, os.O_WRONLY)
    for descriptor in (1, 2):
        os.dup2(silent, descriptor)
    for line in sys.stdin:
        replies.write(json.dumps(render(json.loads(line))) + "\n")
        replies.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
