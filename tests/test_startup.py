"""What the plugin costs a pytest run that isolates nothing: the isolation machinery and
its dependencies are imported only when a test is isolated."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import QUIET_PLUGINS

#: Imported only by a run (or a child) that isolates tests.
_ISOLATION_ONLY = (
    "pytest_memray_isolate._isolation.fork",
    "pytest_memray_isolate._isolation.forkserver",
    "pytest_memray_isolate._isolation.spawn",
    "pytest_memray_isolate._isolation.request",
    "pytest_memray_isolate._isolation.child_session",
)

_REPORT_MODULES = """
import sys

def pytest_sessionfinish(session):
    names = {names!r}
    print("\\nLOADED", sorted(name for name in names if name in sys.modules))
"""


def test_importing_the_plugin_imports_neither_psutil_nor_cloudpickle() -> None:
    """Both serve isolation only (watching children, sending fixture values)."""
    code = (
        "import sys, pytest_memray_isolate.plugin, pytest_memray_isolate._parent;"
        "print(sorted(name for name in ('psutil', 'cloudpickle') if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("flags", "loaded"),
    [
        ((), []),
        (("--memray",), []),
        (("--memray-isolate=fork",), ["pytest_memray_isolate._isolation.fork"]),
    ],
    ids=["no tracking", "in process", "fork"],
)
def test_the_isolation_runners_are_imported_when_a_test_is_isolated(
    pytester: pytest.Pytester, flags: tuple[str, ...], loaded: list[str]
) -> None:
    pytester.makeconftest(_REPORT_MODULES.format(names=_ISOLATION_ONLY))
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *QUIET_PLUGINS, *flags)
    assert result.ret == 0
    line = next(line for line in result.stdout.lines if line.startswith("LOADED"))
    assert line == f"LOADED {loaded}"


def test_a_run_without_the_plugin_imports_neither_memray_nor_the_plugin(pytester: pytest.Pytester) -> None:
    """With ``-p no:memray`` only the conflict guard loads, and importing the package costs
    neither memray's import nor the plugin's: its public names wait until they are used."""
    names = ("memray", "pytest_memray_isolate.plugin", "pytest_memray_isolate._tracking.region")
    pytester.makeconftest(_REPORT_MODULES.format(names=names))
    pytester.makepyfile(
        """
        import pytest_memray_isolate

        def test_the_package_imports():
            assert pytest_memray_isolate.__version__
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-s", *QUIET_PLUGINS, "-p", "no:memray")
    assert result.ret == 0
    assert "LOADED []" in result.stdout.lines


def test_the_public_names_are_imported_when_first_used() -> None:
    """Each name of ``__all__`` resolves to its defining module's object; others raise."""
    code = (
        "import sys, pytest_memray_isolate as package;"
        "before = 'memray' in sys.modules;"
        "print(before, sorted(name for name in package.__all__ if getattr(package, name) is None),"
        " package.MemoryRegion.__module__, package.Location.__module__, 'Stack' in dir(package));"
        "package.Nothing"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.stdout.split() == [
        "False",
        "[]",
        "pytest_memray_isolate._tracking.region",
        "pytest_memray_isolate._judging.capture",
        "True",
    ]
    assert "AttributeError: module 'pytest_memray_isolate' has no attribute 'Nothing'" in done.stderr
