"""Mutation testing of the core modules: does each module's own test file notice a change?

    pip install -e '.[test,mutation]'
    python bench/mutation.py                       # every core module, one after the other
    python bench/mutation.py --module schedule     # one of them
    python bench/mutation.py --rev HEAD            # the last commit, not the work tree

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
    # Mutants of code run at import (module-level tables) only take effect when each
    # mutant's tests import the module afresh: a fork server that preloads nothing.
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
    Module("replies", "smtpbench/protocol/replies.py", ("tests/test_protocol_replies.py",)),
    Module(
        "histogram",
        "smtpbench/metrics/histogram.py",
        ("tests/test_histogram.py",),
        fresh_import=True,
    ),
    Module("schedule", "smtpbench/engine/schedule.py", ("tests/test_schedule.py",)),
    Module(
        "thresholds",
        "smtpbench/thresholds.py",
        # The real runs and the command's exit codes are end-to-end tests: left out.
        (
            "tests/test_threshold_parsing.py",
            "tests/test_thresholds.py",
            "-m",
            "not end_to_end",
        ),
    ),
)


@dataclass
class Outcome:
    module: Module
    statuses: dict[str, str] = field(default_factory=dict)  # mutant name -> status
    diffs: dict[str, str] = field(default_factory=dict)  # survivor -> its diff
    seconds: float = 0.0
    source: str = "the work tree"  # or "commit 1a2b3c4"

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.statuses.values() if s in statuses)


def _toml_list(items: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(f'"{item}"' for item in items) + "]"


def prepare(module: Module, rev: str | None) -> Path:
    """A fresh copy of the package and the tests (of the work tree, or of commit ``rev``),
    with mutmut told what to do."""
    where = WORK / module.name
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    if rev is None:
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".hypothesis")
        shutil.copytree(ROOT / "smtpbench", where / "smtpbench", ignore=ignore)
        shutil.copytree(ROOT / "tests", where / "tests", ignore=ignore)
        shutil.copy2(ROOT / "pyproject.toml", where / "pyproject.toml")
    else:
        archive = subprocess.run(
            ["git", "archive", rev, "smtpbench", "tests", "pyproject.toml"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    config = (where / "pyproject.toml").read_text()
    config += (
        "\n[tool.mutmut]\n"
        'source_paths = ["smtpbench"]\n'
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
    where = prepare(module, rev)
    started = time.monotonic()
    print(f"== {module.path}: mutmut in {where.relative_to(ROOT)}", flush=True)
    subprocess.run(
        [sys.executable, "-m", "mutmut", "run", "--max-children", "1"], cwd=where, check=False
    )
    outcome = Outcome(module, seconds=time.monotonic() - started, source=_source(rev))
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
        lines.append(
            f"| `{o.module.path}` | {tests} | {total} | {killed} | {survived} | {other} "
            f"| {rate} | {o.seconds:.0f} s | {o.source} |"
        )
    lines += [
        "",
        '"other" counts mutants no selected test reaches and any mutmut could not judge;',
        "they count against the kill rate. Timeouts count as killed (a mutant that loops).",
    ]
    for o in outcomes:
        lines += ["", f"## Survivors in `{o.module.path}`", ""]
        if not o.diffs:
            lines.append("None.")
            continue
        for name, diff in sorted(o.diffs.items(), key=lambda item: _number(item[0])):
            reason = reasons.get(mutated_line(diff), "NO REASON RECORDED: a test or a reason")
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
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--module",
        action="append",
        choices=[m.name for m in MODULES],
        help="only this module (repeatable); default: all five",
    )
    parser.add_argument(
        "--rev",
        help="mutate this commit's package and tests (git archive) instead of the work tree",
    )
    args = parser.parse_args()
    chosen = [m for m in MODULES if not args.module or m.name in args.module]
    for module in chosen:
        save(run(module, args.rev))
    outcomes = saved()
    for o in outcomes:
        total = len(o.statuses)
        killed = o.count("killed", "caught by type check", "timeout")
        print(f"{o.module.path}: {killed}/{total} killed, {o.count('survived')} survived")
    write_report(outcomes, "python bench/mutation.py --rev HEAD")
    print(f"written {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
