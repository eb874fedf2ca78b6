"""The asyncio CPG client: the calls of :mod:`pycorosync.lib.cpg`, awaitable, and the
callbacks as an async iterator of events.

Theory of operation. :meth:`AsyncCpgHandle.connect` opens an
:class:`~pycorosync.lib.ipc_async.AsyncIpcClient` to the ``cpg`` service (or takes a ready
transport). Requests are awaited; :meth:`AsyncCpgHandle.mcast_joined` is one-way and never
waits - ``CS_ERR_TRY_AGAIN`` from the published flow-control state or a full transport.
``async for event in handle`` yields each delivery as a
:class:`~pycorosync.lib.cpg_wire.DeliverBody`, each membership change as a
:class:`~pycorosync.lib.cpg_wire.ConfChgBody` and each totem change as a
:class:`~pycorosync.lib.cpg_wire.TotemConfChgBody`, in the order the engine sent them;
flow-control notifications update :meth:`AsyncCpgHandle.flow_control_state_get` and are not
yielded. The client-side checks are those of the blocking library.

Messages over :data:`~pycorosync.lib.cpg_wire.MAX_ATOMIC_MSG_SIZE`: every fragment is a
request, so they are sent by the coroutine :meth:`AsyncCpgHandle.mcast_joined_fragmented`
(``mcast_joined`` stays one-way and refuses them with ``CS_ERR_TOO_BIG``); received ones are
reassembled (:mod:`~pycorosync.lib.cpg_fragments`) and yielded whole, as one DeliverBody.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from typing import Protocol

from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg import PARTIAL_RETRIES, PARTIAL_RETRY_S, group_name
from pycorosync.lib.cpg_fragments import Reassembly, cut
from pycorosync.lib.cpg_wire import (
    MAX_ATOMIC_MSG_SIZE,
    MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
    ConfChgBody,
    CpgAddress,
    CpgGuarantee,
    CpgRequestId,
    CpgResponseId,
    DeliverBody,
    FlowControlState,
    TotemConfChgBody,
)
from pycorosync.lib.errors import (
    BadHandleError,
    BusyError,
    InvalidParamError,
    LibraryError,
    NotExistError,
    TooBigError,
    TryAgainError,
)
from pycorosync.lib.ipc_async import AsyncIpcClient

__all__ = ["AsyncCpgHandle", "AsyncCpgTransport", "CpgEvent"]

CpgEvent = DeliverBody | ConfChgBody | TotemConfChgBody
BUSY_RETRY_S = 10.0


class AsyncCpgTransport(Protocol):
    async def request(self, message_id: int, payload: bytes) -> bytes: ...

    def send(self, message_id: int, payload: bytes) -> None: ...

    async def __anext__(self) -> tuple[int, bytes]: ...

    async def aclose(self) -> None: ...


class AsyncCpgHandle:
    """Use :meth:`connect`."""

    def __init__(self, transport: AsyncCpgTransport, flags: int = 0) -> None:
        if flags & ~MODEL_V1_DELIVER_INITIAL_TOTEM_CONF:
            raise InvalidParamError(f"unknown model flags {flags:#x}")
        self._transport: AsyncCpgTransport | None = transport
        self._flags = flags
        self._joined: bytes | None = None
        self._flow_control = FlowControlState.DISABLED
        self._assemblies = Reassembly()
        self._ready: deque[CpgEvent] = deque()
        """Events decoded and not yet returned (one notification may deliver many)."""

    @classmethod
    async def connect(
        cls, *, flags: int = 0, run_dir: str | None = None, timeout: float | None = None
    ) -> AsyncCpgHandle:
        return cls(await AsyncIpcClient.connect("cpg", run_dir=run_dir, timeout=timeout), flags)

    async def finalize(self) -> None:
        transport = self._live()
        self._transport = None
        try:
            await transport.request(CpgRequestId.FINALIZE, wire.encode_empty())
        except LibraryError:
            pass  # the daemon is gone: there is nothing left to tell it
        finally:
            await transport.aclose()

    async def join(self, group: bytes | str) -> None:
        name = group_name(group)
        await self._retry_busy(CpgRequestId.JOIN, wire.encode_join(name, os.getpid(), self._flags))
        self._joined = name

    async def leave(self, group: bytes | str) -> None:
        name = group_name(group)
        await self._retry_busy(CpgRequestId.LEAVE, wire.encode_leave(name, os.getpid()))
        self._joined = None

    def mcast_joined(self, guarantee: int, msg: bytes) -> None:
        transport = self._live()
        if guarantee not in set(CpgGuarantee):
            raise InvalidParamError(f"unknown guarantee {guarantee}")
        if len(msg) > MAX_ATOMIC_MSG_SIZE:
            raise TooBigError(
                f"{len(msg)} byte message over {MAX_ATOMIC_MSG_SIZE}: "
                "await mcast_joined_fragmented for it"
            )
        if self._joined is None:
            raise NotExistError("this handle has not joined a group")
        if self._flow_control is FlowControlState.ENABLED:
            raise TryAgainError("cpg flow control is on; read events, then retry")
        transport.send(CpgRequestId.MCAST, wire.encode_mcast(guarantee, msg))

    async def mcast_joined_fragmented(self, guarantee: int, msg: bytes) -> None:
        """Multicast a message of any size: up to MAX_ATOMIC_MSG_SIZE this is
        ``mcast_joined`` (one-way, TRY_AGAIN under flow control), above it the fragments go
        one request at a time, each retried on TRY_AGAIN up to 100 times 10 ms apart."""
        if len(msg) <= MAX_ATOMIC_MSG_SIZE:
            self.mcast_joined(guarantee, msg)
            return
        self._live()
        if guarantee not in set(CpgGuarantee):
            raise InvalidParamError(f"unknown guarantee {guarantee}")
        if self._joined is None:
            raise NotExistError("this handle has not joined a group")
        for kind, fragment in cut(msg):
            body = wire.encode_partial_mcast(guarantee, len(msg), kind, fragment)
            for attempt in range(PARTIAL_RETRIES):
                try:
                    await self._live().request(CpgRequestId.PARTIAL_MCAST, body)
                    break
                except TryAgainError:
                    if attempt == PARTIAL_RETRIES - 1:
                        raise
                    await asyncio.sleep(PARTIAL_RETRY_S)

    async def membership_get(self, group: bytes | str) -> list[CpgAddress]:
        body = wire.encode_group(group_name(group))
        return wire.decode_members(await self._live().request(CpgRequestId.MEMBERSHIP, body))

    async def local_get(self) -> int:
        reply = await self._live().request(CpgRequestId.LOCAL_GET, wire.encode_empty())
        return wire.decode_nodeid(reply)

    def flow_control_state_get(self) -> FlowControlState:
        self._live()
        return self._flow_control

    def __aiter__(self) -> AsyncCpgHandle:
        return self

    async def __anext__(self) -> CpgEvent:
        while not self._ready:
            message_id, payload = await self._live().__anext__()
            if message_id == CpgResponseId.DELIVER_CALLBACK:
                self._ready.extend(wire.decode_deliveries(payload))
                continue
            event = self._decode(message_id, payload)
            if event is not None:
                return event
        self._live()
        return self._ready.popleft()

    def _decode(self, message_id: int, payload: bytes) -> CpgEvent | None:
        if message_id == CpgResponseId.FLOW_CONTROL_STATE_SET:
            self._flow_control = wire.decode_flow_control(payload).state
            return None
        if message_id == CpgResponseId.PARTIAL_DELIVER_CALLBACK:
            part = wire.decode_partial_deliver(payload)
            whole = self._assemblies.add(part)
            return None if whole is None else DeliverBody(part.group, part.nodeid, part.pid, whole)
        if message_id == CpgResponseId.CONFCHG_CALLBACK:
            change = wire.decode_confchg(payload)
            for gone in change.left:
                self._assemblies.forget(gone.nodeid, gone.pid)
            return change
        if message_id == CpgResponseId.TOTEM_CONFCHG_CALLBACK:
            return wire.decode_totem_confchg(payload)
        raise LibraryError(f"unexpected cpg dispatch message {message_id}")

    def _live(self) -> AsyncCpgTransport:
        if self._transport is None:
            raise BadHandleError("the cpg handle is finalized")
        return self._transport

    async def _retry_busy(self, message_id: int, payload: bytes) -> None:
        deadline = time.monotonic() + BUSY_RETRY_S
        while True:
            try:
                await self._live().request(message_id, payload)
                return
            except BusyError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.001)
