"""A CPG client process for real-process tests: joins a group and reports as JSON lines.

Usage: ``python -m tests._cpg_client RUN_DIR GROUP``. It prints ``{"ready": nodeid}`` once
joined, then one line per callback (``deliver`` / ``confchg``); every line read on stdin is
multicast to the group (retried while flow control says TRY_AGAIN). A line ``big SIZE SEED``
multicasts SIZE pseudo-random bytes instead; a delivered message over 1000 bytes is reported
as ``big SIZE SHA256`` rather than as text.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import select
import sys

from pycorosync.lib.cpg import CpgHandle, DispatchFlag, model_initialize
from pycorosync.lib.cpg_wire import MODEL_V1, CpgAddress, CpgRingId
from pycorosync.lib.errors import TryAgainError


def emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def rows(addresses: list[CpgAddress]) -> list[list[int]]:
    return [[a.nodeid, a.pid, int(a.reason)] for a in addresses]


def main() -> None:
    run_dir, group = sys.argv[1], sys.argv[2].encode()

    def deliver(group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        emit({"deliver": [nodeid, pid, describe(msg)]})

    def confchg(
        group: bytes, members: list[CpgAddress], left: list[CpgAddress], joined: list[CpgAddress]
    ) -> None:
        emit({"confchg": [rows(members), rows(left), rows(joined)]})

    def totem(ring_id: CpgRingId, members: list[int]) -> None:
        emit({"totem": members})

    handle = model_initialize(MODEL_V1, deliver, confchg, totem, run_dir=run_dir)
    join(handle, group)
    emit({"ready": handle.local_get(), "pid": os.getpid()})
    stdin = sys.stdin.buffer.raw  # type: ignore[attr-defined]
    while True:
        readable, _, _ = select.select([stdin, handle.fd_get()], [], [])
        if handle.fd_get() in readable:
            handle.dispatch(DispatchFlag.ALL)
        if stdin in readable:
            line = stdin.readline()
            if not line:
                return
            send(handle, message_for(line.strip()))


def describe(msg: bytes) -> str:
    if len(msg) > 1000:
        return f"big {len(msg)} {hashlib.sha256(msg).hexdigest()}"
    return msg.decode()


def message_for(line: bytes) -> bytes:
    """The bytes a stdin line asks to multicast."""
    if line.startswith(b"big "):
        _, size, seed = line.split()
        return random.Random(int(seed)).randbytes(int(size))
    return line


def join(handle: CpgHandle, group: bytes) -> None:
    """TRY_AGAIN while a sync round runs or the node drains: wait a little and retry."""
    while True:
        try:
            handle.join(group)
            return
        except TryAgainError:
            select.select([handle.fd_get()], [], [], 0.01)
            handle.dispatch(DispatchFlag.ALL)


def send(handle: CpgHandle, message: bytes) -> None:
    while True:
        try:
            handle.mcast_joined(2, message)
            return
        except TryAgainError:
            select.select([handle.fd_get()], [], [], 0.01)
            handle.dispatch(DispatchFlag.ALL)


if __name__ == "__main__":
    main()
