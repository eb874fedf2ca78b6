"""The Totem side of a worker link: placement, ordered overflow and the delivery budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest

from pycorosync.exec.shmring import Channel, Lane
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.worker_proto import Deliver, McastRequest, StampOrder, decode, encode
from pycorosync.exec.workers import WorkerLink, WorkerPlan, WorkerSettings, plan_workers
from tests._engines import ValidEngine

TOKEN_S = 1.0
LANE_BYTES = 4096


class Shared(ValidEngine):
    name: ClassVar[str] = "shared"
    service_id: ClassVar[int] = 40


class Alone(ValidEngine):
    name: ClassVar[str] = "alone"
    service_id: ClassVar[int] = 41
    own_worker: ClassVar[bool] = True


class AlsoShared(ValidEngine):
    name: ClassVar[str] = "also"
    service_id: ClassVar[int] = 42


def test_engines_share_worker_0_unless_they_ask_for_their_own() -> None:
    plans = plan_workers([Shared, Alone, AlsoShared])
    assert [(plan.index, plan.names) for plan in plans] == [
        (0, ("shared", "also")),
        (1, ("alone",)),
    ]
    assert [plan.index for plan in plan_workers([Alone])] == [0]


@pytest.fixture
def link() -> Iterator[WorkerLink]:
    loop = asyncio.new_event_loop()
    settings = WorkerSettings(
        run_dir="/nonexistent", logging_keys={}, token_timeout=TOKEN_S, lane_capacity=LANE_BYTES
    )
    made = WorkerLink(WorkerPlan(0, (Shared,)), settings, loop, lambda *_: None, lambda *_: None)
    yield made
    made.close()
    loop.close()


def _record(n: int) -> Deliver:
    return Deliver(n, Guarantee.AGREED, ((40, 0, bytes(200)),))


def test_a_full_ring_overflows_in_order_and_a_worker_that_never_drains_goes_over_budget(
    link: WorkerLink,
) -> None:
    # The worker's end of the Totem -> worker channel, attached as the worker does.
    worker_end = Channel.attach(link._down.fds)
    reader = worker_end.reader()
    sent = 0
    while link.backlog == 0:
        sent += 1
        link.send(_record(sent))
    for _ in range(10):
        sent += 1
        link.send(_record(sent))  # behind the overflow, never around it
    now = link._loop.time()
    assert not link.over_budget(now + TOKEN_S / 2)
    assert link.over_budget(now + TOKEN_S * 1.5)

    # The worker drains; the space wake-up refills the ring from the overflow, in order.
    order = StampOrder()
    senders: list[int] = []
    while len(senders) < sent:
        batch = reader.read(64)
        for _lane, data in batch:
            stamp, record = decode(data)
            senders.extend(r.sender for r in order.push(stamp, record))  # type: ignore[union-attr]
        link._on_space()
    assert senders == list(range(1, sent + 1))
    assert link.backlog == 0
    assert not link.over_budget(link._loop.time() + TOKEN_S * 10)
    worker_end.close()


def _recording_link(
    received: list[object], on_batch: Callable[[], None] | None = None
) -> tuple[WorkerLink, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    settings = WorkerSettings(
        run_dir="/nonexistent", logging_keys={}, token_timeout=TOKEN_S, lane_capacity=LANE_BYTES
    )
    made = WorkerLink(
        WorkerPlan(0, (Shared,)),
        settings,
        loop,
        lambda _link, record: received.append(record),
        lambda *_: None,
        on_batch=on_batch,
    )
    loop.add_reader(made._reader.data_fileno, made._on_readable)  # as spawn() does
    return made, loop


def _mcast(n: int) -> McastRequest:
    return McastRequest(False, ((40, 0, Guarantee.AGREED, n.to_bytes(4, "big")),))


def test_take_ready_hands_over_what_the_worker_wrote_before_its_wake_up_is_served() -> None:
    received: list[object] = []
    made, loop = _recording_link(received)
    worker_end = Channel.attach(made._up.fds)
    writer = worker_end.writer()
    try:
        loop.run_until_complete(asyncio.sleep(0))  # the reader finds the ring empty and arms
        assert writer.write(Lane.APP, encode(_mcast(1)))
        assert writer.write(Lane.APP, encode(_mcast(2)))
        made.take_ready()  # the token is here: no loop turn in between
        assert received == [_mcast(1), _mcast(2)]

        # The wake-up the worker signalled then finds an empty ring and arms again, so the
        # next record still arrives through it, once.
        for _ in range(3):
            loop.run_until_complete(asyncio.sleep(0))
        assert received == [_mcast(1), _mcast(2)]
        assert writer.write(Lane.APP, encode(_mcast(3)))
        deadline = loop.time() + 5
        while len(received) < 3 and loop.time() < deadline:
            loop.run_until_complete(asyncio.sleep(0.001))
        assert received == [_mcast(1), _mcast(2), _mcast(3)]
    finally:
        worker_end.close()
        made.close()
        loop.close()


def test_the_owner_hears_once_a_wake_up_handed_its_records_over_but_not_from_take_ready() -> None:
    # The executive sends a worker's multicasts in the wake-up that brought them.
    received: list[object] = []
    made, loop = _recording_link(received, on_batch=lambda: received.append("batch"))
    worker_end = Channel.attach(made._up.fds)
    writer = worker_end.writer()
    try:
        assert writer.write(Lane.APP, encode(_mcast(1)))
        made.take_ready()
        assert received == [_mcast(1)]
        assert writer.write(Lane.APP, encode(_mcast(2)))
        assert writer.write(Lane.APP, encode(_mcast(3)))
        made._on_readable()
        assert received == [_mcast(1), _mcast(2), _mcast(3), "batch"]
    finally:
        worker_end.close()
        made.close()
        loop.close()


def test_take_ready_stops_reading_a_worker_that_wrote_garbage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    received: list[object] = []
    made, loop = _recording_link(received)
    worker_end = Channel.attach(made._up.fds)
    writer = worker_end.writer()
    try:
        assert writer.write(Lane.APP, b"\xc1 not msgpack")
        assert writer.write(Lane.APP, encode(_mcast(1)))
        made.take_ready()
        made.take_ready()
        made._on_readable()
        assert received == []  # nothing after the garbage is believed
        assert sum("sent garbage" in r.message for r in caplog.records) == 1
    finally:
        worker_end.close()
        made.close()
        loop.close()
