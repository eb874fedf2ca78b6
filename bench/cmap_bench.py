"""Throughput of the cmap path pieces that run per request (operations per second).

Usage: ``python bench/cmap_bench.py [--seconds S]``. Cases, each run for about ``S`` seconds
on one core of this host, in process (no IPC, no rings):

* ``owner_apply_set``: :func:`apply_write` of a SET that changes the value (a MODIFY record);
* ``write_request_codec``: encode and decode one SET request for the worker → Totem ring;
* ``engine_get``: the engine's GET handler answering from the replica (decode, look up,
  encode, reply);
* ``lib_get`` / ``lib_set``: ``CmapHandle.get`` / ``.set`` through a transport that calls the
  engine directly (a set includes the owner applying it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from pycorosync.exec.cmap_owner import CmapSet, apply_write
from pycorosync.exec.cmap_owner_wire import (
    WriteRequest,
    decode_write_request,
    encode_write_request,
)
from pycorosync.exec.icmap import CmapStore
from pycorosync.lib import cmap_wire as wire
from pycorosync.lib.cmap import CmapHandle
from pycorosync.lib.cmap_types import ValueType
from pycorosync.lib.errors import CsErrorCode, error_for
from pycorosync.plugins.engine import ClientConnection
from pycorosync.plugins.testing import FakeExecutive
from pycorosync.services.cmap import CmapEngine

BATCH = 1000
KEY = "bench.key"


def _rate(operation: Callable[[], object], seconds: float) -> int:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(BATCH):
            operation()
        count += BATCH
    return round(count / (time.perf_counter() - start))


class _DirectTransport:
    """Calls the engine's lib handler at once and lets the owner apply writes."""

    def __init__(self) -> None:
        self.api = FakeExecutive(1)
        self.engine = CmapEngine()
        self.engine.exec_init(self.api)
        self.conn = ClientConnection(conn_id=1, pid=1, uid=0, gid=0)
        self.engine.lib_init(self.conn)

    def request(self, message_id: int, payload: bytes) -> bytes:
        CmapEngine.lib_handlers[message_id].handler(self.engine, self.conn, payload)
        self.api.apply_cmap_writes()
        reply = self.api.replies.pop()
        if reply.error is not CsErrorCode.CS_OK:
            raise error_for(reply.error)
        return reply.payload

    def fd_get(self) -> int:
        return -1

    def dispatch(self, flags: int, callback: Callable[[int, bytes], None]) -> None:
        self.api.notifications.clear()

    def finalize(self) -> None:
        self.engine.lib_exit(self.conn)


def _owner_apply(seconds: float) -> int:
    store = CmapStore()
    values = iter(range(1 << 62))
    return _rate(lambda: apply_write(store, CmapSet(KEY, next(values), ValueType.UINT64)), seconds)


def _codec(seconds: float) -> int:
    request = WriteRequest(7, CmapSet(KEY, 12345, ValueType.UINT32))
    return _rate(lambda: decode_write_request(encode_write_request(request)), seconds)


def _engine_get(seconds: float) -> int:
    transport = _DirectTransport()
    transport.api.store.set(KEY, 1, ValueType.UINT32)
    body = wire.encode_key(KEY)
    return _rate(lambda: transport.request(wire.CmapRequestId.GET, body), seconds)


def _lib(seconds: float) -> dict[str, int]:
    transport = _DirectTransport()
    cmap = CmapHandle(transport)
    cmap.set_uint32(KEY, 1)
    values = iter(range(1 << 31))
    return {
        "lib_get_per_s": _rate(lambda: cmap.get(KEY), seconds),
        "lib_set_per_s": _rate(lambda: cmap.set_uint32(KEY, next(values)), seconds),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    seconds = parser.parse_args(argv).seconds
    result = {
        "python": sys.version.split()[0],
        "owner_apply_set_per_s": _owner_apply(seconds),
        "write_request_codec_per_s": _codec(seconds),
        "engine_get_per_s": _engine_get(seconds),
        **_lib(seconds),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
