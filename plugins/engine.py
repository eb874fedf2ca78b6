"""The service-engine contract: what an engine is, and what it may ask of the executive.

Theory of operation
-------------------
A *service engine* is Corosync's unit of cluster functionality (cmap, cpg, votequorum, a
third-party engine). This module is the Python counterpart of Corosync's
``struct corosync_service_engine`` and of the ``corosync_api_v1`` table it is given:

* :class:`ServiceEngine` is a structural :class:`~typing.Protocol`. A plugin registers the
  engine *class* (see :mod:`pycorosync.plugins.hookspecs`); the registry validates its class
  attributes and handler tables at load, and a worker process instantiates it with no
  arguments and drives it.
* The engine's identity is declared, never enumerated: ``name`` (also its IPC server name and
  its ``runtime.services.<name>`` cmap prefix), the wire ``service_id`` (0-31 are reserved for
  built-ins, in Corosync's numbering), ``priority`` and ``version``. Engines are loaded and
  synchronised in ``(priority, service_id)`` order and unloaded in the reverse order.
* Two handler tables, keyed by declared ids: ``lib_handlers`` for requests from local client
  connections (each with a :class:`FlowControl` flag) and ``exec_handlers`` for messages that
  peers (and this node) multicast to the engine, delivered in the agreed order of the ring.
  Entries hold plain functions taking the engine first, so a table is a class attribute, just
  as Corosync's tables are static arrays::

      class Echo:
          def _lib_echo(self, conn: ClientConnection, payload: bytes) -> None: ...
          lib_handlers: ClassVar[Mapping[int, LibHandler[Echo]]] = {
              0: LibHandler(_lib_echo, FlowControl.REQUIRED),
          }

* Lifecycle, in the order a worker calls it: ``exec_init(api)`` once; then ``confchg`` for
  every configuration change and ``sync_init`` / ``sync_process`` (until it returns ``True``) /
  ``sync_activate`` for every membership, ``sync_abort`` if a new configuration interrupts a
  sync; ``lib_init`` / handlers / ``lib_exit`` per client connection at any time after the
  first sync; ``exec_exit`` at shutdown (until it returns ``True``). Optional: an engine
  that defines ``exec_batch_end()`` is called after the exec handlers of each batch of
  delivered messages (one Totem delivery) have run - the place to send, once, what the batch
  owes its clients (CPG gathers a batch's messages per client into one notification).
* Payloads are ``bytes``: the msgpack body of a client request or of a peer's message. The
  engine owns its message schema and decodes (and validates) it itself.
* Engines are deterministic state machines over the stream the executive delivers. They see
  the executive only through :class:`ExecutiveApi`, so the same engine runs in a worker, under
  the simulator and against a fake in a unit test. Engines never block: calls that cross to the
  Totem process return :attr:`SendStatus.WOULD_BLOCK` instead of waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar, Final, Generic, NewType, Protocol, TypeVar

from pycorosync.exec.cmap_owner import CmapAdjust, CmapDelete, CmapSet, CmapWrite
from pycorosync.exec.icmap_tracking import TrackCallback
from pycorosync.exec.totem.events import ConfigKind, Guarantee, RingId
from pycorosync.lib.cmap_types import CmapEntry, CmapValue, ValueType
from pycorosync.lib.errors import CsError, CsErrorCode

__all__ = [
    "ENGINE_NAME_PATTERN",
    "EXEC_BATCH_END",
    "HANDLER_ID_MAX",
    "RESERVED_SERVICE_ID_MAX",
    "SERVICE_ID_MAX",
    "ClientConnection",
    "CmapAdjust",
    "CmapDelete",
    "CmapSet",
    "CmapTrackHandle",
    "CmapWrite",
    "CmapWriteDone",
    "ExecHandler",
    "ExecutiveApi",
    "FlowControl",
    "LibHandler",
    "SendStatus",
    "ServiceEngine",
    "TimerHandle",
    "answer",
    "batch_end_hook",
]

SERVICE_ID_MAX = 0xFFFF
"""Largest wire service id (16 bits, as in Corosync's ``(service_id << 16) | fn`` message id)."""

RESERVED_SERVICE_ID_MAX = 31
"""Service ids 0..31 belong to built-in engines (Corosync numbers cmap 0 ... wd 7)."""

HANDLER_ID_MAX = 0xFFFF
"""Largest lib request id or exec function id (16 bits, like Corosync's ``fn``)."""

ENGINE_NAME_PATTERN = r"[a-z][a-z0-9_-]{0,31}"
"""An engine name: it names an IPC server and appears in cmap keys (``runtime.services.*``)."""

EngineT = TypeVar("EngineT")


class FlowControl(IntEnum):
    """Whether a client request is held back while the node cannot take more multicasts.

    Corosync's ``CS_LIB_FLOW_CONTROL_*`` numbering. A REQUIRED handler multicasts (so during
    sync or when the ring towards the Totem process is full the executive answers the client
    ``CS_ERR_TRY_AGAIN`` without calling it); a NOT_REQUIRED handler only reads local state.
    """

    REQUIRED = 1
    NOT_REQUIRED = 2


class SendStatus(IntEnum):
    """Outcome of a request that travels to the Totem process (a multicast, a cmap write)."""

    QUEUED = 0
    """Accepted; it will take effect in the cluster's agreed order."""
    WOULD_BLOCK = 1
    """Nothing was sent: the ring is full. Answer the client ``CS_ERR_TRY_AGAIN``."""

    @property
    def cs_error(self) -> CsErrorCode:
        """The code to put in a client's reply for this outcome."""
        if self is SendStatus.QUEUED:
            return CsErrorCode.CS_OK
        return CsErrorCode.CS_ERR_TRY_AGAIN


TimerHandle = NewType("TimerHandle", int)
"""Identifies a timer armed with :meth:`ExecutiveApi.timer_add`."""

CmapTrackHandle = NewType("CmapTrackHandle", int)
"""Identifies a tracker added with :meth:`ExecutiveApi.cmap_track_add`."""

CmapWriteDone = Callable[[CsErrorCode], None]
"""Told the outcome of a cmap write once the owner applied (``CS_OK``) or refused it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientConnection:
    """One client IPC connection to an engine, as the executive's IPC layer accepted it.

    Hashable, so an engine keys its per-connection state on it (Corosync's connection
    private data).
    """

    conn_id: int
    """Unique on this node for the life of the worker process; never reused."""
    pid: int
    """The client's process id (``SO_PEERCRED``)."""
    uid: int
    gid: int

    def __hash__(self) -> int:
        # The id alone (equal connections have equal ids): engines look a connection up
        # for every message it sends, and hashing all four fields costs three times more.
        return hash(self.conn_id)


@dataclass(frozen=True, slots=True)
class LibHandler(Generic[EngineT]):
    """One entry of an engine's client-request table (Corosync's ``corosync_lib_handler``)."""

    handler: Callable[[EngineT, ClientConnection, bytes], None]
    """Called as ``handler(engine, conn, payload)`` with the request body."""
    flow_control: FlowControl


@dataclass(frozen=True, slots=True)
class ExecHandler(Generic[EngineT]):
    """One entry of an engine's peer-message table (Corosync's ``corosync_exec_handler``).

    No byte-order converter, unlike Corosync's: service messages are msgpack.
    """

    handler: Callable[[EngineT, bytes, int], None]
    """Called as ``handler(engine, payload, sender_nodeid)`` in the ring's delivery order."""


class ExecutiveApi(Protocol):
    """The executive as one engine sees it (Corosync's ``corosync_api_v1``, narrowed).

    The worker gives each engine its own instance in ``exec_init``; multicasts are therefore
    addressed to that engine's ``exec_handlers`` on every node without naming the service.
    Every method returns at once and is safe to call from any engine callback.
    """

    @property
    def nodeid(self) -> int:
        """This node's nodeid."""
        ...

    def mcast(
        self, function_id: int, payload: bytes, guarantee: Guarantee = Guarantee.AGREED
    ) -> SendStatus:
        """Multicast ``payload`` to ``exec_handlers[function_id]`` on every member, this node
        included, in agreed (or safe) order. WOULD_BLOCK means nothing was sent."""
        ...

    def timer_add(self, delay_ms: float, callback: Callable[[], None]) -> TimerHandle:
        """Call ``callback()`` once, ``delay_ms`` from now, on the engine's worker loop."""
        ...

    def timer_delete(self, handle: TimerHandle) -> None:
        """Cancel a timer; a timer that already fired or was deleted is ignored."""
        ...

    def cmap_get(self, key: str) -> CmapValue:
        """Read a key from this worker's cmap replica; ``NotExistError`` if it is absent."""
        ...

    def cmap_get_entry(self, key: str) -> CmapEntry:
        """Like :meth:`cmap_get`, with the value's type (and stored length)."""
        ...

    def cmap_iter(self, prefix: str = "") -> Iterator[tuple[str, CmapEntry]]:
        """The replica's keys starting with ``prefix`` (all for ``""``) with their entries,
        byte-wise sorted. Live, as Corosync's iterator is: a key added or removed ahead of
        the iterator's position after it started is seen or skipped; nothing is copied."""
        ...

    def stats_get_entry(self, key: str) -> CmapEntry:
        """A key of Corosync's stats map (``CMAP_MAP_STATS``: ``stats.srp.*``, ``stats.pg.*``,
        ``stats.net.*``, ``stats.ipcs.*``, ...) as of the Totem process's last report, at most
        a second old; ``NotExistError`` if it is absent."""
        ...

    def stats_iter(self, prefix: str = "") -> Iterator[tuple[str, CmapEntry]]:
        """The stats map's keys starting with ``prefix``, byte-wise sorted; a snapshot."""
        ...

    def cmap_track_add(
        self, key_or_prefix: str, flags: int, callback: TrackCallback
    ) -> CmapTrackHandle:
        """Call ``callback(event, key, new entry, old entry)`` on the worker loop for every
        change to the key (or, with ``TrackFlags.PREFIX``, every key under the prefix) whose
        event is in ``flags`` (ADD, DELETE, MODIFY). ``new`` is ``None`` on DELETE, ``old``
        on ADD. Changes are announced as the replica applies them, in the owner's order.
        Flags with other bits raise ``InvalidParamError``."""
        ...

    def cmap_track_delete(self, handle: CmapTrackHandle) -> None:
        """Remove a tracker; an unknown or removed handle raises ``BadHandleError``."""
        ...

    def cmap_write(self, write: CmapWrite, done: CmapWriteDone) -> SendStatus:
        """Send ``write`` (:class:`CmapSet`, :class:`CmapDelete` or :class:`CmapAdjust`) to
        the Totem process, which owns cmap and applies writes in one order with the client
        checks (read-only keys, key names, types; Corosync's error codes).

        ``done(code)`` is called exactly once, on the worker loop and never from inside this
        call, after the outcome came back: by then this worker's replica already shows a
        successful write (and its trackers fired). WOULD_BLOCK means nothing was sent and
        ``done`` will not be called.
        """
        ...

    def cmap_set(self, key: str, value: CmapValue, vtype: ValueType) -> SendStatus:
        """Ask the Totem process (the owner of cmap) to set a key; fire and forget.

        A thin form of :meth:`cmap_write` with a :class:`CmapSet`. An invalid value, or a bad
        name for a key this replica lacks, raises the matching ``CsError``
        (``InvalidParamError``, ``NameTooLongError``) at once; a refusal by the owner (a
        read-only key) is only logged. The replica, and so ``cmap_get``, shows the write once the
        change event comes back.
        """
        ...

    def is_quorate(self) -> bool:
        """Whether this node's partition currently has quorum."""
        ...

    def reply(
        self,
        conn: ClientConnection,
        message_id: int,
        payload: bytes,
        error: CsErrorCode = CsErrorCode.CS_OK,
    ) -> None:
        """Send the response to a client request. A closed connection is ignored."""
        ...

    def dispatch(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        """Queue an unsolicited notification (a callback) for a client. A client that does
        not read its notifications is disconnected rather than let its queue grow."""
        ...


class ServiceEngine(Protocol):
    """A service engine, modelled on Corosync's ``struct corosync_service_engine``.

    The attributes are read from the class at load, so declare them as class attributes,
    annotated ``ClassVar[...]`` with exactly these types (a type checker insists); the methods
    are called on the one instance a worker creates with ``EngineClass()``.
    """

    name: ClassVar[str]
    """Short name matching :data:`ENGINE_NAME_PATTERN`, unique in the cluster."""
    service_id: ClassVar[int]
    """Wire service id, 0..:data:`SERVICE_ID_MAX`; 0..31 only for built-ins."""
    priority: ClassVar[int]
    """Non-negative; lower loads and syncs first and unloads last."""
    version: ClassVar[int]
    """Non-negative; all members must run the same (name, service_id, version)."""
    allow_inquorate: ClassVar[bool]
    """Whether clients are served while the node is not quorate."""
    own_worker: ClassVar[bool]
    """Ask for a worker process of its own, so that a crash takes nothing else down."""
    lib_handlers: ClassVar[Mapping[int, LibHandler[Any]]]
    """Client requests by request id, 0..:data:`HANDLER_ID_MAX`."""
    exec_handlers: ClassVar[Mapping[int, ExecHandler[Any]]]
    """Peer messages by function id, 0..:data:`HANDLER_ID_MAX`."""

    def exec_init(self, api: ExecutiveApi) -> None:
        """Start the engine. Raising aborts the daemon's startup, as in Corosync."""
        ...

    def exec_exit(self) -> bool:
        """Stop the engine at shutdown. ``False`` means "busy, call me again" (for example to
        let a farewell multicast leave); ``True`` means done."""
        ...

    def lib_init(self, conn: ClientConnection) -> None:
        """A client connected. Raising a ``CsError`` refuses it with that code."""
        ...

    def lib_exit(self, conn: ClientConnection) -> None:
        """A client disconnected; drop its state."""
        ...

    def confchg(
        self,
        kind: ConfigKind,
        members: tuple[int, ...],
        left: tuple[int, ...],
        joined: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        """Totem installed a TRANSITIONAL or REGULAR configuration (sorted nodeids)."""
        ...

    def sync_init(
        self,
        transitional_members: tuple[int, ...],
        members: tuple[int, ...],
        ring_id: RingId,
    ) -> None:
        """A sync round starts for ``members``; ``transitional_members`` are those that
        also were in this node's previous configuration."""
        ...

    def sync_process(self) -> bool:
        """Do (or continue) this round's sync work; ``True`` when this node is done. Called
        again while it returns ``False``."""
        ...

    def sync_activate(self) -> None:
        """Every member finished ``sync_process``: make the synchronised state current."""
        ...

    def sync_abort(self) -> None:
        """A new configuration interrupted the round: discard the partial sync state."""
        ...


EXEC_BATCH_END: Final = "exec_batch_end"
"""The optional engine method ``exec_batch_end(self) -> None``: the exec handlers of one batch
of delivered messages have run. Not part of :class:`ServiceEngine`, so engines without it
stay valid; hosts look it up by this name."""


def batch_end_hook(engine: object) -> Callable[[], None] | None:
    """``engine``'s bound ``exec_batch_end``, or None if it has none."""
    hook = getattr(engine, EXEC_BATCH_END, None)
    return hook if callable(hook) else None


def answer(
    api: ExecutiveApi, conn: ClientConnection, message_id: int, build: Callable[[], bytes]
) -> None:
    """Reply to a client request with ``build()``'s body or, when it raises a ``CsError``,
    with an empty body and that error's code: the shape of most lib handlers."""
    try:
        body = build()
    except CsError as error:
        api.reply(conn, message_id, b"", error.code)
        return
    api.reply(conn, message_id, body)
