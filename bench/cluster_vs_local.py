"""Does spreading a run over a Dask cluster cost anything? The same load through local
engine processes (``smtpbench run --workers N``) and through a Dask cluster on loopback
with the same number of engines (``smtpbench run --cluster ADDRESS --workers N``: one
engine on each of N Dask workers), against Postfix's ``smtp-sink`` on 127.0.0.1, the
same C server for both.

    python bench/cluster_vs_local.py
    python bench/cluster_vs_local.py --repeats 5 --rate 2000 --duration 20
    python bench/cluster_vs_local.py --quick --out build/bench

Two loads, each scenario one 1 KiB message to one recipient per session, a new
connection each: the open model at ``--rate`` sessions per second for ``--duration``
seconds (default 1,000/s for 10 s), giving the achieved throughput (messages accepted
per second of the run) and the start lag p99 (actual start minus the schedule's
intended start); and the closed model with ``--concurrency`` sessions in flight
(default 20) for the same time, giving the throughput. Both figures come from the
results folder's ``summary.json`` (``rates.messages_accepted_per_second`` and
``latency["start lag"].p99``).

The script starts the cluster itself, once, before the first run: ``python -m dask
scheduler`` on 127.0.0.1 (a free port, written to a scheduler file) and N ``python -m
dask worker`` processes, each on an address of its own (127.0.0.2, 127.0.0.3, ...) with
one thread and no nanny, this checkout on their ``PYTHONPATH``; it waits (bounded) for
the scheduler file and for every worker to register, and stops them all at the end, on
an error, on Ctrl-C or on SIGTERM. Every listener, dashboards included, is on loopback.

Each load runs ``--repeats`` times (default 3) on each side, the sides alternating and
the one that goes first rotating each round. The table gives medians, the ratio
cluster/local of the throughputs and the difference of the start lag p99s in
milliseconds, and whether the criteria hold: throughput within 5% and (open model) start
lag p99 within 1 ms of each other. On two or more cores the sink is pinned to one core
and everything on the client's side (smtpbench, and with the cluster the scheduler and
the workers with their engines) to another with ``taskset``; all of that runs in this
script's session, so that both sides get the same share of a busy core. Writes
``cluster_vs_local.md`` (tables, machine, every command line) and
``cluster_vs_local.json`` (every run) to ``--out`` (default results/benchmarks).
``--quick`` is a smoke run (200/s for 2 s, 1 repeat) whose figures mean nothing.
Loopback only; needs Postfix's smtp-sink (Debian package postfix) and ``distributed``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_clients import (
    LOOPBACK,
    Placement,
    cell,
    children_cpu,
    machine,
    placement,
    postfix_binary,
    postfix_sink,
    stop_group,
)

ROOT = Path(__file__).resolve().parent.parent
LIMIT = 60.0  # seconds: a bound on every wait for the cluster, never a measure
STOP_GRACE = 5.0  # seconds a cluster process gets to exit on SIGTERM before SIGKILL
LOADS = ("open", "closed")
SIDES = ("local", "cluster")
THROUGHPUT_WITHIN = 0.05  # the criteria: cluster/local throughput within 5% ...
LAG_WITHIN = 0.001  # ... and start lag p99 within 1 ms (seconds)
SCENARIO = """\
# Written by bench/cluster_vs_local.py: one 1 KiB message per session, a new connection each.
name = "cluster-vs-local"
seed = 1

[session]
messages = 1
recipients = 1
size = "1KiB"
"""


class Stopped(Exception):
    """SIGTERM arrived: unwind, stopping every process on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stopped(f"signal {signum}")


# The cluster ----------------------------------------------------------------------------


def cpu_times(pid: int) -> tuple[float, float] | None:
    """CPU seconds (user plus system) of a running process itself, and of its children it
    has reaped, from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state is fields[0]
    tick = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / tick
    reaped = (int(fields[13]) + int(fields[14])) / tick
    return own, reaped


# Every process on the client's side (smtpbench, the scheduler, the workers and their
# engines) runs in this script's session, each in a process group of its own to be
# stopped by. A session of its own each would be unfair: with the kernel's autogroup
# scheduling each session is a group that gets a fair share of a busy core, so the
# cluster's four (smtpbench, scheduler, two workers) would get more of it than the one
# of local workers whenever other work wants that core too.


def run_child(command: list[str], timeout: float) -> tuple[int, str, str]:
    """Runs one command to its end (output to files, so no pipe can fill up): its exit
    code, stdout and stderr. On a timeout, Ctrl-C or SIGTERM its process group stops."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            process_group=0,
        )
        try:
            returncode = process.wait(timeout=timeout)
        except BaseException:
            stop_group(process)
            raise
        out.seek(0)
        err.seek(0)
        return (
            returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def cluster_env() -> dict[str, str]:
    """The workers import smtpbench from this checkout, installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def log_tail(path: Path, lines: int = 8) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    return ""


@dataclass
class ClusterProcess:
    name: str
    command: list[str]
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Cluster:
    address: str = ""
    scheduler: ClusterProcess | None = None
    workers: list[ClusterProcess] = field(default_factory=list)

    @property
    def processes(self) -> list[ClusterProcess]:
        """The scheduler first, then the workers."""
        return [*([self.scheduler] if self.scheduler else []), *self.workers]

    def cpu(self) -> tuple[float, float]:
        """CPU seconds so far of the scheduler and the workers themselves, and of the
        engine processes the workers started and reaped."""
        own = reaped = 0.0
        for member in self.processes:
            times = cpu_times(member.process.pid)
            if times is not None:
                own += times[0]
                reaped += times[1]
        return own, reaped

    def check_alive(self) -> None:
        for member in self.processes:
            if member.process.poll() is not None:
                raise RuntimeError(
                    f"the Dask {member.name} exited ({member.process.returncode}): "
                    f"{log_tail(member.log)}"
                )


def spawn(name: str, command: list[str], log: Path) -> ClusterProcess:
    """A cluster process in a process group of its own (its engines in it too), its
    output to ``log``, this checkout on its path."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=cluster_env(),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            process_group=0,
        )
    return ClusterProcess(name, command, process, log)


def stop_all(members: list[ClusterProcess]) -> None:
    """SIGTERM to every process group at once, then SIGKILL to those still there after
    the grace: the workers (with their engines) and the scheduler all end."""
    running = [m for m in members if m.process.poll() is None]
    for member in running:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(member.process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    for member in running:
        with contextlib.suppress(subprocess.TimeoutExpired):
            member.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        # Whatever is left of the group (an engine whose worker is gone) ends too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(member.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            member.process.wait(timeout=10)


def wait_for_workers(cluster: Cluster, count: int) -> None:
    """Until the scheduler knows ``count`` workers, LIMIT seconds at most."""
    from distributed import Client

    deadline = time.monotonic() + LIMIT
    with Client(cluster.address, timeout=LIMIT, set_as_default=False) as client:
        while True:
            cluster.check_alive()
            try:
                client.wait_for_workers(count, timeout=1.0)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{count} Dask workers did not register within {LIMIT:g}s"
                    ) from None


@contextlib.contextmanager
def dask_cluster(workers: int, where: Placement, scratch: Path) -> Iterator[Cluster]:
    """A scheduler on 127.0.0.1 and ``workers`` workers on 127.0.0.2, 127.0.0.3, ...,
    all registered, pinned like the client; every one of them stopped when the block
    ends, however it ends."""
    cluster = Cluster()
    try:
        scheduler_file = scratch / "scheduler.json"
        command = [*where.client, sys.executable, "-m", "dask", "scheduler"]
        command += ["--host", LOOPBACK, "--port", "0", "--no-dashboard"]
        # --no-dashboard alone still opens an HTTP listener on every interface.
        command += ["--dashboard-address", f"{LOOPBACK}:0"]
        command += ["--scheduler-file", str(scheduler_file)]
        cluster.scheduler = spawn("scheduler", command, scratch / "scheduler.log")
        deadline = time.monotonic() + LIMIT
        while not cluster.address:
            cluster.check_alive()
            with contextlib.suppress(OSError, ValueError, KeyError):
                cluster.address = str(json.loads(scheduler_file.read_text())["address"])
            if not cluster.address:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no scheduler file within {LIMIT:g}s")
                time.sleep(0.05)
        for number in range(workers):
            host = f"127.0.0.{number + 2}"
            command = [*where.client, sys.executable, "-m", "dask", "worker", cluster.address]
            command += ["--host", host, "--nthreads", "1", "--no-nanny", "--no-dashboard"]
            command += ["--dashboard-address", f"{host}:0", "--death-timeout", "30"]
            command += ["--local-directory", str(scratch / f"worker-{host}")]
            log = scratch / f"worker-{host}.log"
            cluster.workers.append(spawn(f"worker on {host}", command, log))
        wait_for_workers(cluster, workers)
        yield cluster
    finally:
        stop_all(cluster.processes[::-1])  # the workers first


# Runs ------------------------------------------------------------------------------------


@dataclass
class Settings:
    rate: float
    duration: float
    concurrency: int
    workers: int
    repeats: int
    port: int
    scenario: Path
    scratch: Path
    where: Placement
    ignore_limits: bool  # more engines than the client's cores: said on both sides


@dataclass
class Run:
    load: str
    side: str
    repeat: int
    command: list[str]
    returncode: int | None = None
    state: str | None = None
    elapsed: float | None = None
    scheduled: int | None = None
    started: int | None = None
    dropped: int | None = None
    accepted: int | None = None
    throughput: float | None = None  # messages accepted per second of the run
    lag_p50: float | None = None  # seconds
    lag_p99: float | None = None
    wall: float | None = None
    client_cpu: float | None = None  # smtpbench, its engines; with the cluster, all of it
    driver_cpu: float | None = None  # the smtpbench process (locally with its engines)
    dask_cpu: float | None = None  # scheduler and workers themselves, engines left out
    error: str | None = None


def load_args(settings: Settings, load: str) -> list[str]:
    if load == "open":
        return ["--rate", f"{settings.rate:g}", "--duration", f"{settings.duration:g}s"]
    return ["--concurrency", str(settings.concurrency), "--duration", f"{settings.duration:g}s"]


def run_command(settings: Settings, load: str, side: str, out: Path, address: str) -> list[str]:
    command = [*settings.where.client, sys.executable, "-m", "smtpbench", "run"]
    command += [str(settings.scenario), "--target", f"{LOOPBACK}:{settings.port}"]
    command += [*load_args(settings, load), "--headless", "--workers", str(settings.workers)]
    if side == "cluster":
        command += ["--cluster", address]
    if settings.ignore_limits:
        command.append("--ignore-limits")
    return [*command, "--out", str(out)]


def measure(settings: Settings, cluster: Cluster, load: str, side: str, repeat: int) -> Run:
    out = settings.scratch / f"{load}-{side}-{repeat}"
    shutil.rmtree(out, ignore_errors=True)
    run = Run(load, side, repeat, run_command(settings, load, side, out, cluster.address))
    cpu_before, dask_before = children_cpu(), cluster.cpu()
    start = time.perf_counter()
    try:
        returncode, stdout, stderr = run_child(run.command, timeout=settings.duration + 120)
    except subprocess.TimeoutExpired:
        run.error = f"timed out after {settings.duration + 120:g}s"
        return run
    run.wall = time.perf_counter() - start
    own, reaped = cluster.cpu()
    run.driver_cpu = run.client_cpu = children_cpu() - cpu_before
    run.dask_cpu = own - dask_before[0]
    if side == "cluster":  # the engines ran under the workers, not under smtpbench
        run.client_cpu += run.dask_cpu + reaped - dask_before[1]
    run.returncode = returncode
    found = sorted(out.glob("*/summary.json"))
    if not found:
        said = (stderr.strip() or stdout.strip()).splitlines()
        run.error = f"exit {returncode}: {said[-1][:200] if said else 'no results'}"
        return run
    summary = json.loads(found[-1].read_text())
    shutil.rmtree(out, ignore_errors=True)
    counters, lag = summary["counters"], summary["latency"].get("start lag", {})
    run.state, run.elapsed = summary["state"], float(summary["elapsed"])
    run.scheduled, run.started = int(counters["scheduled"]), int(counters["started"])
    run.dropped, run.accepted = int(counters["dropped"]), int(counters["messages_accepted"])
    run.throughput = float(summary["rates"]["messages_accepted_per_second"])
    run.lag_p50 = float(lag["p50"]) if "p50" in lag else None
    run.lag_p99 = float(lag["p99"]) if "p99" in lag else None
    if returncode != 0 or run.state != "done":
        run.error = f"exit {returncode}, state {run.state}"
    elif not run.accepted:
        run.error = "no message accepted"
    return run


# The report -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Places:
    """What the commands are written with instead of this run's folders and ports."""

    scratch: Path
    port: int
    address: str


def display(command: list[str], places: Places) -> str:
    """A command as it can be typed again: ``python``, paths relative to the checkout,
    the scratch folder, the sink's port and the scheduler's address as placeholders."""
    # The sink as its name: where Postfix keeps it differs between systems.
    words = [Path(word).name if word.endswith("/smtp-sink") else word for word in command]
    text = shlex.join(words)
    replacements = [(sys.executable, "python"), (str(places.scratch), "$SCRATCH")]
    if places.address:
        replacements.append((places.address, "$SCHEDULER"))
    replacements.append((str(ROOT) + os.sep, ""))
    for old, new in replacements:
        text = text.replace(old, new)
    return re.sub(rf"(?<=:){places.port}(?!\d)", "$PORT", text)


def describe(settings: Settings) -> str:
    where = settings.where
    if not where.client:
        return where.description
    sink, client = where.sink[-1], where.client[-1]
    limits = ""
    if settings.ignore_limits:
        limits = ", and the runs say `--ignore-limits` as they have more engines than that"
    return (
        f"the sink pinned to CPU {sink} and everything on the client's side to CPU {client} "
        "with `taskset -c`: smtpbench and its engines, and with the cluster also the "
        "scheduler, the workers and the engines they start; so both sides have the same "
        f"one core{limits}; {len(os.sched_getaffinity(0))} CPUs available"
    )


def shown(title: str, command: list[str], places: Places) -> str:
    """A setup command as written down: a worker with this checkout on its path."""
    return ("PYTHONPATH=. " if "worker" in title else "") + display(command, places)


def median(runs: list[Run], load: str, side: str, name: str) -> float | None:
    values = [
        getattr(r, name)
        for r in runs
        if r.load == load and r.side == side and r.error is None and getattr(r, name) is not None
    ]
    return statistics.median(values) if values else None


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "msg/s":
        return f"{value:,.1f}"
    return f"{value * 1000:,.3f}"  # seconds, shown in ms


def judge(
    runs: list[Run], load_titles: dict[str, str]
) -> tuple[list[str], list[dict[str, object]]]:
    """The table rows (Markdown) and their JSON: per load, throughput and start lag p99."""
    lines: list[str] = []
    data: list[dict[str, object]] = []
    for load in LOADS:
        for name in ("throughput", "lag_p99"):
            local, cluster = median(runs, load, "local", name), median(runs, load, "cluster", name)
            entry: dict[str, object] = {"load": load, "figure": name, "local": local}
            entry["cluster"] = cluster
            criterion = "-"
            holds: bool | None = None
            if name == "throughput":
                label = f"{load}: throughput (msg/s)"
                ratio = cluster / local if local and cluster is not None else None
                compared = f"{ratio:.3f}x" if ratio is not None else "-"
                entry["ratio"] = ratio
                criterion = f"within {THROUGHPUT_WITHIN:.0%}"
                if ratio is not None:
                    holds = abs(ratio - 1) <= THROUGHPUT_WITHIN
            else:
                label = f"{load}: start lag p99 (ms)"
                difference = cluster - local if local is not None and cluster is not None else None
                compared = f"{difference * 1000:+,.3f} ms" if difference is not None else "-"
                entry["difference"] = difference
                if load == "open":
                    criterion = f"within {LAG_WITHIN * 1000:g} ms"
                    if difference is not None:
                        holds = abs(difference) <= LAG_WITHIN
                else:
                    criterion = "none (reported)"
            unit = "msg/s" if name == "throughput" else "s"
            verdict = "-" if criterion.startswith("none") else "not measured"
            if holds is not None:
                verdict = "**yes**" if holds else "**no**"
            entry.update(criterion=criterion, holds=holds)
            lines.append(
                f"| {label} | {load_titles[load]} | {fmt(local, unit)} | {fmt(cluster, unit)} "
                f"| {compared} | {criterion} | {verdict} |"
            )
            data.append(entry)
    return lines, data


def render(
    settings: Settings,
    runs: list[Run],
    places: Places,
    setup_commands: list[tuple[str, list[str]]],
    info: dict[str, str],
    started: str,
    invocation: str,
    load_after: str,
) -> tuple[str, dict[str, object]]:
    load_titles = {
        "open": f"open model, {settings.rate:,g} sessions/s for {settings.duration:g} s",
        "closed": f"closed model, {settings.concurrency} in flight for {settings.duration:g} s",
    }
    rows, table = judge(runs, load_titles)
    judged = [entry for entry in table if entry["holds"] is not None]
    failed = [r for r in runs if r.error is not None]
    if failed or len(judged) < 3:
        overall = "cannot be judged: some runs failed (see below)"
    elif all(entry["holds"] for entry in judged):
        overall = "**hold**"
    else:
        names = {"throughput": "throughput", "lag_p99": "start lag p99"}
        missed = [f"{e['load']} model {names[str(e['figure'])]}" for e in judged if not e["holds"]]
        overall = f"**do not hold** ({', '.join(missed)})"
    n = settings.workers
    lines = [
        "# One run on a loopback Dask cluster against the same run on local workers",
        "",
        f"Run {started}. {n} engines on each side: `--workers {n}` (local engine processes) "
        f"and `--cluster $SCHEDULER --workers {n}` (one engine on each of {n} Dask workers "
        "on this machine). Against Postfix `smtp-sink` on 127.0.0.1; one 1 KiB message to "
        "one recipient per session, a new connection each. Medians of "
        f"{settings.repeats} run{'s' if settings.repeats != 1 else ''} per side and load, "
        "the sides alternating (the first one rotating each round). "
        f"Command: `{invocation}`.",
        "",
        f"Machine: `nproc` {info['nproc']}, {info['cpu']}; Linux {info['kernel']}; "
        f"Python {info['python']}; Postfix {info['postfix']}; distributed "
        f"{info['distributed']}; load average at start {info['load average at start']}, "
        f"at the end {load_after}. Other work shared this machine during the runs: the "
        "figures can be noisy.",
        "",
        f"CPU placement: {describe(settings)}.",
        "",
        f"The criteria (cluster against local): throughput within "
        f"{THROUGHPUT_WITHIN:.0%} and, in the open model, start lag p99 within "
        f"{LAG_WITHIN * 1000:g} ms. They {overall}.",
        "",
        "## Medians",
        "",
        "| figure | load | local (median) | cluster (median) | cluster vs local "
        "| criterion | holds |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "## Every run",
        "",
        "| # | load | side | msg/s | start lag p50 (ms) | start lag p99 (ms) "
        "| started / scheduled | dropped | client CPU s | Dask's own CPU s | state |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for number, run in enumerate(runs, 1):
        scheduled = f"{run.started:,} / {run.scheduled:,}" if run.started is not None else "-"
        if run.load == "closed" and run.started is not None:
            scheduled = f"{run.started:,} / -"  # the closed model has no schedule
        dropped = f"{run.dropped:,}" if run.dropped is not None else "-"
        client = f"{run.client_cpu:.2f}" if run.client_cpu is not None else "-"
        dask = f"{run.dask_cpu:.2f}" if run.dask_cpu is not None else "-"
        state = cell(run.error) if run.error else (run.state or "-")
        lines.append(
            f"| {number} | {run.load} | {run.side} | {fmt(run.throughput, 'msg/s')} "
            f"| {fmt(run.lag_p50, 's')} | {fmt(run.lag_p99, 's')} | {scheduled} | {dropped} "
            f"| {client} | {dask} | {state} |"
        )
    lines += [
        "",
        "## How to read it",
        "",
        "- **msg/s**: `rates.messages_accepted_per_second` of the run's `summary.json`, "
        "messages accepted over the run's elapsed seconds (the run, not the process: "
        "start-up and the cluster's placement of the engines are not in it). In the open "
        "model it is at most the rate asked for; below it, the client fell behind.",
        '- **start lag**: `latency["start lag"]` of `summary.json`, each session\'s actual '
        "start minus its intended start in the schedule, over every engine. In the closed "
        "model a session is due when a slot frees, so its lag is reported but judged by "
        "no criterion.",
        "- **cluster vs local**: the ratio cluster/local of the throughput medians; the "
        "difference cluster minus local of the start lag p99 medians.",
        "- **client CPU s**: user plus system CPU of everything on the client's side during "
        "the run: locally smtpbench and its engine processes; with the cluster, smtpbench, "
        "the scheduler, the workers and the engines they started (from `/proc`). **Dask's "
        "own CPU s**: the scheduler and the workers themselves, engines left out (for "
        "local runs, what the idle cluster took meanwhile).",
        "- The cluster is started once, before the first run, and stays up (idle during the "
        "local runs). Each cluster run places its engines anew: one engine process on each "
        "worker, started for the run and ended with it.",
        "- Every process on the client's side, on both sides, runs in the one session of "
        "the script (each in a process group of its own, to be stopped by). With the "
        "kernel's autogroup scheduling a session is what gets a fair share of a busy core: "
        "a session for each process would give the cluster's four (smtpbench, scheduler, "
        "two workers) more of the client's core than the one of local workers whenever "
        "other work wants it too, and the cluster would look faster than it is.",
        "",
        "## Commands",
        "",
        "`$SCRATCH` is a temporary folder, `$PORT` the sink's port (this time "
        f"{places.port}), `$SCHEDULER` the scheduler's address (this time "
        f"`{places.address}`). The workers run with this checkout on `PYTHONPATH`.",
        "",
        "```sh",
    ]
    for title, command in setup_commands:
        lines += [f"# {title}", shown(title, command, places)]
    for number, run in enumerate(runs, 1):
        lines += [f"# run {number}: {run.load}, {run.side}", display(run.command, places)]
    lines += ["```", "", "The scenario (`$SCRATCH/arrivals.toml`):", "", "```toml"]
    lines += [SCENARIO.rstrip(), "```", ""]
    data: dict[str, object] = {
        "started": started,
        "command": invocation,
        "machine": {**info, "load average at the end": load_after},
        "placement": describe(settings),
        "rate": settings.rate,
        "duration": settings.duration,
        "concurrency": settings.concurrency,
        "workers": settings.workers,
        "repeats": settings.repeats,
        "criteria": {"throughput_within": THROUGHPUT_WITHIN, "lag_p99_within": LAG_WITHIN},
        "criteria_hold": None if failed or len(judged) < 3 else all(e["holds"] for e in judged),
        "table": table,
        "setup_commands": [
            {"what": title, "command": shown(title, command, places)}
            for title, command in setup_commands
        ],
        "runs": [{**asdict(run), "command": display(run.command, places)} for run in runs],
    }
    return "\n".join(lines), data


# Main ------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="runs of each load on each side (3)")
    parser.add_argument("--rate", type=float, help="open model: sessions per second (1000)")
    parser.add_argument("--duration", type=float, help="seconds of each run (10)")
    parser.add_argument("--concurrency", type=int, default=20, help="closed model: in flight")
    parser.add_argument("--workers", type=int, default=2, help="engines on each side (2)")
    parser.add_argument("--quick", action="store_true", help="a tiny load, to see it work")
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args(argv)
    quick = {"repeats": 1, "rate": 200.0, "duration": 2.0}
    full = {"repeats": 3, "rate": 1000.0, "duration": 10.0}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.repeats, args.concurrency, args.workers) < 1:
        parser.error("--repeats, --concurrency and --workers must be >= 1")
    if args.workers > 253:
        parser.error("--workers: at most 253 (one loopback address each, 127.0.0.2 up)")
    if not (args.rate > 0 and args.duration > 0):
        parser.error("--rate and --duration must be above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    sink_binary = postfix_binary("smtp-sink")
    if sink_binary is None:
        print("needs Postfix's smtp-sink (Debian package postfix)", file=sys.stderr)
        return 2
    if importlib.util.find_spec("distributed") is None:
        print("needs distributed (pip install 'smtp-loadbench[dask]')", file=sys.stderr)
        return 2
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    invocation = shlex.join(["python", "bench/cluster_vs_local.py", *(argv or sys.argv[1:])])
    info = machine()
    info["distributed"] = importlib.metadata.version("distributed")
    where = placement(not args.no_pin)
    client_cores = 1 if where.client else len(os.sched_getaffinity(0))
    runs: list[Run] = []
    setup_commands: list[tuple[str, list[str]]] = []
    with tempfile.TemporaryDirectory(prefix="cluster-vs-local-") as tmp:
        scratch = Path(tmp)
        scenario = scratch / "arrivals.toml"
        scenario.write_text(SCENARIO)
        places = Places(scratch, 0, "")
        try:
            with (
                postfix_sink(sink_binary, where) as sink,
                dask_cluster(args.workers, where, scratch) as cluster,
            ):
                places = Places(scratch, sink.port, cluster.address)
                setup_commands.append(("the sink: Postfix smtp-sink", sink.command))
                for member in cluster.processes:
                    setup_commands.append((f"the Dask {member.name}", member.command))
                settings = Settings(
                    rate=args.rate,
                    duration=args.duration,
                    concurrency=args.concurrency,
                    workers=args.workers,
                    repeats=args.repeats,
                    port=sink.port,
                    scenario=scenario,
                    scratch=scratch,
                    where=where,
                    ignore_limits=args.workers > client_cores,
                )
                for repeat in range(args.repeats):
                    for load in LOADS:
                        sides = SIDES if repeat % 2 == 0 else SIDES[::-1]
                        for side in sides:
                            cluster.check_alive()
                            run = measure(settings, cluster, load, side, repeat)
                            runs.append(run)
                            state = f"  ({run.error})" if run.error else ""
                            lag = fmt(run.lag_p99, "s")
                            print(
                                f"[{repeat + 1}/{args.repeats}] {load:<6} {side:<7} "
                                f"{fmt(run.throughput, 'msg/s'):>9} msg/s  "
                                f"start lag p99 {lag} ms{state}",
                                flush=True,
                            )
        except (KeyboardInterrupt, Stopped):
            print("interrupted: every process started here was stopped", file=sys.stderr)
            return 130
        except RuntimeError as error:
            print(f"cannot start: {error}", file=sys.stderr)
            return 2
        load_after = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        text, data = render(
            settings, runs, places, setup_commands, info, started, invocation, load_after
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cluster_vs_local.md").write_text(text)
    (args.out / "cluster_vs_local.json").write_text(json.dumps(data, indent=2) + "\n")
    print()
    print(text)
    return 1 if any(run.error for run in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
