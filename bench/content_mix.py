"""What realistic content costs: the generator alone, and whole runs against smtp-sink.

    python bench/content_mix.py                      # 3 repeats, results/benchmarks/
    python bench/content_mix.py --repeats 1 --seconds 5 --out /tmp/content

Two tables:
- **The generator alone**, in this process: messages and bytes per CPU-second of
  ``MessageFactory`` (planning and building each message, what the engine asks of it
  for every message), for the plain text message, the realistic mix (70% small text,
  20% HTML with two inline images, 10% with a 1 MiB attachment), the mix signed with
  DKIM (RSA 2048), and a corpus of .eml files. Median of the repeats.
- **Whole runs** of ``smtpbench run --workers 1`` against Postfix's ``smtp-sink``
  (sink pinned to one CPU, smtpbench to the other, as in ``compare_clients.py``),
  alternating plain and mix, 20 sessions of 50 messages each in flight, for a fixed
  time: accepted messages per second and MB/s on the wire, median of the repeats, and
  the generator's share of the client's CPU worked out from the first table.

Writes ``content_mix.md`` into ``--out`` with the commands.
"""

from __future__ import annotations

import argparse
import email.message
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_clients import (
    ROOT,
    children_cpu,
    placement,
    postfix_binary,
    postfix_sink,
    run_child,
)

from smtpbench.scenario import MessageFactory, parse_scenario

MIX = """
[[content.mix]]
kind = "text"
weight = 70

[[content.mix]]
kind = "html"
weight = 20
images = 2
image_size = "30KiB"

[[content.mix]]
kind = "attachment"
weight = 10
type = "application/pdf"
size = "1MiB"
"""
DKIM = """
[content.dkim]
domain = "smtpbench.test"
selector = "s1"
key_file = "{key}"
"""
CORPUS = """
[content.corpus]
path = "{corpus}"
"""
BASE = 'name = "{name}"\nseed = 1\n[session]\nsize = "4KiB"\n'


@dataclass(frozen=True)
class Generated:
    messages_per_second: float
    megabytes_per_second: float
    mean_size: float


def generator(text: str, base: Path, seconds: float) -> Generated:
    """Messages built per CPU-second by one factory, for about ``seconds``."""
    scenario = parse_scenario(text, file=str(base / "scenario.toml"))
    factory = MessageFactory(scenario, seed=1)
    factory.message_bytes(factory.plan_session(0), 0)  # layouts, blocks, corpus: once
    count = 0
    size = 0
    start = time.process_time()
    while time.process_time() - start < seconds:
        for _ in range(50):
            plan = factory.plan_session(count)
            size += len(factory.message_bytes(plan, 0))
            count += 1
    spent = time.process_time() - start
    return Generated(count / spent, size / spent / 1e6, size / count)


def write_inputs(folder: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = folder / "s1.private"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    corpus = folder / "corpus"
    corpus.mkdir()
    for n in range(50):
        message = email.message.EmailMessage()
        message["From"] = f"newsletter{n}@corp.example"
        message["To"] = "reader@corp.example"
        message["Subject"] = f"issue {n}"
        message.set_content("news of the week\n" * (20 + 40 * n))
        if n % 5 == 0:
            message.add_attachment(os.urandom(50_000 * (n % 3 + 1)), maintype="application",
                                   subtype="octet-stream", filename=f"f{n}.bin")  # fmt: skip
        (corpus / f"{n:03d}.eml").write_bytes(bytes(message))
    return key_file, corpus


@dataclass(frozen=True)
class Run:
    rate: float
    megabytes_per_second: float
    cpu_per_message: float


def whole_run(
    name: str, content: str, port: int, seconds: float, folder: Path, client: list[str]
) -> Run:
    scenario = folder / f"{name}.toml"
    scenario.write_text(
        f'name = "{name}"\nseed = 1\n[load]\nmode = "concurrency"\nconcurrency = 20\n'
        f'duration = "{seconds:g}s"\n[session]\nmessages = 50\nsize = "4KiB"\n{content}'
    )
    out = Path(tempfile.mkdtemp(prefix=f"out-{name}-", dir=folder))  # one folder a run
    before = children_cpu()
    done = run_child(
        [*client, sys.executable, "-m", "smtpbench", "run", str(scenario),
         "--target", f"127.0.0.1:{port}", "--headless", "--out", str(out), "--workers", "1"],
        ROOT, dict(os.environ), timeout=seconds + 120,
    )  # fmt: skip
    cpu = children_cpu() - before
    if done.returncode != 0:
        raise RuntimeError(f"{name}: exit {done.returncode}: {done.stderr[-500:]}")
    (summary,) = out.glob("*/summary.json")
    data = json.loads(summary.read_text())
    accepted = int(data["counters"]["messages_accepted"])
    elapsed = float(data["elapsed"])
    sent = float(data["counters"]["bytes_sent"])
    return Run(accepted / elapsed, sent / elapsed / 1e6, cpu / max(accepted, 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="per whole run")
    parser.add_argument("--generator-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks")
    args = parser.parse_args()
    command = "python bench/content_mix.py " + " ".join(sys.argv[1:])
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        key_file, corpus = write_inputs(folder)
        cases = {
            "plain text, 4 KiB": BASE.format(name="plain"),
            "mix: 70% text, 20% HTML + 2 images, 10% 1 MiB attachment": BASE.format(name="mix")
            + MIX,
            "the mix, DKIM-signed (RSA 2048)": BASE.format(name="dkim")
            + MIX
            + DKIM.format(key=key_file),
            "corpus of 50 .eml files": BASE.format(name="corpus") + CORPUS.format(corpus=corpus),
        }
        generated: dict[str, list[Generated]] = {case: [] for case in cases}
        for _ in range(args.repeats):
            for case, text in cases.items():
                generated[case].append(generator(text, folder, args.generator_seconds))
        rows = []
        for case, results in generated.items():
            rows.append(
                (
                    case,
                    statistics.median(r.messages_per_second for r in results),
                    statistics.median(r.megabytes_per_second for r in results),
                    statistics.median(r.mean_size for r in results),
                )
            )
        sink_binary = postfix_binary("smtp-sink")
        runs: dict[str, list[Run]] = {"plain": [], "mix": []}
        where = placement(True)
        if sink_binary is not None:
            with postfix_sink(sink_binary, where) as sink:
                for _ in range(args.repeats):
                    for name, content in (("plain", ""), ("mix", MIX)):
                        runs[name].append(
                            whole_run(name, content, sink.port, args.seconds, folder, where.client)
                        )
    lines = [
        "# Realistic content: what the generator costs",
        "",
        f"Command: `{command}`",
        "",
        "## The generator alone (one CPU, in process)",
        "",
        "| content | messages per CPU-second | MB per CPU-second | mean message size |",
        "|---|---:|---:|---:|",
    ]
    for case, rate, mbps, size in rows:
        lines.append(f"| {case} | {rate:,.0f} | {mbps:,.1f} | {size / 1024:,.1f} KiB |")
    if sink_binary is None:
        lines += ["", "Whole runs skipped: Postfix's smtp-sink is not installed."]
    else:
        plain_rate = statistics.median(r.rate for r in runs["plain"])
        mix_rate = statistics.median(r.rate for r in runs["mix"])
        mix_generator = rows[1][1]
        lines += [
            "",
            f"## Whole runs against smtp-sink ({where.description})",
            "",
            f"`smtpbench run --workers 1`, closed model, 20 sessions of 50 messages, "
            f"{args.seconds:g} s each, alternating, median of {args.repeats}.",
            "",
            "| content | accepted messages/s | MB/s sent | client CPU per message |"
            " generator's share of it |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, label, generator_rate in (
            ("plain", "plain text, 4 KiB", rows[0][1]),
            ("mix", "the mix above", mix_generator),
        ):
            rate = statistics.median(r.rate for r in runs[name])
            mbps = statistics.median(r.megabytes_per_second for r in runs[name])
            cpu = statistics.median(r.cpu_per_message for r in runs[name])
            share = (1 / generator_rate) / cpu if cpu > 0 else float("nan")
            lines.append(
                f"| {label} | {rate:,.0f} | {mbps:,.1f} | {cpu * 1e6:,.0f} us | {share:.0%} |"
            )
        lines += [
            "",
            f"The mix runs at {mix_rate / plain_rate:.2f}x the plain rate of messages; its "
            f"messages average {rows[1][3] / rows[0][3]:.1f} times the bytes.",
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / "content_mix.md"
    temporary = target.with_suffix(".md.tmp")
    temporary.write_text("\n".join(lines) + "\n")
    temporary.replace(target)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
