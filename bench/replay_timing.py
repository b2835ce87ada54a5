"""Does a replay keep time? Builds a 60-second recording (real sessions recorded through
the proxy against the sink, placed at random starts over 60 s, the last one ending at
60 s), replays it with ``smtpbench replay --speed 10`` against the embedded sink, and
reads from each run's results how long it took (6 s is the target, within 2%) and how late
sessions started against their scheduled time (start lag p50, p99, max; target: p99
within 5 ms).

    python bench/replay_timing.py --repeats 3 --rate 10

Writes results/benchmarks/replay_timing.json and .md. Loopback only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from smtpbench.engine.runner import LoadRun  # noqa: E402
from smtpbench.engine.transport import resolve  # noqa: E402
from smtpbench.metrics.recorder import Recorder  # noqa: E402
from smtpbench.recording import Recording, read_recording, write_recording  # noqa: E402
from smtpbench.run.prepare import run_info  # noqa: E402
from smtpbench.scenario import MessageFactory, default_scenario, with_overrides  # noqa: E402
from smtpbench.servers.proxy import ProxyConfig, serve_proxy  # noqa: E402
from smtpbench.servers.sink import SinkConfig, serve_sink  # noqa: E402

LENGTH = 60.0


async def record_some(out: Path, sessions: int) -> None:
    async with trio.open_nursery() as nursery:
        sink = await nursery.start(serve_sink, SinkConfig())
        proxy = await nursery.start(serve_proxy, ProxyConfig("127.0.0.1", sink.address[1], out))
        scenario = with_overrides(
            default_scenario(), host="127.0.0.1", port=proxy.address[1], rate=20, sessions=sessions
        )
        address = await resolve("127.0.0.1", proxy.address[1])
        recorder = Recorder(run_info(scenario, str(address), 1))
        await LoadRun(scenario, address, MessageFactory(scenario, seed=1), recorder).run()
        while proxy.stats.sessions_recorded < sessions:
            await trio.sleep(0.01)
        nursery.cancel_scope.cancel()


def sixty_seconds(sample: Recording, rate: float, seed: int) -> Recording:
    rng = random.Random(seed)
    count = int(rate * LENGTH)
    sources = list(sample.sessions)
    last = sources[0]
    starts = [0.0, *sorted(rng.uniform(0, LENGTH - 1) for _ in range(count - 2))]
    starts.append(LENGTH - last.duration)
    sessions = []
    for number, start in enumerate(starts):
        source = last if number == len(starts) - 1 else rng.choice(sources)
        sessions.append(dataclasses.replace(source, number=number, start=start))
    return dataclasses.replace(sample, sessions=tuple(sessions))


def replay_once(recording: Path, out: Path, speed: float) -> dict[str, float]:
    before = set(out.iterdir()) if out.exists() else set()
    command = [sys.executable, "-m", "smtpbench", "replay", str(recording), "--speed", str(speed)]
    command += ["--headless", "--out", str(out), "--progress-interval", "60s"]
    began = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    wall = time.monotonic() - began
    (folder,) = set(out.iterdir()) - before
    summary = json.loads((folder / "summary.json").read_text())
    lag = summary["latency"]["start lag"]
    return {
        "elapsed_s": summary["elapsed"],
        "process_wall_s": round(wall, 3),
        "sessions": summary["counters"]["started"],
        "failed": summary["counters"]["failed"],
        "start_lag_p50_ms": lag["p50"] * 1e3,
        "start_lag_p99_ms": lag["p99"] * 1e3,
        "start_lag_max_ms": lag["max"] * 1e3,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate", type=float, default=10.0, help="sessions/s in the recording")
    parser.add_argument("--speed", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        sample = folder / "sample.jsonl"
        trio.run(record_some, sample, 40)
        recording = folder / "sixty-seconds.jsonl"
        write_recording(recording, sixty_seconds(read_recording(sample), args.rate, seed=1))
        runs = [replay_once(recording, folder / "results", args.speed) for _ in range(args.repeats)]
    target = LENGTH / args.speed
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    result = {
        "what": f"a {LENGTH:g}-second recording ({int(args.rate * LENGTH)} sessions) replayed "
        f"at --speed {args.speed:g} against the embedded sink",
        "command": f"python bench/replay_timing.py --repeats {args.repeats} --rate {args.rate:g} "
        f"--speed {args.speed:g}",
        "target_elapsed_s": target,
        "runs": runs,
        "median": median,
        "elapsed_error_pct": round((median["elapsed_s"] - target) / target * 100, 3),
        "within_2pct": all(abs(run["elapsed_s"] - target) <= 0.02 * target for run in runs),
        "start_lag_p99_within_5ms": all(run["start_lag_p99_ms"] <= 5.0 for run in runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "replay_timing.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Replay timing",
        "",
        result["what"] + f"; {args.repeats} runs. Command: `{result['command']}`.",
        "",
        "| run | elapsed (s) | error vs 6 s | sessions | failed | start lag p50 | p99 | max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for number, run in enumerate(runs, start=1):
        error = (run["elapsed_s"] - target) / target * 100
        lines.append(
            f"| {number} | {run['elapsed_s']:.3f} | {error:+.2f}% | {run['sessions']} | "
            f"{run['failed']} | {run['start_lag_p50_ms']:.2f} ms | "
            f"{run['start_lag_p99_ms']:.2f} ms | {run['start_lag_max_ms']:.2f} ms |"
        )
    lines += [
        "",
        f"Within 2% of {target:g} s: {'yes' if result['within_2pct'] else 'no'}; "
        f"start lag p99 within 5 ms: {'yes' if result['start_lag_p99_within_5ms'] else 'no'}.",
        "",
    ]
    (args.out / "replay_timing.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
