"""Client IPC frames: the format both the worker's server and the client library speak.

Theory of operation
-------------------
A connection is a Unix stream socket carrying a sequence of frames. Each frame is a fixed
20-byte little-endian header followed by ``body_len`` bytes of body::

    magic u16 | version u8 | kind u8 | body_len u32 | message_id u32 | serial u32 | error i32

* ``kind`` is :class:`FrameKind`. The server speaks first: one HELLO on accept whose
  ``error`` says whether the connection is admitted (``CS_OK``) or why not (``CS_ERR_ACCESS``,
  ...). Then the client sends REQUESTs, the server answers with RESPONSEs and sends NOTIFYs
  (callbacks) whenever it likes.
* ``message_id`` is the per-service request/response number, as in Corosync.
* ``serial`` matches a RESPONSE to its REQUEST: the client numbers every request that wants an
  answer from 1 upwards and the response echoes it. Serial 0 means "no answer expected" (a
  one-way send, such as a multicast) in a REQUEST, and "not an answer to anything" in a
  RESPONSE (an error frame about a malformed input).
* ``error`` is a ``cs_error_t`` number; ``CS_OK`` (1) in every successful response.

The body is opaque bytes here; services msgpack their own payloads. The body size is checked
against the receiver's limit *before* the body is read, so a hostile length cannot make the
receiver buffer more than one legal frame. :class:`FrameDecoder` takes bytes as they arrive
and yields whole frames; a malformed header raises :class:`FrameError`, carrying the
``cs_error_t`` to report, and leaves the decoder unusable (a stream that lost its framing
cannot be resynchronised).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, NamedTuple

import msgpack

from pycorosync.lib.errors import CsErrorCode, LibraryError, error_for

__all__ = [
    "DEFAULT_MAX_BODY",
    "HEADER",
    "MAGIC",
    "VERSION",
    "Frame",
    "FrameDecoder",
    "FrameError",
    "FrameKind",
    "Hello",
    "check_hello",
    "decode_hello",
    "encode_frame",
    "encode_hello",
    "wire_serial",
]

MAGIC: Final = 0xC05C
VERSION: Final = 1
HEADER: Final = struct.Struct("<HBBIIIi")
"""magic, version, kind, body_len, message_id, serial, error."""
_HEADER_SIZE: Final = HEADER.size

DEFAULT_MAX_BODY: Final = 1024 * 1024 + 64 * 1024
"""Corosync's 1 MiB IPC message size, plus slack for the msgpack envelope of a service."""

U32_MAX: Final = 0xFFFF_FFFF


class FrameKind(IntEnum):
    HELLO = 1
    REQUEST = 2
    RESPONSE = 3
    NOTIFY = 4


class FrameError(Exception):
    """A frame that cannot be accepted; ``code`` is the ``cs_error_t`` to answer with."""

    def __init__(self, code: CsErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class Frame(NamedTuple):
    """One frame. A tuple rather than a frozen dataclass: a receiver builds one per delivered
    message, and a tuple costs a third of the time to make."""

    kind: FrameKind
    message_id: int
    body: bytes
    serial: int = 0
    error: int = CsErrorCode.CS_OK


_KINDS: Final = {int(kind): kind for kind in FrameKind}


def encode_frame(frame: Frame) -> bytes:
    """Header and body as one ``bytes`` (one write keeps a frame whole on the stream)."""
    if not 0 <= frame.message_id <= U32_MAX or not 0 <= frame.serial <= U32_MAX:
        raise ValueError(f"message id {frame.message_id} or serial {frame.serial} out of range")
    header = HEADER.pack(
        MAGIC,
        VERSION,
        frame.kind,
        len(frame.body),
        frame.message_id,
        frame.serial,
        frame.error,
    )
    return header + frame.body


def encode_request(message_id: int, body: bytes, serial: int) -> bytes:
    """``encode_frame(Frame(FrameKind.REQUEST, message_id, body, serial))`` without the Frame:
    a sender makes one per multicast."""
    if not 0 <= message_id <= U32_MAX or not 0 <= serial <= U32_MAX:
        raise ValueError(f"message id {message_id} or serial {serial} out of range")
    request, ok = FrameKind.REQUEST, CsErrorCode.CS_OK
    return HEADER.pack(MAGIC, VERSION, request, len(body), message_id, serial, ok) + body


def encode_notify(message_id: int, body: bytes) -> bytes:
    """``encode_frame(Frame(FrameKind.NOTIFY, message_id, body))`` without the Frame: a
    worker sends one notification per delivered message and client."""
    if not 0 <= message_id <= U32_MAX:
        raise ValueError(f"message id {message_id} out of range")
    notify = FrameKind.NOTIFY
    return HEADER.pack(MAGIC, VERSION, notify, len(body), message_id, 0, CsErrorCode.CS_OK) + body


class FrameDecoder:
    """A stream buffer: :meth:`feed` bytes as they arrive, then take frames from :meth:`frames`.

    ``expect`` restricts the kinds this side may receive (a server takes only REQUESTs).
    """

    def __init__(self, max_body: int, expect: frozenset[FrameKind]) -> None:
        self._max_body = max_body
        self._expect = expect
        self._buffer = bytearray()
        self._start = 0
        """Where the next frame begins: taken frames are cut off the buffer only on the next
        :meth:`feed`, once for a whole read rather than once a frame."""
        self._header: tuple[FrameKind, int, int, int, int] | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a whole frame (or wait to be taken)."""
        return len(self._buffer) - self._start

    def feed(self, data: bytes) -> None:
        if self._start:
            del self._buffer[: self._start]
            self._start = 0
        self._buffer += data

    def frames(self) -> Iterator[Frame]:
        """Every whole frame buffered so far; stop iterating to leave the rest buffered."""
        while (frame := self.next_frame()) is not None:
            yield frame

    def next_frame(self) -> Frame | None:
        """The next whole frame, None if there is none yet; FrameError for a bad header."""
        buffer, start, header = self._buffer, self._start, self._header
        if header is None:
            if len(buffer) - start < _HEADER_SIZE:
                return None
            header = self._header = self._parse_header(start)
        kind, body_len, message_id, serial, code = header
        begin = start + _HEADER_SIZE
        end = begin + body_len
        if len(buffer) < end:
            return None
        self._start, self._header = end, None
        return Frame(kind, message_id, bytes(buffer[begin:end]), serial, code)

    def take(self) -> tuple[list[Frame], FrameError | None]:
        """Every whole frame buffered, and the error of a malformed header after them (the
        frames before it are good; the stream is lost from the error on)."""
        return self._take(-1)

    def _take(self, limit: int) -> tuple[list[Frame], FrameError | None]:
        # One loop with locals: a client reads dozens of deliveries per recv.
        frames: list[Frame] = []
        buffer, start, header = self._buffer, self._start, self._header
        available = len(buffer)
        error = None
        while limit:
            if header is None:
                if available - start < _HEADER_SIZE:
                    break
                try:
                    header = self._parse_header(start)
                except FrameError as exc:
                    error = exc
                    break
            kind, body_len, message_id, serial, code = header
            begin = start + _HEADER_SIZE
            end = begin + body_len
            if available < end:
                break
            frames.append(Frame(kind, message_id, bytes(buffer[begin:end]), serial, code))
            start, header = end, None
            limit -= 1
        self._start, self._header = start, header
        return frames, error

    def _parse_header(self, start: int) -> tuple[FrameKind, int, int, int, int]:
        magic, version, kind, body_len, message_id, serial, error = HEADER.unpack_from(
            self._buffer, start
        )
        if magic != MAGIC:
            raise FrameError(CsErrorCode.CS_ERR_MESSAGE_ERROR, f"bad magic 0x{magic:04x}")
        if version != VERSION:
            raise FrameError(
                CsErrorCode.CS_ERR_VERSION, f"frame version {version}, we speak {VERSION}"
            )
        if kind not in self._expect:
            raise FrameError(CsErrorCode.CS_ERR_MESSAGE_ERROR, f"unexpected frame kind {kind}")
        if body_len > self._max_body:
            raise FrameError(
                CsErrorCode.CS_ERR_TOO_BIG, f"body of {body_len} bytes over {self._max_body}"
            )
        return _KINDS[kind], body_len, message_id, serial, error


@dataclass(frozen=True, slots=True)
class Hello:
    """What the server tells an admitted client."""

    conn_id: int
    max_body: int


def encode_hello(hello: Hello) -> bytes:
    return bytes(msgpack.packb([hello.conn_id, hello.max_body]))


def decode_hello(body: bytes) -> Hello:
    """Raises FrameError for a body that is not a HELLO's."""
    try:
        conn_id, max_body = msgpack.unpackb(body)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise FrameError(CsErrorCode.CS_ERR_MESSAGE_ERROR, f"malformed hello: {exc}") from exc
    if not isinstance(conn_id, int) or not isinstance(max_body, int):
        raise FrameError(CsErrorCode.CS_ERR_MESSAGE_ERROR, "malformed hello fields")
    return Hello(conn_id, max_body)


def check_hello(frame: Frame) -> Hello:
    """What an admitting HELLO says; the daemon's CsError for a refusal; LibraryError for a
    first frame that is no HELLO at all."""
    if frame.kind != FrameKind.HELLO:
        raise LibraryError(f"expected the daemon's hello, got frame kind {frame.kind}")
    if frame.error != CsErrorCode.CS_OK:
        raise error_for(frame.error, "the daemon refused the connection")
    try:
        return decode_hello(frame.body)
    except FrameError as exc:
        raise LibraryError(str(exc)) from exc


def wire_serial(count: int) -> int:
    """The ``count``-th request serial: 1 .. 2**32-1, wrapping (0 means "no answer")."""
    return (count - 1) % U32_MAX + 1
