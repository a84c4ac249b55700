"""The documentation's examples are real: each command it shows is run here and its output checked.

What a page shows lives in a file that the page includes (``literalinclude``) and these tests
read, so the two cannot drift apart:

* ``docs/examples/*.py`` and ``examples/``: the tests the pages and the README show;
* ``docs/transcripts/*.txt``: a ``$ command`` line (continued by a trailing backslash), then
  an excerpt of what the command prints. Each command (pytest, or the plugin's own command
  line, ``python -m pytest_memray_isolate``) runs here from a copy of the project's example
  suites, and the excerpt must be found in its real output (``find_excerpt``);
* ``docs/transcripts/report.json`` and ``junit.xml``: what the reports transcript writes.

Every command in a page's console block or in the README is a transcript's, is run by a
test here, or is in ``EXEMPT`` with the reason it is not run.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pytest

from conftest import Runner
from pytest_memray_isolate._options import default_isolation_mode

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
TRANSCRIPTS = DOCS / "transcripts"
README = ROOT / "README.md"
PAGES = sorted(DOCS.glob("*.rst"))

#: Where the pages show the project checked out; real output names the test's own directory.
SHOWN_ROOT = "/path/to/pytest-memray-isolate"
#: How the pages call pytest: the README's commands use the virtual environment it makes.
PYTEST_COMMANDS = ("pytest", ".venv/bin/pytest")
#: How the pages call the plugin's own command line (the comparison of two reports).
MODULE_COMMAND = ["python", "-m", "pytest_memray_isolate"]
#: An excerpt line that stands for lines of the output left out.
GAP = "..."

#: Parts of an output line that change between runs, machines or Python versions, each with
#: what it matches instead. Everything else in an excerpt line must be printed as written.
VARYING: Tuple[Tuple[str, str], ...] = (
    # How long the run took.
    (r"\d+\.\d+s\b", r"\d+\.\d+s"),
    # Memory sizes: Python versions allocate differently, and a pymalloc arena holds one pool
    # fewer when address space randomization places it off a pool boundary.
    (r"\d+(?:\.\d+)?(?:B|KiB|MiB|GiB)\b", r"\d+(?:\.\d+)?(?:B|KiB|MiB|GiB)"),
    # How many allocations memray recorded, and their size histogram: Python versions differ.
    (r"(?<=Total allocations: )\d+", r"\d+"),
    (r"(?<=at its peak, )\d+", r"\d+"),
    (r"(?<=Histogram of allocation sizes: )\|[^|]*\|", r"\|[^|]*\|"),
    # Process ids (--memray-follow-fork lists each process).
    (r"(?<=process )\d+", r"\d+"),
    # Thread ids in faulthandler's stacks.
    (r"0x[0-9a-f]+", r"0x[0-9a-f]+"),
    # pytest's separator lines and right-aligned progress fill the terminal's width.
    (r"(?<![^ ])=+(?![^ ])", r"=+"),
    (r"(?<![^ ])_+(?![^ ])", r"_+"),
    (r"(?<![^ ])-+(?![^ ])", r"-+"),
    (r" {2,}", r" +"),
)
_VARYING_RE = re.compile("|".join(f"(?P<v{index}>{found})" for index, (found, _) in enumerate(VARYING)))


@dataclass(frozen=True)
class Transcript:
    """A command and an excerpt of what it prints, as a page shows them."""

    name: str
    command: str
    excerpt: Tuple[str, ...]

    @classmethod
    def read(cls, path: Path) -> Transcript:
        lines = path.read_text(encoding="utf-8").splitlines()
        command = lines.pop(0)
        while command.endswith("\\"):
            command = f"{command[:-1].rstrip()} {lines.pop(0).strip()}"
        assert command.startswith("$ "), f"{path.name} must start with the '$ ' command it shows"
        return cls(path.name, command[2:], tuple(lines))

    def module_args(self) -> Optional[List[str]]:
        """The arguments of a ``python -m pytest_memray_isolate`` command, else ``None``."""
        words = shlex.split(self.command)
        return words[len(MODULE_COMMAND) :] if words[: len(MODULE_COMMAND)] == MODULE_COMMAND else None

    def pytest_args(self) -> List[str]:
        program, *args = shlex.split(self.command)
        assert program in PYTEST_COMMANDS, f"{self.name}: only pytest commands run here, not {program}"
        return args


TRANSCRIPT_FILES = sorted(TRANSCRIPTS.glob("*.txt"))


def line_pattern(line: str) -> re.Pattern[str]:
    """The expression an excerpt line stands for: the line itself, its VARYING parts loosened."""
    parts = []
    position = 0
    for found in _VARYING_RE.finditer(line):
        assert found.lastgroup is not None
        parts += [re.escape(line[position : found.start()]), VARYING[int(found.lastgroup[1:])][1]]
        position = found.end()
    parts.append(re.escape(line[position:]))
    return re.compile("".join(parts))


def find_excerpt(excerpt: Sequence[str], output: Sequence[str]) -> Optional[str]:
    """Why ``excerpt`` is not in ``output``, or ``None`` when it is.

    The excerpt's lines must appear in order and next to each other, except where a "..."
    line stands for lines left out. An excerpt that does not start (end) with "..." shows
    the start (end) of the output.
    """
    chunks: List[List[str]] = [[]]
    for line in excerpt:
        if line == GAP:
            chunks.append([])
        else:
            chunks[-1].append(line)
    position = 0
    for index, chunk in enumerate(chunks):
        patterns = [line_pattern(line) for line in chunk]
        first, last = index == 0, index == len(chunks) - 1
        for start in range(position, len(output) - len(chunk) + 1):
            at_its_place = (start == 0 or not first) and (start + len(chunk) == len(output) or not last)
            if at_its_place and all(
                pattern.fullmatch(output[start + at]) for at, pattern in enumerate(patterns)
            ):
                position = start + len(chunk)
                break
        else:
            where = "at the start of" if first else "at the end of" if last else "in order in"
            return "these lines are not {} the output:\n{}".format(where, "\n".join(chunk))
    return None


def shown_output(result: pytest.RunResult, project: Path) -> List[str]:
    """The run's output as the pages show it: in the project's place, without trailing blank lines."""
    lines = [line.replace(str(project), SHOWN_ROOT) for line in result.outlines]
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """The example suites laid out as in a checkout, whose root the pages' commands run from."""
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(ROOT / "examples", pytester.path / "examples", ignore=ignore)
    shutil.copytree(EXAMPLES, pytester.path / "docs" / "examples", ignore=ignore)
    return pytester.path


# -- the transcripts ------------------------------------------------------------------


def test_find_excerpt_checks_order_gaps_and_ends() -> None:
    """The matcher itself: exact lines, "..." gaps, anchored ends, and only VARYING parts loosened."""
    output = ["start", "a 1.5MiB", "b", "c", "end"]
    assert find_excerpt(["start", GAP, "a 9.0KiB", "b", GAP, "end"], output) is None
    assert find_excerpt(["start", GAP, "b", "a 1.5MiB", GAP], output) is not None  # order
    assert find_excerpt(["start", GAP, "a 1.5MiB", "c", GAP], output) is not None  # b left out
    assert find_excerpt([GAP, "b", "c"], output) is not None  # "end" follows
    assert find_excerpt(["a 1.5MiB", GAP], output) is not None  # "start" comes first
    assert find_excerpt(["start", GAP, "a 1.5MiB ", GAP], output) is not None  # trailing space
    assert find_excerpt([GAP, "passed in 0.1s"], ["passed in 12.34s"]) is None
    assert find_excerpt([GAP, "6 passed"], ["7 passed"]) is not None


@pytest.mark.parametrize("path", TRANSCRIPT_FILES, ids=[path.stem for path in TRANSCRIPT_FILES])
def test_transcript_shows_what_its_command_prints(path: Path, project: Path, run: Runner) -> None:
    """Each transcript's command, run from the project's root, prints the transcript's excerpt."""
    transcript = Transcript.read(path)
    module_args = transcript.module_args()
    if module_args is None:
        output = shown_output(run(*transcript.pytest_args()), project)
    else:
        done = subprocess.run(
            [sys.executable, "-m", "pytest_memray_isolate", *module_args],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        output = (done.stdout + done.stderr).replace(str(project), SHOWN_ROOT).rstrip().splitlines()
    problem = find_excerpt(transcript.excerpt, output)
    assert problem is None, f"{transcript.name}: {problem}\n--- what it printed:\n" + "\n".join(output)


REPORTS = Transcript.read(TRANSCRIPTS / "reports.txt")

#: Fields of the JSON report that count bytes, allocations or seconds: they vary as the MEMRAY
#: REPORT's figures do, so only whether they are set is compared.
VARYING_FIELDS = {"peak_memory", "size", "max_rss", "total_allocations", "duration", "rss_growth"}


def _comparable(value: Any, project: Path) -> Any:
    """``value`` with the project's place shown as the pages show it and varying counts as types."""
    if isinstance(value, dict):
        return {
            key: type(item).__name__ if key in VARYING_FIELDS else _comparable(item, project)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_comparable(item, project) for item in value]
    if isinstance(value, str):
        return value.replace(str(project), SHOWN_ROOT)
    return value


def _testcase(root: ElementTree.Element, name: str) -> ElementTree.Element:
    found = root if root.get("name") == name else root.find(f".//testcase[@name='{name}']")
    assert found is not None, f"no testcase {name}"
    return found


def test_reports_page_shows_the_files_its_run_writes(project: Path, run: Runner) -> None:
    """The JSON document and the JUnit test case on the reports page are what the run writes.

    Field by field, except the counts that vary; the JUnit figures must be the JSON's.
    """
    assert run(*REPORTS.pytest_args()).ret == pytest.ExitCode.TESTS_FAILED
    written = json.loads((project / "report.json").read_text(encoding="utf-8"))
    shown = json.loads((TRANSCRIPTS / "report.json").read_text(encoding="utf-8"))
    assert _comparable(written, project) == _comparable(shown, project)

    shown_case = ElementTree.parse(TRANSCRIPTS / "junit.xml").getroot()
    name = shown_case.get("name", "")
    written_case = _testcase(ElementTree.parse(project / "junit.xml").getroot(), name)
    for case in (shown_case, written_case):
        case.attrib.pop("time")
    assert written_case.attrib == shown_case.attrib
    properties = {item.get("name"): item.get("value") for item in written_case.iter("property")}
    assert list(properties) == [item.get("name") for item in shown_case.iter("property")]
    figures = next(test for test in written["tests"] if test["nodeid"].endswith(f"::{name}"))
    assert properties == {
        "memray_peak_memory": str(figures["peak_memory"]),
        "memray_total_allocations": str(figures["total_allocations"]),
        "memray_rss_growth": str(figures["rss_growth"]),
    }
    shown_failure, written_failure = shown_case.find("failure"), written_case.find("failure")
    assert shown_failure is not None
    assert written_failure is not None
    assert (written_failure.attrib, written_failure.text) == (shown_failure.attrib, shown_failure.text)


#: The README's "Use" commands, run in a copy of examples/: whether the report says each
#: tracked test ran in a child process of its own.
#: The README's "Use" commands, and the isolation mode each must report (None: in process).
README_USE: Dict[str, Optional[str]] = {
    "pytest --memray": None,
    "pytest --memray-isolate": default_isolation_mode(),
    "pytest --memray-isolate=forkserver": "forkserver",
    "pytest --memray-isolate=spawn": "spawn",
}
ISOLATION_LINE = "Isolation: {} (each tracked test ran in a child process of its own)"


@pytest.mark.parametrize("command", sorted(README_USE))
def test_readme_use_commands_run_as_their_comments_say(
    command: str, project: Path, run: Runner, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pytest --memray`` tracks in pytest's process, ``pytest --memray-isolate`` in children."""
    monkeypatch.chdir(project / "examples")
    program, *args = shlex.split(command)
    assert program == "pytest"
    result = run(*args)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*= MEMRAY REPORT =*", "Highest peak: * in test_example.py::test_build_a_list"]
    )
    mode = README_USE[command]
    isolation = [line for line in result.outlines if line.startswith("Isolation: ")]
    assert isolation == ([] if mode is None else [ISOLATION_LINE.format(mode)])


# -- everything shown is checked ------------------------------------------------------

#: Commands the pages show that no test here runs, and why.
EXEMPT = {
    "python3 -m venv .venv": "makes a virtual environment; this suite runs in one already",
    ".venv/bin/pip install .": "installs the plugin, which this suite runs with",
    ".venv/bin/pip install -e '.[test]'": "installs the plugin and the test dependencies this suite runs with",
    ".venv/bin/pytest -n auto": "runs this test suite itself",
    "python bench/run.py --suites trivial,numpy,heavy,boltons --tests 300 --rounds 3"
    " --skip trivial:spawn,numpy:spawn,boltons:spawn": (
        "the benchmark: it runs for minutes and its figures are the machine's (bench/README.md)"
    ),
}

#: Blocks a page writes inline rather than including: the one diagram, and the benchmark
#: output whose command is exempt. Any other block must come from a checked file.
INLINE_BLOCKS = {"how-it-works.rst": 1, "performance.rst": 2}


def _readme_blocks() -> List[Tuple[str, str]]:
    """The README's fenced blocks: (language, text)."""
    text = README.read_text(encoding="utf-8")
    return re.findall(r"^```(\w*)\n(.*?)^```$", text, flags=re.MULTILINE | re.DOTALL)


def _included(name: str) -> bool:
    """Whether a page includes docs/transcripts/``name`` or docs/examples/``name``."""
    pattern = re.compile(rf"^ *\.\. literalinclude:: (transcripts|examples)/{re.escape(name)}$", re.MULTILINE)
    return any(pattern.search(page.read_text(encoding="utf-8")) for page in PAGES)


def _shown_commands() -> Dict[str, Set[str]]:
    """Every command a page or the README shows, with where: console blocks, transcripts, README."""
    shown: Dict[str, Set[str]] = {}

    def add(line: str, where: str) -> None:
        for command in line.split(" && "):
            shown.setdefault(command.strip(), set()).add(where)

    for page in PAGES:
        for line in page.read_text(encoding="utf-8").splitlines():
            if line.startswith(" ") and line.strip().startswith("$ "):
                add(line.strip()[2:], page.name)
    for path in TRANSCRIPT_FILES:
        if _included(path.name):
            add(Transcript.read(path).command, path.name)
    for language, block in _readme_blocks():
        for line in block.splitlines():
            if language == "bash" and line.strip():
                add(re.sub(r"\s+#.*$", "", line), "README.md")
            elif language == "console" and line.startswith("$ "):
                add(line[2:], "README.md")
    return shown


def test_every_command_shown_is_run_or_exempt() -> None:
    """A command added to a page needs a transcript (or a test here), or a reason in EXEMPT."""
    shown = _shown_commands()
    run_here = {Transcript.read(path).command for path in TRANSCRIPT_FILES} | set(README_USE)
    unchecked = {
        command: sorted(where) for command, where in shown.items() if command not in run_here | set(EXEMPT)
    }
    assert unchecked == {}
    assert set(EXEMPT) <= set(shown), "exempt commands no page shows any more"
    assert set(README_USE) <= set(shown)


def test_every_transcript_and_example_is_shown_and_run() -> None:
    """No checked file is left out of the pages, and each example test file is run by a transcript."""
    readme = README.read_text(encoding="utf-8")
    for path in [*TRANSCRIPT_FILES, TRANSCRIPTS / "report.json", TRANSCRIPTS / "junit.xml"]:
        assert _included(path.name) or path.read_text(encoding="utf-8") in readme, path.name
    commands = " ".join(Transcript.read(path).command for path in TRANSCRIPT_FILES)
    for path in EXAMPLES.glob("*.py"):
        assert _included(path.name), path.name
        assert f"docs/examples/{path.name}" in commands, path.name


def test_readme_blocks_come_from_checked_files() -> None:
    """The README's output is a transcript, its Python an example test file, its commands audited."""
    transcripts = {path.read_text(encoding="utf-8") for path in TRANSCRIPT_FILES}
    examples = [path.read_text(encoding="utf-8") for path in EXAMPLES.glob("*.py")]
    languages = []
    for language, block in _readme_blocks():
        languages.append(language)
        if language == "console":
            assert block in transcripts
        elif language == "python":
            assert any(block in example for example in examples), block
        else:
            assert language == "bash"  # its commands: test_every_command_shown_is_run_or_exempt
    assert sorted(set(languages)) == ["bash", "console", "python"]


def _inline_blocks(text: str) -> int:
    """How many blocks a page writes inline, other than console blocks of commands only.

    A block starts at a code directive or a paragraph ending in "::" and holds the
    indented lines after it; commands are checked by test_every_command_shown_is_run_or_exempt.
    """
    lines = text.splitlines()
    count = 0
    for index, line in enumerate(lines):
        stripped = line.strip()
        directive = re.match(r"\.\. (code-block|code|sourcecode)::", stripped)
        if not directive and not (stripped.endswith("::") and not stripped.startswith(".. ")):
            continue
        indent = len(line) - len(line.lstrip())
        body = []
        for following in lines[index + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following.strip())
        content = [entry for entry in body if entry and not entry.startswith(":")]
        if not (stripped.endswith("console") and all(entry.startswith("$ ") for entry in content)):
            count += 1
    return count


def test_pages_write_no_unchecked_blocks() -> None:
    """Examples and output come from checked files; the exceptions are listed with their reason."""
    counts = {page.name: _inline_blocks(page.read_text(encoding="utf-8")) for page in PAGES}
    assert {name: count for name, count in counts.items() if count} == INLINE_BLOCKS
