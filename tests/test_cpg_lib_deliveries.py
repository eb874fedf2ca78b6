"""libcpg over a real IPC connection when one DELIVER notification carries several messages:
one callback per message in order, CS_DISPATCH_ONE runs just one, and a callback that raises
or finalizes loses or leaks nothing."""

from __future__ import annotations

import select
from collections.abc import Iterator

import pytest

from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg import CpgHandle, DispatchFlag, _Callbacks
from pycorosync.lib.cpg_wire import CpgAddress, CpgRequestId, CpgResponseId
from pycorosync.lib.errors import BadHandleError, TryAgainError
from pycorosync.lib.ipc import IpcClient
from pycorosync.plugins.engine import ClientConnection
from tests._cpg_bench import Recorder
from tests._ipc_fixtures import short_run_dir
from tests._ipc_toy import ECHO, ServerThread

G = b"g"


@pytest.fixture
def served() -> Iterator[ServerThread]:
    for run_dir in short_run_dir():
        thread = ServerThread(run_dir)
        answer_finalize(thread)
        yield thread
        thread.stop()


def answer_finalize(thread: ServerThread) -> None:
    toy = thread.host.request

    def request(service: str, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        if message_id == CpgRequestId.FINALIZE:
            thread.server.reply(conn, message_id, b"")
        else:
            toy(service, conn, message_id, payload)

    thread.host.request = request  # type: ignore[method-assign]


class Seen(Recorder):
    """Records the callbacks; raises or finalizes at a chosen message."""

    def __init__(self) -> None:
        super().__init__()
        self.fail_on: bytes | None = None
        self.finalize_on: bytes | None = None
        self.handle: CpgHandle | None = None

    def deliver(self, group: bytes, nodeid: int, pid: int, msg: bytes) -> None:
        super().deliver(group, nodeid, pid, msg)
        if msg == self.finalize_on:
            assert self.handle is not None
            self.handle.finalize()
        if msg == self.fail_on:
            raise RuntimeError("callback failed")

    @property
    def seen(self) -> list[object]:
        """Each delivery's message, each confchg as "confchg"."""
        return [e[4] if e[0] == "deliver" else e[0] for e in self.events]


def connect(served: ServerThread) -> tuple[CpgHandle, IpcClient, Seen]:
    client = IpcClient("echo", run_dir=served.server_dir, timeout=10)
    seen = Seen()
    handle = CpgHandle(client, _Callbacks(seen.deliver, seen.confchg, None), 0, None)
    seen.handle = handle
    return handle, client, seen


def notify(served: ServerThread, client: IpcClient, *notes: tuple[int, bytes]) -> None:
    """Have the server send ``notes``; they have arrived when the echo after them has."""
    conn = served.host.accepted[-1]
    for message_id, body in notes:
        served.call(lambda m=message_id, b=body: served.server.dispatch(conn, m, b))
    client.request(ECHO, b"")


def deliveries(*messages: bytes) -> tuple[int, bytes]:
    entries: list[int | bytes] = []
    for message in messages:
        entries += [1, 10, message]
    return wire.DELIVER_CALLBACK_ID, wire.encode_deliveries(G, entries)


def confchg() -> tuple[int, bytes]:
    body = wire.ConfChgBody(G, (CpgAddress(1, 10),), (), ())
    return CpgResponseId.CONFCHG_CALLBACK, wire.encode_confchg(body)


def readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])


def test_every_message_of_a_deliver_gets_its_callback_in_order(served: ServerThread) -> None:
    handle, client, seen = connect(served)
    notify(served, client, deliveries(b"a", b"b", b"c"), confchg(), deliveries(b"d"))
    handle.dispatch(DispatchFlag.ALL)
    assert seen.seen == [b"a", b"b", b"c", "confchg", b"d"]
    assert not readable(handle.fd_get())
    handle.finalize()


def test_dispatch_one_runs_one_message_and_the_rest_stay_first_in_line(
    served: ServerThread,
) -> None:
    handle, client, seen = connect(served)
    notify(served, client, deliveries(b"a", b"b", b"c"), deliveries(b"d"))
    handle.dispatch(DispatchFlag.ONE)
    assert seen.seen == [b"a"]
    assert readable(handle.fd_get())  # a poll loop still wakes for the rest
    handle.dispatch(DispatchFlag.ONE_NONBLOCKING)
    handle.dispatch(DispatchFlag.ONE)
    assert seen.seen == [b"a", b"b", b"c"]
    handle.dispatch(DispatchFlag.ALL)
    assert seen.seen == [b"a", b"b", b"c", b"d"]
    with pytest.raises(TryAgainError):
        handle.dispatch(DispatchFlag.ONE_NONBLOCKING)
    handle.finalize()


def test_a_raising_callback_leaves_the_rest_of_its_deliver_queued(served: ServerThread) -> None:
    handle, client, seen = connect(served)
    seen.fail_on = b"b"
    notify(served, client, deliveries(b"a", b"b", b"c"), deliveries(b"d"))
    with pytest.raises(RuntimeError):
        handle.dispatch(DispatchFlag.ALL)
    assert seen.seen == [b"a", b"b"]
    assert readable(handle.fd_get())
    handle.dispatch(DispatchFlag.ALL)
    assert seen.seen == [b"a", b"b", b"c", b"d"]
    handle.finalize()


def test_a_finalize_in_a_callback_runs_nothing_more(served: ServerThread) -> None:
    handle, client, seen = connect(served)
    seen.finalize_on = b"a"
    notify(served, client, deliveries(b"a", b"b"), deliveries(b"c"))
    with pytest.raises(BadHandleError):
        handle.dispatch(DispatchFlag.ALL)
    assert seen.seen == [b"a"]
