"""``smtpbench shell``: the telnet session done right, as a Textual screen.

The transcript shows what was sent (C:) and each reply (S:) with the meaning of its
code and of its enhanced status code, and its time; the side panel what the server
advertised. The connection (``driver.py``) runs as a worker on the app's loop, so
the screen never waits on the network.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import events, on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input, RichLog, Static

from smtpbench.files import OutputError
from smtpbench.protocol.capabilities import EXTENSION_MEANINGS, Capabilities
from smtpbench.protocol.client import State
from smtpbench.protocol.codes import reply_meaning
from smtpbench.protocol.enhanced import enhanced_meaning
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.sasl import MECHANISMS
from smtpbench.protocol.steps import Step
from smtpbench.recording import write_recording
from smtpbench.shell.completion import CommandSuggester
from smtpbench.shell.driver import Entry, ShellConnection, ShellSettings
from smtpbench.shell.screens import (
    Composed,
    ComposerScreen,
    HelpScreen,
    PathScreen,
    Secret,
    SecretScreen,
)

HISTORY_LIMIT = 500
OFFERS_FROM = 100  # columns from which the side panel shows what the server offers
TRANSCRIPT_LIMIT = 10_000  # lines kept (the screen's log keeps as many)
INDENT = 12  # "   1.349 S: ": the time and who spoke, then the text
_MAIL = re.compile(r"^\s*MAIL\s+FROM:\s*<([^>]*)>", re.IGNORECASE)
_RCPT = re.compile(r"^\s*RCPT\s+TO:\s*<([^>]*)>", re.IGNORECASE)
_CODE_STYLES = {2: "green", 3: "cyan", 4: "yellow", 5: "red"}


@dataclass(frozen=True, slots=True)
class RepeatRequest:
    """Leave the shell and replay ``path`` ``count`` times at ``rate`` sessions a second;
    ``user`` and ``password``: what ``/auth`` logged in with, for the replay's AUTH (the
    saved session leaves them out)."""

    path: str
    count: int
    rate: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)


class CommandLine(Input):
    """The input line: history on up and down, Tab takes the completion."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "history(-1)", "History", show=False),
        Binding("down", "history(1)", "History", show=False),
        Binding("tab", "complete", "Complete", show=False),
    ]

    def __init__(self, suggester: CommandSuggester) -> None:
        super().__init__(placeholder="type an SMTP command; /help for the shell's own", id="line")
        self.suggester = suggester
        self.history: list[str] = []
        self._at = 0

    def remember(self, line: str) -> None:
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
            del self.history[:-HISTORY_LIMIT]
        self._at = len(self.history)

    def action_history(self, direction: int) -> None:
        if not self.history:
            return
        self._at = max(0, min(len(self.history), self._at + direction))
        self.value = self.history[self._at] if self._at < len(self.history) else ""
        self.cursor_position = len(self.value)

    async def action_submit(self) -> None:
        # Cleared here, not when the app reads the message: keys typed meanwhile (a paste,
        # a fast typist) start the next line instead of joining this one.
        value = self.value
        self.value = ""
        self.post_message(self.Submitted(self, value))

    def _on_paste(self, event: events.Paste) -> None:
        """Several lines pasted are sent one by one, as if typed (a whole message after
        354); what follows the last line break stays in the line."""
        lines = event.text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        if len(lines) == 1:
            super()._on_paste(event)
            return
        event.stop()
        lines[0] = self.value + lines[0]
        for line in lines[:-1]:
            self.post_message(self.Submitted(self, line))
        self.value = lines[-1]
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        self.cursor_position = len(self.value)
        self.action_cursor_right()


def reply_lines(entry: Entry, capabilities: Capabilities) -> list[Text]:
    """A reply as the server sent it, EHLO keywords explained, then what its codes mean."""
    reply = entry.reply
    assert reply is not None
    style = _CODE_STYLES.get(reply.code // 100, "red")
    out = []
    last = len(reply.lines) - 1
    hello = entry.step in (Step.EHLO, Step.LHLO) and reply.is_positive
    for index, line in enumerate(reply.lines):
        text = Text(f"{_at(entry.at)} S: ", style="dim")
        text.append(f"{reply.code}{' ' if index == last else '-'}{line}", style=style)
        if hello and index > 0:
            keyword = line.split(None, 1)[0].upper() if line.split() else ""
            meaning = EXTENSION_MEANINGS.get(keyword.partition("=")[0])
            if meaning:
                text.append(f"  {meaning}", style="dim italic")
        out.append(text)
    out.append(_decoded(reply, entry.seconds, entry.step))
    return out


def _decoded(reply: Reply, seconds: float | None, step: Step | None) -> Text:
    text = Text(" " * INDENT, style="dim")
    if seconds is not None:
        what = step.label if step is not None else "reply"
        text.append(f"{what} {seconds * 1000:.1f} ms · ", style="bold")
    text.append(f"{reply.code} {reply_meaning(reply.code)}", style="italic")
    if reply.enhanced:
        text.append(f" · {reply.enhanced} {enhanced_meaning(reply.enhanced)}", style="italic")
    return text


def _at(seconds: float) -> str:
    return f"{seconds:8.3f}"


class ShellApp(App[RepeatRequest | None]):
    CSS_PATH = "shell.tcss"
    TITLE = "smtpbench shell"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        Binding("f2", "toggle_lax", "Lax"),
        Binding("f3", "compose", "Compose"),
        Binding("f5", "save", "Save"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(
        self,
        settings: ShellSettings,
        *,
        lax: bool = False,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        name_shown: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings
        self.lax = lax
        self.wall_clock = wall_clock
        self.connection = ShellConnection(
            settings, self._entry, clock=clock, wall_clock=wall_clock, changed=self._changed
        )
        self.name_shown = name_shown or self.connection.target
        self.saved: str | None = None
        self.sender = ""
        self.recipients: list[str] = []
        self.lines: list[str] = []  # the transcript as plain text, unwrapped

    @property
    def main_screen(self) -> Screen[object]:
        """The session's screen, under any dialog that is open."""
        return self.screen_stack[0]

    def compose(self) -> ComposeResult:
        yield Static(id="status")
        with Horizontal(id="main"):
            yield RichLog(
                id="transcript",
                wrap=True,
                markup=False,
                highlight=False,
                max_lines=TRANSCRIPT_LIMIT,
                min_width=20,  # not the default 78: an 80-column terminal has less room
            )
            yield Static(id="offers")
        yield CommandLine(CommandSuggester(lambda: self.connection.capabilities))
        yield Footer()

    def on_mount(self) -> None:
        self.main_screen.query_one("#transcript", RichLog).border_title = "Session"
        self.main_screen.query_one("#offers", Static).border_title = "Server offers"
        self._changed()
        self.main_screen.query_one(CommandLine).focus()
        self.run_worker(self.connection.run(), name="connection", exclusive=False)
        self.set_interval(1.0, self.connection.overdue)

    def on_resize(self, event: events.Resize) -> None:
        # Under 100 columns the transcript needs the room; the EHLO reply shows the same.
        self.main_screen.query_one("#offers", Static).display = event.size.width >= OFFERS_FROM

    # -- what the connection says ---------------------------------------------------

    def _write(self, text: Text) -> None:
        """One transcript line; what wraps lines up under its text, not under the time."""
        self.lines.append(text.plain)
        del self.lines[:-TRANSCRIPT_LIMIT]
        row = Table.grid()
        row.add_column(width=INDENT, no_wrap=True)
        row.add_column(ratio=1)
        row.add_row(text[:INDENT], text[INDENT:])
        self.main_screen.query_one("#transcript", RichLog).write(row)

    def _entry(self, entry: Entry) -> None:
        if entry.kind == "reply":
            for line in reply_lines(entry, self.connection.capabilities):
                self._write(line)
            return
        text = Text(f"{_at(entry.at)} ", style="dim")
        if entry.kind == "sent":
            text.append("C: ", style="dim")
            text.append(entry.text, style="bold")
        elif entry.kind == "error":
            text.append("!! " + entry.text, style="bold red")
        elif entry.kind == "certificate":
            seconds = f" ({entry.seconds * 1000:.1f} ms)" if entry.seconds is not None else ""
            text.append("   " + entry.text + seconds, style="bold green")
            self._write(text)
            for label, value in entry.details:
                row = Text(" " * INDENT + f"{label:12} ", style="dim")
                row.append(value)
                self._write(row)
            return
        else:
            text.append("   " + entry.text, style="italic")
        self._write(text)

    def _changed(self) -> None:
        if not self.is_mounted:
            return
        conn = self.connection
        parts = [f"[b]{self.name_shown}[/b]"]
        if conn.closed:
            parts.append("[red]closed[/red]")
        elif not conn.connected:
            parts.append("connecting")
        else:
            parts.append(f"state {conn.state.name}")
        parts.append(f"[green]{conn.tls_version}[/green]" if conn.tls else "no TLS")
        parts.append("[yellow b]LAX: sent as typed[/]" if self.lax else "strict")
        if self.saved:
            parts.append(f"saved {self.saved}")
        self.main_screen.query_one("#status", Static).update("  ·  ".join(parts))
        self.main_screen.query_one("#offers", Static).update(self._offers(conn.capabilities))
        line = self.main_screen.query_one(CommandLine)
        line.password = conn.in_sasl
        if conn.in_content:
            line.placeholder = "message line (dot-stuffed); . alone ends it; F3 composes"
        elif conn.in_sasl:
            line.placeholder = "SASL response (base64), hidden; * cancels"
        else:
            line.placeholder = "type an SMTP command; /help for the shell's own"

    def _offers(self, caps: Capabilities) -> Text:
        if not caps.keywords:
            return Text("nothing yet: say EHLO", style="dim italic")
        text = Text()
        text.append(caps.greeting + "\n", style="bold")
        for keyword, params in caps.keywords.items():
            text.append(keyword, style="cyan")
            if params:
                text.append(" " + params)
            text.append("\n")
        return text

    # -- what the user does ---------------------------------------------------------

    @on(Input.Submitted, "#line")
    async def submitted(self, event: Input.Submitted) -> None:
        line = self.main_screen.query_one(CommandLine)
        text = event.value
        if text.startswith("/") and not self.connection.in_content:
            line.remember(text)
            await self._shell_command(text)
            return
        conn = self.connection
        if not conn.in_sasl:
            line.remember(_history_form(text))
        self._note_envelope(text)
        self.run_worker(conn.send_line(text, lax=self.lax), group="send")

    def _note_envelope(self, text: str) -> None:
        mail = _MAIL.match(text)
        if mail:
            self.sender, self.recipients = mail.group(1), []
        rcpt = _RCPT.match(text)
        if rcpt:
            self.recipients.append(rcpt.group(1))

    async def _shell_command(self, text: str) -> None:
        words = text.split()
        verb = words[0].lower()
        if verb == "/help":
            self.action_help()
        elif verb == "/quit":
            await self.action_quit()
        elif verb == "/lax":
            if len(words) > 1 and words[1].lower() not in ("on", "off"):
                self._say("/lax: on or off", error=True)
                return
            self.lax = (words[1].lower() == "on") if len(words) > 1 else not self.lax
            self._say(f"lax mode {'on: lines go out as typed' if self.lax else 'off'}")
            self._changed()
        elif verb == "/compose":
            self.action_compose()
        elif verb == "/auth":
            if len(words) != 3 or words[1].upper() not in MECHANISMS:
                self._say(f"/auth MECHANISM USER, with one of {', '.join(MECHANISMS)}", error=True)
                return
            self.push_screen(SecretScreen(words[1].upper(), words[2]), self._got_secret)
        elif verb == "/save":
            if len(words) != 2:
                self._say("/save FILE", error=True)
                return
            self.save(words[1])
        elif verb == "/repeat":
            self._repeat(words[1:])
        else:
            self._say(f"{words[0]}: not a shell command (/help lists them)", error=True)

    def _got_secret(self, secret: Secret | None) -> None:
        if secret is None:
            self._say("AUTH cancelled")
            return
        self.run_worker(
            self.connection.auth(secret.mechanism, secret.username, secret.secret), group="send"
        )

    def _say(self, text: str, *, error: bool = False) -> None:
        self._entry(Entry("error" if error else "note", self.connection._now(), text))

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_toggle_lax(self) -> None:
        self.lax = not self.lax
        self._say(f"lax mode {'on: lines go out as typed' if self.lax else 'off'}")
        self._changed()

    def action_compose(self) -> None:
        screen = ComposerScreen(self.sender, tuple(self.recipients))
        self.push_screen(screen, self._send_composed)

    def _send_composed(self, composed: Composed | None) -> None:
        if composed is None:
            return
        self.sender, self.recipients = composed.sender, list(composed.recipients)
        self.run_worker(
            self.connection.send_message(
                composed.sender, list(composed.recipients), composed.content
            ),
            group="send",
        )

    def action_save(self) -> None:
        self.push_screen(PathScreen(self.saved or self.default_path()), self._save_to)

    def _save_to(self, path: str | None) -> None:
        if path:
            self.save(path)

    def default_path(self) -> str:
        stamp = datetime.fromtimestamp(self.wall_clock(), UTC).strftime("%Y%m%d-%H%M%S")
        return f"shell-{stamp}.jsonl"

    def save(self, path: str) -> bool:
        try:
            write_recording(path, self.connection.recording())
        except (OutputError, ValueError) as err:
            self._say(f"not saved: {err}", error=True)
            return False
        self.saved = path
        self._say(f"saved to {path}: smtpbench replay {path}")
        self._changed()
        return True

    def _repeat(self, args: list[str]) -> None:
        usage = "/repeat N RATE [FILE]: N sessions at RATE a second (e.g. /repeat 100 10)"
        if len(args) not in (2, 3) or not args[0].isdigit() or int(args[0]) < 1:
            self._say(usage, error=True)
            return
        try:
            from smtpbench.units import parse_rate

            parse_rate(args[1])
        except ValueError as err:
            self._say(f"/repeat: RATE: {err}", error=True)
            return
        path = args[2] if len(args) == 3 else self.saved or self.default_path()
        if self.save(path):
            login = self.connection.login
            user, password = login if login is not None else (None, None)
            self.exit(RepeatRequest(path, int(args[0]), args[1], user, password))

    async def action_quit(self) -> None:
        await self.connection.close()
        self.exit(None)


def _history_form(text: str) -> str:
    """What the history keeps of a line: an AUTH line without its credentials."""
    words = text.split()
    if words and words[0].upper() == "AUTH":
        return " ".join(words[:2])
    return text


__all__ = ["RepeatRequest", "ShellApp", "State"]
