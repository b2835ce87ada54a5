"""How late do sessions start at half the engine's maximum rate? The engine's own
timing, against Postfix's ``smtp-sink`` on loopback (pinned to one CPU, smtpbench to
another, as in ``compare_clients.py``).

First the maximum: the closed model (20 sessions in flight, a new connection per
message) for ``--sessions`` sessions, ``--repeats`` times; its median sessions per
second is the engine's maximum here. Then the open model at half of it (or at
``--rate``) for ``--duration``, ``--repeats`` times: start lag (actual start minus
the schedule's intended start) p50, p99 and max, and sessions started against the
schedule, as the results folder has them. Medians over the repeats. Writes
``start_lag.md`` and ``start_lag.json`` to ``--out`` (default results/benchmarks).

    python bench/start_lag.py --repeats 3
    python bench/start_lag.py --quick --out /tmp/bench

Loopback only; needs Postfix's smtp-sink (Debian package postfix).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_clients import placement, postfix_binary, postfix_sink

from smtpbench.build_info import engine_build

ROOT = Path(__file__).resolve().parent.parent


def smtpbench(args: list[str], client: list[str], out: Path) -> dict[str, object]:
    """One headless run with one worker; its summary.json."""
    command = [*client, sys.executable, "-m", "smtpbench", "run", *args]
    command += ["--headless", "--workers", "1", "--out", str(out)]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    found = sorted(out.glob("*/summary.json"))
    if not found:
        raise RuntimeError(f"no results from {shlex.join(command)}: {done.stderr[-400:]}")
    summary: dict[str, object] = json.loads(found[-1].read_text())
    for folder in out.iterdir():
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    return summary


def latency(summary: dict[str, object], row: str, field: str) -> float:
    rows = summary["latency"]
    assert isinstance(rows, dict)
    return float(rows[row][field])


def shown(args: list[str], scratch: Path) -> str:
    """A run's command as the report shows it: ``python``, and the scenarios written
    here under ``$SCRATCH``, not this machine's paths."""
    return shlex.join(["python", "-m", "smtpbench", "run", *args]).replace(str(scratch), "$SCRATCH")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sessions", type=int, default=40000, help="for the maximum")
    parser.add_argument("--duration", default="10s", help="of each open-model run")
    parser.add_argument("--rate", type=float, help="sessions/s (default: half the maximum)")
    parser.add_argument("--quick", action="store_true", help="a tiny load, to see it work")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    options = parser.parse_args(argv)
    if options.quick:
        options.repeats, options.sessions, options.duration = 1, 2000, "2s"
    sink_binary = postfix_binary("smtp-sink")
    if sink_binary is None:
        print("needs Postfix's smtp-sink (Debian package postfix)", file=sys.stderr)
        return 2
    where = placement(pin=True)
    scratch = Path(tempfile.mkdtemp(prefix="start-lag-"))
    scenario = scratch / "new-connections.toml"
    scenario.write_text(
        f'name = "start-lag-max"\nseed = 1\n[load]\nconcurrency = 20\n'
        f'sessions = {options.sessions}\ngrace = "60s"\n[session]\nmessages = 1\n'
        'recipients = 1\nsize = "1KiB"\n'
    )
    maxima: list[float] = []
    lags: list[dict[str, float]] = []
    commands: list[str] = []
    with postfix_sink(sink_binary, where) as sink:
        port, sink_command = sink.port, sink.command
        target = ["--target", f"127.0.0.1:{port}"]
        for _ in range(options.repeats):
            summary = smtpbench([str(scenario), *target], where.client, scratch / "max")
            rates = summary["rates"]
            assert isinstance(rates, dict)
            maxima.append(float(rates["achieved_sessions_per_second"]))
        commands.append(shown([str(scenario), *target], scratch))
        rate = options.rate or statistics.median(maxima) / 2
        arrivals = scratch / "arrivals.toml"
        arrivals.write_text(
            'name = "start-lag"\nseed = 1\n[session]\nmessages = 1\nrecipients = 1\nsize = "1KiB"\n'
        )
        open_args = [str(arrivals), *target, "--rate", f"{rate:.0f}"]
        open_args += ["--duration", options.duration]
        for _ in range(options.repeats):
            summary = smtpbench(open_args, where.client, scratch / "open")
            counters = summary["counters"]
            assert isinstance(counters, dict)
            lags.append(
                {
                    "p50": latency(summary, "start lag", "p50"),
                    "p99": latency(summary, "start lag", "p99"),
                    "max": latency(summary, "start lag", "max"),
                    "started": float(counters["started"]),
                    "scheduled": float(counters["scheduled"]),
                    "dropped": float(counters["dropped"]),
                }
            )
        commands.append(shown(open_args, scratch))
    median = {key: statistics.median(lag[key] for lag in lags) for key in lags[0]}
    maximum = statistics.median(maxima)
    lines = [
        "# Start lag at half the engine's maximum rate",
        "",
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC with "
        f"`python bench/start_lag.py{' --quick' if options.quick else ''} "
        f"--repeats {options.repeats}`; {where.description}; against `{shlex.join(sink_command)}`; "
        f"engine {engine_build()}.",
        "",
        "| figure | value |",
        "|---|---|",
        f"| maximum, closed model, new connection per session (median of {len(maxima)}) | "
        f"{maximum:,.0f} sessions/s |",
        f"| rate asked for (open model) | {rate:,.0f} sessions/s for {options.duration} |",
        f"| sessions started / scheduled (median) | {median['started']:,.0f} / "
        f"{median['scheduled']:,.0f}, {median['dropped']:,.0f} dropped |",
        f"| start lag p50 (median of {len(lags)}) | {median['p50'] * 1e6:,.0f} us |",
        f"| start lag p99 (median of {len(lags)}) | {median['p99'] * 1e6:,.0f} us |",
        f"| start lag max (median of {len(lags)}) | {median['max'] * 1e6:,.0f} us |",
        "",
        "Commands (smtpbench pinned, with `--headless --workers 1 --out DIR`):",
        "",
        *[f"    {command}" for command in commands],
        "",
    ]
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "start_lag.md").write_text("\n".join(lines))
    (options.out / "start_lag.json").write_text(
        json.dumps({"maxima": maxima, "rate": rate, "runs": lags, "commands": commands}, indent=2)
    )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
