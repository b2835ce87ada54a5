"""The command line builds only the arguments of the command it runs: a run does not read
the code of ``probe``, ``shell`` or the transit receiver's sink before it starts."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from smtpbench.cli import _COMMANDS, _build_parser, _command_named


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["run", "smoke", "--headless"], "run"),
        (["--version"], None),
        ([], None),
        (["-h", "probe"], "probe"),
        (["bogus", "run"], None),  # argparse refuses "bogus" itself
    ],
)
def test_the_command_is_the_first_word_that_is_not_an_option(
    argv: list[str], command: str | None
) -> None:
    assert _command_named(argv) == command


def _arguments_of(parser: argparse.ArgumentParser) -> dict[str, int]:
    """How many arguments (besides --help) each command of ``parser`` has."""
    choices: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            choices = action.choices
    return {
        name: sum(1 for a in sub._actions if not isinstance(a, argparse._HelpAction))
        for name, sub in choices.items()
    }


def test_the_whole_parser_gives_every_command_its_arguments() -> None:
    counts = _arguments_of(_build_parser())
    assert set(counts) == set(_COMMANDS)
    assert counts["run"] > 10 and counts["sink"] > 0 and counts["send"] > 0
    for name in _COMMANDS:  # built alone, each command gets the same arguments
        assert _arguments_of(_build_parser(name))[name] == counts[name], name
    args = _build_parser().parse_args(["run", "smoke", "--headless", "--rate", "5"])
    assert (args.command, args.headless, args.rate) == ("run", True, "5")


def test_a_parser_for_one_command_gives_only_that_one_its_arguments() -> None:
    counts = _arguments_of(_build_parser("run"))
    assert set(counts) == set(_COMMANDS)
    assert counts["run"] == _arguments_of(_build_parser())["run"]
    assert all(count == 0 for name, count in counts.items() if name != "run"), counts


def test_a_parser_for_one_command_parses_it_alone() -> None:
    parser = _build_parser("run")
    args = parser.parse_args(["run", "smoke", "--target", "127.0.0.1:2525", "--headless"])
    assert (args.command, args.target) == ("run", "127.0.0.1:2525")
    # Another command is listed, without its arguments: parsing it would refuse them.
    with pytest.raises(SystemExit):
        parser.parse_args(["sink", "--listen", "127.0.0.1:2525"])


def test_help_lists_every_command_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _build_parser("").parse_args(["--help"])
    shown = capsys.readouterr().out
    for name, (summary, _description, _add) in _COMMANDS.items():
        assert name in shown
        assert summary.split()[0] in shown


def test_building_the_run_command_reads_no_other_command() -> None:
    code = (
        "import json, sys\n"
        "from smtpbench.cli import _build_parser\n"
        "_build_parser('run')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('smtpbench'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(json.loads(done.stdout))
    assert "smtpbench.commands.flags" in loaded  # the run's own flags were built
    for other in (
        "smtpbench.commands.probe",
        "smtpbench.commands.shell",
        "smtpbench.commands.capacity",
        "smtpbench.commands.replay",
        "smtpbench.servers.sink",
    ):
        assert other not in loaded, other
