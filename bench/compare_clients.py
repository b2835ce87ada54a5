"""How fast is smtpbench against other SMTP clients? Measures, in one run on loopback:
Postfix's ``smtp-source`` (C), a ``smtplib`` thread pool (``bench/smtplib_pool.py``),
the unrelated PyPI package named ``smtpbench`` (in a virtualenv of its own) and
smtpbench itself (``--workers 1``), with and without PIPELINING. Every client keeps 20
sessions in flight with 1 KiB messages, in three modes: a new connection per message and
2,000 messages per connection, both against Postfix's ``smtp-sink``; and STARTTLS on a
new connection per message, against smtpbench's own sink (``smtpbench sink``, with a
``trustme`` certificate), since smtp-sink has no STARTTLS. A tool that cannot do a mode
says so in its cell. In a compiled build (``SMTPBENCH_COMPILE=1``, see ``setup.py``)
smtpbench's sources are measured beside it too ("smtpbench, interpreted").

    python bench/compare_clients.py --repeats 3 --messages 200000
    python bench/compare_clients.py --quick --skip pypi-smtpbench --out /tmp/bench

The tools alternate (round-robin, the starting tool rotating each round) and each is
measured ``--repeats`` times; the table gives medians of messages per second from wall
time (process start included, for every tool alike), the ratio to ``smtp-source`` in the
same mode (to the smtplib pool with STARTTLS, which smtp-source cannot do), and the
client's CPU seconds per message (the child process's resource usage); then whether the
engine's targets are met, from those medians. On two or more cores the sinks are pinned
to one core and every client to another with ``taskset``. Writes ``compare_clients.md``
(tables, targets, machine, every command) and ``compare_clients.json`` (every
measurement) to ``--out`` (default results/benchmarks). Loopback only; needs Postfix's
smtp-sink and smtp-source (Debian package postfix), and ``trustme`` for STARTTLS.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from smtpbench.build_info import INTERPRETED_VARIABLE, engine_build

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
SINK_BACKLOG = 4096
MESSAGE_SIZE = 1024
SENDER = "sender@smtpbench.test"
RECIPIENT = "user@smtpbench.test"
POSTFIX_FOLDERS = ("/usr/sbin", "/usr/lib/postfix/sbin")

TOOLS = (
    "smtp-source",
    "smtplib-pool",
    "pypi-smtpbench",
    "smtpbench",
    "smtpbench-pipelining",
    "smtpbench-interpreted",
)
LABELS = {
    "smtp-source": "Postfix smtp-source (C)",
    "smtplib-pool": "smtplib thread pool",
    "pypi-smtpbench": "PyPI smtpbench (threads)",
    "smtpbench": "smtpbench",
    "smtpbench-pipelining": "smtpbench, PIPELINING",
    # A compiled build's sources (SMTPBENCH_INTERPRETED=1): measured only in such a build.
    "smtpbench-interpreted": "smtpbench, interpreted",
}
INTERPRETED_NOTE = (
    ' (its sources measured beside it as "smtpbench, interpreted": '
    f"`{INTERPRETED_VARIABLE}=1`, the same code without the compiled modules)"
)
INTERPRETED_ALREADY = "not measured: this build is not compiled, so smtpbench above is this"
MODES = ("new", "reuse", "starttls")
# What the ratio column divides by: smtp-source cannot do STARTTLS, so the smtplib pool.
REFERENCE = {"new": "smtp-source", "reuse": "smtp-source", "starttls": "smtplib-pool"}
# The engine's targets: (tool, mode, reference tool, at least this times its msg/s).
TARGETS = (
    ("smtpbench", "reuse", "smtp-source", 0.9),
    ("smtpbench", "new", "smtp-source", 0.9),
    ("smtpbench-pipelining", "reuse", "smtp-source", 1.3),
    ("smtpbench", "new", "smtplib-pool", 2.5),
    ("smtpbench", "reuse", "smtplib-pool", 2.5),
)


# Child processes ----------------------------------------------------------------------


class Stopped(Exception):
    """SIGTERM arrived: unwind, stopping every child on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise Stopped(f"signal {signum}")


def stop_group(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Stops a child started in a session of its own, and whatever it started, while the
    child is not yet reaped (so its process group is certainly the one we made)."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Finished:
    command: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_child(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> Finished:
    """Runs one command to its end (output to files, so no pipe can fill up); on a
    timeout, Ctrl-C or SIGTERM its whole process group is stopped."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=timeout)
        except BaseException:
            stop_group(process)
            raise
        out.seek(0)
        err.seek(0)
        return Finished(
            command,
            returncode,
            out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
        )


def children_cpu() -> float:
    """User plus system CPU seconds of every child reaped so far (and of their reaped
    children): differences around a measurement give the client's CPU."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int | None) -> float | None:
    """User plus system CPU seconds of a running process (the sink) from /proc, or None."""
    if pid is None:
        return None
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (name)": state is fields[0]
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


# The sink and CPU placement --------------------------------------------------------------


def postfix_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in POSTFIX_FOLDERS:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Placement:
    sink: list[str]
    client: list[str]
    description: str


def placement(pin: bool) -> Placement:
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if not pin:
        return Placement([], [], "not pinned (--no-pin): the scheduler places sink and clients")
    if taskset is None:
        return Placement([], [], "not pinned: taskset (util-linux) is not installed")
    if len(cpus) < 2:
        return Placement([], [], "not pinned: only one CPU is available")
    sink_cpu, client_cpu = cpus[0], cpus[1]
    return Placement(
        ["taskset", "-c", str(sink_cpu)],
        ["taskset", "-c", str(client_cpu)],
        f"the sink (smtp-sink, and smtpbench's sink for STARTTLS) pinned to CPU {sink_cpu} "
        f"and every client (with any process it starts) to CPU {client_cpu} with "
        f"`taskset -c`, the same for every tool; {len(cpus)} CPUs available",
    )


@dataclass(frozen=True)
class Sink:
    port: int
    command: list[str]
    pid: int  # taskset execs the sink: the same process


@contextlib.contextmanager
def listening(name: str, command: list[str], port: int) -> Iterator[Sink]:
    """Runs a sink until the block ends, once it takes connections on ``port``."""
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 20
            while True:
                if process.poll() is not None:
                    err.seek(0)
                    said = err.read().decode("utf-8", "replace").strip()
                    raise RuntimeError(f"{name} exited ({process.returncode}): {said}")
                try:
                    with socket.create_connection((LOOPBACK, port), timeout=0.5):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{name} is not listening on port {port}") from None
                    time.sleep(0.05)
            yield Sink(port, command, process.pid)
        finally:
            stop_group(process)


@contextlib.contextmanager
def postfix_sink(binary: str, where: Placement) -> Iterator[Sink]:
    """smtp-sink on a free loopback port: no -d, so nothing is written per message."""
    port = free_port()
    command = [*where.sink, binary]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # as root it insists on dropping to a user
    command += [f"{LOOPBACK}:{port}", str(SINK_BACKLOG)]
    with listening("smtp-sink", command, port) as sink:
        yield sink


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path


def make_certificates(folder: Path) -> Certificates:
    """A throwaway CA and a server certificate for 127.0.0.1 (and localhost) from
    ``trustme``, written to ``folder``; RuntimeError when trustme is not installed."""
    try:
        import trustme
    except ImportError:
        raise RuntimeError(
            "STARTTLS needs trustme (pip install trustme), or --skip starttls"
        ) from None
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert(LOOPBACK, "localhost")
    files = Certificates(folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    ca.cert_pem.write_to_path(str(files.ca))
    server.private_key_pem.write_to_path(str(files.key))
    for index, blob in enumerate(server.cert_chain_pems):
        blob.write_to_path(str(files.cert), append=index > 0)
    return files


@contextlib.contextmanager
def tls_sink(files: Certificates, where: Placement) -> Iterator[Sink]:
    """smtpbench's own sink offering STARTTLS, on a free loopback port, pinned like
    smtp-sink: it keeps nothing but counts. No AUTH offered: no client here asks."""
    port = free_port()
    command = [*where.sink, sys.executable, "-m", "smtpbench", "sink"]
    command += ["--listen", f"{LOOPBACK}:{port}", "--no-auth"]
    command += ["--tls-cert", str(files.cert), "--tls-key", str(files.key)]
    with listening("smtpbench sink", command, port) as sink:
        yield sink


# The PyPI package named smtpbench ---------------------------------------------------------


@dataclass
class PyPITool:
    venv: Path | None
    version: str | None
    problem: str | None
    padding: Path | None = None
    message_bytes: int | None = None


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "smtpbench-bench"


def clean_env() -> dict[str, str]:
    """The environment for the PyPI tool: nothing that could put our package on its path."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"):
        env.pop(name, None)
    return env


def install_pypi_smtpbench(cache: Path) -> PyPITool:
    """A virtualenv of its own under ``cache`` with ``pip install smtpbench``; reused when
    it is already there. Failing to install (no network) is a row that says so."""
    tag = f"py{sys.version_info.major}{sys.version_info.minor}"
    venv = cache / f"pypi-smtpbench-{tag}"
    python = venv / "bin" / "python"
    tool = venv / "bin" / "smtpbench"
    env = clean_env()
    if not tool.exists():
        cache.mkdir(parents=True, exist_ok=True)
        steps = [
            [sys.executable, "-m", "venv", "--clear", str(venv)],
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"],
        ]
        steps[1].append("smtpbench")
        for step in steps:
            try:
                done = run_child(step, cache, env, timeout=600)
            except subprocess.TimeoutExpired:
                shutil.rmtree(venv, ignore_errors=True)
                return PyPITool(None, None, f"not installed: `{shlex.join(step[2:])}` timed out")
            if done.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                said = last_line(done.stderr) or last_line(done.stdout)
                return PyPITool(None, None, f"not installed: {said}")
    probe = [str(python), "-c", "import importlib.metadata as m; print(m.version('smtpbench'))"]
    done = run_child(probe, cache, env, timeout=60)
    if done.returncode != 0 or not tool.exists():
        return PyPITool(None, None, f"installed but not usable: {last_line(done.stderr)}")
    return PyPITool(venv, done.stdout.strip(), None)


def padding_text(needed: int) -> str:
    """Text whose prefix to the PyPI tool's body adds ``needed`` bytes on the wire: lines
    of 76 characters (each 78 bytes with CRLF), plus the blank line it adds after it."""
    budget = needed - 4
    if budget <= 0:
        return ""
    parts = []
    while budget > 78:
        parts.append("x" * 76)
        budget -= 78
    parts.append("x" * budget)
    return "\n".join(parts)


def pypi_wire_size(tool: PyPITool, scratch: Path, padding: Path | None) -> int:
    """Bytes of the tool's first message as sent (LF becomes CRLF), from its offline mode."""
    assert tool.venv is not None
    out = scratch / "eml"
    shutil.rmtree(out, ignore_errors=True)
    command = [str(tool.venv / "bin" / "smtpbench"), f"recipient={RECIPIENT}"]
    command += [f"from_address={SENDER}", "threads=1", "messages=1", f"eml_out_dir={out}"]
    command += [f"logfile_output={scratch / 'eml-logs'}"]
    if padding is not None:
        command.append(f"body_text_dir={padding}")
    done = run_child(command, scratch, clean_env(), timeout=120)
    files = list(out.glob("*.eml"))
    if done.returncode != 0 or len(files) != 1:
        raise RuntimeError(f"offline run failed: {last_line(done.stderr or done.stdout)}")
    raw = files[0].read_bytes()
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(scratch / "eml-logs", ignore_errors=True)
    return len(raw) + raw.count(b"\n") - raw.count(b"\r\n")


def size_pypi_messages(tool: PyPITool, scratch: Path) -> None:
    """Its messages are a short MIME text; a body prefix (``body_text_dir=``) brings them
    to about 1 KiB. Measured with its offline mode, before and after."""
    if tool.venv is None:
        return
    try:
        bare = pypi_wire_size(tool, scratch, None)
        text = padding_text(MESSAGE_SIZE - bare)
        if text:
            folder = scratch / "pypi-body"
            folder.mkdir(exist_ok=True)
            (folder / "padding.txt").write_text(text)
            tool.padding = folder
        tool.message_bytes = pypi_wire_size(tool, scratch, tool.padding)
    except (RuntimeError, subprocess.TimeoutExpired) as error:
        tool.problem = f"could not size its messages: {error}"


# Measurements --------------------------------------------------------------------------


@dataclass
class Outcome:
    accepted: int
    own_rate: float | None = None
    error: str | None = None


@dataclass
class Plan:
    commands: list[list[str]]
    read: Callable[[list[Finished], Path], Outcome]
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    note: str = ""


@dataclass
class Measurement:
    tool: str
    mode: str
    repeat: int
    messages: int
    accepted: int
    wall: float
    cpu: float
    rate: float
    cpu_per_message: float
    sink_cpu: float | None  # CPU seconds of the sink during the measurement
    own_rate: float | None
    error: str | None


@dataclass
class Setup:
    port: int
    concurrency: int
    messages: int
    per_connection: int
    where: Placement
    scratch: Path
    smtp_source: str
    pypi: PyPITool | None
    workers: int  # smtpbench --workers
    sink_pid: int | None = None
    tls_port: int | None = None  # smtpbench's sink with STARTTLS, for the starttls mode
    tls_sink_pid: int | None = None
    certificates: Certificates | None = None

    def per(self, mode: str) -> int:
        return self.per_connection if mode == "reuse" else 1

    def target(self, mode: str) -> int:
        """The port of the sink a mode sends to."""
        if mode == "starttls":
            assert self.tls_port is not None
            return self.tls_port
        return self.port

    def folder(self, tool: str, mode: str) -> Path:
        return self.scratch / f"{tool}-{mode}"


def read_smtp_source(batch: int) -> Callable[[list[Finished], Path], Outcome]:
    def read(runs: list[Finished], folder: Path) -> Outcome:
        good = [run for run in runs if run.returncode == 0]
        bad = [run for run in runs if run.returncode != 0]
        error = None
        if bad:
            error = f"exit {bad[0].returncode}: {last_line(bad[0].stderr)}"
        return Outcome(len(good) * batch, None, error)

    return read


def plan_smtp_source(setup: Setup, mode: str) -> Plan | str:
    if mode == "starttls":
        return "cannot: no STARTTLS (it speaks plain SMTP only)"
    base = [*setup.where.client, setup.smtp_source, "-s", str(setup.concurrency)]
    tail = ["-l", str(MESSAGE_SIZE), "-f", SENDER, "-t", RECIPIENT, f"{LOOPBACK}:{setup.port}"]
    if mode == "new":
        command = [*base, "-m", str(setup.messages), *tail]
        return Plan([command], read_smtp_source(setup.messages))
    # smtp-source has no "messages per connection": with -d each of the -s sessions keeps
    # its connection for as long as the -m total lasts. So -s 20 -d -m 20*N makes 20
    # connections of about N messages, and the measurement runs that back to back.
    batch = min(setup.concurrency * setup.per_connection, setup.messages)
    command = [*base, "-m", str(batch), "-d", *tail]
    runs = setup.messages // batch
    note = f"{runs} run{'s' if runs != 1 else ''} of this command back to back"
    return Plan([command] * runs, read_smtp_source(batch), note=note)


def plan_smtplib(setup: Setup, mode: str) -> Plan:
    command = [*setup.where.client, sys.executable, str(ROOT / "bench" / "smtplib_pool.py")]
    command += ["--target", f"{LOOPBACK}:{setup.target(mode)}"]
    command += ["--threads", str(setup.concurrency), "--messages", str(setup.messages)]
    command += ["--per-connection", str(setup.per(mode)), "--size", str(MESSAGE_SIZE)]
    if mode == "starttls":
        assert setup.certificates is not None
        command += ["--starttls", "--ca-file", str(setup.certificates.ca)]

    def read(runs: list[Finished], folder: Path) -> Outcome:
        run = runs[0]
        try:
            figures = json.loads(run.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return Outcome(0, None, f"exit {run.returncode}: {last_line(run.stderr)}")
        accepted = int(figures["accepted"])
        error = None
        if run.returncode != 0:
            error = f"exit {run.returncode}: {'; '.join(figures.get('errors', []))[:200]}"
        return Outcome(accepted, accepted / figures["elapsed"], error)

    return Plan([command], read)


def plan_pypi(setup: Setup, mode: str) -> Plan | str:
    tool = setup.pypi
    if tool is None:
        return "skipped (--skip)"
    if mode == "reuse":
        return "cannot: one smtplib connection per message, no option to reuse it"
    if tool.venv is None or tool.problem is not None:
        return tool.problem or "not installed"
    folder = setup.folder("pypi-smtpbench", mode)
    command = [*setup.where.client, str(tool.venv / "bin" / "smtpbench")]
    command += [f"recipient={RECIPIENT}", f"from_address={SENDER}", f"lb_host={LOOPBACK}"]
    command += [f"port={setup.target(mode)}", f"threads={setup.concurrency}"]
    # With STARTTLS it calls smtplib's starttls() without a context: no certificate check.
    tls = "starttls" if mode == "starttls" else "none"
    command += [f"messages={setup.messages // setup.concurrency}", f"tls_mode={tls}"]
    command += ["max_retries=0", "retry_delay=0", f"logfile_output={folder / 'logs'}"]
    if tool.padding is not None:
        command.append(f"body_text_dir={tool.padding}")

    def read(runs: list[Finished], folder: Path) -> Outcome:
        run = runs[0]
        summaries = sorted((folder / "logs").glob("summary_*.json"))
        if not summaries:
            return Outcome(0, None, f"exit {run.returncode}: {last_line(run.stdout)}")
        summary = json.loads(summaries[-1].read_text())
        sent, failed = int(summary["totals"]["sent"]), int(summary["totals"]["failed"])
        elapsed = float(summary["elapsed_seconds"])
        error = None
        if run.returncode != 0 or failed:
            error = f"exit {run.returncode}, {failed} failed"
        return Outcome(sent, sent / elapsed if elapsed > 0 else None, error)

    # Its working folder is the scratch folder: it looks for a .env from there up.
    return Plan([command], read, cwd=folder, env=clean_env())


SCENARIO = """\
# Written by bench/compare_clients.py: the closed model, {concurrency} sessions in flight.
name = "compare-clients"
seed = 1

[load]
concurrency = {concurrency}
sessions = {sessions}
grace = "60s"

[session]
messages = {per}
size = "1KiB"
pipelining = {pipelining}
{tls}"""

TLS = """
[tls]
mode = "starttls"
ca_file = {ca_file}
"""


def plan_smtpbench(setup: Setup, mode: str, pipelining: bool, interpreted: bool = False) -> Plan:
    tool = "smtpbench-pipelining" if pipelining else "smtpbench"
    if interpreted:
        tool = "smtpbench-interpreted"
    scenario = setup.scratch / f"{tool}-{mode}.toml"
    per = setup.per(mode)
    tls = ""
    if mode == "starttls":
        assert setup.certificates is not None
        tls = TLS.format(ca_file=json.dumps(str(setup.certificates.ca)))
    scenario.write_text(
        SCENARIO.format(
            concurrency=setup.concurrency,
            sessions=setup.messages // per,
            per=per,
            pipelining="true" if pipelining else "false",
            tls=tls,
        )
    )
    out = setup.folder(tool, mode) / "results"
    command = [*setup.where.client, sys.executable, "-m", "smtpbench", "run", str(scenario)]
    command += ["--target", f"{LOOPBACK}:{setup.target(mode)}", "--headless"]
    command += ["--out", str(out), "--workers", str(setup.workers)]

    def read(runs: list[Finished], folder: Path) -> Outcome:
        run = runs[0]
        found = sorted(out.glob("*/summary.json"))
        if not found:
            said = last_line(run.stderr) or last_line(run.stdout)
            return Outcome(0, None, f"exit {run.returncode}: {said}")
        summary = json.loads(found[-1].read_text())
        accepted = int(summary["counters"]["messages_accepted"])
        error = None
        if run.returncode != 0 or summary["state"] != "done":
            error = f"exit {run.returncode}, state {summary['state']}"
        return Outcome(accepted, float(summary["rates"]["messages_accepted_per_second"]), error)

    env = dict(os.environ)
    if interpreted:
        env[INTERPRETED_VARIABLE] = "1"
    return Plan([command], read, env=env)


def make_plan(setup: Setup, tool: str, mode: str) -> Plan | str:
    if tool == "smtp-source":
        return plan_smtp_source(setup, mode)
    if tool == "smtplib-pool":
        return plan_smtplib(setup, mode)
    if tool == "pypi-smtpbench":
        return plan_pypi(setup, mode)
    return plan_smtpbench(
        setup,
        mode,
        pipelining=tool == "smtpbench-pipelining",
        interpreted=tool == "smtpbench-interpreted",
    )


def measure(setup: Setup, tool: str, mode: str, plan: Plan, repeat: int) -> Measurement:
    folder = setup.folder(tool, mode)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if plan.cwd != ROOT:
        plan.cwd.mkdir(parents=True, exist_ok=True)
    # Generous: even 100 messages per second (a new TLS handshake each) finishes within it.
    timeout = 60 + setup.messages / 100
    runs: list[Finished] = []
    sink_pid = setup.tls_sink_pid if mode == "starttls" else setup.sink_pid
    sink_before = process_cpu(sink_pid)
    cpu_before = children_cpu()
    start = time.perf_counter()
    error = None
    try:
        for command in plan.commands:
            left = timeout - (time.perf_counter() - start)
            runs.append(run_child(command, plan.cwd, plan.env, max(left, 1.0)))
            if runs[-1].returncode != 0:
                break
    except subprocess.TimeoutExpired:
        error = f"timed out after {timeout:.0f}s"
    wall = time.perf_counter() - start
    cpu = children_cpu() - cpu_before
    sink_after = process_cpu(sink_pid)
    sink_cpu = None
    if sink_before is not None and sink_after is not None:
        sink_cpu = sink_after - sink_before
    outcome = plan.read(runs, folder) if runs else Outcome(0)
    accepted = outcome.accepted
    error = error or outcome.error
    if error is None and accepted < setup.messages:
        error = f"{accepted} of {setup.messages} messages accepted"
    shutil.rmtree(folder, ignore_errors=True)
    return Measurement(
        tool=tool,
        mode=mode,
        repeat=repeat,
        messages=setup.messages,
        accepted=accepted,
        wall=wall,
        cpu=cpu,
        rate=accepted / wall if wall > 0 else 0.0,
        cpu_per_message=cpu / accepted if accepted else math.nan,
        sink_cpu=sink_cpu,
        own_rate=outcome.own_rate,
        error=error,
    )


# The report ---------------------------------------------------------------------------


def machine() -> dict[str, str]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        cores = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        cores = str(os.cpu_count())
    postfix = "unknown"
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        postfix = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "postfix"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return {
        "nproc": cores.strip(),
        "cpu": model,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "postfix": postfix,
        "openssl": ssl.OPENSSL_VERSION,
        "load average at start": load,
    }


def display(command: list[str], setup: Setup) -> str:
    """A command as it can be typed again: the interpreter as ``python``, this checkout's
    files relative to it, and the scratch folders and ports as placeholders."""
    text = shlex.join(command)
    replacements = [(sys.executable, "python"), (str(setup.scratch), "$SCRATCH")]
    if setup.pypi is not None and setup.pypi.venv is not None:
        replacements.append((str(setup.pypi.venv), "$VENV"))
    replacements.append((str(ROOT) + os.sep, ""))
    for old, new in replacements:
        text = text.replace(old, new)
    ports = [(setup.port, "$PORT"), (setup.tls_port, "$TLS_PORT")]
    for port, name in ports:
        if port is not None:  # a whole number only: one port may begin the other's digits
            text = re.sub(rf"(?<=[:=]){port}(?!\d)", name, text)
    return text


def cell(text: str) -> str:
    """Text that cannot break a Markdown table row."""
    return " ".join(text.replace("|", "/").split())


def lower_first(text: str) -> str:
    """A title in the middle of a sentence: "a new ..." but still "STARTTLS, ..."."""
    first = text.split()[0].rstrip(",")
    return text if len(first) > 1 and first.isupper() else text[0].lower() + text[1:]


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


@dataclass
class Summary:
    rate: float  # medians of the successful measurements
    cpu_per_message: float
    own_rate: float | None
    sink_busy: float | None  # the sink's CPU over the wall time: 1.0 is one core
    runs: list[float]
    errors: list[str]


def summarise(results: list[Measurement], tool: str, mode: str) -> Summary | None:
    ok = [m for m in results if m.tool == tool and m.mode == mode and m.error is None]
    if not ok:
        return None
    own = [m.own_rate for m in ok if m.own_rate is not None]
    busy = [m.sink_cpu / m.wall for m in ok if m.sink_cpu is not None and m.wall > 0]
    return Summary(
        statistics.median(m.rate for m in ok),
        statistics.median(m.cpu_per_message for m in ok),
        statistics.median(own) if own else None,
        statistics.median(busy) if busy else None,
        [m.rate for m in ok],
        [m.error for m in results if m.tool == tool and m.mode == mode and m.error],
    )


def judge_targets(
    results: list[Measurement],
    modes: list[str],
    absent: dict[tuple[str, str], str],
    mode_titles: dict[str, str],
) -> tuple[list[str], list[dict[str, object]]]:
    """Each of the engine's targets, from the medians: a Markdown line and its JSON."""
    lines: list[str] = []
    data: list[dict[str, object]] = []
    for tool, mode, reference, factor in TARGETS:
        where = lower_first(mode_titles[mode])
        title = f"{LABELS[tool]}, {where}: at least {factor:g}x {LABELS[reference]}"
        entry: dict[str, object] = {
            "tool": tool,
            "mode": mode,
            "reference": reference,
            "at_least": factor,
        }
        ours = summarise(results, tool, mode) if mode in modes else None
        theirs = summarise(results, reference, mode) if mode in modes else None
        if ours is None or theirs is None:
            why = "mode not run"
            if mode in modes:
                missing = tool if ours is None else reference
                why = f"{LABELS[missing]}: {absent.get((missing, mode), 'every run failed')}"
            lines.append(f"- {title}: **not measured** ({why}).")
            entry.update(met=None, reason=why)
            data.append(entry)
            continue
        ratio = ours.rate / theirs.rate
        met = ratio >= factor
        lines.append(
            f"- {title}: **{'met' if met else 'not met'}**, {fmt_rate(ours.rate)} msg/s "
            f"against {fmt_rate(theirs.rate)} msg/s, {ratio:.3f}x (needs {factor:g}x)."
        )
        entry.update(
            met=met, ratio=ratio, messages_per_second=ours.rate, reference_rate=theirs.rate
        )
        data.append(entry)
    return lines, data


def render(
    setup: Setup,
    modes: list[str],
    results: list[Measurement],
    absent: dict[tuple[str, str], str],
    commands: dict[tuple[str, str], tuple[list[str], str]],
    sinks: list[tuple[str, list[str]]],
    info: dict[str, str],
    repeats: int,
    started: str,
    invocation: str,
) -> tuple[str, dict[str, object]]:
    mode_titles = {
        "new": "A new connection per message",
        "reuse": f"{setup.per_connection} messages per connection",
        "starttls": "STARTTLS, a new connection per message",
    }
    lines = [
        "# SMTP clients against a sink on loopback: messages per second",
        "",
        f"Run {started}. {setup.concurrency} concurrent sessions, 1 KiB messages, "
        f"{setup.messages:,} messages per measurement, median of {repeats} "
        "alternating runs (round-robin, the first tool rotating each round). "
        f"smtpbench with `--workers {setup.workers}`, engine {engine_build()}"
        f"{INTERPRETED_NOTE if engine_build() != 'interpreted' else ''}. "
        f"Command: `{invocation}`.",
        "",
        f"Machine: `nproc` {info['nproc']}, {info['cpu']}; Linux {info['kernel']}; "
        f"Python {info['python']}; Postfix {info['postfix']}; {info['openssl']}; "
        f"load average at start {info['load average at start']}; "
        f"smtpbench's Python bytecode {info['bytecode']}.",
        "",
        f"CPU placement: {setup.where.description}.",
        "",
    ]
    table: dict[str, object] = {}
    for mode in modes:
        reference_tool = REFERENCE[mode]
        lines += [f"## {mode_titles[mode]}", ""]
        if mode == "starttls":
            lines += [
                "Against smtpbench's own sink (`smtpbench sink` with a `trustme` "
                "certificate; Python, on one core, so it may be what limits these "
                "figures: see its CPU column), not smtp-sink, which has no STARTTLS. "
                "**The ratio here is to the smtplib "
                "thread pool, not to smtp-source**, which cannot do STARTTLS. "
                "No target: the figures are reported.",
                "",
            ]
        lines += [
            f"| client | msg/s (median, wall) | x {LABELS[reference_tool]} "
            "| client CPU us/msg (median) | sink CPU, % of a core (median) "
            "| msg/s (median, own figure) | each run (msg/s, wall) |",
            "|---|---|---|---|---|---|---|",
        ]
        reference = summarise(results, reference_tool, mode)
        for tool in TOOLS:
            label = LABELS[tool]
            if (tool, mode) in absent:
                lines.append(f"| {label} | {cell(absent[tool, mode])} | | | | | |")
                table[f"{tool}/{mode}"] = {"absent": absent[tool, mode]}
                continue
            figures = summarise(results, tool, mode)
            if figures is None:
                failures = [m.error for m in results if m.tool == tool and m.mode == mode]
                first = cell(failures[0] or "?") if failures else "?"
                lines.append(f"| {label} | failed: {first} | | | | | |")
                table[f"{tool}/{mode}"] = {"failed": failures}
                continue
            ratio = figures.rate / reference.rate if reference else None
            # Three decimals, as the targets give them: 0.899 shown as 0.90 would read as met.
            ratio_text = f"{ratio:.3f}" if ratio is not None else "- (no figure to divide by)"
            busy = figures.sink_busy
            busy_text = f"{busy * 100:.0f}" if busy is not None else "-"
            own_text = fmt_rate(figures.own_rate) if figures.own_rate is not None else "-"
            runs = ", ".join(fmt_rate(r) for r in figures.runs)
            if figures.errors:
                runs += f" ({len(figures.errors)} failed: {cell(figures.errors[0])})"
            lines.append(
                f"| {label} | {fmt_rate(figures.rate)} | {ratio_text} "
                f"| {figures.cpu_per_message * 1e6:.1f} | {busy_text} | {own_text} | {runs} |"
            )
            table[f"{tool}/{mode}"] = {
                "messages_per_second": figures.rate,
                "ratio": ratio,
                "ratio_to": reference_tool,
                "client_cpu_seconds_per_message": figures.cpu_per_message,
                "sink_cpu_share_of_a_core": busy,
                "own_messages_per_second": figures.own_rate,
                "runs": figures.runs,
                "failed_runs": figures.errors,
            }
        lines.append("")
    target_lines, targets = judge_targets(results, modes, absent, mode_titles)
    lines += [
        "## Targets",
        "",
        f"From the medians above (smtpbench with `--workers {setup.workers}`). "
        "STARTTLS has no target.",
        "",
        *target_lines,
        "",
    ]
    pypi = setup.pypi
    pypi_version = pypi.version if pypi is not None and pypi.version else "not installed"
    pypi_size = (
        f"about {pypi.message_bytes} bytes on the wire (its MIME text, padded with a "
        "`body_text_dir=` prefix)"
        if pypi is not None and pypi.message_bytes
        else "not measured"
    )
    workers_note = (
        "the default here (`--workers` changes it): one engine process, as the client has one core"
        if setup.workers == 1
        else "as given with `--workers`"
    )
    lines += [
        "## How to read it",
        "",
        "- **msg/s (median, wall)**: messages accepted divided by the wall time from "
        "starting the client's process to its exit, process start included, the same for "
        "every tool; the median of the runs. **msg/s (median, own figure)** is what the "
        "tool itself reports: smtpbench's `rates.messages_accepted_per_second` from "
        "`summary.json`, the smtplib pool's and the PyPI tool's messages over their own "
        "elapsed time (without interpreter start); smtp-source reports none.",
        "- **client CPU us/msg**: user plus system CPU of the client process and its "
        "children (the resource usage of reaped children, before and after), per message.",
        "- **sink CPU, % of a core**: the sink's user plus system CPU during the "
        "measurement (from `/proc`) over its wall time. Near 100 the sink, pinned to one "
        "core, sets the pace: clients that all reach about the same msg/s there differ in "
        "their CPU per message, not in speed.",
        "- **x smtp-source** (**x smtplib thread pool** with STARTTLS): the median against "
        "that tool's median in the same mode.",
        "- The sinks: Postfix `smtp-sink` for the first two modes; for STARTTLS, which it "
        "does not offer, smtpbench's own sink (`smtpbench sink`), with a certificate for "
        "127.0.0.1 from a throwaway `trustme` CA. smtpbench (`ca_file`) and the smtplib "
        "pool (`--ca-file`) verify the certificate against that CA; the PyPI tool calls "
        "`smtplib`'s `starttls()` without a context, which verifies nothing. Every client "
        "says EHLO again after the handshake; there is no TLS session resumption.",
        "- Messages: smtp-source `-l 1024` sends 1024 bytes of body plus about 130 bytes of "
        'headers it adds; the smtplib pool exactly 1024 bytes; smtpbench `size = "1KiB"`, '
        f"headers included; the PyPI tool {pypi_size}.",
        "- smtp-source has no option for a number of messages per connection: `-d` keeps "
        "each of the `-s` connections until the `-m` total runs out. So "
        f"`-s {setup.concurrency} -d -m {setup.concurrency * setup.per_connection}` makes "
        f"{setup.concurrency} connections of about {setup.per_connection} messages each, and "
        "the measurement runs that command back to back until the total is sent (each run's "
        "process start included). It sends HELO, not EHLO, no PIPELINING and no STARTTLS.",
        f"- PyPI `smtpbench` {pypi_version}: a thread per session, each message in a new "
        "`smtplib` connection (EHLO, MAIL, RCPT, DATA, QUIT), so it cannot reuse a "
        "connection; it checks the server with one extra connection first, writes a JSON log "
        "line per message and draws a progress bar. Run with `tls_mode=none` (its default is "
        "STARTTLS), or `tls_mode=starttls` in the STARTTLS mode, `lb_host=` (no MX look-up) "
        "and no retries, in a virtualenv of its own.",
        "- smtpbench runs a scenario written for the purpose (below): the closed model, "
        f"{setup.concurrency} sessions in flight, the session count set so that the total is "
        f"the same as for the other tools. `--workers {setup.workers}`: {workers_note}.",
        "",
        "## Commands",
        "",
        "`$SCRATCH` is a temporary folder, `$VENV` the PyPI tool's virtualenv, `$PORT` the "
        f"smtp-sink's port (this time {setup.port})"
        + (
            f", `$TLS_PORT` the STARTTLS sink's (this time {setup.tls_port})"
            if setup.tls_port is not None
            else ""
        )
        + ".",
        "",
        "```sh",
    ]
    for title, command in sinks:
        lines.append(f"# {title}")
        lines.append(display(command, setup))
    for (tool, mode), (command, note) in commands.items():
        suffix = f"   # {note}" if note else ""
        lines.append(f"# {LABELS[tool]}, {lower_first(mode_titles[mode])}")
        lines.append(display(command, setup) + suffix)
    lines += ["```", ""]
    scenario = SCENARIO.format(
        concurrency=setup.concurrency,
        sessions=f"{setup.messages} / (messages per session)",
        per=f"1 or {setup.per_connection}",
        pipelining="false or true",
        tls="",
    )
    tls = TLS.format(ca_file='"$SCRATCH/tls/ca.pem"')
    lines += ["The smtpbench scenario (`$SCRATCH/smtpbench*-MODE.toml`):", "", "```toml"]
    lines += [scenario.rstrip(), "```", ""]
    lines += ["and, in the STARTTLS mode, at its end:", "", "```toml", tls.strip(), "```", ""]
    data: dict[str, object] = {
        "started": started,
        "command": invocation,
        "machine": info,
        "placement": setup.where.description,
        "concurrency": setup.concurrency,
        "messages": setup.messages,
        "per_connection": setup.per_connection,
        "repeats": repeats,
        "workers": setup.workers,
        "modes": modes,
        "pypi_smtpbench": pypi_version,
        "table": table,
        "targets": targets,
        "measurements": [asdict(m) for m in results],
    }
    return "\n".join(lines), data


# Main ---------------------------------------------------------------------------------


def parse_modes(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in MODES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(MODES)}, got {text!r}"
        )
    return [mode for mode in MODES if mode in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, help="measurements of each tool (default 3)")
    parser.add_argument("--messages", type=int, help="messages per measurement (200000)")
    parser.add_argument("--per-connection", type=int, help="messages per connection (2000)")
    parser.add_argument("--concurrency", type=int, default=20, help="sessions in flight")
    parser.add_argument("--workers", type=int, default=1, help="smtpbench's --workers (default 1)")
    parser.add_argument(
        "--modes",
        type=parse_modes,
        default=list(MODES),
        help=f"which modes, comma-separated (default {','.join(MODES)})",
    )
    parser.add_argument("--quick", action="store_true", help="a tiny load, to see it work")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=(*TOOLS, "starttls"),
        help="leave out a tool, or the STARTTLS mode with every tool in it (repeatable)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    parser.add_argument("--cache", type=Path, default=None, help="where the PyPI venv goes")
    args = parser.parse_args(argv)
    quick = {"repeats": 1, "messages": 200, "per_connection": 10}
    full = {"repeats": 3, "messages": 200_000, "per_connection": 2000}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    numbers = (args.repeats, args.messages, args.per_connection, args.concurrency, args.workers)
    if min(numbers) < 1:
        parser.error(
            "--repeats, --messages, --per-connection, --concurrency and --workers must be >= 1"
        )
    args.modes = [mode for mode in args.modes if mode not in args.skip]
    args.skip = [tool for tool in args.skip if tool in TOOLS]
    if not args.modes:
        parser.error("every mode is left out")
    return args


def precompile_bytecode() -> str:
    """Writes smtpbench's bytecode (``.pyc``) before anything is measured, as pip does when
    it installs a package: a process that finds none compiles every module it imports
    from source, each time when ``PYTHONDONTWRITEBYTECODE`` is set, which no installed
    tool pays. What was done, for the report."""
    import compileall

    import smtpbench

    package = Path(smtpbench.__file__).resolve().parent
    if compileall.compile_dir(package, quiet=1, workers=1):
        return "compiled beforehand, as pip does at install"
    return "could not be compiled beforehand (each run compiled what it imported)"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    sink_binary, source_binary = postfix_binary("smtp-sink"), postfix_binary("smtp-source")
    if sink_binary is None or source_binary is None:
        print("needs Postfix's smtp-sink and smtp-source (Debian package postfix)", file=sys.stderr)
        return 2
    # The same total for every tool and mode: whole connections of every client.
    batch = args.concurrency * (args.per_connection if "reuse" in args.modes else 1)
    messages = max(batch, math.ceil(args.messages / batch) * batch)
    started = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    invocation = shlex.join(["python", "bench/compare_clients.py", *(argv or sys.argv[1:])])
    info = machine()
    info["bytecode"] = precompile_bytecode()
    where = placement(not args.no_pin)
    modes: list[str] = args.modes
    left_out = {tool: "skipped (--skip)" for tool in args.skip}
    if engine_build() == "interpreted":  # smtpbench's row is the interpreted engine already
        left_out.setdefault("smtpbench-interpreted", INTERPRETED_ALREADY)
    order = [(tool, mode) for tool in TOOLS for mode in modes if tool not in left_out]
    absent = {(tool, mode): why for tool, why in left_out.items() for mode in modes}
    results: list[Measurement] = []
    commands: dict[tuple[str, str], tuple[list[str], str]] = {}
    with tempfile.TemporaryDirectory(prefix="compare-clients-") as tmp:
        scratch = Path(tmp)
        pypi = None
        if "pypi-smtpbench" not in args.skip:
            print("installing the PyPI package named smtpbench in a virtualenv ...", flush=True)
            pypi = install_pypi_smtpbench(args.cache or default_cache())
            size_pypi_messages(pypi, scratch)
        try:
            with contextlib.ExitStack() as stack:
                plain = stack.enter_context(postfix_sink(sink_binary, where))
                sinks = [("the sink: Postfix smtp-sink (new connection, reuse)", plain.command)]
                tls, certificates = None, None
                if "starttls" in modes:
                    certificates = make_certificates(scratch / "tls")
                    tls = stack.enter_context(tls_sink(certificates, where))
                    sinks.append(("the sink with STARTTLS: smtpbench sink (starttls)", tls.command))
                setup = Setup(
                    port=plain.port,
                    concurrency=args.concurrency,
                    messages=messages,
                    per_connection=args.per_connection,
                    where=where,
                    scratch=scratch,
                    smtp_source=source_binary,
                    pypi=pypi,
                    workers=args.workers,
                    sink_pid=plain.pid,
                    tls_port=tls.port if tls is not None else None,
                    tls_sink_pid=tls.pid if tls is not None else None,
                    certificates=certificates,
                )
                plans: dict[tuple[str, str], Plan] = {}
                for tool, mode in order:
                    plan = make_plan(setup, tool, mode)
                    if isinstance(plan, str):
                        absent[tool, mode] = plan
                    else:
                        plans[tool, mode] = plan
                        commands[tool, mode] = (plan.commands[0], plan.note)
                keys = list(plans)
                for repeat in range(args.repeats):
                    shift = repeat % len(keys) if keys else 0
                    for tool, mode in keys[shift:] + keys[:shift]:
                        result = measure(setup, tool, mode, plans[tool, mode], repeat)
                        results.append(result)
                        state = f"  ({result.error})" if result.error else ""
                        print(
                            f"[{repeat + 1}/{args.repeats}] {LABELS[tool]:<26} {mode:<8} "
                            f"{result.rate:>10,.0f} msg/s  "
                            f"{result.cpu_per_message * 1e6:7.1f} us CPU/msg{state}",
                            flush=True,
                        )
        except (KeyboardInterrupt, Stopped):
            print("interrupted: every process started here was stopped", file=sys.stderr)
            return 130
        except RuntimeError as error:
            print(f"cannot start: {error}", file=sys.stderr)
            return 2
        text, data = render(
            setup,
            modes,
            results,
            absent,
            commands,
            sinks,
            info,
            args.repeats,
            started,
            invocation,
        )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "compare_clients.md").write_text(text)
    (args.out / "compare_clients.json").write_text(json.dumps(data, indent=2) + "\n")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
