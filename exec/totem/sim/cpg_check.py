"""A cpgverify-style checker of what simulated CPG clients saw, judged at the end of a run.

Theory of operation
-------------------
Every simulated client (:mod:`.cpg_clients`) keeps a :class:`ClientRecord`: how many messages
it had accepted (their sequence numbers are 0, 1, ...), and in order every delivery and every
confchg the engine gave it. A message carries its sender's node, pid and sequence number and a
CRC of all of it (:func:`encode_message`), so a receiver can tell a corrupted or misattributed
message. A confchg is recorded with the ring the node's CPG engine was in when it was sent
(its last activated sync round), the Totem message whose delivery made it (ring id and seq:
an agreed point, the same on every node) and, if Totem was delivering a transitional
configuration's messages then, that configuration's members. ``(ring, transitional, cause,
members)`` names one configuration of the group cluster-wide (:attr:`ViewChanged.key`): the
cause tells apart the same member list coming back when a process leaves and joins again on
its handle; the transitional part matters when a ring splits - each part delivers the old
ring's remaining messages in its own transitional configuration, with different holes (EVS),
and a leave among them gives the same cause and member list on both sides.

:func:`check_clients` then asserts, over the records of one run:

* ``INTEGRITY`` - every delivered message is intact, claims the sender CPG named, and was
  accepted from that client (no invented message);
* ``SELF_DELIVERY`` - each client delivered its own messages in order with none missing: all
  it accepted if it lived to the end or saw itself leave the group (its messages precede its
  leave in the agreed order), a prefix of them if it died;
* ``FIFO`` - per receiver and sender, no duplicate and no step back, and exactly the next
  number while the sender stays in the receiver's configuration (a gap is only allowed across
  the sender's (re)joining); nothing comes from a process outside the configuration;
* ``VIEW_AGREEMENT`` - two clients that installed the same configuration and then the same
  next one delivered exactly the same messages in between, in the same order (EVS for CPG);
* ``TABLE`` (:func:`check_tables`) - at the end every running node's process table is the
  same and holds exactly the live clients, each in the test's group.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

from pycorosync.exec.totem.events import RingId

__all__ = [
    "Address",
    "ClientEvent",
    "ClientRecord",
    "CpgRule",
    "CpgViolation",
    "Delivered",
    "ViewChanged",
    "check_clients",
    "check_tables",
    "decode_message",
    "encode_message",
]

Address = tuple[int, int]
"""A CPG process: ``(nodeid, pid)``."""

_CRC = struct.Struct(">I")


def encode_message(sender: Address, seq: int, padding: int) -> bytes:
    """A client's ``seq``-th message: its identity, ``padding`` filler bytes and a CRC."""
    node, pid = sender
    body = b"%d.%d.%d|" % (node, pid, seq) + bytes((seq + i) & 0xFF for i in range(padding))
    return body + _CRC.pack(zlib.crc32(body))


def decode_message(data: bytes) -> tuple[Address, int] | None:
    """``(sender, seq)`` of an intact message; None if it does not check out."""
    body, crc = data[:-4], data[-4:]
    if len(data) < 5 or _CRC.pack(zlib.crc32(body)) != crc:
        return None
    head, bar, _ = body.partition(b"|")
    fields = head.split(b".")
    if not bar or len(fields) != 3 or not all(f.isdigit() for f in fields):
        return None
    node, pid, seq = (int(f) for f in fields)
    return (node, pid), seq


@dataclass(frozen=True, slots=True)
class Delivered:
    sender: Address
    """The sender as CPG named it (the DELIVER callback's nodeid and pid)."""
    seq: int | None
    """The message's sequence number; None if it was corrupted or claims another sender."""
    spans_views: bool = False
    """A message sent in fragments whose first came before this client's latest confchg: a
    process that joined in between cannot have it, so it is left out of the comparison of
    configurations (VIEW_AGREEMENT); every other rule still applies to it."""


Cause = tuple[RingId, int]
"""The Totem delivery (ring id, seq) during which a confchg was sent."""
ViewKey = tuple[RingId | None, tuple[int, ...] | None, Cause | None, tuple[Address, ...]]


@dataclass(frozen=True, slots=True)
class ViewChanged:
    ring: RingId | None
    members: tuple[Address, ...]
    left: tuple[Address, ...]
    joined: tuple[Address, ...]
    reasons: frozenset[str] = frozenset()
    """The CPG reasons (``NODEDOWN``, ``PROCDOWN``, ...) of the left and joined entries."""
    transitional: tuple[int, ...] | None = None
    """The members of the Totem transitional configuration being delivered, if any."""
    cause: Cause | None = None
    """The Totem delivery that made this confchg (None if none had come since the last
    Totem configuration change)."""

    @property
    def key(self) -> ViewKey:
        """The configuration this confchg installs (see the module docstring)."""
        return self.ring, self.transitional, self.cause, self.members


ClientEvent = Delivered | ViewChanged


@dataclass(slots=True, eq=False)
class ClientRecord:
    """What one client did and saw, in order."""

    node: int
    incarnation: int
    pid: int
    sent: int = 0
    """Messages it had accepted: sequence numbers ``0 .. sent - 1``."""
    events: list[ClientEvent] = field(default_factory=list)
    alive: bool = True
    join_accepted: bool = False
    dropped: set[int] = field(default_factory=set)
    """Its messages the engine said it dropped (sent past flow control, the outbox full)."""
    left: bool = False
    """It left the group gracefully and got the confchg that shows it gone (and has not
    joined again since)."""
    errors: list[str] = field(default_factory=list)
    """Replies a well-behaved client should never get (anything but OK or TRY_AGAIN)."""

    @property
    def address(self) -> Address:
        return self.node, self.pid

    @property
    def name(self) -> str:
        return f"client {self.node}/{self.pid}"


class CpgRule(Enum):
    INTEGRITY = "CPG integrity"
    SELF_DELIVERY = "CPG self-delivery"
    FIFO = "CPG fifo"
    VIEW_AGREEMENT = "CPG view agreement"
    TABLE = "CPG table"


@dataclass(frozen=True, slots=True)
class CpgViolation:
    rule: CpgRule
    description: str

    def __str__(self) -> str:
        return f"{self.rule.value}: {self.description}"


def check_clients(records: Sequence[ClientRecord]) -> list[CpgViolation]:
    """Every per-client rule of the module docstring over one run's records."""
    accepted = {r.address: r.sent for r in records}
    dropped = {r.address: r.dropped for r in records}
    violations: list[CpgViolation] = []
    for record in records:
        violations += [
            CpgViolation(CpgRule.INTEGRITY, f"{record.name}: {e}") for e in record.errors
        ]
        violations += _integrity(record, accepted, dropped)
        violations += _self_delivery(record)
        violations += _fifo(record, dropped)
    violations += _view_agreement(records)
    return violations


def _integrity(
    record: ClientRecord, accepted: Mapping[Address, int], dropped: Mapping[Address, set[int]]
) -> list[CpgViolation]:
    out = []
    for event in record.events:
        if not isinstance(event, Delivered):
            continue
        if event.seq is None:
            problem = "a corrupted or misattributed message"
        elif event.seq >= accepted.get(event.sender, 0):
            problem = f"message {event.seq}, which the sender never sent"
        elif event.seq in dropped.get(event.sender, set()):
            problem = f"message {event.seq}, which the engine told its sender it dropped"
        else:
            continue
        out.append(
            CpgViolation(CpgRule.INTEGRITY, f"{record.name} got {problem} from {event.sender}")
        )
    return out


def _self_delivery(record: ClientRecord) -> list[CpgViolation]:
    own = [e.seq for e in record.events if isinstance(e, Delivered) and e.sender == record.address]
    sent = [seq for seq in range(record.sent) if seq not in record.dropped]
    expected = sent if record.alive or record.left else sent[: len(own)]
    if own == expected and len(own) <= record.sent:
        return []
    state = "left" if record.left else "alive" if record.alive else "dead"
    return [
        CpgViolation(
            CpgRule.SELF_DELIVERY,
            f"{record.name} ({state}) accepted {record.sent} messages and got back {_runs(own)}",
        )
    ]


def _fifo(record: ClientRecord, dropped: Mapping[Address, set[int]]) -> list[CpgViolation]:
    out: list[CpgViolation] = []
    view: set[Address] = set()
    last: dict[Address, int] = {}
    fresh: set[Address] = set()
    """Senders that (re)entered the view since their last message: a gap is allowed."""
    for event in record.events:
        if isinstance(event, ViewChanged):
            entered = event.members if record.address in event.joined else event.joined
            fresh |= set(entered)
            view = set(event.members)
            continue
        sender, seq = event.sender, event.seq
        if seq is None:
            continue  # an INTEGRITY violation already
        before = last.get(sender)
        if sender not in view:
            problem = f"message {seq} from {sender}, not in its configuration"
        elif before is not None and seq <= before:
            problem = f"message {seq} from {sender} after {before}"
        elif sender not in fresh and before is not None and not _next(before, seq, dropped, sender):
            problem = f"message {seq} from {sender} after {before}: a gap in one configuration"
        else:
            problem = None
        if problem is not None:
            out.append(CpgViolation(CpgRule.FIFO, f"{record.name} got {problem}"))
        last[sender] = seq
        fresh.discard(sender)
    return out


Segment = tuple[ViewKey, ViewKey]


def _segments(record: ClientRecord) -> dict[Segment, list[tuple[Address, int | None]]]:
    """The messages between each two consecutive confchgs, keyed by both configurations."""
    out: dict[Segment, list[tuple[Address, int | None]]] = {}
    start = None
    messages: list[tuple[Address, int | None]] = []
    for event in record.events:
        if isinstance(event, ViewChanged):
            if start is not None:
                out[start, event.key] = messages
            # Out of the group (it left), it gets nothing until its join's confchg.
            inside = record.address in event.members
            start, messages = (event.key if inside else None), []
        elif start is not None and not event.spans_views:
            messages.append((event.sender, event.seq))
    return out


def _view_agreement(records: Iterable[ClientRecord]) -> list[CpgViolation]:
    first: dict[Segment, tuple[ClientRecord, list[tuple[Address, int | None]]]] = {}
    out = []
    for record in records:
        for segment, messages in _segments(record).items():
            seen = first.setdefault(segment, (record, messages))
            if seen[1] != messages:
                other, theirs = seen
                out.append(
                    CpgViolation(
                        CpgRule.VIEW_AGREEMENT,
                        f"{record.name} and {other.name} both went from {segment[0]} to "
                        f"{segment[1]} but delivered {_brief(messages)} and {_brief(theirs)}",
                    )
                )
    return out


def check_tables(
    tables: Mapping[int, Sequence[tuple[bytes, Address]]], live: Iterable[Address], group: bytes
) -> list[CpgViolation]:
    """The end state: every node's table the same, and exactly the live clients in ``group``."""
    out = []
    distinct = {tuple(table) for table in tables.values()}
    if len(distinct) > 1:
        shown = "; ".join(f"n{n}: {list(t)}" for n, t in sorted(tables.items()))
        out.append(CpgViolation(CpgRule.TABLE, f"the nodes' process tables differ: {shown}"))
    expected = sorted((group, address) for address in live)
    for node, table in sorted(tables.items()):
        if sorted(table) != expected:
            extra = sorted(set(table) - set(expected))
            missing = sorted(set(expected) - set(table))
            out.append(
                CpgViolation(
                    CpgRule.TABLE,
                    f"n{node}'s table is not the live clients: extra {extra}, missing {missing}",
                )
            )
    return out


def _next(before: int, seq: int, dropped: Mapping[Address, set[int]], sender: Address) -> bool:
    """``seq`` follows ``before`` with nothing between but messages the engine dropped."""
    skipped = dropped.get(sender, set())
    return seq > before and all(s in skipped for s in range(before + 1, seq))


def _runs(seqs: Sequence[int | None]) -> str:
    """A short picture of a sequence of numbers (the first few and the count)."""
    head = ", ".join(str(s) for s in seqs[:12])
    return f"[{head}{', ...' if len(seqs) > 12 else ''}] ({len(seqs)})"


def _brief(messages: Sequence[tuple[Address, int | None]]) -> str:
    return f"{len(messages)} messages {[f'{a[0]}/{a[1]}#{s}' for a, s in messages[:8]]}"
