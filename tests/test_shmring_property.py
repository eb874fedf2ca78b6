"""A channel behaves like two bounded queues of records: a hypothesis run against a deque model.

The model knows nothing of positions or wrap-around; it counts the bytes each record occupies
(an 8-byte frame plus the payload rounded up to 8) against the lane's capacity. Small lanes of
different sizes make every run cross the lane ends many times.
"""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec.shmring import Channel, Lane

SYNC_CAPACITY, APP_CAPACITY = 256, 512
MAX_RECORD = SYNC_CAPACITY - 8


def _occupies(length: int) -> int:
    return 8 + (length + 7) // 8 * 8


class Model:
    def __init__(self) -> None:
        self.queues: dict[Lane, deque[bytes]] = {Lane.SYNC: deque(), Lane.APP: deque()}
        self.used = {Lane.SYNC: 0, Lane.APP: 0}
        self.capacity = {Lane.SYNC: SYNC_CAPACITY, Lane.APP: APP_CAPACITY}

    def room(self, lane: Lane) -> int:
        return max(0, min(MAX_RECORD, self.capacity[lane] - self.used[lane] - 8))

    def write(self, lane: Lane, record: bytes) -> bool:
        if _occupies(len(record)) > self.capacity[lane] - self.used[lane]:
            return False
        self.queues[lane].append(record)
        self.used[lane] += _occupies(len(record))
        return True

    def read(self, limit: int) -> list[tuple[Lane, bytes]]:
        out: list[tuple[Lane, bytes]] = []
        for lane in (Lane.SYNC, Lane.APP):
            while self.queues[lane] and len(out) < limit:
                record = self.queues[lane].popleft()
                self.used[lane] -= _occupies(len(record))
                out.append((lane, record))
        return out


writes = st.tuples(
    st.just("write"),
    st.sampled_from(Lane),
    st.one_of(st.integers(0, 24), st.integers(0, MAX_RECORD)),  # small ones land everywhere
    st.integers(0, 255),
)
reads = st.tuples(st.just("read"), st.integers(1, 6))
operations = st.lists(st.one_of(writes, reads), max_size=120)


@settings(max_examples=300)
@given(operations)
def test_channel_matches_a_deque_model(ops: list[tuple[object, ...]]) -> None:
    model = Model()
    serial = 0
    with Channel.create(APP_CAPACITY, SYNC_CAPACITY) as channel:
        writer, reader = channel.writer(), channel.reader()
        for op in ops:
            if op[0] == "write":
                _, lane, length, fill = op
                assert isinstance(lane, Lane)
                assert isinstance(length, int)
                assert isinstance(fill, int)
                serial += 1
                # Distinct records: a serial number, then the fill byte.
                record = (serial.to_bytes(4, "little") + bytes([fill]) * length)[:length]
                assert writer.room(lane) == model.room(lane)
                assert writer.write(lane, record) == model.write(lane, record)
            else:
                limit = op[1]
                assert isinstance(limit, int)
                assert reader.read(limit) == model.read(limit)
        assert reader.read(10_000) == model.read(10_000)
        assert reader.ack_and_arm() is False
