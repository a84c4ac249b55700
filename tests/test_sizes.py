"""Unit tests for reading and printing memory sizes."""

from __future__ import annotations

import pytest

from pytest_memray_isolate._sizes import format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24 MB", 24 * 1024**2),
        ("24MB", 24 * 1024**2),
        ("1.5 kb", 1536),
        (".5 GB", 512 * 1024**2),
        ("+3 B", 3),
        ("  7 pb ", 7 * 1024**5),
        ("2 TB", 2 * 1024**4),
        ("0 B", 0),
        ("24.0MiB", 24 * 1024**2),
        ("1.5 kib", 1536),
        ("512.0B", 512),
    ],
)
def test_sizes_use_binary_multiples_and_ignore_case(text: str, expected: int) -> None:
    """pytest-memray's grammar: a number, an optional space, a unit; 1 KB is 1024 bytes."""
    assert parse_size(text) == expected


@pytest.mark.parametrize(
    "text", ["ten MB", "5 XB", "-1 MB", "", "MB", "10", "10 MBx", "1,5 MB", "1e3 KB", "5 iB", "5 MiiB"]
)
def test_malformed_sizes_are_refused_with_the_expected_form(text: str) -> None:
    """Anything that is not wholly a size is an error that shows the accepted form."""
    with pytest.raises(ValueError, match=r"is not a memory size; expected a number and a unit") as error:
        parse_size(text)
    assert repr(text) in str(error.value)


@pytest.mark.parametrize(
    ("num_bytes", "text"),
    [
        (0, "0.0B"),
        (512, "512.0B"),
        (1024, "1.0KiB"),
        (1536, "1.5KiB"),
        (24 * 1024**2, "24.0MiB"),
        (3 * 1024**3, "3.0GiB"),
        (1024**8, "1.0YiB"),
    ],
)
def test_sizes_print_as_pytest_memray_prints_them(num_bytes: int, text: str) -> None:
    """One decimal and a binary unit, no space: scripts that parse pytest-memray's text keep working."""
    assert format_size(num_bytes) == text


@pytest.mark.parametrize("num_bytes", [0, 512, 1536, 24 * 1024**2, 3 * 1024**3, 5 * 1024**5])
def test_a_printed_size_reads_back(num_bytes: int) -> None:
    """A size copied from a report is a valid limit of the same bytes (to the printed decimal)."""
    assert parse_size(format_size(num_bytes)) == num_bytes
