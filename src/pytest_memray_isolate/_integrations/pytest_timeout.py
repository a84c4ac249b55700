"""Working with pytest-timeout: an isolated test's timeout is enforced on its child.

pytest-timeout's timer (a SIGALRM or a thread) would fire in pytest's process while it
waits for the child, where there is no test code to interrupt. pytest-timeout lets a
plugin take over its timer through two hooks; for isolated tests this one records the
timeout it resolved (marker, --timeout, ini) and sets no timer, and the parent kills the
child when the time is up. Registered only when pytest-timeout is installed.
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

from .._parent import PLAN_KEY, PYTEST_TIMEOUT_KEY

__all__ = ["PytestTimeoutBridge"]


def _isolated(item: pytest.Item) -> bool:
    plan = item.stash.get(PLAN_KEY, None)
    return plan is not None and plan.isolated and plan.error is None


class PytestTimeoutBridge:
    """Takes over pytest-timeout's timer for isolated tests."""

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> Optional[bool]:
        if not _isolated(item):
            return None
        timeout = getattr(settings, "timeout", None)
        if timeout:
            item.stash[PYTEST_TIMEOUT_KEY] = float(timeout)
        return True

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> Optional[bool]:
        return True if _isolated(item) else None
