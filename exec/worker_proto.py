"""The records that travel between the Totem process and a worker over their shared-memory rings.

Theory of operation
-------------------
Each record is one msgpack array ``[tag, stamp, field, ...]``. The tag names the record type
(:class:`Tag`); the fields are positional and typed per tag.

*Totem → worker* records carry a **stamp**: one counter per worker, incremented for every
record, whichever lane (SYNC or APP) it is written to. The lanes exist so that sync steps find
room when application deliveries fill the ring, but the worker must still apply records in
the order the Totem process produced them (a configuration change may never overtake a message
of the old configuration), so it applies them strictly by stamp and holds a record whose
predecessors sit unread in the other lane (:class:`StampOrder`). *Worker → Totem* records
carry stamp 0: there the SYNC lane really does go first.

Decoding trusts nothing: the other side is another process. Any malformed record raises
:class:`WorkerProtoError`; the supervisor treats that as a crashed worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack

from pycorosync.exec.totem.events import ConfigKind, Guarantee, RingId
from pycorosync.lib.errors import CsErrorCode, MessageError
from pycorosync.lib.packing import pack

__all__ = [
    "CmapChanges",
    "CmapResult",
    "CmapWriteRequest",
    "ConfChg",
    "Deliver",
    "Init",
    "McastRequest",
    "Quorum",
    "Ready",
    "Record",
    "Shutdown",
    "StampOrder",
    "Stats",
    "SyncDone",
    "SyncStep",
    "SyncStepKind",
    "Tag",
    "Unloaded",
    "WorkerProtoError",
    "decode",
    "encode",
]


class WorkerProtoError(MessageError):
    """A record between the Totem process and a worker is malformed."""


class Tag(IntEnum):
    INIT = 1
    DELIVER = 2
    CONFCHG = 3
    SYNC_STEP = 4
    CMAP_CHANGES = 5
    CMAP_RESULT = 6
    QUORUM = 7
    SHUTDOWN = 8
    STATS = 9
    MCAST = 20
    CMAP_WRITE = 21
    SYNC_DONE = 22
    READY = 23
    UNLOADED = 24


class SyncStepKind(IntEnum):
    INIT = 1
    PROCESS = 2
    ACTIVATE = 3
    ABORT = 4
    COMPLETE = 5
    """The round finished on every member: client traffic flows again."""


# --- Totem → worker ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Init:
    """First record: who this node is, and the cmap snapshot the replica starts from."""

    nodeid: int
    snapshot: bytes
    """An encoded :class:`~pycorosync.exec.icmap_records.CmapSnapshot`."""


@dataclass(frozen=True, slots=True)
class Deliver:
    """Messages for this worker's engines, in the ring's agreed (or safe) order: what one
    Totem frame from ``sender`` brought, as ``(service, function, payload)`` each.

    One record a frame rather than a message: a 64 KiB frame packs dozens of messages, and a
    record costs an encode, a ring write and a decode whatever its size."""

    sender: int
    guarantee: Guarantee
    messages: tuple[tuple[int, int, bytes], ...]


@dataclass(frozen=True, slots=True)
class ConfChg:
    kind: ConfigKind
    members: tuple[int, ...]
    left: tuple[int, ...]
    joined: tuple[int, ...]
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class SyncStep:
    """One step of a sync round. ``service`` is -1 for INIT and COMPLETE (every engine);
    ``transitional`` and ``members`` are filled for INIT only."""

    kind: SyncStepKind
    service: int
    ring_id: RingId
    transitional: tuple[int, ...] = ()
    members: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class CmapChanges:
    changes: tuple[bytes, ...]
    """Encoded :class:`~pycorosync.exec.icmap_records.CmapChange` records, in store order."""


@dataclass(frozen=True, slots=True)
class CmapResult:
    request: int
    """The id the worker gave the write."""
    error: CsErrorCode


@dataclass(frozen=True, slots=True)
class Quorum:
    quorate: bool


@dataclass(frozen=True, slots=True)
class Stats:
    """The Totem process's figures for the stats map, sent every second: ``(key, count)``."""

    figures: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Unload every engine (reverse priority) and answer :class:`Unloaded`."""


# --- worker → Totem ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class McastRequest:
    """Engine messages to multicast, in order, as ``(service, function, guarantee, payload)``
    each: an engine asks for one, and the worker packs the requests of one loop turn into
    one record (:class:`~pycorosync.exec.worker.Worker`), as the Totem process packs
    deliveries."""

    sync: bool
    """Multicast on the SYNC lane (an engine's sync traffic)."""
    messages: tuple[tuple[int, int, Guarantee, bytes], ...]


@dataclass(frozen=True, slots=True)
class CmapWriteRequest:
    write: bytes
    """An encoded :class:`~pycorosync.exec.cmap_owner_wire.WriteRequest`: the write and the
    worker's id for it, which comes back in :class:`CmapResult`."""


@dataclass(frozen=True, slots=True)
class SyncDone:
    service: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class Ready:
    """Every engine ran ``exec_init``; ``services`` are the ids the worker hosts."""

    services: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Unloaded:
    """Every engine ran ``exec_exit``; the worker is about to exit."""


Record = (
    Init
    | Deliver
    | ConfChg
    | SyncStep
    | CmapChanges
    | CmapResult
    | Quorum
    | Stats
    | Shutdown
    | McastRequest
    | CmapWriteRequest
    | SyncDone
    | Ready
    | Unloaded
)


# --- encoding ---------------------------------------------------------------------------------


def encode(record: Record, stamp: int = 0) -> bytes:
    fields = _fields(record)
    fields.insert(1, stamp)
    return pack(fields)


def _fields(record: Record) -> list[Any]:
    match record:
        case Deliver(sender, guarantee, messages):
            # flat [service, function, payload, ...]: no array per message to build or check
            return [Tag.DELIVER, sender, int(guarantee), [x for m in messages for x in m]]
        case McastRequest(sync, messages):
            return [Tag.MCAST, sync, [x for m in messages for x in m]]
        case ConfChg(kind, members, left, joined, ring_id):
            return [Tag.CONFCHG, int(kind), members, left, joined, tuple(ring_id)]
        case SyncStep(kind, service, ring_id, transitional, members):
            return [Tag.SYNC_STEP, int(kind), service, tuple(ring_id), transitional, members]
        case SyncDone(service, ring_id):
            return [Tag.SYNC_DONE, service, tuple(ring_id)]
        case Init(nodeid, snapshot):
            return [Tag.INIT, nodeid, snapshot]
        case CmapChanges(changes):
            return [Tag.CMAP_CHANGES, changes]
        case CmapResult(request, error):
            return [Tag.CMAP_RESULT, request, int(error)]
        case CmapWriteRequest(write):
            return [Tag.CMAP_WRITE, write]
        case Quorum(quorate):
            return [Tag.QUORUM, quorate]
        case Stats(figures):
            return [Tag.STATS, figures]
        case Ready(services):
            return [Tag.READY, services]
        case Shutdown():
            return [Tag.SHUTDOWN]
        case Unloaded():
            return [Tag.UNLOADED]
    raise TypeError(f"not a worker record: {record!r}")


def decode(data: bytes | memoryview) -> tuple[int, Record]:
    """``(stamp, record)``; :class:`WorkerProtoError` for anything malformed."""
    try:
        fields = msgpack.unpackb(data, use_list=True, strict_map_key=True)
    except Exception as error:  # msgpack raises several unrelated types for garbage
        raise WorkerProtoError(f"undecodable worker record: {error}") from None
    if not isinstance(fields, list) or len(fields) < 2:
        raise WorkerProtoError("a worker record is an array of at least tag and stamp")
    tag, stamp, *rest = fields
    _check_int(stamp, "stamp", 0, (1 << 64) - 1)
    try:
        builder = _BUILDERS[Tag(tag)]
    except (ValueError, TypeError):
        raise WorkerProtoError(f"unknown worker record tag {tag!r}") from None
    try:
        return stamp, builder(*rest)
    except TypeError:
        raise WorkerProtoError(f"wrong field count for a {Tag(tag).name} record") from None


# --- decoding helpers -------------------------------------------------------------------------


def _check_int(value: object, what: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise WorkerProtoError(f"{what} {value!r} is not an integer in {low}..{high}")
    return value


def _u16(value: object, what: str) -> int:
    return _check_int(value, what, 0, 0xFFFF)


def _u32(value: object, what: str) -> int:
    return _check_int(value, what, 0, 0xFFFFFFFF)


def _bytes(value: object, what: str) -> bytes:
    if not isinstance(value, bytes):
        raise WorkerProtoError(f"{what} is not bytes")
    return value


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise WorkerProtoError(f"{what} is not a boolean")
    return value


def _nodeids(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise WorkerProtoError(f"{what} is not a list of nodeids")
    return tuple(_u32(item, what) for item in value)


def _ring(value: object) -> RingId:
    if not isinstance(value, list) or len(value) != 2:
        raise WorkerProtoError("a ring id is [seq, rep]")
    return RingId(_check_int(value[0], "ring seq", 0, (1 << 64) - 1), _u32(value[1], "ring rep"))


def _enum(kind: type[IntEnum], value: object, what: str) -> Any:
    if type(value) is not int:
        raise WorkerProtoError(f"bad {what} {value!r}")
    try:
        return kind(value)
    except (ValueError, TypeError):
        raise WorkerProtoError(f"bad {what} {value!r}") from None


def _engine_columns(flat: object, fields: str, noun: str) -> list[list[Any]]:
    """The columns of a flat array of engine messages (``fields`` wide, service and function
    first, payload last), with those three checked."""
    width = fields.count(",") + 1
    if not isinstance(flat, list) or len(flat) % width:
        raise WorkerProtoError(f"{noun} messages are a flat array of ({fields})")
    columns = [flat[index::width] for index in range(width)]
    if not all(type(n) is int and 0 <= n <= 0xFFFF for n in columns[0] + columns[1]):
        raise WorkerProtoError(f"a {noun} message's service or function is not a u16")
    if not all(type(p) is bytes for p in columns[-1]):
        raise WorkerProtoError(f"a {noun} message's payload is not bytes")
    return columns


def _deliver(sender: object, g: object, flat: object) -> Deliver:
    services, functions, payloads = _engine_columns(flat, "service, function, payload", "delivered")
    return Deliver(
        _u32(sender, "sender"),
        _enum(Guarantee, g, "guarantee"),
        tuple(zip(services, functions, payloads, strict=True)),
    )


_GUARANTEES: dict[object, Guarantee] = {int(g): g for g in Guarantee}
"""A dict lookup per multicast rather than an enum call."""


def _mcast(sync: object, flat: object) -> McastRequest:
    fields = "service, function, guarantee, payload"
    services, functions, guarantees, payloads = _engine_columns(flat, fields, "multicast")
    try:
        checked = [_GUARANTEES[g] for g in guarantees if type(g) is int]
    except KeyError:
        checked = []
    if len(checked) != len(guarantees):
        bad = next(g for g in guarantees if type(g) is not int or g not in _GUARANTEES)
        raise WorkerProtoError(f"bad guarantee {bad!r}")
    messages = tuple(zip(services, functions, checked, payloads, strict=True))
    return McastRequest(_bool(sync, "sync"), messages)


def _confchg(kind: object, members: object, left: object, joined: object, ring: object) -> ConfChg:
    return ConfChg(
        _enum(ConfigKind, kind, "configuration kind"),
        _nodeids(members, "members"),
        _nodeids(left, "left"),
        _nodeids(joined, "joined"),
        _ring(ring),
    )


def _sync_step(
    kind: object, service: object, ring: object, trans: object, memb: object
) -> SyncStep:
    step_kind = _enum(SyncStepKind, kind, "sync step")
    low = -1 if step_kind in (SyncStepKind.INIT, SyncStepKind.COMPLETE) else 0
    return SyncStep(
        step_kind,
        _check_int(service, "service", low, 0xFFFF),
        _ring(ring),
        _nodeids(trans, "transitional members"),
        _nodeids(memb, "members"),
    )


def _cmap_changes(changes: object) -> CmapChanges:
    if not isinstance(changes, list):
        raise WorkerProtoError("cmap changes are a list")
    return CmapChanges(tuple(_bytes(change, "cmap change") for change in changes))


def _stats(figures: object) -> Stats:
    if not isinstance(figures, list):
        raise WorkerProtoError("stats are a list of [key, count]")
    out = []
    for item in figures:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            raise WorkerProtoError(f"a stats figure is [key, count], not {item!r}")
        out.append((item[0], _check_int(item[1], item[0], 0, (1 << 64) - 1)))
    return Stats(tuple(out))


def _ready(services: object) -> Ready:
    if not isinstance(services, list):
        raise WorkerProtoError("ready lists the hosted service ids")
    return Ready(tuple(_u16(service, "service") for service in services))


_BUILDERS: dict[Tag, Any] = {
    Tag.INIT: lambda nodeid, snapshot: Init(_u32(nodeid, "nodeid"), _bytes(snapshot, "snapshot")),
    Tag.DELIVER: _deliver,
    Tag.CONFCHG: _confchg,
    Tag.SYNC_STEP: _sync_step,
    Tag.CMAP_CHANGES: _cmap_changes,
    Tag.CMAP_RESULT: lambda request, error: CmapResult(
        _check_int(request, "request", 0, (1 << 64) - 1), _enum(CsErrorCode, error, "error code")
    ),
    Tag.QUORUM: lambda quorate: Quorum(_bool(quorate, "quorate")),
    Tag.STATS: _stats,
    Tag.SHUTDOWN: Shutdown,
    Tag.MCAST: _mcast,
    Tag.CMAP_WRITE: lambda write: CmapWriteRequest(_bytes(write, "write")),
    Tag.SYNC_DONE: lambda service, ring: SyncDone(_u16(service, "service"), _ring(ring)),
    Tag.READY: _ready,
    Tag.UNLOADED: Unloaded,
}


# --- ordering across lanes --------------------------------------------------------------------


class StampOrder:
    """Releases Totem → worker records strictly in stamp order, whichever lane they came from.

    Stamps are consecutive from 1. A record ahead of a gap waits here; the gap's record is
    already in the ring (the Totem process wrote it first), so the next read fills it. Memory
    is bounded by what the two rings hold.
    """

    def __init__(self) -> None:
        self._next = 1
        self._held: dict[int, Record] = {}

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, stamp: int, record: Record) -> list[Record]:
        """Add one record; return every record that is now in order."""
        if stamp < self._next or stamp in self._held:
            raise WorkerProtoError(f"record stamp {stamp} repeated (next is {self._next})")
        if stamp != self._next:
            self._held[stamp] = record
            return []
        out = [record]
        self._next += 1
        while self._next in self._held:
            out.append(self._held.pop(self._next))
            self._next += 1
        return out
