"""A cpgverify-style CPG client for real-process tests: sends sequenced, checksummed messages
and reports everything it receives, in order, as JSON lines.

Usage: ``python -m tests._cpg_verifier RUN_DIR GROUP``. It joins GROUP and prints
``{"ready": [nodeid, pid]}``. Each stdin line is a command: ``send N`` multicasts N more
messages (a few milliseconds apart, retrying while flow control says TRY_AGAIN) and then
prints ``{"sent": total}``; ``quit`` leaves and exits. Every callback becomes a line:
``{"d": [nodeid, pid, seq]}`` for a message whose checksum holds, ``{"bad": [nodeid, pid]}``
for one whose checksum does not, ``{"c": [members, left, joined]}`` for a confchg (lists of
``[nodeid, pid, reason]``). A lost daemon ends the process with status 3.

A message is ``seq`` (u64), a CRC32 of the body, and a body of 16..1000 bytes that depends on
the sender and ``seq``, so a receiver can check any message without knowing who sent it.
"""

from __future__ import annotations

import json
import os
import random
import select
import struct
import sys
import time
import zlib

from pycorosync.lib.cpg import CpgHandle, DispatchFlag, model_initialize
from pycorosync.lib.cpg_wire import MODEL_V1, CpgAddress
from pycorosync.lib.errors import LibraryError, TryAgainError

HEADER = struct.Struct("<QII")
"""seq, crc32 of the body, the sender's pid (part of the body's seed)."""
SEND_GAP_S = 0.003


def body_for(pid: int, seq: int) -> bytes:
    rng = random.Random(pid * 1_000_003 + seq)
    return rng.randbytes(rng.randint(16, 1000))


def message(pid: int, seq: int) -> bytes:
    body = body_for(pid, seq)
    return HEADER.pack(seq, zlib.crc32(body), pid) + body


def check(msg: bytes) -> int | None:
    """The message's seq if its checksum holds."""
    if len(msg) < HEADER.size:
        return None
    seq, crc, pid = HEADER.unpack_from(msg)
    body = msg[HEADER.size :]
    if zlib.crc32(body) != crc or body != body_for(pid, seq):
        return None
    return int(seq)


def emit(record: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def rows(addresses: list[CpgAddress]) -> list[list[int]]:
    return [[a.nodeid, a.pid, int(a.reason)] for a in addresses]


class Verifier:
    def __init__(self, run_dir: str, group: bytes) -> None:
        self.group = group
        self.handle: CpgHandle = model_initialize(
            MODEL_V1, self._deliver, self._confchg, run_dir=run_dir
        )
        self.pid = os.getpid()
        self.sent = 0
        self.to_send = 0
        self.next_send = 0.0

    def _deliver(self, group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        seq = check(msg)
        emit({"bad": [nodeid, pid]} if seq is None else {"d": [nodeid, pid, seq]})

    def _confchg(
        self,
        group: bytes,
        members: list[CpgAddress],
        left: list[CpgAddress],
        joined: list[CpgAddress],
    ) -> None:
        emit({"c": [rows(members), rows(left), rows(joined)]})

    def join(self) -> None:
        while True:
            try:
                self.handle.join(self.group)
                return
            except TryAgainError:
                self.pump(0.01)

    def pump(self, timeout: float) -> None:
        readable, _, _ = select.select([self.handle.fd_get()], [], [], timeout)
        if readable:
            self.handle.dispatch(DispatchFlag.ALL)

    def send_due(self) -> None:
        if not self.to_send or time.monotonic() < self.next_send:
            return
        try:
            self.handle.mcast_joined(2, message(self.pid, self.sent + 1))
        except TryAgainError:
            return
        self.sent += 1
        self.to_send -= 1
        self.next_send = time.monotonic() + SEND_GAP_S
        if not self.to_send:
            emit({"sent": self.sent})

    def command(self, line: bytes) -> bool:
        """Run one stdin command; False to stop."""
        words = line.split()
        if not words or words[0] == b"quit":
            return False
        if words[0] == b"send":
            self.to_send += int(words[1])
        return True

    def run(self) -> None:
        self.join()
        emit({"ready": [self.handle.local_get(), self.pid]})
        stdin = sys.stdin.buffer.raw  # type: ignore[attr-defined]
        fd = self.handle.fd_get()
        while True:
            wait = SEND_GAP_S if self.to_send else None
            readable, _, _ = select.select([stdin, fd], [], [], wait)
            if fd in readable:
                self.handle.dispatch(DispatchFlag.ALL)
            if stdin in readable and not self.command(stdin.readline()):
                self.handle.leave(self.group)
                self.handle.finalize()
                return
            self.send_due()


def main() -> int:
    try:
        Verifier(sys.argv[1], sys.argv[2].encode()).run()
    except LibraryError as error:
        emit({"lost": str(error)})
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
