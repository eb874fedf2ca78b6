"""A worker process: ``python -m pycorosync.exec.worker SPEC`` (started by the Totem process).

Theory of operation
-------------------
The Totem process starts each worker as a fresh interpreter (:mod:`pycorosync.exec.workers`)
with one JSON argument: the fds of its two shared-memory channels, the names of the engines it
hosts, the node's run directory and the logging keys. The worker

1. sets up logging as the daemon does, attaches both channels and loads its engine classes from
   the plugin registry (the same entry points the daemon found);
2. runs a uvloop loop with three inputs - the Totem → worker channel (records applied in stamp
   order by :class:`~pycorosync.exec.worker_host.WorkerHost`), the worker → Totem channel's
   space wake-up (resumes clients held back while it was full) and its stdin, the parent pipe:
   end-of-file there means the Totem process is gone, and the worker exits at once;
3. serves each engine's clients on ``<run_dir>/<engine>.sock``
   (:class:`~pycorosync.exec.ipc_server.IpcServer`), admitting peers that are root, the
   daemon's own uid or gid, or named by ``uidgid.uid.<uid>`` / ``uidgid.gid.<gid>`` keys;
4. after :class:`~pycorosync.exec.worker_proto.Shutdown` unloads the engines it exits 0.

An engine's application multicasts of one loop turn travel to the Totem process as one
record (:class:`~pycorosync.exec.mcast_cork.McastCork`).

A record that does not decode or does not fit the host's state means the two processes
disagree; the worker exits with an error and the Totem process restarts it.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import uvloop

from pycorosync.exec.ipc_server import IpcServer
from pycorosync.exec.logsys import LogSys, subsys_logger
from pycorosync.exec.mcast_cork import McastCork
from pycorosync.exec.scheduling import reset_scheduling
from pycorosync.exec.shmring import (
    Channel,
    ChannelFds,
    ChannelReader,
    ChannelWriter,
    Lane,
    ShmRingError,
)
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.worker_host import WorkerHost
from pycorosync.exec.worker_proto import (
    McastRequest,
    Record,
    StampOrder,
    WorkerProtoError,
    decode,
    encode,
)
from pycorosync.lib.cmap_types import CmapEntry, ValueType
from pycorosync.lib.errors import CsErrorCode
from pycorosync.plugins.engine import ClientConnection, ServiceEngine
from pycorosync.plugins.registry import ServiceRegistry

log = subsys_logger("SERV")

READ_BATCH = 512
EXIT_PROTOCOL_ERROR = 3


@dataclass(frozen=True, slots=True)
class WorkerSpec:
    down: ChannelFds
    up: ChannelFds
    engines: tuple[str, ...]
    index: int
    run_dir: str
    logging_keys: dict[str, str]

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        raw: dict[str, Any] = json.loads(text)
        return cls(
            down=ChannelFds.from_arg(raw["down"]),
            up=ChannelFds.from_arg(raw["up"]),
            engines=tuple(str(name) for name in raw["engines"]),
            index=int(raw["index"]),
            run_dir=str(raw["run_dir"]),
            logging_keys={str(k): str(v) for k, v in raw["logging"].items()},
        )


def load_engines(names: Sequence[str]) -> list[type[ServiceEngine]]:
    registry = ServiceRegistry.load()
    return [registry.by_name(name) for name in names]


class _ClientsBridge:
    """The host's :class:`~pycorosync.exec.worker_host.Clients`, once the IPC server exists."""

    server: IpcServer | None = None

    def reply(
        self, conn: ClientConnection, message_id: int, payload: bytes, error: CsErrorCode
    ) -> None:
        if self.server is not None:
            self.server.reply(conn, message_id, payload, error)

    def dispatch(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        if self.server is not None:
            self.server.dispatch(conn, message_id, payload)


class Worker:
    def __init__(self, spec: WorkerSpec, loop: asyncio.AbstractEventLoop) -> None:
        self._spec = spec
        self._loop = loop
        self._down = Channel.attach(spec.down)
        self._up = Channel.attach(spec.up)
        self._reader: ChannelReader = self._down.reader()
        self._writer: ChannelWriter = self._up.writer()
        self._order = StampOrder()
        self._clients = _ClientsBridge()
        classes = load_engines(spec.engines)
        self._services = {cls.name: cls.service_id for cls in classes}
        self.host = WorkerHost(
            classes,
            to_totem=self._to_totem,
            clients=self._clients,
            scheduler=loop,
            mcast_app=self._mcast_app,
        )
        self.server = IpcServer(spec.run_dir, self, self._authorize)
        self._clients.server = self.server
        self._closed_connections = 0
        self.host.local_stats = self._ipc_stats
        self.finished = asyncio.Event()
        self._closed = False
        self.exit_code = 0
        self._listening = False
        self._cork = McastCork(self._writer, loop.call_soon, self._fail)

    # -- channels ----------------------------------------------------------------------------

    def start(self) -> None:
        self._loop.add_reader(self._reader.data_fileno, self._on_records)
        self._loop.add_reader(self._writer.space_fileno, self._on_space)
        self._loop.add_reader(sys.stdin.fileno(), self._on_parent)
        self._loop.call_soon(self._on_records)

    def _mcast_app(self, service: int, function: int, guarantee: Guarantee, payload: bytes) -> bool:
        return self._cork.take_one(service, function, guarantee, payload)

    def _to_totem(self, record: Record, lane: Lane) -> bool:
        if lane is Lane.APP and isinstance(record, McastRequest) and not record.sync:
            return self._cork.take(record)
        self._cork.flush()  # this worker's records keep their order
        return self._write(record, lane)

    def _write(self, record: Record, lane: Lane) -> bool:
        sent = self._writer.write(lane, encode(record))
        if not sent:
            self._writer.want_space()
            if lane is Lane.SYNC:
                # Sync traffic is small and rare; a full SYNC lane means the Totem process is
                # not reading us at all, and only a restart resolves that.
                self._fail("the SYNC lane towards the Totem process is full")
        return sent

    def _on_space(self) -> None:
        if self._closed:
            return
        self._writer.ack_space()
        if self.host.app_blocked:
            self.host.app_blocked = False

    def _on_records(self) -> None:
        if self._closed:
            return
        try:
            records = self._reader.read(READ_BATCH)
            if not records and self._reader.ack_and_arm():
                records = self._reader.read(READ_BATCH)
            for _lane, data in records:
                stamp, record = decode(data)
                for ready in self._order.push(stamp, record):
                    self.host.apply(ready)
        except (ShmRingError, WorkerProtoError) as error:
            self._fail(str(error))
            return
        except Exception:
            # An engine failed where it cannot be skipped (exec_init, a sync callback): this
            # worker's state is lost; a restart rebuilds it through the sync protocol.
            log.exception("Worker %d: an engine failed", self._spec.index)
            self._fail("an engine failed")
            return
        if self.host.stopped:
            self.finished.set()
        elif records:
            self._loop.call_soon(self._on_records)
        if not self._listening and self.host.replica is not None:
            self._listening = True
            self._loop.create_task(self._listen())

    def _on_parent(self) -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            if not self.host.stopped:
                log.error("Worker %d: the Totem process is gone; exiting", self._spec.index)
            self._loop.remove_reader(sys.stdin.fileno())
            self.finished.set()

    def _fail(self, reason: str) -> None:
        log.error("Worker %d stops: %s", self._spec.index, reason)
        self.exit_code = EXIT_PROTOCOL_ERROR
        self.finished.set()

    # -- clients -----------------------------------------------------------------------------

    async def _listen(self) -> None:
        for name in self._spec.engines:
            await self.server.listen(name)

    def _authorize(self, uid: int, gid: int) -> bool:
        if uid == 0 or uid == os.getuid() or gid == os.getgid():
            return True
        replica = self.host.replica
        if replica is None:
            return False
        return f"uidgid.uid.{uid}" in replica or f"uidgid.gid.{gid}" in replica

    def connected(self, service: str, conn: ClientConnection) -> CsErrorCode:
        return self.host.client_connected(self._services[service], conn)

    def request(
        self, service: str, conn: ClientConnection, message_id: int, payload: bytes
    ) -> None:
        self.host.client_request(self._services[service], conn, message_id, payload)

    def disconnected(self, service: str, conn: ClientConnection) -> None:
        self._closed_connections += 1
        self.host.client_disconnected(self._services[service], conn)

    def _ipc_stats(self) -> dict[str, CmapEntry]:
        return {
            "stats.ipcs.global.active": CmapEntry(ValueType.UINT64, len(self.server.connections)),
            "stats.ipcs.global.closed": CmapEntry(ValueType.UINT64, self._closed_connections),
        }

    async def close(self) -> None:
        # Readers first: a callback already scheduled must find the channels still there or
        # see ``_closed``, never a released mapping.
        self._closed = True
        self._cork.drop()  # Unloaded, the last record, flushed it; anything newer is moot
        for fd in (self._reader.data_fileno, self._writer.space_fileno, sys.stdin.fileno()):
            self._loop.remove_reader(fd)
        await self.server.close()
        self._down.close()
        self._up.close()


async def _run(spec: WorkerSpec) -> int:
    worker = Worker(spec, asyncio.get_running_loop())
    worker.start()
    await worker.finished.wait()
    await worker.close()
    return worker.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        print(
            "usage: python -m pycorosync.exec.worker SPEC (started by corosync-exec)",
            file=sys.stderr,
        )
        return 2
    reset_scheduling()  # workers never run real-time, whatever the Totem process runs at
    spec = WorkerSpec.from_json(args[0])
    # A Ctrl-C, timeout(1) or systemd's stop signals the whole process group (or cgroup);
    # the Totem process unloads the engines in order, and its pipe closing ends us anyway.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_IGN)
    with LogSys() as logsys:
        logsys.apply(spec.logging_keys)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_run(spec))


if __name__ == "__main__":
    sys.exit(main())
