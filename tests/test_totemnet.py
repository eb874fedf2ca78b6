"""The udpu transport and the runtime's small parts, without a daemon."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from pathlib import Path

import pytest

from pycorosync.exec.nodelist import NodeAddress
from pycorosync.exec.totem.core_api import Send
from pycorosync.exec.totem.events import Delivery, PersistRingSeq, RingId, TotemEvent
from pycorosync.exec.totem.srp import Srp
from pycorosync.exec.totem.srp_config import SrpConfig
from pycorosync.exec.totem.srp_wire import HoldCancel, Token, encode
from pycorosync.exec.totemconfig import CryptoConfig
from pycorosync.exec.totemcrypto import PacketCrypto
from pycorosync.exec.totemnet import Datagram, NetStats, UdpuTransport, send_datagram
from pycorosync.exec.totemproc import (
    EARLY_DELIVERY_BYTES,
    RateLimitedLog,
    RingSeqFile,
    TotemProcess,
    next_boot_id,
    sd_notify,
)

pytestmark = pytest.mark.xdist_group("loopback")


def _endpoint(ip: str, port: int) -> NodeAddress:
    return NodeAddress(link=0, text=ip, address=ipaddress.ip_address(ip), port=port)


def _free_port(ip: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind((ip, 0))
        port: int = probe.getsockname()[1]
        return port


def test_unicast_broadcast_and_batched_reads() -> None:
    ips = ["127.0.30.1", "127.0.30.2", "127.0.30.3"]
    endpoints = {i + 1: _endpoint(ip, _free_port(ip)) for i, ip in enumerate(ips)}
    nets = {n: UdpuTransport(nodeid=n, endpoints=endpoints) for n in endpoints}
    try:
        for i in range(50):
            nets[1].broadcast(b"m%d" % i)
        nets[2].send(1, b"token")
        for n in (2, 3):
            batch = nets[n].read_batch()
            assert [d.data for d in batch] == [b"m%d" % i for i in range(50)]
            assert {d.source for d in batch} == {(ips[0], endpoints[1].port)}
        assert [d.data for d in nets[1].read_batch()] == [b"token"]
        assert nets[1].read_batch() == []
        assert nets[1].read_batch(limit=5) == []
        rcvbuf, sndbuf = nets[1].buffer_sizes()
        assert rcvbuf > 0
        assert sndbuf > 0
    finally:
        for net in nets.values():
            net.close()


def test_unlisted_sources_are_dropped_and_counted() -> None:
    ip = "127.0.30.11"
    endpoints = {1: _endpoint(ip, _free_port(ip))}
    net = UdpuTransport(nodeid=1, endpoints=endpoints)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as stranger:
            stranger.bind(("127.0.30.12", 0))
            for _ in range(10):
                stranger.sendto(b"x", (ip, endpoints[1].port))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as neighbour:
            neighbour.bind((ip, 0))
            neighbour.sendto(b"y", (ip, endpoints[1].port))
        assert [d.data for d in net.read_batch()] == [b"y"]
        assert net.stats.rx_unlisted == 10
    finally:
        net.close()


def test_a_second_node_on_one_endpoint_fails_to_bind() -> None:
    ip = "127.0.30.21"
    endpoints = {1: _endpoint(ip, _free_port(ip))}
    net = UdpuTransport(nodeid=1, endpoints=endpoints)
    try:
        with pytest.raises(OSError, match="in use"):
            UdpuTransport(nodeid=1, endpoints=endpoints)
    finally:
        net.close()


def test_ring_seq_file_round_trip(tmp_path: Path) -> None:
    store = RingSeqFile(str(tmp_path), 7)
    assert store.load() == 0
    store.save(12)
    store.save(16)
    assert store.load() == 16
    assert sorted(os.listdir(tmp_path)) == ["ringid_7"]
    Path(store.path).write_text("junk")
    with pytest.raises(OSError, match="no ring sequence number"):
        store.load()


def test_the_boot_id_grows_even_when_the_clock_steps_back(tmp_path: Path) -> None:
    first = next_boot_id(str(tmp_path), 3, now_ns=5_000)
    assert first == 5_000
    assert next_boot_id(str(tmp_path), 3, now_ns=9_000) == 9_000
    assert next_boot_id(str(tmp_path), 3, now_ns=1_000) == 9_001  # the clock went back
    assert next_boot_id(str(tmp_path), 4, now_ns=1_000) == 1_000  # per node
    assert sorted(os.listdir(tmp_path)) == ["bootid_3", "bootid_4"]


def test_sd_notify_abstract_and_path_sockets(tmp_path: Path) -> None:
    assert not sd_notify("READY=1", {})
    name = f"pycorosync-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        assert sd_notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert listener.recv(100) == b"READY=1"
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        assert sd_notify("STOPPING=1", {"NOTIFY_SOCKET": str(path)})
        assert listener.recv(100) == b"STOPPING=1"
    assert not sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "absent")})


def test_rate_limited_log(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    logger = logging.getLogger("pycorosync.TEST")
    drop = RateLimitedLog(logger, logging.WARNING, lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="pycorosync.TEST"):
        for _ in range(5):
            drop("digest", "Packet from 1.2.3.4:5 rejected: digest does not match")
        drop("too-short", "Packet from 1.2.3.4:5 rejected: too short")
        now[0] = 1.5
        drop("digest", "Packet from 1.2.3.4:5 rejected: digest does not match")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "Packet from 1.2.3.4:5 rejected: digest does not match",
        "Packet from 1.2.3.4:5 rejected: too short",
        "Packet from 1.2.3.4:5 rejected: digest does not match (4 similar suppressed)",
    ]
    assert drop.total == 7


def test_a_failed_send_is_counted_with_its_reason() -> None:
    stats = NetStats()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.close()
    send_datagram(sock, b"x", ("127.0.0.1", 9), stats)
    assert stats.tx_dropped == 1
    assert stats.tx_error.startswith("EBADF: ")


class _FailingNet:
    """A transport whose every send fails as a closed socket does."""

    nodeid = 1

    def __init__(self) -> None:
        self.stats = NetStats()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.close()

    def filenos(self) -> tuple[int, ...]:
        return ()

    def send(self, nodeid: int, data: bytes) -> None:
        send_datagram(self._sock, data, ("127.0.0.1", 9), self.stats)

    def broadcast(self, data: bytes) -> None:
        self.send(2, data)

    def read_batch(self) -> list[Datagram]:
        return []


def test_the_runtime_logs_sends_that_fail(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = CryptoConfig(cipher="none", hash="none", model="nss", keyfile="", key=None)
    protection = PacketCrypto(config, None, 1, (1, 2), boot_id=1)

    async def run() -> None:
        process = TotemProcess(
            loop=asyncio.get_running_loop(),
            core=Srp(SrpConfig(), 1, (1, 2), 0),
            transport=_FailingNet(),
            protection=protection,
            ring_seq=RingSeqFile(str(tmp_path), 1),
            token_ms=1000,
            notify=lambda state: None,
        )
        process.start()  # the first JOIN goes out at once, and fails
        process.shutdown()

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    lines = [r.getMessage() for r in caplog.records if "Cannot send" in r.getMessage()]
    assert lines
    assert "EBADF" in lines[0]


class _ScriptedCore:
    """A core whose first output is a new ring's seq, a datagram, and a delivery."""

    nodeid = 1

    def __init__(self) -> None:
        self._output: tuple[list[Send], list[TotemEvent]] = (
            [Send(2, b"token")],
            [
                PersistRingSeq(seq=8),
                Delivery(sender=2, ring_id=RingId(8, 1), seq=1, payload=b"m"),
            ],
        )

    def start(self, now: float) -> None: ...

    def leave(self, now: float) -> None: ...

    def next_deadline(self) -> float | None:
        return None

    def take_output(self) -> tuple[list[Send], list[TotemEvent]]:
        output, self._output = self._output, ([], [])
        return output


class _Journal:
    """Records, in one list, the ring seq saved, the datagrams sent and the deliveries."""

    def __init__(self, tmp_path: Path) -> None:
        self.entries: list[str] = []
        self.batch: list[Datagram] = []
        self.stats = NetStats()
        self.nodeid = 1
        journal = self.entries

        class Store(RingSeqFile):
            def save(self, seq: int) -> None:
                journal.append(f"saved {seq}")

        self.store = Store(str(tmp_path), 1)

    def filenos(self) -> tuple[int, ...]:
        return ()

    def send(self, nodeid: int, data: bytes) -> None:
        self.entries.append(f"sent to {nodeid}")

    def broadcast(self, data: bytes) -> None:
        self.entries.append("broadcast")

    def read_batch(self) -> list[Datagram]:
        batch, self.batch = self.batch, []
        return batch

    def on_delivery(self, delivery: Delivery) -> None:
        self.entries.append(f"delivered {delivery.payload!r}")

    def on_config_change(self, change: object) -> None: ...

    def before_token(self) -> None:
        self.entries.append("before token")

    def after_step(self) -> None: ...


_NO_CRYPTO = CryptoConfig(cipher="none", hash="none", model="nss", keyfile="", key=None)


def _journaled_process(journal: _Journal, core: object) -> TotemProcess:
    """Node 1's Totem process on the journal (transport, ring seq store and listener), on the
    running loop, packets in the clear."""
    return TotemProcess(
        loop=asyncio.get_running_loop(),
        core=core,  # type: ignore[arg-type]
        transport=journal,
        protection=PacketCrypto(_NO_CRYPTO, None, 1, (1, 2), boot_id=1),
        ring_seq=journal.store,
        token_ms=1000,
        notify=lambda state: None,
        listener=journal,
    )


def test_the_ring_seq_is_saved_then_the_token_leaves_before_deliveries_go_up(
    tmp_path: Path,
) -> None:
    journal = _Journal(tmp_path)

    async def run() -> None:
        _journaled_process(journal, _ScriptedCore()).start()

    asyncio.run(run())
    assert journal.entries == ["saved 8", "sent to 2", "delivered b'm'"]


class _DeliveringCore(_ScriptedCore):
    """A core whose first output is a token to pass on and one delivery of ``size`` bytes."""

    def __init__(self, size: int) -> None:
        super().__init__()
        delivery = Delivery(sender=1, ring_id=RingId(8, 1), seq=1, payload=b"m" * size)
        self._output = ([Send(2, b"token")], [delivery])


@pytest.mark.parametrize(
    ("size", "order"),
    [
        (EARLY_DELIVERY_BYTES, ["delivered", "sent to 2"]),
        (EARLY_DELIVERY_BYTES + 1, ["sent to 2", "delivered"]),
    ],
)
def test_a_small_delivery_goes_up_before_the_token_leaves_and_a_big_one_after(
    tmp_path: Path, size: int, order: list[str]
) -> None:
    journal = _Journal(tmp_path)

    async def run() -> None:
        _journaled_process(journal, _DeliveringCore(size)).start()

    asyncio.run(run())
    assert [entry.split(" b'")[0] for entry in journal.entries] == order


class _TokenCore(_ScriptedCore):
    """A core that says which batches bring a token and notes each batch it handles."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self._output = ([], [])
        self._journal = journal

    def brings_token(self, datagrams: list[bytes]) -> bool:
        return b"token" in datagrams

    def handle_datagrams(self, datagrams: list[bytes], now: float) -> None:
        self._journal.append(f"handled {datagrams!r}")


def test_staged_frames_go_into_the_queue_before_a_token_is_handled(tmp_path: Path) -> None:
    # Corosync's TOKEN_RECEIVED callback: what the executive staged must leave on this visit
    # of the token; a batch without a token does not flush (frames keep packing).
    journal = _Journal(tmp_path)
    peer = PacketCrypto(_NO_CRYPTO, None, 2, (1, 2), boot_id=1)

    async def run() -> None:
        process = _journaled_process(journal, _TokenCore(journal.entries))
        process.start()
        for payload in (b"mcast", b"token"):
            journal.batch = [Datagram(peer.seal(payload), ("127.0.0.2", 5405))]
            process._on_readable()

    asyncio.run(run())
    assert journal.entries == ["handled [b'mcast']", "before token", "handled [b'token']"]


def test_the_srp_core_tells_a_batch_with_a_token() -> None:
    ring = RingId(8, 1)
    token = encode(Token(sender=2, ring_id=ring, token_seq=1, seq=0, aru=0, aru_addr=0))
    other = encode(HoldCancel(sender=2, ring_id=ring))
    core = Srp(SrpConfig(), 1, (1, 2), 0)
    assert core.brings_token([other, token])
    assert not core.brings_token([other, b"garbage"])


class _DueCore(_ScriptedCore):
    """A core with nothing to send until its timer, which is due from the start (a token
    hold released by a message queued in the step)."""

    def __init__(self, journal: list[str]) -> None:
        super().__init__()
        self._output = ([], [])
        self._journal = journal
        self._due: float | None = 0.0

    def next_deadline(self) -> float | None:
        return self._due

    def handle_timer(self, now: float) -> None:
        self._due = None
        self._journal.append("timer")
        self._output = ([Send(2, b"token")], [])


def test_a_timer_already_due_runs_in_the_same_wake_up() -> None:
    journal = _Journal(Path("."))

    async def run() -> None:
        process = _journaled_process(journal, _DueCore(journal.entries))
        process.start()
        # No loop turn in between: the released token leaves in this step.
        assert journal.entries == ["timer", "sent to 2"]
        process.shutdown()

    asyncio.run(run())
