"""Fault plans: every form, every error, and the round trips through flags and TOML."""

from __future__ import annotations

import json
import pickle
import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpbench.faults import (
    EMPTY_FAULTS,
    Delay,
    FaultPlan,
    FaultSpecError,
    ReplyFault,
    Stall,
    fault_plan_from_flags,
    parse_fault_flag,
    parse_fault_table,
)
from smtpbench.protocol.steps import Step

FULL_TABLE: dict[str, object] = {
    "delay": {"DATA": "50ms", "RCPT": "5ms..20ms", "connect": 0.25},
    "reply": {"RCPT": "451:1%", "MAIL": ["451:1%", "554:0.5%"]},
    "disconnect": {"DATA end": "0.1%"},
    "garbage": {"EHLO": "1%", "banner": 0.5},
    "stall": {"MAIL": "1s@200"},
    "shutdown_after": 1000,
}


def toml_value(value: object) -> str:
    if isinstance(value, dict):
        items = ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)  # strings, ints and finite floats read the same in TOML


def through_toml(table: dict[str, object]) -> dict[str, object]:
    """The table written as a [sink] section of a TOML file and read back."""
    text = "[sink]\n" + "".join(f"{key} = {toml_value(v)}\n" for key, v in table.items())
    return tomllib.loads(text)["sink"]


def argv_pairs(argv: list[str]) -> tuple[list[tuple[str, str]], int | None]:
    pairs: list[tuple[str, str]] = []
    shutdown_after = None
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        if flag == "--shutdown-after":
            shutdown_after = int(value)
        else:
            pairs.append((flag.removeprefix("--"), value))
    return pairs, shutdown_after


def test_every_form_parses() -> None:
    plan = parse_fault_table(FULL_TABLE)
    assert plan.delays == {
        Step.DATA: Delay(0.05, 0.05),
        Step.RCPT: Delay(0.005, 0.02),
        Step.CONNECT: Delay(0.25, 0.25),
    }
    assert plan.replies == {
        Step.RCPT: (ReplyFault(451, 0.01),),
        Step.MAIL: (ReplyFault(451, 0.01), ReplyFault(554, 0.005)),
    }
    assert plan.disconnects == {Step.DATA_END: 0.001}
    assert plan.garbage == {Step.EHLO: 0.01, Step.CONNECT: 0.5}  # banner is connect
    assert plan.stalls == {Step.MAIL: Stall(1.0, 200)}
    assert plan.shutdown_after == 1000
    assert not plan.is_empty
    assert plan.steps() == {Step.DATA, Step.RCPT, Step.CONNECT, Step.MAIL, Step.DATA_END, Step.EHLO}


def test_step_names_labels_and_case() -> None:
    plan = parse_fault_table({"delay": {"data_end": "1ms", "rcpt to": "1ms", "greeting": "1ms"}})
    assert set(plan.delays) == {Step.DATA_END, Step.RCPT, Step.CONNECT}


def test_empty_plan() -> None:
    assert EMPTY_FAULTS.is_empty
    assert parse_fault_table({}) == EMPTY_FAULTS
    assert EMPTY_FAULTS.to_argv() == []
    assert EMPTY_FAULTS.to_table() == {}
    assert not FaultPlan(shutdown_after=0).is_empty


def test_plan_is_read_only() -> None:
    plan = parse_fault_table(FULL_TABLE)
    with pytest.raises(TypeError):
        plan.delays[Step.QUIT] = Delay(1, 1)  # type: ignore[index]
    source = {Step.DATA: Delay(1, 1)}
    plan = FaultPlan(delays=source)
    source[Step.MAIL] = Delay(2, 2)
    assert Step.MAIL not in plan.delays


def test_table_round_trip_through_toml() -> None:
    plan = parse_fault_table(FULL_TABLE)
    table = plan.to_table()
    assert table["delay"] == {"connect": "250ms", "RCPT": "5ms..20ms", "DATA": "50ms"}
    assert table["reply"] == {"MAIL": ["451:1%", "554:0.5%"], "RCPT": "451:1%"}
    assert parse_fault_table(through_toml(table)) == plan


def test_argv_round_trip() -> None:
    plan = parse_fault_table(FULL_TABLE)
    argv = plan.to_argv()
    assert argv[:2] == ["--delay", "connect=250ms"]
    assert "--reply" in argv and "MAIL=554:0.5%" in argv
    assert argv[-2:] == ["--shutdown-after", "1000"]
    pairs, shutdown_after = argv_pairs(argv)
    assert fault_plan_from_flags(pairs, shutdown_after=shutdown_after) == plan


durations = st.floats(min_value=0, max_value=1e5, allow_nan=False, allow_infinity=False)
shares = st.floats(min_value=0, max_value=1, allow_nan=False)
fault_steps = st.sampled_from([s for s in Step if s not in (Step.TLS, Step.BANNER)])


@given(
    delays=st.dictionaries(fault_steps, st.tuples(durations, durations), max_size=4),
    replies=st.dictionaries(
        fault_steps,
        st.lists(st.tuples(st.integers(400, 599), st.floats(0, 0.3)), min_size=1, max_size=3),
        max_size=3,
    ),
    drops=st.dictionaries(fault_steps, shares, max_size=3),
    garbage=st.dictionaries(fault_steps, shares, max_size=3),
    stalls=st.dictionaries(fault_steps, st.tuples(durations, st.integers(1, 10**9)), max_size=3),
    shutdown_after=st.none() | st.integers(0, 10**9),
)
def test_round_trips_exactly(
    delays: dict[Step, tuple[float, float]],
    replies: dict[Step, list[tuple[int, float]]],
    drops: dict[Step, float],
    garbage: dict[Step, float],
    stalls: dict[Step, tuple[float, int]],
    shutdown_after: int | None,
) -> None:
    plan = FaultPlan(
        delays={s: Delay(min(pair), max(pair)) for s, pair in delays.items()},
        replies={s: tuple(ReplyFault(c, p) for c, p in faults) for s, faults in replies.items()},
        disconnects=drops,
        garbage=garbage,
        stalls={s: Stall(d, n) for s, (d, n) in stalls.items()},
        shutdown_after=shutdown_after,
    )
    assert parse_fault_table(through_toml(plan.to_table())) == plan
    pairs, after = argv_pairs(plan.to_argv())
    assert fault_plan_from_flags(pairs, shutdown_after=after) == plan


@pytest.mark.parametrize(
    ("table", "key", "words"),
    [
        ({"delay": {"DATA": "soon"}}, "delay.DATA", "expected a duration"),
        ({"delay": {"DATA": "20ms..5ms"}}, "delay.DATA", "ends before it starts"),
        ({"delay": {"DATA": "5ms..x"}}, "delay.DATA", "expected a duration"),
        ({"delay": {"DATA": -1}}, "delay.DATA", "negative"),
        ({"delay": {"DATA": True}}, "delay.DATA", "expected a duration"),
        ({"delay": {"HELLO": "1s"}}, "delay.HELLO", "unknown SMTP step"),
        ({"delay": {"TLS": "1s"}}, "delay.TLS", "cannot inject faults"),
        ({"delay": {"DATA_END": "1s", "DATA end": "2s"}}, "delay.DATA end", "given twice"),
        ({"delay": "1s"}, "delay", "expected a table of steps"),
        ({"reply": {"RCPT": "451"}}, "reply.RCPT", "expected CODE:SHARE"),
        ({"reply": {"RCPT": "250:1%"}}, "reply.RCPT", "4xx or 5xx"),
        ({"reply": {"RCPT": "451:150%"}}, "reply.RCPT", "between 0% and 100%"),
        ({"reply": {"RCPT": "451:lots"}}, "reply.RCPT", "expected a share"),
        ({"reply": {"RCPT": ["451:60%", "452:50%"]}}, "reply.RCPT", "over 100%"),
        ({"reply": {"RCPT": []}}, "reply.RCPT", "at least one"),
        ({"reply": {"RCPT": 451}}, "reply.RCPT", "expected CODE:SHARE"),
        ({"disconnect": {"DATA": "2"}}, "disconnect.DATA", "between 0% and 100%"),
        ({"disconnect": {"DATA": "often"}}, "disconnect.DATA", "expected a share"),
        ({"garbage": {"EHLO": [1]}}, "garbage.EHLO", "expected a share"),
        ({"stall": {"MAIL": "1s"}}, "stall.MAIL", "expected DURATION@N"),
        ({"stall": {"MAIL": "1s@0"}}, "stall.MAIL", "counts from 1"),
        ({"stall": {"MAIL": "long@3"}}, "stall.MAIL", "expected a duration"),
        ({"shutdown_after": -1}, "shutdown_after", "0 or more"),
        ({"shutdown_after": "10"}, "shutdown_after", "number of connections"),
        ({"shutdown_after": True}, "shutdown_after", "number of connections"),
        ({"explode": {"DATA": "1%"}}, "explode", "unknown fault"),
    ],
)
def test_table_errors_name_the_key(table: dict[str, object], key: str, words: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_table(table)
    assert caught.value.key == key
    assert words in caught.value.message
    assert str(caught.value) == f"{key}: {caught.value.message}"
    assert isinstance(caught.value, ValueError)


def test_ignore_leaves_the_callers_keys_alone() -> None:
    plan = parse_fault_table({"hostname": "x", "delay": {"DATA": "1ms"}}, ignore=["hostname"])
    assert plan.delays == {Step.DATA: Delay(0.001, 0.001)}


def test_error_pickles() -> None:
    error = FaultSpecError("delay.DATA", "expected a duration")
    again = pickle.loads(pickle.dumps(error))
    assert (again.key, again.message, str(again)) == (error.key, error.message, str(error))


@pytest.mark.parametrize(
    ("kind", "text", "expected"),
    [
        ("delay", "DATA=50ms", (Step.DATA, Delay(0.05, 0.05))),
        ("delay", "DATA end=5ms..20ms", (Step.DATA_END, Delay(0.005, 0.02))),
        ("reply", "RCPT=451:1%", (Step.RCPT, ReplyFault(451, 0.01))),
        ("disconnect", "DATA end=0.1%", (Step.DATA_END, 0.001)),
        ("garbage", "banner=1%", (Step.CONNECT, 0.01)),
        ("stall", "MAIL=1s@200", (Step.MAIL, Stall(1.0, 200))),
    ],
)
def test_flag_forms(kind: str, text: str, expected: tuple[Step, object]) -> None:
    assert parse_fault_flag(kind, text) == expected


@pytest.mark.parametrize(
    ("kind", "text", "words"),
    [
        ("delay", "50ms", "expected STEP=VALUE"),
        ("delay", "=50ms", "expected STEP=VALUE"),
        ("delay", "DATA=", "expected a duration"),
        ("reply", "RCPT=451", "expected CODE:SHARE"),
        ("stall", "NOPE=1s@2", "unknown SMTP step"),
        ("explode", "DATA=1", "unknown fault flag"),
    ],
)
def test_flag_errors_name_the_flag(kind: str, text: str, words: str) -> None:
    with pytest.raises(FaultSpecError) as caught:
        parse_fault_flag(kind, text)
    assert caught.value.key == f"--{kind}"
    assert str(caught.value).startswith(f"--{kind}: ")
    assert words in caught.value.message


def test_flags_gather_replies_and_refuse_repeats() -> None:
    plan = fault_plan_from_flags([("reply", "RCPT=451:1%"), ("reply", "RCPT=554:2%")])
    assert plan.replies == {Step.RCPT: (ReplyFault(451, 0.01), ReplyFault(554, 0.02))}
    with pytest.raises(FaultSpecError, match="--delay: DATA is given twice"):
        fault_plan_from_flags([("delay", "DATA=1ms"), ("delay", "DATA=2ms")])
    with pytest.raises(FaultSpecError, match=r"--reply: .*over 100%"):
        fault_plan_from_flags([("reply", "RCPT=451:60%"), ("reply", "RCPT=554:60%")])
    with pytest.raises(FaultSpecError, match="--shutdown-after"):
        fault_plan_from_flags([], shutdown_after=-3)


def test_injected_reply_texts() -> None:
    assert ReplyFault(451, 1).describe(Step.RCPT) == (
        "4.3.0",
        "Temporary failure injected by smtpbench sink",
    )
    assert ReplyFault(550, 1).describe(Step.RCPT)[0] == "5.1.1"
    assert ReplyFault(550, 1).describe(Step.MAIL)[0] == "5.7.1"
    assert ReplyFault(499, 1).describe()[0] == "4.0.0"
    assert ReplyFault(599, 1).describe()[0] == "5.0.0"
    for code in range(400, 600):
        enhanced, text = ReplyFault(code, 1).describe()
        assert enhanced[0] == str(code)[0] and text
