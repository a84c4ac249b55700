"""pytest's entry point: options, markers and the manager that does the work."""

from __future__ import annotations

import contextlib
import os

import pytest

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

_MANAGER_NAME = "memray_isolate_manager"
_REPORTER_NAME = "memray_isolate_reporter"
_REMOTE_CHILD_NAME = "memray_isolate_remote_child"
_SETTINGS_KEY = pytest.StashKey[Settings]()


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


def _in_remote_child() -> bool:
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
    if _in_remote_child():
        return
    with contextlib.suppress(pytest.UsageError):
        _settings(config)


def pytest_configure(config: pytest.Config) -> None:
    for line in marker_help_lines():
        config.addinivalue_line("markers", line)
    restore_path_order(config)
    if _in_remote_child():
        # A session the plugin started to run isolated tests (imported only here: other
        # sessions need not pay for it at start-up).
        from ._isolation.child_session import from_environment

        remote = from_environment(config)
        if remote is not None:
            config.pluginmanager.register(remote, _REMOTE_CHILD_NAME)
            return
    refuse_ambiguous_values(config)
    settings = _settings(config)
    if adopt_changed_options(config, settings):
        settings = _settings(config, again=True)
    ignored = unused_without_cache(settings)
    if ignored is not None and not config.pluginmanager.hasplugin("cacheprovider"):
        config.issue_config_time_warning(IgnoredSettingWarning(ignored), stacklevel=2)
    manager = Manager(config, settings)
    config.pluginmanager.register(manager, _MANAGER_NAME)
    if not hasattr(config, "workerinput"):  # a pytest-xdist worker's tests are reported by its controller
        config.pluginmanager.register(Reporter(settings, file_prefix=manager.file_prefix), _REPORTER_NAME)
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistController(manager.file_prefix), "memray_isolate_xdist")
    if config.pluginmanager.hasplugin("timeout"):
        config.pluginmanager.register(PytestTimeoutBridge(), "memray_isolate_timeout")
