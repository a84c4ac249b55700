"""The plugin that reports the run: the MEMRAY REPORT, the kept files, --memray-json and
--memray-html.

It is registered where the run is reported, a plain session or pytest-xdist's
controller, never in a worker. Either way it learns of each tracked test from the call
report it logs (see record.py), so a run reads the same with or without pytest-xdist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Protocol, Set

import pytest

from .._judging.capture import MemoryResult
from .._settings import Settings
from .json_report import build_document, write_atomically
from .record import TestRecord, take_record
from .summary import closing_lines, ranked, summary_block

__all__ = ["Reporter"]


class _Terminal(Protocol):
    """What the summary needs of pytest's terminal reporter: ``pytest.TerminalReporter`` is
    not public in pytest 8.2, the oldest pytest supported."""

    def write_line(self, line: str, **markup: bool) -> None: ...

    def write_sep(self, sep: str, title: Optional[str] = ..., **markup: bool) -> None: ...


def kept_files_line(keep_in: Path, count: int, prefix: str) -> str:
    """What the report says about kept capture files, as pytest-memray words it."""
    return f"Created {count} binary dumps at {keep_in} with prefix {prefix}"


class Reporter:
    """Gathers each tracked test's record and figures, and reports them at the end of the run."""

    def __init__(self, settings: Settings, *, file_prefix: str) -> None:
        self._settings = settings
        self._file_prefix = file_prefix
        #: The figures of the tests the MEMRAY REPORT may show, by node id.
        self.results: Dict[str, MemoryResult] = {}
        #: Every tracked test, for --memray-json and --memray-html (only when one is asked for).
        self.records: Dict[str, TestRecord] = {}
        self._keep_records = settings.json_path is not None or settings.html_path is not None
        #: Capture files the user keeps, reported by this process or by a worker.
        self._kept: Set[Path] = set()
        #: Why a report file could not be written at the end, for the summary.
        self._write_errors: List[str] = []

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        taken = take_record(report)
        if taken is None:
            return
        record, result = taken
        if self._keep_records:
            self.records[record.nodeid] = record
        if record.capture_file is not None:
            self._kept.add(Path(record.capture_file))
        if result is not None:
            self._kept.update(Path(kept) for kept in result.kept_others)
            if result.detailed:  # the others can never be among the tests the report shows
                self.results[result.nodeid] = result

    def pytest_terminal_summary(self, terminalreporter: _Terminal) -> None:
        if self._settings.tracking_all and not self._settings.hide_summary:
            self._write_summary(terminalreporter)
        for error in self._write_errors:
            terminalreporter.write_line(error, red=True)

    def _write_summary(self, terminalreporter: _Terminal) -> None:
        terminalreporter.write_line("")
        terminalreporter.write_sep("=", "MEMRAY REPORT")
        for result in ranked(self.results.values(), self._settings.most_allocations):
            if not result.histogram:
                continue
            for line in summary_block(result):
                terminalreporter.write_line(line)
        for line in closing_lines(self.results.values(), self._settings.isolate):
            terminalreporter.write_line(line)
        keep_in = self._settings.bin_path
        if keep_in is not None:
            terminalreporter.write_line(kept_files_line(keep_in, len(self._kept), self._file_prefix))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        exitstatus = int(session.exitstatus)
        json_path = self._settings.json_path
        if json_path is not None:
            document = build_document(self.records.values(), self._settings, exitstatus=exitstatus)
            try:
                write_atomically(json_path, document)
            except OSError as error:
                self._write_errors.append(f"Could not write the memray JSON report to {json_path}: {error}")
        html_path = self._settings.html_path
        if html_path is not None:
            # Imported here: jinja2 takes a tenth of a second to import, which every run and
            # every spawned child would pay for a page most runs do not write.
            from .html_report import write_page

            try:
                write_page(html_path, self.records.values(), exitstatus=exitstatus)
            except OSError as error:
                self._write_errors.append(f"Could not write the memray HTML report to {html_path}: {error}")
        # Said at the end of the summary, which an exception here would have cut off; the
        # run fails so that an earlier report is not taken for this one.
        if self._write_errors and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
