"""Does smtpbench's memory stay flat over a long run? Runs ``smtpbench run`` headless
against the embedded sink at a steady rate and samples the resident memory (VmRSS) of
the smtpbench process, of its engine processes if any, and, apart, of the embedded
sink, at a fixed interval.

    python bench/soak.py --rate 2000 --duration 10m --interval 10
    python bench/soak.py --rate 50 --duration 5s --interval 1 --warmup 2 --out /tmp/soak

The verdict: the client's memory (smtpbench and its engine processes, not the sink) at
its highest after the warm-up (``--warmup``, the first minute by default) against the
first sample after it, while sessions are still being scheduled: flat when it grew by
less than 10%. Writes ``soak.md`` (verdict, run figures, the series) and ``soak.csv``
(the raw series) to ``--out`` (default results/benchmarks). Loopback only.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 0.10  # growth that still counts as flat
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
CSV_COLUMNS = (
    "seconds",
    "client_rss_kib",
    "main_rss_kib",
    "engine_rss_kib",
    "sink_rss_kib",
    "processes",
)
UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


class Stopped(Exception):
    """SIGTERM arrived: stop the run, write what was sampled."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stopped(f"signal {signum}")


def seconds(text: str) -> float:
    match = DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a duration such as 10m, 30s or 600: {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


# Processes and their memory ---------------------------------------------------------------


def rss_kib(pid: int) -> int | None:
    """Resident memory of a process in KiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return 0  # a zombie has no VmRSS line


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name in parentheses may hold spaces: the fields after its ")" are fixed.
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = parent_of(int(entry))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry))
    found: list[int] = []
    todo = list(children.get(root, []))
    while todo and len(found) < 10_000:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def is_sink(pid: int) -> bool:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"smtpbench" in argv and b"sink" in argv


@dataclass
class Sample:
    seconds: float
    main_kib: int
    engine_kib: int
    sink_kib: int
    processes: int

    @property
    def client_kib(self) -> int:
        return self.main_kib + self.engine_kib


def sample(pid: int, since: float) -> Sample | None:
    main = rss_kib(pid)
    if main is None:
        return None
    engine = sink = 0
    others = descendants(pid)
    for child in others:
        size = rss_kib(child) or 0
        if is_sink(child):
            sink += size
        else:
            engine += size
    return Sample(time.monotonic() - since, main, engine, sink, 1 + len(others))


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Ctrl-C for smtpbench (it drains and writes its results), then SIGTERM and SIGKILL
    to the process group it leads, sink included; only while it is not yet reaped."""
    steps = (
        (signal.SIGINT, 30.0, False),
        (signal.SIGTERM, 5.0, True),
        (signal.SIGKILL, 10.0, True),
    )
    for sig, wait, group in steps:
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            if group:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)


# The run ----------------------------------------------------------------------------------


@dataclass
class Run:
    command: list[str]
    samples: list[Sample]
    returncode: int | None
    summary: dict[str, Any] | None
    interrupted: bool


def soak(rate: str, duration: str, interval: float, folder: Path, limit: float) -> Run:
    command = [sys.executable, "-m", "smtpbench", "run", "--rate", rate, "--duration", duration]
    command += ["--headless", "--seed", "1", "--out", str(folder / "results")]
    samples: list[Sample] = []
    interrupted = False
    with (folder / "output.txt").open("wb") as output:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        start = time.monotonic()
        try:
            for tick in range(int(limit / interval) + 2):
                taken = sample(process.pid, start)
                if taken is None or process.poll() is not None:
                    break
                samples.append(taken)
                # Absolute times: the n-th sample at n intervals, whatever sampling took.
                left = start + (tick + 1) * interval - time.monotonic()
                if left > 0:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.wait(timeout=left)
                if process.poll() is not None:
                    break
        except (KeyboardInterrupt, Stopped):
            interrupted = True
        finally:
            stop_group(process)
    found = sorted((folder / "results").glob("*/summary.json"))
    summary = json.loads(found[-1].read_text()) if found else None
    return Run(command, samples, process.returncode, summary, interrupted)


@dataclass
class Verdict:
    baseline: Sample | None
    peak: Sample | None
    last: Sample | None
    growth: float | None
    flat: bool | None
    text: str


def judge(samples: list[Sample], warmup: float, load_end: float) -> Verdict:
    window = [s for s in samples if warmup <= s.seconds <= load_end + 0.5]
    if len(window) < 2:
        return Verdict(None, None, None, None, None, "no verdict: too few samples after warm-up")
    baseline = window[0]
    peak = max(window, key=lambda s: s.client_kib)
    growth = (peak.client_kib - baseline.client_kib) / baseline.client_kib
    flat = growth < LIMIT
    text = (
        f"{'FLAT' if flat else 'GROWING'}: the client's resident memory peaked at "
        f"{peak.client_kib / 1024:.1f} MiB ({peak.seconds:.0f} s), {growth:+.1%} against "
        f"{baseline.client_kib / 1024:.1f} MiB at {baseline.seconds:.0f} s "
        f"(limit +{LIMIT:.0%})"
    )
    return Verdict(baseline, peak, window[-1], growth, flat, text)


def write(run: Run, verdict: Verdict, args: argparse.Namespace, started: str, out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "soak.csv").open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        for s in run.samples:
            row = (s.seconds, s.client_kib, s.main_kib, s.engine_kib, s.sink_kib, s.processes)
            writer.writerow([f"{row[0]:.1f}", *row[1:]])
    shown = shlex.join(["python", *run.command[1:-1]]) + " $SCRATCH/results"
    invocation = shlex.join(["python", "bench/soak.py", *args.argv])
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    lines = [
        "# Soak: resident memory over a long run",
        "",
        f"Run {started}: `{shown}` (the project's default scenario, "
        "`scenarios/default.toml`, at that rate, against the embedded sink), memory sampled every "
        f"{args.interval:g} s. Command: `{invocation}`.",
        "",
        f"Machine: `nproc` {os.cpu_count()}, {model}; Linux {platform.release()}; "
        f"Python {platform.python_version()}.",
        "",
        f"**Verdict: {verdict.text}.** Warm-up: the first {args.warmup:g} s; the window ends "
        "when scheduling ends. Client = the smtpbench process plus its engine processes; "
        "the embedded sink is listed apart and not judged.",
        "",
    ]
    if run.interrupted:
        lines += ["**Interrupted**: the series stops where the run was stopped.", ""]
    summary = run.summary
    if summary is not None:
        counters = summary["counters"]
        rates = summary["rates"]
        lines += [
            "| run figure | value |",
            "|---|---|",
            f"| state, exit code | {summary['state']}, {run.returncode} |",
            f"| elapsed | {summary['elapsed']:.1f} s |",
            f"| target rate | {rates['target_sessions_per_second']} sessions/s |",
            f"| achieved rate | {rates['achieved_sessions_per_second']} sessions/s |",
            f"| sessions started, completed, failed, dropped | {counters['started']:,}, "
            f"{counters['completed']:,}, {counters['failed']:,}, {counters['dropped']:,} |",
            f"| messages accepted | {counters['messages_accepted']:,} |",
            "",
        ]
        target = rates["target_sessions_per_second"] or 0
        if counters["dropped"] or rates["achieved_sessions_per_second"] < 0.95 * target:
            lines += [
                "**The client did not keep up with the rate**: sessions waited in the backlog "
                f"and {counters['dropped']:,} were dropped, so its memory also holds the "
                "waiting sessions (bounded by the scenario's `max_concurrency` and `backlog`) "
                "and is no steady state until the backlog is full.",
                "",
            ]
    else:
        lines += [f"No results folder was written (exit code {run.returncode}).", ""]
    lines += [
        "| seconds | client MiB | smtpbench MiB | engine MiB | sink MiB | processes |",
        "|---|---|---|---|---|---|",
    ]
    for s in run.samples:
        lines.append(
            f"| {s.seconds:.0f} | {s.client_kib / 1024:.1f} | {s.main_kib / 1024:.1f} | "
            f"{s.engine_kib / 1024:.1f} | {s.sink_kib / 1024:.1f} | {s.processes} |"
        )
    lines += ["", "The raw series (KiB) is in `soak.csv` beside this file.", ""]
    text = "\n".join(lines)
    (out / "soak.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", default="2000", help="sessions per second (2000)")
    parser.add_argument("--duration", default="10m", help="how long to schedule (10m)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--warmup", type=seconds, default=60.0, help="left out of the verdict")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.interval <= 0:
        parser.error("--interval must be > 0")
    try:
        load_end = seconds(args.duration)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    # Sampling ends with the run; the bound only guards against a run that never ends
    # (scheduling, then the default 10 s of grace, then writing the results).
    limit = load_end + 120.0
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        run = soak(args.rate, args.duration, args.interval, Path(tmp), limit)
        tail = (Path(tmp) / "output.txt").read_text(errors="replace").strip().splitlines()
    verdict = judge(run.samples, args.warmup, load_end)
    text = write(run, verdict, args, started, args.out)
    print(text)
    if run.summary is None:
        print("\n".join(tail[-20:]), file=sys.stderr)
        return 1
    return 130 if run.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
