"""The worker's IPC server and the blocking client, over real Unix sockets.

The server runs with a toy host on a uvloop loop in a thread of this process, so that the
tests can read its accounting; ``test_ipc_process.py`` covers a server in another process.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterator

import msgpack
import pytest

from pycorosync.exec.ipc_server import IpcLimits, IpcServer
from pycorosync.exec.ipc_session import CORK_BYTES
from pycorosync.lib.errors import (
    AccessError,
    BadHandleError,
    CsError,
    CsErrorCode,
    CsTimeoutError,
    ExistError,
    InvalidParamError,
    LibraryError,
    NameTooLongError,
    NotExistError,
    TooBigError,
    TryAgainError,
)
from pycorosync.lib.ipc import DispatchFlag, IpcClient
from pycorosync.lib.ipc_wire import HEADER, MAGIC, VERSION, Frame, FrameKind
from tests._ipc_fixtures import RawPeer, short_run_dir
from tests._ipc_toy import COUNT, ECHO, FAIL, NOTIFY, STORE, ServerThread

Received = list[tuple[int, bytes]]


@pytest.fixture
def run_dir() -> Iterator[str]:
    yield from short_run_dir()


@pytest.fixture
def served(run_dir: str) -> Iterator[ServerThread]:
    thread = ServerThread(run_dir)
    yield thread
    thread.stop()


def _client(run_dir: str, service: str = "echo", timeout: float = 10) -> IpcClient:
    return IpcClient(service, run_dir=run_dir, timeout=timeout)


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def _index(payload: bytes) -> int:
    return int(struct.unpack_from("<I", payload)[0])


# -- requests, one-way sends, connection identity -------------------------------------


def test_requests_are_answered_and_connections_identified(served: ServerThread) -> None:
    first, second = _client(served.server_dir), _client(served.server_dir)
    assert first.request(ECHO, b"ping") == b"ping"
    assert second.request(ECHO, b"x" * 100_000) == b"x" * 100_000
    assert first.conn_id != second.conn_id
    accepted = served.host.accepted
    assert {c.conn_id for c in accepted} == {first.conn_id, second.conn_id}
    assert all((c.pid, c.uid, c.gid) == (os.getpid(), os.getuid(), os.getgid()) for c in accepted)
    first.finalize()
    second.finalize()


def test_a_non_ok_response_raises_its_error_and_the_connection_lives_on(
    served: ServerThread,
) -> None:
    client = _client(served.server_dir)
    with pytest.raises(NotExistError):
        client.request(FAIL, msgpack.packb(CsErrorCode.CS_ERR_NOT_EXIST))
    assert client.request(ECHO, b"still here") == b"still here"
    client.finalize()


def test_one_way_sends_reach_the_host_in_order_without_a_reply(served: ServerThread) -> None:
    client = _client(served.server_dir, "oneway")
    payloads = [b"m%d" % i for i in range(200)]
    for payload in payloads:
        client.send(STORE, payload)
    # The stream is ordered, so the count is answered after every send was handed on.
    assert msgpack.unpackb(client.request(COUNT, b"")) == 200
    assert served.host.stored == payloads
    client.finalize()


def test_a_payload_over_the_limit_is_refused_before_sending(served: ServerThread) -> None:
    client = _client(served.server_dir)
    with pytest.raises(TooBigError):
        client.request(ECHO, b"x" * (2 << 20))
    assert client.request(ECHO, b"ok") == b"ok"
    client.finalize()


# -- dispatch -------------------------------------------------------------------------


def test_dispatch_one_nonblocking_and_all(served: ServerThread) -> None:
    client = _client(served.server_dir)
    seen: Received = []
    with pytest.raises(TryAgainError):
        client.dispatch(DispatchFlag.ONE_NONBLOCKING, lambda m, p: seen.append((m, p)))
    # Notifications sent before the response are queued by the request.
    client.request(NOTIFY, msgpack.packb([3, 8]))
    assert _readable(client.fd_get())
    client.dispatch(DispatchFlag.ONE_NONBLOCKING, lambda m, p: seen.append((m, p)))
    assert [_index(p) for _, p in seen] == [0]
    client.dispatch(DispatchFlag.ALL, lambda m, p: seen.append((m, p)))
    assert [_index(p) for _, p in seen] == [0, 1, 2]
    assert {m for m, _ in seen} == {7}
    assert not _readable(client.fd_get())
    with pytest.raises(TryAgainError):
        client.dispatch(DispatchFlag.ONE_NONBLOCKING, lambda m, p: seen.append((m, p)))
    client.dispatch(DispatchFlag.ALL, lambda m, p: seen.append((m, p)))  # nothing: returns
    assert len(seen) == 3
    client.finalize()


def test_a_raising_callback_leaves_the_rest_of_the_batch_queued_in_order(
    served: ServerThread,
) -> None:
    client = _client(served.server_dir)
    client.request(NOTIFY, msgpack.packb([5, 8]))  # all five arrive before the response
    seen: list[int] = []

    def fail_on_two(message_id: int, payload: bytes) -> None:
        seen.append(_index(payload))
        if _index(payload) == 2:
            raise RuntimeError("callback failed")

    with pytest.raises(RuntimeError):
        client.dispatch(DispatchFlag.ALL, fail_on_two)
    assert seen == [0, 1, 2]
    assert _readable(client.fd_get())  # the rest still wait, and say so
    client.dispatch(DispatchFlag.ALL, lambda m, p: seen.append(_index(p)))
    assert seen == [0, 1, 2, 3, 4]
    assert not _readable(client.fd_get())
    client.finalize()


def test_what_a_callback_puts_back_runs_next_ahead_of_the_rest(served: ServerThread) -> None:
    client = _client(served.server_dir)
    client.request(NOTIFY, msgpack.packb([3, 8]))
    seen: list[object] = []

    def put_back_the_first(message_id: int, payload: bytes) -> None:
        seen.append(_index(payload) if message_id == 7 else payload)
        if seen == [0]:
            client.put_back(99, b"rest of 0")

    client.dispatch(DispatchFlag.ALL, put_back_the_first)
    assert seen == [0, b"rest of 0", 1, 2]
    client.request(NOTIFY, msgpack.packb([2, 8]))
    seen.clear()
    client.dispatch(DispatchFlag.ONE_NONBLOCKING, lambda m, p: client.put_back(99, b"again"))
    assert _readable(client.fd_get())
    client.dispatch(DispatchFlag.ALL, put_back_the_first)
    assert seen == [b"again", 1]
    client.finalize()


def test_a_finalize_in_a_callback_stops_the_batch(served: ServerThread) -> None:
    client = _client(served.server_dir)
    client.request(NOTIFY, msgpack.packb([4, 8]))
    seen: list[int] = []

    def finalize_on_first(message_id: int, payload: bytes) -> None:
        seen.append(_index(payload))
        client.finalize()

    with pytest.raises(BadHandleError):
        client.dispatch(DispatchFlag.ALL, finalize_on_first)
    assert seen == [0]


def test_dispatch_one_waits_for_a_notification(served: ServerThread) -> None:
    client = _client(served.server_dir, "spam")
    seen: Received = []
    client.send(1, msgpack.packb([2, 16]))
    client.dispatch(DispatchFlag.ONE, lambda m, p: seen.append((m, p)))
    assert [_index(p) for _, p in seen] == [0]
    client.dispatch(DispatchFlag.ONE, lambda m, p: seen.append((m, p)))
    assert [_index(p) for _, p in seen] == [0, 1]
    client.finalize()


def test_dispatch_blocking_runs_beside_requests_until_finalize(served: ServerThread) -> None:
    client = _client(served.server_dir)
    seen: Received = []
    arrived = threading.Condition()
    outcome: list[BaseException] = []

    def on_notify(message_id: int, payload: bytes) -> None:
        with arrived:
            seen.append((message_id, payload))
            arrived.notify_all()

    def dispatcher() -> None:
        try:
            client.dispatch(DispatchFlag.BLOCKING, on_notify)
        except CsError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=dispatcher)
    thread.start()
    client.request(NOTIFY, msgpack.packb([50, 32]))
    with arrived:
        assert arrived.wait_for(lambda: len(seen) == 50, timeout=10)
    assert [_index(p) for _, p in seen] == list(range(50))
    client.finalize()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert len(outcome) == 1
    assert isinstance(outcome[0], BadHandleError)


def test_unknown_dispatch_flags_are_invalid(served: ServerThread) -> None:
    client = _client(served.server_dir)
    with pytest.raises(InvalidParamError):
        client.dispatch(9, lambda m, p: None)  # type: ignore[arg-type]
    client.finalize()


# -- back-pressure and bounded memory -------------------------------------------------

OUTBOUND_LIMIT = 256 * 1024


def test_a_client_that_does_not_read_is_disconnected_and_memory_stays_bounded(
    run_dir: str,
) -> None:
    served = ServerThread(run_dir, limits=IpcLimits(max_outbound_bytes=OUTBOUND_LIMIT))
    try:
        slow, healthy = _client(run_dir, "spam"), _client(run_dir)
        slow.send(1, msgpack.packb([20_000, 1024]))  # 20 MiB it will never read
        served.host.wait_for(lambda: any(c.conn_id == slow.conn_id for c in served.host.gone))
        frame = 1024 + HEADER.size
        # At most one cork's worth of frames is written past the limit before the check.
        bound = OUTBOUND_LIMIT + CORK_BYTES + frame
        assert OUTBOUND_LIMIT < served.server.peak_buffered_bytes <= bound
        assert served.call(served.server.buffered_bytes) == 0
        assert healthy.request(ECHO, b"unaffected") == b"unaffected"
        with pytest.raises(LibraryError):  # after what reached the socket before the cut
            slow.dispatch(DispatchFlag.BLOCKING, lambda m, p: None)
        with pytest.raises(LibraryError):
            slow.request(ECHO, b"")
        slow.finalize()
        healthy.finalize()
    finally:
        served.stop()


STALL_LIMITS = IpcLimits(max_outbound_bytes=64 << 20, stall_bytes=OUTBOUND_LIMIT, stall_seconds=1.0)


def test_a_slow_client_that_keeps_reading_gets_every_event(run_dir: str) -> None:
    served = ServerThread(run_dir, limits=STALL_LIMITS)
    try:
        slow = _client(run_dir, "spam")
        count = 4000
        slow.send(1, msgpack.packb([count, 1024]))  # 4 MiB queued at once, far over the mark
        received: list[int] = []

        def take(message_id: int, payload: bytes) -> None:
            received.append(struct.unpack_from("<I", payload)[0])

        while len(received) < count:
            # A reader slower than the stream: a short pause every 100 events. The kernel's
            # socket buffers hold megabytes, so the server sees it take bytes only in steps.
            if received and len(received) % 100 == 0:
                threading.Event().wait(0.02)
            slow.dispatch(DispatchFlag.ONE, take)
        assert received == list(range(count))
        assert served.server.peak_buffered_bytes > OUTBOUND_LIMIT
        assert all(c.conn_id != slow.conn_id for c in served.host.gone)
        slow.finalize()
    finally:
        served.stop()


def test_a_client_that_stops_reading_is_disconnected_after_the_stall_time(
    run_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pycorosync.IPC")
    served = ServerThread(run_dir, limits=STALL_LIMITS)
    try:
        stalled, healthy = _client(run_dir, "spam"), _client(run_dir)
        stalled.send(1, msgpack.packb([20_000, 1024]))  # 20 MiB: over the mark, under the cap
        served.host.wait_for(lambda: any(c.conn_id == stalled.conn_id for c in served.host.gone))
        assert served.server.peak_buffered_bytes < STALL_LIMITS.max_outbound_bytes
        assert any("it is not reading" in r.getMessage() for r in caplog.records)
        assert served.call(served.server.buffered_bytes) == 0
        assert healthy.request(ECHO, b"unaffected") == b"unaffected"
        stalled.finalize()
        healthy.finalize()
    finally:
        served.stop()


def test_reading_pauses_and_resumes(served: ServerThread) -> None:
    client = IpcClient("oneway", run_dir=served.server_dir, timeout=0.5)
    served.call(served.server.pause_reading)
    client.send(STORE, b"held")
    with pytest.raises(CsTimeoutError):
        client.request(COUNT, b"")
    assert served.host.stored == []
    served.call(served.server.resume_reading)
    served.host.wait_for(lambda: served.host.stored == [b"held"])
    # The late answer to the timed-out request is dropped; the next one is answered.
    assert msgpack.unpackb(client.request(COUNT, b"")) == 1
    client.finalize()


def test_unanswered_requests_per_client_are_bounded(run_dir: str) -> None:
    served = ServerThread(run_dir, limits=IpcLimits(max_pending_requests=2))
    try:
        peer = RawPeer(run_dir, "oneway")
        assert peer.next_frame() is not None  # hello
        for serial in (1, 2, 3):
            peer.send(Frame(FrameKind.REQUEST, STORE, b"s%d" % serial, serial))
        answer = peer.next_frame()
        assert answer is not None
        assert (answer.serial, answer.error) == (3, CsErrorCode.CS_ERR_TRY_AGAIN)
        served.host.wait_for(lambda: len(served.host.stored) == 2)
        peer.close()
    finally:
        served.stop()


# -- hostile and refused peers --------------------------------------------------------


@pytest.mark.parametrize(
    ("garbage", "code"),
    [
        (b"\x00" * HEADER.size, CsErrorCode.CS_ERR_MESSAGE_ERROR),
        (
            HEADER.pack(MAGIC, VERSION, FrameKind.REQUEST, 8 << 20, 1, 1, 1),
            CsErrorCode.CS_ERR_TOO_BIG,
        ),
        (
            HEADER.pack(MAGIC, VERSION + 1, FrameKind.REQUEST, 0, 1, 1, 1),
            CsErrorCode.CS_ERR_VERSION,
        ),
    ],
    ids=["bad-magic", "oversize", "version"],
)
def test_malformed_frames_are_refused_while_others_keep_working(
    served: ServerThread, garbage: bytes, code: CsErrorCode, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pycorosync.IPC")
    healthy = _client(served.server_dir)
    peer = RawPeer(served.server_dir, "echo")
    hello = peer.next_frame()
    assert hello is not None
    assert hello.kind == FrameKind.HELLO
    peer.sock.sendall(garbage)
    refusal = peer.next_frame()
    assert refusal is not None
    assert (refusal.kind, refusal.serial, refusal.error) == (FrameKind.RESPONSE, 0, code)
    assert peer.next_frame() is None  # closed after the refusal
    served.host.wait_for(lambda: len(served.host.gone) == 1)
    assert served.host.gone[0].conn_id != healthy.conn_id
    assert healthy.request(ECHO, b"fine") == b"fine"
    assert any("Malformed frame" in r.getMessage() for r in caplog.records)
    peer.close()
    healthy.finalize()


def test_an_unauthorised_peer_gets_access_denied(run_dir: str) -> None:
    asked: list[tuple[int, int]] = []

    def deny(uid: int, gid: int) -> bool:
        asked.append((uid, gid))
        return False

    served = ServerThread(run_dir, authorize=deny)
    try:
        with pytest.raises(AccessError):
            _client(run_dir)
        assert asked == [(os.getuid(), os.getgid())]
        assert served.host.accepted == []
        assert served.call(lambda: served.server.connections) == []
    finally:
        served.stop()


def test_the_hosts_refusal_reaches_the_client(served: ServerThread) -> None:
    served.host.refuse_with = CsErrorCode.CS_ERR_TRY_AGAIN
    with pytest.raises(TryAgainError):
        _client(served.server_dir)
    served.host.refuse_with = CsErrorCode.CS_OK
    _client(served.server_dir).finalize()


# -- lifecycle ------------------------------------------------------------------------


def test_a_handle_used_after_finalize_is_bad(served: ServerThread) -> None:
    client = _client(served.server_dir)
    client.finalize()
    with pytest.raises(BadHandleError):
        client.finalize()
    with pytest.raises(BadHandleError):
        client.request(ECHO, b"")
    with pytest.raises(BadHandleError):
        client.send(ECHO, b"")
    with pytest.raises(BadHandleError):
        client.fd_get()
    with pytest.raises(BadHandleError):
        client.dispatch(DispatchFlag.ALL, lambda m, p: None)
    served.host.wait_for(lambda: len(served.host.gone) == 1)


def test_the_host_can_disconnect_a_client(served: ServerThread) -> None:
    client = _client(served.server_dir)
    conn = served.host.accepted[0]
    served.call(lambda: served.server.disconnect(conn))
    served.host.wait_for(lambda: served.host.gone == [conn])
    with pytest.raises(LibraryError):
        client.request(ECHO, b"")
    client.finalize()


def test_no_daemon_is_a_library_error(run_dir: str) -> None:
    with pytest.raises(LibraryError):
        _client(run_dir)


def test_close_unlinks_sockets_and_says_goodbye(run_dir: str) -> None:
    served = ServerThread(run_dir)
    client = _client(run_dir)
    assert sorted(os.listdir(run_dir)) == ["echo.sock", "oneway.sock", "spam.sock"]
    served.stop()
    assert os.listdir(run_dir) == []
    assert [c.conn_id for c in served.host.gone] == [client.conn_id]
    with pytest.raises(LibraryError):
        client.request(ECHO, b"")
    client.finalize()


def test_a_live_socket_is_not_taken_over_but_a_stale_one_is(served: ServerThread) -> None:
    rival = IpcServer(served.server_dir, served.host, lambda uid, gid: True)
    with pytest.raises(ExistError):
        served.run(rival.listen("echo"))
    stale = os.path.join(served.server_dir, "stale.sock")
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(stale)
    dead.close()  # the file stays, nobody listens
    served.run(served.server.listen("stale"))
    _client(served.server_dir, "stale").finalize()


def test_a_socket_path_over_the_unix_limit_is_refused(served: ServerThread) -> None:
    long_dir = "/tmp/" + "d" * 110
    server = IpcServer(long_dir, served.host, lambda uid, gid: True)
    with pytest.raises(NameTooLongError, match="at most 107"):
        served.run(server.listen("echo"))
    with pytest.raises(NameTooLongError):
        IpcClient("echo", run_dir=long_dir)


def _send_until_try_again(client: IpcClient) -> int:
    for accepted in range(1_000_000):
        try:
            client.send(STORE, b"%07d" % accepted + b"." * 1000)
        except TryAgainError:
            return accepted
    raise AssertionError("the socket never filled up")


def test_a_full_socket_is_try_again_and_nothing_accepted_is_lost(served: ServerThread) -> None:
    # A short timeout: the send that the socket takes in part waits that long for room.
    client = _client(served.server_dir, "oneway", timeout=1)
    served.call(served.server.pause_reading)
    accepted = _send_until_try_again(client)  # the paused server lets the socket fill up
    served.call(served.server.resume_reading)
    # Every send that returned, including one the socket took only in part, arrives whole.
    assert msgpack.unpackb(client.request(COUNT, b"")) == accepted
    assert [int(p[:7]) for p in served.host.stored] == list(range(accepted))
    client.finalize()


def test_the_tail_of_a_one_way_frame_goes_out_without_another_send(served: ServerThread) -> None:
    # The socket takes part of a large one-way frame; the client then only dispatches. The
    # tail must still reach the daemon (fd_get polls for room meanwhile), or the last
    # multicast of a sender that stops sending would never arrive.
    client = IpcClient("oneway", run_dir=served.server_dir, timeout=0.5)
    served.call(served.server.pause_reading)
    accepted = []
    for i in range(64):
        payload = bytes([i]) * (256 * 1024)
        try:
            client.send(STORE, payload)
        except TryAgainError:
            break
        accepted.append(payload)
    assert accepted
    served.call(served.server.resume_reading)
    poller = select.poll()
    poller.register(client.fd_get(), select.POLLIN)
    deadline = time.monotonic() + 10
    while len(served.host.stored) < len(accepted) and time.monotonic() < deadline:
        if poller.poll(100):
            client.dispatch(DispatchFlag.ALL, lambda m, p: None)
    assert served.host.stored == accepted
    client.finalize()


def test_a_one_way_send_waits_for_room_to_finish_its_frame(served: ServerThread) -> None:
    # The socket takes part of a large one-way frame while the daemon does not read; the
    # daemon reads again soon. The send returns with the whole frame out, and it arrives
    # although the client never dispatches (libcpg's send blocks likewise).
    client = _client(served.server_dir, "oneway")
    served.call(served.server.pause_reading)
    payload = bytes(1024 * 1024)  # more than a Unix socket's buffers take at once
    resume = threading.Timer(0.3, lambda: served.call(served.server.resume_reading))
    resume.start()
    try:
        client.send(STORE, payload)
        assert not client._channel.holding
    finally:
        resume.join()
    served.host.wait_for(lambda: served.host.stored == [payload])
    client.finalize()
