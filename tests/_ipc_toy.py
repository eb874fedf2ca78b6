"""A toy IPC host for the IPC tests: an echo, a one-way and a notify-spam service.

It runs an :class:`IpcServer` on a uvloop loop of its own, either in a thread of the test
process (:class:`ServerThread`, so tests can read the server's accounting) or as a fresh
interpreter (``python tests/_ipc_toy.py RUN_DIR [--deny]``, which prints ``ready``).

Services and message ids:

* ``echo``: 1 answers with the payload; 2 answers with the error code given as payload
  (msgpack int); 3 ``[count, size]`` sends ``count`` notifications of ``size`` bytes (each
  starting with its index, u32) and then answers.
* ``oneway``: 1 is stored and never answered; 2 answers with how many were stored (msgpack).
* ``spam``: any message ``[count, size]`` sends the notifications; answered only if the
  request wanted an answer (a one-way request's reply is dropped by the server).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import struct
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import msgpack
import uvloop

from pycorosync.exec.ipc_server import IpcLimits, IpcServer
from pycorosync.lib.errors import CsErrorCode
from pycorosync.plugins.engine import ClientConnection

SERVICES = ("echo", "oneway", "spam")
ECHO, FAIL, NOTIFY = 1, 2, 3
STORE, COUNT = 1, 2
T = TypeVar("T")
DEFAULT_LIMITS = IpcLimits()


class ToyHost:
    def __init__(self) -> None:
        self.server: IpcServer | None = None
        self.accepted: list[ClientConnection] = []
        self.gone: list[ClientConnection] = []
        self.stored: list[bytes] = []
        self.refuse_with = CsErrorCode.CS_OK
        self.changed = threading.Condition()

    def connected(self, service: str, conn: ClientConnection) -> CsErrorCode:
        if self.refuse_with == CsErrorCode.CS_OK:
            self._note(self.accepted, conn)
        return self.refuse_with

    def request(
        self, service: str, conn: ClientConnection, message_id: int, payload: bytes
    ) -> None:
        assert self.server is not None
        if service == "oneway":
            self._oneway(conn, message_id, payload)
        elif service == "spam" or message_id == NOTIFY:
            self._spam(conn, payload)
            self.server.reply(conn, message_id, b"")
        elif message_id == ECHO:
            self.server.reply(conn, ECHO, payload)
        elif message_id == FAIL:
            self.server.reply(conn, FAIL, b"", CsErrorCode(msgpack.unpackb(payload)))

    def disconnected(self, service: str, conn: ClientConnection) -> None:
        self._note(self.gone, conn)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Wait until ``condition()`` holds (checked whenever the host saw something)."""
        with self.changed:
            if not self.changed.wait_for(condition, timeout):
                raise AssertionError("condition not reached in time")

    def _spam(self, conn: ClientConnection, payload: bytes) -> None:
        assert self.server is not None
        count, size = msgpack.unpackb(payload)
        for index in range(count):
            self.server.dispatch(conn, 7, struct.pack("<I", index).ljust(size, b"."))

    def _oneway(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        assert self.server is not None
        if message_id == STORE:
            self._note(self.stored, payload)
        elif message_id == COUNT:
            self.server.reply(conn, COUNT, msgpack.packb(len(self.stored)))

    def _note(self, into: list[Any], item: object) -> None:
        with self.changed:
            into.append(item)
            self.changed.notify_all()


class ServerThread:
    """An IpcServer with a ToyHost on a uvloop loop in a daemon thread."""

    def __init__(
        self,
        run_dir: str,
        *,
        authorize: Callable[[int, int], bool] = lambda uid, gid: True,
        limits: IpcLimits = DEFAULT_LIMITS,
    ) -> None:
        self.server_dir = run_dir
        self.host = ToyHost()
        self.loop = uvloop.new_event_loop()
        self.server = IpcServer(run_dir, self.host, authorize, limits)
        self.host.server = self.server
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        for service in SERVICES:
            self.run(self.server.listen(service))

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=10)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the server's loop and return its result."""
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def _run() -> None:
            try:
                done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(_run)
        return done.result(timeout=10)

    def wait_for_loop(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``condition`` on the server's loop until it holds (deadline ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not self.call(condition):
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached in time")
            self.call(lambda: None)  # one loop turn between checks

    def stop(self) -> None:
        self.run(self.server.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


async def _serve(run_dir: str, deny: bool) -> None:
    host = ToyHost()
    server = IpcServer(run_dir, host, lambda uid, gid: not deny)
    host.server = server
    for service in SERVICES:
        await server.listen(service)
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()  # serve until killed


if __name__ == "__main__":
    uvloop.run(_serve(sys.argv[1], "--deny" in sys.argv[2:]))
