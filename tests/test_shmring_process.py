"""Channels between two processes: the peer is a freshly started interpreter that attaches by the
fd numbers it inherits (``pass_fds``), as a worker will. Every wait has a deadline; a lost
wake-up shows as a deadline passing, never as a hang."""

from __future__ import annotations

import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from pycorosync.exec.shmring import Channel, ChannelReader, ChannelWriter, Lane

DEADLINE_S = 60.0

# Shared by both peers: block until the reader has records, or the writer has room. A wake-up
# that never comes makes select time out and the peer fail loudly.
_WAITING = """
import random, select, sys, time
from pycorosync.exec.shmring import Channel, ChannelFds, Lane

# Spins between a failed write and the arming: a producer preempted right there, which
# widens the window where the reader frees the room without seeing the producer armed.
ARM_DELAYS = (0,)
delay_rng = random.Random(3)

def wait_readable(fd, deadline):
    if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        sys.exit(f"deadline passed waiting on fd {fd}: a wake-up was lost")

def write_blocking(writer, lane, record, deadline):
    waits = 0
    while not writer.write(lane, record):
        for _ in range(delay_rng.choice(ARM_DELAYS)):
            pass
        writer.want_space()
        wait_readable(writer.space_fileno, deadline)
        writer.ack_space()
        waits += 1
    return waits

def read_blocking(reader, deadline):
    while True:
        records = reader.read()
        if records:
            return records
        if not reader.ack_and_arm():
            wait_readable(reader.data_fileno, deadline)
"""

_ECHO_PEER = (
    _WAITING
    + """
inbound = Channel.attach(ChannelFds.from_arg(sys.argv[1])).reader()
outbound = Channel.attach(ChannelFds.from_arg(sys.argv[2])).writer()
deadline = time.monotonic() + float(sys.argv[3])
while True:
    for lane, record in read_blocking(inbound, deadline):
        write_blocking(outbound, lane, record, deadline)
        if record == b"STOP":
            sys.exit(0)
"""
)

_PRODUCER_PEER = (
    _WAITING
    + """
ARM_DELAYS = (0, 0, 30, 300, 3000)
outbound = Channel.attach(ChannelFds.from_arg(sys.argv[1])).writer()
count, deadline = int(sys.argv[2]), time.monotonic() + float(sys.argv[3])
rng = random.Random(5)
sent = space_waits = 0
while sent < count:
    for _ in range(min(count - sent, rng.choice((1, 1, 2, 3, 50, 400)))):  # bursts of all sizes
        lane = Lane.SYNC if sent % 7 == 0 else Lane.APP
        record = sent.to_bytes(8, "little") * rng.randint(1, 4)
        space_waits += write_blocking(outbound, lane, record, deadline)
        sent += 1
    for _ in range(rng.choice((0, 0, 10, 2000))):  # and gaps: the consumer catches up, sleeps
        pass
print(space_waits)
"""
)


class _Peer:
    """A fresh interpreter running ``code`` with the channels' descriptors; ``stdout`` is what
    it printed, once it has exited (with status 0, or the test fails)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.stdout = b""


# Rounds: a burst of 1-4 records with spins between them, then wait for the consumer's ack of
# the round's last record. The last write often lands while the consumer is between finding
# the lanes empty and sleeping: a wake-up lost there stalls the round.
_ROUNDS_PEER = (
    _WAITING
    + """
outbound = Channel.attach(ChannelFds.from_arg(sys.argv[1])).writer()
acks = Channel.attach(ChannelFds.from_arg(sys.argv[2])).reader()
rounds, wait_s = int(sys.argv[3]), float(sys.argv[4])
rng = random.Random(11)
serial = 0
for _ in range(rounds):
    burst = rng.randint(1, 4)
    for i in range(burst):
        for _ in range(rng.choice((0, 1, 5, 20, 80, 300))):
            pass
        last = i == burst - 1
        write_blocking(outbound, Lane.APP, serial.to_bytes(8, "little") + bytes([last]),
                       time.monotonic() + wait_s)
        serial += 1
    ack = read_blocking(acks, time.monotonic() + wait_s)
    assert ack == [(Lane.SYNC, (serial - 1).to_bytes(8, "little"))], ack
"""
)


@contextmanager
def _peer(code: str, channels: list[Channel], *args: str) -> Iterator[_Peer]:
    fds = tuple(fd for channel in channels for fd in channel.fds.all())
    argv = [sys.executable, "-c", code, *(c.fds.to_arg() for c in channels), *args]
    process = subprocess.Popen(argv, pass_fds=fds, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peer = _Peer(process)
    try:
        yield peer
        process.wait(timeout=DEADLINE_S)  # the peer ends by itself once it has done its part
    finally:
        if process.poll() is None:
            process.kill()
        peer.stdout, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, stderr.decode(errors="replace")


def _wait_readable(fd: int, deadline: float) -> None:
    ready = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]
    assert ready, f"deadline passed waiting on fd {fd}: a wake-up was lost"


def _records_to_send(max_record: int) -> list[tuple[Lane, bytes]]:
    """Serial-numbered records of many sizes, some of them the largest the channel takes."""
    sizes = [0, 1, 7, 8, 63, 64, 1000, 4096, 65_536, max_record]
    records = []
    for i in range(3000):
        lane = Lane.SYNC if i % 5 == 0 else Lane.APP
        size = sizes[i // 250 % len(sizes)] if i % 250 == 0 else i % 300
        records.append((lane, (i.to_bytes(4, "little") * (size // 4 + 1))[:size]))
    return [*records, (Lane.APP, b"STOP")]


def _pump(
    writer: ChannelWriter, reader: ChannelReader, outgoing: list[tuple[Lane, bytes]]
) -> dict[Lane, list[bytes]]:
    """Send everything while collecting the echoes, sleeping on whichever fd can unblock us."""
    deadline = time.monotonic() + DEADLINE_S
    echoed: dict[Lane, list[bytes]] = {Lane.SYNC: [], Lane.APP: []}
    index = 0
    while True:
        while index < len(outgoing) and writer.write(*outgoing[index]):
            index += 1
        for lane, record in reader.read():
            echoed[lane].append(record)
        if echoed[Lane.APP] and echoed[Lane.APP][-1] == b"STOP":
            return echoed
        if index < len(outgoing):
            writer.want_space()
        if reader.ack_and_arm():
            continue
        fds = [reader.data_fileno] + ([writer.space_fileno] if index < len(outgoing) else [])
        ready = select.select(fds, [], [], max(0.0, deadline - time.monotonic()))[0]
        assert ready, "deadline passed: a wake-up was lost"
        if writer.space_fileno in ready:
            writer.ack_space()


def test_records_cross_to_a_fresh_interpreter_and_back() -> None:
    with (
        Channel.create(256 << 10, 128 << 10) as there,  # small: back-pressure on the way out
        Channel.create() as back,
    ):
        outgoing = _records_to_send(there.max_record)
        with _peer(_ECHO_PEER, [there, back], str(DEADLINE_S)):
            echoed = _pump(there.writer(), back.reader(), outgoing)
    for lane in Lane:
        assert echoed[lane] == [record for ln, record in outgoing if ln == lane]


def _sent_by_lane(count: int) -> dict[Lane, list[int]]:
    """The serial numbers the producer peer puts on each lane, in order (every 7th is SYNC)."""
    return {
        Lane.SYNC: list(range(0, count, 7)),
        Lane.APP: [n for n in range(count) if n % 7],
    }


def test_no_wake_up_is_lost_between_processes() -> None:
    count = 200_000
    expected = _sent_by_lane(count)
    received: dict[Lane, list[int]] = {Lane.SYNC: [], Lane.APP: []}
    sleeps = 0
    with Channel.create(4096, 1024) as channel:  # tiny lanes: both sides sleep again and again
        reader = channel.reader()
        deadline = time.monotonic() + DEADLINE_S
        with _peer(_PRODUCER_PEER, [channel], str(count), str(DEADLINE_S)) as producer:
            while sum(map(len, received.values())) < count:
                records = reader.read()
                for lane, record in records:
                    assert record == record[:8] * (len(record) // 8)
                    received[lane].append(int.from_bytes(record[:8], "little"))
                if not records and not reader.ack_and_arm():
                    sleeps += 1
                    _wait_readable(reader.data_fileno, deadline)
        assert reader.read() == []
    assert received == expected
    assert sleeps > 0, "the consumer never slept: the test did not exercise the data wake-up"
    assert int(producer.stdout) > 0, "the producer never slept: nor the space wake-up"


def test_one_mib_message_crosses_whole_both_ways() -> None:
    big = bytes(range(256)) * 4096
    with Channel.create() as there, Channel.create() as back:
        with _peer(_ECHO_PEER, [there, back], str(DEADLINE_S)):
            writer, reader = there.writer(), back.reader()
            assert writer.write(Lane.SYNC, big)
            assert writer.write(Lane.APP, b"STOP")
            deadline = time.monotonic() + DEADLINE_S
            got: list[tuple[Lane, bytes]] = []
            while len(got) < 2:
                records = reader.read()
                got += records
                if not records and not reader.ack_and_arm():
                    _wait_readable(reader.data_fileno, deadline)
        assert got == [(Lane.SYNC, big), (Lane.APP, b"STOP")]


def test_no_wake_up_is_lost_in_ping_pong_rounds() -> None:
    rounds, wait_s = 20_000, 10.0
    serials: list[int] = []
    acked = 0
    with Channel.create(4096) as inbound, Channel.create(4096) as acks:
        reader, acker = inbound.reader(), acks.writer()
        with _peer(_ROUNDS_PEER, [inbound, acks], str(rounds), str(wait_s)):
            while acked < rounds:
                records = reader.read()
                for _, record in records:
                    serials.append(int.from_bytes(record[:8], "little"))
                    if record[8]:  # the round's last record: the producer waits for our ack
                        assert acker.write(Lane.SYNC, record[:8])
                        acked += 1
                if not records and not reader.ack_and_arm():
                    _wait_readable(reader.data_fileno, time.monotonic() + wait_s)
    assert serials == list(range(len(serials)))
    assert len(serials) > rounds
