"""pytest's entry point: options, markers and the manager that does the work."""

from __future__ import annotations

import os

import pytest

from .cli import refuse_ambiguous_values, register_options, restore_path_order
from .manager import Manager
from .markers import marker_help_lines
from .runners import REQUEST_ENV, SERVER_ENV
from .settings import IgnoredSettingWarning, resolve_settings, unused_without_cache
from .timeouts import PytestTimeoutBridge
from .xdist import XdistController

_MANAGER_NAME = "memray_isolate_manager"
_REMOTE_CHILD_NAME = "memray_isolate_remote_child"


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    for line in marker_help_lines():
        config.addinivalue_line("markers", line)
    restore_path_order(config)
    if REQUEST_ENV in os.environ or SERVER_ENV in os.environ:
        # A session the plugin started to run isolated tests (imported only here: other
        # sessions need not pay for it at start-up).
        from .runners.remote_child import from_environment

        remote = from_environment(config)
        if remote is not None:
            config.pluginmanager.register(remote, _REMOTE_CHILD_NAME)
            return
    refuse_ambiguous_values(config)
    settings = resolve_settings(config)
    ignored = unused_without_cache(settings)
    if ignored is not None and not config.pluginmanager.hasplugin("cacheprovider"):
        config.issue_config_time_warning(IgnoredSettingWarning(ignored), stacklevel=2)
    manager = Manager(config, settings)
    config.pluginmanager.register(manager, _MANAGER_NAME)
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(XdistController(manager.file_prefix), "memray_isolate_xdist")
    if config.pluginmanager.hasplugin("timeout"):
        config.pluginmanager.register(PytestTimeoutBridge(), "memray_isolate_timeout")
