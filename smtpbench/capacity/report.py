"""What a capacity search found, for people and for files: the conclusion (the highest
rate that held, the first that did not, what broke it, and whether the server or this
machine was the limit), the step table, ``capacity.json``, ``capacity-steps.csv`` and
the plot ``capacity.png`` (each command's p99 against the rate asked for)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from smtpbench.capacity.driver import Progress
from smtpbench.capacity.verdict import StepResult
from smtpbench.files import write_atomically
from smtpbench.units import format_duration

CAPACITY_FILE = "capacity.json"
STEPS_FILE = "capacity-steps.csv"
PLOT_FILE = "capacity.png"
# Commands drawn in the plot when timed, in session order; then the message as a whole.
PLOTTED = ("connect", "banner", "EHLO", "MAIL", "RCPT", "DATA end", "BDAT", "QUIT")


@dataclass(frozen=True, slots=True)
class Conclusion:
    held: float | None  # the highest rate that held
    broke: float | None  # the lowest rate that did not
    broken_step: StepResult | None
    limit: str  # "server", "machine", "above the ramp", "none held", "not reached"
    sentence: str

    @property
    def broken_by(self) -> list[str]:
        if self.broken_step is None:
            return []
        return [str(r.threshold) for r in self.broken_step.broken_by]


def _breaks(step: StepResult) -> str:
    return ", ".join(f"{r.threshold} (measured {r.measured_text})" for r in step.broken_by)


def conclude(progress: Progress) -> Conclusion:
    search = progress.search
    steps = progress.steps
    held, broke = search.held, search.broke
    broken = next((s for s in steps if not s.held and s.rate == broke), None)
    stopped = " (stopped before the search was over)" if progress.stopped else ""
    if not steps:
        return Conclusion(None, None, None, "not reached", "stopped before the first step ended")
    if broken is None:
        if search.top_held:
            return Conclusion(
                held,
                None,
                None,
                "above the ramp",
                f"every step held, up to {held:g}/s, the top of the ramp: the limit lies "
                f"higher (raise --to){stopped}",
            )
        return Conclusion(
            held,
            None,
            None,
            "not reached",
            f"every step held, up to {held:g}/s{stopped}" if held else f"no step ended{stopped}",
        )
    if broken.tool_limited:
        limit = "machine"
        blame = f"at {broke:g}/s this machine, not the server, was the limit: " + "; ".join(
            broken.tool_signs
        )
        blame += (
            f". The server held at least {held:g}/s; measure beyond it from a machine with "
            "CPU to spare"
            if held is not None
            else ". Measure from a machine with CPU to spare"
        )
    else:
        limit = "server"
        blame = (
            "the server was the limit (this machine kept up: the engine neither saturated "
            "nor fell behind)"
        )
        if broken.notes:
            blame += (
                "; note: " + "; ".join(broken.notes) + ", and a server on this machine shared them"
            )
    if held is None:
        sentence = f"no step held: the first, {broke:g}/s, broke {_breaks(broken)}; {blame}"
        return Conclusion(
            None, broke, broken, limit if limit == "machine" else "none held", sentence + stopped
        )
    sentence = (
        f"highest rate that held: {held:g}/s; first that did not: {broke:g}/s, broken by "
        f"{_breaks(broken)}; {blame}{stopped}"
    )
    return Conclusion(held, broke, broken, limit, sentence)


def _ms(value: float | None) -> str:
    return format_duration(value) if value is not None else "-"


def _server_label(steps: Sequence[StepResult]) -> str:
    for label in ("DATA end", "RCPT", "MAIL", "EHLO", "banner"):
        if any(label in s.p99 for s in steps):
            return label
    return "DATA end"


def steps_table(progress: Progress) -> Table:
    steps = progress.steps
    label = _server_label(steps)
    table = Table(title="Capacity search: one row per step", title_justify="left")
    for name, justify in (
        ("step", "right"),
        ("rate", "right"),
        ("started/s", "right"),
        ("accepted/s", "right"),
        (f"{label} p50", "right"),
        (f"{label} p99", "right"),
        ("start lag p99", "right"),
        ("engine CPU", "right"),
        ("waiting for CPU", "right"),
        ("in flight", "right"),
        ("result", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for step in steps:
        if step.held:
            result = Text("held", style="green")
        else:
            result = Text(
                "BROKE: " + ", ".join(str(r.threshold) for r in step.broken_by), "bold red"
            )
        if step.tool_signs:
            result.append("  (this machine: " + "; ".join(step.tool_signs) + ")", style="yellow")
        if step.notes:
            result.append("  (" + "; ".join(step.notes) + ")", style="dim")
        cpu = step.machine.cpu_share
        table.add_row(
            str(step.index),
            f"{step.rate:g}/s",
            f"{step.achieved:,.1f}",
            f"{step.messages:,.1f}",
            _ms(step.p50.get(label)),
            _ms(step.p99.get(label)),
            _ms(step.start_lag_p99),
            f"{cpu:.0%}" if cpu is not None else "-",
            f"{wait:.0%}" if (wait := step.machine.cpu_wait) is not None else "-",
            f"{step.machine.peak_in_flight:,}",
            result,
        )
    return table


def capacity_data(progress: Progress, conclusion: Conclusion) -> dict[str, Any]:
    plan = progress.plan
    ramp = plan.ramp
    return {
        "held": conclusion.held,
        "broke": conclusion.broke,
        "broken_by": conclusion.broken_by,
        "limit": conclusion.limit,
        "conclusion": conclusion.sentence,
        "stopped": progress.stopped,
        "plan": {
            "from": ramp.start,
            "step": ramp.step,
            "to": ramp.top,
            "refine": ramp.refine,
            "step_duration": plan.step_duration,
            "settle": plan.settle,
            "reach": plan.reach,
            "criteria": [str(t) for t in plan.criteria],
        },
        "steps": [step.as_dict() for step in progress.steps],
    }


def steps_csv(steps: Sequence[StepResult]) -> str:
    labels = [label for label in PLOTTED if any(label in s.p99 for s in steps)]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "step",
            "rate",
            "started_per_s",
            "accepted_per_s",
            "held",
            "broken_by",
            "start_lag_p99_s",
            "engine_cpu",
            "engine_cpu_wait",
            "peak_in_flight",
            *(f"p99_{label.replace(' ', '_')}_s" for label in labels),
            "this_machine",
        ]
    )
    for s in steps:
        writer.writerow(
            [
                s.index,
                f"{s.rate:g}",
                f"{s.achieved:.3f}",
                f"{s.messages:.3f}",
                "yes" if s.held else "no",
                "; ".join(str(r.threshold) for r in s.broken_by),
                "" if s.start_lag_p99 is None else f"{s.start_lag_p99:.6f}",
                "" if s.machine.cpu_share is None else f"{s.machine.cpu_share:.3f}",
                "" if s.machine.cpu_wait is None else f"{s.machine.cpu_wait:.3f}",
                s.machine.peak_in_flight,
                *("" if label not in s.p99 else f"{s.p99[label]:.6f}" for label in labels),
                "; ".join((*s.tool_signs, *s.notes)),
            ]
        )
    return out.getvalue()


def write_capacity(folder: Path, progress: Progress, conclusion: Conclusion) -> None:
    """capacity.json, capacity-steps.csv and capacity.png in the run's results folder."""
    text = json.dumps(capacity_data(progress, conclusion), indent=2, allow_nan=False)
    write_atomically(folder / CAPACITY_FILE, text + "\n")
    write_atomically(folder / STEPS_FILE, steps_csv(progress.steps))
    if progress.steps:
        from smtpbench.capacity.plot import capacity_figure_png

        data = capacity_figure_png(progress.steps, conclusion.held, conclusion.broke)
        write_atomically(folder / PLOT_FILE, data)
