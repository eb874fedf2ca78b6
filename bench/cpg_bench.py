"""Throughput of the CPG per-message path pieces (operations per second), in process.

Usage: ``python bench/cpg_bench.py [--seconds S] [--size BYTES]``. Cases, each run for about
``S`` seconds on one core of this host, with no IPC and no rings:

* ``engine_accept_mcast``: the engine's MCAST lib handler (decode the client's body, check the
  connection, encode the executive message, ``api.mcast``);
* ``engine_deliver_to_3``: the engine's MCAST exec handler delivering one message to three
  local members (decode, membership check, gather for each), with the batch's end (one
  DELIVER notification per member) every ``PER_BATCH`` messages;
* ``lib_decode_deliver``: libcpg decoding a DELIVER notification of ``PER_BATCH`` messages and
  running their callbacks, per message;
* ``sync_round_100_groups``: one sync round of a 3-node FakeCluster with 100 groups of 3
  processes (joinlists, merge, confchgs), in rounds per second.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from pycorosync.exec.totem.events import RingId
from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg import CpgHandle, _Callbacks
from pycorosync.lib.cpg_wire import CpgExecId, CpgRequestId, CpgResponseId
from pycorosync.plugins.engine import ClientConnection
from pycorosync.plugins.testing import FakeCluster, FakeExecutive
from pycorosync.services.cpg import CpgEngine

BATCH = 200
PER_BATCH = 32
"""Messages per delivered batch: a Totem delivery under load carries dozens."""
G = b"cpg_bm"


def _rate(operation: Callable[[], object], seconds: float) -> int:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(BATCH):
            operation()
        count += BATCH
    return round(count / (time.perf_counter() - start))


def _joined_engine(members: int) -> tuple[CpgEngine, FakeExecutive, list[ClientConnection]]:
    api = FakeExecutive(1)
    engine = CpgEngine()
    engine.exec_init(api)
    engine.sync_init((1,), (1,), RingId(seq=1, rep=1))
    engine.sync_process()
    api.outbox.clear()
    engine.sync_activate()
    conns = []
    for pid in range(1, members + 1):
        conn = ClientConnection(conn_id=pid, pid=pid, uid=0, gid=0)
        engine.lib_init(conn)
        engine.lib_handlers[CpgRequestId.JOIN].handler(engine, conn, wire.encode_join(G, pid, 0))
        engine.exec_handlers[CpgExecId.PROCJOIN].handler(engine, api.outbox.pop().payload, 1)
        conns.append(conn)
    return engine, api, conns


def bench_accept(seconds: float, size: int) -> int:
    engine, api, conns = _joined_engine(1)
    body = wire.encode_mcast(2, bytes(size))
    handler = engine.lib_handlers[CpgRequestId.MCAST].handler

    def one() -> None:
        handler(engine, conns[0], body)
        if len(api.outbox) > 10_000:
            api.outbox.clear()

    return _rate(one, seconds)


def bench_deliver(seconds: float, size: int) -> int:
    engine, api, _ = _joined_engine(3)
    payload = wire.encode_exec_mcast(G, 1, bytes(size))
    handler = engine.exec_handlers[CpgExecId.MCAST].handler

    def one() -> None:
        for _ in range(PER_BATCH):
            handler(engine, payload, 1)
        engine.exec_batch_end()
        if len(api.notifications) > 10_000:
            api.notifications.clear()

    return _rate(one, seconds) * PER_BATCH


def bench_lib_decode(seconds: float, size: int) -> int:
    got: list[bytes] = []
    callbacks = _Callbacks(lambda g, n, p, m: got.append(m), lambda *a: None, None)
    handle = CpgHandle(None, callbacks, 0, None)  # type: ignore[arg-type]  # never sends
    body = wire.encode_deliveries(G, [1, 1, bytes(size)] * PER_BATCH)

    def one() -> None:
        handle._on_message(CpgResponseId.DELIVER_CALLBACK, body)
        if len(got) > 10_000:
            got.clear()

    return _rate(one, seconds) * PER_BATCH


def bench_sync_round(seconds: float) -> float:
    cluster = FakeCluster(CpgEngine, [1, 2, 3])
    cluster.change_membership([1, 2, 3])
    for group in range(100):
        for node in (1, 2, 3):
            conn = cluster.connect(node, pid=group * 10 + node)
            body = wire.encode_join(b"g%d" % group, conn.pid, 0)
            cluster.request(node, conn, CpgRequestId.JOIN, body)
    cluster.deliver()
    rounds = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        cluster.change_membership([1, 2, 3])
        for executive in cluster.executives.values():
            executive.notifications.clear()
        rounds += 1
    return round(rounds / (time.perf_counter() - start), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args(argv)
    result = {
        "message_bytes": args.size,
        "engine_accept_mcast_per_s": bench_accept(args.seconds, args.size),
        "engine_deliver_to_3_per_s": bench_deliver(args.seconds, args.size),
        "lib_decode_deliver_per_s": bench_lib_decode(args.seconds, args.size),
        "sync_round_100_groups_per_s": bench_sync_round(args.seconds),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
