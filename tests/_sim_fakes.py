"""Small fake Totem cores for the simulator's tests (the real core is tested through it).

* :class:`SoloCore` - every node is a singleton ring: it installs ``{me}`` at start (ring seq
  = persisted + 4, persisted at once), delivers its own multicasts immediately, and for each
  one broadcasts a datagram nobody needs (so the network is exercised). A heartbeat timer
  broadcasts too. Valid EVS for any fault schedule, never one ring of several nodes.
* :class:`ScriptCore` - does what the test tells it and records every call.
* :class:`RingCore` - a static ring of all configured nodes with a circulating token and no
  membership protocol: correct on a fault-free network, nothing more.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pycorosync.exec.totem.core_api import Send, TotemCore
from pycorosync.exec.totem.events import (
    ConfigChange,
    ConfigKind,
    Delivery,
    Guarantee,
    PersistRingSeq,
    RingId,
    TotemEvent,
)
from pycorosync.exec.totem.evs_check import EvsChecker
from pycorosync.exec.totem.history import HistoryEntry
from pycorosync.exec.totem.sim.cluster import CoreFactory

HEARTBEAT = 0.25


class _Outputs:
    def __init__(self) -> None:
        self.sends: list[Send] = []
        self.events: list[TotemEvent] = []

    def take_output(self) -> tuple[list[Send], list[TotemEvent]]:
        sends, events = self.sends, self.events
        self.sends, self.events = [], []
        return sends, events


def _install(nodeid: int, ring: RingId, members: Sequence[int]) -> list[TotemEvent]:
    return [
        ConfigChange(
            kind=ConfigKind.TRANSITIONAL, members=(nodeid,), left=(), joined=(), ring_id=ring
        ),
        ConfigChange(
            kind=ConfigKind.REGULAR,
            members=tuple(sorted(members)),
            left=(),
            joined=tuple(sorted(set(members) - {nodeid})),
            ring_id=ring,
        ),
    ]


class SoloCore(_Outputs):
    def __init__(self, nodeid: int, members: Sequence[int], ring_seq: int) -> None:
        super().__init__()
        self._nodeid = nodeid
        self.members = tuple(members)
        self.ring = RingId(seq=ring_seq + 4, rep=nodeid)
        self.seq = 0
        self.deadline: float | None = None
        self.received: list[bytes] = []
        self.left = False

    @property
    def nodeid(self) -> int:
        return self._nodeid

    def start(self, now: float) -> None:
        self.events.append(PersistRingSeq(seq=self.ring.seq))
        self.events += _install(self._nodeid, self.ring, [self._nodeid])
        self.deadline = now + HEARTBEAT

    def handle_datagrams(self, datagrams: Sequence[bytes], now: float) -> None:
        self.received += datagrams

    def handle_timer(self, now: float) -> None:
        assert self.deadline is not None
        assert now >= self.deadline
        self.sends.append(Send(None, b"beat %d" % self._nodeid))
        self.deadline = now + HEARTBEAT

    def next_deadline(self) -> float | None:
        return self.deadline

    def mcast(
        self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, *, sync: bool = False
    ) -> bool:
        self.seq += 1
        self.events.append(
            Delivery(
                sender=self._nodeid,
                ring_id=self.ring,
                seq=self.seq,
                payload=payload,
                guarantee=guarantee,
            )
        )
        self.sends.append(Send(None, b"copy " + payload))
        return True

    def leave(self, now: float) -> None:
        self.left = True
        self.sends.append(Send(None, b"bye %d" % self._nodeid))
        self.deadline = None


def solo_factory(nodeid: int, members: Sequence[int], ring_seq: int) -> TotemCore:
    return SoloCore(nodeid, members, ring_seq)


@dataclass
class ScriptCore(_Outputs):
    """Records calls; ``on_start``/``on_batch``/``on_timer`` may queue output or move timers."""

    node: int
    members: tuple[int, ...]
    ring_seq: int
    deadline: float | None = None
    accept: bool = True
    calls: list[tuple[str, float, object]] = field(default_factory=list)
    on_start: Callable[[ScriptCore, float], None] | None = None
    on_batch: Callable[[ScriptCore, list[bytes], float], None] | None = None
    on_timer: Callable[[ScriptCore, float], None] | None = None

    def __post_init__(self) -> None:
        _Outputs.__init__(self)

    @property
    def nodeid(self) -> int:
        return self.node

    def start(self, now: float) -> None:
        self.calls.append(("start", now, None))
        if self.on_start is not None:
            self.on_start(self, now)

    def handle_datagrams(self, datagrams: Sequence[bytes], now: float) -> None:
        self.calls.append(("batch", now, list(datagrams)))
        if self.on_batch is not None:
            self.on_batch(self, list(datagrams), now)

    def handle_timer(self, now: float) -> None:
        self.calls.append(("timer", now, None))
        self.deadline = None
        if self.on_timer is not None:
            self.on_timer(self, now)

    def next_deadline(self) -> float | None:
        return self.deadline

    def mcast(
        self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, *, sync: bool = False
    ) -> bool:
        self.calls.append(("mcast", -1.0, (payload, guarantee)))
        return self.accept

    def leave(self, now: float) -> None:
        self.calls.append(("leave", now, None))
        self.sends.append(Send(None, b"leave"))


class ScriptFactory:
    """Builds :class:`ScriptCore` instances with shared callbacks and keeps every one built."""

    def __init__(self, **script: object) -> None:
        self.script = script
        self.built: list[ScriptCore] = []

    def __call__(self, nodeid: int, members: Sequence[int], ring_seq: int) -> TotemCore:
        core = ScriptCore(nodeid, tuple(members), ring_seq, **self.script)  # type: ignore[arg-type]
        self.built.append(core)
        return core

    def latest(self, nodeid: int) -> ScriptCore:
        return [core for core in self.built if core.node == nodeid][-1]


_TOKEN = struct.Struct(">cI")
_MCAST = struct.Struct(">cIIB")
RING_START = 1.5
"""When the representative sends the first token: after every staggered start."""
RING_HOLD = 0.02


class RingCore(_Outputs):
    """A fixed ring of every configured node; the lowest one starts the token."""

    def __init__(self, nodeid: int, members: Sequence[int], ring_seq: int) -> None:
        super().__init__()
        self._nodeid = nodeid
        self.members = tuple(sorted(members))
        self.ring = RingId(seq=4, rep=self.members[0])
        index = self.members.index(nodeid)
        self.next = self.members[(index + 1) % len(self.members)]
        self.queue: list[tuple[bytes, Guarantee]] = []
        self.store: dict[int, tuple[int, Guarantee, bytes]] = {}
        self.delivered = 0
        self.held: int | None = None
        self.deadline: float | None = None

    @property
    def nodeid(self) -> int:
        return self._nodeid

    def start(self, now: float) -> None:
        self.events.append(PersistRingSeq(seq=self.ring.seq))
        self.events += _install(self._nodeid, self.ring, self.members)
        if self._nodeid == self.ring.rep:
            self.held = 1
            self.deadline = max(now, RING_START)

    def handle_datagrams(self, datagrams: Sequence[bytes], now: float) -> None:
        tokens = []
        for data in datagrams:
            if data[:1] == b"M":
                _, seq, sender, guarantee = _MCAST.unpack_from(data)
                self.store[seq] = (sender, Guarantee(guarantee), data[_MCAST.size :])
            else:
                tokens.append(_TOKEN.unpack(data)[1])
        self._deliver()
        for next_seq in tokens:
            self._token(next_seq, now)

    def _token(self, next_seq: int, now: float) -> None:
        if not self.queue:
            self.held = next_seq
            self.deadline = now + RING_HOLD
            return
        for payload, guarantee in self.queue[:5]:
            self.store[next_seq] = (self._nodeid, guarantee, payload)
            header = _MCAST.pack(b"M", next_seq, self._nodeid, guarantee)
            self.sends.append(Send(None, header + payload))
            next_seq += 1
        del self.queue[:5]
        self._deliver()
        self.sends.append(Send(self.next, _TOKEN.pack(b"T", next_seq)))

    def _deliver(self) -> None:
        while self.delivered + 1 in self.store:
            self.delivered += 1
            sender, guarantee, payload = self.store.pop(self.delivered)
            self.events.append(
                Delivery(
                    sender=sender,
                    ring_id=self.ring,
                    seq=self.delivered,
                    payload=payload,
                    guarantee=guarantee,
                )
            )

    def handle_timer(self, now: float) -> None:
        held, self.held, self.deadline = self.held, None, None
        if held is not None:
            if self.queue:
                self._token(held, now)
            else:
                self.sends.append(Send(self.next, _TOKEN.pack(b"T", held)))

    def next_deadline(self) -> float | None:
        return self.deadline

    def mcast(
        self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, *, sync: bool = False
    ) -> bool:
        self.queue.append((payload, guarantee))
        return True

    def leave(self, now: float) -> None:
        self.deadline = None


def ring_factory(nodeid: int, members: Sequence[int], ring_seq: int) -> TotemCore:
    return RingCore(nodeid, members, ring_seq)


def describe_ring(data: bytes) -> str:
    if data[:1] == b"M":
        return f"MCAST seq {_MCAST.unpack_from(data)[1]}"
    if data[:1] == b"T":
        return f"TOKEN next {_TOKEN.unpack(data)[1]}"
    return "?"


class RecordingChecker(EvsChecker):
    """An :class:`EvsChecker` that also keeps every entry it was shown, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, HistoryEntry]] = []

    def observe(self, nodeid: int, entry: HistoryEntry) -> None:
        self.seen.append((nodeid, entry))
        super().observe(nodeid, entry)


_: CoreFactory = solo_factory
