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

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from functools import cache
from itertools import pairwise
from typing import Any

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


# --- Layouts --------------------------------------------------------------------------------
# Each layout is spelled once, as struct format fragments; the encoders pack a whole fixed part
# (header included) in one call, the decoders unpack the body after the already-checked header.

_HEADER_FMT = "HBBBI"
_RING_ID_FMT = "IQ"
_TOKEN_BODY_FMT = _RING_ID_FMT + "IIIIIIBB"
_MCAST_BODY_FMT = _RING_ID_FMT + "IB"
_JOIN_BODY_FMT = "QHH"
_COMMIT_BODY_FMT = _RING_ID_FMT + "IHH"

_HEADER = struct.Struct("!" + _HEADER_FMT)
_PREFIX = struct.Struct("!HB")  # magic and version: enough to name an incompatible release
_TOKEN = struct.Struct("!" + _HEADER_FMT + _TOKEN_BODY_FMT)
_TOKEN_BODY = struct.Struct("!" + _TOKEN_BODY_FMT)
_RTR = struct.Struct("!" + _RING_ID_FMT + "I")
_MCAST = struct.Struct("!" + _HEADER_FMT + _MCAST_BODY_FMT)
_MCAST_BODY = struct.Struct("!" + _MCAST_BODY_FMT)
_RING_ONLY = struct.Struct("!" + _HEADER_FMT + _RING_ID_FMT)
_RING_ONLY_BODY = struct.Struct("!" + _RING_ID_FMT)
_JOIN = struct.Struct("!" + _HEADER_FMT + _JOIN_BODY_FMT)
_JOIN_BODY = struct.Struct("!" + _JOIN_BODY_FMT)
_COMMIT = struct.Struct("!" + _HEADER_FMT + _COMMIT_BODY_FMT)
_COMMIT_BODY = struct.Struct("!" + _COMMIT_BODY_FMT)
_ENTRY = struct.Struct("!" + _RING_ID_FMT + "IIIB")

HEADER_SIZE = _HEADER.size
"""Bytes of the common header (9)."""
TOKEN_SIZE = _TOKEN.size
"""Bytes of a TOKEN without rtr entries (47)."""
RTR_ENTRY_SIZE = _RTR.size
MCAST_HEADER_SIZE = _MCAST.size
"""Bytes in front of an MCAST payload (26); an encapsulated one carries two of them."""
RING_ONLY_SIZE = _RING_ONLY.size
"""Bytes of a MERGE_DETECT or HOLD_CANCEL (21)."""
JOIN_FIXED_SIZE = _JOIN.size
COMMIT_FIXED_SIZE = _COMMIT.size
COMMIT_ENTRY_SIZE = _ENTRY.size

_U32 = 0xFFFFFFFF
_NODEID_SIZE = 4

# Plain ints: packing an IntEnum member goes through __index__ on every call.
_TYPE_TOKEN = int(MessageType.TOKEN)
_TYPE_MCAST = int(MessageType.MCAST)
_TYPE_MERGE_DETECT = int(MessageType.MERGE_DETECT)
_TYPE_JOIN = int(MessageType.JOIN)
_TYPE_COMMIT = int(MessageType.COMMIT)
_TYPE_HOLD_CANCEL = int(MessageType.HOLD_CANCEL)
_TYPES = {int(kind): kind for kind in MessageType}
_GUARANTEES = (Guarantee.AGREED, Guarantee.SAFE)


@cache
def _nodeids(count: int) -> struct.Struct:
    """``count`` u32s; counts are bounded by PROCESSOR_COUNT_MAX before we get here."""
    return struct.Struct(f"!{count}I")


# --- Encoding -------------------------------------------------------------------------------


def encode(message: SrpMessage) -> bytes:
    """The datagram for ``message``, laid out as the module docstring says.

    Sequence numbers, arus, token_seq, backlog and fcc are stored modulo 2**32. The encoder
    trusts the core for the rules a receiver checks (nonzero ids, ordering, duplicates) and
    only refuses, with :class:`SrpWireError`, what cannot be put on the wire at all: counts
    above the limits and values outside their field.
    """
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise TypeError(f"not an SRP message: {type(message).__name__}")
    try:
        return encoder(message)
    except struct.error as exc:
        raise SrpWireError(f"{type(message).__name__} cannot be encoded: {exc}") from None


def encode_mcast(
    sender: int,
    ring_id: RingId,
    seq: int,
    guarantee: Guarantee,
    payload: bytes,
    *,
    encapsulated: bool = False,
) -> bytes:
    """An MCAST datagram straight from its fields, without building an :class:`Mcast`."""
    flags = FLAG_ENCAPSULATED if encapsulated else 0
    try:
        head = _MCAST.pack(
            MAGIC,
            WIRE_VERSION,
            _TYPE_MCAST,
            flags,
            sender,
            ring_id.rep,
            ring_id.seq,
            seq & _U32,
            guarantee,
        )
    except struct.error as exc:
        raise SrpWireError(f"Mcast cannot be encoded: {exc}") from None
    return head + payload


def _encode_token(token: Token) -> bytes:
    rtr = token.rtr
    count = len(rtr)
    if count > RTR_MAX:
        raise SrpWireError(f"TOKEN: {count} rtr entries, at most {RTR_MAX}")
    ring_id = token.ring_id
    head = _TOKEN.pack(
        MAGIC,
        WIRE_VERSION,
        _TYPE_TOKEN,
        0,
        token.sender,
        ring_id.rep,
        ring_id.seq,
        token.token_seq & _U32,
        token.seq & _U32,
        token.aru & _U32,
        token.aru_addr & _U32,
        token.backlog & _U32,
        token.fcc & _U32,
        token.retrans_flg,
        count,
    )
    if not count:
        return head
    pack = _RTR.pack
    return head + b"".join([pack(e.ring_id.rep, e.ring_id.seq, e.seq & _U32) for e in rtr])


def _encode_mcast(mcast: Mcast) -> bytes:
    flags = FLAG_ENCAPSULATED if mcast.encapsulated else 0
    ring_id = mcast.ring_id
    head = _MCAST.pack(
        MAGIC,
        WIRE_VERSION,
        _TYPE_MCAST,
        flags,
        mcast.sender,
        ring_id.rep,
        ring_id.seq,
        mcast.seq & _U32,
        mcast.guarantee,
    )
    return head + mcast.payload


def _encode_merge_detect(message: MergeDetect) -> bytes:
    return _encode_ring_only(_TYPE_MERGE_DETECT, message.sender, message.ring_id)


def _encode_hold_cancel(message: HoldCancel) -> bytes:
    return _encode_ring_only(_TYPE_HOLD_CANCEL, message.sender, message.ring_id)


def _encode_ring_only(kind: int, sender: int, ring_id: RingId) -> bytes:
    return _RING_ONLY.pack(MAGIC, WIRE_VERSION, kind, 0, sender, ring_id.rep, ring_id.seq)


def _encode_join(join: Join) -> bytes:
    proc, failed = join.proc, join.failed
    for name, ids in (("proc", proc), ("failed", failed)):
        if len(ids) > PROCESSOR_COUNT_MAX:
            raise SrpWireError(f"JOIN: {len(ids)} {name} entries, at most {PROCESSOR_COUNT_MAX}")
    flags = FLAG_LEAVE if join.leave else 0
    head = _JOIN.pack(
        MAGIC, WIRE_VERSION, _TYPE_JOIN, flags, join.sender, join.ring_seq, len(proc), len(failed)
    )
    return head + _nodeids(len(proc) + len(failed)).pack(*proc, *failed)


def _encode_commit(commit: CommitToken) -> bytes:
    members, entries = commit.members, commit.entries
    if len(members) > PROCESSOR_COUNT_MAX:
        raise SrpWireError(f"COMMIT: {len(members)} members, at most {PROCESSOR_COUNT_MAX}")
    if len(entries) > len(members):
        raise SrpWireError(f"COMMIT: {len(entries)} entries for {len(members)} members")
    ring_id = commit.ring_id
    head = _COMMIT.pack(
        MAGIC,
        WIRE_VERSION,
        _TYPE_COMMIT,
        0,
        commit.sender,
        ring_id.rep,
        ring_id.seq,
        commit.token_seq & _U32,
        len(members),
        len(entries),
    )
    pack = _ENTRY.pack
    body = [
        pack(
            e.old_ring_id.rep,
            e.old_ring_id.seq,
            e.aru & _U32,
            e.high_delivered & _U32,
            e.safe_seq & _U32,
            e.received,
        )
        for e in entries
    ]
    return b"".join([head, _nodeids(len(members)).pack(*members), *body])


_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    Token: _encode_token,
    Mcast: _encode_mcast,
    MergeDetect: _encode_merge_detect,
    HoldCancel: _encode_hold_cancel,
    Join: _encode_join,
    CommitToken: _encode_commit,
}


# --- Decoding -------------------------------------------------------------------------------
# Every decoder checks a count against its limit before it computes a length from it, and the
# length before it unpacks, so no input can make us allocate or read past the datagram.

Datagram = bytes | memoryview


def peek_type(data: Datagram) -> MessageType | None:
    """The type of a datagram with a valid header of our version, else ``None``.

    Only the header is looked at; :func:`decode` still has to validate the rest.
    """
    if len(data) < HEADER_SIZE:
        return None
    magic, version, kind, _flags, _sender = _HEADER.unpack_from(data)
    if magic != MAGIC or version != WIRE_VERSION:
        return None
    return _TYPES.get(kind)


def plain_mcast_fields(data: Datagram) -> tuple[int, int, int, int, Guarantee] | None:
    """``(sender, ring rep, ring seq, seq, guarantee)`` of a valid, plain MCAST, else None.

    The receive fast path: one unpack and the checks :func:`decode` would make of a
    non-encapsulated MCAST (whose payload is opaque). ``None`` sends the datagram down the full
    :func:`decode`, which says what is wrong with it.
    """
    if len(data) < MCAST_HEADER_SIZE:
        return None
    magic, version, kind, flags, sender, rep, ring_seq, seq, guarantee = _MCAST.unpack_from(data)
    if (
        magic != MAGIC
        or version != WIRE_VERSION
        or kind != _TYPE_MCAST
        or flags
        or not sender
        or not rep
        or guarantee > 1
    ):
        return None
    return sender, rep, ring_seq, seq, _GUARANTEES[guarantee]


def decode(data: Datagram) -> SrpMessage:
    """The message in ``data``, validated completely; raise :class:`SrpWireError` if invalid.

    u32 fields come back raw (0..2**32-1): :func:`unwrap` them against a nearby reference.
    An encapsulated MCAST is returned with its payload as bytes, but only once that payload has
    been checked to be a valid, non-encapsulated MCAST (see :func:`decode_inner_mcast`).
    """
    kind, flags, sender = _decode_header(data)
    return _DECODERS[kind](data, len(data), flags, sender)


def decode_inner_mcast(payload: Datagram) -> Mcast:
    """The MCAST carried by an encapsulated MCAST; it must not be encapsulated itself."""
    kind, flags, sender = _decode_header(payload)
    if kind != _TYPE_MCAST:
        raise SrpWireError(f"encapsulated message is a {_TYPES[kind].name}, not an MCAST")
    if flags:
        # Checked here, before decoding, so nested payloads cannot make us recurse.
        raise SrpWireError("encapsulated MCAST is itself encapsulated")
    return _decode_mcast(payload, len(payload), 0, sender)


def _decode_header(data: Datagram) -> tuple[int, int, int]:
    """Type, flags and sender of a header that is valid for its type."""
    size = len(data)
    if size < HEADER_SIZE:
        if size >= _PREFIX.size:
            _check_prefix(*_PREFIX.unpack_from(data))
        raise SrpWireError(f"{size}-byte datagram, shorter than the {HEADER_SIZE}-byte header")
    magic, version, kind, flags, sender = _HEADER.unpack_from(data)
    _check_prefix(magic, version)
    allowed = _ALLOWED_FLAGS.get(kind)
    if allowed is None:
        raise SrpWireError(f"unknown message type {kind}")
    if flags & ~allowed:
        raise SrpWireError(f"{_TYPES[kind].name}: unknown flags {flags:#04x}")
    if sender == 0:
        raise SrpWireError(f"{_TYPES[kind].name}: sender nodeid 0")
    return kind, flags, sender


def _check_prefix(magic: int, version: int) -> None:
    if magic != MAGIC:
        raise SrpWireError(f"bad magic {magic:#06x}, not a Totem SRP datagram")
    if version != WIRE_VERSION:
        raise WireVersionError(version)


# Building a frozen RingId costs more than unpacking a whole token, and a node meets only a few
# ring ids at a time: decoders share the (immutable) instances. This memo is not protocol state
# (a hit and a miss give equal values), and it is bounded, so junk datagrams cannot grow it.
_RING_IDS: dict[tuple[int, int], RingId] = {}
_RING_IDS_MAX = 64


def _ring_id(what: str, rep: int, seq: int) -> RingId:
    ring_id = _RING_IDS.get((rep, seq))
    if ring_id is None:
        if rep == 0:
            raise SrpWireError(f"{what}: ring id with representative 0")
        if len(_RING_IDS) >= _RING_IDS_MAX:
            _RING_IDS.clear()
        ring_id = _RING_IDS[rep, seq] = RingId(seq=seq, rep=rep)
    return ring_id


def _fixed_part(what: str, size: int, fixed: int) -> None:
    if size < fixed:
        raise SrpWireError(f"{what}: {size} bytes, shorter than its {fixed}-byte fixed part")


def _exact_size(what: str, size: int, need: int, counted: str) -> None:
    if size != need:
        raise SrpWireError(f"{what}: {counted} need {need} bytes, got {size}")


def _flag(what: str, name: str, value: int) -> bool:
    if value > 1:
        raise SrpWireError(f"{what}: {name} is {value}, not 0 or 1")
    return value == 1


def _decode_token(data: Datagram, size: int, flags: int, sender: int) -> Token:
    _fixed_part("TOKEN", size, TOKEN_SIZE)
    rep, ring_seq, token_seq, seq, aru, aru_addr, backlog, fcc, retrans, count = (
        _TOKEN_BODY.unpack_from(data, HEADER_SIZE)
    )
    ring_id = _ring_id("TOKEN", rep, ring_seq)
    retrans_flg = _flag("TOKEN", "retrans_flg", retrans)
    if count > RTR_MAX:
        raise SrpWireError(f"TOKEN: {count} rtr entries, at most {RTR_MAX}")
    _exact_size("TOKEN", size, TOKEN_SIZE + count * RTR_ENTRY_SIZE, f"{count} rtr entries")
    rtr = _decode_rtr(data, size) if count else []
    return Token(
        sender=sender,
        ring_id=ring_id,
        token_seq=token_seq,
        seq=seq,
        aru=aru,
        aru_addr=aru_addr,
        backlog=backlog,
        fcc=fcc,
        retrans_flg=retrans_flg,
        rtr=rtr,
    )


def _decode_rtr(data: Datagram, size: int) -> list[RtrEntry]:
    rtr = []
    for offset in range(TOKEN_SIZE, size, RTR_ENTRY_SIZE):
        rep, ring_seq, seq = _RTR.unpack_from(data, offset)
        rtr.append(RtrEntry(ring_id=_ring_id("TOKEN rtr entry", rep, ring_seq), seq=seq))
    return rtr


def _decode_mcast(data: Datagram, size: int, flags: int, sender: int) -> Mcast:
    _fixed_part("MCAST", size, MCAST_HEADER_SIZE)
    rep, ring_seq, seq, guarantee = _MCAST_BODY.unpack_from(data, HEADER_SIZE)
    ring_id = _ring_id("MCAST", rep, ring_seq)
    if guarantee > 1:
        raise SrpWireError(f"MCAST: guarantee {guarantee}, not 0 (agreed) or 1 (safe)")
    payload = bytes(data[MCAST_HEADER_SIZE:])
    encapsulated = bool(flags & FLAG_ENCAPSULATED)
    if encapsulated:
        try:
            decode_inner_mcast(payload)
        except SrpWireError as exc:
            raise SrpWireError(f"MCAST: bad encapsulated message: {exc}") from None
    return Mcast(
        sender=sender,
        ring_id=ring_id,
        seq=seq,
        guarantee=_GUARANTEES[guarantee],
        payload=payload,
        encapsulated=encapsulated,
    )


def _decode_ring_only(what: str, data: Datagram, size: int) -> RingId:
    _exact_size(what, size, RING_ONLY_SIZE, "a ring id")
    return _ring_id(what, *_RING_ONLY_BODY.unpack_from(data, HEADER_SIZE))


def _decode_merge_detect(data: Datagram, size: int, flags: int, sender: int) -> MergeDetect:
    return MergeDetect(sender=sender, ring_id=_decode_ring_only("MERGE_DETECT", data, size))


def _decode_hold_cancel(data: Datagram, size: int, flags: int, sender: int) -> HoldCancel:
    return HoldCancel(sender=sender, ring_id=_decode_ring_only("HOLD_CANCEL", data, size))


def _check_count(what: str, name: str, count: int) -> None:
    if count > PROCESSOR_COUNT_MAX:
        raise SrpWireError(f"{what}: {count} {name}, at most {PROCESSOR_COUNT_MAX}")


def _distinct_nodeids(what: str, name: str, ids: tuple[int, ...]) -> None:
    if 0 in ids:
        raise SrpWireError(f"{what}: nodeid 0 in {name}")
    if len(set(ids)) != len(ids):
        raise SrpWireError(f"{what}: duplicate nodeid in {name}")


def _decode_join(data: Datagram, size: int, flags: int, sender: int) -> Join:
    _fixed_part("JOIN", size, JOIN_FIXED_SIZE)
    ring_seq, proc_count, failed_count = _JOIN_BODY.unpack_from(data, HEADER_SIZE)
    _check_count("JOIN", "proc entries", proc_count)
    _check_count("JOIN", "failed entries", failed_count)
    need = JOIN_FIXED_SIZE + (proc_count + failed_count) * _NODEID_SIZE
    _exact_size("JOIN", size, need, f"{proc_count} proc and {failed_count} failed entries")
    ids: tuple[int, ...] = _nodeids(proc_count + failed_count).unpack_from(data, JOIN_FIXED_SIZE)
    proc, failed = ids[:proc_count], ids[proc_count:]
    _distinct_nodeids("JOIN", "proc", proc)
    _distinct_nodeids("JOIN", "failed", failed)
    leave = bool(flags & FLAG_LEAVE)
    if leave:
        # A leaver names itself as the last failed processor, and never as a live one.
        if not failed or failed[-1] != sender:
            raise SrpWireError(f"JOIN: leaving sender {sender} is not the last failed entry")
        if sender in proc:
            raise SrpWireError(f"JOIN: leaving sender {sender} is in proc")
    return Join(sender=sender, ring_seq=ring_seq, proc=proc, failed=failed, leave=leave)


def _decode_commit(data: Datagram, size: int, flags: int, sender: int) -> CommitToken:
    _fixed_part("COMMIT", size, COMMIT_FIXED_SIZE)
    rep, ring_seq, token_seq, member_count, entry_count = _COMMIT_BODY.unpack_from(
        data, HEADER_SIZE
    )
    ring_id = _ring_id("COMMIT", rep, ring_seq)
    _check_count("COMMIT", "members", member_count)
    if entry_count > member_count:
        raise SrpWireError(f"COMMIT: {entry_count} entries for {member_count} members")
    entries_offset = COMMIT_FIXED_SIZE + member_count * _NODEID_SIZE
    need = entries_offset + entry_count * COMMIT_ENTRY_SIZE
    _exact_size("COMMIT", size, need, f"{member_count} members and {entry_count} entries")
    members: tuple[int, ...] = _nodeids(member_count).unpack_from(data, COMMIT_FIXED_SIZE)
    if members and members[0] == 0:  # strictly ascending: only the first can be 0
        raise SrpWireError("COMMIT: member nodeid 0")
    if any(a >= b for a, b in pairwise(members)):
        raise SrpWireError("COMMIT: members not strictly ascending")
    entries = []
    for offset in range(entries_offset, size, COMMIT_ENTRY_SIZE):
        old_rep, old_seq, aru, high_delivered, safe_seq, received = _ENTRY.unpack_from(data, offset)
        entries.append(
            CommitEntry(
                # Any old ring id: a processor with no previous ring sends a zero one.
                old_ring_id=RingId(seq=old_seq, rep=old_rep),
                aru=aru,
                high_delivered=high_delivered,
                safe_seq=safe_seq,
                received=_flag("COMMIT entry", "received_flg", received),
            )
        )
    return CommitToken(
        sender=sender, ring_id=ring_id, token_seq=token_seq, members=members, entries=entries
    )


_DECODERS: dict[int, Callable[[Datagram, int, int, int], SrpMessage]] = {
    _TYPE_TOKEN: _decode_token,
    _TYPE_MCAST: _decode_mcast,
    _TYPE_MERGE_DETECT: _decode_merge_detect,
    _TYPE_JOIN: _decode_join,
    _TYPE_COMMIT: _decode_commit,
    _TYPE_HOLD_CANCEL: _decode_hold_cancel,
}
_ALLOWED_FLAGS = {
    _TYPE_TOKEN: 0,
    _TYPE_MCAST: FLAG_ENCAPSULATED,
    _TYPE_MERGE_DETECT: 0,
    _TYPE_JOIN: FLAG_LEAVE,
    _TYPE_COMMIT: 0,
    _TYPE_HOLD_CANCEL: 0,
}
