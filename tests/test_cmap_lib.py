"""lib/cmap against the real cmap engine, in process, with the owner's real checks."""

from __future__ import annotations

import select
from collections.abc import Callable
from pathlib import Path

import pytest

from pycorosync.lib import cmap as cmap_module
from pycorosync.lib.cmap import CmapHandle, DispatchFlags, initialize
from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, TrackFlags, ValueType
from pycorosync.lib.errors import (
    AccessError,
    BadHandleError,
    BusyError,
    InvalidParamError,
    LibraryError,
    NameTooLongError,
    NoSectionsError,
    NotExistError,
    NotSupportedError,
    TryAgainError,
)
from tests._cmap_bench import CmapBench

Event = tuple[TrackEvent, str, CmapEntry | None, CmapEntry | None]


@pytest.fixture
def bench() -> CmapBench:
    return CmapBench()


@pytest.fixture
def cmap(bench: CmapBench) -> CmapHandle:
    return bench.handle()


def test_set_then_get_every_type(cmap: CmapHandle) -> None:
    cmap.set_int8("t.i8", -5)
    cmap.set_uint8("t.u8", 255)
    cmap.set_int16("t.i16", -300)
    cmap.set_uint16("t.u16", 65535)
    cmap.set_int32("t.i32", -(1 << 31))
    cmap.set_uint32("t.u32", 1 << 31)
    cmap.set_int64("t.i64", -(1 << 63))
    cmap.set_uint64("t.u64", (1 << 64) - 1)
    cmap.set_float("t.flt", 0.1)
    cmap.set_double("t.dbl", 0.1)
    cmap.set_string("t.str", "héllo")
    cmap.set("t.bin", b"\x00\xff", ValueType.BINARY)
    assert cmap.get_int8("t.i8") == -5
    assert cmap.get_uint8("t.u8") == 255
    assert cmap.get_int16("t.i16") == -300
    assert cmap.get_uint16("t.u16") == 65535
    assert cmap.get_int32("t.i32") == -(1 << 31)
    assert cmap.get_uint32("t.u32") == 1 << 31
    assert cmap.get_int64("t.i64") == -(1 << 63)
    assert cmap.get_uint64("t.u64") == (1 << 64) - 1
    assert cmap.get_float("t.flt") == pytest.approx(0.1, rel=1e-7)
    assert cmap.get_float("t.flt") != 0.1  # rounded to a C float
    assert cmap.get_double("t.dbl") == 0.1
    assert cmap.get_string("t.str") == "héllo"
    assert cmap.get("t.bin") == CmapEntry(ValueType.BINARY, b"\x00\xff")
    assert cmap.get("t.str").length == len("héllo".encode()) + 1


def test_typed_getters_never_convert(cmap: CmapHandle) -> None:
    cmap.set_uint8("t.small", 3)
    with pytest.raises(InvalidParamError):
        cmap.get_uint32("t.small")
    with pytest.raises(InvalidParamError):
        cmap.get_string("t.small")


def test_corosync_errors_reach_the_client(bench: CmapBench, cmap: CmapHandle) -> None:
    bench.store.set("totem.cluster_name", "probe", ValueType.STRING)
    with pytest.raises(NotExistError):
        cmap.get("no.such.key")
    with pytest.raises(AccessError):
        cmap.set_string("totem.cluster_name", "other")
    with pytest.raises(AccessError):
        cmap.delete("totem.cluster_name")
    with pytest.raises(NameTooLongError):
        cmap.set_string("a", "b")  # too short: Corosync says NAME_TOO_LONG
    with pytest.raises(NameTooLongError):
        cmap.set_string("bad key", "b")
    with pytest.raises(NameTooLongError):
        cmap.get("k" * 256)  # refused client-side
    with pytest.raises(InvalidParamError):
        cmap.set_uint8("t.u8", 256)
    with pytest.raises(NotExistError):
        cmap.delete("no.such.key")
    assert cmap.get_string("totem.cluster_name") == "probe"


def test_inc_and_dec_wrap_and_refuse_non_integers(cmap: CmapHandle) -> None:
    cmap.set_uint8("t.counter", 255)
    cmap.inc("t.counter")
    assert cmap.get_uint8("t.counter") == 0
    cmap.dec("t.counter")
    cmap.dec("t.counter")
    assert cmap.get_uint8("t.counter") == 254
    cmap.set_int8("t.signed", -128)
    cmap.dec("t.signed")
    assert cmap.get_int8("t.signed") == 127
    cmap.set_double("t.dbl", 1.5)
    with pytest.raises(InvalidParamError):
        cmap.inc("t.dbl")
    cmap.set_string("t.str", "1")
    with pytest.raises(InvalidParamError):
        cmap.dec("t.str")
    with pytest.raises(NotExistError):
        cmap.inc("t.missing")


def test_delete_removes_the_key(cmap: CmapHandle) -> None:
    cmap.set_string("t.gone", "x")
    cmap.delete("t.gone")
    with pytest.raises(NotExistError):
        cmap.get("t.gone")


def test_iteration_is_sorted_and_typed(bench: CmapBench, cmap: CmapHandle) -> None:
    for key in ("b.two", "a.one", "b.one", "b-x", "c.three"):
        bench.store.set(key, key, ValueType.STRING)
    bench.store.set("b.num", 7, ValueType.UINT16)
    assert list(cmap.iter_keys("b.")) == [
        ("b.num", 2, ValueType.UINT16),
        ("b.one", 6, ValueType.STRING),
        ("b.two", 6, ValueType.STRING),
    ]
    assert [key for key, _, _ in cmap.iter_keys()] == [
        "a.one",
        "b-x",
        "b.num",
        "b.one",
        "b.two",
        "c.three",
    ]
    assert list(cmap.iter_keys("zzz")) == []


def test_iterators_are_explicit_handles(cmap: CmapHandle) -> None:
    cmap.set_string("it.a", "1")
    handle = cmap.iter_init("it.")
    assert cmap.iter_next(handle) == ("it.a", 2, ValueType.STRING)
    with pytest.raises(NoSectionsError):
        cmap.iter_next(handle)
    cmap.iter_finalize(handle)
    with pytest.raises(BadHandleError):
        cmap.iter_next(handle)
    with pytest.raises(BadHandleError):
        cmap.iter_finalize(handle)


def test_another_connections_iterator_is_a_bad_handle(bench: CmapBench) -> None:
    first, second = bench.handle(), bench.handle()
    handle = first.iter_init("")
    with pytest.raises(BadHandleError):
        second.iter_next(handle)
    with pytest.raises(BadHandleError):
        second.iter_finalize(handle)
    first.iter_finalize(handle)


def test_tracking_delivers_add_modify_delete_with_values(bench: CmapBench) -> None:
    watcher, writer = bench.handle(), bench.handle()
    seen: list[Event] = []
    flags = TrackFlags.ADD | TrackFlags.MODIFY | TrackFlags.DELETE | TrackFlags.PREFIX
    watcher.track_add("w.", flags, lambda *event: seen.append(event))
    writer.set_uint32("w.key", 1)
    writer.set_uint32("w.key", 2)
    writer.set_uint32("w.key", 2)  # identical: no notification
    writer.inc("w.key")
    writer.delete("w.key")
    writer.set_uint32("other.key", 9)
    assert seen == []  # nothing runs before dispatch
    watcher.dispatch(DispatchFlags.ALL)
    u32 = ValueType.UINT32
    assert seen == [
        (TrackEvent.ADD, "w.key", CmapEntry(u32, 1), None),
        (TrackEvent.MODIFY, "w.key", CmapEntry(u32, 2), CmapEntry(u32, 1)),
        (TrackEvent.MODIFY, "w.key", CmapEntry(u32, 3), CmapEntry(u32, 2)),
        (TrackEvent.DELETE, "w.key", None, CmapEntry(u32, 3)),
    ]


def test_exact_key_tracking_filters_events(bench: CmapBench, cmap: CmapHandle) -> None:
    seen: list[Event] = []
    cmap.track_add("x.key", TrackFlags.MODIFY, lambda *event: seen.append(event))
    cmap.set_string("x.key", "a")
    cmap.set_string("x.key.longer", "a")
    cmap.set_string("x.key", "b")
    cmap.dispatch()
    assert [(e[0], e[1]) for e in seen] == [(TrackEvent.MODIFY, "x.key")]


def test_dispatch_modes(bench: CmapBench, cmap: CmapHandle) -> None:
    seen: list[str] = []
    cmap.track_add(
        "d.", TrackFlags.ADD | TrackFlags.PREFIX, lambda _e, key, _n, _o: seen.append(key)
    )
    with pytest.raises(TryAgainError):
        cmap.dispatch(DispatchFlags.ONE_NONBLOCKING)
    cmap.dispatch(DispatchFlags.ALL)  # nothing waiting: returns
    for name in ("d.a", "d.b", "d.c"):
        cmap.set_string(name, "v")
    cmap.dispatch(DispatchFlags.ONE_NONBLOCKING)
    assert seen == ["d.a"]
    cmap.dispatch(DispatchFlags.ONE)
    assert seen == ["d.a", "d.b"]
    cmap.dispatch(DispatchFlags.ALL)
    assert seen == ["d.a", "d.b", "d.c"]
    with pytest.raises(InvalidParamError):
        cmap.dispatch(7)


def test_track_delete_stops_notifications(bench: CmapBench, cmap: CmapHandle) -> None:
    seen: list[str] = []
    handle = cmap.track_add("t.", TrackFlags.ADD | TrackFlags.PREFIX, lambda *e: seen.append(e[1]))
    cmap.set_string("t.one", "1")
    cmap.track_delete(handle)
    cmap.set_string("t.two", "2")
    cmap.dispatch()  # t.one was queued before the delete: ignored, as in Corosync
    assert seen == []
    with pytest.raises(BadHandleError):
        cmap.track_delete(handle)


def test_bad_track_flags_are_refused(cmap: CmapHandle) -> None:
    with pytest.raises(InvalidParamError):
        cmap.track_add("t.key", 16, lambda *e: None)


def test_closing_a_connection_drops_its_trackers(bench: CmapBench) -> None:
    watcher, writer = bench.handle(), bench.handle()
    watcher.track_add("c.", TrackFlags.ADD | TrackFlags.PREFIX, lambda *e: None)
    watcher.iter_init("")
    watcher.finalize()
    before = len(bench.executive.notifications)
    writer.set_string("c.key", "v")
    assert len(bench.executive.notifications) == before


def test_a_finalized_handle_is_a_bad_handle(cmap: CmapHandle) -> None:
    cmap.context_set({"mine": 1})
    assert cmap.context_get() == {"mine": 1}
    cmap.finalize()
    for call in (cmap.finalize, cmap.fd_get, cmap.context_get, lambda: cmap.get("a.b")):
        with pytest.raises(BadHandleError):
            call()


def test_the_fd_polls_readable_when_notifications_wait(bench: CmapBench) -> None:
    watcher, writer = bench.handle(), bench.handle()
    watcher.track_add("f.key", TrackFlags.ADD, lambda *e: None)
    fd = watcher.fd_get()
    assert select.select([fd], [], [], 0)[0] == []
    writer.set_string("f.key", "v")
    assert select.select([fd], [], [], 0)[0] == [fd]
    watcher.dispatch()
    assert select.select([fd], [], [], 0)[0] == []


def test_set_current_map(bench: CmapBench) -> None:
    handle = initialize(bench.connect(), cmap_map=0)
    handle.iter_init("")
    with pytest.raises(BusyError):
        handle.set_current_map(0)
    with pytest.raises(NotExistError):
        initialize(bench.connect(), cmap_map=7)


def test_the_stats_map_reads_the_executives_figures_and_refuses_writes(
    bench: CmapBench,
) -> None:
    bench.executive.stats = {
        "stats.srp.mcast_tx": CmapEntry(ValueType.UINT64, 12),
        "stats.srp.orf_token_rx": CmapEntry(ValueType.UINT64, 99),
        "stats.net.rx": CmapEntry(ValueType.UINT64, 3),
    }
    stats = initialize(bench.connect(), cmap_map=1)
    assert stats.get_uint64("stats.srp.mcast_tx") == 12
    assert [key for key, _, _ in stats.iter_keys("stats.srp.")] == [
        "stats.srp.mcast_tx",
        "stats.srp.orf_token_rx",
    ]
    with pytest.raises(NotExistError):
        stats.get("totem.cluster_name")  # a default-map key is not in the stats map
    with pytest.raises(AccessError):
        stats.set_uint64("stats.srp.mcast_tx", 0)
    with pytest.raises(NotSupportedError):
        stats.track_add("stats.", TrackFlags.MODIFY | TrackFlags.PREFIX, lambda *_: None)


def test_without_a_transport_it_connects_to_the_daemon(tmp_path: Path) -> None:
    # No daemon runs there: the IPC client's answer is Corosync's CS_ERR_LIBRARY.
    with pytest.raises(LibraryError):
        CmapHandle(run_dir=str(tmp_path))


def test_a_refused_connection_is_a_library_error(monkeypatch: pytest.MonkeyPatch) -> None:
    class Refusing:
        def __init__(self, service: str, **_options: object) -> None:
            raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(cmap_module, "IpcClient", Refusing)
    with pytest.raises(LibraryError, match="cannot connect"):
        CmapHandle(run_dir="/nowhere")


def test_iteration_is_live(bench: CmapBench, cmap: CmapHandle) -> None:
    bench.store.set("l.a", "1", ValueType.STRING)
    bench.store.set("l.c", "1", ValueType.STRING)
    handle = cmap.iter_init("l.")
    assert cmap.iter_next(handle)[0] == "l.a"
    cmap.set_string("l.b", "added ahead of the iterator")
    cmap.delete("l.c")
    assert cmap.iter_next(handle)[0] == "l.b"
    with pytest.raises(NoSectionsError):
        cmap.iter_next(handle)


class _OddTransport:
    """Hands dispatch a message that is not a notification."""

    def request(self, message_id: int, payload: bytes) -> bytes:
        raise AssertionError("not used")

    def fd_get(self) -> int:
        return -1

    def dispatch(self, flags: int, callback: Callable[[int, bytes], None]) -> None:
        callback(4, b"")

    def finalize(self) -> None:
        pass


def test_an_unknown_dispatch_message_is_a_library_error() -> None:
    with pytest.raises(LibraryError, match="unexpected cmap dispatch message 4"):
        CmapHandle(_OddTransport()).dispatch()
