"""Running under pytest-xdist: one file prefix for all workers, one report in the controller.

Each worker's call reports carry their tests' records and figures (see
_reporting/record.py), so the controller's Reporter covers every worker without sharing
files. Registered in the controller only, when pytest-xdist is active.
"""

from __future__ import annotations

from typing import Any, List

import pytest

from .._parent import PREFIX_KEY

__all__ = ["XdistController", "controller_link"]


class XdistController:
    """Hands every worker the controller's prefix for kept capture files."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[PREFIX_KEY] = self._prefix


def controller_link(config: pytest.Config) -> List[object]:
    """The plugin through which a pytest-xdist worker sends its reports to the controller
    (none outside a worker).

    A forked child leaves it out: the reports it logs during the call (subtests') reach
    the controller once, through the parent, and the child never writes to the worker's
    channel, which is the parent's.
    """
    if not hasattr(config, "workerinput"):
        return []
    # pytest-xdist runs its worker module through execnet, not as an importable module:
    # its WorkerInteractor is known by name and by the method it sends events with.
    return [
        plugin
        for plugin in config.pluginmanager.get_plugins()
        if type(plugin).__name__ == "WorkerInteractor" and callable(getattr(plugin, "sendevent", None))
    ]
