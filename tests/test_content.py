"""Messages that look like real mail (``[content]``): extra headers, test bodies, a MIME
mix, a corpus, DKIM. Sent for real to aiosmtpd on loopback and parsed back there with
the standard ``email`` package: the structure, the attachment bytes and the signature
are checked on the server's side."""

from __future__ import annotations

import email
import mailbox
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from smtpbench import exitcodes
from smtpbench.scenario import MessageFactory, parse_scenario
from smtpbench.scenario.content_spec import EICAR, GTUBE
from smtpbench.scenario.errors import ScenarioError
from smtpbench.scenario.mime import MimeMix
from smtpbench.scenario.writer import scenario_to_toml
from tests.commands import TRACEBACK, smtpbench
from tests.runs import run_against
from tests.servers import aiosmtpd_serving


@dataclass
class Keeping:
    """aiosmtpd handler keeping every message as received."""

    messages: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        with self.lock:
            self.messages.append(envelope.original_content)  # type: ignore[attr-defined]
        return "250 2.0.0 OK"


def received(scenario_text: str, base: Path | None = None) -> list[EmailMessage]:
    """Runs the scenario (TOML; the target is filled in) against aiosmtpd; the messages
    as the server parsed them, in the order they arrived."""
    with aiosmtpd_serving(Keeping()) as (port, handler):
        text = f'{scenario_text}\n[target]\nhost = "127.0.0.1"\nport = {port}\n'
        file = str(base / "scenario.toml") if base is not None else None
        scenario = parse_scenario(text, file=file)
        snapshot = trio.run(run_against, scenario)
    assert snapshot.counters.messages_accepted == len(handler.messages)
    # Parsed with LF line ends, as a mail store keeps them, so texts compare as str.
    return [
        email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=policy.default)  # type: ignore[misc]
        for raw in handler.messages
    ]


MIX = """
name = "mix"
seed = 11
[load]
mode = "concurrency"
concurrency = 4
sessions = 60
duration = "60s"
[session]
size = "2KiB"
[content]
headers = { "X-Campaign" = "spring-{session}", "List-Id" = "<news.smtpbench.test>" }
[[content.mix]]
kind = "text"
weight = 5
[[content.mix]]
kind = "html"
weight = 3
images = 2
image_size = "3KiB"
[[content.mix]]
kind = "attachment"
weight = 2
type = "application/pdf"
name = "report.pdf"
size = { distribution = "uniform", min = "1KiB", max = "200KiB" }
"""


def test_a_mime_mix_arrives_with_its_structure_and_its_attachment_bytes() -> None:
    messages = received(MIX)
    assert len(messages) == 60
    kinds = Counter(message.get_content_type() for message in messages)
    assert set(kinds) == {"text/plain", "multipart/alternative", "multipart/mixed"}
    # The same plans as the run's (run_against seeds its factory with 1).
    factory = MessageFactory(parse_scenario(MIX), seed=1)
    mix = MimeMix(parse_scenario(MIX).content.mix, 1)
    plans = {}
    for number in range(60):
        plan = factory.plan_session(number)
        plans[plan.number] = plan.messages[0]
    for message in messages:
        session = int(message["X-Campaign"].removeprefix("spring-"))
        assert message["List-Id"] == "<news.smtpbench.test>"
        plan = plans[session]
        kind = message.get_content_type()
        if kind == "multipart/alternative":
            text, related = message.get_payload()  # type: ignore[misc]
            assert text.get_content_type() == "text/plain"
            assert related.get_content_type() == "multipart/related"
            html, *images = related.get_payload()
            assert html.get_content_type() == "text/html"
            assert len(images) == 2
            for image in images:
                data = image.get_content()
                assert data.startswith(b"\x89PNG\r\n\x1a\n") and data[12:16] == b"IHDR"
                assert 2 * 1024 < len(data) <= 3 * 1024
                assert image["Content-ID"].strip("<>") in html.get_content()
        elif kind == "multipart/mixed":
            (attachment,) = list(message.iter_attachments())
            assert attachment.get_content_type() == "application/pdf"
            assert attachment.get_filename() == "report.pdf"
            data = attachment.get_content()
            assert plan.attachment is not None
            start, size = plan.attachment
            assert 1024 <= size <= 200 * 1024 and len(data) == size
            assert data == mix.attachment_bytes(start, size)
        else:
            assert message.get_content_charset() == "us-ascii"
            # The [session] size is the whole message's for a plain text one.
            assert 1800 <= len(message.as_bytes(policy=policy.SMTP)) <= 2300


def test_the_mix_follows_its_weights() -> None:
    scenario = parse_scenario(MIX)
    factory = MessageFactory(scenario, seed=5)
    picked = Counter(factory.plan_session(n).messages[0].mix for n in range(5000))
    for index, weight in enumerate((0.5, 0.3, 0.2)):
        sigma = math.sqrt(5000 * weight * (1 - weight))
        assert abs(picked[index] - 5000 * weight) < 4 * sigma, (index, picked)


def test_plain_scenarios_draw_the_same_plans_as_before() -> None:
    # [content] draws from the generator only when it is there: a seed given to a plain
    # scenario must keep giving the traffic it gave.
    plain = parse_scenario('name = "p"\nseed = 3\n[session]\nrecipients = "1..5"\n')
    headed = parse_scenario(
        'name = "p"\nseed = 3\n[session]\nrecipients = "1..5"\n'
        '[content]\nheaders = { "X-A" = "b" }\n'
    )
    one, two = MessageFactory(plain, seed=3), MessageFactory(headed, seed=3)
    for n in range(50):
        first, second = one.plan_session(n), two.plan_session(n)
        assert first.messages[0].recipients == second.messages[0].recipients
        assert first.messages[0].size == second.messages[0].size


@pytest.mark.parametrize(("body", "line"), [("gtube", GTUBE), ("eicar", EICAR)])
def test_scanner_test_bodies_arrive_as_their_standard_text(body: str, line: str) -> None:
    messages = received(f'name = "t"\n[load]\nsessions = 2\n[content]\ntest_body = "{body}"\n')
    for message in messages:
        content = message.get_content()
        assert content.startswith(line + "\n")
        if body == "eicar":  # the EICAR file is the line and nothing but white space
            assert content.strip() == EICAR


def test_body_files_and_templates_are_the_text(tmp_path: Path) -> None:
    (tmp_path / "body.txt").write_bytes(b"Dear customer,\nyour order shipped.\n.\nBye\n")
    messages = received(
        'name = "b"\n[load]\nsessions = 2\n[content]\nbody_file = "body.txt"\n', base=tmp_path
    )
    # The lone dot line went through dot-stuffing and came back.
    assert [m.get_content() for m in messages] == [
        "Dear customer,\nyour order shipped.\n.\nBye\n"
    ] * 2
    messages = received(
        'name = "b"\n[load]\nsessions = 3\n[content]\n'
        'body_template = "Hello user {session}\\nmessage {message}\\n"\n'
    )
    assert sorted(m.get_content() for m in messages) == [
        f"Hello user {n}\nmessage 0\n" for n in range(3)
    ]


def _corpus_message(number: int, attachment: bytes) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Alice {number} <alice{number}@corp.example>"
    message["To"] = "bob@corp.example"
    message["Subject"] = f"quarterly figures {number}"
    message["Message-ID"] = f"<original{number}@corp.example>"
    message["Date"] = "Mon, 02 Mar 2026 10:00:00 +0000"
    message["Received"] = "from mx1.corp.example (127.1.2.3) by mx2.corp.example"
    message.set_content(f"Figures attached. Ask carol@corp.example or 127.20.30.40.\n{number}\n")
    message.add_attachment(attachment, maintype="application", subtype="octet-stream",
                           filename=f"figures{number}.bin")  # fmt: skip
    return message


def _write_corpus(where: Path, form: str) -> list[bytes]:
    attachments = [bytes(range(256)) * (n + 3) for n in range(3)]
    messages = [_corpus_message(n, attachments[n]) for n in range(3)]
    if form == "eml":
        where.mkdir()
        for n, message in enumerate(messages):
            (where / f"{n}.eml").write_bytes(message.as_bytes())
    elif form == "maildir":
        box = mailbox.Maildir(where, create=True)
        for message in messages:
            box.add(message.as_bytes())
    else:
        box = mailbox.mbox(where, create=True)
        for message in messages:
            box.add(message.as_bytes())
        box.flush()
    return attachments


@pytest.mark.parametrize("form", ["eml", "maildir", "mbox"])
def test_a_corpus_is_sent_whole_each_message_a_new_one(tmp_path: Path, form: str) -> None:
    attachments = _write_corpus(tmp_path / "corpus", form)
    messages = received(
        'name = "c"\n[load]\nmode = "concurrency"\nconcurrency = 3\nsessions = 12\n'
        'duration = "60s"\n[content.corpus]\npath = "corpus"\nsampling = "without-replacement"\n',
        base=tmp_path,
    )
    assert len(messages) == 12
    # Without replacement: each of the three, once per pass of three.
    subjects = Counter(message["Subject"] for message in messages)
    assert subjects == Counter({f"quarterly figures {n}": 4 for n in range(3)})
    ids = [message["Message-ID"] for message in messages]
    assert len(set(ids)) == 12 and not any("original" in i for i in ids)
    for message in messages:
        assert len(message.get_all("Message-ID")) == 1 and len(message.get_all("Date")) == 1
        number = int(message["Subject"].rsplit(" ", 1)[1])
        assert message["From"] == f"Alice {number} <alice{number}@corp.example>"
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_content() == attachments[number]


def test_an_anonymised_corpus_keeps_no_address_and_no_trace(tmp_path: Path) -> None:
    attachments = _write_corpus(tmp_path / "corpus", "eml")
    messages = received(
        'name = "c"\n[load]\nsessions = 3\n[content.corpus]\npath = "corpus"\nanonymise = true\n',
        base=tmp_path,
    )
    for message in messages:
        raw = message.as_bytes()
        assert b"corp.example" not in raw and b"127.20.30.40" not in raw
        assert message["Received"] is None
        assert message["From"].addresses[0].domain == "example.invalid"
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_content() in attachments  # binary parts left as they were


def _dkim_key(folder: Path) -> tuple[Path, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "s1.private"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    import base64

    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_dkim_signed_messages_verify_on_the_receiving_side(tmp_path: Path) -> None:
    _, record = _dkim_key(tmp_path)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.smtpbench.test."
        return record

    text = (
        'name = "d"\n[load]\nsessions = 4\n[[content.mix]]\nkind = "attachment"\n'
        'size = "20KiB"\n[content.dkim]\ndomain = "smtpbench.test"\nselector = "s1"\n'
        'key_file = "s1.private"\n'
    )
    with aiosmtpd_serving(Keeping()) as (port, handler):
        scenario = parse_scenario(
            f'{text}\n[target]\nhost = "127.0.0.1"\nport = {port}\n',
            file=str(tmp_path / "scenario.toml"),
        )
        trio.run(run_against, scenario)
    assert len(handler.messages) == 4
    for raw in handler.messages:
        assert raw.startswith(b"DKIM-Signature:")
        assert dkim.verify(raw, dnsfunc=dns)
        # The check can fail: one changed byte of the body and it does.
        assert not dkim.verify(raw.replace(b"\r\n\r\n", b"\r\n\r\nx", 1), dnsfunc=dns)
    assert parse_scenario(scenario_to_toml(scenario)) == scenario


@pytest.mark.parametrize(
    ("table", "key", "said"),
    [
        ('[content]\nheaders = { "Subject" = "x" }\n', "content.headers", "written by smtpbench"),
        ('[content]\nheaders = { "Bad Name" = "x" }\n', "content.headers", "not a header name"),
        ('[content]\nheaders = { "X-A" = "{nope}" }\n', "content.headers", "nope"),
        ('[[content.mix]]\nkind = "video"\n', "content.mix[0].kind", "text"),
        ('[[content.mix]]\nkind = "html"\nimages = 50\n', "content.mix[0].images", "20"),
        ('[[content.mix]]\nkind = "text"\nweight = 0\n', "content.mix[0].weight", "above 0"),
        ('[content]\nbody_file = "missing.txt"\n', "content.body_file", "no such file"),
        ('[content.corpus]\npath = "nowhere"\n', "content.corpus.path", "no such file"),
        ('[content]\ntest_body = "gtube"\nbody_template = "x"\n', "content", "choose one"),
        ('[session]\nbody = "8bitmime"\n[[content.mix]]\nkind = "text"\n', "content.mix", "7bit"),
        ('[content.dkim]\ndomain = "a.test"\nselector = "s"\n', "content.dkim.key_file", "key"),
    ],
)
def test_a_wrong_content_table_names_its_key(
    tmp_path: Path, table: str, key: str, said: str
) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(f'name = "e"\n{table}', file=str(tmp_path / "bad.toml"))
    assert caught.value.key == key, str(caught.value)
    assert said in str(caught.value)


def test_an_unusable_corpus_or_key_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "junk.eml").write_bytes(b"this is not a message at all\n")
    (tmp_path / "bad.toml").write_text('name = "e"\n[content.corpus]\npath = "corpus"\n')
    (tmp_path / "garbage.pem").write_text("-----BEGIN RSA PRIVATE KEY-----\nnope\n")
    (tmp_path / "key.toml").write_text(
        'name = "e"\n[content.dkim]\ndomain = "a.test"\nselector = "s"\nkey_file = "garbage.pem"\n'
    )
    for scenario, said in (
        ("bad.toml", "junk.eml: not a message"),
        ("key.toml", "garbage.pem: cannot sign with it"),
    ):
        done = smtpbench("run", str(tmp_path / scenario), "--headless", "--out", str(tmp_path))
        assert done.returncode != exitcodes.OK
        assert said in done.stdout + done.stderr, done.stdout + done.stderr
        assert TRACEBACK not in done.stderr


def test_the_sink_writing_a_maildir_keeps_the_mix_byte_for_byte(tmp_path: Path) -> None:
    # The embedded sink's own copy (its maildir), parsed back: the same structure and
    # the same attachment bytes as the run planned.
    maildir = tmp_path / "received"
    text = MIX.replace("sessions = 60", "sessions = 30") + f'[sink]\nmaildir = "{maildir}"\n'
    (tmp_path / "mix.toml").write_text(text)
    done = smtpbench(
        "run", str(tmp_path / "mix.toml"), "--headless", "--seed", "11",
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert done.returncode == exitcodes.OK, done.stdout + done.stderr
    box = mailbox.Maildir(maildir, create=False)
    messages = [
        email.message_from_bytes(box.get_bytes(key), policy=policy.default)  # type: ignore[misc]
        for key in box.iterkeys()
    ]
    assert len(messages) == 30
    scenario = parse_scenario(text)
    factory = MessageFactory(scenario, seed=11)
    plans = {n: factory.plan_session(n).messages[0] for n in range(30)}
    mix = MimeMix(scenario.content.mix, 11)
    kinds = Counter()
    for message in messages:
        plan = plans[int(message["X-Campaign"].removeprefix("spring-"))]
        kinds[message.get_content_type()] += 1
        if plan.attachment is not None:
            (attachment,) = list(message.iter_attachments())
            assert attachment.get_content() == mix.attachment_bytes(*plan.attachment)
        assert (
            message.get_content_type()
            == (
                "text/plain",
                "multipart/alternative",
                "multipart/mixed",
            )[plan.mix]
        )
    assert len(kinds) >= 2
