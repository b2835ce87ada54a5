"""``smtpbench shell`` driven with Textual's Pilot against our sink on loopback: whole
sessions, STARTTLS mid-session, AUTH with the secret kept out of sight, the composer,
lax mode's bare LF as the server received it, recordings that ``replay`` reads, the
hand-over to a replay run, a silent server, and the command without a terminal."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, TextArea

from smtpbench.commands.shell import repeat
from smtpbench.protocol.client import State
from smtpbench.shell.app import CommandLine, RepeatRequest, ShellApp
from smtpbench.shell.screens import ComposerScreen, SecretScreen
from tests.esmtp import make_certs
from tests.misbehaving import misbehaving
from tests.shell_helpers import say, shell_app, sink_in_thread, transcript, type_line, wait_for

DONE = "ms · 250 Requested mail action okay, completed"  # a 250's decoded line
Scenario = Callable[[ShellApp, Pilot[Any]], Awaitable[None]]


def drive(app: ShellApp, scenario: Scenario, size: tuple[int, int] = (120, 40)) -> Any:
    async def main() -> Any:
        async with app.run_test(size=size) as pilot:
            await wait_for(pilot, lambda: "220" in transcript(app), "the banner")
            await scenario(app, pilot)
        return app.return_value

    return asyncio.run(main())


def test_a_whole_session_shows_every_reply_decoded() -> None:
    with sink_in_thread() as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await say(pilot, "MAIL FROM:<alice@example.org>", "2.1.0 Other address status")
            await say(pilot, "RCPT TO:<bob@example.net>", "2.1.5 Destination address valid")
            await say(pilot, "DATA", "354 Start mail input")
            for line in ("Subject: typed", "", "first line", ".starts with a dot"):
                await type_line(pilot, line)
            await say(pilot, ".", "DATA end")
            await say(pilot, "QUIT", "221 Service closing transmission channel")
            await wait_for(pilot, lambda: app.connection.closed, "the connection to close")

        drive(app, session)
        shown = transcript(app)
        # Each reply: as sent, then what its code and enhanced code mean, with its time.
        assert "S: 220 sink.smtpbench.test" in shown
        assert "banner " in shown and "220 Service ready" in shown
        assert "250-PIPELINING  Takes several commands before replying (RFC 2920)" in shown
        assert "MAIL " in shown and " ms · 250 Requested mail action okay" in shown
        assert "354 Start mail input; end with <CRLF>.<CRLF>" in shown
        assert "DATA end " in shown and "2.0.0 Other undefined status" in shown
        assert "C: .starts with a dot" in shown  # shown as typed, sent stuffed
        [message] = sink.messages
        assert message.data == b"Subject: typed\r\n\r\nfirst line\r\n.starts with a dot\r\n"
        assert (message.mail_from, message.recipients) == (
            "alice@example.org",
            ("bob@example.net",),
        )


def test_starttls_upgrades_the_live_connection_and_shows_the_certificate(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    context = ssl.create_default_context(cafile=certs.ca_file)
    with sink_in_thread(tls_cert=certs.server_cert, tls_key=certs.server_key) as sink:
        app = shell_app(sink.address[1], context=context)

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            assert app.connection.capabilities.starttls
            await say(pilot, "STARTTLS", "TLS established")
            await wait_for(pilot, lambda: app.connection.tls is not None, "TLS")
            await say(pilot, "EHLO client.example", DONE)
            assert not app.connection.capabilities.starttls  # not offered twice
            await say(pilot, "MAIL FROM:<a@example.org>", "2.1.0")
            await say(pilot, "RCPT TO:<b@example.net>", "2.1.5")
            await say(pilot, "DATA", "354 Start")
            await type_line(pilot, "Subject: over TLS")
            await say(pilot, ".", "DATA end")

        drive(app, session)
        shown = transcript(app)
        assert "names        localhost, 127.0.0.1, sink.smtpbench.test" in shown
        assert "issuer" in shown and "protocol     TLSv1.3" in shown
        assert "the session starts over" in shown
        [message] = sink.messages
        assert message.tls and message.data == b"Subject: over TLS\r\n"


def test_starttls_with_a_certificate_not_trusted_says_so(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    with sink_in_thread(tls_cert=certs.server_cert, tls_key=certs.server_key) as sink:
        app = shell_app(sink.address[1], context=ssl.create_default_context())

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await say(pilot, "STARTTLS", "certificate not accepted")
            await wait_for(pilot, lambda: app.connection.closed, "the connection to close")

        drive(app, session)
        assert "the connection is closed" in transcript(app)


def test_auth_plain_keeps_the_secret_off_the_screen_the_history_and_the_recording(
    tmp_path: Path,
) -> None:
    secret = "s3cret-Passw0rd"
    encoded = base64.b64encode(b"\0alice\0" + secret.encode()).decode()
    saved = tmp_path / "auth.jsonl"
    with sink_in_thread(credentials=(("alice", secret),)) as sink:
        app = shell_app(sink.address[1])
        screens: list[str] = []
        history: list[str] = []

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await type_line(pilot, "/auth PLAIN alice")
            await wait_for(pilot, lambda: isinstance(app.screen, SecretScreen), "the prompt")
            field = app.screen.query_one("#secret", Input)
            assert field.password
            await pilot.press(*secret)
            await pilot.press("enter")
            await wait_for(pilot, lambda: "235" in transcript(app), "235")
            # A raw AUTH line typed by hand is hidden the same way.
            await say(pilot, f"AUTH PLAIN {encoded}", "503")
            await say(pilot, "MAIL FROM:<alice@example.org>", "2.1.0")
            await say(pilot, "RCPT TO:<bob@example.net>", "2.1.5")
            await say(pilot, "DATA", "354 Start")
            await say(pilot, ".", "DATA end")
            await type_line(pilot, f"/save {saved}")
            await wait_for(pilot, saved.exists, "the recording")
            screens.append(app.export_screenshot())
            history.extend(app.main_screen.query_one(CommandLine).history)

        drive(app, session)
        shown = transcript(app)
        assert "C: AUTH PLAIN (credentials hidden)" in shown
        assert "235 Authentication succeeded" in shown
        assert "/auth PLAIN alice" in history and "AUTH PLAIN" in history
        for place in (shown, "\n".join(history), saved.read_text(), *screens):
            assert secret not in place and encoded not in place
        [message] = sink.messages
        assert message.authenticated


def test_the_composer_sends_headers_body_and_attachments_dot_stuffed(tmp_path: Path) -> None:
    attachment = tmp_path / "report.csv"
    attachment.write_text("day,messages\n1,42\n")
    with sink_in_thread() as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await pilot.press("f3")
            await wait_for(pilot, lambda: isinstance(app.screen, ComposerScreen), "the composer")
            screen = app.screen
            screen.query_one("#from", Input).value = "alice@example.org"
            screen.query_one("#to", Input).value = "bob@example.net, carol@example.net"
            screen.query_one("#subject", Input).value = "Composed"
            screen.query_one("#headers", TextArea).text = "X-Test: yes"
            screen.query_one("#body", TextArea).text = "Hello\n.a line with a dot\n.\nend"
            screen.query_one("#attachments", Input).value = str(attachment)
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: "DATA end" in transcript(app), "the message's reply")

        drive(app, session)
        shown = transcript(app)
        assert "C: MAIL FROM:<alice@example.org>" in shown
        assert "C: RCPT TO:<carol@example.net>" in shown
        assert "dot-stuffed" in shown
        [message] = sink.messages
        assert message.recipients == ("bob@example.net", "carol@example.net")
        assert message.data is not None
        data = message.data.decode()
        assert "Subject: Composed\r\n" in data and "X-Test: yes\r\n" in data
        # The server unstuffed what the composer stuffed: the lone dot did not end it.
        assert "\r\nHello\r\n.a line with a dot\r\n.\r\nend\r\n" in data
        assert 'filename="report.csv"' in data
        assert base64.b64encode(b"day,messages\n1,42\n").decode() in data


def test_the_composer_names_a_missing_attachment(tmp_path: Path) -> None:
    with sink_in_thread() as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await pilot.press("f3")
            await wait_for(pilot, lambda: isinstance(app.screen, ComposerScreen), "the composer")
            screen = app.screen
            screen.query_one("#from", Input).value = "a@example.org"
            screen.query_one("#to", Input).value = "b@example.net"
            screen.query_one("#attachments", Input).value = str(tmp_path / "missing.pdf")
            await pilot.press("ctrl+s")
            await pilot.pause()
            error = screen.query_one("#compose-error")
            assert "missing.pdf: No such file or directory" in str(error.render())
            assert isinstance(app.screen, ComposerScreen)  # still open, nothing sent

        drive(app, session)
        assert sink.messages == []


def test_lax_mode_sends_a_bare_lf_as_typed() -> None:
    with sink_in_thread() as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await pilot.press("f2")
            assert app.lax
            await say(pilot, "MAIL FROM:<a@example.org>", "2.1.0")
            await say(pilot, "RCPT TO:<b@example.net>", "2.1.5")
            await say(pilot, "DATA", "354 Start")
            await type_line(pilot, "Subject: lax")
            await type_line(pilot, "bare LF\\x41")
            # A lone dot ended by a bare LF is no end of data for this server ...
            await type_line(pilot, ".")
            await pilot.pause(0.3)
            assert sink.messages == []
            # ... CRLF "." CRLF is.
            await say(pilot, "\\r\\n.\\r", "DATA end")

        drive(app, session)
        [message] = sink.messages
        assert message.data == b"Subject: lax\nbare LFA\n.\n\r\n"
        assert "C: (lax) MAIL FROM:<a@example.org>" in transcript(app)


def test_a_saved_session_is_a_recording_replay_reads(tmp_path: Path) -> None:
    saved = tmp_path / "session.jsonl"
    with sink_in_thread() as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await say(pilot, "MAIL FROM:<a@example.org>", "2.1.0")
            await say(pilot, "RCPT TO:<b@example.net>", "2.1.5")
            await say(pilot, "DATA", "354 Start")
            await type_line(pilot, "Subject: recorded")
            await say(pilot, ".", "DATA end")
            await say(pilot, "QUIT", "221")
            await type_line(pilot, f"/save {saved}")
            await wait_for(pilot, saved.exists, "the recording")

        drive(app, session)
    header, line = saved.read_text().splitlines()
    assert json.loads(header)["source"] == "shell"
    steps = json.loads(line)["steps"]
    assert [step.get("line", step["kind"]) for step in steps] == [
        "banner",
        "EHLO client.example",
        "MAIL FROM:<a@example.org>",
        "RCPT TO:<b@example.net>",
        "DATA",
        "data",
        "QUIT",
    ]
    assert steps[5]["content"]["text"] == "Subject: recorded\r\n"
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "replay", "--dry-run", str(saved)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "1 = 1 scheduled" in done.stdout
    assert "EHLO 1" in done.stdout and "out of order" in done.stdout


def test_repeat_saves_and_hands_the_session_to_a_replay_run(tmp_path: Path) -> None:
    saved = tmp_path / "again.jsonl"
    with sink_in_thread() as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await say(pilot, "MAIL FROM:<a@example.org>", "2.1.0")
            await say(pilot, "RCPT TO:<b@example.net>", "2.1.5")
            await say(pilot, "DATA", "354 Start")
            await say(pilot, ".", "DATA end")
            await say(pilot, "QUIT", "221")
            await type_line(pilot, f"/repeat 3 20 {saved}")
            await pilot.pause()

        request = drive(app, session)
        assert request == RepeatRequest(str(saved), 3, "20")
        assert len(sink.messages) == 1
        code = repeat(request, f"127.0.0.1:{sink.address[1]}", tmp_path / "results")
        assert code == 0
        assert len(sink.messages) == 4  # the session, then three replays of it
    [folder] = (tmp_path / "results").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert "sessions" in json.dumps(summary)


def test_repeat_logs_in_with_what_auth_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The saved session leaves the credentials out; /repeat hands the ones /auth used to
    the replay, in memory: every replayed session logs in, and the secret is shown nowhere."""
    secret = "s3cret-Passw0rd"
    saved = tmp_path / "login.jsonl"
    with sink_in_thread(credentials=(("alice", secret),)) as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await type_line(pilot, "/auth LOGIN alice")
            await wait_for(pilot, lambda: isinstance(app.screen, SecretScreen), "the prompt")
            await pilot.press(*secret)
            await pilot.press("enter")
            await wait_for(pilot, lambda: "235" in transcript(app), "235")
            await say(pilot, "MAIL FROM:<alice@example.org>", "2.1.0")
            await say(pilot, "RCPT TO:<bob@example.net>", "2.1.5")
            await say(pilot, "DATA", "354 Start")
            await say(pilot, ".", "DATA end")
            await say(pilot, "QUIT", "221")
            await type_line(pilot, f"/repeat 2 20 {saved}")
            await pilot.pause()

        request = drive(app, session)
        assert request == RepeatRequest(str(saved), 2, "20", "alice", secret)
        assert secret not in repr(request)
        assert secret not in saved.read_text()
        capsys.readouterr()
        assert repeat(request, f"127.0.0.1:{sink.address[1]}", tmp_path / "results") == 0
        assert sink.stats.replies_by_code[235] == 3  # the shell's session and both replays
        assert len(sink.messages) == 3 and all(m.authenticated for m in sink.messages)
    err = capsys.readouterr().err
    assert "--user alice" in err and secret not in err
    [folder] = (tmp_path / "results").iterdir()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["divergence"]["AUTH"]["compared"] == 2
    assert summary["divergence"]["AUTH"]["differed"] == 0


@pytest.mark.parametrize("mechanism", ["PLAIN", "PLAIN then response", "LOGIN"])
def test_repeat_logs_in_with_an_auth_typed_by_hand(tmp_path: Path, mechanism: str) -> None:
    """An AUTH typed as base64 (PLAIN's initial response, or LOGIN's two answers) is read
    for /repeat once the server took it, as /auth's is; never shown nor saved."""
    secret = "s3cret-Passw0rd"

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    saved = tmp_path / "typed.jsonl"
    with sink_in_thread(credentials=(("alice", secret),)) as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            plain = b64(b"\0alice\0" + secret.encode())
            if mechanism == "PLAIN":
                await say(pilot, f"AUTH PLAIN {plain}", "235")
            elif mechanism == "PLAIN then response":
                await say(pilot, "AUTH PLAIN", "334")
                await say(pilot, plain, "235")
            else:
                await say(pilot, "AUTH LOGIN", "334")
                await say(pilot, b64(b"alice"), "334")
                await say(pilot, b64(secret.encode()), "235")
            await say(pilot, "QUIT", "221")
            await type_line(pilot, f"/repeat 2 20 {saved}")
            await pilot.pause()

        request = drive(app, session)
        assert request == RepeatRequest(str(saved), 2, "20", "alice", secret)
        assert secret not in saved.read_text() and b64(secret.encode()) not in saved.read_text()
        assert repeat(request, f"127.0.0.1:{sink.address[1]}", tmp_path / "results") == 0
        assert sink.stats.replies_by_code[235] == 3  # the shell's session and both replays


def test_a_refused_auth_is_not_handed_to_repeat(tmp_path: Path) -> None:
    saved = tmp_path / "refused.jsonl"
    with sink_in_thread(credentials=(("alice", "right"),)) as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            wrong = base64.b64encode(b"\0alice\0wrong").decode()
            await say(pilot, f"AUTH PLAIN {wrong}", "535")
            await type_line(pilot, f"/repeat 1 20 {saved}")
            await pilot.pause()

        request = drive(app, session)
        assert request == RepeatRequest(str(saved), 1, "20", None, None)
        assert sink.stats.replies_by_code[535] == 1


def test_a_silent_server_is_reported_late_and_the_screen_answers() -> None:
    with misbehaving("silence") as server:
        app = shell_app(server.port, reply_timeout=0.5)

        async def main() -> None:
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_for(pilot, lambda: "nothing after" in transcript(app), "the note")
                await type_line(pilot, "/lax on")
                await wait_for(pilot, lambda: app.lax, "lax mode")
                assert app.connection.state is State.BANNER

        asyncio.run(main())
        assert "the banner: nothing after 1 s (still waiting" in transcript(app)


def test_completion_offers_what_the_server_advertised_and_history_recalls() -> None:
    with sink_in_thread() as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            line = app.main_screen.query_one(CommandLine)
            await pilot.press("e", "h")
            await wait_for(pilot, lambda: line._suggestion == "eh" + "LO ", "a suggestion")
            await pilot.press("tab")
            assert line.value == "ehLO "
            await pilot.press(*"client.example", "enter")
            await wait_for(pilot, lambda: DONE in transcript(app), "the EHLO reply")
            await pilot.press(*"AUTH C")
            await wait_for(pilot, lambda: line._suggestion == "AUTH CRAM-MD5", "mechanisms")
            line.value = ""
            await pilot.press(*"MAIL FROM:<a@example.org> B")
            await wait_for(
                pilot, lambda: line._suggestion.endswith("BODY=8BITMIME"), "MAIL parameters"
            )
            line.value = ""
            await pilot.press("up")
            assert line.value == "ehLO client.example"

        drive(app, session)


def test_without_a_terminal_it_says_it_needs_one() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "shell", "127.0.0.1:25"],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 2
    assert "needs a terminal" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["127.0.0.1:99999"], "HOST[:PORT]: the port must be a number from 0 to 65535"),
        (["127.0.0.1", "--timeout", "soon"], "--timeout:"),
        (["127.0.0.1", "--ca-file", "/nonexistent/ca.pem"], "--ca-file: cannot load"),
    ],
)
def test_bad_flags_get_one_line_naming_the_flag(argv: list[str], says: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "smtpbench", "shell", *argv],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )
    assert done.returncode == 2
    assert says in done.stderr.replace("\n", " ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("mechanism", ["LOGIN", "CRAM-MD5", "XOAUTH2"])
def test_auth_helpers_answer_the_challenges(mechanism: str) -> None:
    secret = "An0ther-Secret"
    with sink_in_thread(credentials=(("alice", secret),)) as sink:
        app = shell_app(sink.address[1])

        async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
            await say(pilot, "EHLO client.example", DONE)
            await type_line(pilot, f"/auth {mechanism} alice")
            await wait_for(pilot, lambda: isinstance(app.screen, SecretScreen), "the prompt")
            await pilot.press(*secret, "enter")
            await wait_for(pilot, lambda: "235" in transcript(app), "235")

        drive(app, session)
        shown = transcript(app)
        assert f"C: AUTH {mechanism} (credentials hidden)" in shown
        assert secret not in shown
        if mechanism != "XOAUTH2":  # LOGIN and CRAM-MD5 answer 334 challenges
            assert "C: (SASL response hidden)" in shown
        assert "235 Authentication succeeded" in shown


@pytest.mark.parametrize(
    ("behaviour", "says"),
    [
        ("garbage", "not an SMTP reply: malformed reply line"),
        ("close", "the server closed the connection (the reply to banner never came)"),
        # The reset can come before the connect is done or after: both are said.
        ("reset", ("Connection reset by peer", "Connect call failed")),
        ("endless", "not an SMTP reply: reply longer than 256 lines"),
        # Closed with the content unread, which Linux answers with a reset.
        ("drop in DATA", ("the server closed the connection", "Connection reset by peer")),
    ],
)
def test_a_misbehaving_server_is_described_and_the_shell_stays(
    behaviour: str, says: str | tuple[str, ...]
) -> None:
    with misbehaving(behaviour) as server:
        app = shell_app(server.port)

        async def main() -> None:
            async with app.run_test(size=(120, 40)) as pilot:
                if behaviour in ("endless", "drop in DATA"):
                    await wait_for(pilot, lambda: "220" in transcript(app), "the banner")
                    await type_line(pilot, "EHLO client.example")
                if behaviour == "drop in DATA":
                    await say(pilot, "MAIL FROM:<a@example.org>", "250 ok")
                    await say(pilot, "RCPT TO:<b@example.net>", "250 ok")
                    await say(pilot, "DATA", "354 go ahead")
                    await type_line(pilot, "Subject: cut short")
                await wait_for(pilot, lambda: app.connection.closed, "the connection to end")
                await type_line(pilot, "NOOP")  # typed after the end: said, not a crash
                await wait_for(pilot, lambda: "not connected" in transcript(app), "the refusal")

        asyncio.run(main())
        shown = transcript(app)
        assert any(phrase in shown for phrase in ((says,) if isinstance(says, str) else says))
