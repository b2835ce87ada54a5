"""``smtpbench run``: a scenario, the command line's changes to it, then the run."""

from __future__ import annotations

import argparse

from smtpbench.commands.flags import cluster_options, parse_host_port
from smtpbench.commands.start import (
    default_workers,
    note,
    start_run,
    usage_error,
    with_threshold_flags,
    with_tls_flags,
)


def run_command(args: argparse.Namespace) -> int:
    from smtpbench.run.headless import stdout_is_terminal
    from smtpbench.run.options import RunOptions
    from smtpbench.scenario import ScenarioError, load_scenario, with_overrides
    from smtpbench.scenario.sources import source_option
    from smtpbench.units import parse_duration

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as err:
        return usage_error(str(err))
    if args.target and not scenario.sink.is_empty:
        note(
            f"{scenario.source or scenario.name}: sink: the faults of [sink] apply to the "
            f"embedded sink; ignored, since --target sends to {args.target}"
        )
    try:
        host = port = None
        if args.target:
            host, port = parse_host_port(args.target)
        scenario = with_overrides(
            scenario,
            host=host,
            port=port,
            rate=args.rate,
            concurrency=args.concurrency,
            duration=args.duration,
            sessions=args.sessions,
            seed=args.seed,
            max_concurrency=args.max_concurrency,
            source=source_option(args.source),
        )
        interval = parse_duration(args.progress_interval)
        from smtpbench.transit.cli import through_options

        through = through_options(args)
        cluster = cluster_options(args)
        if through is not None and cluster is not None:
            raise ValueError("--through: not with --cluster yet; use one or the other")
    except ValueError as err:
        return usage_error(str(err))
    try:
        scenario = with_threshold_flags(scenario, args)
        from smtpbench.transit.run import check_transit_thresholds

        check_transit_thresholds(scenario.thresholds.checks, through is not None)
    except ValueError as err:
        return usage_error(str(err))
    from smtpbench.engine.session import SessionSetupError, preflight

    try:
        scenario = with_tls_flags(scenario, args)
        preflight(scenario)
    except (ValueError, SessionSetupError) as err:
        return usage_error(f"{scenario.source}: {err}" if scenario.source else str(err))
    options = RunOptions(
        scenario=scenario,
        results_base=args.out,
        progress_interval=max(0.1, interval),
        terminal=stdout_is_terminal(),
        record_sessions=args.record_sessions,
        workers=args.workers or default_workers(scenario),
        keep_going=args.keep_going,
        through=through,
        cluster=cluster,
    )
    return start_run(options, args)


__all__ = ["run_command"]
