"""Helpers shared by the IPC tests: a short run directory and a raw-socket peer."""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator

from pycorosync.lib.ipc_wire import Frame, FrameDecoder, FrameKind, encode_frame

ANY_KIND = frozenset(FrameKind)


def short_run_dir() -> Iterator[str]:
    """A fresh directory under /tmp: tmp_path can exceed a Unix socket path's 108 bytes."""
    path = tempfile.mkdtemp(prefix="ipc", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


class RawPeer:
    """A client speaking frames by hand, to send what the client library never would."""

    def __init__(self, run_dir: str, service: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(f"{run_dir}/{service}.sock")
        self._decoder = FrameDecoder(2 << 20, ANY_KIND)

    def send(self, frame: Frame) -> None:
        self.sock.sendall(encode_frame(frame))

    def next_frame(self) -> Frame | None:
        """The next frame, or None at end of stream (the socket's timeout is the deadline)."""
        while (frame := self._decoder.next_frame()) is None:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not data:
                return None
            self._decoder.feed(data)
        return frame

    def close(self) -> None:
        self.sock.close()
