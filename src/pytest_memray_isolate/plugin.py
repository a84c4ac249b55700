"""pytest's entry point: options, markers and the manager that does the work."""

from __future__ import annotations

import contextlib
import os

import pytest

from . import _names
from ._capture_files import run_prefix
from ._cli import (
    adopt_changed_options,
    publish_settings,
    refuse_ambiguous_values,
    register_options,
    restore_path_order,
)
from ._integrations.pytest_timeout import PytestTimeoutBridge
from ._integrations.xdist import XdistController
from ._isolation.messages import REQUEST_ENV, SERVER_ENV
from ._parent import Manager
from ._plan import marker_help_lines
from ._reporting.reporter import Reporter
from ._settings import IgnoredSettingWarning, Settings, resolve_settings, unused_without_cache
from ._tracking.region import RegionOpener

_SETTINGS_KEY = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


@pytest.fixture
def memray_region(request: pytest.FixtureRequest) -> RegionOpener:
    """Measure part of a test: ``with memray_region() as region: ...``, then read
    ``region.peak_memory``, ``region.allocations``, ``region.top_locations`` (and, with
    ``memray_region(leaks=True)``, ``region.leaked_memory``). Only the regions of a test
    that uses it are tracked; with or without --memray."""
    return RegionOpener(request.node.nodeid)


def _is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this is pytest-xdist's controller, which hands the tests to its workers."""
    if hasattr(config, "workerinput") or not config.pluginmanager.hasplugin("xdist"):
        return False
    return bool(config.getoption("dist", "no") != "no" and not config.getoption("collectonly", False))


def _in_child_session() -> bool:
    """Whether the parent started this session to run isolated tests (spawn, forkserver)."""
    return REQUEST_ENV in os.environ or SERVER_ENV in os.environ


def _settings(config: pytest.Config, *, again: bool = False) -> Settings:
    """The run's settings, resolved once (or ``again``); ``config.getoption`` then gives them too."""
    settings = config.stash.get(_SETTINGS_KEY, None)
    if settings is None or again:
        settings = resolve_settings(config)
        config.stash[_SETTINGS_KEY] = settings
        publish_settings(config, settings)
    return settings


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Resolve the settings before any ``pytest_configure``: a conftest's reads them there.

    A bad value is reported by ``pytest_configure`` (so ``pytest --version`` still works).
    """
    if _in_child_session():
        return
    with contextlib.suppress(pytest.UsageError):
        _settings(config)


def pytest_configure(config: pytest.Config) -> None:
    """Register the one role this process plays, chosen here once.

    A session the plugin started to run isolated tests gets the child session's plugin
    (imported only then: other sessions need not pay for it at start-up). pytest-xdist's
    controller gets the reporter, which reports what its workers ran. A process that runs
    tests gets the parent's plugin, and the reporter unless it is a worker; a forked child
    swaps both for the child's plugin (see _isolation/child.py).
    """
    for line in marker_help_lines():
        config.addinivalue_line("markers", line)
    restore_path_order(config)
    if _in_child_session():
        from ._isolation.child_session import from_environment

        session = from_environment(config)
        if session is not None:
            config.pluginmanager.register(session, _names.CHILD_SESSION)
            return
    refuse_ambiguous_values(config)
    settings = _settings(config)
    if adopt_changed_options(config, settings):
        settings = _settings(config, again=True)
    ignored = unused_without_cache(settings)
    if ignored is not None and not config.pluginmanager.hasplugin("cacheprovider"):
        config.issue_config_time_warning(IgnoredSettingWarning(ignored), stacklevel=2)
    if _is_xdist_controller(config):
        # Its workers run the tests and send each one's record on its call report.
        prefix = run_prefix(settings.bin_prefix)
        config.pluginmanager.register(Reporter(settings, file_prefix=prefix), _names.REPORTER)
        config.pluginmanager.register(XdistController(prefix), _names.XDIST)
    else:
        manager = Manager(config, settings)
        config.pluginmanager.register(manager, _names.PARENT)
        if not hasattr(config, "workerinput"):  # a worker's tests are reported by its controller
            config.pluginmanager.register(
                Reporter(settings, file_prefix=manager.file_prefix), _names.REPORTER
            )
        if config.pluginmanager.hasplugin("timeout"):
            config.pluginmanager.register(PytestTimeoutBridge(), _names.PYTEST_TIMEOUT)
