"""``smtpbench send`` against servers it did not write: aiosmtpd (its own log of every
command line), swaks sending the same transaction, and the private Postfix (STARTTLS,
AUTH, BDAT, DSN, counted in its log)."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
import ssl
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import AuthResult

from smtpbench import exitcodes
from tests.esmtp import Certs, make_certs
from tests.postfix import Postfix, private_postfix, skip_without_sasl
from tests.send_helpers import Sent, logging_aiosmtpd, send_blocking

USER, PASSWORD = "sender", "pf-Send-7"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("send-servers-certs"))


def _auth_as_logged(line: str) -> str:
    """AUTH lines as both sides may show them: the mechanism, never what follows it."""
    words = line.split()
    return " ".join(words[:2]) if words and words[0].upper() == "AUTH" else line


def _transcript_commands(sent: Sent) -> list[str]:
    return [_auth_as_logged(line) for line in sent.commands]


def test_the_transcript_is_what_aiosmtpd_read_in_order(tmp_path: Path, certs: Certs) -> None:
    attachment = tmp_path / "report.pdf"
    attachment.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)

    def authenticator(*args: Any) -> AuthResult:
        # (server, session, envelope, mechanism, login and password)
        mechanism, data = args[3], args[4]
        given = (bytes(data.login), bytes(data.password))
        return AuthResult(
            success=mechanism == "PLAIN" and given == (USER.encode(), PASSWORD.encode())
        )

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    with logging_aiosmtpd(
        tls_context=context, require_starttls=True, authenticator=authenticator
    ) as (port, handler, logged):
        sent = send_blocking(
            "--server", f"127.0.0.1:{port}",
            "--from", "boss@example.com", "--to", "staff@example.org", "--to", "board@example.org",
            "--helo", "laptop.example.com", "--tls", "starttls", "--ca-file", certs.ca_file,
            "--sni", "localhost", "--auth", "plain", "--user", USER,
            "--subject", "Report", "--header", "X-Priority: 1", "--attach", str(attachment),
            "--8bitmime", "--smtputf8", "--json",
            env={"SMTPBENCH_PASSWORD": PASSWORD},
        )  # fmt: skip
        assert sent.code == exitcodes.OK, sent.stdout + sent.stderr
        [envelope] = handler.envelopes
    assert _transcript_commands(sent) == [_auth_as_logged(line) for line in logged]
    assert logged[:2] == ["EHLO laptop.example.com", "STARTTLS"]
    assert envelope.mail_from == "boss@example.com"
    assert envelope.rcpt_tos == ["staff@example.org", "board@example.org"]
    size = f"SIZE={sent.report['message_bytes']}"
    assert sorted(envelope.mail_options) == sorted(["BODY=8BITMIME", "SMTPUTF8", size])
    parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert parsed["Subject"] == "Report"
    assert parsed["X-Priority"] == "1"
    [part] = list(parsed.iter_attachments())
    assert part.get_content_type() == "application/pdf"
    assert part.get_filename() == "report.pdf"
    assert part.get_payload(decode=True) == attachment.read_bytes()
    assert sent.report["tls"]["verified"] is True


def test_what_aiosmtpd_does_not_offer_is_named() -> None:
    with logging_aiosmtpd() as (port, handler, logged):
        sent = send_blocking(
            "--server", f"127.0.0.1:{port}", "--to", "a@example.org", "--pipelining", "--bdat"
        )  # fmt: skip
        assert handler.envelopes == []
    assert sent.code == exitcodes.MESSAGE_REFUSED
    assert "does not offer PIPELINING (--pipelining), CHUNKING (--bdat)" in sent.stdout
    assert logged[-1] == "QUIT"


# -- the same transaction through swaks ----------------------------------------------------


@pytest.fixture
def swaks() -> str:
    found = shutil.which("swaks")
    if found is None:
        # CI's script installs it: there a missing swaks fails instead of hiding.
        if os.environ.get("CI"):
            pytest.fail("swaks is not installed (Debian package swaks), and CI installs it")
        pytest.skip("swaks is not installed (Debian package swaks)")
    return found


def test_swaks_and_send_reach_the_server_with_the_same_envelope_and_commands(
    swaks: str,
) -> None:
    # No SIZE advertised: swaks does not send SIZE=, smtpbench sends it when offered.
    with logging_aiosmtpd(data_size_limit=0) as (port, handler, logged):
        done = subprocess.run(
            [
                swaks, "--server", "127.0.0.1", "--port", str(port),
                "--from", "a@example.com", "--to", "b@example.org,c@example.org",
                "--helo", "client.example.com", "--header", "X-Case: swaks",
            ],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        by_swaks = list(logged)
        del logged[:]
        sent = send_blocking(
            "--server", f"127.0.0.1:{port}",
            "--from", "a@example.com", "--to", "b@example.org", "--to", "c@example.org",
            "--helo", "client.example.com", "--header", "X-Case: smtpbench", "--json",
        )  # fmt: skip
        by_send = list(logged)
        first, second = handler.envelopes
    assert sent.code == exitcodes.OK
    assert by_send == by_swaks == _transcript_commands(sent)
    assert (second.mail_from, second.rcpt_tos, second.mail_options, second.rcpt_options) == (
        first.mail_from,
        first.rcpt_tos,
        first.mail_options,
        first.rcpt_options,
    )
    headers = [
        email.message_from_bytes(e.original_content, policy=email.policy.default)
        for e in (first, second)
    ]
    assert [h["X-Case"] for h in headers] == ["swaks", "smtpbench"]
    assert headers[0]["From"] == headers[1]["From"] == "a@example.com"


# -- Postfix -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postfix(certs: Certs) -> Iterator[Postfix]:
    skip_without_sasl()
    with private_postfix(certs, {USER: PASSWORD}) as instance:
        yield instance


def _logged_counts(postfix: Postfix, since: int) -> dict[str, tuple[int, int]]:
    postfix.wait_for_disconnects(1, since)
    return postfix.disconnects(since).counts


def _sent_counts(sent: Sent) -> dict[str, tuple[int, int]]:
    """The transcript counted as Postfix counts: command -> (succeeded, sent)."""
    total: Counter[str] = Counter()
    good: Counter[str] = Counter()
    for entry in sent.report["transcript"]:
        line = entry["sent"]
        if line is None or "content_bytes" in entry or line == "(SASL response hidden)":
            continue
        verb = line.split()[0].lower()
        total[verb] += 1
        reply = entry["reply"]
        if reply is not None and reply["code"] < 400:
            good[verb] += 1
    return {verb: (good[verb], total[verb]) for verb in total}


@pytest.mark.postfix
def test_postfix_starttls_auth_bdat_dsn_pipelining(postfix: Postfix, certs: Certs) -> None:
    since = postfix.log_size()
    content = b"Subject: chunks\r\n\r\n" + b"0123456789" * 500 + b"\r\n"
    sent = send_blocking(
        "--server", f"127.0.0.1:{postfix.port}",
        "--from", "sender@smtpbench.test", "--to", "user1@rcpt0.test", "--to", "user2@rcpt0.test",
        "--tls", "starttls", "--ca-file", certs.ca_file, "--sni", "localhost",
        "--auth", "PLAIN", "--user", USER, "--pipelining", "--bdat", "--chunk-size", "2000",
        "--dsn", "notify=success,failure ret=hdrs envid=case-7", "--8bitmime",
        "--body", content.decode(), "--json",
        env={"SMTPBENCH_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert sent.code == exitcodes.OK, sent.stdout + sent.stderr
    logged = _logged_counts(postfix, since)
    chunks = [c for c in sent.commands if c.startswith("BDAT")]
    assert len(chunks) >= 3
    assert logged.pop("commands") == (len(sent.commands), len(sent.commands))
    assert logged == _sent_counts(sent)
    assert logged["bdat"] == (len(chunks), len(chunks))
    assert logged["ehlo"] == (2, 2) and logged["starttls"] == (1, 1) and logged["auth"] == (1, 1)
    assert sent.report["tls"]["verified"] is True
    assert "queued as" in sent.report["detail"]
    queue_id = sent.report["detail"].rsplit(" ", 1)[1]
    postfix.wait_for_log(rf"{queue_id}: from=<sender@smtpbench.test>", 1, since)


@pytest.mark.postfix
def test_postfix_refusals_give_their_exit_codes(postfix: Postfix, certs: Certs) -> None:
    since = postfix.log_size()
    refused = send_blocking(
        "--server", f"127.0.0.1:{postfix.port}", "--to", "user@rcpt1.test", "--json"
    )  # fmt: skip
    assert refused.code == exitcodes.MESSAGE_REFUSED
    rcpt = [e for e in refused.report["transcript"] if (e["sent"] or "").startswith("RCPT")]
    assert rcpt[0]["reply"]["code"] == 550 and rcpt[0]["reply"]["enhanced"] == "5.1.1"
    assert postfix.wait_for_log(r"reject: RCPT from \S+: 550 5\.1\.1 <user@rcpt1\.test>", 1, since)
    # AUTH only after TLS: asked for without TLS, it is not offered.
    no_tls = send_blocking(
        "--server", f"127.0.0.1:{postfix.port}", "--to", "user@rcpt0.test",
        "--auth", "PLAIN", "--user", USER, env={"SMTPBENCH_PASSWORD": PASSWORD},
    )  # fmt: skip
    assert no_tls.code == exitcodes.AUTH_FAILED
    assert "does not offer AUTH PLAIN before TLS" in no_tls.stdout
    wrong = send_blocking(
        "--server", f"127.0.0.1:{postfix.smtps_port}", "--tls", "implicit",
        "--ca-file", certs.ca_file, "--sni", "localhost", "--to", "user@rcpt0.test",
        "--auth", "LOGIN", "--user", USER, env={"SMTPBENCH_PASSWORD": "not-it"},
    )  # fmt: skip
    assert wrong.code == exitcodes.AUTH_FAILED
    assert "535" in wrong.stdout
