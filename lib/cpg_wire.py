"""The CPG protocol: types, message ids and msgpack bodies, shared by the engine and libcpg.

Theory of operation
-------------------
Two protocols meet here. The *client* protocol runs over one IPC connection between a
process and the CPG engine of its node; its message ids are Corosync's (``ipc_cpg.h``): the
requests ``JOIN`` = 0 ... ``FINALIZE`` = 8 are answered with the request's own id (our IPC
layer matches replies by id), ``MCAST`` = 2 is one-way and never answered, and the engine's
unsolicited notifications use Corosync's dispatch ids (``CONFCHG_CALLBACK`` = 4,
``DELIVER_CALLBACK`` = 5, ``FLOW_CONTROL_STATE_SET`` = 6, ``TOTEM_CONFCHG_CALLBACK`` = 13);
unlike Corosync's, one DELIVER_CALLBACK may carry several messages of its group, in order.
The *executive* protocol is what the engines multicast to each other through Totem, with
Corosync's function ids (``PROCJOIN`` = 0, ``PROCLEAVE`` = 1, ``JOINLIST`` = 2, ``MCAST`` = 3,
``DOWNLIST`` = 5).

Every body is a msgpack array; group names are *binary* (``bytes``, at most 128 of them, a NUL
is an ordinary byte) and compared byte for byte, as Corosync compares length and memcmp.
The frame header (length, id, error) belongs to the IPC layer or to totempg.

Decoding trusts nothing - a peer or a client may be hostile: a body of the wrong shape, a
field of the wrong type or out of range raises :class:`CpgWireError`
(``CS_ERR_MESSAGE_ERROR``); a group name that is too long raises ``CS_ERR_NAME_TOO_LONG``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Final, NamedTuple, TypeVar

import msgpack

from pycorosync.lib.errors import MessageError, NameTooLongError
from pycorosync.lib.packing import pack as _pack

__all__ = [
    "CPG_MAX_NAME_LENGTH",
    "CPG_MEMBERS_MAX",
    "DELIVER_CALLBACK_ID",
    "MAX_ATOMIC_MSG_SIZE",
    "MODEL_V1",
    "MODEL_V1_DELIVER_INITIAL_TOTEM_CONF",
    "ConfChgBody",
    "CpgAddress",
    "CpgExecId",
    "CpgGuarantee",
    "CpgReason",
    "CpgRequestId",
    "CpgResponseId",
    "CpgRingId",
    "CpgWireError",
    "DeliverBody",
    "FlowControlBody",
    "FlowControlState",
    "FragmentType",
    "IterationDescription",
    "IterationType",
    "JoinList",
    "PartialBody",
    "TotemConfChgBody",
    "check_group",
]

CPG_MAX_NAME_LENGTH: Final = 128
"""Longest group name in bytes (``CPG_MAX_NAME_LENGTH``)."""
CPG_MEMBERS_MAX: Final = 128
MAX_ATOMIC_MSG_SIZE: Final = 1024 * 1024 - 1024
"""``cpg_max_atomic_msgsize_get``: 1 MiB less 1024 bytes, a client-side constant."""
MODEL_V1: Final = 1
MODEL_V1_DELIVER_INITIAL_TOTEM_CONF: Final = 0x01
"""The only model flag: one totem confchg right after the handle's first CPG confchg."""

_E = TypeVar("_E", bound=IntEnum)
_U32 = (0, (1 << 32) - 1)
_BUFFERS = (bytes, bytearray, memoryview)
"""What decodes; a tuple made once (``bytes | bytearray | memoryview`` is built per call)."""
_U64 = (0, (1 << 64) - 1)


class CpgRequestId(IntEnum):
    JOIN = 0
    LEAVE = 1
    MCAST = 2
    MEMBERSHIP = 3
    LOCAL_GET = 4
    ITERATION_INITIALIZE = 5
    ITERATION_NEXT = 6
    ITERATION_FINALIZE = 7
    FINALIZE = 8
    PARTIAL_MCAST = 12


class CpgResponseId(IntEnum):
    """Dispatch ids of the notifications (replies reuse the request's id)."""

    CONFCHG_CALLBACK = 4
    DELIVER_CALLBACK = 5
    FLOW_CONTROL_STATE_SET = 6
    TOTEM_CONFCHG_CALLBACK = 13
    PARTIAL_DELIVER_CALLBACK = 17


DELIVER_CALLBACK_ID: Final = int(CpgResponseId.DELIVER_CALLBACK)
"""DELIVER_CALLBACK as a plain int, for the per-message paths (an enum member costs a lookup)."""


class CpgExecId(IntEnum):
    PROCJOIN = 0
    PROCLEAVE = 1
    JOINLIST = 2
    MCAST = 3
    DOWNLIST = 5
    PARTIAL_MCAST = 6


class FragmentType(IntEnum):
    """Where a fragment of a message over :data:`MAX_ATOMIC_MSG_SIZE` sits in it."""

    FIRST = 1
    CONTINUED = 2
    LAST = 3


class CpgGuarantee(IntEnum):
    """``cpg_guarantee_t``; every CPG multicast is AGREED on the ring whatever is asked."""

    UNORDERED = 0
    FIFO = 1
    AGREED = 2
    SAFE = 3


class CpgReason(IntEnum):
    UNDEFINED = 0
    JOIN = 1
    LEAVE = 2
    NODEDOWN = 3
    NODEUP = 4
    PROCDOWN = 5


class FlowControlState(IntEnum):
    DISABLED = 0
    ENABLED = 1


class IterationType(IntEnum):
    NAME_ONLY = 1
    ONE_GROUP = 2
    ALL = 3


class CpgAddress(NamedTuple):
    """``struct cpg_address``."""

    nodeid: int
    pid: int
    reason: CpgReason = CpgReason.UNDEFINED


class CpgRingId(NamedTuple):
    """``struct cpg_ring_id``: the ring representative and the ring's sequence number."""

    nodeid: int
    seq: int


class IterationDescription(NamedTuple):
    """``cpg_iteration_description_t``; NAME_ONLY entries have nodeid and pid 0."""

    group: bytes
    nodeid: int
    pid: int


class CpgWireError(MessageError):
    """A CPG message body is malformed."""


@dataclass(frozen=True, slots=True)
class ConfChgBody:
    group: bytes
    members: tuple[CpgAddress, ...]
    left: tuple[CpgAddress, ...]
    joined: tuple[CpgAddress, ...]


@dataclass(frozen=True, slots=True)
class DeliverBody:
    group: bytes
    nodeid: int
    pid: int
    message: bytes


@dataclass(frozen=True, slots=True)
class PartialBody:
    """One fragment of a large message as a receiver gets it (PARTIAL_DELIVER_CALLBACK):
    ``total`` is the whole message's length, given in every fragment."""

    group: bytes
    nodeid: int
    pid: int
    total: int
    kind: FragmentType
    fragment: bytes


@dataclass(frozen=True, slots=True)
class TotemConfChgBody:
    ring_id: CpgRingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FlowControlBody:
    state: FlowControlState
    dropped: int
    """Multicasts this connection sent past flow control that the engine had to drop."""


def check_group(group: bytes) -> bytes:
    """A valid group name, or NAME_TOO_LONG / MESSAGE_ERROR."""
    if not isinstance(group, bytes):
        raise CpgWireError(f"a group name must be bytes, not {type(group).__name__}")
    if len(group) > CPG_MAX_NAME_LENGTH:
        raise NameTooLongError(f"group name of {len(group)} bytes over {CPG_MAX_NAME_LENGTH}")
    return group


# Client requests --------------------------------------------------------------------------


def encode_join(group: bytes, pid: int, flags: int) -> bytes:
    return pack([group, pid, flags])


def decode_join(data: bytes) -> tuple[bytes, int, int]:
    group, pid, flags = unpack(data, 3, "join request")
    return check_group(group), _int(pid, "pid", _U32), _int(flags, "flags", _U32)


def encode_leave(group: bytes, pid: int) -> bytes:
    return pack([group, pid])


def decode_leave(data: bytes) -> tuple[bytes, int]:
    group, pid = unpack(data, 2, "leave request")
    return check_group(group), _int(pid, "pid", _U32)


def encode_mcast(guarantee: int, message: bytes) -> bytes:
    return pack([guarantee, message])


def decode_mcast(data: bytes) -> tuple[int, bytes]:
    fields = _unpack_any(data, "mcast request")
    if type(fields) is list and len(fields) == 2:  # the sender's hot path: checks inline
        guarantee, message = fields
        if type(guarantee) is int and 0 <= guarantee <= _U32[1] and type(message) is bytes:
            return guarantee, message
    guarantee, message = _sized(fields, 2, "mcast request")  # raises the precise reason
    return _int(guarantee, "guarantee", _U32), _bytes(message, "message")


def encode_partial_mcast(guarantee: int, total: int, kind: FragmentType, fragment: bytes) -> bytes:
    """PARTIAL_MCAST: ``[guarantee, total, kind, fragment]`` (a request: it is answered)."""
    return pack([guarantee, total, int(kind), fragment])


def decode_partial_mcast(data: bytes) -> tuple[int, int, FragmentType, bytes]:
    guarantee, total, kind, fragment = unpack(data, 4, "partial mcast request")
    return (
        _int(guarantee, "guarantee", _U32),
        _int(total, "total", _U64),
        _enum(FragmentType, kind, "fragment type"),
        _bytes(fragment, "fragment"),
    )


def encode_group(group: bytes) -> bytes:
    """The MEMBERSHIP request."""
    return pack([group])


def decode_group(data: bytes) -> bytes:
    (group,) = unpack(data, 1, "membership request")
    return check_group(group)


def encode_iteration_init(iteration_type: int, group: bytes | None) -> bytes:
    return pack([iteration_type, group])


def decode_iteration_init(data: bytes) -> tuple[int, bytes | None]:
    iteration_type, group = unpack(data, 2, "iteration request")
    return _int(iteration_type, "type", _U32), None if group is None else check_group(group)


def encode_handle(handle: int) -> bytes:
    return pack([handle])


def decode_handle(data: bytes) -> int:
    (handle,) = unpack(data, 1, "handle")
    return _int(handle, "handle", _U64)


def encode_empty() -> bytes:
    return pack([])


def decode_empty(data: bytes) -> None:
    unpack(data, 0, "empty body")


# Replies ----------------------------------------------------------------------------------


def encode_members(members: Sequence[tuple[int, int]]) -> bytes:
    """The MEMBERSHIP reply: ``[[nodeid, pid], ...]``."""
    return pack([[nodeid, pid] for nodeid, pid in members])


def decode_members(data: bytes) -> list[CpgAddress]:
    rows = _array(_unpack_any(data, "membership reply"), "members")
    return [CpgAddress(*_pair(row)) for row in rows]


def encode_nodeid(nodeid: int) -> bytes:
    return pack([nodeid])


def decode_nodeid(data: bytes) -> int:
    (nodeid,) = unpack(data, 1, "local_get reply")
    return _int(nodeid, "nodeid", _U32)


def encode_description(entry: IterationDescription) -> bytes:
    return pack([entry.group, entry.nodeid, entry.pid])


def decode_description(data: bytes) -> IterationDescription:
    group, nodeid, pid = unpack(data, 3, "iteration entry")
    return IterationDescription(check_group(group), _int(nodeid, "nodeid", _U32), _u32(pid))


# Notifications ----------------------------------------------------------------------------


def encode_confchg(body: ConfChgBody) -> bytes:
    lists = (body.members, body.left, body.joined)
    return pack([body.group, *([[a.nodeid, a.pid, int(a.reason)] for a in x] for x in lists)])


def decode_confchg(data: bytes) -> ConfChgBody:
    group, members, left, joined = unpack(data, 4, "confchg")
    lists = [tuple(_address(row) for row in _array(x, "list")) for x in (members, left, joined)]
    return ConfChgBody(check_group(group), lists[0], lists[1], lists[2])


def encode_deliver(body: DeliverBody) -> bytes:
    """A DELIVER_CALLBACK body holding one message."""
    return pack([body.group, body.nodeid, body.pid, body.message])


def encode_deliveries(group: bytes, entries: Sequence[int | bytes]) -> bytes:
    """A DELIVER_CALLBACK body: ``[group, nodeid, pid, message, nodeid, pid, message, ...]``,
    the messages of one group that one connection is owed, in delivery order.

    One notification carries what a worker delivers to a client in one go: per message, a
    frame of its own cost the worker an encode and the client a frame parse and an unpack."""
    return _pack([group, *entries])


def deliveries_fields(data: bytes) -> tuple[bytes, list[Any]]:
    """A DELIVER_CALLBACK body, checked: its group and its flat ``nodeid, pid, message``
    triples (the receiver's hot path: no object per message)."""
    fields = _unpack_any(data, "deliver")
    if type(fields) is not list or len(fields) < 4 or len(fields) % 3 != 1:
        raise CpgWireError("a deliver must be an array of a group and nodeid, pid, message triples")
    group = check_group(fields[0])
    entries = fields[1:]
    top = _U32[1]
    for index in range(0, len(entries), 3):
        nodeid, pid, message = entries[index], entries[index + 1], entries[index + 2]
        if not (
            type(nodeid) is int
            and type(pid) is int
            and 0 <= nodeid <= top
            and 0 <= pid <= top
            and type(message) is bytes
        ):
            _u32(nodeid), _u32(pid), _bytes(message, "message")  # raises the precise reason
    return group, entries


def decode_deliveries(data: bytes) -> list[DeliverBody]:
    """Every message of a DELIVER_CALLBACK body."""
    group, entries = deliveries_fields(data)
    return [DeliverBody(group, *entries[i : i + 3]) for i in range(0, len(entries), 3)]


def decode_deliver(data: bytes) -> DeliverBody:
    """A DELIVER_CALLBACK body that must hold exactly one message."""
    bodies = decode_deliveries(data)
    if len(bodies) != 1:
        raise CpgWireError(f"a deliver of {len(bodies)} messages where one was expected")
    return bodies[0]


def encode_totem_confchg(body: TotemConfChgBody) -> bytes:
    return pack([body.ring_id.nodeid, body.ring_id.seq, list(body.members)])


def decode_totem_confchg(data: bytes) -> TotemConfChgBody:
    rep, seq, members = unpack(data, 3, "totem confchg")
    nodes = tuple(_u32(n) for n in _array(members, "members"))
    return TotemConfChgBody(CpgRingId(_u32(rep), _int(seq, "seq", _U64)), nodes)


def encode_flow_control(body: FlowControlBody) -> bytes:
    return pack([int(body.state), body.dropped])


def decode_flow_control(data: bytes) -> FlowControlBody:
    state, dropped = unpack(data, 2, "flow control")
    checked = _enum(FlowControlState, state, "flow control state")
    return FlowControlBody(checked, _int(dropped, "dropped", _U64))


# Executive messages -----------------------------------------------------------------------


def encode_proc(group: bytes, pid: int, reason: CpgReason) -> bytes:
    """PROCJOIN / PROCLEAVE: ``[group, pid, reason]``."""
    return pack([group, pid, int(reason)])


def decode_proc(data: bytes) -> tuple[bytes, int, CpgReason]:
    group, pid, reason = unpack(data, 3, "procjoin/procleave")
    return check_group(group), _u32(pid), _enum(CpgReason, reason, "reason")


def encode_exec_mcast(group: bytes, pid: int, message: bytes) -> bytes:
    return _pack([group, pid, message])


def decode_exec_mcast(data: bytes) -> tuple[bytes, int, bytes]:
    group, pid, message = unpack(data, 3, "exec mcast")
    return check_group(group), _u32(pid), _bytes(message, "message")


def exec_mcast_fields(data: bytes) -> tuple[bytes, int, bytes]:
    """:func:`decode_exec_mcast` with no call per field: every delivered message passes here."""
    fields = _unpack_any(data, "exec mcast")
    if type(fields) is list and len(fields) == 3:
        group, pid, message = fields
        if (
            type(group) is bytes
            and len(group) <= CPG_MAX_NAME_LENGTH
            and type(pid) is int
            and 0 <= pid <= _U32[1]
            and type(message) is bytes
        ):
            return group, pid, message
    return decode_exec_mcast(data)  # raises the precise reason


def encode_exec_partial(
    group: bytes, pid: int, total: int, kind: FragmentType, fragment: bytes
) -> bytes:
    """The executive PARTIAL_MCAST: ``[group, pid, total, kind, fragment]``."""
    return pack([group, pid, total, int(kind), fragment])


def exec_partial_to_deliver(data: bytes, nodeid: int) -> tuple[bytes, bytes]:
    """A peer's PARTIAL_MCAST as ``(group, PARTIAL_DELIVER callback body)``, checked."""
    group, pid, total, kind, fragment = unpack(data, 5, "exec partial mcast")
    checked = check_group(group), _u32(pid), _int(total, "total", _U64)
    kind = _enum(FragmentType, kind, "fragment type")
    body = pack(
        [checked[0], nodeid, checked[1], checked[2], int(kind), _bytes(fragment, "fragment")]
    )
    return checked[0], body


def encode_partial_deliver(body: PartialBody) -> bytes:
    fields = [body.group, body.nodeid, body.pid, body.total, int(body.kind), body.fragment]
    return pack(fields)


def decode_partial_deliver(data: bytes) -> PartialBody:
    group, nodeid, pid, total, kind, fragment = unpack(data, 6, "partial deliver")
    return PartialBody(
        check_group(group),
        _u32(nodeid),
        _u32(pid),
        _int(total, "total", _U64),
        _enum(FragmentType, kind, "fragment type"),
        _bytes(fragment, "fragment"),
    )


@dataclass(frozen=True, slots=True)
class JoinList:
    """A node's JOINLIST: the ring it belongs to, the node's processes, and the ones of them
    whose PROCLEAVE it has sent but not yet seen delivered (with the leave's reason)."""

    ring_seq: int
    entries: tuple[tuple[bytes, int], ...]
    leaving: tuple[tuple[bytes, int, CpgReason], ...] = ()


def encode_joinlist(body: JoinList) -> bytes:
    entries = [[group, pid] for group, pid in body.entries]
    leaving = [[group, pid, int(reason)] for group, pid, reason in body.leaving]
    return pack([body.ring_seq, entries, leaving])


def decode_joinlist(data: bytes) -> JoinList:
    ring_seq, entries, leaving = unpack(data, 3, "joinlist")
    rows = [_array(row, "joinlist entry") for row in _array(entries, "joinlist")]
    if any(len(row) != 2 for row in rows):
        raise CpgWireError("a joinlist entry must be [group, pid]")
    leaves = [_array(row, "leaving entry") for row in _array(leaving, "leaving")]
    if any(len(row) != 3 for row in leaves):
        raise CpgWireError("a leaving entry must be [group, pid, reason]")
    return JoinList(
        _int(ring_seq, "ring seq", _U64),
        tuple((check_group(g), _u32(p)) for g, p in rows),
        tuple((check_group(g), _u32(p), _enum(CpgReason, r, "reason")) for g, p, r in leaves),
    )


def encode_downlist(ring_seq: int, left_nodes: Sequence[int]) -> bytes:
    return pack([ring_seq, list(left_nodes)])


def decode_downlist(data: bytes) -> tuple[int, list[int]]:
    ring_seq, nodes = unpack(data, 2, "downlist")
    return _int(ring_seq, "ring seq", _U64), [_u32(n) for n in _array(nodes, "downlist")]


# Field checks -----------------------------------------------------------------------------


def pack(fields: list[Any]) -> bytes:
    return _pack(fields)


def _unpack_any(data: bytes, what: str) -> object:
    if type(data) is not bytes and not isinstance(data, _BUFFERS):
        raise CpgWireError(f"a {what} must be bytes, not {type(data).__name__}")
    try:
        return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as error:
        raise CpgWireError(f"{what} is not valid msgpack: {error!r}") from None


def unpack(data: bytes, length: int, what: str) -> list[Any]:
    return _sized(_unpack_any(data, what), length, what)


def _sized(fields: object, length: int, what: str) -> list[Any]:
    if not isinstance(fields, list) or len(fields) != length:
        raise CpgWireError(f"a {what} must be an array of {length} fields")
    return fields


def _array(field: object, name: str) -> list[Any]:
    if not isinstance(field, list):
        raise CpgWireError(f"field {name!r} must be an array, not {type(field).__name__}")
    return field


def _pair(row: object) -> tuple[int, int]:
    fields = _array(row, "member")
    if len(fields) != 2:
        raise CpgWireError("a member must be [nodeid, pid]")
    return _u32(fields[0]), _u32(fields[1])


def _address(row: object) -> CpgAddress:
    fields = _array(row, "address")
    if len(fields) != 3:
        raise CpgWireError("an address must be [nodeid, pid, reason]")
    return CpgAddress(_u32(fields[0]), _u32(fields[1]), _enum(CpgReason, fields[2], "reason"))


def _bytes(field: object, name: str) -> bytes:
    if not isinstance(field, bytes):
        raise CpgWireError(f"field {name!r} must be bytes, not {type(field).__name__}")
    return field


def _u32(field: object) -> int:
    return _int(field, "u32", _U32)


def _enum(cls: type[_E], field: object, name: str) -> _E:
    value = _int(field, name, _U32)
    try:
        return cls(value)
    except ValueError:
        raise CpgWireError(f"unknown {name} {value}") from None


def _int(field: object, name: str, bounds: tuple[int, int]) -> int:
    if isinstance(field, bool) or not isinstance(field, int):
        raise CpgWireError(f"field {name!r} must be an integer, not {type(field).__name__}")
    if not bounds[0] <= field <= bounds[1]:
        raise CpgWireError(f"field {name!r} = {field} is out of range")
    return field
