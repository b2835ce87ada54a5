"""What does the recording proxy add? Runs the same scenario against the sink directly and
through ``smtpbench record`` (each server in its own process, the load in a third),
alternating, and compares each command's service time p50 and p99.

    python bench/proxy_overhead.py --rate 100 --duration 10 --repeats 3

Writes results/benchmarks/proxy_overhead.json and .md. Loopback only.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("connect", "banner", "EHLO", "MAIL", "RCPT", "DATA", "DATA end", "QUIT")
PORT = re.compile(rb":(\d+)")


def start(command: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, cwd=ROOT)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = PORT.search(line.split(b",")[0])
    if match is None:
        process.kill()
        raise RuntimeError(f"no port in {line!r}")
    return process, int(match.group(1))


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)


def load(port: int, out: Path, rate: str, duration: str) -> dict[str, dict[str, float]]:
    before = set(out.iterdir()) if out.exists() else set()
    command = [sys.executable, "-m", "smtpbench", "run", "--target", f"127.0.0.1:{port}"]
    command += ["--rate", rate, "--duration", duration, "--headless", "--out", str(out)]
    command += ["--progress-interval", "60s", "--seed", "1"]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    (folder,) = set(out.iterdir()) - before
    latency = json.loads((folder / "summary.json").read_text())["latency"]
    return {step: {"p50": latency[step]["p50"], "p99": latency[step]["p99"]} for step in STEPS}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", default="100")
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args()
    direct: list[dict[str, dict[str, float]]] = []
    proxied: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        sink, sink_port = start(
            [sys.executable, "-m", "smtpbench", "sink", "--listen", "127.0.0.1:0"]
        )
        record = [sys.executable, "-m", "smtpbench", "record", "--listen", "127.0.0.1:0"]
        record += ["--upstream", f"127.0.0.1:{sink_port}", "--out", str(folder / "r.jsonl")]
        proxy, proxy_port = start(record)
        try:
            for _ in range(args.repeats):
                direct.append(load(sink_port, folder / "results", args.rate, args.duration))
                proxied.append(load(proxy_port, folder / "results", args.rate, args.duration))
        finally:
            stop(proxy)
            stop(sink)
    rows = {}
    for step in STEPS:
        row = {}
        for q in ("p50", "p99"):
            a = statistics.median(run[step][q] for run in direct) * 1e3
            b = statistics.median(run[step][q] for run in proxied) * 1e3
            row[q] = {
                "direct_ms": round(a, 4),
                "proxy_ms": round(b, 4),
                "added_ms": round(b - a, 4),
            }
        rows[step] = row
    result = {
        "what": f"default scenario at {args.rate}/s for {args.duration}, sink direct against "
        "sink behind the recording proxy, medians of "
        f"{args.repeats} alternating runs",
        "command": f"python bench/proxy_overhead.py --rate {args.rate} --duration "
        f"{args.duration} --repeats {args.repeats}",
        "steps": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "proxy_overhead.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Recording proxy overhead",
        "",
        f"{result['what']}. Command: `{result['command']}`.",
        "",
        "| command | p50 direct | p50 via proxy | added | p99 direct | p99 via proxy | added |",
        "|---|---|---|---|---|---|---|",
    ]
    for step, row in rows.items():
        p50, p99 = row["p50"], row["p99"]
        lines.append(
            f"| {step} | {p50['direct_ms']:.3f} ms | {p50['proxy_ms']:.3f} ms | "
            f"{p50['added_ms']:+.3f} ms | {p99['direct_ms']:.3f} ms | {p99['proxy_ms']:.3f} ms | "
            f"{p99['added_ms']:+.3f} ms |"
        )
    lines.append("")
    (args.out / "proxy_overhead.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
