"""Tests whose captures are too large to leave their Tracker running keep the aggregated format."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
from memray import FileFormat, FileReader

from conftest import Runner
from pytest_memray_isolate._tracking.heavy import HEAVY_CAPTURE_BYTES, HeavyCaptures


class _Cache:
    """pytest's cache, as far as HeavyCaptures uses it."""

    def __init__(self) -> None:
        self.values: Dict[str, Any] = {}

    def get(self, key: str, default: Any) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value


class _Config:
    def __init__(self, cache: Any) -> None:
        self.cache = cache


def test_a_large_capture_marks_the_test_and_its_parametrized_siblings() -> None:
    """Siblings share the mark for the run; only the test itself is kept for the next run."""
    heavy = HeavyCaptures(_Config(_Cache()))
    heavy.record("test_a.py::test_big[1]", HEAVY_CAPTURE_BYTES + 1)
    heavy.record("test_a.py::test_small", HEAVY_CAPTURE_BYTES)
    assert heavy.is_heavy("test_a.py::test_big[1]")
    assert heavy.is_heavy("test_a.py::test_big[2]")
    assert not heavy.is_heavy("test_a.py::test_small")


def test_the_list_survives_the_run_in_pytests_cache() -> None:
    cache = _Cache()
    first = HeavyCaptures(_Config(cache))
    first.record("test_a.py::test_big[1]", 10 * HEAVY_CAPTURE_BYTES)
    first.save()
    second = HeavyCaptures(_Config(cache))
    assert second.is_heavy("test_a.py::test_big[1]")
    assert second.is_heavy("test_a.py::test_big[2]")
    assert not second.is_heavy("test_a.py::test_other")


def test_without_a_cache_it_remembers_the_run_only() -> None:
    """-p no:cacheprovider: nothing to read or write, and no error."""
    heavy = HeavyCaptures(object())
    heavy.record("test_a.py::test_big", 10 * HEAVY_CAPTURE_BYTES)
    heavy.save()
    assert heavy.is_heavy("test_a.py::test_big")


def test_a_cache_entry_that_is_not_a_list_of_ids_is_ignored() -> None:
    cache = _Cache()
    cache.values["memray-isolate/heavy-captures"] = [3, None, "test_a.py::test_x"]
    assert HeavyCaptures(_Config(cache)).is_heavy("test_a.py::test_x")
    cache.values["memray-isolate/heavy-captures"] = [3]
    assert not HeavyCaptures(_Config(cache)).is_heavy("3")


_SUITE = """
import pytest


@pytest.mark.parametrize("n", [1, 2])
def test_many_allocations(n):
    data = [bytes(600) for _ in range(20_000)]
    assert len(data) == 20_000
"""


def _kept(folder: Path) -> List[Tuple[FileFormat, int]]:
    """The format and peak of each capture kept in ``folder``, in the order of the tests."""
    kept = []
    for path in sorted(folder.glob("*.bin")):
        with FileReader(path) as reader:
            kept.append((reader.metadata.file_format, reader.metadata.peak_memory))
    return kept


def test_a_test_with_many_allocations_stops_its_tracker_from_then_on(
    pytester: pytest.Pytester, run: Runner, isolated_flag: str
) -> None:
    """Its first parameter's capture was large: the second, and the next run's first,
    use the aggregated format, with the same peak."""
    pytester.makepyfile(_SUITE)
    first = run(isolated_flag, "--memray-bin-path=first", keep_cache=True)
    first.assert_outcomes(passed=2)
    first_kept = _kept(pytester.path / "first")
    assert [kind for kind, _ in first_kept] == [FileFormat.ALL_ALLOCATIONS, FileFormat.AGGREGATED_ALLOCATIONS]
    second = run(isolated_flag, "--memray-bin-path=second", keep_cache=True)
    second.assert_outcomes(passed=2)
    second_kept = _kept(pytester.path / "second")
    assert [kind for kind, _ in second_kept] == [FileFormat.AGGREGATED_ALLOCATIONS] * 2
    peaks = [peak for _, peak in first_kept + second_kept]
    assert len(set(peaks)) == 1, peaks
    assert peaks[0] > 20_000 * 600
