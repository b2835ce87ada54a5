"""Mutation testing of the core modules: does each module's own test file notice a change?

    pip install -e '.[test,mutation]'
    python bench/mutation.py                       # every core module, one after the other
    python bench/mutation.py --module schedule     # one of them
    python bench/mutation.py --rev HEAD            # the last commit, not the work tree
    python bench/mutation.py --hand-only           # only the mistakes made by hand

For each module, mutmut (3.x) mutates that module alone and runs against it only
the module's own test files (never the slow end-to-end tests), with one worker
process. Each module gets a fresh copy of the package and the tests under
``build/mutation/<module>/`` (kept afterwards: ``cd`` there and ``mutmut show NAME``
shows a mutant). It writes ``results/benchmarks/mutation.md``: mutants, killed,
survived and kill rate per module, then every survivor with its diff and the reason
it is equivalent, read from ``bench/mutation_equivalent.toml`` (keyed by function
and mutated line, so line numbers may move); a survivor without a recorded reason is
marked as such: a test is missing, or a reason. Not part of CI: a few minutes per
module on one core. Run it when you change a core module or its tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "build" / "mutation"
REASONS = ROOT / "bench" / "mutation_equivalent.toml"
OUT = ROOT / "results" / "benchmarks" / "mutation.md"
DATA = ROOT / "results" / "benchmarks" / "mutation.json"  # every module's last outcome
# The pytest options added to every run: quiet, no cache shared between mutants.
PYTEST_ARGS = ["-p", "no:cacheprovider", "-q", "-x"]


@dataclass(frozen=True)
class Module:
    name: str  # short name for --module
    path: str  # the file mutated, from the repository root
    tests: tuple[str, ...]  # pytest arguments selecting its own tests
    # Mutants of code run at import (module-level tables), or of a module that keeps state
    # between calls, only show when each mutant's tests import the module afresh: a fork
    # server that preloads nothing (slower).
    fresh_import: bool = False


MODULES = (
    Module(
        "client",
        "smtpbench/protocol/client.py",
        (
            "tests/test_protocol_client.py",
            "tests/test_protocol_pair.py",
            "tests/test_esmtp_protocol.py",
        ),
    ),
    # The parser keeps the replies it parsed in a module-level table: a process forked
    # after the clean run would be answered from it, never reaching the mutant.
    Module(
        "replies",
        "smtpbench/protocol/replies.py",
        ("tests/test_protocol_replies.py", "tests/test_protocol_replies_seen.py"),
        fresh_import=True,
    ),
    # The bucket table is built at import; its test builds it again, so fork mode will do.
    Module("histogram", "smtpbench/metrics/histogram.py", ("tests/test_histogram.py",)),
    Module("schedule", "smtpbench/engine/schedule.py", ("tests/test_schedule.py",)),
    Module(
        "thresholds",
        "smtpbench/thresholds.py",
        # The real runs and the command's exit codes are end-to-end tests: left out.
        (
            "tests/test_threshold_parsing.py",
            "tests/test_thresholds.py",
            "tests/test_enhanced_thresholds.py",
            "tests/test_transit_thresholds.py",
            "-m",
            "not end_to_end",
        ),
    ),
    # The session machine and the conversation are tested with no socket, against the
    # server state machine on a test clock; the real-server tests are left out.
    Module(
        "session",
        "smtpbench/engine/session.py",
        (
            "tests/test_session_machine.py",
            "tests/test_session_machine_outcomes.py",
            "tests/test_session_machine_delivery.py",
            "tests/test_session_machine_conversation.py",
            "tests/test_session_machine_clients.py",
            "tests/test_transcript.py",
            "tests/test_transit_retries.py",  # a real sink, in this process
        ),
    ),
    Module(
        "conversation",
        "smtpbench/engine/conversation.py",
        (
            "tests/test_session_machine.py",
            "tests/test_session_machine_outcomes.py",
            "tests/test_session_machine_delivery.py",
            "tests/test_session_machine_conversation.py",
            "tests/test_session_machine_clients.py",
        ),
    ),
    # The test's own machines on loopback (milliseconds each), the two unit tests of the
    # reactor's end-to-end file (a write's marked part, the selector fallback's empty
    # masks), and two real loads from it (a second or so each): many sessions at once,
    # and descriptors running out. The other loads (a second each, per mutant) and Ctrl-C
    # in a child process are left out.
    Module(
        "reactor",
        "smtpbench/engine/reactor.py",
        (
            "tests/test_reactor_machines.py",
            "tests/test_reactor.py::test_a_writes_first_part_is_noted_when_its_last_byte_goes",
            "tests/test_reactor.py::test_the_selector_fallback_watches_for_nothing_without_an_empty_mask",
            "tests/test_reactor.py::test_many_sessions_in_flight_at_once",
            "tests/test_reactor.py::test_running_out_of_file_descriptors_is_named",
        ),
    ),
    Module(
        "codec",
        "smtpbench/recording/codec.py",
        (
            "tests/test_recording_codec.py",
            "tests/test_recording_format.py",
            "tests/test_replay_plan.py",
        ),
    ),
    # Captures built packet by packet, then captures of traffic through the proxy; the
    # live loopback capture (tcpdump) is left out.
    Module(
        "pcap",
        "smtpbench/recording/pcap.py",
        (
            "tests/test_pcap_capture.py",
            "tests/test_pcap_import.py",
            "-k",
            "not loopback_capture",
        ),
    ),
)


@dataclass(frozen=True)
class HandMutant:
    """A mistake made by hand (one text replaced in one module) that the module's own
    tests must notice: the real mistakes the mutation tool does not write by itself."""

    module: str  # Module.name
    what: str
    old: str
    new: str


HAND_MUTANTS = (
    HandMutant(
        "schedule",
        "a live rate change counts the sessions since the last one dividing by the old factor",
        "(self.profile.cumulative(at) - base) * self._factor",
        "(self.profile.cumulative(at) - base) / self._factor",
    ),
    HandMutant(
        "schedule",
        "the first Poisson arrival at time 0",
        'self._next_count = self._gap() if arrivals == "poisson" else 0.0',
        "self._next_count = 0.0",
    ),
    HandMutant(
        "thresholds",
        "a share shown ten times too large (1% as 10%)",
        'f"{value * 100:.3g}%"',
        'f"{value * 1000:.3g}%"',
    ),
    HandMutant(
        "replies",
        "the reply text decoded strictly (a server's Latin-1 text refused)",
        'line[4:].decode("utf-8", "replace")',
        'line[4:].decode("utf-8")',
    ),
    HandMutant(
        "replies",
        "enhanced status code checked with `and` instead of `or`",
        "if match is None or int(match.group(1)) != code // 100:",
        "if match is None and int(match.group(1)) != code // 100:",
    ),
    HandMutant(
        "replies",
        "enhanced status code of class 3 accepted",
        r"[245])\.(\d{1,3})",
        r"[2-5])\.(\d{1,3})",
    ),
    HandMutant(
        "replies",
        "enhanced status code with parts longer than three digits accepted",
        r"\.(\d{1,3})\.(\d{1,3})(?:",
        r"\.(\d+)\.(\d+)(?:",
    ),
    HandMutant(
        "replies",
        "a complete line of exactly the maximum length refused",
        "if end > self.max_line_length:",
        "if end >= self.max_line_length:",
    ),
    HandMutant(
        "replies",
        "a partial line of exactly the maximum length refused",
        "if len(buffer) > self.max_line_length:",
        "if len(buffer) >= self.max_line_length:",
    ),
    HandMutant(
        "replies",
        "a reply of one line more than the maximum accepted",
        "if len(self._lines) >= self.max_lines:",
        "if len(self._lines) > self.max_lines:",
    ),
    HandMutant(
        "replies",
        "the third digit of a reply code never checked",
        "0 <= second <= 9 and 0 <= third <= 9",
        "0 <= second <= 9",
    ),
    HandMutant(
        "client",
        "the client left at MAIL after the server refused MAIL",
        "confirmed = _IN_MAIL if positive else _READY",
        "confirmed = _IN_MAIL",
    ),
    HandMutant(
        "client",
        "a refused STARTTLS moves the client to TLS",
        "confirmed = _IN_TLS if code == 220 else confirmed",
        "confirmed = _IN_TLS",
    ),
    HandMutant(
        "client",
        "end of file with nothing pending is not reported",
        "if self._saw_eof:",
        "if self._saw_eof and self._pending:",
    ),
    HandMutant(
        "histogram",
        "an empty histogram's maximum is 0 instead of none",
        "return cls(counts, 0.0, np.inf, -np.inf)",
        "return cls(counts, 0.0, np.inf, 0.0)",
    ),
    HandMutant(
        "histogram",
        "no clamp at the top bucket",
        "    np.minimum(index, BUCKETS - 1, out=index)\n    return index",
        "    return index",
    ),
    HandMutant(
        "histogram",
        "half the precision (64 buckets per power of two)",
        "SUB_BUCKETS = 128",
        "SUB_BUCKETS = 64",
    ),
    HandMutant(
        "histogram",
        "every mean 1 s (the sum of a set's samples is their count)",
        "np.bincount(rows, weights=seconds, minlength=self.rows)",
        "np.bincount(rows, minlength=self.rows).astype(np.float64)",
    ),
    HandMutant(
        "session",
        "a reply the scenario counts as success counted as an error, and the others not",
        "if code not in self.settings.success[step]:",
        "if code in self.settings.success[step]:",
    ),
    HandMutant(
        "conversation",
        "a refused MAIL taken as accepted: its recipients sent after it",
        "        if mail.code // 100 != 2:",
        "        if mail.code // 100 == 5:",
    ),
    HandMutant(
        "reactor",
        "a write the kernel took in part taken as whole: the rest never sent",
        "        if sent == len(data):",
        "        if sent:",
    ),
    HandMutant(
        "codec",
        "a recorded content whose digest does not match read as good",
        "if hashlib.sha256(data).hexdigest() != digest:",
        "if hashlib.sha256(data).hexdigest() == '':",
    ),
    HandMutant(
        "pcap",
        "a segment's place in its stream counted from the initial sequence number itself",
        "return (seq - self.isn - 1) % _SEQ",
        "return (seq - self.isn) % _SEQ",
    ),
)


def run_hand(module: Module, rev: str | None) -> dict[str, str]:
    """Each hand mutant of the module applied alone: ``killed`` or ``SURVIVED``."""
    where = prepare(module, rev, f"{module.name}-by-hand")
    source = where / module.path
    original = source.read_text()
    results = {}
    for mutant in (m for m in HAND_MUTANTS if m.module == module.name):
        if original.count(mutant.old) != 1:
            results[mutant.what] = "not applied: the text is not in the module once"
            continue
        source.write_text(original.replace(mutant.old, mutant.new))
        tests = subprocess.run(
            [sys.executable, "-m", "pytest", *PYTEST_ARGS, *module.tests],
            cwd=where,
            env={**os.environ, "PYTHONPATH": str(where)},
            capture_output=True,
            check=False,
        )
        results[mutant.what] = "killed" if tests.returncode != 0 else "SURVIVED"
        print(f"  {results[mutant.what]}: {mutant.what}", flush=True)
    source.write_text(original)
    return results


@dataclass
class Outcome:
    module: Module
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> status
    diffs: dict[str, str] = field(default_factory=dict)  # survivor -> its diff
    seconds: float = 0.0
    source: str = "the work tree"  # or "commit 1a2b3c4"
    hand: dict[str, str] = field(default_factory=dict)  # hand mutant -> killed or SURVIVED

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.statuses.values() if s in statuses)


def _toml_list(items: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def prepare(module: Module, rev: str | None, folder: str = "") -> Path:
    """A fresh copy of the package and the tests (of the work tree, or of commit ``rev``),
    with mutmut told what to do."""
    where = WORK / (folder or module.name)
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    if rev is None:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
        shutil.copytree(ROOT / "smtpbench", where / "smtpbench", ignore=ignore)
        shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
        shutil.copytree(ROOT / "docs", where / "docs", ignore=ignore)  # some tests read it
        shutil.copy2(ROOT / "pyproject.toml", where / "pyproject.toml")
    else:
        archive = subprocess.run(
            ["git", "archive", rev, "smtpbench", "tests", "docs", "pyproject.toml"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    config = (where / "pyproject.toml").read_text()
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["smtpbench"]\n'
        'also_copy = ["docs"]\n'
        f'only_mutate = ["{module.path}"]\n'
        f"pytest_add_cli_args_test_selection = {_toml_list(module.tests)}\n"
        f"pytest_add_cli_args = {_toml_list(PYTEST_ARGS)}\n"
        "use_git_change_detection = false\n"
        "track_dependencies = false\n"
    )
    if module.fresh_import:
        config += 'process_isolation = "forkserver"\nforkserver_warmup = "none"\n'

    (where / "pyproject.toml").write_text(config)
    return where


def run(module: Module, rev: str | None) -> Outcome:
    source = _source(rev)  # before the run: the commit may move on meanwhile
    where = prepare(module, rev)
    started = time.monotonic()
    print(f"== {module.path}: mutmut in {where.relative_to(ROOT)}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", "1"], cwd=where, check=False
    )
    outcome = Outcome(module, seconds=time.monotonic() - started, source=source)
    listing = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=where,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            outcome.statuses[name] = status
    for name, status in outcome.statuses.items():
        if status != "killed":
            outcome.diffs[name] = subprocess.run(
                [sys.executable, "-m", "mutmut", "show", name],
                cwd=where,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
    return outcome


def mutated_line(diff: str) -> tuple[str, str]:
    """(function, the mutated line stripped): how a survivor is known across edits."""
    function = ""
    head = re.search(r"^# (\S+):", diff, re.MULTILINE)
    if head is not None:
        function = re.sub(r"__mutmut_\d+$", "", head.group(1).rpartition(".")[2])
    added = [
        line[1:].strip()
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]
    return function, " / ".join(added)


def load_reasons() -> dict[tuple[str, str], str]:
    table = tomllib.loads(REASONS.read_text()) if REASONS.exists() else {}
    return {
        (entry["function"], entry["line"]): entry["reason"] for entry in table.get("equivalent", [])
    }


def save(outcome: Outcome) -> None:
    """Keeps this module's outcome beside the others' (a run of one module updates its own)."""
    data = json.loads(DATA.read_text()) if DATA.exists() else {}
    data[outcome.module.name] = {
        "statuses": outcome.statuses,
        "diffs": outcome.diffs,
        "seconds": round(outcome.seconds, 1),
        "source": outcome.source,
        "hand": outcome.hand,
    }
    DATA.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def saved() -> list[Outcome]:
    data = json.loads(DATA.read_text()) if DATA.exists() else {}
    return [
        Outcome(
            m,
            data[m.name]["statuses"],
            data[m.name]["diffs"],
            data[m.name]["seconds"],
            data[m.name].get("source", "the work tree"),
            data[m.name].get("hand", {}),
        )
        for m in MODULES
        if m.name in data
    ]


def write_report(outcomes: list[Outcome], command: str) -> None:
    reasons = load_reasons()
    lines = [
        "# Mutation testing of the core modules",
        "",
        "Each module mutated alone by mutmut and tested against its own test files only",
        "(the module's unit and property tests; end-to-end tests left out). A mutant",
        '"survived" when every one of those tests still passed. Every survivor is listed',
        "below with why it is equivalent (it cannot change what the module does), as",
        "recorded in `bench/mutation_equivalent.toml`.",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, one worker.",
        "",
        "| module | tests | mutants | killed | survived | other | kill rate | time | code of |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        total = len(o.statuses)
        killed = o.count("killed", "caught by type check", "timeout")
        survived = o.count("survived")
        other = total - killed - survived
        rate = f"{100 * killed / total:.1f}%" if total else "-"
        tests = ", ".join(f"`{t}`" for t in o.module.tests if t.startswith("tests/"))
        for option in ("-m", "-k"):
            if option in o.module.tests:
                chosen = o.module.tests[o.module.tests.index(option) + 1]
                tests += f" (`{option} {chosen}`)"
        lines.append(
            f"| `{o.module.path}` | {tests} | {total} | {killed} | {survived} | {other} "
            f"| {rate} | {o.seconds:.0f} s | {o.source} |"
        )
    lines += [
        "",
        '"other" counts mutants no selected test reaches and any mutmut could not judge;',
        "they count against the kill rate. Timeouts count as killed (a mutant that loops).",
    ]
    lines += [
        "",
        "## Mistakes made by hand",
        "",
        "Real mistakes the tool does not write by itself, each applied alone to its module",
        "and run against the same tests (`HAND_MUTANTS` in `bench/mutation.py`).",
        "",
        "| module | mistake | result |",
        "|---|---|---|",
    ]
    for o in outcomes:
        for what, result in o.hand.items():
            lines.append(f"| `{o.module.path}` | {what} | {result} |")
    for o in outcomes:
        lines += ["", f"## Survivors in `{o.module.path}`", ""]
        if not o.diffs:
            lines.append("None.")
            continue
        for name, diff in sorted(o.diffs.items(), key=lambda item: _number(item[0])):
            reason = reasons.get(mutated_line(diff))
            if reason is None and o.statuses[name] == "timeout":
                reason = "Timed out: the tests hung under it and were stopped (counted as killed)."
            elif reason is None:
                reason = "NO REASON RECORDED: a test or a reason"
            body = diff.split("\n", 1)[1] if diff.startswith("#") else diff
            lines += [
                f"### `{name}` ({o.statuses[name]})",
                "",
                reason,
                "",
                "```diff",
                body.strip(),
                "```",
                "",
            ]
    OUT.write_text("\n".join(lines).rstrip() + "\n")


def _source(rev: str | None) -> str:
    if rev is None:
        return "the work tree"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    return f"commit {commit}"


def _number(name: str) -> tuple[str, int]:
    base, _, number = name.rpartition("_")
    return base, int(number) if number.isdigit() else 0


def main() -> None:
    # Mutants are made in the sources: a compiled build's modules must never stand in for
    # them (the work folders hold sources only; this says so to every test run too).
    os.environ["SMTPBENCH_INTERPRETED"] = "1"
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--module",
        action="append",
        choices=[m.name for m in MODULES],
        help="only this module (repeatable); default: all of them",
    )
    parser.add_argument(
        "--rev",
        help="mutate this commit's package and tests (git archive) instead of the work tree",
    )
    parser.add_argument(
        "--hand-only",
        action="store_true",
        help="only the mistakes made by hand (seconds); keep mutmut's last figures",
    )
    args = parser.parse_args()
    chosen = [m for m in MODULES if not args.module or m.name in args.module]
    for module in chosen:
        earlier = {o.module.name: o for o in saved()}
        if args.hand_only:
            outcome = earlier.get(module.name, Outcome(module))
        else:
            outcome = run(module, args.rev)
        print(f"== {module.path}: mistakes made by hand", flush=True)
        outcome.hand = run_hand(module, args.rev)
        save(outcome)
    outcomes = saved()
    for o in outcomes:
        total = len(o.statuses)
        killed = o.count("killed", "caught by type check", "timeout")
        print(f"{o.module.path}: {killed}/{total} killed, {o.count('survived')} survived")
    write_report(outcomes, "python bench/mutation.py --rev HEAD")
    print(f"written {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
