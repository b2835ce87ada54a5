"""The shell against a real Postfix (``tests/postfix.py``): STARTTLS, then AUTH PLAIN
(offered only after TLS), a refused and an accepted recipient, a message; Postfix's
log says what it saw. And lax mode: Postfix 3.7 takes a dot ended by a bare LF for
the end of the data, which the shell shows as the reply it is owed."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from smtpbench.shell.app import ShellApp
from smtpbench.shell.screens import SecretScreen
from tests.esmtp import Certs, make_certs
from tests.postfix import Postfix, private_postfix, skip_without_sasl
from tests.shell_helpers import say, shell_app, transcript, type_line, wait_for

pytestmark = pytest.mark.postfix

USER, PASSWORD = "shelluser", "pf-Shell-S3cret"
DONE = "ms · 250 Requested mail action okay, completed"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("postfix-certs"))


@pytest.fixture(scope="module")
def postfix(certs: Certs) -> Iterator[Postfix]:
    skip_without_sasl()
    with private_postfix(certs, {USER: PASSWORD}) as instance:
        yield instance


def drive(app: ShellApp, scenario: Any) -> None:
    async def main() -> None:
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: "220" in transcript(app), "the banner")
            await scenario(app, pilot)

    asyncio.run(main())


def test_starttls_auth_and_a_message_as_postfix_logs_them(postfix: Postfix, certs: Certs) -> None:
    since = postfix.log_size()
    app = shell_app(postfix.port, context=ssl.create_default_context(cafile=certs.ca_file))

    async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
        await say(pilot, "EHLO client.example", DONE)
        assert app.connection.capabilities.starttls
        assert not app.connection.capabilities.auth  # Postfix asks for TLS first
        await say(pilot, "STARTTLS", "TLS established")
        await say(pilot, "EHLO client.example", DONE)
        assert "PLAIN" in app.connection.capabilities.auth
        await type_line(pilot, f"/auth PLAIN {USER}")
        await wait_for(pilot, lambda: isinstance(app.screen, SecretScreen), "the prompt")
        await pilot.press(*PASSWORD, "enter")
        await wait_for(pilot, lambda: "235" in transcript(app), "235")
        await say(pilot, "MAIL FROM:<shell@smtpbench.test>", "2.1.0")
        await say(pilot, "RCPT TO:<nobody@rcpt1.test>", "5.1.1 Bad destination mailbox address")
        await say(pilot, "RCPT TO:<someone@rcpt0.test>", "2.1.5")
        await say(pilot, "DATA", "354 Start mail input")
        for line in ("Subject: from the shell", "", ".leading dot"):
            await type_line(pilot, line)
        await say(pilot, ".", "DATA end")
        await say(pilot, "QUIT", "221")

    drive(app, session)
    shown = transcript(app)
    assert "S: 550 5.1.1" in shown and "550 Mailbox unavailable" in shown
    assert "235 2.7.0 Authentication successful" in shown
    assert PASSWORD not in shown
    postfix.wait_for_disconnects(1, since)
    counts = postfix.disconnects(since)
    for command, expected in {
        "ehlo": (2, 2),
        "starttls": (1, 1),
        "auth": (1, 1),
        "mail": (1, 1),
        "rcpt": (1, 2),
        "data": (1, 1),
        "quit": (1, 1),
    }.items():
        assert counts.get(command) == expected, command
    assert any(
        f"sasl_method=PLAIN, sasl_username={USER}" in line for line in postfix.log_lines(since)
    )
    assert postfix.wait_for_log(r"postfix/discard\[\d+\]: .*status=sent", 1, since) == 1


def test_lax_a_dot_ended_by_a_bare_lf_ends_postfix_data(postfix: Postfix) -> None:
    since = postfix.log_size()
    app = shell_app(postfix.port)

    async def session(app: ShellApp, pilot: Pilot[Any]) -> None:
        await say(pilot, "EHLO client.example", DONE)
        await type_line(pilot, "/lax on")
        await say(pilot, "MAIL FROM:<lax@smtpbench.test>", "2.1.0")
        await say(pilot, "RCPT TO:<someone@rcpt0.test>", "2.1.5")
        await say(pilot, "DATA", "354 Start mail input")
        await type_line(pilot, "Subject: bare LF lines")
        await say(pilot, ".", "DATA end")  # ".\n" alone: Postfix 3.7 takes it
        await say(pilot, "QUIT", "221")

    drive(app, session)
    assert "C: (lax) ." in transcript(app)
    assert "250 2.0.0 Ok: queued" in transcript(app)
    postfix.wait_for_disconnects(1, since)
    assert postfix.disconnects(since).get("data") == (1, 1)
