"""A probe report for people (rich) and for programs (JSON)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from smtpbench.probe.model import Check, Exchange, ProbeReport

_BADGES = {
    "pass": ("PASS", "bold green"),
    "warn": ("WARN", "bold yellow"),
    "fail": ("FAIL", "bold red"),
    "info": ("INFO", "bold blue"),
}


def report_json(report: ProbeReport) -> str:
    return json.dumps(report.to_dict(), indent=2, ensure_ascii=False)


def report_renderable(report: ProbeReport) -> RenderableType:
    parts: list[RenderableType] = [Text(f"smtpbench probe {report.target}\n", style="bold")]
    for check in report.checks:
        parts.append(_check(check))
    counts = report.counts()
    verdict = Text("\n")
    verdict.append(
        "FAILED" if report.failed else "OK", style="bold red" if report.failed else "bold green"
    )
    verdict.append(
        f": {counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed, "
        f"{counts['info']} notes"
    )
    parts.append(verdict)
    return Group(*parts)


def _check(check: Check) -> RenderableType:
    label, style = _BADGES[check.status]
    head = Text()
    head.append(f" {label} ", style=f"{style} reverse")
    head.append(f" {check.title}: ", style="bold")
    head.append(check.summary)
    body: list[RenderableType] = [head]
    if check.severity is not None and check.status in ("warn", "fail"):
        note = Text(f"severity {check.severity}", style="bold")
        if check.reference:
            note.append(f"; see {check.reference}", style="dim")
        body.append(Padding(note, (0, 0, 0, 7)))
    elif check.reference:
        body.append(Padding(Text(f"see {check.reference}", style="dim"), (0, 0, 0, 7)))
    variants = check.details.get("variants")
    if variants:
        for variant in variants:
            line = Text(f"{variant['ending']}: ", style="bold")
            line.append(variant["verdict"])
            body.append(Padding(line, (0, 0, 0, 7)))
    for exchange in check.exchanges:
        body.append(Padding(_exchange(exchange), (0, 0, 0, 7)))
    extensions = check.details.get("extensions")
    if extensions:
        body.append(Padding(_extensions(extensions), (0, 0, 0, 7)))
    if check.key == "tls" and "protocol" in check.details:
        body.append(Padding(_certificate(check.details), (0, 0, 0, 7)))
    return Group(*body)


def _exchange(exchange: Exchange) -> Text:
    text = Text()
    if exchange.command is not None:
        text.append("> ", style="dim")
        text.append(exchange.command + "\n", style="cyan")
    if exchange.code is None:
        text.append("< (no reply)", style="red")
        return text
    for index, line in enumerate(exchange.reply or ("",)):
        last = index == len(exchange.reply) - 1 or not exchange.reply
        separator = " " if last else "-"
        text.append("< ", style="dim")
        text.append(f"{exchange.code}{separator}{line}\n")
    seconds = f", {exchange.seconds * 1000:.1f} ms" if exchange.seconds is not None else ""
    text.append(f"  {exchange.meaning}{seconds}", style="dim italic")
    return text


def _extensions(extensions: dict[str, Any]) -> Table:
    table = Table(show_header=True, header_style="dim", box=None, pad_edge=False)
    table.add_column("extension")
    table.add_column("parameters")
    table.add_column("meaning", style="dim")
    for keyword, info in extensions.items():
        table.add_row(keyword, info["parameters"], info["meaning"])
    return table


def _certificate(details: dict[str, Any]) -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="dim")
    table.add_column()
    rows = (
        ("subject", details.get("subject")),
        ("names", ", ".join(details.get("names", ())) or None),
        ("issuer", details.get("issuer")),
        ("valid until", _expiry(details)),
        ("protocol", details.get("protocol")),
        ("cipher", details.get("cipher")),
        ("handshake", f"{details['handshake_seconds'] * 1000:.1f} ms"),
    )
    for name, value in rows:
        if value:
            table.add_row(name, str(value))
    return table


def _expiry(details: dict[str, Any]) -> str | None:
    if "not_after" not in details:
        return None
    return f"{details['not_after']} ({details['days_left']} days left)"
