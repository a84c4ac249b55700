"""End to end: pytest-memray installed beside this plugin stops the run with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Runner

# What the real pytest-memray registers: a pytest11 plugin named "memray" with --memray.
_FAKE_PLUGIN = """
def pytest_addoption(parser):
    parser.getgroup("memray").addoption("--memray", action="store_true")
"""


@pytest.fixture
def pytest_memray_installed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in pytest-memray distribution on the subprocess's path."""
    site = pytester.mkdir("fake-site")
    (site / "fake_pytest_memray.py").write_text(_FAKE_PLUGIN)
    info = site / "pytest_memray-1.11.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pytest-memray\nVersion: 1.11.0\n")
    (info / "entry_points.txt").write_text("[pytest11]\nmemray = fake_pytest_memray\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    return site


_MESSAGE = (
    "ERROR: pytest-memray and pytest-memray-isolate are both installed. Both provide the pytest plugin"
    " 'memray' with the same options, so only one can be used: uninstall one of them"
    " (pip uninstall pytest-memray, or pip uninstall pytest-memray-isolate)."
)


@pytest.mark.usefixtures("pytest_memray_installed")
@pytest.mark.parametrize("args", [[], ["--memray"], ["--help"]])
def test_both_installed_is_a_usage_error_not_a_traceback(
    pytester: pytest.Pytester, run: Runner, args: list[str]
) -> None:
    """Whichever plugin pytest loaded, the user is told to uninstall one of the two."""
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([_MESSAGE])
    assert "Traceback (most recent call last)" not in result.stderr.str() + result.stdout.str()
    assert "argparse" not in result.stderr.str()


@pytest.mark.usefixtures("pytest_memray_installed")
def test_disabling_the_memray_plugin_runs_without_either(pytester: pytest.Pytester, run: Runner) -> None:
    """-p no:memray turns both off, so nothing conflicts and the tests run."""
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run("-p", "no:memray")
    result.assert_outcomes(passed=1)


def test_without_pytest_memray_nothing_is_said(pytester: pytest.Pytester, run: Runner) -> None:
    """The check is silent when only this plugin is installed."""
    pytester.makepyfile("def test_nothing():\n    pass\n")
    result = run("--memray")
    result.assert_outcomes(passed=1)
    assert "uninstall" not in result.stderr.str() + result.stdout.str()
