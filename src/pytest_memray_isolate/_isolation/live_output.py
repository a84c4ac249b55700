"""pytest's live logging (``log_cli``) for a test whose call runs in a forkserver's or spawned child.

A forked child writes its live log lines through the terminal reporter it inherited, to
pytest's own output, where they would show without isolation. A forkserver's or spawned
child runs a pytest session of its own, whose terminal output goes to a file of its own
(see child_session.py). So that its live log lines show too, the parent keeps a copy of
pytest's output descriptor, taken at configure time while pytest is not capturing, and
hands it to each child: for the call, the child's session writes there.
"""

from __future__ import annotations

import os
from typing import List, Optional, final

import pytest

__all__ = ["LiveOutput", "shows_live_logs"]


def shows_live_logs(config: pytest.Config) -> bool:
    """Whether pytest prints log records as they are emitted (``log_cli``, ``--log-cli-level``).

    Asked at configure time, when pytest's terminal reporter may not be registered yet:
    without one, a child's session has no live log lines to write either.
    """
    try:
        return bool(config.getini("log_cli")) or config.getoption("log_cli_level") is not None
    except ValueError:  # pytest's logging plugin is disabled (-p no:logging)
        return False


@final
class LiveOutput:
    """pytest's output, for the live log lines of a forkserver's or spawned child (when
    pytest shows live logs; else nothing is kept and children write nowhere new)."""

    def __init__(self, config: pytest.Config) -> None:
        #: A copy of pytest's output descriptor, taken while pytest does not capture it.
        self.descriptor: Optional[int] = os.dup(1) if shows_live_logs(config) else None

    def descriptors(self) -> List[int]:
        """The descriptor to send a child, if any. What pytest's terminal wrote before the
        test's call is there already: pytest flushes it as each test starts."""
        return [] if self.descriptor is None else [self.descriptor]

    def close(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None
