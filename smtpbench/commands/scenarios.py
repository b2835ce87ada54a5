"""``smtpbench scenarios``: the scenarios ``run`` finds by name, where each comes from, and
what it does."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

from smtpbench import exitcodes
from smtpbench.report.output import print_whole
from smtpbench.scenario import ScenarioError, load_scenario
from smtpbench.scenario.loader import DEFAULT_SEARCH_DIRS, EXAMPLES_DIR, available_scenarios


def add_scenarios_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(search_dirs=DEFAULT_SEARCH_DIRS)


def where(name: str, search_dirs: tuple[Path, ...]) -> Path | None:
    for directory in search_dirs:
        candidate = directory / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def scenarios_table(search_dirs: tuple[Path, ...] = DEFAULT_SEARCH_DIRS) -> Table:
    table = Table(
        title="Scenarios (smtpbench run NAME; ./scenarios comes before the examples)",
        title_justify="left",
    )
    table.add_column("name", style="bold")
    table.add_column("from")
    table.add_column("what it does")
    for name in available_scenarios(search_dirs):
        path = where(name, search_dirs)
        source = "example" if path is not None and path.parent == EXAMPLES_DIR else str(path)
        try:
            description = load_scenario(name, search_dirs=search_dirs).description
        except ScenarioError as err:
            description = f"[red]cannot be read: {err}[/]"
        table.add_row(name, source, description)
    return table


def run_scenarios(args: argparse.Namespace) -> int:
    print_whole(Console(), scenarios_table(tuple(args.search_dirs)))
    return exitcodes.OK
