"""Unit: the options table is the one place each setting and its default is written."""

from __future__ import annotations

from dataclasses import fields

from pytest_memray_isolate._options import OPTIONS
from pytest_memray_isolate._settings import Settings, default_settings


def test_every_setting_has_exactly_one_entry_in_the_options_table() -> None:
    """Settings' fields and the table's names match one to one: no setting without a flag or
    ini key, help and default, and no table entry that resolves to nothing."""
    names = [spec.name for spec in OPTIONS]
    assert len(names) == len(set(names))
    assert sorted(names) == sorted(field.name for field in fields(Settings) if field.name != "sources")


def test_default_settings_are_the_tables_defaults() -> None:
    """A run that sets nothing gets each option's default from the table, and no sources."""
    settings = default_settings()
    for spec in OPTIONS:
        assert getattr(settings, spec.name) == spec.default, spec.name
    assert settings.sources == ()
    assert settings.source_of("memray") == "default"
    assert not settings.tracking_all
