"""``smtpbench send`` against the embedded sink (run in the test's trio loop), checked on
the server's side: envelope, headers, attachments decoded back, BDAT, DSN parameters,
each stop of --quit-after and each exit code from a real case."""

from __future__ import annotations

import email
import email.policy
import subprocess
from pathlib import Path

import pytest
import trio

from smtpbench import exitcodes
from smtpbench.faults import parse_fault_table
from smtpbench.protocol.steps import Step
from tests.esmtp import Certs, make_certs
from tests.recording_servers import sink
from tests.send_helpers import send
from tests.servers import free_port

PNG = bytes(range(256)) * 40 + b"\x89PNG\r\n\x1a\n\x00\r\n.\r\n"  # every byte, a dot line too


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("send-certs"))


def server(port: int) -> list[str]:
    return ["--server", f"127.0.0.1:{port}"]


async def test_every_message_flag_reaches_the_server_as_asked(tmp_path: Path) -> None:
    body = tmp_path / "body.txt"
    body.write_text("Hello,\n.\nA line with a lone dot above; déjà vu.\n")
    picture = tmp_path / "picture.png"
    picture.write_bytes(PNG)
    notes = tmp_path / "notes.csv"
    notes.write_bytes(b"a,b\r\n1,2\n")
    async with sink(keep_messages=True, credentials=(("alice", "s3cret"),)) as running:
        sent = await send(
            *server(running.address[1]),
            "--from", "sender@example.com",
            "--to", "one@example.net",
            "--to", "two@example.net,three@example.net",
            "--helo", "client.example.org",
            "--header", "X-Campaign: spring",
            "--header", "Reply-To: replies@example.com",
            "--subject", "Quarterly figures",
            "--body", f"@{body}",
            "--attach", str(picture),
            "--attach", str(notes),
            "--pipelining",
            "--8bitmime",
            "--smtputf8",
            "--dsn", "notify=success,failure ret=hdrs envid=ID-42+x orcpt",
            "--auth", "plain", "--user", "alice",
            "--json",
            env={"SMTPBENCH_PASSWORD": "s3cret"},
        )  # fmt: skip
        assert sent.code == exitcodes.OK, sent.stderr
        [message] = running.messages
    report = sent.report
    assert report["outcome"] == "accepted"
    assert report["accepted_recipients"] == [
        "one@example.net",
        "two@example.net",
        "three@example.net",
    ]
    assert message.mail_from == "sender@example.com"
    assert message.recipients == ("one@example.net", "two@example.net", "three@example.net")
    assert message.authenticated
    assert message.via is Step.DATA
    assert message.mail_params["BODY"] == "8BITMIME"
    assert "SMTPUTF8" in message.mail_params
    assert message.mail_params["RET"] == "HDRS"
    assert message.mail_params["ENVID"] == "ID-42+2Bx"  # xtext: "+" is +2B
    assert message.mail_params["SIZE"] == str(report["message_bytes"])
    for recipient, params in zip(message.recipients, message.rcpt_params, strict=True):
        assert params["NOTIFY"] == "SUCCESS,FAILURE"
        assert params["ORCPT"] == f"rfc822;{recipient}"
    assert message.data is not None
    parsed = email.message_from_bytes(message.data, policy=email.policy.default)
    assert parsed["Subject"] == "Quarterly figures"
    assert parsed["X-Campaign"] == "spring"
    assert parsed["Reply-To"] == "replies@example.com"
    assert parsed["From"] == "sender@example.com"
    assert parsed["To"] == "one@example.net, two@example.net, three@example.net"
    text = parsed.get_body(("plain",))
    assert text is not None
    assert (
        text.get_content().replace("\r\n", "\n")
        == "Hello,\n.\nA line with a lone dot above; déjà vu.\n"
    )
    attachments = {part.get_filename(): part for part in parsed.iter_attachments()}
    assert attachments["picture.png"].get_content_type() == "image/png"
    assert attachments["picture.png"].get_payload(decode=True) == PNG
    assert attachments["notes.csv"].get_content_type() == "text/csv"
    assert attachments["notes.csv"].get_payload(decode=True) == b"a,b\r\n1,2\n"
    # The transcript: what went out, in order, the AUTH line without the credentials.
    assert sent.commands == [
        "EHLO client.example.org",
        "AUTH PLAIN (credentials hidden)",
        f"MAIL FROM:<sender@example.com> SIZE={report['message_bytes']} BODY=8BITMIME "
        "SMTPUTF8 RET=HDRS ENVID=ID-42+2Bx",
        "RCPT TO:<one@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;one@example.net",
        "RCPT TO:<two@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;two@example.net",
        "RCPT TO:<three@example.net> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;three@example.net",
        "DATA",
        "QUIT",
    ]
    assert "s3cret" not in sent.stdout
    pipelined = [entry["sent"] for entry in report["transcript"] if entry.get("pipelined")]
    assert pipelined[0].startswith("MAIL FROM") and pipelined[-1] == "DATA"
    for entry in report["transcript"]:
        reply = entry["reply"]
        assert reply is not None and reply["seconds"] >= 0 and reply["at_seconds"] > 0
        assert reply["meaning"]
    final = next(e for e in report["transcript"] if "content_bytes" in e)["reply"]
    assert final["code"] == 250
    assert final["enhanced_meaning"] == "Other undefined status"


async def test_the_human_transcript_explains_each_code(tmp_path: Path) -> None:
    async with sink() as running:  # --target, as run takes it, is --server too
        target = ["--target", f"127.0.0.1:{running.address[1]}"]
        sent = await send(*target, "--to", "a@example.net", "--body", "hi")
    assert sent.code == exitcodes.OK
    out = sent.stdout
    assert " C: MAIL FROM:<" in out
    assert " S: 250 2.1.5 Recipient OK" in out
    assert "2.1.5: Destination address valid" in out
    assert "Start mail input" in out
    assert "ACCEPTED" in out


async def test_a_message_file_goes_as_it_is_in_bdat_chunks(tmp_path: Path) -> None:
    content = b"From: a@example.com\r\nSubject: as is\r\n\r\n" + b"line of text\r\n" * 300
    eml = tmp_path / "message.eml"
    eml.write_bytes(content)
    async with sink(keep_messages=True) as running:
        sent = await send(
            *server(running.address[1]),
            "--from", "a@example.com", "--to", "b@example.com",
            "--eml", str(eml), "--bdat", "--chunk-size", "1000", "--json",
        )  # fmt: skip
        [message] = running.messages
    assert sent.code == exitcodes.OK, sent.stdout
    assert message.via is Step.BDAT
    assert message.data == content
    chunks = [c for c in sent.commands if c.startswith("BDAT")]
    sizes = [1000, 1000, 1000, 1000, len(content) - 4000]
    assert chunks == [f"BDAT {n} ({n} bytes of message)" for n in sizes[:-1]] + [
        f"BDAT {sizes[-1]} LAST ({sizes[-1]} bytes of message)"
    ]


async def test_the_body_from_stdin_and_lmtp(tmp_path: Path) -> None:
    async with sink(keep_messages=True, lmtp=True) as running:
        sent = await send(
            *server(running.address[1]),
            "--lmtp", "--to", "a@example.com", "--to", "b@example.com", "--body", "-", "--json",
            stdin=b"from standard input\n",
        )  # fmt: skip
        [message] = running.messages
    assert sent.code == exitcodes.OK, sent.stdout
    assert sent.commands[0].startswith("LHLO ")
    assert sent.report["accepted_recipients"] == ["a@example.com", "b@example.com"]
    finals = [e for e in sent.report["transcript"] if e["sent"] and "same message" in e["sent"]]
    assert len(finals) == 1  # the second recipient's own reply to the end of data
    assert message.data is not None and b"from standard input\r\n" in message.data


@pytest.mark.parametrize(
    ("step", "last"),
    [
        ("connect", None),
        ("banner", "QUIT"),
        ("ehlo", "EHLO"),
        ("tls", "STARTTLS"),
        ("auth", "AUTH PLAIN (credentials hidden)"),
        ("mail", "MAIL"),
        ("rcpt", "RCPT"),
        ("data", "DATA"),
    ],
)
async def test_quit_after_stops_at_that_step(step: str, last: str | None, certs: Certs) -> None:
    async with sink(
        keep_messages=True, tls_cert=certs.server_cert, tls_key=certs.server_key
    ) as running:
        sent = await send(
            *server(running.address[1]),
            "--to", "a@example.com", "--tls", "starttls", "--ca-file", certs.ca_file,
            "--sni", "localhost", "--auth", "PLAIN", "--user", "u",
            "--quit-after", step, "--json",
            env={"SMTPBENCH_PASSWORD": "p"},
        )  # fmt: skip
        assert running.messages == []
    assert sent.code == exitcodes.OK, sent.stdout + sent.stderr
    assert sent.report["outcome"] == "stopped"
    commands = [c for c in sent.commands if c != "QUIT"]
    if last is None:
        assert sent.report["transcript"] == []
    elif last == "QUIT":
        assert commands == []
    else:
        assert commands[-1].startswith(last)
    if step == "data":
        assert "QUIT" not in sent.commands  # only content may follow a 354


async def test_starttls_shows_the_certificate(certs: Certs) -> None:
    async with sink(tls_cert=certs.server_cert, tls_key=certs.server_key) as running:
        sent = await send(
            *server(running.address[1]),
            "--to", "a@example.com", "--tls", "starttls", "--ca-file", certs.ca_file,
            "--sni", "localhost", "--json",
        )  # fmt: skip
        human = await send(
            *server(running.address[1]),
            "--to", "a@example.com", "--tls", "starttls", "--ca-file", certs.ca_file,
            "--sni", "localhost",
        )  # fmt: skip
    assert sent.code == exitcodes.OK, sent.stdout
    tls = sent.report["tls"]
    assert tls["verified"] is True
    assert tls["protocol"].startswith("TLSv1.")
    assert tls["cipher"]
    assert "localhost" in tls["names"]
    assert "trustme" in tls["issuer"]
    assert tls["days_left"] > 0
    assert sent.commands[:3] == [
        "EHLO " + sent.commands[0].split()[1],
        "STARTTLS",
        sent.commands[0],
    ]
    assert "certificate verified for localhost" in human.stdout


async def test_implicit_tls(certs: Certs) -> None:
    async with sink(
        keep_messages=True, tls_cert=certs.server_cert, tls_key=certs.server_key, implicit_tls=True
    ) as running:
        sent = await send(
            *server(running.address[1]),
            "--to", "a@example.com", "--tls", "implicit", "--insecure", "--json",
        )  # fmt: skip
        [message] = running.messages
    assert sent.code == exitcodes.OK, sent.stdout
    assert message.tls
    assert sent.report["tls"]["verified"] is False
    assert "localhost" in sent.report["tls"]["names"]  # shown though not verified


# -- each exit code from a real case ------------------------------------------------


async def test_a_refused_recipient_is_exit_8_and_the_rest_still_get_it() -> None:
    async with sink(keep_messages=True, relay_domains=("example.com",)) as running:
        sent = await send(
            *server(running.address[1]),
            "--to",
            "a@example.com",
            "--to",
            "b@elsewhere.net",
            "--json",
        )
        [message] = running.messages
    assert sent.code == exitcodes.MESSAGE_REFUSED
    assert message.recipients == ("a@example.com",)
    assert sent.report["refused_recipients"] == ["b@elsewhere.net"]


async def test_every_recipient_refused_is_exit_8() -> None:
    async with sink(relay_domains=("example.com",)) as running:
        sent = await send(*server(running.address[1]), "--to", "b@elsewhere.net", "--json")
    assert sent.code == exitcodes.MESSAGE_REFUSED
    assert sent.report["detail"] == "every recipient was refused"
    assert sent.commands[-2:] == ["RCPT TO:<b@elsewhere.net>", "QUIT"]


async def test_a_refused_message_is_exit_8() -> None:
    faults = parse_fault_table({"reply": {"DATA end": "554 5.7.1:100%"}})
    async with sink(faults=faults) as running:
        sent = await send(*server(running.address[1]), "--to", "a@example.com", "--json")
    assert sent.code == exitcodes.MESSAGE_REFUSED
    final = next(e for e in sent.report["transcript"] if "content_bytes" in e)["reply"]
    assert final["code"] == 554
    assert final["enhanced"] == "5.7.1"


async def test_nothing_listening_is_exit_4() -> None:
    sent = await send(*server(free_port()), "--to", "a@example.com")
    assert sent.code == exitcodes.TARGET_UNUSABLE
    assert "connection refused" in sent.stdout.lower()


async def test_a_name_that_does_not_resolve_is_exit_4() -> None:
    sent = await send("--server", "no-such-host.invalid", "--to", "a@example.com")
    assert sent.code == exitcodes.TARGET_UNUSABLE
    assert "cannot resolve" in sent.stderr


async def test_starttls_not_offered_is_exit_9() -> None:
    async with sink() as running:
        sent = await send(*server(running.address[1]), "--to", "a@example.com", "--tls", "starttls")
    assert sent.code == exitcodes.TLS_FAILED
    assert "does not offer STARTTLS" in sent.stdout


async def test_an_untrusted_certificate_is_exit_9(certs: Certs) -> None:
    async with sink(
        keep_messages=True, tls_cert=certs.server_cert, tls_key=certs.server_key
    ) as running:
        sent = await send(*server(running.address[1]), "--to", "a@example.com", "--tls", "starttls")
        assert running.messages == []
    assert sent.code == exitcodes.TLS_FAILED
    assert "certificate not accepted" in sent.stdout


async def test_wrong_credentials_are_exit_10() -> None:
    async with sink(keep_messages=True, credentials=(("alice", "right"),)) as running:
        sent = await send(
            *server(running.address[1]), "--to", "a@example.com", "--auth", "LOGIN",
            "--user", "alice", "--json", env={"SMTPBENCH_PASSWORD": "wrong"},
        )  # fmt: skip
        assert running.messages == []
    assert sent.code == exitcodes.AUTH_FAILED
    assert "wrong" not in sent.stdout
    assert sent.commands[-2:] == ["(SASL response hidden)", "QUIT"]


async def test_auth_not_offered_is_exit_10() -> None:
    async with sink(auth=False) as running:
        sent = await send(
            *server(running.address[1]), "--to", "a@example.com", "--auth", "PLAIN",
            "--user", "u", env={"SMTPBENCH_PASSWORD": "p"},
        )  # fmt: skip
    assert sent.code == exitcodes.AUTH_FAILED
    assert "does not offer AUTH PLAIN" in sent.stdout


async def test_a_server_that_hangs_up_is_exit_11() -> None:
    faults = parse_fault_table({"disconnect": {"MAIL": "100%"}})
    async with sink(faults=faults) as running:
        sent = await send(*server(running.address[1]), "--to", "a@example.com", "--json")
    assert sent.code == exitcodes.CONVERSATION_BROKEN
    assert sent.report["transcript"][-1]["reply"] is None
    assert "MAIL" in sent.report["detail"]


async def test_a_server_that_stops_answering_is_exit_11() -> None:
    faults = parse_fault_table({"delay": {"RCPT": "30s"}})
    async with sink(faults=faults) as running:
        sent = await send(
            *server(running.address[1]), "--to", "a@example.com", "--timeout", "0.5s", "--json"
        )
    assert sent.code == exitcodes.CONVERSATION_BROKEN
    assert "no reply to RCPT within 0.5s" in sent.report["detail"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--to", "not-an-address"], "--to: expected an address"),
        ([], "--to: at least one recipient"),
        (["--to", "a@b.c", "--header", "no colon"], '--header: expected "Name: value"'),
        (
            ["--to", "a@b.c", "--body", "@/nonexistent/body"],
            "--body: cannot read /nonexistent/body",
        ),
        (["--to", "a@b.c", "--eml", "x.eml", "--subject", "s"], "--eml: sends the file as it is"),
        (["--to", "a@b.c", "--dsn", "notify=sometimes"], "--dsn: NOTIFY is NEVER or some of"),
        (["--to", "a@b.c", "--dsn", "color=red"], "--dsn: unknown part 'color=red'"),
        (["--to", "a@b.c", "--auth", "PLAIN", "--user", "u"], "no password"),
        (["--to", "a@b.c", "--auth", "GSSAPI", "--user", "u"], "--auth: one of PLAIN"),
        (["--to", "a@b.c", "--timeout", "soon"], "--timeout:"),
        (["--to", "a@b.c", "--server", "host:99999"], "--server:"),
        (["--to", "a@b.c", "--insecure"], "need --tls starttls"),
    ],
)
async def test_bad_usage_is_exit_2_with_one_line(args: list[str], message: str) -> None:
    sent = await send(*args)
    assert sent.code == exitcodes.BAD_CONFIGURATION
    assert message in sent.stderr
    assert "Traceback" not in sent.stderr
    assert len(sent.stderr.strip().splitlines()) <= 3  # argparse's usage line and the error


async def test_the_password_is_never_in_the_output_even_as_a_flag() -> None:
    async with sink(credentials=(("alice", "flag-pw-123"),)) as running:
        sent = await send(
            *server(running.address[1]), "--to", "a@example.com", "--auth", "CRAM-MD5",
            "--user", "alice", "--password-from-flag", "flag-pw-123", "--json",
        )  # fmt: skip
    assert sent.code == exitcodes.OK, sent.stdout
    assert "flag-pw-123" not in sent.stdout
    assert "AUTH CRAM-MD5 (credentials hidden)" in sent.commands


def test_the_password_is_asked_for_when_not_in_the_environment() -> None:
    from smtpbench.cli import _build_parser
    from smtpbench.send.options import options_from_args

    asked: list[str] = []

    def prompt(question: str) -> str:
        asked.append(question)
        return "typed-pw"

    args = _build_parser().parse_args(
        ["send", "--to", "a@example.com", "--auth", "LOGIN", "--user", "alice"]
    )
    options = options_from_args(args, environ={}, prompt=prompt)
    assert asked == ["Password for alice: "]
    assert options.password == "typed-pw"
    assert "typed-pw" not in repr(options)
    from_env = options_from_args(args, environ={"SMTPBENCH_PASSWORD": "env-pw"}, prompt=prompt)
    assert from_env.password == "env-pw" and len(asked) == 1


async def test_ehlo_refused_falls_back_to_helo_when_nothing_needs_an_extension() -> None:
    faults = parse_fault_table({"reply": {"EHLO": "502:100%"}})
    async with sink(keep_messages=True, faults=faults) as running:
        sent = await send(*server(running.address[1]), "--to", "a@example.com", "--json")
        refused = await send(
            *server(running.address[1]), "--to", "a@example.com", "--pipelining", "--json"
        )
        assert len(running.messages) == 1
    assert sent.code == exitcodes.OK
    assert [c.split()[0] for c in sent.commands[:2]] == ["EHLO", "HELO"]
    assert refused.code == exitcodes.MESSAGE_REFUSED
    assert "refused the greeting" in refused.report["detail"]


async def test_an_8bit_body_goes_as_it_is_with_8bitmime() -> None:
    async with sink(keep_messages=True) as running:
        await send(*server(running.address[1]), "--to", "a@example.com", "--body", "déjà vu")
        await send(
            *server(running.address[1]), "--to", "a@example.com", "--body", "déjà vu", "--8bitmime"
        )
        plain, eightbit = running.messages
    assert plain.data is not None and eightbit.data is not None
    assert "déjà".encode() not in plain.data  # encoded for a 7-bit path
    assert "déjà vu".encode() in eightbit.data
    assert b"Content-Transfer-Encoding: 8bit" in eightbit.data


# smtpbench as a terminal starts it, with Ctrl-C on. A process started while SIGINT is
# ignored keeps it ignored (Python's rule, for background jobs), and this test's process
# cannot promise it is not: a C ``system()`` in any of its threads ignores SIGINT and
# SIGQUIT process-wide while it runs, and a child started then inherits that.
INTERRUPTIBLE = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'smtpbench'; runpy.run_module('smtpbench', run_name='__main__')"
)


async def test_ctrl_c_while_waiting_closes_and_exits_3() -> None:
    import signal
    import sys

    faults = parse_fault_table({"delay": {"RCPT": "60s"}})
    async with sink(faults=faults) as running:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", INTERRUPTIBLE, "send", *server(running.address[1]),
             "--to", "a@example.com"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        interrupted = False
        with trio.move_on_after(30):
            while running.stats.commands["MAIL"] == 0:  # next, RCPT waits for its reply
                await trio.sleep(0.05)
            process.send_signal(signal.SIGINT)
            interrupted = True
            code = await process.wait()
        if process.returncode is None:  # still running: say in what state, then end it
            with open(f"/proc/{process.pid}/status") as status:
                signals = [line for line in status if line.startswith(("Sig", "Shd"))]
            process.kill()
            await process.wait()
            when = "after SIGINT" if interrupted else "without a MAIL at the server"
            pytest.fail(f"smtpbench send still running after 30 s, {when}: {signals}")
        assert process.stderr is not None
        said = await process.stderr.receive_some(65536)
    assert code == exitcodes.INTERRUPTED
    assert b"interrupted" in said and b"Traceback" not in said
