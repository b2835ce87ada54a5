"""MessageFactory: reproducible plans, unique IDs, planned sizes, valid RFC 5322 messages."""

from __future__ import annotations

import dataclasses
import email.parser
import email.policy
import email.utils
import re
import time
from dataclasses import replace

import pytest

from smtpbench import __version__
from smtpbench.protocol.message import dot_stuff
from smtpbench.scenario import (
    IntRange,
    MessageFactory,
    Scenario,
    Session,
    SizeDistribution,
    default_scenario,
    parse_scenario,
)
from smtpbench.scenario.content import LINE_LIMIT, MessagePlan

FIXED_CLOCK = 1_700_000_000.0


def scenario_with(**changes: object) -> Scenario:
    base = default_scenario()
    return replace(base, session=replace(base.session, **changes))  # type: ignore[arg-type]


BUSY = scenario_with(
    messages=IntRange(1, 4),
    recipients=IntRange(1, 12),
    size=SizeDistribution.lognormal(8 * 1024, 1.2, high=512 * 1024),
    rset_between_messages=True,
    noop=0.3,
    mail_from="s{random}@a{session}.example.com",
    rcpt_to="u{counter:05d}@example.org",
)


def messages(factory: MessageFactory, sessions: int) -> list[bytes]:
    out = []
    for number in range(sessions):
        plan = factory.plan_session(number)
        out += [factory.message_bytes(plan, i) for i in range(len(plan.messages))]
    return out


def test_same_seed_same_plans_and_bytes() -> None:
    a = MessageFactory(BUSY, seed=5, clock=lambda: FIXED_CLOCK)
    b = MessageFactory(BUSY, seed=5, clock=lambda: FIXED_CLOCK)
    assert [a.plan_session(n) for n in range(50)] == [b.plan_session(n) for n in range(50)]
    assert messages(a, 20) == messages(b, 20)


def test_different_seeds_differ() -> None:
    a = MessageFactory(BUSY, seed=1)
    b = MessageFactory(BUSY, seed=2)
    assert [a.plan_session(n) for n in range(20)] != [b.plan_session(n) for n in range(20)]


def test_seed_comes_from_argument_then_scenario_then_chance() -> None:
    seeded = replace(BUSY, seed=77)
    assert MessageFactory(seeded).seed == 77
    assert MessageFactory(seeded, seed=3).seed == 3
    assert MessageFactory(BUSY).seed != MessageFactory(BUSY).seed


def test_plans_follow_the_session() -> None:
    factory = MessageFactory(BUSY, seed=9)
    plans = [factory.plan_session(n) for n in range(300)]
    counts = {len(p.messages) for p in plans}
    assert counts == {1, 2, 3, 4}
    all_messages = [m for p in plans for m in p.messages]
    assert {len(m.recipients) for m in all_messages} == set(range(1, 13))
    for plan in plans:
        assert [m.rset_before for m in plan.messages] == [i > 0 for i in range(len(plan.messages))]
        assert all(m.mail_from.endswith(f"@a{plan.number}.example.com") for m in plan.messages)
    noops = sum(m.noop_before for m in all_messages) / len(all_messages)
    assert noops == pytest.approx(0.3, abs=0.05)
    recipients = [r for m in all_messages for r in m.recipients]
    # {counter} runs over the whole factory, so every address here is new.
    assert recipients[:3] == ["u00000@example.org", "u00001@example.org", "u00002@example.org"]
    assert len(set(recipients)) == len(recipients)


def test_no_rset_or_noop_unless_asked() -> None:
    factory = MessageFactory(scenario_with(messages=IntRange(3, 3)), seed=1)
    plan = factory.plan_session(0)
    assert not any(m.rset_before or m.noop_before for m in plan.messages)
    assert plan.helo_name == "smtpbench.localhost"
    assert [m.subject for m in plan.messages] == [f"smtpbench test 0.{i}" for i in range(3)]


def test_zero_messages() -> None:
    factory = MessageFactory(scenario_with(messages=IntRange(0, 0)), seed=1)
    assert factory.plan_session(0).messages == ()


def test_message_ids_are_unique_across_a_run_and_across_seeds() -> None:
    ids: set[str] = set()
    total = 0
    for seed in (1, 2):
        factory = MessageFactory(BUSY, seed=seed)
        for raw in messages(factory, 1500):
            match = re.search(rb"^Message-ID: (<[^>]+>)\r$", raw, re.MULTILINE)
            assert match is not None
            ids.add(match.group(1).decode())
            total += 1
    assert len(ids) == total > 3000


def test_sizes_within_tolerance() -> None:
    factory = MessageFactory(BUSY, seed=4)
    checked = 0
    for number in range(400):
        plan = factory.plan_session(number)
        for i, message in enumerate(plan.messages):
            raw = factory.message_bytes(plan, i)
            head = raw.index(b"\r\n\r\n") + 4
            if head + 100 > message.size:
                # Many recipients, small size: the headers alone are larger than planned.
                assert len(raw) - head < 100
                continue
            assert abs(len(raw) - message.size) <= max(100, message.size // 100)
            checked += 1
    assert checked > 500


@pytest.mark.parametrize("size", [512, 600, 1000, 2048, 65536, 64 * 1024 + 1, 3 * 1024**2 + 7])
def test_exact_sizes(size: int) -> None:
    factory = MessageFactory(scenario_with(size=SizeDistribution.fixed(size)), seed=1)
    plan = factory.plan_session(0)
    assert len(factory.message_bytes(plan, 0)) == size


def test_large_header_block_still_gives_a_message() -> None:
    s = scenario_with(recipients=IntRange(40, 40), size=SizeDistribution.fixed(512))
    factory = MessageFactory(s, seed=1)
    plan = factory.plan_session(0)
    raw = factory.message_bytes(plan, 0)
    body = raw.partition(b"\r\n\r\n")[2]
    assert len(raw) > 512
    assert body.endswith(b"\r\n") and len(body) >= 3


def test_crlf_only_and_short_ascii_lines() -> None:
    factory = MessageFactory(BUSY, seed=6)
    for raw in messages(factory, 200):
        assert raw.endswith(b"\r\n")
        assert raw.isascii()
        assert b"\n" not in raw.replace(b"\r\n", b"")
        assert b"\r" not in raw.replace(b"\r\n", b"")
        lines = raw.split(b"\r\n")[:-1]
        assert all(len(line) <= LINE_LIMIT for line in lines)
        assert all(line.decode("ascii").isprintable() for line in lines)


def test_some_body_lines_start_with_a_dot() -> None:
    factory = MessageFactory(scenario_with(size=SizeDistribution.fixed(64 * 1024)), seed=8)
    plan = factory.plan_session(0)
    body = factory.message_bytes(plan, 0).partition(b"\r\n\r\n")[2]
    lines = body.split(b"\r\n")
    dotted = [line for line in lines if line.startswith(b".")]
    assert 0 < len(dotted) < len(lines) / 10


def test_headers_parse_back() -> None:
    s = scenario_with(recipients=IntRange(20, 20), rcpt_to="someone{counter}@example.org")
    factory = MessageFactory(s, seed=10, clock=lambda: FIXED_CLOCK)
    plan = factory.plan_session(3)
    raw = factory.message_bytes(plan, 0)
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
    message = plan.messages[0]
    assert parsed["From"] == message.mail_from
    assert [a.addr_spec for a in parsed["To"].addresses] == list(message.recipients)
    assert parsed["Subject"] == message.subject
    assert parsed["Date"].datetime == email.utils.parsedate_to_datetime(
        "Tue, 14 Nov 2023 22:13:20 +0000"
    )
    assert parsed["Message-ID"] == f"<smtpbench.a.3.0@{message.mail_from.split('@')[1]}>"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed.get_content_type() == "text/plain"
    assert parsed.get_content_charset() == "us-ascii"
    assert parsed["X-Mailer"] == f"smtpbench/{__version__}"
    assert "Return-Path" not in parsed
    assert parsed.defects == []
    # The To header was long enough to fold.
    head = raw.partition(b"\r\n\r\n")[0]
    assert b",\r\n " in head


def test_date_follows_the_clock() -> None:
    now = [FIXED_CLOCK]
    factory = MessageFactory(default_scenario(), seed=1, clock=lambda: now[0])
    plan = factory.plan_session(0)
    first = factory.message_bytes(plan, 0)
    now[0] += 61
    second = factory.message_bytes(plan, 0)
    assert b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n" in first
    assert b"Date: Tue, 14 Nov 2023 22:14:21 +0000\r\n" in second


def test_templates_with_all_placeholders() -> None:
    s = parse_scenario(
        """
        [session]
        helo_name = "mx{session}.example.net"
        recipients = 2
        mail_from = "s{session}-m{message}@example.com"
        rcpt_to = "r{rcpt}-c{counter:03d}-{random:06d}@example.org"
        subject = "Hello {session}/{message}"
        messages = 2
        """
    )
    factory = MessageFactory(s, seed=1)
    factory.plan_session(0)
    plan = factory.plan_session(1)
    assert plan.helo_name == "mx1.example.net"
    second = plan.messages[1]
    assert second.mail_from == "s1-m1@example.com"
    assert second.subject == "Hello 1/1"
    assert re.fullmatch(r"r0-c006-\d{6}@example\.org", second.recipients[0])
    assert re.fullmatch(r"r1-c007-\d{6}@example\.org", second.recipients[1])


def test_message_bytes_is_cheap() -> None:
    factory = MessageFactory(default_scenario(), seed=1)
    plan = factory.plan_session(0)
    rounds = 20000
    started = time.perf_counter()
    for _ in range(rounds):
        factory.message_bytes(plan, 0)
    per_message = (time.perf_counter() - started) / rounds
    # The target is well under 20 us; allow for slow, shared test machines.
    assert per_message < 50e-6


def test_session_object_is_reusable_across_factories() -> None:
    session = Session(rcpt_to="x{counter}@example.org")
    scenario = Scenario(name="t", session=session)
    first = MessageFactory(scenario, seed=1).plan_session(0)
    again = MessageFactory(scenario, seed=1).plan_session(0)
    assert first == again  # counters live in the factory, not in the scenario


def test_a_message_plans_init_takes_its_fields_in_order_with_their_defaults() -> None:
    # The __init__ is written out (for a compiled build): it must stay what the
    # dataclass would make, or replace() and the fields would disagree with it. Checked
    # by what it does, since a compiled method has no signature to read.
    samples = {
        "mail_from": "a@x.test",
        "recipients": ("b@x.test",),
        "size": 100,
        "subject": "s",
        "rset_before": False,
        "noop_before": True,
        "envid": "e",
        "headers": (("X-A", "1"),),
        "mix": 2,
        "attachment": (3, 4),
        "corpus": 5,
    }
    fields = dataclasses.fields(MessagePlan)
    assert [f.name for f in fields] == list(samples)  # a new field needs a sample here
    by_position = MessagePlan(*samples.values())  # type: ignore[arg-type]
    assert {f.name: getattr(by_position, f.name) for f in fields} == samples
    assert MessagePlan(**samples) == by_position  # type: ignore[arg-type]
    required = {f.name: samples[f.name] for f in fields if f.default is dataclasses.MISSING}
    defaulted = MessagePlan(**required)  # type: ignore[arg-type]
    for field in fields:
        if field.name not in required:
            assert getattr(defaulted, field.name) == field.default, field.name
    changed = dataclasses.replace(by_position, size=200)
    assert (changed.size, changed.envid, changed.corpus) == (200, "e", 5)


@pytest.mark.parametrize(
    "session",
    [
        {"size": SizeDistribution.fixed(1024)},
        {"size": SizeDistribution.lognormal(8 * 1024, 1.2, high=512 * 1024)},
        {"size": SizeDistribution.fixed(100 * 1024)},  # longer than the filler: it repeats
        {"size": SizeDistribution.fixed(2048), "body": "8bitmime"},
        {"size": SizeDistribution.fixed(512), "recipients": IntRange(30, 30)},  # headers only
    ],
)
def test_the_dot_lines_a_message_is_said_to_have_are_its_dot_lines(
    session: dict[str, object],
) -> None:
    # DATA stuffs the lines it is told of and looks for no other: a line "." it missed
    # would end the message early, a dot it added where none was would change it.
    factory = MessageFactory(scenario_with(messages=IntRange(20, 20), **session), seed=3)
    known = []
    for number in range(30):
        plan = factory.plan_session(number)
        for index in range(len(plan.messages)):
            content, dots = factory.message_to_send(plan, index)
            assert content == factory.message_bytes(plan, index)
            if dots is not None:
                assert dots == dot_lines_of(content), (number, index)
                assert dot_stuff(content, dots) == dot_stuff(content)
            known.append(dots is not None)
    if session["size"] == SizeDistribution.fixed(100 * 1024):
        assert not any(known), "a body longer than the filler is looked through"
    else:
        assert any(known), "every message said to need the look"


def dot_lines_of(content: bytes) -> tuple[int, ...]:
    """Where each line of ``content`` that starts with "." starts."""
    found = [0] if content.startswith(b".") else []
    at = content.find(b"\r\n.")
    while at >= 0:
        found.append(at + 2)
        at = content.find(b"\r\n.", at + 1)
    return tuple(found)


def test_a_message_with_dot_lines_is_said_to_have_them() -> None:
    # Not always none: messages whose body holds a line that starts with "." say so.
    factory = MessageFactory(scenario_with(size=SizeDistribution.fixed(4096)), seed=3)
    seen = []
    for number in range(200):
        plan = factory.plan_session(number)
        content, dots = factory.message_to_send(plan, 0)
        seen.append((b"\r\n." in content, dots is None or bool(dots)))  # None: looked through
    assert (True, True) in seen and (False, False) in seen
    assert (True, False) not in seen
