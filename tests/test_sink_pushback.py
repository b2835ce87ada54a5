"""The sink pushing back like a real server, against real clients on loopback: smtplib
from several 127.0.0.N addresses, and the `smtpbench sink` command itself."""

from __future__ import annotations

import mailbox
import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
import trio

from smtpbench.faults import FaultPlan, parse_fault_table
from smtpbench.metrics.results import read_results
from smtpbench.protocol.steps import Step
from smtpbench.pushback import EXTENSIONS, Pushback, RateLimit
from smtpbench.servers.sink import Sink, SinkConfig, serve_sink
from tests.commands import read_until, smtpbench, start_smtpbench
from tests.esmtp import make_certs

TIMEOUT = 30  # only against hangs


@contextmanager
def sink_in_thread(pushback: Pushback, **options: object) -> Iterator[Sink]:
    """A real sink in its own trio loop on a thread, so blocking clients can use it."""
    started: list[Sink] = []
    ready = threading.Event()
    stop: list[trio.CancelScope] = []
    token: list[trio.lowlevel.TrioToken] = []

    async def main() -> None:
        with trio.CancelScope() as scope:
            stop.append(scope)
            token.append(trio.lowlevel.current_trio_token())
            async with trio.open_nursery() as nursery:
                config = SinkConfig(port=0, faults=FaultPlan(pushback=pushback), **options)  # type: ignore[arg-type]
                started.append(await nursery.start(serve_sink, config))
                ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    assert ready.wait(TIMEOUT), "the sink did not start"
    try:
        yield started[0]
    finally:
        trio.from_thread.run_sync(stop[0].cancel, trio_token=token[0])
        thread.join(TIMEOUT)


def client(sink: Sink, source: str) -> smtplib.SMTP:
    host, port = sink.address
    smtp = smtplib.SMTP(host, port, timeout=TIMEOUT, source_address=(source, 0))
    smtp.ehlo("client.test")
    return smtp


def message(subject: str = "pushback", size: int = 0) -> bytes:
    mail = EmailMessage()
    mail["From"] = "a@x.test"
    mail["To"] = "b@y.test"
    mail["Subject"] = subject
    mail.set_content("Hello.\n.a line that starts with a dot\n" + "x" * size)
    mail.add_attachment(
        bytes(range(256)) * 8, maintype="application", subtype="octet-stream", filename="a.bin"
    )
    return mail.as_bytes(policy=SMTP)


def wait_closed(sink: Sink, closed: int) -> None:
    """The sink has seen ``closed`` sessions end (a client's close reaches it later)."""
    deadline = time.monotonic() + TIMEOUT
    while sink.stats.sessions_closed < closed:
        assert time.monotonic() < deadline, "the sink did not see the connection close"
        time.sleep(0.01)


def test_the_message_rate_answers_450_at_the_message_over_the_limit() -> None:
    with sink_in_thread(Pushback(client_message_rate=RateLimit(2, 60.0))) as sink:
        smtp = client(sink, "127.0.0.2")
        for _ in range(2):
            assert smtp.sendmail("a@x.test", ["b@y.test"], message()) == {}
        code, text = smtp.mail("a@x.test")
        assert code == 450
        assert text.startswith(b"4.7.1 Error: too much mail from 127.0.0.2")
        smtp.rset()
        other = client(sink, "127.0.0.3")
        assert other.sendmail("a@x.test", ["b@y.test"], message()) == {}
        other.quit()
        smtp.quit()
        assert sink.stats.deferred == {"client message rate": 1}
        assert sink.stats.messages_accepted == 3


def test_the_connection_limit_answers_421_at_the_banner_per_client() -> None:
    with sink_in_thread(Pushback(client_connection_limit=2)) as sink:
        first, second = client(sink, "127.0.0.2"), client(sink, "127.0.0.2")
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            client(sink, "127.0.0.2")
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.7.0 sink.smtpbench.test Error: too many")
        third = client(sink, "127.0.0.3")  # another client is not held up
        assert third.noop()[0] == 250
        first.quit()
        wait_closed(sink, 2)  # the refused one and the first
        again = client(sink, "127.0.0.2")
        assert again.noop()[0] == 250
        for smtp in (second, third, again):
            smtp.quit()
        assert sink.stats.deferred == {"client connection limit": 1}


def test_the_connection_rate_answers_421_at_the_attempt_over_the_limit() -> None:
    with sink_in_thread(Pushback(client_connection_rate=RateLimit(3, 60.0))) as sink:
        for _ in range(3):
            client(sink, "127.0.0.4").quit()
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            client(sink, "127.0.0.4")
        assert refused.value.smtp_code == 421
        assert b"too many connections from 127.0.0.4" in refused.value.smtp_error
        client(sink, "127.0.0.5").quit()
        assert sink.stats.deferred == {"client connection rate": 1}


def test_max_sessions_answers_421_beyond_it_whoever_connects() -> None:
    with sink_in_thread(Pushback(max_sessions=2)) as sink:
        first, second = client(sink, "127.0.0.2"), client(sink, "127.0.0.3")
        with pytest.raises(smtplib.SMTPConnectError) as refused:
            client(sink, "127.0.0.4")
        assert refused.value.smtp_code == 421
        assert refused.value.smtp_error.startswith(b"4.7.0 ")
        first.quit()
        wait_closed(sink, 2)
        third = client(sink, "127.0.0.4")
        assert third.noop()[0] == 250
        second.quit()
        third.quit()
        assert sink.stats.deferred == {"max sessions": 1}


def test_greylisting_defers_then_accepts_after_the_delay() -> None:
    delay = 0.3
    with sink_in_thread(Pushback(greylist=delay)) as sink:
        data = message()
        first_try = time.monotonic()
        smtp = client(sink, "127.0.0.6")
        with pytest.raises(smtplib.SMTPRecipientsRefused) as deferred:
            smtp.sendmail("a@x.test", ["b@y.test"], data)
        code, text = deferred.value.recipients["b@y.test"]
        assert code == 450
        assert text.startswith(b"4.7.1 <b@y.test>: Recipient address rejected: Greylisted")
        smtp.rset()
        # Retry as an MTA would, until taken; it must not be taken before the delay.
        deadline = first_try + TIMEOUT
        tries = 1
        while True:
            try:
                smtp.sendmail("a@x.test", ["b@y.test"], data)
                break
            except smtplib.SMTPRecipientsRefused:
                smtp.rset()
                tries += 1
                assert time.monotonic() < deadline, "never accepted"
                time.sleep(0.05)
        assert time.monotonic() - first_try >= delay
        assert tries >= 2
        # The triplet is remembered: the next message goes straight through.
        assert smtp.sendmail("a@x.test", ["b@y.test"], data) == {}
        # The same sender and recipient from another address start again.
        other = client(sink, "127.0.0.7")
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            other.sendmail("a@x.test", ["b@y.test"], data)
        other.quit()
        smtp.quit()
        assert sink.stats.deferred["greylist"] == tries + 1  # and the other address
        assert sink.stats.messages_accepted == 2


def test_the_tarpit_holds_replies_after_the_errors() -> None:
    hold = 0.3
    with sink_in_thread(Pushback(tarpit_after=2, tarpit_delay=hold)) as sink:
        smtp = client(sink, "127.0.0.8")
        assert smtp.docmd("XFOO")[0] == 500
        assert smtp.docmd("XBAR")[0] == 500
        assert sink.stats.deferred == {}
        started = time.monotonic()
        assert smtp.noop()[0] == 250
        assert time.monotonic() - started >= hold
        smtp.quit()
        assert sink.stats.deferred["tarpit"] == 2  # the NOOP and the QUIT


def test_extensions_switched_off_are_not_offered_and_their_commands_are_refused(
    tmp_path: Path,
) -> None:
    certs = make_certs(tmp_path)
    off = Pushback(no_extension=EXTENSIONS)
    with sink_in_thread(off, tls_cert=certs.server_cert, tls_key=certs.server_key) as sink:
        smtp = client(sink, "127.0.0.9")
        assert smtp.esmtp_features == {}  # nothing but the host name
        assert smtp.docmd("STARTTLS") == (502, b"STARTTLS not offered")
        assert smtp.docmd("AUTH", "PLAIN AGEAYg==")[0] == 502
        assert smtp.docmd("MAIL FROM:<a@x.test> SIZE=100") == (555, b"Unsupported option: SIZE")
        assert smtp.docmd("MAIL FROM:<a@x.test> BODY=8BITMIME")[0] == 555
        assert smtp.docmd("MAIL FROM:<a@x.test> SMTPUTF8")[0] == 555
        assert smtp.docmd("MAIL FROM:<a@x.test> RET=HDRS")[0] == 555
        assert smtp.docmd("MAIL FROM:<a@x.test>") == (250, b"Sender OK")  # no 2.1.0
        assert smtp.docmd("RCPT TO:<b@y.test> NOTIFY=NEVER")[0] == 555
        assert smtp.docmd("RCPT TO:<b@y.test>") == (250, b"Recipient OK")
        smtp.send(b"BDAT 4 LAST\r\nabcd")  # a refused chunk is still read, and dropped
        assert smtp.getreply() == (502, b"BDAT not supported")
        smtp.send(b"BDAT 2\r\nab")
        assert smtp.getreply() == (502, b"BDAT not supported")
        assert smtp.noop() == (250, b"Ok")
        smtp.quit()
    with sink_in_thread(Pushback(no_extension=("CHUNKING", "DSN"))) as sink:
        smtp = client(sink, "127.0.0.9")
        assert set(smtp.esmtp_features) == {
            "size",
            "pipelining",
            "8bitmime",
            "smtputf8",
            "enhancedstatuscodes",
            "auth",
        }
        assert smtp.mail("a@x.test", ["SIZE=100"])[0] == 250
        smtp.quit()


def test_the_maildir_holds_the_messages_byte_for_byte_up_to_its_limit(tmp_path: Path) -> None:
    folder = tmp_path / "received"
    sent = [message(f"message {n}") for n in range(3)]
    with sink_in_thread(Pushback(maildir=str(folder), maildir_limit=2)) as sink:
        smtp = client(sink, "127.0.0.10")
        for data in sent:
            assert smtp.sendmail("a@x.test", ["b@y.test"], data) == {}
        smtp.quit()
        assert sink.stats.messages_accepted == 3
        assert sink.stats.maildir == {"written": 2, "over the limit": 1}
    box = mailbox.Maildir(str(folder), factory=None, create=False)
    keys = box.keys()
    assert sorted(box.get_bytes(key) for key in keys) == sorted(sent[:2])
    for key in keys:
        attachments = [part for part in box.get_message(key).walk() if part.get_filename()]
        assert [part.get_filename() for part in attachments] == ["a.bin"]
        assert attachments[0].get_payload(decode=True) == bytes(range(256)) * 8


def test_the_throttle_slows_a_large_message_to_the_rate() -> None:
    rate = 64 * 1024
    data = message(size=128 * 1024)
    with sink_in_thread(Pushback(throttle=rate)) as sink:
        smtp = client(sink, "127.0.0.11")
        started = time.monotonic()
        assert smtp.sendmail("a@x.test", ["b@y.test"], data) == {}
        took = time.monotonic() - started
        smtp.quit()
    assert took >= len(data) / rate
    assert took < TIMEOUT


def test_the_sink_command_takes_the_scenario_form_and_reports_what_it_deferred() -> None:
    plan = parse_fault_table({"greylist": "200ms", "no_extension": ["CHUNKING"]})
    process = start_smtpbench("sink", "--listen", "127.0.0.1:0", *plan.to_argv())
    try:
        said = read_until(process, "listening on")
        port = int(said.strip().rsplit(":", 1)[1])
        smtp = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT, source_address=("127.0.0.12", 0))
        smtp.ehlo("client.test")
        assert "chunking" not in smtp.esmtp_features
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            smtp.sendmail("a@x.test", ["b@y.test"], message())
        smtp.rset()
        time.sleep(0.25)
        assert smtp.sendmail("a@x.test", ["b@y.test"], message()) == {}
        smtp.quit()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert "1 messages accepted" in out
    assert "1 pushed back (greylist 1)" in out


def test_a_run_from_two_addresses_meets_the_scenarios_message_rate(tmp_path: Path) -> None:
    """The [sink] table reaches the embedded sink; the engine connects from a pool."""
    scenario = tmp_path / "pushback.toml"
    scenario.write_text(
        'name = "pushback"\n[target]\nsource = "127.0.0.2-127.0.0.3"\n'
        '[load]\nrate = "50/s"\nsessions = 20\n[sink]\nclient_message_rate = "5/min"\n'
    )
    out = tmp_path / "results"
    run = smtpbench("run", str(scenario), "--workers", "1", "--out", str(out))
    assert run.returncode == 0, run.stderr
    [folder] = list(out.iterdir())
    # One session in turn from each address, one message each: 5 taken from each.
    assert read_results(folder).reply_codes(Step.MAIL) == {250: 10, 450: 10}
    assert "450 4.7.1 Error: too much mail from 127.0.0.2" in run.stdout
