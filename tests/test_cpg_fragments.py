"""Messages over the atomic size: cutting, reassembly, and the engine's PARTIAL_MCAST path.

The engine runs in process (real CpgEngines in a FakeCluster, the library on top through
``tests._cpg_bench``); the same path on real daemons is in test_cpg_loopback.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg_async import AsyncCpgHandle
from pycorosync.lib.cpg_fragments import Reassembly, cut
from pycorosync.lib.cpg_wire import (
    MAX_ATOMIC_MSG_SIZE,
    CpgRequestId,
    DeliverBody,
    FragmentType,
    PartialBody,
)
from pycorosync.lib.errors import InterruptError, NotExistError, TooBigError, TryAgainError
from tests._cpg_bench import AsyncEngineTransport, CpgNodes, EngineTransport, lib_handle

PID = os.getpid()
FIRST, CONTINUED, LAST = FragmentType.FIRST, FragmentType.CONTINUED, FragmentType.LAST
G = b"g"


def part(
    kind: FragmentType, data: bytes, total: int, sender: tuple[int, int] = (1, 5)
) -> PartialBody:
    return PartialBody(G, sender[0], sender[1], total, kind, data)


# -- cutting and reassembly ---------------------------------------------------------------


@given(st.integers(min_value=11, max_value=200), st.integers(min_value=1, max_value=10))
def test_cut_fragments_reassemble_to_the_message(length: int, size: int) -> None:
    message = bytes(i % 251 for i in range(length))
    pieces = list(cut(message, size))
    assert b"".join(data for _, data in pieces) == message
    assert all(len(data) <= size for _, data in pieces)
    assert [kind for kind, _ in pieces] == [FIRST] + [CONTINUED] * (len(pieces) - 2) + [LAST]
    assembly = Reassembly()
    results = [assembly.add(part(kind, data, length)) for kind, data in pieces]
    assert results == [None] * (len(pieces) - 1) + [message]
    assert len(assembly) == 0


def test_a_message_that_fits_is_not_cut() -> None:
    with pytest.raises(ValueError, match="needs no fragments"):
        list(cut(b"x" * 10, 10))


def test_a_new_first_discards_the_unfinished_message_of_that_sender() -> None:
    assembly = Reassembly()
    assert assembly.add(part(FIRST, b"old", 9)) is None
    assert assembly.add(part(FIRST, b"new", 6)) is None
    assert assembly.add(part(LAST, b"abc", 6)) == b"newabc"
    assert assembly.dropped == 1


def test_fragments_without_a_start_are_dropped_and_senders_kept_apart() -> None:
    assembly = Reassembly()
    assert assembly.add(part(CONTINUED, b"mid", 9)) is None
    assert assembly.add(part(LAST, b"end", 9)) is None
    assert assembly.add(part(FIRST, b"a1", 4, sender=(1, 5))) is None
    assert assembly.add(part(FIRST, b"b1", 4, sender=(2, 5))) is None
    assert assembly.add(part(LAST, b"b2", 4, sender=(2, 5))) == b"b1b2"
    assert assembly.add(part(LAST, b"a2", 4, sender=(1, 5))) == b"a1a2"


@pytest.mark.parametrize(
    "fragments",
    [
        [(FIRST, b"abc", 5), (LAST, b"def", 5)],  # grows past its total
        [(FIRST, b"ab", 6), (CONTINUED, b"cd", 7)],  # the totals disagree
        [(FIRST, b"ab", 6), (LAST, b"cd", 6)],  # LAST leaves it short
    ],
)
def test_an_inconsistent_assembly_is_dropped(
    fragments: list[tuple[FragmentType, bytes, int]],
) -> None:
    assembly = Reassembly()
    assert [assembly.add(part(*f)) for f in fragments] == [None] * len(fragments)
    assert assembly.dropped == 1
    assert len(assembly) == 0


def test_a_process_that_left_loses_its_unfinished_message() -> None:
    assembly = Reassembly()
    assembly.add(part(FIRST, b"ab", 4))
    assembly.forget(1, 5)
    assert assembly.add(part(LAST, b"cd", 4)) is None
    assert assembly.dropped == 1


# -- through the engine and the library ---------------------------------------------------


@pytest.fixture
def nodes() -> CpgNodes:
    return CpgNodes([1, 2])


def big(seed: int, fragments: float = 2.5) -> bytes:
    return random.Random(seed).randbytes(int(MAX_ATOMIC_MSG_SIZE * fragments))


def test_a_big_message_reaches_every_member_whole_between_the_small_ones(nodes: CpgNodes) -> None:
    sender, sent_seen, transport = lib_handle(nodes, 1, PID)
    receiver, got, _ = lib_handle(nodes, 2, PID + 1)
    sender.join(G)
    receiver.join(G)
    message = big(3)
    assert len(message) > 2 * MAX_ATOMIC_MSG_SIZE
    sender.mcast_joined(2, b"before")
    sender.mcast_joined(2, message)
    sender.mcast_joined(2, b"after")
    for handle in (sender, receiver):
        handle.dispatch()
    for seen in (sent_seen, got):
        delivered = [e[4] for e in seen.events if e[0] == "deliver"]
        assert delivered == [b"before", message, b"after"]
    assert transport.sent == [wire.encode_mcast(2, b"before"), wire.encode_mcast(2, b"after")]


def test_a_membership_change_during_a_big_message_interrupts_it(nodes: CpgNodes) -> None:
    sender_conn = nodes.connect(1, PID)
    nodes.join(1, sender_conn, G)
    watcher, got, _ = lib_handle(nodes, 2, PID + 1)
    watcher.join(G)
    (kind, first), (_, second), *_ = cut(big(1))
    nodes.request(1, sender_conn, CpgRequestId.PARTIAL_MCAST, partial_request(first, kind))
    late = nodes.connect(2, PID + 2)
    nodes.join(2, late, G)  # a confchg reaches the sender's connection
    with pytest.raises(InterruptError):
        nodes.request(1, sender_conn, CpgRequestId.PARTIAL_MCAST, partial_request(second, LAST))
    watcher.dispatch()
    assert [e for e in got.events if e[0] == "deliver"] == []
    # The next message starts afresh and gets through.
    nodes.request(1, sender_conn, CpgRequestId.PARTIAL_MCAST, partial_request(b"x" * 8, FIRST, 16))
    nodes.request(1, sender_conn, CpgRequestId.PARTIAL_MCAST, partial_request(b"y" * 8, LAST, 16))
    watcher.dispatch()
    assert [e[4] for e in got.events if e[0] == "deliver"] == [b"x" * 8 + b"y" * 8]


def partial_request(fragment: bytes, kind: FragmentType, total: int | None = None) -> bytes:
    length = int(MAX_ATOMIC_MSG_SIZE * 2.5) if total is None else total
    return wire.encode_partial_mcast(2, length, kind, fragment)


def test_a_fragment_from_a_handle_not_in_a_group_is_not_exist(nodes: CpgNodes) -> None:
    conn = nodes.connect(1, PID)
    with pytest.raises(NotExistError):
        nodes.request(1, conn, CpgRequestId.PARTIAL_MCAST, partial_request(b"x", FIRST))


def test_a_fragment_during_sync_is_try_again(nodes: CpgNodes) -> None:
    conn = nodes.connect(1, PID)
    nodes.join(1, conn, G)
    engine = nodes.engine(1)
    engine._syncing = True  # a REGULAR confchg arrived; the round has not ended
    with pytest.raises(TryAgainError):
        nodes.request(1, conn, CpgRequestId.PARTIAL_MCAST, partial_request(b"x", FIRST))


def test_a_member_that_leaves_mid_message_is_forgotten_by_the_library(nodes: CpgNodes) -> None:
    sender_conn = nodes.connect(1, PID)
    nodes.join(1, sender_conn, G)
    watcher, got, _ = lib_handle(nodes, 2, PID + 1)
    watcher.join(G)
    (kind, first), *_ = cut(big(2))
    nodes.request(1, sender_conn, CpgRequestId.PARTIAL_MCAST, partial_request(first, kind))
    nodes.leave(1, sender_conn, G)
    watcher.dispatch()
    assert watcher._assemblies.dropped == 1
    assert len(watcher._assemblies) == 0
    assert [e for e in got.events if e[0] == "deliver"] == []


def test_the_asyncio_api_sends_and_yields_big_messages_whole(nodes: CpgNodes) -> None:
    message = big(4, 1.5)

    async def scenario() -> list[object]:
        handle = AsyncCpgHandle(AsyncEngineTransport(EngineTransport(nodes, 2, PID)))
        await handle.join(G)
        with pytest.raises(TooBigError):
            handle.mcast_joined(2, message)
        await handle.mcast_joined_fragmented(2, message)
        await handle.mcast_joined_fragmented(2, b"small")
        events = [await anext(handle) for _ in range(3)]
        await handle.finalize()
        return events

    events = asyncio.run(scenario())
    assert events[1:] == [DeliverBody(G, 2, PID, message), DeliverBody(G, 2, PID, b"small")]
