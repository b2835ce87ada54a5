"""Templates: what is accepted, what is refused, and how they render."""

from __future__ import annotations

import random

import pytest

from smtpbench.scenario.templates import RANDOM_LIMIT, Renderer, check_template, template_fields


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("plain@example.com", set()),
        ("user{counter}@example.com", {"counter"}),
        ("u{session}.{message}.{rcpt}@x.test", {"session", "message", "rcpt"}),
        ("{random:06d}-{counter:x}@x.test", {"random", "counter"}),
        ("{{literal}}", set()),
    ],
)
def test_fields(text: str, fields: set[str]) -> None:
    assert template_fields(text) == fields


@pytest.mark.parametrize(
    ("text", "kind", "fragment"),
    [
        ("user{nope}@x.test", "address", "unknown placeholder {nope}"),
        ("user{0}@x.test", "address", "positional"),
        ("user{}@x.test", "address", "positional"),
        ("user{counter:06s}@x.test", "address", "bad format spec"),
        ("user{counter:zz}@x.test", "address", "bad format spec"),
        ("user{counter!s}@x.test", "address", "conversions"),
        ("user{counter[0]}@x.test", "address", "unknown placeholder"),
        ("user}@x.test", "address", "bad template"),
        ("nobody", "address", "exactly one '@'"),
        ("@x.test", "address", "exactly one '@'"),
        ("a@b@x.test", "address", "exactly one '@'"),
        ("<a@x.test>", "address", "'<>'"),
        # A fill character can put an "@" in only some renderings: caught by the samples.
        ("a{counter:@>3}@x.test", "address", "exactly one '@'"),
        ("host name", "hostname", "without spaces"),
        ("", "hostname", "without spaces"),
        ("caf\u00e9", "text", "printable ASCII"),
        ("a\rb", "text", "printable ASCII"),
    ],
)
def test_refused(text: str, kind: str, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_template(text, kind=kind)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("user{counter:06d}@example.org", "address"),
        ("bounces+{session}-{message}@news.example.com", "address"),
        ("mx{random}.example.net", "hostname"),
        ("Weekly {{news}} {session}", "text"),
        ("", "text"),
    ],
)
def test_accepted(text: str, kind: str) -> None:
    check_template(text, kind=kind)


def test_renderer_counts_per_template() -> None:
    rng = random.Random(1)
    a = Renderer("a{counter}@x.test", rng)
    b = Renderer("b{counter:03d}@x.test", rng)
    assert [a.render(0) for _ in range(3)] == ["a0@x.test", "a1@x.test", "a2@x.test"]
    assert b.render(5) == "b000@x.test"
    assert a.render(0) == "a3@x.test"


def test_renderer_values() -> None:
    r = Renderer("{session}-{message}-{rcpt}", random.Random(1))
    assert r.render(7, 2, 3) == "7-2-3"
    assert r.render(7) == "7-0-0"


def test_constant_template_unescapes_braces() -> None:
    assert Renderer("{{x}}", random.Random(1)).render(0) == "{x}"


def test_random_is_seeded_and_in_range() -> None:
    first = [Renderer("{random}", random.Random(9)).render(0) for _ in range(2)]
    assert first[0] == first[1]
    values = {int(Renderer("{random}", random.Random(s)).render(0)) for s in range(50)}
    assert all(0 <= v < RANDOM_LIMIT for v in values)
    assert len(values) > 40


def test_templates_without_random_do_not_consume_randomness() -> None:
    rng = random.Random(3)
    Renderer("user{counter}@x.test", rng).render(0)
    assert rng.random() == random.Random(3).random()


@pytest.mark.parametrize(
    ("text", "kind"),
    [("x" * 901, "text"), ("h" * 256, "hostname"), ("a" * 250 + "@x.test", "address")],
)
def test_length_limits(text: str, kind: str) -> None:
    with pytest.raises(ValueError, match="more than"):
        check_template(text, kind=kind)


def test_counter_growth_is_checked_against_the_limit() -> None:
    # Fine for small numbers, too long once {counter} reaches a billion.
    with pytest.raises(ValueError, match="more than"):
        check_template("x" * 893 + "{counter}", kind="text")


@pytest.mark.parametrize(
    "text",
    [
        "sender{session}@smtpbench.test",
        "user{counter}@smtpbench.test",
        "smtpbench test {session}.{message}",
        "{rcpt}",
        "{{lit}}{message}}}x{counter}",
        "{random}@x.test",
        "a{session:04d}-{message}",  # a spec: formatted, not joined
        "{session}-{message}-{rcpt}",  # three placeholders: formatted
        "{rcpt}.{counter}@x.test",
        "{random}:{session}",
        "{counter}{random}",
    ],
)
def test_rendering_is_str_format(text: str) -> None:
    """However a template is rendered, it gives what ``str.format`` gives."""
    rendered = Renderer(text, random.Random(4))
    draws = random.Random(4)
    for counter, (session, message, rcpt) in enumerate([(0, 0, 0), (7, 12, 3), (99999, 1, 2)]):
        value = draws.randrange(RANDOM_LIMIT) if "{random}" in text else 0
        expected = text.format(
            session=session, message=message, rcpt=rcpt, counter=counter, random=value
        )
        assert rendered.render(session, message, rcpt) == expected


@pytest.mark.parametrize(
    ("text", "per_session"),
    [
        ("sender{session}@smtpbench.test", True),
        ("plain@smtpbench.test", True),
        ("{session}-{message}@x.test", False),
        ("user{counter}@smtpbench.test", False),
        ("{random}{session}@x.test", False),
        ("{rcpt}@x.test", False),
    ],
)
def test_a_template_of_the_session_alone_says_so(text: str, per_session: bool) -> None:
    # What a factory renders once per session: only text that cannot differ per message.
    assert Renderer(text, random.Random(1)).per_session is per_session
