"""The worker's client IPC server: one Unix stream socket per service, on the worker's loop.

Theory of operation
-------------------
:class:`IpcServer` listens on ``<run_dir>/<service>.sock`` for every service the worker
hosts (Corosync's one libqb server per engine) and turns client frames into calls on its
:class:`IpcHost`, the worker:

* **Accept.** The peer's ``SO_PEERCRED`` uid and gid go to ``authorize`` (the worker checks
  root, its own uid and the ``uidgid.*`` keys, as Corosync's ``connection_accept`` does). A
  refused peer gets a HELLO carrying ``CS_ERR_ACCESS`` and is closed. Otherwise the host's
  :meth:`IpcHost.connected` decides; any code but ``CS_OK`` (e.g. ``CS_ERR_TRY_AGAIN`` before
  the first sync) is sent the same way. An admitted client gets a HELLO with ``CS_OK`` and its
  connection id, unique for the life of this server.
* **Requests.** Each REQUEST becomes :meth:`IpcHost.request`. The host answers later with
  :meth:`IpcServer.reply`, or never (a one-way message such as a multicast). Replies to one
  message id on one connection are matched to its requests oldest first.
* **Back-pressure.** :meth:`pause_reading` stops reading every client (the host calls it
  during sync or when its ring towards the Totem process is full); requests already received
  stay queued, bounded by what one read returns, and are delivered on :meth:`resume_reading`.
* **Bounded output.** Replies and notifications go straight to the socket. A client that
  reads nothing for ``stall_seconds`` while more than ``stall_bytes`` wait for it, or that
  falls ``max_outbound_bytes`` behind, is disconnected (see ``exec/ipc_session.py``).
* **Goodbye.** However a connection ends — the client closes, the host calls
  :meth:`disconnect`, a malformed frame, a client that does not read, :meth:`close` — the host
  hears :meth:`IpcHost.disconnected` exactly once for every connection it accepted.

Nothing a client sends can raise out of the server: a malformed frame closes that client
only, and a host callback that raises is logged and the connection carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from pycorosync.exec.ipc_session import IpcSession
from pycorosync.exec.logsys import subsys_logger
from pycorosync.lib.errors import CsErrorCode, ExistError, TooBigError
from pycorosync.lib.ipc_paths import socket_path
from pycorosync.lib.ipc_wire import (
    DEFAULT_MAX_BODY,
    Frame,
    FrameKind,
    Hello,
    encode_hello,
    encode_notify,
)
from pycorosync.plugins.engine import ClientConnection

__all__ = ["IpcHost", "IpcLimits", "IpcServer"]

log = subsys_logger("IPC")

LISTEN_BACKLOG = 128
"""libqb's SERVER_BACKLOG."""


class IpcHost(Protocol):
    """The worker, as the IPC server calls it (always from the server's event loop)."""

    def connected(self, service: str, conn: ClientConnection) -> CsErrorCode:
        """CS_OK accepts; any other code is sent to the client and the connection closed."""
        ...

    def request(
        self, service: str, conn: ClientConnection, message_id: int, payload: bytes
    ) -> None:
        """A client request; answer later with :meth:`IpcServer.reply`, or never (one-way)."""
        ...

    def disconnected(self, service: str, conn: ClientConnection) -> None:
        """An accepted connection has gone, for whatever reason; called once per connection."""
        ...


@dataclass(frozen=True, slots=True)
class IpcLimits:
    max_outbound_bytes: int = 256 * 1024 * 1024
    """Output queued in the worker for one client beyond what its socket holds; over it the
    client is disconnected at once, reading or not: the worker's memory stays bounded."""
    stall_bytes: int = 4 * 1024 * 1024
    """Above this much queued output a client must keep reading: Corosync never drops an event
    for a slow client, so a client that reads, however slowly, keeps its connection up to
    ``max_outbound_bytes``. Keep it above the largest frame the host sends."""
    stall_seconds: float = 10.0
    """A client above ``stall_bytes`` that has read nothing for this long is not reading and
    is disconnected."""
    max_inbound_frame: int = DEFAULT_MAX_BODY
    """Largest request body accepted (Corosync's 1 MiB plus slack); larger is refused."""
    max_outbound_frame: int = DEFAULT_MAX_BODY
    """Largest reply or notification body; the host sending more is a bug (TooBigError)."""
    max_pending_requests: int = 1024
    """Unanswered requests one client may hold; more are answered CS_ERR_TRY_AGAIN."""


class IpcServer:
    def __init__(
        self,
        run_dir: str,
        host: IpcHost,
        authorize: Callable[[int, int], bool],
        limits: IpcLimits = IpcLimits(),
    ) -> None:
        self._run_dir = run_dir
        self._host = host
        self._authorize = authorize
        self._limits = limits
        self._conn_ids = itertools.count(1)
        self._servers: dict[str, tuple[asyncio.AbstractServer, str]] = {}
        self._sessions: dict[int, IpcSession] = {}
        self._unadmitted: set[IpcSession] = set()
        self._paused = False
        self._peak_buffered = 0

    # -- the worker's API --------------------------------------------------------------

    async def listen(self, service: str) -> None:
        """Start serving ``service``; ExistError if it is served already (here or by a live
        process), NameTooLongError if its socket path does not fit a Unix address."""
        if service in self._servers:
            raise ExistError(f"service {service!r} is already served")
        path = socket_path(self._run_dir, service)
        _remove_stale_socket(path)
        loop = asyncio.get_running_loop()
        server = await loop.create_unix_server(
            lambda: self._new_session(service), path, backlog=LISTEN_BACKLOG
        )
        # Who may connect is decided by the peer's credentials, not by the file's mode.
        os.chmod(path, 0o666)
        self._servers[service] = (server, path)
        log.info("IPC server listening for %s on %s", service, path)

    def reply(
        self,
        conn: ClientConnection,
        message_id: int,
        payload: bytes,
        error: CsErrorCode = CsErrorCode.CS_OK,
    ) -> None:
        """Answer the oldest unanswered request ``message_id`` of ``conn``; a closed
        connection is ignored."""
        self._check_size(payload)
        session = self._sessions.get(conn.conn_id)
        if session is not None:
            session.respond(message_id, payload, error)

    def dispatch(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        """Send a notification (a callback); a closed connection is ignored."""
        self._check_size(payload)
        session = self._sessions.get(conn.conn_id)
        if session is not None:
            session.send_encoded(encode_notify(message_id, payload))

    def pause_reading(self) -> None:
        self._paused = True
        for session in self._sessions.values():
            session.pause()

    def resume_reading(self) -> None:
        self._paused = False
        for session in list(self._sessions.values()):
            session.resume()

    def disconnect(self, conn: ClientConnection) -> None:
        """Close ``conn`` now; the host hears :meth:`IpcHost.disconnected` as usual."""
        session = self._sessions.get(conn.conn_id)
        if session is not None:
            session.abort()

    async def close(self) -> None:
        """Stop listening, drop every connection, unlink the socket files."""
        for server, _ in self._servers.values():
            server.close()
        for session in [*self._sessions.values(), *self._unadmitted]:
            session.abort()
        for server, path in self._servers.values():
            await server.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._servers.clear()

    # -- accounting, for the worker's stats and for tests ------------------------------

    @property
    def connections(self) -> list[ClientConnection]:
        return [s.conn for s in self._sessions.values() if s.conn is not None]

    def buffered_bytes(self) -> int:
        """Output queued in this process towards all clients right now."""
        return sum(s.buffered_bytes for s in self._sessions.values())

    @property
    def peak_buffered_bytes(self) -> int:
        """The largest output ever queued towards one client."""
        return self._peak_buffered

    # -- SessionOwner ------------------------------------------------------------------

    @property
    def reading_paused(self) -> bool:
        return self._paused

    def admit(self, session: IpcSession, pid: int, uid: int, gid: int) -> None:
        if not self._authorize(uid, gid):
            log.warning("Denied connection attempt from %d:%d (pid %d)", uid, gid, pid)
            self._refuse(session, CsErrorCode.CS_ERR_ACCESS)
            return
        conn = ClientConnection(conn_id=next(self._conn_ids), pid=pid, uid=uid, gid=gid)
        verdict = self._ask_host(session.service, conn)
        if verdict != CsErrorCode.CS_OK:
            self._refuse(session, verdict)
            return
        self._unadmitted.discard(session)
        session.conn = conn
        self._sessions[conn.conn_id] = session
        session.send(self._hello(CsErrorCode.CS_OK, conn.conn_id))
        if self._paused:
            session.pause()

    def deliver(self, session: IpcSession, frame: Frame) -> None:
        conn = session.conn
        if conn is None:
            return
        try:
            self._host.request(session.service, conn, frame.message_id, frame.body)
        except Exception:
            log.exception("Host failed on request %d from %s", frame.message_id, conn)

    def forget(self, session: IpcSession) -> None:
        self._unadmitted.discard(session)
        conn = session.conn
        if conn is None or self._sessions.pop(conn.conn_id, None) is None:
            return
        try:
            self._host.disconnected(session.service, conn)
        except Exception:
            log.exception("Host failed on disconnect of %s", conn)

    def note_buffered(self, size: int) -> None:
        self._peak_buffered = max(self._peak_buffered, size)

    # -- internals ---------------------------------------------------------------------

    def _new_session(self, service: str) -> IpcSession:
        session = IpcSession(
            self,
            service,
            max_body=self._limits.max_inbound_frame,
            max_outbound_bytes=self._limits.max_outbound_bytes,
            stall_bytes=self._limits.stall_bytes,
            stall_seconds=self._limits.stall_seconds,
            max_pending_requests=self._limits.max_pending_requests,
        )
        self._unadmitted.add(session)
        return session

    def _ask_host(self, service: str, conn: ClientConnection) -> CsErrorCode:
        try:
            return CsErrorCode(self._host.connected(service, conn))
        except Exception:
            log.exception("Host failed to accept %s", conn)
            return CsErrorCode.CS_ERR_LIBRARY

    def _refuse(self, session: IpcSession, code: CsErrorCode) -> None:
        self._unadmitted.discard(session)
        session.close_after(self._hello(code, 0))

    def _hello(self, code: CsErrorCode, conn_id: int) -> Frame:
        body = encode_hello(Hello(conn_id, self._limits.max_inbound_frame))
        return Frame(FrameKind.HELLO, 0, body, 0, code)

    def _check_size(self, payload: bytes) -> None:
        if len(payload) > self._limits.max_outbound_frame:
            raise TooBigError(f"{len(payload)} byte payload over {self._limits.max_outbound_frame}")


def _remove_stale_socket(path: str) -> None:
    """Unlink a socket left by a dead process; ExistError if a live one still answers."""
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
    else:
        raise ExistError(f"{path} is served by another live process")
    finally:
        probe.close()
