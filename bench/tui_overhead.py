"""Does the dashboard cost the load anything? Runs the same scenario at the same rate
headless and with the dashboard (in a real terminal, under tmux), alternating, and
compares throughput and DATA p99 from their results folders.

    python bench/tui_overhead.py --rate 500 --duration 15 --repeats 5
    python bench/tui_overhead.py --rate 500 --duration 15 --repeats 5 --server smtp-sink

The server is the embedded sink (Python, on the same cores as the engine and the
dashboard) or Postfix's ``smtp-sink`` (C, a fraction of the CPU). Prints a table of
medians and the ratios dashboard/headless; needs tmux (and Postfix for smtp-sink).
Loopback only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare_clients import placement, postfix_binary, postfix_sink  # noqa: E402


def figures(folder: Path) -> dict[str, float]:
    summary = json.loads((folder / "summary.json").read_text())
    return {
        "sessions/s": summary["rates"]["achieved_sessions_per_second"],
        "messages/s": summary["rates"]["messages_accepted_per_second"],
        "DATA p99 ms": summary["latency"]["DATA"]["p99"] * 1e3,
        "DATA end p99 ms": summary["latency"]["DATA end"]["p99"] * 1e3,
        "start lag p99 ms": summary["latency"]["start lag"]["p99"] * 1e3,
    }


def newest(base: Path) -> Path:
    return max(base.iterdir(), key=lambda p: p.stat().st_mtime)


def run_headless(args: list[str], out: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "smtpbench", "run", *args, "--headless", "--out", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return newest(out)


def run_dashboard(args: list[str], out: Path, duration: float) -> Path:
    session = f"smtpbench-bench-{time.monotonic_ns()}"
    command = " ".join([sys.executable, "-m", "smtpbench", "run", *args, "--out", str(out)])
    subprocess.run(
        [
            "tmux",
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "120",
            "-y",
            "40",
            f"cd {ROOT} && {command}",
        ],
        check=True,
    )
    deadline = time.monotonic() + duration + 120
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if out.exists() and any(out.iterdir()):
                break
        time.sleep(1.0)
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=False)
        time.sleep(2.0)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False, capture_output=True)
    return newest(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--server", choices=("embedded", "smtp-sink"), default="embedded")
    options = parser.parse_args()
    if shutil.which("tmux") is None:
        print("needs tmux", file=sys.stderr)
        return 2
    if options.server == "embedded":
        return measure(options, None)
    binary = postfix_binary("smtp-sink")
    if binary is None:
        print("needs Postfix's smtp-sink (Debian package postfix)", file=sys.stderr)
        return 2
    # Not pinned: the dashboard's cost is measured with the scheduler placing everything.
    with postfix_sink(binary, placement(False)) as sink:
        port = sink.port
        return measure(options, f"127.0.0.1:{port}")


def measure(options: argparse.Namespace, target: str | None) -> int:
    args = ["--rate", str(options.rate), "--duration", f"{options.duration}s", "--seed", "1"]
    if target is not None:
        args += ["--target", target]
    results: dict[str, list[dict[str, float]]] = {"headless": [], "dashboard": []}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(options.repeats):
            results["headless"].append(figures(run_headless(args, Path(tmp) / f"h{repeat}")))
            out = Path(tmp) / f"t{repeat}"
            results["dashboard"].append(figures(run_dashboard(args, out, options.duration)))
    keys = list(results["headless"][0])
    medians = {
        mode: {k: statistics.median(run[k] for run in runs) for k in keys}
        for mode, runs in results.items()
    }
    server = "the embedded sink" if target is None else f"Postfix smtp-sink at {target}"
    print(
        f"smtpbench run --rate {options.rate:g} --duration {options.duration:g}s against "
        f"{server}, median of {options.repeats} alternating runs"
    )
    print(f"{'figure':<18}{'headless':>12}{'dashboard':>12}{'ratio':>8}")
    for key in keys:
        h, d = medians["headless"][key], medians["dashboard"][key]
        print(f"{key:<18}{h:>12.3f}{d:>12.3f}{d / h if h else float('nan'):>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
