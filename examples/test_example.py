"""A small suite to watch pytest-memray-isolate at work: run it with --memray-isolate."""

import pytest


@pytest.fixture(scope="session")
def lookup_table():
    """A session fixture: built once in the pytest process, shared by every test."""
    return {number: str(number) for number in range(10_000)}


def test_build_a_list():
    """Allocates a million integers and the list that holds them (about 38 MiB)."""
    numbers = list(range(1_000_000))
    assert len(numbers) == 1_000_000


def test_join_strings(lookup_table):
    """Uses the session fixture without paying for building it."""
    text = ",".join(lookup_table.values())
    assert text.startswith("0,1,2")


@pytest.mark.limit_memory("24 MB")
def test_stays_under_its_limit():
    """limit_memory fails the test if its call phase allocates 24 MiB or more."""
    chunks = [bytearray(1024 * 1024) for _ in range(4)]
    assert sum(map(len, chunks)) == 4 * 1024 * 1024


@pytest.mark.parametrize("size", [1, 1000, 100_000])
def test_parametrized(size):
    """Each parameter is tracked and reported on its own."""
    assert len(bytes(size)) == size
