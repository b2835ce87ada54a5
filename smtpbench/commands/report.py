"""The offline commands on results folders: ``report``, ``compare`` and ``merge``
(their arguments and what they do; ``smtpbench.cli`` only dispatches)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from smtpbench import exitcodes
from smtpbench.files import OutputError
from smtpbench.metrics.results import SCENARIO_FILE, ResultsError, read_results
from smtpbench.metrics.snapshot import Snapshot
from smtpbench.report.output import print_whole
from smtpbench.report.thresholds import ThresholdResult, all_passed, evaluate
from smtpbench.thresholds import Threshold, ThresholdError, parse_threshold
from smtpbench.transit.matching import TransitFigures

FORMATS = ("table", "json", "csv", "replies-csv", "markdown")


def _error(message: str) -> int:
    Console(stderr=True).print(f"[red]error:[/] {escape(message)}", highlight=False)
    return exitcodes.BAD_CONFIGURATION


def _note(message: str) -> None:
    Console(stderr=True).print(message, highlight=False)


# -- report -----------------------------------------------------------------


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", type=Path, help="a results folder written by smtpbench run")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="table",
        help="table (default), json (summary.json plus thresholds and transit), csv (latency "
        "per command, in seconds), replies-csv (reply codes per command, enhanced status codes "
        "under their class) or markdown (for a pull request)",
    )
    parser.add_argument(
        "--threshold",
        metavar="EXPR",
        action="append",
        default=[],
        help="check these thresholds instead of the ones the run's scenario had (repeatable)",
    )
    parser.add_argument(
        "--hlog",
        metavar="FILE",
        type=Path,
        help="also write an HdrHistogram interval log, one tag per command",
    )
    parser.add_argument(
        "--plot",
        metavar="FILE",
        type=Path,
        help="also draw the run: FILE.png (an image) or FILE.html (a self-contained page)",
    )


def _stored_thresholds(folder: Path) -> tuple[Threshold, ...]:
    """The thresholds in the run's own scenario.toml; none if it cannot be read."""
    from smtpbench.scenario import ScenarioError, parse_scenario

    path = folder / SCENARIO_FILE
    try:
        return parse_scenario(path.read_text(encoding="utf-8"), file=str(path)).thresholds.checks
    except (OSError, ScenarioError) as err:
        _note(f"[yellow]note:[/] thresholds of the run not checked: {err}")
        return ()


def run_report(args: argparse.Namespace) -> int:
    try:
        extra = [parse_threshold(text) for text in args.threshold]
    except ThresholdError as err:
        return _error(f"--threshold {err}")
    if args.plot is not None and args.plot.suffix.lower() not in (".png", ".html", ".htm"):
        return _error(f"--plot {args.plot}: name a .png or an .html file")
    try:
        snapshot = read_results(args.results)
    except ResultsError as err:
        return _error(str(err))
    from smtpbench.transit.report import read_transit, transit_table

    try:  # run --through: the transit figures kept beside the results
        transit = read_transit(args.results)
    except ValueError as err:
        return _error(str(err))
    checks = tuple(extra) or _stored_thresholds(args.results)
    results = evaluate(checks, snapshot, transit)
    _print_report(snapshot, results, args.format, transit)
    if args.format == "table":
        if transit is not None:
            print_whole(Console(), transit_table(transit))
        from smtpbench.metrics.hosts import hosts_table, read_hosts

        try:
            hosts = read_hosts(args.results)
        except ValueError as err:
            return _error(str(err))
        if hosts is not None:  # run --cluster: each engine's host and figures
            print_whole(Console(), hosts_table(hosts))
    if args.hlog is not None:
        from smtpbench.report.hlog import write_hlog

        tags = write_hlog(args.hlog, snapshot)
        _note(f"wrote {args.hlog}: {tags} tags")
    if args.plot is not None:
        from smtpbench.report.plots import write_plot

        write_plot(args.plot, snapshot)
        _note(f"wrote {args.plot}")
    return exitcodes.OK if all_passed(results) else exitcodes.THRESHOLDS_FAILED


def _print_report(
    snapshot: Snapshot,
    results: list[ThresholdResult],
    form: str,
    transit: TransitFigures | None = None,
) -> None:
    if form == "table":
        from smtpbench.report.summary import summary
        from smtpbench.report.thresholds import thresholds_table

        console = Console()
        print_whole(console, summary(snapshot))
        if results:
            print_whole(console, thresholds_table(results))
        return
    if form == "json":
        from smtpbench.report.exports import report_json

        text = report_json(snapshot, results, transit)
    elif form == "csv":
        from smtpbench.report.exports import latency_csv

        text = latency_csv(snapshot, transit)
    elif form == "replies-csv":
        from smtpbench.report.exports import replies_csv

        text = replies_csv(snapshot)
    else:
        from smtpbench.report.markdown import markdown_report

        text = markdown_report(snapshot, results, transit)
    sys.stdout.write(text)
    sys.stdout.flush()


# -- merge ------------------------------------------------------------------


def add_merge_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results", type=Path, nargs="+", help="results folders of runs that shared one load"
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        type=Path,
        required=True,
        help="the merged results folder to write (new, or empty)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="merge runs even when their scenarios, load models, targets or kinds differ, "
        "or they did not overlap in time (never the same run twice)",
    )


def run_merge(args: argparse.Namespace) -> int:
    from smtpbench.metrics.merge import merge_snapshots
    from smtpbench.metrics.results import write_results

    if len(args.results) < 2:
        return _error("merge needs at least two results folders")
    out: Path = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        return _error(f"--out {out}: exists and is not an empty folder")
    try:
        snapshots = [read_results(folder) for folder in args.results]
    except ResultsError as err:
        return _error(str(err))
    from smtpbench.metrics.merge_checks import check_merge

    check = check_merge(snapshots, [str(folder) for folder in args.results])
    if check.twice is not None:
        return _error(check.twice)
    if check.differences and not args.force:
        return _error(
            "these runs do not look like one load split up: "
            + "; ".join(check.differences)
            + " (--force merges them anyway)"
        )
    for difference in check.differences:
        _note(f"[yellow]note:[/] merged with --force although {difference}")
    merged = merge_snapshots(snapshots)
    first = args.results[0] / SCENARIO_FILE
    scenario = first.read_text(encoding="utf-8") if first.exists() else ""
    names = ", ".join(str(folder) for folder in args.results)
    header = f"# {len(snapshots)} runs merged ({names}); the scenario of the first one:\n"
    try:
        write_results(out, merged, header + scenario)
    except OutputError as err:
        _error(str(err))
        return exitcodes.RESULTS_NOT_WRITTEN
    if merged.intervals is None:
        _note(
            "[yellow]note:[/] a run's intervals were paired to save memory: the merged run "
            "has no per-second percentiles; totals and histograms are exact"
        )
    c = merged.counters
    Console().print(
        f"merged {len(snapshots)} runs into [bold]{out}[/]: {c.started:,} sessions, "
        f"{c.messages_accepted:,} messages accepted",
        highlight=False,
    )
    return exitcodes.OK


# -- compare ----------------------------------------------------------------


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "results",
        type=Path,
        nargs="+",
        help="two or more results folders; the first is the baseline",
    )
    parser.add_argument(
        "--fail-if",
        metavar="RULE",
        action="append",
        default=[],
        help="a regression rule such as 'p99 +10%%' (any command's p99 up more than 10%%), "
        "'p99(DATA) +5ms', 'throughput -5%%' or 'rate(errors) +0.5pp' (repeatable; exit 1)",
    )


def run_compare(args: argparse.Namespace) -> int:
    from smtpbench.report.compare import check_rules, comparison, parse_rule

    if len(args.results) < 2:
        return _error("compare needs at least two results folders (the first is the baseline)")
    try:
        rules = [parse_rule(text) for text in args.fail_if]
    except ThresholdError as err:
        return _error(f"--fail-if {err}")
    try:
        runs = [read_results(folder) for folder in args.results]
    except ResultsError as err:
        return _error(str(err))
    for rule in rules:
        if rule.matches_nothing(runs):
            return _error(
                f"--fail-if {rule.text!r}: matches nothing in any of the runs (a command "
                "none of them sent, or a measure none of them has)"
            )
    results = check_rules(rules, runs)
    for rule in rules:
        if not any(result.rule is rule for result in results):
            _note(
                f"[yellow]note:[/] --fail-if {escape(rule.text)!r}: the baseline has no data "
                "for it, so there is nothing to hold the other runs to"
            )
    print_whole(Console(), comparison(runs, [str(folder) for folder in args.results], results))
    return exitcodes.THRESHOLDS_FAILED if any(r.failed for r in results) else exitcodes.OK
