"""The CPG client library (Corosync's libcpg), blocking: closed process groups.

Theory of operation
-------------------
A :class:`CpgHandle` is one connection to the CPG engine of the local node, through a
:class:`CpgTransport` (``pycorosync.lib.ipc.IpcClient("cpg")`` unless one is given). As in
Corosync one handle is in at most one group at a time; a process may open several handles.

* Requests (join, leave, membership, local node id, iteration, finalize) are one round trip;
  the engine's ``cs_error_t`` comes back as the matching ``CsError``.
* :meth:`CpgHandle.mcast_joined` is one-way, as in Corosync: it returns once the message is
  written, and the engine delivers it in agreed order to every member, the sender included.
  ``CS_ERR_TRY_AGAIN`` comes without a round trip, from the flow-control state the engine
  publishes (``FLOW_CONTROL_STATE_SET`` notifications, read by :meth:`CpgHandle.dispatch`) or
  from a full socket; call :meth:`CpgHandle.dispatch` and retry.
* :meth:`CpgHandle.dispatch` runs the callbacks of waiting notifications with Corosync's
  ``CS_DISPATCH_*`` semantics: ``deliver_fn(group, nodeid, pid, msg)``,
  ``confchg_fn(group, members, left, joined)`` and, for model v1,
  ``totem_confchg_fn(ring_id, members)``. Flow-control notifications are the library's own and
  never count as a callback. One DELIVER notification may carry several messages: each is
  one callback, and what a ``CS_DISPATCH_ONE`` (or a raising callback) did not run is put
  back to come first.

A message over :data:`MAX_ATOMIC_MSG_SIZE` goes as fragments (:mod:`.cpg_fragments`), as
libcpg sends it: each a PARTIAL_MCAST request that waits for the engine's answer, retried on
``CS_ERR_TRY_AGAIN`` up to :data:`PARTIAL_RETRIES` times :data:`PARTIAL_RETRY_S` apart; an
answer of ``CS_ERR_INTERRUPT`` (the group's membership changed since the first fragment)
ends the send, and the receivers drop what they had. Receivers reassemble, and the deliver
callback sees only whole messages.

Client-side checks, made before anything is sent: a group name over 128 bytes is
``CS_ERR_NAME_TOO_LONG``; ``mcast_joined`` on a handle that has not joined, or has left, is
``CS_ERR_NOT_EXIST`` (Corosync sends it and the daemon only logs the refusal); every call on a
finalized handle is ``CS_ERR_BAD_HANDLE``. ``join`` and ``leave`` retry while the engine
answers ``CS_ERR_BUSY`` (a leave or join of this handle not delivered yet), as libcpg does,
but give up after :data:`BUSY_RETRY_S`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final, Protocol, cast

from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg_fragments import Reassembly, cut
from pycorosync.lib.cpg_wire import (
    CPG_MAX_NAME_LENGTH,
    MAX_ATOMIC_MSG_SIZE,
    MODEL_V1,
    MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
    CpgAddress,
    CpgGuarantee,
    CpgRequestId,
    CpgResponseId,
    CpgRingId,
    FlowControlState,
    IterationDescription,
    IterationType,
)
from pycorosync.lib.errors import (
    BadHandleError,
    BusyError,
    InvalidParamError,
    LibraryError,
    NameTooLongError,
    NoSectionsError,
    NotExistError,
    QueueFullError,
    TryAgainError,
)
from pycorosync.lib.ipc import DispatchFlag, IpcClient

__all__ = [
    "MAX_ATOMIC_MSG_SIZE",
    "ConfchgFn",
    "CpgHandle",
    "CpgIteration",
    "CpgTransport",
    "DeliverFn",
    "DispatchFlag",
    "TotemConfchgFn",
    "group_name",
    "initialize",
    "model_initialize",
]

_GUARANTEES = frozenset(CpgGuarantee)
"""Built once: ``mcast_joined`` is the hot path of every sender."""

BUSY_RETRY_S = 10.0
"""How long join/leave keep retrying CS_ERR_BUSY before they raise it."""
_deliveries_fields = wire.deliveries_fields
_DELIVER: Final = wire.DELIVER_CALLBACK_ID
PARTIAL_RETRIES = 100
PARTIAL_RETRY_S = 0.01
"""libcpg's retries of a fragment the engine answers CS_ERR_TRY_AGAIN (100 x 10 ms)."""

DeliverFn = Callable[[bytes, int, int, bytes], None]
"""``deliver_fn(group, nodeid, pid, msg)``."""
ConfchgFn = Callable[
    [bytes, list[CpgAddress], list[CpgAddress], list[CpgAddress]],
    None,
]
"""``confchg_fn(group, members, left, joined)``."""
TotemConfchgFn = Callable[[CpgRingId, list[int]], None]
"""``totem_confchg_fn(ring_id, members)`` (model v1)."""


class CpgTransport(Protocol):
    """One IPC connection to the CPG engine (:class:`~pycorosync.lib.ipc.IpcClient`)."""

    def request(self, message_id: int, payload: bytes) -> bytes: ...

    def send(self, message_id: int, payload: bytes) -> None: ...

    def fd_get(self) -> int: ...

    def dispatch(self, flags: int, callback: Callable[[int, bytes], object]) -> None: ...

    def put_back(self, message_id: int, payload: bytes) -> None: ...

    def finalize(self) -> None: ...


def initialize(
    deliver_fn: DeliverFn,
    confchg_fn: ConfchgFn,
    *,
    transport: CpgTransport | None = None,
    run_dir: str | None = None,
) -> CpgHandle:
    """``cpg_initialize``: model v1 without a totem confchg callback."""
    return model_initialize(MODEL_V1, deliver_fn, confchg_fn, transport=transport, run_dir=run_dir)


def model_initialize(
    model: int,
    deliver_fn: DeliverFn,
    confchg_fn: ConfchgFn,
    totem_confchg_fn: TotemConfchgFn | None = None,
    *,
    flags: int = 0,
    context: object = None,
    transport: CpgTransport | None = None,
    run_dir: str | None = None,
) -> CpgHandle:
    """``cpg_model_initialize``; ``flags`` may be MODEL_V1_DELIVER_INITIAL_TOTEM_CONF."""
    if model != MODEL_V1:
        raise InvalidParamError(f"unknown cpg model {model}")
    if flags & ~MODEL_V1_DELIVER_INITIAL_TOTEM_CONF:
        raise InvalidParamError(f"unknown model flags {flags:#x}")
    callbacks = _Callbacks(deliver_fn, confchg_fn, totem_confchg_fn)
    return CpgHandle(transport or _connect(run_dir), callbacks, flags, context)


def _connect(run_dir: str | None) -> CpgTransport:
    # IpcClient's dispatch takes a DispatchFlag, an int: it is a CpgTransport.
    return cast(CpgTransport, IpcClient("cpg", run_dir=run_dir))


def group_name(group: bytes | str) -> bytes:
    """A group name as the wire carries it (a ``str`` is UTF-8); NAME_TOO_LONG over 128."""
    if isinstance(group, str):
        group = group.encode()
    if not isinstance(group, bytes):
        raise InvalidParamError(f"a group name must be bytes or str, not {type(group).__name__}")
    if len(group) > CPG_MAX_NAME_LENGTH:
        raise NameTooLongError(f"group name of {len(group)} bytes over {CPG_MAX_NAME_LENGTH}")
    return group


class _Callbacks:
    def __init__(
        self, deliver: DeliverFn, confchg: ConfchgFn, totem_confchg: TotemConfchgFn | None
    ) -> None:
        self.deliver = deliver
        self.confchg = confchg
        self.totem_confchg = totem_confchg


class CpgHandle:
    """Use :func:`initialize` or :func:`model_initialize`."""

    def __init__(
        self, transport: CpgTransport, callbacks: _Callbacks, flags: int, context: object
    ) -> None:
        self._transport: CpgTransport | None = transport
        self._callbacks = callbacks
        self._flags = flags
        self._context = context
        self._joined: bytes | None = None
        self._flow_control = FlowControlState.DISABLED
        self._dropped_seen = 0
        self._dropped_reported = 0
        self._iterations: set[CpgIteration] = set()
        self._assemblies = Reassembly()

    # Connection ---------------------------------------------------------------------------

    def finalize(self) -> None:
        """``cpg_finalize``: no callbacks after this; the engine treats a member as PROCDOWN."""
        transport = self._live()
        self._transport = None
        for iteration in self._iterations:
            iteration.closed = True
        self._iterations.clear()
        try:
            transport.request(CpgRequestId.FINALIZE, wire.encode_empty())
        except LibraryError:
            pass  # the daemon is gone: there is nothing left to tell it
        finally:
            transport.finalize()

    def fd_get(self) -> int:
        return self._live().fd_get()

    def context_get(self) -> object:
        self._live()
        return self._context

    def context_set(self, context: object) -> None:
        self._live()
        self._context = context

    def dispatch(self, flags: int = DispatchFlag.ALL) -> None:
        """``cpg_dispatch``: run the callbacks of waiting notifications as ``flags`` say."""
        try:
            mode = DispatchFlag(flags)
        except ValueError:
            raise InvalidParamError(f"unknown dispatch flags {flags}") from None
        if mode in (DispatchFlag.ALL, DispatchFlag.BLOCKING):
            self._live().dispatch(mode, self._on_message)
            return
        # ONE and ONE_NONBLOCKING count user callbacks: skip the library's own notifications.
        ran = [False]

        def one(message_id: int, payload: bytes) -> None:
            ran[0] = self._on_message(message_id, payload, one=True) or ran[0]

        while not ran[0]:
            self._live().dispatch(mode, one)

    # Groups -------------------------------------------------------------------------------

    def join(self, group: bytes | str) -> None:
        """``cpg_join``: OK once the engine accepted it; the join confchg follows."""
        name = group_name(group)
        self._retry_busy(CpgRequestId.JOIN, wire.encode_join(name, os.getpid(), self._flags))
        self._joined = name

    def leave(self, group: bytes | str) -> None:
        """``cpg_leave``: OK once the engine accepted it; the leave confchg follows."""
        name = group_name(group)
        self._retry_busy(CpgRequestId.LEAVE, wire.encode_leave(name, os.getpid()))
        self._joined = None

    def mcast_joined(self, guarantee: int, msg: bytes | Sequence[bytes]) -> None:
        """``cpg_mcast_joined``: multicast to the joined group. One-way (no reply) up to
        :data:`MAX_ATOMIC_MSG_SIZE`; a bigger message returns once every fragment is taken."""
        transport = self._live()
        message = msg if isinstance(msg, bytes) else b"".join(msg)
        if guarantee not in _GUARANTEES:
            raise InvalidParamError(f"unknown guarantee {guarantee}")
        if self._joined is None:
            raise NotExistError("this handle has not joined a group")
        self._report_dropped()
        if len(message) > MAX_ATOMIC_MSG_SIZE:
            self._send_fragments(guarantee, message)
            return
        if self._flow_control is FlowControlState.ENABLED:
            raise TryAgainError("cpg flow control is on; dispatch, then retry")
        transport.send(CpgRequestId.MCAST, wire.encode_mcast(guarantee, message))

    def _send_fragments(self, guarantee: int, message: bytes) -> None:
        for kind, fragment in cut(message):
            body = wire.encode_partial_mcast(guarantee, len(message), kind, fragment)
            for attempt in range(PARTIAL_RETRIES):
                try:
                    self._request(CpgRequestId.PARTIAL_MCAST, body)
                    break
                except TryAgainError:
                    if attempt == PARTIAL_RETRIES - 1:
                        raise
                    time.sleep(PARTIAL_RETRY_S)

    def membership_get(self, group: bytes | str) -> list[CpgAddress]:
        """Every process in ``group`` on any node (joined or not); reason is UNDEFINED."""
        reply = self._request(CpgRequestId.MEMBERSHIP, wire.encode_group(group_name(group)))
        return wire.decode_members(reply)

    def local_get(self) -> int:
        """The local node's id."""
        return wire.decode_nodeid(self._request(CpgRequestId.LOCAL_GET, wire.encode_empty()))

    def max_atomic_msgsize_get(self) -> int:
        self._live()
        return MAX_ATOMIC_MSG_SIZE

    def flow_control_state_get(self) -> FlowControlState:
        """The state the engine last published (ENABLED: ``mcast_joined`` is TRY_AGAIN)."""
        self._live()
        return self._flow_control

    # Iteration ----------------------------------------------------------------------------

    def iteration_initialize(
        self, iteration_type: int, group: bytes | str | None = None
    ) -> CpgIteration:
        """A snapshot of the groups (NAME_ONLY), one group's members (ONE_GROUP) or all."""
        if iteration_type not in set(IterationType):
            raise InvalidParamError(f"unknown iteration type {iteration_type}")
        if (group is None) == (iteration_type == IterationType.ONE_GROUP):
            raise InvalidParamError("a group is given exactly for ONE_GROUP iterations")
        name = None if group is None else group_name(group)
        body = wire.encode_iteration_init(iteration_type, name)
        handle = wire.decode_handle(self._request(CpgRequestId.ITERATION_INITIALIZE, body))
        iteration = CpgIteration(self, handle)
        self._iterations.add(iteration)
        return iteration

    def iterate(
        self, iteration_type: int = IterationType.ALL, group: bytes | str | None = None
    ) -> Iterator[IterationDescription]:
        """initialize / next / finalize as a Python iterator."""
        iteration = self.iteration_initialize(iteration_type, group)
        try:
            yield from iteration
        finally:
            if not iteration.closed:
                iteration.finalize()

    # Internals ----------------------------------------------------------------------------

    def _live(self) -> CpgTransport:
        if self._transport is None:
            raise BadHandleError("the cpg handle is finalized")
        return self._transport

    def _request(self, message_id: int, payload: bytes) -> bytes:
        return self._live().request(message_id, payload)

    def _retry_busy(self, message_id: int, payload: bytes) -> None:
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            try:
                self._request(message_id, payload)
                return
            except BusyError:
                if time.monotonic() > deadline:
                    raise
                # Our own earlier join or leave is still on its way through the ring.
                time.sleep(0.001)

    def _report_dropped(self) -> None:
        if self._dropped_seen > self._dropped_reported:
            lost = self._dropped_seen - self._dropped_reported
            self._dropped_reported = self._dropped_seen
            raise QueueFullError(f"the engine dropped {lost} multicasts sent past flow control")

    def _on_message(self, message_id: int, payload: bytes, *, one: bool = False) -> bool:
        """Handle one notification (of a DELIVER, only its first message if ``one``); True if
        it ran a user callback."""
        if message_id == _DELIVER:  # first: nearly every message is one
            group, entries = _deliveries_fields(payload)
            self._run_deliveries(group, entries, 3 if one else len(entries))
        elif message_id == CpgResponseId.FLOW_CONTROL_STATE_SET:
            body = wire.decode_flow_control(payload)
            self._flow_control, self._dropped_seen = body.state, body.dropped
            return False
        elif message_id == CpgResponseId.PARTIAL_DELIVER_CALLBACK:
            part = wire.decode_partial_deliver(payload)
            whole = self._assemblies.add(part)
            if whole is None:
                return False
            self._callbacks.deliver(part.group, part.nodeid, part.pid, whole)
        elif message_id == CpgResponseId.CONFCHG_CALLBACK:
            change = wire.decode_confchg(payload)
            for gone in change.left:
                self._assemblies.forget(gone.nodeid, gone.pid)
            lists = (list(change.members), list(change.left), list(change.joined))
            self._callbacks.confchg(change.group, *lists)
        elif message_id == CpgResponseId.TOTEM_CONFCHG_CALLBACK:
            totem = wire.decode_totem_confchg(payload)
            if self._callbacks.totem_confchg is None:
                return False
            self._callbacks.totem_confchg(totem.ring_id, list(totem.members))
        else:
            raise LibraryError(f"unexpected cpg dispatch message {message_id}")
        return True

    def _run_deliveries(self, group: bytes, entries: list[Any], stop: int) -> None:
        """One callback per message, up to ``stop``; what is left is handed back to the
        transport, to come first in the next dispatch. A finalize in a callback drops it."""
        deliver = self._callbacks.deliver
        index, end = 0, len(entries)
        try:
            while index < stop:
                nodeid, pid, message = entries[index], entries[index + 1], entries[index + 2]
                index += 3
                deliver(group, nodeid, pid, message)
                if self._transport is None:
                    return
        finally:
            if index < end and self._transport is not None:
                rest = wire.encode_deliveries(group, entries[index:])
                self._transport.put_back(_DELIVER, rest)


class CpgIteration:
    """One snapshot iteration (``cpg_iteration_*``); iterate it or call :meth:`next`."""

    def __init__(self, handle: CpgHandle, iteration_handle: int) -> None:
        self._handle = handle
        self._id = iteration_handle
        self.closed = False

    def next(self) -> IterationDescription:
        """The next entry; ``NoSectionsError`` at the end."""
        reply = self._handle._request(CpgRequestId.ITERATION_NEXT, self._body())
        return wire.decode_description(reply)

    def finalize(self) -> None:
        self._handle._request(CpgRequestId.ITERATION_FINALIZE, self._body())
        self.closed = True
        self._handle._iterations.discard(self)

    def __iter__(self) -> Iterator[IterationDescription]:
        while True:
            try:
                yield self.next()
            except NoSectionsError:
                return

    def _body(self) -> bytes:
        if self.closed:
            raise BadHandleError("the cpg iteration is finalized")
        return wire.encode_handle(self._id)
