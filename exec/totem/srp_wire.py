"""Totem SRP wire format: our own, versioned from the first byte (DESIGN.md, Wire formats).

All integers are network byte order. Every datagram starts with the common header::

    0  u16  magic      MAGIC (0xC0A5)
    2  u8   version    WIRE_VERSION; another version is refused with WireVersionError
    3  u8   type       MessageType
    4  u8   flags      per type (below); unknown bits are refused
    5  u32  sender     nodeid of the processor that sent this datagram (never 0)

A ring id is ``u32 rep, u64 seq`` (12 bytes). Sequence numbers, arus and token_seq are u32 on
the wire; the core keeps them as unbounded ints and unwraps received values with
:func:`unwrap` against a nearby reference, so a ring may run through 2**32 (encoders store
``value & 0xFFFFFFFF``).

TOKEN (the ORF token, unicast to the next member)::

    ring_id, u32 token_seq, u32 seq, u32 aru, u32 aru_addr, u32 backlog, u32 fcc,
    u8 retrans_flg (0/1), u8 rtr_count (<= RTR_MAX), rtr_count x (ring_id, u32 seq)

MCAST (flags bit 0 FLAG_ENCAPSULATED: the payload is a whole inner MCAST datagram re-sent in
RECOVERY; the inner one must not itself be encapsulated)::

    ring_id, u32 seq, u8 guarantee (0 agreed, 1 safe), payload (the rest)

MERGE_DETECT and HOLD_CANCEL::

    ring_id

JOIN (flags bit 0 FLAG_LEAVE: the sender is leaving; it must be the last failed entry and
absent from proc)::

    u64 ring_seq, u16 proc_count, u16 failed_count, proc_count x u32, failed_count x u32

COMMIT (the commit token)::

    ring_id, u32 token_seq, u16 member_count, u16 entry_count (<= member_count),
    member_count x u32 (strictly ascending), entry_count x (old ring_id, u32 aru,
    u32 high_delivered, u32 safe_seq, u8 received_flg)

Validation refuses, with :class:`SrpWireError`: short or long datagrams (every length must
match exactly), a bad magic, unknown types or flags, a sender or member nodeid of 0, a ring id
with rep 0, counts above PROCESSOR_COUNT_MAX (or RTR_MAX), duplicate nodeids in a list, and
booleans other than 0/1. Nothing here keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from pycorosync.exec.totem.events import Guarantee, RingId

MAGIC = 0xC0A5
WIRE_VERSION = 1
PROCESSOR_COUNT_MAX = 384
RTR_MAX = 30
FLAG_ENCAPSULATED = 0x01
FLAG_LEAVE = 0x01
SEQ_MODULUS = 1 << 32


class MessageType(IntEnum):
    TOKEN = 1
    MCAST = 2
    MERGE_DETECT = 3
    JOIN = 4
    COMMIT = 5
    HOLD_CANCEL = 6


class SrpWireError(ValueError):
    """A datagram that is not a valid SRP message; the reason is the message."""


class WireVersionError(SrpWireError):
    """A valid magic with another format version: a node of an incompatible release."""

    def __init__(self, version: int) -> None:
        super().__init__(
            f"message uses Totem wire format version {version}, this node speaks "
            f"version {WIRE_VERSION}"
        )
        self.version = version


def unwrap(wire: int, reference: int) -> int:
    """The unbounded value nearest ``reference`` whose low 32 bits are ``wire``."""
    delta = (wire - reference) % SEQ_MODULUS
    if delta >= SEQ_MODULUS // 2:
        delta -= SEQ_MODULUS
    return reference + delta


@dataclass(slots=True, kw_only=True)
class RtrEntry:
    ring_id: RingId
    seq: int


@dataclass(slots=True, kw_only=True)
class Token:
    sender: int
    ring_id: RingId
    token_seq: int
    seq: int
    aru: int
    aru_addr: int
    backlog: int = 0
    fcc: int = 0
    retrans_flg: bool = False
    rtr: list[RtrEntry] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class Mcast:
    sender: int
    ring_id: RingId
    seq: int
    guarantee: Guarantee
    payload: bytes
    encapsulated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class MergeDetect:
    sender: int
    ring_id: RingId


@dataclass(frozen=True, slots=True, kw_only=True)
class HoldCancel:
    sender: int
    ring_id: RingId


@dataclass(frozen=True, slots=True, kw_only=True)
class Join:
    sender: int
    ring_seq: int
    proc: tuple[int, ...]
    failed: tuple[int, ...]
    leave: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitEntry:
    old_ring_id: RingId
    aru: int
    high_delivered: int
    safe_seq: int
    received: bool


@dataclass(slots=True, kw_only=True)
class CommitToken:
    sender: int
    ring_id: RingId
    token_seq: int
    members: tuple[int, ...]
    entries: list[CommitEntry] = field(default_factory=list)


SrpMessage = Token | Mcast | MergeDetect | HoldCancel | Join | CommitToken
