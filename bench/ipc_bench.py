"""Client IPC throughput over one Unix socket: round trips and one-way sends per second.

Usage: ``python bench/ipc_bench.py [--seconds S]``. It starts a fresh interpreter running an
``IpcServer`` on uvloop with an echo host (as a worker would run it), connects one blocking
``IpcClient`` and measures, for 64 B and 1 KiB payloads:

* ``request_per_s``: request/response round trips, one at a time (Corosync's blocking style);
* ``send_per_s``: one-way sends (a multicast's shape), counted once the host has taken them
  all (a final request is the barrier); ``try_again`` is how often the socket was full (the
  sender then retries at once, as a Corosync client spinning on CS_ERR_TRY_AGAIN does).

Each figure is the best of three rounds. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import select
import shutil
import subprocess
import sys
import tempfile
import time

import msgpack
import uvloop

from pycorosync.exec.ipc_server import IpcServer
from pycorosync.lib.errors import CsErrorCode, TryAgainError
from pycorosync.lib.ipc import IpcClient
from pycorosync.plugins.engine import ClientConnection

SERVICE = "bench"
ECHO, ONE_WAY, COUNT = 1, 2, 3
SIZES = {"64B": 64, "1KiB": 1024}
ROUNDS = 3


class EchoHost:
    def __init__(self) -> None:
        self.server: IpcServer | None = None
        self.received = 0

    def connected(self, service: str, conn: ClientConnection) -> CsErrorCode:
        return CsErrorCode.CS_OK

    def request(
        self, service: str, conn: ClientConnection, message_id: int, payload: bytes
    ) -> None:
        assert self.server is not None
        if message_id == ECHO:
            self.server.reply(conn, ECHO, payload)
        elif message_id == ONE_WAY:
            self.received += 1
        elif message_id == COUNT:
            self.server.reply(conn, COUNT, msgpack.packb(self.received))

    def disconnected(self, service: str, conn: ClientConnection) -> None:
        pass


async def _serve(run_dir: str) -> None:
    host = EchoHost()
    host.server = IpcServer(run_dir, host, lambda uid, gid: True)
    await host.server.listen(SERVICE)
    print("ready", flush=True)
    await asyncio.get_running_loop().create_future()


def _request_rate(client: IpcClient, payload: bytes, seconds: float) -> float:
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            client.request(ECHO, payload)
        count += 100
    return count / (time.perf_counter() - start)


def _send_rate(client: IpcClient, payload: bytes, seconds: float) -> tuple[float, int]:
    before = msgpack.unpackb(client.request(COUNT, b""))
    count, try_again, start = 0, 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            while True:
                try:
                    client.send(ONE_WAY, payload)
                    break
                except TryAgainError:
                    try_again += 1
        count += 100
    taken = msgpack.unpackb(client.request(COUNT, b"")) - before
    assert taken == count, (taken, count)
    return count / (time.perf_counter() - start), try_again


def _start_server(run_dir: str) -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", run_dir], stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 30)
    if not ready or server.stdout.readline().strip() != "ready":
        server.kill()
        raise SystemExit("the benchmark server did not start")
    return server


def _measure(run_dir: str, seconds: float) -> dict[str, object]:
    client = IpcClient(SERVICE, run_dir=run_dir, timeout=30)
    results: dict[str, object] = {}
    for name, size in SIZES.items():
        payload = b"x" * size
        slice_s = seconds / ROUNDS
        rates = [_request_rate(client, payload, slice_s) for _ in range(ROUNDS)]
        results[f"request_per_s_{name}"] = round(max(rates))
        sends = [_send_rate(client, payload, slice_s) for _ in range(ROUNDS)]
        results[f"send_per_s_{name}"] = round(max(rate for rate, _ in sends))
        results[f"try_again_{name}"] = sum(retries for _, retries in sends)
    client.finalize()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per figure")
    parser.add_argument("--serve", metavar="RUN_DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        uvloop.run(_serve(args.serve))
        return
    run_dir = tempfile.mkdtemp(prefix="ipcb", dir="/tmp")
    server = _start_server(run_dir)
    try:
        results = _measure(run_dir, args.seconds)
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps({"transport": "unix stream, one socket", "server_loop": "uvloop", **results}))


if __name__ == "__main__":
    main()
