"""Worker processes, as the Totem process starts, feeds and supervises them.

Theory of operation
-------------------
Engines are placed as DESIGN.md says: every engine that asks for a worker of its own
(``own_worker``) gets one; all others share worker 0. For each worker the Totem process
creates two shared-memory channels (:mod:`pycorosync.exec.shmring`) - Totem → worker and
worker → Totem - and starts a *fresh interpreter* (``python -m pycorosync.exec.worker``) that
inherits only those channels' fds (``pass_fds``) and a pipe on its stdin: the worker exits when
that pipe closes, so a Totem process that dies never leaves workers behind.

Sending to a worker (:meth:`WorkerLink.send`) stamps every record with the next number of the
worker's sequence (see :mod:`pycorosync.exec.worker_proto`). A record that finds its lane full
goes to a per-worker overflow queue, and so does every record after it until the queue is
drained, so the order never breaks; the worker's space wake-up drains it. That overflow is the
worker's *delivery budget*: a worker that keeps a non-empty overflow for longer than the token
timeout is not keeping up with the ring and is treated as crashed (killed, then restarted by
the owner), because Totem itself can never wait for it.

Receiving: the worker → Totem channel is read when its eventfd fires, SYNC lane first; the
records go to the owner's ``on_record``. The owner may refuse a multicast (its SRP queue is
full); it then keeps that record and calls :meth:`WorkerLink.pause` until the token makes room,
so the ring between them fills and the worker's clients see ``CS_ERR_TRY_AGAIN``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pycorosync.exec.logsys import subsys_logger
from pycorosync.exec.shmring import Channel, ChannelReader, ChannelWriter, Lane, ShmRingError
from pycorosync.exec.worker_proto import Record, WorkerProtoError, decode, encode
from pycorosync.plugins.engine import ServiceEngine

log = subsys_logger("MAIN")

READ_BATCH = 256
"""Records taken from a worker per loop turn, so one busy worker cannot hog the Totem loop."""


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Which engines one worker hosts (in load order)."""

    index: int
    engines: tuple[type[ServiceEngine], ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(engine.name for engine in self.engines)

    @property
    def services(self) -> tuple[int, ...]:
        return tuple(engine.service_id for engine in self.engines)


def plan_workers(engines: Sequence[type[ServiceEngine]]) -> list[WorkerPlan]:
    """Worker 0 hosts the engines that share; each ``own_worker`` engine gets the next one."""
    shared = tuple(engine for engine in engines if not engine.own_worker)
    alone = [engine for engine in engines if engine.own_worker]
    plans = [WorkerPlan(0, shared)] if shared else []
    for engine in alone:
        plans.append(WorkerPlan(len(plans), (engine,)))
    return plans


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    """What every worker is told at start, besides its channels."""

    run_dir: str
    logging_keys: Mapping[str, str]
    token_timeout: float
    """Seconds a worker may stay over its delivery budget before it is treated as crashed."""
    lane_capacity: int = 4 << 20


OnRecord = Callable[["WorkerLink", Record], None]
OnExit = Callable[["WorkerLink", int | None], None]


@dataclass(slots=True)
class _Overflow:
    records: deque[tuple[Lane, bytes]] = field(default_factory=deque)
    since: float | None = None


class WorkerLink:
    """One running worker: its process, its two channels and the send/receive plumbing."""

    def __init__(
        self,
        plan: WorkerPlan,
        settings: WorkerSettings,
        loop: asyncio.AbstractEventLoop,
        on_record: OnRecord,
        on_exit: OnExit,
        *,
        on_batch: Callable[[], None] | None = None,
    ) -> None:
        self.plan = plan
        self._settings = settings
        self._loop = loop
        self._on_record = on_record
        self._on_batch = on_batch
        """Called after the records of one wake-up were handed over (not from take_ready,
        which runs inside a Totem step that flushes anyway)."""
        self._on_exit = on_exit
        self._down = Channel.create(settings.lane_capacity)
        self._up = Channel.create(settings.lane_capacity)
        self._writer: ChannelWriter = self._down.writer()
        self._reader: ChannelReader = self._up.reader()
        self._stamp = 0
        self._overflow = _Overflow()
        self._paused = False
        self._closed = False
        self._pending: deque[bytes] = deque()
        """Records taken from the ring but not yet handed over (the owner paused us)."""
        self._more = False
        self._garbled = False
        self.process: subprocess.Popen[bytes] | None = None
        self._pidfd: int | None = None
        self.exited = asyncio.Event()
        self.ready = False
        self.finished = asyncio.Event()
        """Set when the worker said its engines are unloaded, or when it exited."""
        self.exit_code: int | None = None

    # -- life cycle --------------------------------------------------------------------------

    def spawn(self) -> None:
        spec = {
            "down": self._down.fds.to_arg(),
            "up": self._up.fds.to_arg(),
            "engines": list(self.plan.names),
            "index": self.plan.index,
            "run_dir": self._settings.run_dir,
            "logging": dict(self._settings.logging_keys),
        }
        fds = (*self._down.fds.all(), *self._up.fds.all())
        # subprocess, not the loop's subprocess support: it closes every other fd (uvloop's
        # leaks the Totem socket, the pid lock and the other end of the parent pipe, so an
        # orphaned worker would never see the pipe close).
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pycorosync.exec.worker", json.dumps(spec)],
            stdin=subprocess.PIPE,
            pass_fds=fds,
            close_fds=True,
        )
        self._pidfd = os.pidfd_open(self.process.pid)
        self._loop.add_reader(self._pidfd, self._on_process_exit)
        self._loop.add_reader(self._reader.data_fileno, self._on_readable)
        self._loop.add_reader(self._writer.space_fileno, self._on_space)
        log.debug(
            "Worker %d started (pid %d): %s", self.plan.index, self.process.pid, self.plan.names
        )

    def _on_process_exit(self) -> None:
        process, pidfd = self.process, self._pidfd
        if process is None or pidfd is None:
            return
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        self._pidfd = None
        code = process.wait()  # it has exited: no wait
        self.exit_code = code
        self._on_readable()  # whatever it managed to write before it went
        self.close()
        self.finished.set()
        self.exited.set()
        self._on_exit(self, code)

    def kill(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._reader.data_fileno)
        self._loop.remove_reader(self._writer.space_fileno)
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # the worker's cue to exit, if it still runs
        self._down.close()
        self._up.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- towards the worker ------------------------------------------------------------------

    def send(self, record: Record, lane: Lane = Lane.APP) -> None:
        """Queue ``record`` for the worker, in order; never refuses (see the budget)."""
        if self._closed:
            return
        self._stamp += 1
        data = encode(record, self._stamp)
        overflow = self._overflow
        if not overflow.records and self._writer.write(lane, data):
            return
        if overflow.since is None:
            overflow.since = self._loop.time()
            self._writer.want_space()
        overflow.records.append((lane, data))

    def over_budget(self, now: float) -> bool:
        since = self._overflow.since
        return since is not None and now - since > self._settings.token_timeout

    @property
    def backlog(self) -> int:
        return len(self._overflow.records)

    def _on_space(self) -> None:
        self._writer.ack_space()
        overflow = self._overflow
        while overflow.records:
            lane, data = overflow.records[0]
            if not self._writer.write(lane, data):
                self._writer.want_space()
                return
            overflow.records.popleft()
        overflow.since = None

    # -- from the worker ---------------------------------------------------------------------

    def pause(self) -> None:
        """Stop taking records until :meth:`resume` (the owner holds one it could not send)."""
        self._paused = True

    def resume(self) -> None:
        if self._paused and not self._closed:
            self._paused = False
            self._loop.call_soon(self._on_readable)

    def take_ready(self) -> None:
        """Hand over what the worker has written so far, without waiting for its wake-up.

        The owner calls this when the token arrives: a multicast the worker wrote while the
        token was on its way would otherwise be read after the token has left (the datagram
        and the eventfd become ready in one poll, and the datagram is served first), and wait
        a whole rotation. It neither arms nor consumes the wake-up, so an empty ring costs no
        system call; a wake-up that comes later finds the ring empty and arms as usual (an
        unarmed reader always has an :meth:`_on_readable` pending)."""
        if not self._pending:
            self._take(arm=False)

    def _on_readable(self) -> None:
        self._take(arm=True)
        if self._on_batch is not None:
            self._on_batch()

    def _take(self, *, arm: bool) -> None:
        if self._paused or self._closed or self._garbled:
            return
        try:
            if not self._pending:
                self._fill(arm=arm)
        except ShmRingError as error:
            self._garbage(error)
            return
        self._hand_over()
        if self._more and not self._paused:
            self._loop.call_soon(self._on_readable)

    def _hand_over(self) -> None:
        try:
            while self._pending and not self._paused:
                _stamp, record = decode(self._pending.popleft())
                self._on_record(self, record)
        except WorkerProtoError as error:
            self._garbage(error)

    def _garbage(self, error: Exception) -> None:
        log.error("Worker %d sent garbage (%s); restarting it", self.plan.index, error)
        self._garbled = True  # read nothing more from it: it is being killed
        self._pending.clear()
        self._more = False
        self.kill()

    def _fill(self, *, arm: bool) -> None:
        records = self._reader.read(READ_BATCH)
        if not records and arm and self._reader.ack_and_arm():
            records = self._reader.read(READ_BATCH)
        # A reader that arms reads again until the ring is empty: only a reader that armed
        # itself (found it empty) is woken by the worker's next record. One that does not
        # arm leaves that to the wake-up, and reads again only after a full batch.
        self._more = bool(records) if arm else len(records) == READ_BATCH
        self._pending.extend(data for _lane, data in records)

    def __repr__(self) -> str:
        pid = self.process.pid if self.process is not None else None
        return f"WorkerLink({self.plan.index}, pid={pid}, engines={self.plan.names})"
