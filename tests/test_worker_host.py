"""The engine host of a worker, driven record by record with a fake loop and fake clients."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from pycorosync.exec.icmap import CmapStore
from pycorosync.exec.icmap_records import encode_change, encode_snapshot
from pycorosync.exec.shmring import Lane
from pycorosync.exec.totem.events import ConfigKind, Guarantee, RingId
from pycorosync.exec.worker_host import WorkerHost
from pycorosync.exec.worker_proto import (
    CmapChanges,
    ConfChg,
    Deliver,
    Init,
    McastRequest,
    Quorum,
    Ready,
    Record,
    Shutdown,
    Stats,
    SyncDone,
    SyncStep,
    SyncStepKind,
    Unloaded,
    WorkerProtoError,
)
from pycorosync.lib.cmap_types import CmapEntry, ValueType
from pycorosync.lib.errors import CsErrorCode, NotExistError
from pycorosync.plugins.engine import (
    ClientConnection,
    ExecHandler,
    ExecutiveApi,
    FlowControl,
    LibHandler,
    SendStatus,
)
from tests._engines import ValidEngine

RING = RingId(3, 1)
CONN = ClientConnection(conn_id=1, pid=10, uid=0, gid=0)


class _Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeLoop:
    soon: list[tuple[_Handle, Callable[[], None]]] = field(default_factory=list)
    later: list[tuple[float, _Handle, Callable[[], None]]] = field(default_factory=list)

    def call_soon(self, callback: Callable[[], None]) -> _Handle:
        handle = _Handle()
        self.soon.append((handle, callback))
        return handle

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle()
        self.later.append((delay, handle, callback))
        return handle

    def run_soon(self) -> int:
        ran = 0
        while self.soon:
            handle, callback = self.soon.pop(0)
            if not handle.cancelled:
                callback()
                ran += 1
        return ran

    def run_later(self) -> None:
        pending, self.later = self.later, []
        for _delay, handle, callback in pending:
            if not handle.cancelled:
                callback()


@dataclass
class FakeClients:
    replies: list[tuple[int, int, bytes, CsErrorCode]] = field(default_factory=list)
    notes: list[tuple[int, int, bytes]] = field(default_factory=list)

    def reply(
        self, conn: ClientConnection, message_id: int, payload: bytes, error: CsErrorCode
    ) -> None:
        self.replies.append((conn.conn_id, message_id, payload, error))

    def dispatch(self, conn: ClientConnection, message_id: int, payload: bytes) -> None:
        self.notes.append((conn.conn_id, message_id, payload))


class Recorder(ValidEngine):
    """Records every call into a shared journal, multicasts on request, syncs in steps."""

    name: ClassVar[str] = "recorder"
    service_id: ClassVar[int] = 40
    priority: ClassVar[int] = 1
    allow_inquorate: ClassVar[bool] = False
    journal: ClassVar[list[str]] = []
    sync_passes: ClassVar[int] = 1
    exit_passes: ClassVar[int] = 1

    def exec_init(self, api: ExecutiveApi) -> None:
        self.api = api
        self.passes = 0
        self.exits = 0
        self.journal.append(f"{self.name} exec_init")

    def exec_exit(self) -> bool:
        self.exits += 1
        self.journal.append(f"{self.name} exec_exit {self.exits}")
        return self.exits >= self.exit_passes

    def confchg(self, kind: ConfigKind, *args: Any) -> None:
        self.journal.append(f"{self.name} confchg {kind.name}")

    def sync_init(self, *args: Any) -> None:
        self.passes = 0
        self.journal.append(f"{self.name} sync_init {args}")

    def sync_process(self) -> bool:
        self.passes += 1
        self.journal.append(f"{self.name} sync_process {self.passes}")
        return self.passes >= self.sync_passes

    def sync_activate(self) -> None:
        self.journal.append(f"{self.name} sync_activate")

    def sync_abort(self) -> None:
        self.journal.append(f"{self.name} sync_abort")

    def _exec_note(self, payload: bytes, sender: int) -> None:
        self.journal.append(f"{self.name} exec {payload!r} from {sender}")

    def _exec_boom(self, payload: bytes, sender: int) -> None:
        raise RuntimeError("engine bug")

    def _lib_send(self, conn: ClientConnection, payload: bytes) -> None:
        status = self.api.mcast(0, payload)
        self.api.reply(conn, 1, b"", status.cs_error)

    def _lib_read(self, conn: ClientConnection, payload: bytes) -> None:
        self.api.reply(conn, 2, str(self.api.cmap_get(payload.decode())).encode())

    exec_handlers: ClassVar[Mapping[int, ExecHandler[Any]]] = {
        0: ExecHandler(_exec_note),
        1: ExecHandler(_exec_boom),
    }
    lib_handlers: ClassVar[Mapping[int, LibHandler[Any]]] = {
        0: LibHandler(_lib_send, FlowControl.REQUIRED),
        1: LibHandler(_lib_read, FlowControl.NOT_REQUIRED),
    }


class Early(Recorder):
    name: ClassVar[str] = "early"
    service_id: ClassVar[int] = 41
    priority: ClassVar[int] = 0


@dataclass
class Rig:
    host: WorkerHost
    loop: FakeLoop
    clients: FakeClients
    sent: list[tuple[Record, Lane]]
    accept: list[bool]


@pytest.fixture
def rig() -> Rig:
    Recorder.journal.clear()
    Recorder.sync_passes = Recorder.exit_passes = 1
    loop, clients = FakeLoop(), FakeClients()
    sent: list[tuple[Record, Lane]] = []
    accept = [True]

    def to_totem(record: Record, lane: Lane) -> bool:
        if accept[0]:
            sent.append((record, lane))
        return accept[0]

    host = WorkerHost([Recorder, Early], to_totem=to_totem, clients=clients, scheduler=loop)
    store = CmapStore()
    store.set("totem.cluster_name", "alpha", ValueType.STRING)
    host.apply(Init(5, encode_snapshot(store.snapshot())))
    return Rig(host, loop, clients, sent, accept)


def test_init_starts_engines_in_load_order_and_reports_its_services(rig: Rig) -> None:
    assert Recorder.journal == ["early exec_init", "recorder exec_init"]
    assert rig.sent == [(Ready((41, 40)), Lane.SYNC)]
    assert rig.host.nodeid == 5
    with pytest.raises(WorkerProtoError, match="second Init"):
        rig.host.apply(Init(5, b""))


def test_a_delivery_reaches_the_engine_of_its_service_with_its_sender(rig: Rig) -> None:
    rig.host.apply(Deliver(3, Guarantee.AGREED, ((40, 0, b"hi"),)))
    assert Recorder.journal[-1] == "recorder exec b'hi' from 3"


def test_unknown_services_functions_and_failing_handlers_lose_nothing_else(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        rig.host.apply(Deliver(3, Guarantee.AGREED, ((77, 0, b"x"),)))
        rig.host.apply(Deliver(3, Guarantee.AGREED, ((40, 9, b"x"),)))
        rig.host.apply(Deliver(3, Guarantee.AGREED, ((40, 1, b"x"),)))
    text = caplog.text
    assert "service 77, not hosted here" in text
    assert "unknown message 9 for service 40" in text
    assert "Engine recorder failed in its exec handler" in text
    rig.host.apply(Deliver(2, Guarantee.AGREED, ((40, 0, b"after"),)))
    assert Recorder.journal[-1] == "recorder exec b'after' from 2"


def test_a_configuration_change_reaches_every_engine_in_load_order(rig: Rig) -> None:
    rig.host.apply(ConfChg(ConfigKind.REGULAR, (1, 5), (), (1,), RING))
    assert Recorder.journal[-2:] == ["early confchg REGULAR", "recorder confchg REGULAR"]


def test_sync_process_runs_again_on_later_turns_until_done_then_reports(rig: Rig) -> None:
    Recorder.sync_passes = 3
    rig.host.apply(SyncStep(SyncStepKind.INIT, -1, RING, (5,), (1, 5)))
    assert rig.host.in_sync
    rig.host.apply(SyncStep(SyncStepKind.PROCESS, 40, RING))
    assert Recorder.journal[-1] == "recorder sync_process 1"
    assert not any(isinstance(r, SyncDone) for r, _ in rig.sent)
    assert rig.loop.run_soon() == 2
    assert Recorder.journal[-1] == "recorder sync_process 3"
    assert rig.sent[-1] == (SyncDone(40, RING), Lane.SYNC)
    rig.host.apply(SyncStep(SyncStepKind.ACTIVATE, 40, RING))
    assert Recorder.journal[-1] == "recorder sync_activate"
    rig.host.apply(SyncStep(SyncStepKind.COMPLETE, -1, RING))
    assert not rig.host.in_sync


def test_an_abort_stops_a_sync_process_that_was_still_running(rig: Rig) -> None:
    Recorder.sync_passes = 5
    rig.host.apply(SyncStep(SyncStepKind.INIT, -1, RING, (5,), (1, 5)))
    rig.host.apply(SyncStep(SyncStepKind.PROCESS, 40, RING))
    rig.host.apply(SyncStep(SyncStepKind.ABORT, 40, RING))
    rig.loop.run_soon()
    assert Recorder.journal[-1] == "recorder sync_abort"
    assert "recorder sync_process 2" not in Recorder.journal
    assert not any(isinstance(r, SyncDone) for r, _ in rig.sent)


def test_a_sync_step_for_a_service_not_hosted_is_a_protocol_error(rig: Rig) -> None:
    with pytest.raises(WorkerProtoError, match="service 7, not hosted"):
        rig.host.apply(SyncStep(SyncStepKind.PROCESS, 7, RING))


def test_multicasts_take_the_sync_lane_during_sync_and_would_block_when_full(rig: Rig) -> None:
    conn = CONN
    rig.host.client_request(40, conn, 0, b"app")
    assert rig.sent[-1] == (McastRequest(False, ((40, 0, Guarantee.AGREED, b"app"),)), Lane.APP)
    assert rig.clients.replies[-1] == (1, 1, b"", CsErrorCode.CS_OK)
    engine = rig.host.engine(40)
    rig.host.apply(SyncStep(SyncStepKind.INIT, -1, RING, (5,), (1, 5)))
    assert engine.api.mcast(0, b"sync") is SendStatus.QUEUED  # type: ignore[attr-defined]
    assert rig.sent[-1] == (McastRequest(True, ((40, 0, Guarantee.AGREED, b"sync"),)), Lane.SYNC)
    rig.host.apply(SyncStep(SyncStepKind.COMPLETE, -1, RING))
    rig.accept[0] = False
    rig.host.client_request(40, conn, 0, b"full")
    assert rig.clients.replies[-1] == (1, 1, b"", CsErrorCode.CS_ERR_TRY_AGAIN)
    assert rig.host.app_blocked


def test_an_engine_that_activated_sends_on_the_app_lane_while_the_round_runs_on(
    rig: Rig,
) -> None:
    # The SYNC lane is not held for a new ring: what still waits there when the ring breaks
    # goes out ahead of the next ring's sync. An activated engine's traffic is application
    # traffic, and waits for the round on the APP lane.
    engine = rig.host.engine(40)
    rig.host.apply(SyncStep(SyncStepKind.INIT, -1, RING, (5,), (1, 5)))
    rig.host.apply(SyncStep(SyncStepKind.ACTIVATE, 40, RING))
    assert rig.host.in_sync
    assert engine.api.mcast(0, b"after") is SendStatus.QUEUED  # type: ignore[attr-defined]
    assert rig.sent[-1] == (McastRequest(False, ((40, 0, Guarantee.AGREED, b"after"),)), Lane.APP)
    other = rig.host.engine(41)
    assert other.api.mcast(0, b"still syncing") is SendStatus.QUEUED  # type: ignore[attr-defined]
    assert rig.sent[-1][1] is Lane.SYNC
    rig.host.apply(SyncStep(SyncStepKind.INIT, -1, RING, (5,), (1, 5)))  # the next round
    assert engine.api.mcast(0, b"again") is SendStatus.QUEUED  # type: ignore[attr-defined]
    assert rig.sent[-1][1] is Lane.SYNC


def test_client_requests_are_admitted_as_corosyncs_ipc_glue_admits_them(rig: Rig) -> None:
    host, replies = rig.host, rig.clients.replies
    host.client_request(40, CONN, 9, b"")
    assert replies[-1] == (1, 9, b"", CsErrorCode.CS_ERR_INVALID_PARAM)
    host.apply(SyncStep(SyncStepKind.INIT, -1, RING, (5,), (5,)))
    host.client_request(40, CONN, 0, b"held during sync")
    assert replies[-1] == (1, 0, b"", CsErrorCode.CS_ERR_TRY_AGAIN)
    host.client_request(40, CONN, 1, b"totem.cluster_name")  # a read is not held
    assert replies[-1] == (1, 2, b"alpha", CsErrorCode.CS_OK)
    host.apply(SyncStep(SyncStepKind.COMPLETE, -1, RING))
    host.apply(Quorum(False))
    host.client_request(40, CONN, 1, b"totem.cluster_name")
    assert replies[-1] == (1, 1, b"", CsErrorCode.CS_ERR_TRY_AGAIN)  # not allow_inquorate
    host.client_request(99, CONN, 1, b"")
    assert replies[-1] == (1, 1, b"", CsErrorCode.CS_ERR_LIBRARY)


def test_cmap_changes_reach_the_replica_and_out_of_step_ones_are_refused(rig: Rig) -> None:
    store = CmapStore(record_changes=True)
    store.set("totem.cluster_name", "alpha", ValueType.STRING)
    store.take_changes()
    store.set("runtime.members.5.status", "joined", ValueType.STRING)
    changes = store.take_changes()
    rig.host.apply(CmapChanges(tuple(encode_change(c) for c in changes)))
    api = rig.host.engine(40).api  # type: ignore[attr-defined]
    assert api.cmap_get("runtime.members.5.status") == "joined"
    with pytest.raises(NotExistError):
        api.cmap_get("runtime.members.6.status")
    with pytest.raises(WorkerProtoError, match="out of step"):
        rig.host.apply(CmapChanges(tuple(encode_change(c) for c in changes)))


def test_timers_fire_once_and_deleted_ones_never(rig: Rig) -> None:
    api = rig.host.engine(40).api  # type: ignore[attr-defined]
    fired: list[str] = []
    api.timer_add(10, lambda: fired.append("a"))
    gone = api.timer_add(10, lambda: fired.append("b"))
    api.timer_delete(gone)
    api.timer_delete(gone)  # twice is harmless
    assert [delay for delay, _, _ in rig.loop.later] == [0.01, 0.01]
    rig.loop.run_later()
    assert fired == ["a"]


def test_shutdown_unloads_in_reverse_order_retrying_a_busy_engine(rig: Rig) -> None:
    Recorder.exit_passes = 2
    rig.host.apply(Shutdown())
    assert Recorder.journal[-1] == "recorder exec_exit 1"  # busy: called again later
    assert not rig.host.stopped
    rig.loop.run_later()
    rig.loop.run_later()
    exits = [line for line in Recorder.journal if "exec_exit" in line]
    assert exits == [
        "recorder exec_exit 1",
        "recorder exec_exit 2",
        "early exec_exit 1",
        "early exec_exit 2",
    ]
    assert rig.host.stopped
    assert rig.sent[-1] == (Unloaded(), Lane.SYNC)
    assert rig.host.client_connected(40, CONN) is CsErrorCode.CS_ERR_LIBRARY


def test_the_stats_map_is_the_totem_report_and_the_workers_own_figures(rig: Rig) -> None:
    rig.host.apply(Stats((("stats.srp.mcast_tx", 5), ("stats.net.rx", 9))))
    rig.host.local_stats = lambda: {"stats.ipcs.global.active": CmapEntry(ValueType.UINT64, 2)}
    api = rig.host.engine(40).api  # type: ignore[attr-defined]
    assert [key for key, _ in api.stats_iter("stats.")] == [
        "stats.ipcs.global.active",
        "stats.net.rx",
        "stats.srp.mcast_tx",
    ]
    assert api.stats_get_entry("stats.srp.mcast_tx") == CmapEntry(ValueType.UINT64, 5)
    rig.host.apply(Stats((("stats.srp.mcast_tx", 6),)))  # a report replaces the last one
    assert api.stats_get_entry("stats.srp.mcast_tx").value == 6
    with pytest.raises(NotExistError):
        api.stats_get_entry("stats.net.rx")


class Batcher(Recorder):
    """A recorder that also hears the end of every delivered batch."""

    name: ClassVar[str] = "batcher"
    service_id: ClassVar[int] = 42

    def exec_batch_end(self) -> None:
        self.journal.append(f"{self.name} batch end")


def test_an_engine_with_exec_batch_end_hears_it_after_each_deliver_record() -> None:
    host = WorkerHost(
        [Recorder, Batcher],
        to_totem=lambda r, lane: True,
        clients=FakeClients(),
        scheduler=FakeLoop(),
    )
    host.apply(Init(5, encode_snapshot(CmapStore().snapshot())))
    Recorder.journal.clear()
    host.apply(Deliver(3, Guarantee.AGREED, ((42, 0, b"a"), (40, 0, b"b"), (42, 0, b"c"))))
    host.apply(Deliver(2, Guarantee.AGREED, ((40, 0, b"d"),)))
    assert Recorder.journal == [
        "batcher exec b'a' from 3",
        "recorder exec b'b' from 3",
        "batcher exec b'c' from 3",
        "batcher batch end",
        "recorder exec b'd' from 2",
        "batcher batch end",  # every record ends a batch; the engine decides what it owes
    ]
