"""What a test changes stays in its child process under --memray-isolate.

``pytest -v --memray-isolate docs/examples/test_side_effects.py`` passes. With
``--memray`` (or without the plugin) every test runs in pytest's own process, and each
``test_*_is_unchanged`` test fails: it sees what the first test did.
docs/how-it-works.rst shows both runs.
"""

import os

import pytest

SEEN = []


@pytest.fixture(scope="module")
def config():
    """Set up once, in pytest's process; each test's child gets its own copy of it."""
    return {"retries": 3}


def test_changes_everything(config, tmp_path):
    config["retries"] = 0
    SEEN.append("changed")
    os.environ["EXAMPLE_MODE"] = "changed"
    os.chdir(tmp_path)


def test_fixture_object_is_unchanged(config):
    assert config == {"retries": 3}


def test_module_global_is_unchanged():
    assert SEEN == []


def test_environment_is_unchanged():
    assert "EXAMPLE_MODE" not in os.environ


def test_working_directory_is_unchanged(request):
    assert os.getcwd() == str(request.config.invocation_params.dir)
