"""``smtpbench capacity``: flags, the search's plan and scenario built from them, then
the search, headless or under the dashboard."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from smtpbench.capacity.driver import Plan
from smtpbench.capacity.search import Ramp
from smtpbench.capacity.verdict import DEFAULT_CRITERIA, default_criteria
from smtpbench.commands.flags import (
    add_cluster_arguments,
    add_output_arguments,
    add_scenario_argument,
    add_tls_arguments,
    flag_duration,
)
from smtpbench.thresholds import Threshold, ThresholdError, parse_threshold
from smtpbench.units import parse_rate, parse_share

# The run lasts the longest the search could take, and this much more: the search ends
# it (the driver stops the engine), never the clock.
SPARE = 60.0


def add_capacity_arguments(parser: argparse.ArgumentParser) -> None:
    add_scenario_argument(parser, " (its rate is replaced by the steps')")
    parser.add_argument("--target", metavar="HOST:PORT", help="the server to measure")
    parser.add_argument(
        "--to", metavar="RATE", required=True, help="the highest rate to try, e.g. 2000/s"
    )
    parser.add_argument(
        "--from",
        dest="start",
        metavar="RATE",
        help="the first rate (default: one step)",
    )
    parser.add_argument(
        "--step",
        metavar="RATE",
        help="how much each step adds to the rate (default: a tenth of --to)",
    )
    parser.add_argument(
        "--refine",
        metavar="N",
        type=int,
        default=0,
        help="once a step broke, N more steps bisecting between the highest rate that "
        "held and the lowest that did not (default 0)",
    )
    parser.add_argument(
        "--step-duration",
        metavar="D",
        default="10s",
        help="how long each rate is held (default 10s)",
    )
    parser.add_argument(
        "--settle",
        metavar="D",
        default="3s",
        help="the start of each step left out of its figures, while queues settle (default 3s)",
    )
    parser.add_argument(
        "--threshold",
        metavar="EXPR",
        action="append",
        default=[],
        help="a criterion every step must meet on its steady part, as for run (repeatable; "
        "added to the scenario's [thresholds]; with neither: "
        + ", ".join(DEFAULT_CRITERIA).replace("%", "%%")
        + ")",
    )
    parser.add_argument(
        "--reach",
        metavar="SHARE",
        default="90%",
        help="the share of each step's rate the sessions started must reach (default 90%%)",
    )
    parser.add_argument(
        "--max-concurrency", metavar="N", type=int, help="cap on sessions in flight"
    )
    parser.add_argument(
        "--seed", type=int, help="makes generated content and arrivals reproducible"
    )
    add_output_arguments(
        parser,
        headless_help="no dashboard: a line per step, then the table",
        progress_default="5s",
    )
    add_tls_arguments(parser)
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="go on when no session can connect (otherwise the search stops, exit code 4)",
    )
    parser.add_argument(
        "--workers",
        metavar="N",
        type=int,
        help="engine processes sharing the load (default 1: headless, the engine runs in "
        "this process); more when one engine process is the limit and cores are free; "
        "with --cluster, the engines on the cluster (default one on each of its workers)",
    )
    parser.add_argument(
        "--ignore-limits",
        action="store_true",
        help="run even when the load asks more of this machine than it has",
    )
    add_cluster_arguments(parser)
    parser.add_argument(
        "--test-slow-engine",
        metavar="D",
        # For the tests only: the engine spends D of CPU on every session it starts, so
        # that this machine, not the server, becomes the limit. Not shown in --help.
        help=argparse.SUPPRESS,
    )


def _rate(flag: str, text: str) -> float:
    try:
        value = parse_rate(text)
    except ValueError as err:
        raise ValueError(f"{flag}: {err}") from None
    if value <= 0:
        raise ValueError(f"{flag}: the rate must be above 0/s, got {text!r}")
    return value


def build_plan(args: argparse.Namespace, scenario_checks: tuple[Threshold, ...] = ()) -> Plan:
    """The search's plan from the flags; ValueError naming the flag that is wrong."""
    top = _rate("--to", args.to)
    step = _rate("--step", args.step) if args.step is not None else top / 10
    start = _rate("--from", args.start) if args.start is not None else step
    if args.refine < 0:
        raise ValueError(f"--refine: cannot be negative, got {args.refine}")
    try:
        ramp = Ramp(start, step, top, args.refine)
    except ValueError as err:
        flag = "--to" if "highest" in str(err) else "--refine"
        raise ValueError(f"{flag}: {err}") from None
    held_for = flag_duration("--step-duration", args.step_duration)
    settle = flag_duration("--settle", args.settle)
    if held_for <= 0:
        raise ValueError(f"--step-duration: must be longer than 0s, got {args.step_duration!r}")
    if settle >= held_for:
        raise ValueError(
            f"--settle: must be shorter than --step-duration ({args.step_duration}), got "
            f"{args.settle!r}"
        )
    try:
        reach = parse_share(args.reach)
    except ValueError as err:
        raise ValueError(f"--reach: {err}") from None
    if reach <= 0:
        raise ValueError(f"--reach: must be above 0%, got {args.reach!r}")
    criteria = list(scenario_checks)
    for text in args.threshold:
        try:
            criteria.append(parse_threshold(text))
        except ThresholdError as err:
            raise ValueError(f"--threshold {err}") from None
    for check in criteria:
        if check.metric.is_transit:
            raise ValueError(
                f"threshold {check}: transit is not measured in a capacity search (only in "
                "smtpbench run --through)"
            )
    return Plan(
        ramp=ramp,
        step_duration=held_for,
        settle=settle,
        criteria=tuple(criteria) or default_criteria(),
        reach=reach,
    )


def run_capacity(args: argparse.Namespace) -> int:
    from smtpbench.capacity.headless import CapacityOptions, run_capacity_headless
    from smtpbench.commands.flags import cluster_options, parse_host_port
    from smtpbench.commands.start import check_limits, usage_error, with_tls_flags
    from smtpbench.engine.session import SessionSetupError, preflight
    from smtpbench.engine.shares import worker_count
    from smtpbench.files import OutputError, check_output_folder
    from smtpbench.scenario import ScenarioError, load_scenario, with_overrides

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as err:
        return usage_error(str(err))
    try:
        plan = build_plan(args, scenario.thresholds.checks)
        host = port = None
        if args.target:
            host, port = parse_host_port(args.target)
        scenario = with_overrides(
            scenario,
            host=host,
            port=port,
            rate=plan.ramp.start,
            duration=plan.longest + SPARE,
            seed=args.seed,
            max_concurrency=args.max_concurrency,
        )
        interval = flag_duration("--progress-interval", args.progress_interval)
        cluster = cluster_options(args)
        slow = 0.0
        if args.test_slow_engine is not None:
            slow = flag_duration("--test-slow-engine", args.test_slow_engine)
    except ValueError as err:
        return usage_error(str(err))
    if scenario.load.sessions is not None:
        scenario = dataclasses.replace(
            scenario, load=dataclasses.replace(scenario.load, sessions=None)
        )
    messages = scenario.session.messages
    plan = dataclasses.replace(
        plan,
        cap=scenario.load.max_concurrency,
        messages_per_session=(messages.low + messages.high) / 2,
    )
    try:
        scenario = with_tls_flags(scenario, args)
        preflight(scenario)
    except (ValueError, SessionSetupError) as err:
        return usage_error(f"{scenario.source}: {err}" if scenario.source else str(err))
    if args.workers is not None and args.workers < 1:
        return usage_error(f"--workers: must be at least 1, got {args.workers}")
    workers = worker_count(scenario.load, args.workers or 1)
    if slow and (workers > 1 or cluster is not None):
        return usage_error("--test-slow-engine: only with one worker (the engine in this process)")
    if cluster is None:
        refused = check_limits(scenario, workers, args.ignore_limits)
    elif scenario.target.host is None:
        # The engines are on the cluster's hosts, which check their own limits; here
        # runs the embedded sink, which serves every session.
        refused = check_limits(scenario, 1, args.ignore_limits)
    else:
        refused = None
    if refused is not None:
        return usage_error(refused)
    try:
        check_output_folder(args.out)
    except OutputError as err:
        return usage_error(f"--out {err}")
    options = CapacityOptions(
        scenario=scenario,
        plan=plan,
        results_base=args.out,
        progress_interval=max(0.1, interval),
        keep_going=args.keep_going,
        workers=workers,
        cluster=cluster,
        slow_engine=slow,
    )
    if args.tui or (sys.stdout.isatty() and not args.headless):
        if slow:
            return usage_error(
                "--test-slow-engine: only with --headless (the engine in this process)"
            )
        from smtpbench.capacity.dashboard import run_capacity_dashboard

        return run_capacity_dashboard(options)
    return run_capacity_headless(options)


__all__ = ["add_capacity_arguments", "build_plan", "run_capacity"]
