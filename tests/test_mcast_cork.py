"""The worker's multicast cork: one record a loop turn, never a promise the ring cannot keep."""

from __future__ import annotations

from collections.abc import Callable

from pycorosync.exec.mcast_cork import CORK_BYTES, McastCork
from pycorosync.exec.shmring import Lane
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.worker_proto import McastRequest, decode

AGREED = Guarantee.AGREED


class FakeRing:
    def __init__(self, room: int) -> None:
        self.free = room
        self.records: list[McastRequest] = []
        self.wanted = 0

    def write(self, lane: Lane, record: bytes) -> bool:
        assert lane is Lane.APP
        if len(record) > self.free:
            return False
        self.free -= len(record)
        _stamp, decoded = decode(record)
        assert isinstance(decoded, McastRequest)
        self.records.append(decoded)
        return True

    def room(self, lane: Lane) -> int:
        return self.free

    def want_space(self) -> None:
        self.wanted += 1


def request(payload: bytes, service: int = 2) -> McastRequest:
    return McastRequest(False, ((service, 3, AGREED, payload),))


def cork_on(ring: FakeRing) -> tuple[McastCork, list[Callable[[], None]], list[str]]:
    scheduled: list[Callable[[], None]] = []
    failures: list[str] = []
    return McastCork(ring, scheduled.append, failures.append), scheduled, failures


def test_one_turns_multicasts_leave_as_one_record_in_order() -> None:
    ring = FakeRing(1 << 20)
    cork, scheduled, failures = cork_on(ring)
    for i in range(50):
        assert cork.take(request(b"m%d" % i))
    assert ring.records == []
    assert len(scheduled) == 1
    scheduled[0]()
    assert [m[3] for r in ring.records for m in r.messages] == [b"m%d" % i for i in range(50)]
    assert len(ring.records) == 1
    assert failures == []


def test_a_full_cork_is_written_at_once() -> None:
    ring = FakeRing(4 << 20)
    cork, _scheduled, _failures = cork_on(ring)
    chunk = bytes(CORK_BYTES // 4)
    for _ in range(5):
        assert cork.take(request(chunk))
    assert len(ring.records) == 1
    assert cork.pending == 2


def test_a_multicast_is_refused_only_when_the_ring_cannot_hold_it() -> None:
    ring = FakeRing(3000)
    cork, _scheduled, failures = cork_on(ring)
    assert cork.take(request(bytes(1000)))
    assert cork.take(request(bytes(1000)))  # flushes the first, then fits alone
    assert not cork.take(request(bytes(1000)))  # no room even alone: would block
    assert ring.wanted == 1
    cork.flush()
    assert [len(m[3]) for r in ring.records for m in r.messages] == [1000, 1000]
    assert failures == []


def test_every_accepted_cork_fits_the_room_it_was_promised() -> None:
    # Sizes that probe the slack bounds: whatever was accepted must be writable.
    for size in (0, 1, 31, 255, 256, 65535, 65536, 70000):
        ring = FakeRing(size + 200)
        cork, _scheduled, failures = cork_on(ring)
        taken = cork.take(McastRequest(False, ((65535, 65535, Guarantee.SAFE, bytes(size)),)))
        cork.flush()
        assert failures == []
        assert taken == bool(ring.records)


def test_a_dropped_cork_writes_nothing_and_takes_nothing() -> None:
    ring = FakeRing(1 << 20)
    cork, scheduled, _failures = cork_on(ring)
    assert cork.take(request(b"late"))
    cork.drop()  # the worker closes its channels; the scheduled flush must not touch them
    scheduled[0]()
    assert not cork.take(request(b"later"))
    assert ring.records == []


class CountingRing(FakeRing):
    def __init__(self, room: int) -> None:
        super().__init__(room)
        self.room_reads = 0

    def room(self, lane: Lane) -> int:
        self.room_reads += 1
        return super().room(lane)


def test_take_one_and_take_share_one_record_in_order_with_one_room_read() -> None:
    ring = CountingRing(1 << 20)
    cork, scheduled, failures = cork_on(ring)
    for i in range(20):
        taken = cork.take_one(2, 3, AGREED, b"a%d" % i) if i % 2 else cork.take(request(b"a%d" % i))
        assert taken
    assert ring.room_reads == 1  # the figure read first covers the whole cork
    scheduled[0]()
    assert [m[3] for r in ring.records for m in r.messages] == [b"a%d" % i for i in range(20)]
    assert len(ring.records) == 1
    assert failures == []


def test_room_written_away_after_a_flush_is_not_promised_again() -> None:
    ring = CountingRing(4096)
    cork, _, failures = cork_on(ring)
    assert cork.take_one(2, 3, AGREED, b"x" * 100)
    cork.flush()
    ring.free = 200  # another record of the worker took most of the lane after the flush
    assert not cork.take_one(2, 3, AGREED, b"y" * 1000)
    assert ring.wanted == 1
    ring.free = 4096  # the Totem process read the lane
    assert cork.take_one(2, 3, AGREED, b"y" * 1000)
    cork.flush()
    assert failures == []
    assert [m[3] for r in ring.records for m in r.messages] == [b"x" * 100, b"y" * 1000]
