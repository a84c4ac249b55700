"""The test docs/usage.rst shows for --memray-follow-fork: the memory is a worker's."""

import multiprocessing

import pytest


def build_index():
    index = bytearray(8 * 1024 * 1024)
    assert len(index) == 8 * 1024 * 1024


@pytest.mark.filterwarnings("ignore:This process:DeprecationWarning")  # Python 3.12+, see the docs
@pytest.mark.limit_memory("4 MB")
def test_index_built_in_a_worker():  # passes; fails with --memray-follow-fork
    worker = multiprocessing.get_context("fork").Process(target=build_index)
    worker.start()
    worker.join()
    assert worker.exitcode == 0
