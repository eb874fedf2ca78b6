"""The asyncio client against the worker's IPC server (toy host in a thread, real sockets)."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator

import msgpack
import pytest

from pycorosync.lib.errors import (
    AccessError,
    BadHandleError,
    CsErrorCode,
    LibraryError,
    NotExistError,
    TryAgainError,
)
from pycorosync.lib.ipc import AsyncIpcClient
from tests._ipc_fixtures import short_run_dir
from tests._ipc_toy import COUNT, ECHO, FAIL, NOTIFY, STORE, ServerThread


@pytest.fixture
def run_dir() -> Iterator[str]:
    yield from short_run_dir()


@pytest.fixture
def served(run_dir: str) -> Iterator[ServerThread]:
    thread = ServerThread(run_dir)
    yield thread
    thread.stop()


async def _connect(run_dir: str, service: str = "echo") -> AsyncIpcClient:
    return await AsyncIpcClient.connect(service, run_dir=run_dir, timeout=10)


async def _drain(client: AsyncIpcClient, into: list[bytes]) -> None:
    async for _, payload in client:
        into.append(payload)


def test_concurrent_requests_each_get_their_own_answer(served: ServerThread) -> None:
    async def scenario() -> None:
        client = await _connect(served.server_dir)
        payloads = [b"p%d" % i * (i + 1) for i in range(50)]
        answers = await asyncio.gather(*(client.request(ECHO, p) for p in payloads))
        assert answers == payloads
        with pytest.raises(NotExistError):
            await client.request(FAIL, msgpack.packb(CsErrorCode.CS_ERR_NOT_EXIST))
        assert client.conn_id == served.host.accepted[0].conn_id
        await client.aclose()

    asyncio.run(scenario())


def test_one_way_sends_and_notifications(served: ServerThread) -> None:
    async def scenario() -> None:
        oneway = await _connect(served.server_dir, "oneway")
        for index in range(100):
            oneway.send(STORE, b"%d" % index)
        assert msgpack.unpackb(await oneway.request(COUNT, b"")) == 100
        notified = await _connect(served.server_dir)
        await notified.request(NOTIFY, msgpack.packb([20, 64]))
        seen = []
        async for message_id, payload in notified:
            seen.append((message_id, struct.unpack_from("<I", payload)[0]))
            if len(seen) == 20:
                break
        assert seen == [(7, i) for i in range(20)]
        await oneway.aclose()
        await notified.aclose()

    asyncio.run(scenario())
    assert served.host.stored == [b"%d" % i for i in range(100)]


def test_after_aclose_every_call_is_a_bad_handle(served: ServerThread) -> None:
    async def scenario() -> None:
        client = await _connect(served.server_dir)
        await client.aclose()
        with pytest.raises(BadHandleError):
            await client.aclose()
        with pytest.raises(BadHandleError):
            await client.request(ECHO, b"")
        with pytest.raises(BadHandleError):
            client.send(ECHO, b"")
        with pytest.raises(BadHandleError):
            await anext(client)

    asyncio.run(scenario())


def test_daemon_gone_is_a_library_error_after_the_queued_notifications(run_dir: str) -> None:
    served = ServerThread(run_dir)

    async def scenario() -> None:
        client = await _connect(run_dir)
        await client.request(NOTIFY, msgpack.packb([3, 8]))
        await asyncio.to_thread(served.stop)
        with pytest.raises(LibraryError):
            await client.request(ECHO, b"")
        received: list[bytes] = []
        with pytest.raises(LibraryError):
            await _drain(client, received)
        assert len(received) == 3
        with pytest.raises(LibraryError):
            client.send(ECHO, b"")
        await client.aclose()

    asyncio.run(scenario())


def test_refused_and_missing_daemons(run_dir: str) -> None:
    async def scenario() -> None:
        with pytest.raises(LibraryError):
            await _connect(run_dir)
        served = ServerThread(run_dir, authorize=lambda uid, gid: False)
        try:
            with pytest.raises(AccessError):
                await _connect(run_dir)
        finally:
            await asyncio.to_thread(served.stop)

    asyncio.run(scenario())


def _send_until_try_again(client: AsyncIpcClient) -> int:
    for accepted in range(1_000_000):
        try:
            client.send(STORE, b"." * 4096)
        except TryAgainError:
            return accepted
    raise AssertionError("the transport never filled up")


def test_send_is_try_again_while_the_transport_is_full(served: ServerThread) -> None:
    async def scenario() -> None:
        client = await _connect(served.server_dir, "oneway")
        served.call(served.server.pause_reading)
        accepted = _send_until_try_again(client)
        served.call(served.server.resume_reading)
        assert msgpack.unpackb(await client.request(COUNT, b"")) == accepted
        await client.aclose()

    asyncio.run(scenario())
