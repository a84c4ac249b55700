"""Stop early, with a clear message, when pytest-memray is installed beside this plugin.

Both distributions register the pytest plugin ``memray`` and the same options. pytest
loads only one plugin of a name, in an order nobody chose, so a user could silently get
the other one. This tiny plugin is registered under its own name, so it loads
whichever of the two won, and says what to do.
"""

from __future__ import annotations

from importlib import metadata

import pytest

_OTHER = "pytest-memray"


def _installed(distribution: str) -> bool:
    try:
        metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    if pluginmanager.is_blocked("memray") or not _installed(_OTHER):
        return
    raise pytest.UsageError(
        "pytest-memray and pytest-memray-isolate are both installed. Both provide the pytest "
        "plugin 'memray' with the same options, so only one can be used: uninstall one of them "
        "(pip uninstall pytest-memray, or pip uninstall pytest-memray-isolate)."
    )
