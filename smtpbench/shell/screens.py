"""The shell's dialogs: the secret for an AUTH helper, the message composer, help."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static, TextArea

from smtpbench.shell.compose import ComposeError, Draft, addresses, attachment_paths, build_message

HELP = """\
[b]Typing[/b]
  Type SMTP commands as in a telnet session; Enter sends the line with CRLF.
  Tab (or the right arrow) takes the grey completion: commands, and the
  extensions the server advertised in its EHLO reply (AUTH mechanisms, SIZE=,
  BODY=, NOTIFY=...). Up and down walk the history.
  After 354, lines are the message: dot-stuffed as sent, a lone . ends it.
  STARTTLS answered 220 upgrades this connection and shows the certificate.

[b]Shell commands[/b]
  /auth MECHANISM USER   PLAIN, LOGIN, CRAM-MD5 or XOAUTH2: asks for the password
                         (the token for XOAUTH2) and does the base64; the secret
                         is never shown, kept in the history or recorded
  /compose               the message composer (F3): headers, body, attachments
  /lax                   lax mode on or off (F2): lines go out exactly as typed,
                         \\r \\n \\t \\xHH \\\\ as those bytes, ended by a bare LF
  /save FILE             save the session as a recording (smtpbench replay FILE)
  /repeat N RATE [FILE]  save it, leave the shell and replay it N times at RATE
                         sessions a second, on the dashboard
  /quit                  leave (Ctrl+Q)

[b]Reading it[/b]
  C: what was sent, S: what the server said, each reply with the meaning of its
  code and its enhanced status code, and the time from sending to the reply.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,f1", "close", "Close")]

    def compose(self) -> ComposeResult:
        scroll = VerticalScroll(Static(Text.from_markup(HELP)), id="help")
        scroll.border_title = "smtpbench shell"
        scroll.border_subtitle = "esc to close"
        yield scroll

    def action_close(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class Secret:
    mechanism: str
    username: str
    secret: str


class SecretScreen(ModalScreen[Secret | None]):
    """Asks for the password (or token) of an AUTH helper, masked."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, mechanism: str, username: str) -> None:
        super().__init__()
        self.mechanism = mechanism
        self.username = username

    def compose(self) -> ComposeResult:
        what = "token" if self.mechanism == "XOAUTH2" else "password"
        with Vertical(id="secret-box"):
            yield Label(f"AUTH {self.mechanism} as {self.username}: the {what}")
            yield Input(password=True, id="secret")
            yield Label("Enter sends it, Esc cancels; it is never shown or kept", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(Secret(self.mechanism, self.username, event.value))

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True, slots=True)
class Composed:
    sender: str
    recipients: tuple[str, ...]
    content: bytes


class ComposerScreen(ModalScreen[Composed | None]):
    """Headers, body and attachments; Send makes the message and hands it back."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "send", "Send"),
    ]

    def __init__(self, sender: str = "", recipients: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.sender = sender
        self.recipients = recipients

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="composer") as box:
            box.border_title = "Message"
            box.border_subtitle = "Ctrl+S sends, Esc cancels"
            with Horizontal(classes="field"):
                yield Label("From", classes="name")
                yield Input(self.sender, placeholder="sender@example.org", id="from")
            with Horizontal(classes="field"):
                yield Label("To", classes="name")
                yield Input(", ".join(self.recipients), placeholder="a@example.net", id="to")
            with Horizontal(classes="field"):
                yield Label("Subject", classes="name")
                yield Input(id="subject")
            yield Label("Other headers, one Name: value a line")
            yield TextArea(id="headers", classes="headers")
            yield Label("Body")
            yield TextArea(id="body", classes="body")
            with Horizontal(classes="field"):
                yield Label("Attach", classes="name")
                yield Input(placeholder="files, separated by commas", id="attachments")
            yield Static("", id="compose-error")
            with Horizontal(id="buttons"):
                yield Button("Send", variant="primary", id="send")
                yield Button("Cancel", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "send":
            self.action_send()
        else:
            self.action_cancel()

    def action_send(self) -> None:
        draft = Draft(
            sender=self.query_one("#from", Input).value.strip().strip("<>"),
            recipients=addresses(self.query_one("#to", Input).value),
            subject=self.query_one("#subject", Input).value,
            headers=self.query_one("#headers", TextArea).text,
            body=self.query_one("#body", TextArea).text,
            attachments=attachment_paths(self.query_one("#attachments", Input).value),
        )
        try:
            content = build_message(draft)
        except ComposeError as err:
            self.query_one("#compose-error", Static).update(Text(str(err), style="bold red"))
            return
        self.dismiss(Composed(draft.sender, draft.recipients, content))

    def action_cancel(self) -> None:
        self.dismiss(None)


class PathScreen(ModalScreen[str | None]):
    """Asks where to save the recording."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: str) -> None:
        super().__init__()
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(id="secret-box"):
            yield Label("Save the session as a recording: file name")
            yield Input(self.default, id="path")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
