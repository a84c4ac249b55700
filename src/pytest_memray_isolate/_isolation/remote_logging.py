"""pytest's logging for a test whose call runs in a forkserver's or spawned child: live log
lines where pytest shows them, and the run's log file kept whole.

A forked child shares pytest's logging: its live log lines go through the terminal
reporter it inherited, to pytest's output, and its log file records through pytest's own
handle on the file. A forkserver's or spawned child runs a pytest session of its own:

* its terminal output goes to a file of its own (see child_session.py). So that its live
  log lines show, the parent keeps a copy of pytest's output descriptor, taken at
  configure time while pytest is not capturing, and hands it to each child: for the call,
  the child's session writes there (:class:`LiveOutput`);
* its logging plugin opens the run's log file (``--log-file``, ``log_file``) again, by
  default truncating it, which lost every record written before. A child session appends
  instead (:func:`log_file_arguments`), and pytest's own handle on the file appends too
  (:func:`append_to_log_file`): two handles that each write at their own offset would
  overwrite each other's records.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import List, Optional, final

import pytest

__all__ = ["LiveOutput", "append_to_log_file", "log_file_arguments", "shows_live_logs"]


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


def _writes_log_file(config: pytest.Config) -> bool:
    try:
        return bool(config.getoption("log_file") or config.getini("log_file"))
    except ValueError:  # pytest's logging plugin is disabled (-p no:logging)
        return False


def log_file_arguments(config: pytest.Config) -> List[str]:
    """What a child session's command line adds so that it appends to the run's log file."""
    return ["--log-file-mode=a"] if _writes_log_file(config) else []


def append_to_log_file(config: pytest.Config) -> None:
    """Make pytest's handle on the run's log file write at the file's end, as a child
    session's does, so that neither overwrites the other's records.

    The handle is the stream of the logging plugin's file handler (the plugin pytest
    registers as ``logging-plugin``, whose ``set_log_path`` pytest documents); without
    one, there is nothing to share.
    """
    if not _writes_log_file(config):
        return
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    stream = getattr(getattr(plugin, "log_file_handler", None), "stream", None)
    with contextlib.suppress(AttributeError, OSError, ValueError):
        descriptor = stream.fileno()  # type: ignore[union-attr]
        flags = fcntl.fcntl(descriptor, fcntl.F_GETFL)
        fcntl.fcntl(descriptor, fcntl.F_SETFL, flags | os.O_APPEND)
