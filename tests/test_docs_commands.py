"""The commands shown in README.md and docs/*.md, checked against the real CLI so that the docs cannot drift
from it.

- Every `mnc-bench ...` command in a fenced shell block (bash, sh, shell, console) is parsed by the CLI's own
  argparse parser; `make ...` lines may name only targets and variables the Makefile defines.
- The cheap ones also run (`--help`, `run --dry-run`, `env`, `data check`, a `data synth` of a few images), in
  page order, in a scratch folder that sees the shipped configs and every suite file the page writes (a yaml
  block whose first line is the file's path as a comment, e.g. `# configs/ablations/my_comparison.yaml`).
- Synopsis blocks (unlabelled or `text`, lines starting with `mnc-bench`) name only commands and options that
  exist.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from mnc_bench.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
SYNOPSIS_LANGUAGES = {"", "text"}
FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
SUITE_FILE_COMMENT = re.compile(r"^#\s*(\S+\.ya?ml)\s*$")
SMALL_SYNTH = 50  # a `data synth` of at most this many images per split runs in about a second


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # line number of the block's first line of content
    language: str
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Shown:
    """One command as a page shows it."""

    where: str  # page:line
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.where}: {' '.join(self.words)}"


def fenced_blocks(page: Path) -> list[Block]:
    blocks: list[Block] = []
    opened: tuple[int, str, int] | None = None
    body: list[str] = []
    for number, line in enumerate(page.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if opened is None:
            if fence:
                opened, body = (number + 1, fence.group(2), len(fence.group(1))), []
        elif fence and not fence.group(2):
            first, language, indent = opened
            blocks.append(Block(page, first, language, tuple(text[indent:] for text in body)))
            opened = None
        else:
            body.append(line)
    assert opened is None, f"{page.name}: a code fence opened on line {opened[0] - 1} is never closed"
    return blocks


def shell_commands(block: Block) -> list[Shown]:
    """One entry per logical line (backslash continuations joined, comments dropped)."""
    shown, pending, start = [], "", None
    for offset, line in enumerate(block.lines):
        start = block.line + offset if start is None else start
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        words = shlex.split(pending + line, comments=True)
        if words:
            shown.append(Shown(f"{block.page.relative_to(ROOT)}:{start}", tuple(words)))
        pending, start = "", None
    return shown


def cli_argv(words: tuple[str, ...]) -> list[str] | None:
    """The arguments given to mnc-bench (also under torchrun, srun or `python -m mnc_bench.cli`), else
    None."""
    for index, word in enumerate(words):
        if word == "mnc-bench" or word.endswith("/mnc-bench"):
            return list(words[index + 1:])
        if word == "-m" and words[index + 1:index + 2] == ("mnc_bench.cli",):
            return list(words[index + 2:])
    return None


def without_assignments(words: tuple[str, ...]) -> tuple[str, ...]:
    index = 0
    while index < len(words) and ASSIGNMENT.match(words[index]):
        index += 1
    return words[index:]


def shown_commands() -> list[Shown]:
    return [command for page in PAGES for block in fenced_blocks(page) if block.language in SHELL_LANGUAGES
            for command in shell_commands(block)]


CLI_COMMANDS = [command for command in shown_commands() if cli_argv(command.words) is not None]
MAKE_COMMANDS = [command for command in shown_commands()
                 if without_assignments(command.words)[:1] == ("make",)]


def parse(argv: list[str]) -> tuple[int, str]:
    """argparse's verdict on argv: (exit code, what it printed). --help exits 0."""
    output = io.StringIO()
    with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
        try:
            build_parser().parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0), output.getvalue()
    return 0, output.getvalue()


def test_the_docs_show_commands():
    # Guards the extraction itself: a parser that found nothing would pass every test below.
    pages = {command.where.split(":")[0] for command in CLI_COMMANDS}
    assert {"README.md", "docs/suites.md", "docs/reports.md", "docs/benchmarks.md"} <= pages
    assert any(command.words[-1] == "--dry-run" for command in CLI_COMMANDS)


@pytest.mark.parametrize("command", CLI_COMMANDS, ids=str)
def test_every_shown_command_parses(command):
    code, printed = parse(cli_argv(command.words))
    assert code == 0, f"{command} does not parse:\n{printed}"


def makefile_targets_and_variables() -> tuple[set[str], set[str]]:
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", text, re.MULTILINE))
    variables = set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[?:]?=", text, re.MULTILINE))
    return targets, variables


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=str)
def test_every_shown_make_command_names_what_the_makefile_defines(command):
    targets, variables = makefile_targets_and_variables()
    words = without_assignments(command.words)[1:]
    unknown_variables = [w.split("=")[0] for w in words
                         if ASSIGNMENT.match(w) and w.split("=")[0] not in variables]
    unknown_targets = [w for w in words
                       if not ASSIGNMENT.match(w) and not w.startswith("-") and w not in targets]
    assert not unknown_variables and not unknown_targets, (
        f"{command}: unknown {unknown_variables + unknown_targets}")


def subcommands(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def synopses() -> list[Shown]:
    """`mnc-bench ...` synopsis lines of unlabelled / text blocks, with their indented continuation lines."""
    found: list[Shown] = []
    for page in PAGES:
        for block in fenced_blocks(page):
            if block.language not in SYNOPSIS_LANGUAGES:
                continue
            for offset, line in enumerate(block.lines):
                if line.startswith("mnc-bench"):
                    text = [line]
                    for follow in block.lines[offset + 1:]:
                        if not follow.startswith(" "):
                            break
                        text.append(follow)
                    text = [re.sub(r"\s#\s.*$", "", part) for part in text]
                    found.append(Shown(f"{page.relative_to(ROOT)}:{block.line + offset}",
                                       tuple(" ".join(text).split())))
    return found


SYNOPSES = synopses()


def test_the_docs_show_synopses():
    assert len(SYNOPSES) >= 10


@pytest.mark.parametrize("synopsis", SYNOPSES, ids=str)
def test_every_synopsis_names_existing_commands_and_options(synopsis):
    parser = build_parser()
    options = {s for a in parser._actions for s in a.option_strings}
    words = [w for w in re.split(r"[\s\[\]|]+", " ".join(synopsis.words[1:])) if w]
    names = [w for w in words if not w.startswith("-")]
    while (choices := subcommands(parser)) is not None and names:
        name = names.pop(0)
        if name.isupper():  # a placeholder such as COMMAND
            break
        assert name in choices.choices, f"{synopsis}: no command {name!r}"
        parser = choices.choices[name]
        options |= {s for a in parser._actions for s in a.option_strings}
    flags = {re.match(r"--?[A-Za-z][\w-]*", w).group(0) for w in words if re.match(r"--?[A-Za-z]", w)}
    assert flags <= options, f"{synopsis}: no option {sorted(flags - options)}"


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    choices = subcommands(parser)
    if choices is None:
        return [path]
    return [leaf for name, child in choices.choices.items() for leaf in leaf_commands(child, (*path, name))]


def test_the_readme_overview_lists_every_command():
    readme = (ROOT / "README.md").read_text()
    missing = [" ".join(path) for path in leaf_commands(build_parser())
               if f"`mnc-bench {' '.join(path)}`" not in readme]
    assert not missing, f"README's command overview lacks {missing}"


def test_help_lists_every_command_with_a_line():
    # A sub-parser added without help= is accepted by the CLI but missing from `mnc-bench --help`'s list.
    def unlisted(parser, path=()):
        choices = subcommands(parser)
        if choices is None:
            return []
        listed = {action.dest for action in choices._choices_actions}
        return [" ".join((*path, name)) for name in choices.choices if name not in listed] + [
            name for sub, child in choices.choices.items() for name in unlisted(child, (*path, sub))]

    assert unlisted(build_parser()) == []


# --- running the cheap ones -------------------------------------------------------------------------------


def is_cheap(argv: list[str]) -> bool:
    if "--help" in argv or "-h" in argv:
        return True
    if argv[:1] == ["run"]:
        return "--dry-run" in argv
    if argv[:1] == ["env"] or argv[:2] == ["data", "check"]:
        return True
    if argv[:2] == ["data", "synth"]:
        args = build_parser().parse_args(argv)
        return max(args.train, args.val) <= SMALL_SYNTH
    return False


def suite_files(page: Path) -> dict[str, str]:
    """The suite files a page writes: yaml blocks whose first line is the file's path as a comment."""
    written = {}
    for block in fenced_blocks(page):
        named = SUITE_FILE_COMMENT.match(block.lines[0]) if block.language == "yaml" and block.lines else None
        if named:
            written[named.group(1)] = "\n".join(block.lines) + "\n"
    return written


def scratch_checkout(folder: Path, written: dict[str, str]) -> None:
    """``folder/configs`` links every shipped config and suite; the page's own suite files are real files."""
    ablations = folder / "configs" / "ablations"
    ablations.mkdir(parents=True)
    for entry in (ROOT / "configs").iterdir():
        if entry.name != "ablations":
            (folder / "configs" / entry.name).symlink_to(entry)
    for suite in (ROOT / "configs" / "ablations").iterdir():
        (ablations / suite.name).symlink_to(suite)
    for relative, text in written.items():
        path = folder / relative
        assert not path.exists(), f"the docs write {relative}, which is a shipped file"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def cheap_commands(page: Path) -> list[Shown]:
    return [c for c in CLI_COMMANDS if c.where.split(":")[0] == str(page.relative_to(ROOT))
            and is_cheap(cli_argv(c.words))]


def builds_models(page: Path) -> bool:
    return any(cli_argv(c.words)[:1] in (["run"], ["env"]) for c in cheap_commands(page))


# Dry runs build every model of their suites and `env` loads mmcv's ops: seconds each, so those pages are
# slow.
PAGES_WITH_CHEAP_COMMANDS = [
    pytest.param(page, id=str(page.relative_to(ROOT)),
                 marks=[pytest.mark.slow] if builds_models(page) else [])
    for page in PAGES if cheap_commands(page)]


def test_the_docs_show_cheap_commands():
    kinds = {tuple(cli_argv(c.words)[:2]) for page in PAGES for c in cheap_commands(page)}
    assert {("data", "synth"), ("data", "check")} <= kinds
    assert any(kind[0] == "run" for kind in kinds)


@pytest.mark.parametrize("page", PAGES_WITH_CHEAP_COMMANDS)
def test_the_cheap_commands_of_a_page_run(page, tmp_path, monkeypatch, capsys):
    scratch_checkout(tmp_path, suite_files(page))
    monkeypatch.chdir(tmp_path)
    for command in cheap_commands(page):
        argv = cli_argv(command.words)
        if argv[:2] == ["data", "check"] and not Path(argv[2]).exists():
            continue  # a file of the reader's, not one the page makes: parsed above, not run
        try:
            code = main(argv)
        except SystemExit as exc:  # --help
            code = int(exc.code or 0)
        printed = capsys.readouterr()
        assert code == 0, f"{command} exited {code}:\n{printed.out[-2000:]}\n{printed.err[-2000:]}"
