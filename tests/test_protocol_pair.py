"""The client state machine against the server state machine, with no socket:
bytes go from one to the other in arbitrary pieces."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smtpbench.protocol import server as srv
from smtpbench.protocol.client import NEED_DATA, ClientConnection, Response, State
from smtpbench.protocol.errors import RemoteProtocolError
from smtpbench.protocol.steps import Step

EHLO_LINES = ["pair.test", "PIPELINING", "CHUNKING", "SIZE 1000000", "8BITMIME"]
Policy = Callable[[srv.Event, srv.ServerConnection], tuple[int, str | list[str]]]


def accept_all(event: srv.Event, server: srv.ServerConnection) -> tuple[int, str | list[str]]:
    if isinstance(event, srv.CommandReceived):
        if not event.allowed:
            return 503, "5.5.1 Bad sequence of commands"
        return {
            Step.EHLO: (250, EHLO_LINES),
            Step.HELO: (250, "pair.test"),
            Step.DATA: (354, "go ahead"),
            Step.QUIT: (221, "2.0.0 bye"),
        }.get(event.step, (250, "2.0.0 ok"))
    if isinstance(event, srv.MessageReceived):
        return 250, f"2.0.0 queued, {event.size} octets"
    return 500, "5.5.2 what"


def refuse_recipient(name: str) -> Policy:
    def policy(event: srv.Event, server: srv.ServerConnection) -> tuple[int, str | list[str]]:
        if (
            isinstance(event, srv.CommandReceived)
            and event.step is Step.RCPT
            and name in event.argument
        ):
            return 550, "5.1.1 no such user"
        if (
            isinstance(event, srv.CommandReceived)
            and event.step is Step.DATA
            and server.recipients == 0
        ):
            return 554, "5.5.1 no valid recipients"
        return accept_all(event, server)

    return policy


class Wire:
    """Moves bytes between the two machines, cut into the given piece sizes."""

    def __init__(self, policy: Policy = accept_all, pieces: list[int] | None = None) -> None:
        self.client = ClientConnection()
        self.server = srv.ServerConnection(keep_data=True)
        self.policy = policy
        self.pieces = pieces or []
        self.messages: list[bytes] = []
        self._to_client = self.server.reply(220, "pair.test ESMTP")

    def _cut(self, data: bytes) -> list[bytes]:
        out, index, position = [], 0, 0
        while position < len(data):
            size = self.pieces[index % len(self.pieces)] if self.pieces else len(data)
            index += 1
            out.append(data[position : position + max(1, size)])
            position += max(1, size)
        return out

    def send(self, data: bytes) -> None:
        """Client bytes to the server; the server answers everything it can."""
        for piece in self._cut(data):
            self.server.receive_data(piece)
            while True:
                event = self.server.next_event()
                if isinstance(event, srv.NeedData | srv.ConnectionClosed):
                    break
                if isinstance(event, srv.MessageReceived) and event.data is not None:
                    self.messages.append(event.data)
                code, text = self.policy(event, self.server)
                self._to_client += self.server.reply(code, text)

    def replies(self) -> list[Response]:
        """Server bytes to the client; every complete reply it yields."""
        events: list[Response] = []
        data, self._to_client = self._to_client, b""
        for piece in self._cut(data):
            self.client.receive_data(piece)
            while (event := self.client.next_event()) is not NEED_DATA:
                assert isinstance(event, Response)
                events.append(event)
        return events


def transaction(wire: Wire, recipients: list[str], body: bytes) -> list[tuple[Step, int]]:
    client = wire.client
    seen = [(r.step, r.reply.code) for r in wire.replies()]
    wire.send(client.ehlo("client.test"))
    seen += [(r.step, r.reply.code) for r in wire.replies()]
    group = client.mail("from@pair.test")
    for rcpt in recipients:
        group += client.rcpt(rcpt)
    wire.send(group + client.data())
    seen += [(r.step, r.reply.code) for r in wire.replies()]
    if client.state is State.CONTENT:
        wire.send(client.message(body if client.accepted_recipients else b""))
        seen += [(r.step, r.reply.code) for r in wire.replies()]
    wire.send(client.quit())
    seen += [(r.step, r.reply.code) for r in wire.replies()]
    return seen


BODY = b"Subject: pair\r\n\r\n.leading dot\r\nline\r\n..two dots\r\n"


@given(st.lists(st.integers(min_value=1, max_value=17), min_size=1, max_size=8))
def test_pipelined_transaction_survives_any_split(pieces: list[int]) -> None:
    wire = Wire(pieces=pieces)
    seen = transaction(wire, ["a@pair.test", "b@pair.test"], BODY)
    assert seen == [
        (Step.BANNER, 220),
        (Step.EHLO, 250),
        (Step.MAIL, 250),
        (Step.RCPT, 250),
        (Step.RCPT, 250),
        (Step.DATA, 354),
        (Step.DATA_END, 250),
        (Step.QUIT, 221),
    ]
    assert wire.messages == [BODY]  # dot-stuffing undone exactly
    assert wire.client.state is State.CLOSED
    assert wire.server.state is srv.State.CLOSED


def test_refused_recipient_is_skipped_and_the_message_still_goes() -> None:
    wire = Wire(refuse_recipient("nobody"))
    seen = transaction(wire, ["nobody@pair.test", "b@pair.test"], BODY)
    assert (Step.RCPT, 550) in seen and (Step.DATA_END, 250) in seen
    assert wire.messages == [BODY]


def test_all_recipients_refused_ends_the_pipelined_group_cleanly() -> None:
    wire = Wire(refuse_recipient("pair.test"))
    seen = transaction(wire, ["a@pair.test"], BODY)
    assert seen[-3:] == [(Step.RCPT, 550), (Step.DATA, 554), (Step.QUIT, 221)]
    assert wire.messages == []


def test_bdat_chunks_reach_the_server_whole() -> None:
    wire = Wire()
    client = wire.client
    wire.replies()
    wire.send(client.ehlo("c"))
    wire.replies()
    wire.send(client.mail("f@pair.test") + client.rcpt("t@pair.test"))
    wire.send(client.bdat(BODY[:10], last=False) + client.bdat(BODY[10:], last=True))
    steps = [(r.step, r.reply.code) for r in wire.replies()]
    assert steps == [(Step.MAIL, 250), (Step.RCPT, 250), (Step.BDAT, 250), (Step.DATA_END, 250)]
    assert wire.messages == [BODY]


def test_server_garbage_is_a_remote_protocol_error() -> None:
    client = ClientConnection()
    client.receive_data(b"\x00\xffHELLO?? not smtp\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()
