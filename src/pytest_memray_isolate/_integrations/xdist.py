"""Running under pytest-xdist: one file prefix for all workers, one report in the controller.

Each worker's call reports carry their tests' records and figures (see
_reporting/record.py), so the controller's Reporter covers every worker without sharing
files. Registered in the controller only, when pytest-xdist is active.
"""

from __future__ import annotations

from typing import Any

import pytest

from .._parent import PREFIX_KEY

__all__ = ["XdistController"]


class XdistController:
    """Hands every worker the controller's prefix for kept capture files."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[PREFIX_KEY] = self._prefix
