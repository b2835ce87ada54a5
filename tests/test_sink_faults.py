"""Faults injected by the sink, seen from a client on 127.0.0.1.

Timing checks assert lower bounds only: a slow machine makes things later, never earlier.
"""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
import trio

from smtpbench.faults import Delay, FaultPlan, ReplyFault, Stall, parse_fault_table
from smtpbench.protocol.steps import Step
from smtpbench.servers.sink import Sink
from tests.test_sink import TIMEOUT, Raw, start_sink


async def faulty_sink(nursery: trio.Nursery, table: dict[str, Any], **options: Any) -> Sink:
    return await start_sink(nursery, faults=parse_fault_table(table), **options)


async def open_transaction(client: Raw) -> None:
    await client.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
    assert await client.replies(3) == [250, 250, 250]


async def test_data_delay_is_observed(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"delay": {"DATA": "50ms"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await open_transaction(client)
        start = trio.current_time()
        assert (await client.command(b"DATA"))[0] == 354
        assert trio.current_time() - start >= 0.05
    assert sink.stats.faults_injected["delay.DATA"] == 1


async def test_delay_range_and_banner_delay(nursery: trio.Nursery) -> None:
    plan = FaultPlan(delays={Step.CONNECT: Delay(0.05, 0.05), Step.NOOP: Delay(0.02, 0.04)})
    sink = await start_sink(nursery, faults=plan)
    with trio.fail_after(TIMEOUT):
        start = trio.current_time()
        client = await Raw.connect(sink)
        assert trio.current_time() - start >= 0.05
        for _ in range(3):
            start = trio.current_time()
            assert (await client.command(b"NOOP"))[0] == 250
            assert trio.current_time() - start >= 0.02


async def test_a_delay_holds_up_only_its_connection(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"delay": {"MAIL": "1s"}})
    with trio.fail_after(TIMEOUT):
        slow = await Raw.connect(sink)
        fast = await Raw.connect(sink)
        await slow.command(b"EHLO c")
        await slow.send(b"MAIL FROM:<a@x>\r\n")
        await trio.sleep(0.01)  # let the sink start the delay
        assert (await fast.command(b"NOOP"))[0] == 250
        assert (await fast.command(b"EHLO c"))[0] == 250
        assert sink.stats.replies_by_code[250] == 3  # slow EHLO, fast NOOP and EHLO
        assert (await slow.reply())[0] == 250


async def test_replies_before_a_delayed_one_are_sent_first(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"delay": {"RCPT": "300ms"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.command(b"EHLO c")
        start = trio.current_time()
        await client.send(b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\n")
        assert (await client.reply())[0] == 250
        # Sent on its own before the sink slept: the RCPT reply is not behind it.
        assert client.buffer == b""
        assert (await client.reply())[0] == 250
        assert trio.current_time() - start >= 0.3


async def test_reply_fault_at_full_odds_gives_that_code(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"reply": {"RCPT": "451:100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n")
        assert await client.replies(2) == [250, 250]
        assert await client.reply() == (451, ["4.3.0 Temporary failure injected by smtpbench sink"])
        assert (await client.reply())[0] == 503  # no recipient was taken

        def refused() -> None:
            with smtplib.SMTP(*sink.address, timeout=TIMEOUT) as smtp:
                smtp.sendmail("a@x", ["b@y"], b"x")

        with pytest.raises(smtplib.SMTPRecipientsRefused) as caught:
            await trio.to_thread.run_sync(refused)
    assert caught.value.recipients["b@y"][0] == 451
    assert sink.stats.faults_injected["reply.RCPT.451"] == 2
    assert sink.stats.replies_by_code[451] == 2
    assert sink.stats.recipients_accepted == 0


async def test_reply_fault_after_the_final_dot_rejects_the_message(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"reply": {"DATA end": "554:100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await open_transaction(client)
        assert (await client.command(b"DATA"))[0] == 354
        code, [text] = await client.command(b"body\r\n.")
        assert code == 554 and text.startswith("5.0.0 ")
        assert (await client.command(b"MAIL FROM:<a@x>"))[0] == 250  # the session goes on
    assert sink.stats.messages_accepted == 0 and sink.stats.messages_rejected == 1
    assert sink.messages == []


async def test_421_fault_closes_the_connection(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"reply": {"MAIL": "421:100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.command(b"EHLO c")
        assert (await client.command(b"MAIL FROM:<a@x>"))[0] == 421
        assert await client.closed()


async def test_banner_reply_fault(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"reply": {"connect": "554:100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink, banner=False)
        assert (await client.reply())[0] == 554
        assert await client.closed()


async def test_disconnect_during_data_closes_without_answer(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"disconnect": {"DATA end": "100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await open_transaction(client)
        assert (await client.command(b"DATA"))[0] == 354
        await client.send(b"Subject: lost\r\n\r\nthe first part of the content\r\n")
        assert await client.closed()
        assert client.buffer == b""  # not a byte of reply
        # The whole message in one write: still no answer.
        client = await Raw.connect(sink)
        await open_transaction(client)
        assert (await client.command(b"DATA"))[0] == 354
        await client.send(b"all of it\r\n.\r\n")
        assert await client.closed() and client.buffer == b""

        def with_smtplib() -> None:
            with smtplib.SMTP(*sink.address, timeout=TIMEOUT) as smtp:
                smtp.sendmail("a@x", ["b@y"], b"x" * 100_000)

        with pytest.raises(smtplib.SMTPServerDisconnected):
            await trio.to_thread.run_sync(with_smtplib)
    assert sink.stats.faults_injected["disconnect.DATA end"] == 3
    assert sink.stats.messages_accepted == 0


async def test_disconnect_at_the_last_bdat_chunk(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"disconnect": {"DATA end": "100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await open_transaction(client)
        await client.send(b"BDAT 3\r\nabcBDAT 3 LAST\r\ndef")
        assert (await client.reply())[0] == 250
        assert await client.closed() and client.buffer == b""


async def test_disconnect_on_connect_and_on_a_command(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"disconnect": {"connect": "100%", "NOOP": "100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink, banner=False)
        assert await client.closed() and client.buffer == b""
    sink = await faulty_sink(nursery, {"disconnect": {"NOOP": "100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(b"NOOP\r\n")
        assert await client.closed() and client.buffer == b""


async def test_garbage_instead_of_a_reply(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"garbage": {"EHLO": "100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink)
        await client.send(b"EHLO c\r\n")
        line = await client.line()
        assert line.startswith(b"\x00\xff") and line.endswith(b"\r\n")
        assert b"\r" not in line[:-2] and b"\n" not in line[:-2]
        assert (await client.command(b"MAIL FROM:<a@x>"))[0] == 250  # the state went on
    assert sink.stats.faults_injected["garbage.EHLO"] == 1
    sink = await faulty_sink(nursery, {"garbage": {"banner": "100%"}})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink, banner=False)
        assert (await client.line()).startswith(b"\x00\xff")


async def test_a_stall_happens_once_counting_across_connections(nursery: trio.Nursery) -> None:
    sink = await start_sink(nursery, faults=FaultPlan(stalls={Step.MAIL: Stall(0.2, 2)}))
    durations = []
    with trio.fail_after(TIMEOUT):
        for _ in range(4):
            client = await Raw.connect(sink)
            await client.command(b"EHLO c")
            start = trio.current_time()
            assert (await client.command(b"MAIL FROM:<a@x>"))[0] == 250
            durations.append(trio.current_time() - start)
            await client.aclose()
    assert durations[1] >= 0.2
    assert sink.stats.faults_injected["stall.MAIL"] == 1


async def test_shutdown_after_gives_421(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"shutdown_after": 1})
    with trio.fail_after(TIMEOUT):
        first = await Raw.connect(sink)
        assert (await first.command(b"EHLO c"))[0] == 250
        second = await Raw.connect(sink, banner=False)
        code, [text] = await second.reply()
        assert code == 421 and text.startswith("4.3.2 ")
        assert await second.closed()
        assert (await first.command(b"MAIL FROM:<a@x>"))[0] == 421  # the open one too
        assert await first.closed()
    assert sink.stats.faults_injected["shutdown"] == 2


async def test_shutdown_after_zero_refuses_everyone(nursery: trio.Nursery) -> None:
    sink = await faulty_sink(nursery, {"shutdown_after": 0})
    with trio.fail_after(TIMEOUT):
        client = await Raw.connect(sink, banner=False)
        assert (await client.reply())[0] == 421


async def rcpt_codes(nursery: trio.Nursery, seed: int) -> list[int]:
    plan = FaultPlan(replies={Step.RCPT: (ReplyFault(451, 0.3), ReplyFault(550, 0.2))})
    sink = await start_sink(nursery, faults=plan, seed=seed)
    client = await Raw.connect(sink)
    await client.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\n" + b"RCPT TO:<b@y>\r\n" * 40)
    return (await client.replies(42))[2:]


async def test_same_seed_same_faults(nursery: trio.Nursery) -> None:
    with trio.fail_after(TIMEOUT):
        first = await rcpt_codes(nursery, seed=7)
        again = await rcpt_codes(nursery, seed=7)
        other = await rcpt_codes(nursery, seed=8)
    assert first == again
    assert first != other
    assert {250, 451, 550} == set(first)
