"""Replaying recorded SMTP traffic as an ordinary run.

``ReplayJob`` is plain data (the recordings' paths and the replay options), so
it crosses into the engine process as it is; ``load_run`` turns it into a
``LoadRun`` with three parts of its own:

- ``ReplaySchedule``: the recorded session offsets divided by the speed (or
  spaced by a fixed rate), handed out in order; the runner sleeps until
  ``t0 + offset``, against absolute time as for any run. The live rate factor
  (the dashboard's + and -) scales the speed from where it changes.
- ``ReplayPlanner``: the n-th session to replay, its steps rewritten per pass
  when ``unique`` is on.
- ``ReplayConversation``: what a replayed ``Session`` says (the same machine,
  timing, counting, failure handling and transcripts as generated traffic;
  replies read through the same ``ClientConnection``, the commands sent as
  recorded with ``send_raw``): each pipelined group goes out in one write,
  message content dot-stuffed, BDAT chunks as recorded; the pause the client
  took before each group is kept (divided by the speed, capped by
  ``max_gap``), measured from the reply that came before it, and slept in the
  reactor. Every reply is compared with the recorded one: the metrics count,
  per step, replies compared and codes that differed.

The session follows the server it talks to, not the recording, where the two
part ways: content goes only after a 354, a 354 the recording did not get is
answered with the lone dot, a 334 with no recorded SASL response with ``*``,
and a STARTTLS answered 220 is followed by the TLS handshake. A step the
recording got no reply to is sent without waiting for one.

Logging in: a recording normally leaves credentials out (an AUTH line keeps
its mechanism only, SASL responses are not kept). Given credentials (the
replay scenario's ``[auth]``, ``replay --user``), such an AUTH is done live
with the recorded mechanism: the same exchange as a generated session's, timed
and counted as one AUTH step, its final reply compared with the recorded one.
Without them, the AUTH goes out as recorded (the bare mechanism, ``*`` for a
SASL response) and fails; ``logins_left_out`` says how many sessions that is.
"""

from __future__ import annotations

import bisect
import math
import ssl
from collections import Counter
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smtpbench.engine.reactor import Machine, Request
from smtpbench.engine.replay_plan import (
    Timeline,
    make_unique,
    merge,
    offsets,
    rate_around,
    stand_in_content,
)
from smtpbench.engine.runner import LoadRun, SessionMaker
from smtpbench.engine.session import Session, SessionSettings, Shown, Talk
from smtpbench.metrics.events import SessionEvents
from smtpbench.protocol.message import dot_stuff
from smtpbench.protocol.replies import Reply
from smtpbench.protocol.steps import Step
from smtpbench.recording.model import (
    RecordedReply,
    RecordedSession,
    RecordedStep,
    Recording,
    is_message_end,
)
from smtpbench.recording.reader import read_recording
from smtpbench.scenario.model import AUTH_MECHANISMS, NO_AUTH, Auth

if TYPE_CHECKING:
    from smtpbench.engine.control import RunControl
    from smtpbench.engine.runner import EventsFor
    from smtpbench.engine.shares import Share
    from smtpbench.engine.transport import Address
    from smtpbench.metrics.recorder import Recorder
    from smtpbench.metrics.snapshot import RunInfo
    from smtpbench.scenario import Scenario

_NOT_RECORDED = RecordedReply(None, ("(not in the recording)",))  # awaited, not compared
UNKNOWN_TIMEOUT = 300.0  # seconds to wait for the reply to a command smtpbench has no step for
_VERB_STEPS = {
    step.name: step
    for step in (
        Step.HELO,
        Step.EHLO,
        Step.LHLO,
        Step.STARTTLS,
        Step.AUTH,
        Step.MAIL,
        Step.RCPT,
        Step.DATA,
        Step.RSET,
        Step.NOOP,
        Step.VRFY,
        Step.EXPN,
        Step.QUIT,
    )
}


@dataclass(frozen=True, slots=True)
class ReplayJob:
    """What to replay and how, as plain data."""

    recordings: tuple[str, ...]
    speed: float = 1.0
    rate: float | None = None  # sessions/s: re-time the starts, ignore the recorded ones
    loop: int = 1
    max_gap: float | None = None  # seconds: longest pause kept, between sessions and within
    unique: bool = False

    def __post_init__(self) -> None:
        if not self.recordings:
            raise ValueError("a replay needs at least one recording")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"--speed must be above 0, got {self.speed!r}")
        if self.rate is not None and not (math.isfinite(self.rate) and self.rate > 0):
            raise ValueError(f"--rate must be above 0, got {self.rate!r}")
        if self.loop < 1:
            raise ValueError(f"--loop must be at least 1, got {self.loop!r}")
        if self.max_gap is not None and not (math.isfinite(self.max_gap) and self.max_gap > 0):
            raise ValueError(f"--max-gap must be above 0, got {self.max_gap!r}")

    @property
    def think_scale(self) -> float:
        """What recorded pauses inside a session are divided by."""
        return self.speed if self.rate is None else 1.0

    def read(self) -> tuple[Recording, ...]:
        """The recordings; ``RecordingError`` naming the file and line of a bad one."""
        return tuple(read_recording(path) for path in self.recordings)

    def describe(self, timeline: Timeline | None = None) -> str:
        """One line for headers and summaries."""
        names = " + ".join(Path(path).name for path in self.recordings)
        timing = f"{self.rate:g} sessions/s" if self.rate is not None else f"speed {self.speed:g}x"
        parts = [f"replay of {names}", timing]
        if timeline is not None:
            parts.insert(1, f"{len(timeline.sessions)} sessions")
        if self.loop > 1:
            parts.append(f"{self.loop} passes")
        if self.max_gap is not None:
            parts.append(f"pauses capped at {self.max_gap:g}s")
        if self.unique:
            parts.append("unique envelopes")
        return ", ".join(parts)

    def run_info(self, info: RunInfo, timeline: Timeline) -> RunInfo:
        due = offsets(timeline, self.loop, self.rate)
        scale = 1.0 if self.rate is not None else self.speed
        return replace(
            info,
            load=self.describe(timeline),
            mode="replay",
            planned_duration=(due[-1] / scale) if due else 0.0,
            planned_sessions=len(due),
        )

    def timeline(self, recordings: tuple[Recording, ...] | None = None) -> Timeline:
        return merge(recordings if recordings is not None else self.read(), self.max_gap)

    def prepare(self) -> PreparedReplay:
        """The job with its recordings read and merged, ready to run."""
        return PreparedReplay(self, self.timeline())

    def load_run(
        self,
        scenario: Scenario,
        address: Address,
        seed: int,
        recorder: Recorder,
        control: RunControl | None = None,
        timeline: Timeline | None = None,
        share: Share | None = None,
        events_for: EventsFor | None = None,
    ) -> LoadRun:
        """The run: reads the recordings (unless their ``timeline`` is given); with a
        ``share``, one worker's part of it."""
        timeline = timeline if timeline is not None else self.timeline()
        planner = ReplayPlanner(self, timeline, seed)
        # With a rate the offsets are real seconds already, and think_scale is 1.
        schedule = ReplaySchedule(offsets(timeline, self.loop, self.rate), self.think_scale)
        settings = SessionSettings.from_scenario(scenario, address)
        return LoadRun(
            scenario,
            address,
            planner,
            recorder,
            control,
            make_session=replayed_sessions(planner, settings),
            events_for=events_for,
            schedule=schedule,
            share=share,
        )


@dataclass(frozen=True, slots=True)
class PreparedReplay:
    """A replay whose recordings were read: what a run in this process uses."""

    job: ReplayJob
    timeline: Timeline

    def run_info(self, info: RunInfo) -> RunInfo:
        return self.job.run_info(info, self.timeline)

    def load_run(
        self,
        scenario: Scenario,
        address: Address,
        seed: int,
        recorder: Recorder,
        control: RunControl | None = None,
        events_for: EventsFor | None = None,
        share: Share | None = None,
    ) -> LoadRun:
        return self.job.load_run(
            scenario,
            address,
            seed,
            recorder,
            control,
            self.timeline,
            share=share,
            events_for=events_for,
        )


def replay_scenario(
    job: ReplayJob,
    timeline: Timeline,
    *,
    host: str | None = None,
    port: int = 25,
    source: tuple[str, ...] = (),
    seed: int | None = None,
    max_concurrency: int = 1000,
    backlog: int = 10000,
    grace: float = 10.0,
    auth: Auth | None = None,
) -> Scenario:
    """The scenario a replay runs as: its name, target, cap, backlog and grace; every
    session's content comes from the recordings. The load's rate is the replay's mean
    arrival rate, for the record: the schedule is the recording's. ``auth``: the
    credentials to log in with where the recordings left them out (its mechanism only
    names one they use: each AUTH keeps its recorded mechanism)."""
    from smtpbench.scenario import Load, Scenario, Target

    due = offsets(timeline, job.loop, job.rate)
    scale = 1.0 if job.rate is not None else job.speed
    span = due[-1] / scale if due else 0.0
    rate = job.rate if job.rate is not None else (len(due) / span if span > 0 else 1.0)
    stems = "+".join(Path(path).name.removesuffix(".jsonl") for path in job.recordings)
    return Scenario(
        name=f"replay-{stems}",
        description=job.describe(timeline),
        seed=seed,
        target=Target(host, port, source) if host is not None else Target(source=source),
        load=Load(
            mode="rate",
            rate=rate,
            duration=None,
            sessions=max(1, len(due)),
            max_concurrency=max_concurrency,
            backlog=backlog,
            grace=grace,
        ),
        auth=auth or NO_AUTH,
    )


# -- when -------------------------------------------------------------------------------


class ReplaySchedule:
    """Recorded offsets divided by the speed, in order; ``inf`` once all are handed out."""

    __slots__ = ("_anchor_offset", "_anchor_time", "_due", "_factor", "_next", "speed")

    def __init__(self, due: list[float], speed: float = 1.0) -> None:
        self._due = due  # recorded seconds, sorted
        self.speed = speed
        self._factor = 1.0
        self._anchor_time = 0.0  # schedule time where the factor last changed
        self._anchor_offset = 0.0  # the recorded offset there
        self._next = 0

    def __len__(self) -> int:
        return len(self._due)

    @property
    def factor(self) -> float:
        return self._factor

    def _rate(self) -> float:
        return self.speed * self._factor

    def _time_of(self, offset: float) -> float:
        rate = self._rate()
        if rate <= 0:
            return math.inf
        return max(self._anchor_time, self._anchor_time + (offset - self._anchor_offset) / rate)

    def peek(self) -> float:
        if self._next >= len(self._due):
            return math.inf
        return self._time_of(self._due[self._next])

    def next_due(self) -> float:
        due = self.peek()
        self._next += 1
        return due

    def rate_at(self, t: float) -> float:
        """Sessions per second due around schedule time ``t`` (a one-second window)."""
        rate = self._rate()
        if rate <= 0:
            return 0.0
        recorded = self._anchor_offset + (t - self._anchor_time) * rate
        # The recorded window one real second covers, then its count per real second.
        return rate_around(self._due, recorded, rate) * rate if self._due else 0.0

    def skip_before(self, t: float) -> int:
        """Takes at once every recorded session due before schedule time ``t``."""
        rate = self._rate()
        if rate <= 0 or self.peek() >= t:
            return 0
        recorded = self._anchor_offset + (t - self._anchor_time) * rate
        after = max(self._next + 1, bisect.bisect_left(self._due, recorded, lo=self._next))
        count = after - self._next
        self._next = after
        return count

    def set_factor(self, factor: float, at: float) -> None:
        if factor < 0:
            raise ValueError("a rate factor cannot be negative")
        self._anchor_offset += (at - self._anchor_time) * self._rate()
        self._anchor_time = at
        self._factor = factor


# -- what -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """One session to replay. ``messages`` has an entry per message the recording sent
    (what the session counts as aborted when it ends early)."""

    number: int
    source: RecordedSession
    steps: tuple[RecordedStep, ...]
    messages: tuple[int, ...]
    pass_number: int = 0


class ReplayPlanner:
    """The n-th scheduled session: pass ``n // sessions``, session ``n % sessions`` of the
    timeline (in rate mode and in speed mode alike, schedule order is timeline order)."""

    def __init__(self, job: ReplayJob, timeline: Timeline, seed: int) -> None:
        self.job = job
        self.timeline = timeline
        self._seed = seed
        self.think_scale = job.think_scale
        self.max_gap = job.max_gap
        self._tag = f"{seed & 0xFFFFFF:06x}"

    @property
    def seed(self) -> int:
        return self._seed

    def plan_session(self, number: int) -> ReplayPlan:
        count = len(self.timeline.sessions)
        pass_number, index = divmod(number, count)
        session = self.timeline.sessions[index].session
        steps = session.steps
        if self.job.unique:
            steps = make_unique(steps, f"r{self._tag}p{pass_number}")
        messages = tuple(i for i, step in enumerate(steps) if is_message_end(step))
        return ReplayPlan(number, session, steps, messages, pass_number)


# -- how --------------------------------------------------------------------------------


def left_out_login(steps: Sequence[RecordedStep], index: int) -> str | None:
    """The mechanism of the AUTH at ``index`` when the recording left its credentials
    out (an initial response cut from the line, or its SASL responses not kept)."""
    step = steps[index]
    if step.kind != "command" or step.verb != "AUTH":
        return None
    following = steps[index + 1] if index + 1 < len(steps) else None
    if not (step.redacted or (following is not None and following.redacted)):
        return None
    words = (step.line or b"").split()
    return words[1].decode("ascii", "replace").upper() if len(words) > 1 else None


def logins_left_out(timeline: Timeline) -> Counter[str]:
    """Sessions whose AUTH credentials the recordings left out, by mechanism (each
    session counted once, under its first such AUTH)."""
    found: Counter[str] = Counter()
    for timed in timeline.sessions:
        steps = timed.session.steps
        for index in range(len(steps)):
            mechanism = left_out_login(steps, index)
            if mechanism is not None:
                found[mechanism] += 1
                break
    return found


def step_of(step: RecordedStep) -> Step | None:
    """The ``Step`` a recorded step is timed and counted as; None for commands smtpbench
    has no step for (HELP, ETRN, unknown verbs), which are replayed but not counted."""
    if step.kind == "banner":
        return Step.BANNER
    if step.kind == "data":
        return Step.DATA_END
    if step.kind == "sasl":
        return Step.AUTH
    if step.kind != "command":
        return None
    verb = step.verb
    if verb == "BDAT":
        return Step.DATA_END if is_message_end(step) else Step.BDAT
    return _VERB_STEPS.get(verb)


def wire_bytes(step: RecordedStep, number: int) -> bytes:
    """What the client sent for ``step``: the line and its end, the chunk of a BDAT, the
    dot-stuffed content with its terminator."""
    if step.kind == "data":
        assert step.content is not None
        return dot_stuff(_content_bytes(step, number))
    line = step.line if step.line is not None else b"*"
    out = line + (b"\n" if step.bare_lf else b"\r\n")
    if step.content is not None:
        out += _content_bytes(step, number)
    return out


def _content_bytes(step: RecordedStep, number: int) -> bytes:
    content = step.content
    assert content is not None
    if content.data is not None:
        return content.data
    return stand_in_content(content.size, number)


def _shown(step: RecordedStep) -> Shown:
    if step.kind == "data":
        return step.content.size if step.content is not None else 0
    if step.redacted:
        if step.kind == "sasl":
            return "(SASL response hidden)"
        return f"{(step.line or b'AUTH').decode('ascii', 'replace')} (credentials hidden)"
    if step.kind == "command" and step.content is not None:
        line = (step.line or b"").decode("utf-8", "replace")
        return f"{line} (and {step.content.size} bytes of message)"
    return step.line


class ReplayConversation:
    """What one replayed session says, over a ``Session``."""

    __slots__ = ("auth_began", "last_reply", "plan", "planner")

    def __init__(self, planner: ReplayPlanner, plan: ReplayPlan) -> None:
        self.planner = planner
        self.plan = plan
        self.last_reply = 0.0  # when the latest reply arrived (the clock)
        self.auth_began: float | None = None

    @property
    def number(self) -> int:
        return self.plan.number

    def talk(self, s: Session) -> Talk:
        ready = yield from s.open()
        self.last_reply = ready
        steps = list(self.plan.steps)
        index = 0
        recorded_last = 0.0  # when the reply before the next step came, in the recording
        logs_in = bool(s.settings.auth_secret)  # credentials given for AUTH left out
        while index < len(steps):
            step = steps[index]
            if step.kind in ("unasked", "tls"):
                # Unasked replies are read with the next step; a handshake the server did
                # not ask for in this replay is skipped.
                index += 1
                continue
            mechanism = left_out_login(steps, index) if logs_in else None
            if mechanism in AUTH_MECHANISMS:
                assert mechanism is not None
                yield from self._think(s, step.at - recorded_last)
                index, recorded_last = yield from self._log_in(
                    s, steps, index, mechanism, recorded_last
                )
                continue
            group = [step]
            index += 1
            while (
                index < len(steps)
                and steps[index].pipelined
                and steps[index].kind in ("command", "data", "sasl")
                and not (logs_in and left_out_login(steps, index) in AUTH_MECHANISMS)
            ):
                group.append(steps[index])
                index += 1
            yield from self._think(s, group[0].at - recorded_last)
            replies = yield from self._group(s, group, ready)
            recorded_last = max(
                [recorded_last, *(r.at for g in group for r in g.replies)], default=recorded_last
            )
            index = yield from self._follow(s, steps, index, group, replies)

    def _log_in(
        self,
        s: Session,
        steps: list[RecordedStep],
        index: int,
        mechanism: str,
        recorded_last: float,
    ) -> Generator[Request, Any, tuple[int, float]]:
        """The AUTH at ``index`` done live with the given credentials in place of the ones
        left out; the recorded SASL steps after it are passed over. The next step's index,
        and when the recorded exchange's last reply came."""
        end = index + 1
        while end < len(steps) and steps[end].kind == "sasl":
            end += 1
        reply = yield from s.authenticate(mechanism)
        self.last_reply = s.arrival
        answered = [step for step in steps[index:end] if step.replies]
        if answered:
            final = answered[-1]
            self._compare(s, Step.AUTH, final, len(final.replies) - 1, reply)
        recorded_last = max(
            [recorded_last, *(r.at for step in steps[index:end] for r in step.replies)]
        )
        return end, recorded_last

    def _think(self, s: Session, recorded: float) -> Talk:
        if recorded <= 0:
            return
        planner = self.planner
        gap = recorded if planner.max_gap is None else min(recorded, planner.max_gap)
        until = self.last_reply + gap / planner.think_scale
        if until > s.now():
            s.deadline = math.inf  # a pause of the recorded client's, not a step
            yield until

    def _group(
        self, s: Session, group: list[RecordedStep], ready: float
    ) -> Generator[Request, Any, list[list[Reply]]]:
        """Sends the group in one write and reads the replies owed, each timed."""
        conn = s.conn
        number = self.plan.number
        parts = []
        for step in group:
            if step.kind == "banner":
                continue  # owed from the start: the connection's first reply
            which = step_of(step)
            if which is Step.MAIL:
                s.message_begun()  # a transaction begun: it ends accepted, refused or aborted
            owed = 1 if step.replies else 0
            parts.append(conn.send_raw(which or Step.NOOP, wire_bytes(step, number), owed))
        first = step_of(group[0])
        began = ready if group[0].kind == "banner" else s.now()
        written = began
        if parts:
            s.step = first if first is not None else Step.NOOP
            timeout = s.timeouts[first] if first is not None else UNKNOWN_TIMEOUT
            s.deadline = began + timeout
            # A group that opens with the banner writes after it: its own start is later.
            sending = s.now() if group[0].kind == "banner" else began
            written = s.written_since(sending, s.write(b"".join(parts)))
        for step in group:
            s.unanswered.append(_shown(step) if step.kind != "banner" else None)
        out: list[list[Reply]] = []
        for step in group:
            out.append((yield from self._replies_of(s, step, began, written)))
        return out

    def _replies_of(
        self, s: Session, step: RecordedStep, began: float, written: float
    ) -> Generator[Request, Any, list[Reply]]:
        shown = s.unanswered[0]
        if not step.replies and step.kind != "banner":
            s.unanswered.pop(0)
            s.transcript.lines.append((shown, None))
            return []  # the recorded client did not wait for an answer: neither do we
        which = step_of(step)
        owed = 1
        if s.conn.lmtp and which is Step.DATA_END:
            owed = max(1, s.conn.accepted_recipients)
            s.conn.expect(Step.DATA_END, owed - 1)
        replies: list[Reply] = []
        for number in range(owed):
            if which is not None:
                s.step = which
            timeout = s.timeouts[which] if which is not None else UNKNOWN_TIMEOUT
            s.deadline = s.now() + timeout
            reply = (yield from s.read_reply()).reply
            self.last_reply = s.arrival
            replies.append(reply)
            self._compare(s, which, step, number, reply)
            since = written if which is Step.DATA_END else began
            if which is Step.RCPT:
                s.metrics.recipient(200 <= reply.code < 300)
            if which is None:
                s.transcript.lines.append((shown, reply))
            elif which is Step.AUTH and reply.code == 334:
                if self.auth_began is None:
                    self.auth_began = began
                s.transcript.lines.append((shown, reply))
            else:
                if which is Step.AUTH and self.auth_began is not None:
                    since, self.auth_began = self.auth_began, None
                s.count(which, shown, reply, s.arrival - since)
        s.unanswered.pop(0)
        return replies

    def _compare(
        self, s: Session, which: Step | None, step: RecordedStep, number: int, reply: Reply
    ) -> None:
        """The reply differs when its code does, or its enhanced status code when both the
        recording and the reply have one (a server that stopped sending them is not
        counted as diverging for it)."""
        if which is None or number >= len(step.replies):
            return
        recorded = step.replies[number]
        if recorded.code is None:
            return
        differs = reply.code != recorded.code or (
            reply.enhanced is not None
            and recorded.enhanced is not None
            and reply.enhanced != recorded.enhanced
        )
        s.metrics.diverged(which, differs)

    def _follow(
        self,
        s: Session,
        steps: list[RecordedStep],
        index: int,
        group: list[RecordedStep],
        replies: list[list[Reply]],
    ) -> Generator[Request, Any, int]:
        """Where the server's replies lead, where they part from the recording: the index of
        the next recorded step to replay."""
        for step, got in zip(group, replies, strict=True):
            which = step_of(step)
            if which is Step.DATA_END and step.replies:
                s.message_done(got)
            code = got[-1].code if got else None
            if code == 221 and which is Step.QUIT:
                return len(steps)
        last, got = group[-1], replies[-1]
        code = got[-1].code if got else None
        next_step = steps[index] if index < len(steps) else None
        verb = last.verb
        if verb == "DATA":
            if code == 354 and (next_step is None or next_step.kind != "data"):
                yield from self._lone_dot(s)
            elif code != 354 and last.replies:
                s.message_refused()
                while index < len(steps) and steps[index].kind == "data":
                    index += 1
        elif verb == "AUTH" or last.kind == "sasl":
            if code == 334 and (next_step is None or next_step.kind != "sasl"):
                cancel = RecordedStep("sasl", line=b"*", replies=(_NOT_RECORDED,))
                yield from self._group(s, [cancel], 0.0)
            elif code != 334:
                while index < len(steps) and steps[index].kind == "sasl":
                    index += 1
        elif verb == "STARTTLS":
            if code == 220:
                yield from s.handshake()
                s.conn.tls_established()
                if next_step is not None and next_step.kind == "tls":
                    index += 1
            else:
                while index < len(steps) and steps[index].kind == "tls":
                    index += 1
        return index

    def _lone_dot(self, s: Session) -> Talk:
        """A 354 the recording did not get: end the data at once (RFC 2920 section 3.1)."""
        s.unanswered.append(0)
        began = s.now()
        s.arm(Step.DATA_END, began)
        written = s.written_since(began, s.write(s.conn.send_raw(Step.DATA_END, b".\r\n")))
        reply = (yield from s.read_reply()).reply
        self.last_reply = s.arrival
        s.unanswered.pop(0)
        s.count(Step.DATA_END, 0, reply, s.arrival - written)
        s.message_refused()


def _client_context() -> ssl.SSLContext:
    """STARTTLS in a replay checks nothing (test servers rarely have valid certificates),
    so no CA store is loaded: making the context is quick."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def replayed_sessions(planner: ReplayPlanner, settings: SessionSettings) -> SessionMaker:
    """The maker of replayed sessions; a TLS context (made once, before the first session,
    so that no session's start waits for it) when the recordings use STARTTLS."""
    uses_tls = any(
        step.verb == "STARTTLS"
        for timed in planner.timeline.sessions
        for step in timed.session.steps
    )
    if uses_tls:
        settings = replace(
            settings,
            ssl_context=settings.ssl_context or _client_context(),
            server_hostname=settings.server_hostname or settings.address.host,
        )

    def make(
        plan: Any, intended: float, events: SessionEvents, clock: Callable[[], float]
    ) -> Machine:
        return Session(settings, events, ReplayConversation(planner, plan), intended, clock)

    return make


__all__ = ["ReplayConversation", "ReplayJob", "ReplayPlanner", "ReplaySchedule"]
