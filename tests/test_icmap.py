"""The cmap store's rules, one by one (services-notes §2)."""

from __future__ import annotations

import logging
import math

import pytest

from pycorosync.exec.icmap import (
    DEFAULT_RO_KEYS,
    DEFAULT_RO_PREFIXES,
    CallbackError,
    CmapChange,
    CmapEntry,
    CmapStore,
    TrackEvent,
    TrackFlags,
    install_default_ro_keys,
)
from pycorosync.lib.cmap_types import ValueType
from pycorosync.lib.errors import (
    AccessError,
    BadHandleError,
    InvalidParamError,
    NameTooLongError,
    NotExistError,
)

ALL = TrackFlags.ADD | TrackFlags.DELETE | TrackFlags.MODIFY
Event = tuple[TrackEvent, str, CmapEntry | None, CmapEntry | None]


def _recorder(store: CmapStore, key: str, flags: TrackFlags = ALL) -> list[Event]:
    events: list[Event] = []
    store.track_add(key, flags, lambda *event: events.append(event))
    return events


def _u32(value: int) -> CmapEntry:
    return CmapEntry(ValueType.UINT32, value)


def _str(value: str) -> CmapEntry:
    return CmapEntry(ValueType.STRING, value)


# --- set / get ------------------------------------------------------------------------------


def test_set_then_get_returns_the_typed_entry() -> None:
    store = CmapStore()
    store.set("totem.token", 3000, ValueType.UINT32)
    assert store.get("totem.token") == _u32(3000)
    assert store.get("totem.token").vtype is ValueType.UINT32
    assert len(store) == 1
    assert "totem.token" in store


def test_get_of_a_missing_key_is_not_exist() -> None:
    with pytest.raises(NotExistError, match=r"totem\.token"):
        CmapStore().get("totem.token")


def test_set_validates_the_value() -> None:
    store = CmapStore()
    with pytest.raises(InvalidParamError):
        store.set("quorum.votes", 256, ValueType.UINT8)
    with pytest.raises(InvalidParamError):
        store.set("quorum.votes", True, ValueType.UINT8)
    assert len(store) == 0


def test_bad_value_leaves_the_existing_entry_alone() -> None:
    store = CmapStore()
    store.set("quorum.votes", 1, ValueType.UINT8)
    with pytest.raises(InvalidParamError):
        store.set("quorum.votes", -1, ValueType.UINT8)
    assert store.get("quorum.votes") == CmapEntry(ValueType.UINT8, 1)


@pytest.mark.parametrize("key", ["ab", "a b", "x" * 256, "bad*name"])
def test_creating_a_key_with_a_bad_name_is_name_too_long(key: str) -> None:
    store = CmapStore()
    with pytest.raises(NameTooLongError):
        store.set(key, "v", ValueType.STRING)
    assert len(store) == 0


def test_bad_name_on_read_paths_is_just_missing() -> None:
    store = CmapStore()
    for call in (store.get, store.delete, lambda k: store.adjust(k, 1)):
        with pytest.raises(NotExistError):
            call("a b")


@pytest.mark.parametrize("key", [None, 123, b"abc", ["a.b"]])
def test_non_string_key_is_invalid_param(key: object) -> None:
    store = CmapStore()
    with pytest.raises(InvalidParamError):
        store.set(key, 1, ValueType.UINT8)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamError):
        store.get(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamError):
        store.delete(key)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamError):
        store.is_ro(key)  # type: ignore[arg-type]


def test_identical_set_is_a_silent_no_op() -> None:
    store = CmapStore(record_changes=True)
    store.set("a.b", "x", ValueType.STRING)
    events = _recorder(store, "a.b")
    store.take_changes()
    store.set("a.b", "x", ValueType.STRING)
    assert events == []
    assert store.take_changes() == []
    assert store.seq == 1


def test_identical_nan_is_a_no_op_and_signed_zero_is_not() -> None:
    store = CmapStore()
    store.set("a.nan", math.nan, ValueType.DOUBLE)
    store.set("a.zero", 0.0, ValueType.DOUBLE)
    events = _recorder(store, "a.", ALL | TrackFlags.PREFIX)
    store.set("a.nan", math.nan, ValueType.DOUBLE)
    store.set("a.zero", -0.0, ValueType.DOUBLE)
    assert [(e[0], e[1]) for e in events] == [(TrackEvent.MODIFY, "a.zero")]


def test_float_rounding_makes_values_identical() -> None:
    store = CmapStore()
    store.set("a.f", 0.1, ValueType.FLOAT)
    events = _recorder(store, "a.f")
    store.set("a.f", 0.100000000001, ValueType.FLOAT)  # the same C float
    assert events == []


def test_new_value_is_modify_with_old_and_new() -> None:
    store = CmapStore()
    store.set("a.b", 1, ValueType.UINT32)
    events = _recorder(store, "a.b")
    store.set("a.b", 2, ValueType.UINT32)
    assert events == [(TrackEvent.MODIFY, "a.b", _u32(2), _u32(1))]


def test_new_type_replaces_the_entry_as_modify() -> None:
    store = CmapStore()
    store.set("a.b", 1, ValueType.UINT32)
    events = _recorder(store, "a.b")
    store.set("a.b", 1, ValueType.UINT8)
    assert store.get("a.b") == CmapEntry(ValueType.UINT8, 1)
    assert events == [(TrackEvent.MODIFY, "a.b", CmapEntry(ValueType.UINT8, 1), _u32(1))]


# --- delete ---------------------------------------------------------------------------------


def test_delete_removes_and_announces_the_old_entry() -> None:
    store = CmapStore()
    store.set("a.b", "x", ValueType.STRING)
    events = _recorder(store, "a.b")
    store.delete("a.b")
    assert "a.b" not in store
    assert events == [(TrackEvent.DELETE, "a.b", None, _str("x"))]
    with pytest.raises(NotExistError):
        store.delete("a.b")


# --- adjust ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vtype", "start", "step", "result"),
    [
        (ValueType.UINT8, 255, 1, 0),
        (ValueType.UINT8, 0, -1, 255),
        (ValueType.INT8, 127, 1, -128),
        (ValueType.INT8, -128, -1, 127),
        (ValueType.UINT32, 10, -3, 7),
        (ValueType.INT64, (1 << 63) - 1, 1, -(1 << 63)),
        (ValueType.UINT64, 0, -1, (1 << 64) - 1),
        (ValueType.UINT16, 1, 70000, (1 + 70000) % 65536),
    ],
)
def test_adjust_wraps_in_the_stored_width(
    vtype: ValueType, start: int, step: int, result: int
) -> None:
    store = CmapStore()
    store.set("a.n", start, vtype)
    store.adjust("a.n", step)
    assert store.get("a.n") == CmapEntry(vtype, result)


def test_adjust_announces_modify() -> None:
    store = CmapStore()
    store.set("a.n", 5, ValueType.INT32)
    events = _recorder(store, "a.n")
    store.adjust("a.n", -1)
    assert events == [
        (TrackEvent.MODIFY, "a.n", CmapEntry(ValueType.INT32, 4), CmapEntry(ValueType.INT32, 5))
    ]


def test_adjust_to_the_same_value_is_a_no_op() -> None:
    store = CmapStore()
    store.set("a.n", 5, ValueType.UINT8)
    events = _recorder(store, "a.n")
    store.adjust("a.n", 0)
    store.adjust("a.n", 256)
    assert events == []
    assert store.get("a.n").value == 5


@pytest.mark.parametrize(
    ("vtype", "value"),
    [
        (ValueType.FLOAT, 1.0),
        (ValueType.DOUBLE, 1.0),
        (ValueType.STRING, "1"),
        (ValueType.BINARY, b"\x01"),
    ],
)
def test_adjust_of_a_non_integer_is_invalid_param(vtype: ValueType, value: object) -> None:
    store = CmapStore()
    store.set("a.v", value, vtype)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamError, match=vtype.name):
        store.adjust("a.v", 1)
    assert store.get("a.v") == CmapEntry(vtype, value)  # type: ignore[arg-type]


def test_adjust_errors() -> None:
    store = CmapStore()
    with pytest.raises(NotExistError):
        store.adjust("a.n", 1)
    store.set("a.n", 1, ValueType.UINT8)
    for step in (True, 1.0, "1"):
        with pytest.raises(InvalidParamError):
            store.adjust("a.n", step)  # type: ignore[arg-type]
    assert store.get("a.n").value == 1


# --- read-only keys -------------------------------------------------------------------------


def test_read_only_keys_refuse_the_client_path_only() -> None:
    store = CmapStore()
    store.set_ro("totem.cluster_name")
    store.set("totem.cluster_name", "one", ValueType.STRING)  # internal path: allowed
    with pytest.raises(AccessError):
        store.set("totem.cluster_name", "two", ValueType.STRING, check_ro=True)
    with pytest.raises(AccessError):
        store.delete("totem.cluster_name", check_ro=True)
    assert store.get("totem.cluster_name") == _str("one")
    store.delete("totem.cluster_name")
    assert "totem.cluster_name" not in store


def test_read_only_prefix_covers_new_keys_too() -> None:
    store = CmapStore()
    store.set_ro("runtime.config.", prefix=True)
    with pytest.raises(AccessError):
        store.set("runtime.config.totem.token", 1, ValueType.UINT32, check_ro=True)
    assert "runtime.config.totem.token" not in store
    store.set("runtime.config.totem.token", 1, ValueType.UINT32)
    with pytest.raises(AccessError):
        store.adjust("runtime.config.totem.token", 1, check_ro=True)
    assert store.get("runtime.config.totem.token") == _u32(1)
    store.set("runtime.configured", 1, ValueType.UINT32, check_ro=True)  # not under the prefix


def test_access_is_checked_before_existence_and_validity() -> None:
    store = CmapStore()
    store.set_ro("system.", prefix=True)
    with pytest.raises(AccessError):
        store.delete("system.missing", check_ro=True)
    with pytest.raises(AccessError):
        store.adjust("system.missing", 1, check_ro=True)
    with pytest.raises(AccessError):
        store.set("system.bad", 300, ValueType.UINT8, check_ro=True)


def test_is_ro() -> None:
    store = CmapStore()
    store.set_ro("a.exact")
    store.set_ro("p.", prefix=True)
    assert store.is_ro("a.exact")
    assert not store.is_ro("a.exact.more")
    assert store.is_ro("p.")
    assert store.is_ro("p.anything")
    assert not store.is_ro("p")
    assert not store.is_ro("q.x")
    with pytest.raises(InvalidParamError):
        store.set_ro(5)  # type: ignore[arg-type]


def test_default_read_only_keys() -> None:
    store = CmapStore()
    install_default_ro_keys(store)
    for key in DEFAULT_RO_KEYS:
        assert store.is_ro(key)
    for prefix in DEFAULT_RO_PREFIXES:
        assert store.is_ro(prefix + "x")
    assert store.is_ro("nodelist.node.0.ring0_addr")
    assert store.is_ro("totem.cluster_name")
    assert store.is_ro("internal_configuration.service.0.name")
    assert not store.is_ro("totem.token")
    assert not store.is_ro("quorum.expected_votes")
    assert not store.is_ro("logging.to_syslog")
    assert not store.is_ro("uidgid.uid.1000")
    assert not store.is_ro("runtime.members.1.status")
    assert "quorum.auto_tie_breaker_node" in DEFAULT_RO_KEYS
    assert len(DEFAULT_RO_PREFIXES) == 7


# --- iteration ------------------------------------------------------------------------------


def _fill(store: CmapStore, *keys: str) -> None:
    for n, key in enumerate(keys):
        store.set(key, n, ValueType.UINT32)


def test_iteration_is_byte_wise_sorted() -> None:
    store = CmapStore()
    _fill(store, "b.x", "a.z", "B.x", "a.b.c", "a.b", "a-b", "a/b", "a:b", "a_b", "a0b")
    keys = [key for key, _ in store.iter_prefix()]
    assert keys == sorted(keys, key=lambda k: k.encode())
    assert keys[0] == "B.x"


def test_iteration_by_prefix() -> None:
    store = CmapStore()
    _fill(store, "totem.token", "totem.interface.0.mcastport", "totemx.a", "quorum.votes")
    assert [k for k, _ in store.iter_prefix("totem.")] == [
        "totem.interface.0.mcastport",
        "totem.token",
    ]
    assert [k for k, _ in store.iter_prefix("nothing.")] == []
    assert list(store.iter_prefix("quorum.votes")) == [("quorum.votes", _u32(3))]
    with pytest.raises(InvalidParamError):
        store.iter_prefix(None)  # type: ignore[arg-type]


def test_iteration_is_live() -> None:
    store = CmapStore()
    _fill(store, "k.a", "k.c", "k.e")
    scan = store.iter_prefix("k.")
    assert next(scan) == ("k.a", _u32(0))
    store.delete("k.c")
    store.set("k.d", 9, ValueType.UINT32)  # ahead of the cursor: seen
    store.set("k.0", 9, ValueType.UINT32)  # behind the cursor: not seen
    store.set("k.e", 7, ValueType.UINT32)  # value as of the step
    assert list(scan) == [("k.d", _u32(9)), ("k.e", _u32(7))]


def test_deleting_while_walking_is_safe() -> None:
    store = CmapStore()
    _fill(store, *(f"logging.k{n:03d}" for n in range(300)), "other.key")
    for key, _ in store.iter_prefix("logging."):
        store.delete(key)
    assert [k for k, _ in store.iter_prefix()] == ["other.key"]


def test_snapshot_is_sorted_and_numbered() -> None:
    store = CmapStore()
    _fill(store, "b.b", "a.a")
    snapshot = store.snapshot()
    assert snapshot.seq == 2
    assert snapshot.entries == (("a.a", _u32(1)), ("b.b", _u32(0)))


# --- tracking -------------------------------------------------------------------------------


def test_exact_tracker_hears_only_its_key_and_events() -> None:
    store = CmapStore()
    adds = _recorder(store, "a.b", TrackFlags.ADD)
    deletes = _recorder(store, "a.b", TrackFlags.DELETE)
    store.set("a.b", 1, ValueType.UINT32)
    store.set("a.bc", 1, ValueType.UINT32)
    store.set("a.b", 2, ValueType.UINT32)
    store.delete("a.b")
    assert adds == [(TrackEvent.ADD, "a.b", _u32(1), None)]
    assert deletes == [(TrackEvent.DELETE, "a.b", None, _u32(2))]


def test_prefix_tracker_hears_every_key_under_it() -> None:
    store = CmapStore()
    events = _recorder(store, "nodelist.", ALL | TrackFlags.PREFIX)
    everything = _recorder(store, "", ALL | TrackFlags.PREFIX)
    store.set("nodelist.node.0.nodeid", 1, ValueType.UINT32)
    store.set("nodelistx", 1, ValueType.UINT32)
    assert [e[1] for e in events] == ["nodelist.node.0.nodeid"]
    assert [e[1] for e in everything] == ["nodelist.node.0.nodeid", "nodelistx"]


def test_empty_exact_key_and_prefix_flag_alone_hear_nothing() -> None:
    store = CmapStore()
    empty = _recorder(store, "")
    prefix_only = _recorder(store, "a.", TrackFlags.PREFIX)
    nothing = _recorder(store, "a.b", TrackFlags(0))
    store.set("a.b", 1, ValueType.UINT32)
    assert empty == prefix_only == nothing == []


def test_several_trackers_on_one_key_fire_in_the_order_added() -> None:
    store = CmapStore()
    order: list[str] = []
    store.track_add("a.b", ALL, lambda *_: order.append("first"))
    store.track_add("a.", ALL | TrackFlags.PREFIX, lambda *_: order.append("prefix"))
    store.track_add("a.b", ALL, lambda *_: order.append("third"))
    store.set("a.b", 1, ValueType.UINT32)
    assert order == ["first", "prefix", "third"]


def test_track_delete_stops_the_tracker() -> None:
    store = CmapStore()
    events: list[Event] = []
    handle = store.track_add("a.b", ALL, lambda *e: events.append(e))
    store.set("a.b", 1, ValueType.UINT32)
    store.track_delete(handle)
    store.set("a.b", 2, ValueType.UINT32)
    assert len(events) == 1
    with pytest.raises(BadHandleError):
        store.track_delete(handle)
    with pytest.raises(BadHandleError):
        store.track_delete(999)


def test_track_add_validates_its_arguments() -> None:
    store = CmapStore()
    with pytest.raises(InvalidParamError, match="bits"):
        store.track_add("a.b", 16, lambda *_: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamError):
        store.track_add(5, ALL, lambda *_: None)  # type: ignore[arg-type]
    with pytest.raises(InvalidParamError):
        store.track_add("a.b", ALL, None)  # type: ignore[arg-type]
    first = store.track_add("a.b", ALL, lambda *_: None)
    assert store.track_add("a.b", ALL, lambda *_: None) == first + 1


def test_raising_callback_neither_stops_others_nor_corrupts_the_store() -> None:
    failures: list[CallbackError] = []
    store = CmapStore(record_changes=True, on_callback_error=failures.append)
    events = _recorder(store, "a.b")

    def explode(*_: object) -> None:
        raise RuntimeError("tracker bug")

    bad = store.track_add("a.b", ALL, explode)
    after = _recorder(store, "a.b")
    store.set("a.b", 1, ValueType.UINT32)  # does not raise: the change succeeded
    assert store.get("a.b") == _u32(1)
    assert len(events) == len(after) == 1
    assert len(failures) == 1
    assert failures[0].handle == bad
    assert failures[0].event is TrackEvent.ADD
    assert failures[0].key == "a.b"
    assert isinstance(failures[0].error, RuntimeError)
    assert [c.op for c in store.take_changes()] == [TrackEvent.ADD]


def test_callback_errors_are_logged_by_default(caplog: pytest.LogCaptureFixture) -> None:
    store = CmapStore()
    store.track_add("a.b", ALL, lambda *_: 1 // 0)  # type: ignore[func-returns-value]
    with caplog.at_level(logging.ERROR, logger="pycorosync.CMAP"):
        store.set("a.b", 1, ValueType.UINT32)
    assert "failed on ADD of a.b" in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_changes_made_by_a_callback_are_announced_in_order() -> None:
    """votequorum resets quorum.cancel_wait_for_all from its own tracker."""
    store = CmapStore(record_changes=True)
    key = "quorum.cancel_wait_for_all"

    def reset(event: TrackEvent, k: str, new: CmapEntry | None, old: CmapEntry | None) -> None:
        if new is not None and new.value != 0:
            store.set(key, 0, ValueType.UINT8)
            assert store.get(key).value == 0  # applied at once

    store.track_add(key, ALL, reset)
    seen = _recorder(store, key)
    store.set(key, 1, ValueType.UINT8)
    assert [(e[0], e[2], e[3]) for e in seen] == [
        (TrackEvent.ADD, CmapEntry(ValueType.UINT8, 1), None),
        (TrackEvent.MODIFY, CmapEntry(ValueType.UINT8, 0), CmapEntry(ValueType.UINT8, 1)),
    ]
    assert [c.seq for c in store.take_changes()] == [1, 2]


def test_tracker_added_or_deleted_in_a_callback() -> None:
    store = CmapStore()
    late: list[Event] = []
    victim: list[Event] = []
    victim_handle = 0

    def first(*_: object) -> None:
        if not late:
            store.track_add("a.b", ALL, lambda *e: late.append(e))
        store.track_delete(victim_handle)

    store.track_add("a.b", TrackFlags.ADD, first)
    victim_handle = store.track_add("a.b", ALL, lambda *e: victim.append(e))
    store.set("a.b", 1, ValueType.UINT32)
    assert late == []  # added after the change: does not hear it
    assert victim == []  # deleted before its turn: does not hear it
    store.set("a.b", 2, ValueType.UINT32)
    assert [e[0] for e in late] == [TrackEvent.MODIFY]


def test_tracker_added_after_a_queued_change_does_not_hear_it() -> None:
    store = CmapStore()
    late: list[Event] = []

    def make_change_then_track(*_: object) -> None:
        store.set("b.b", 1, ValueType.UINT32)  # applied now, announced after this callback
        store.track_add("b.b", ALL, lambda *e: late.append(e))

    store.track_add("a.a", TrackFlags.ADD, make_change_then_track)
    store.set("a.a", 1, ValueType.UINT32)
    assert late == []
    store.set("b.b", 2, ValueType.UINT32)
    assert [e[0] for e in late] == [TrackEvent.MODIFY]


# --- change records -------------------------------------------------------------------------


def test_changes_are_recorded_in_order_with_sequence_numbers() -> None:
    store = CmapStore(record_changes=True)
    store.set("a.b", 1, ValueType.UINT32)
    store.set("a.b", 1, ValueType.UINT32)
    store.adjust("a.b", 1)
    store.delete("a.b")
    assert store.take_changes() == [
        CmapChange(TrackEvent.ADD, "a.b", _u32(1), 1),
        CmapChange(TrackEvent.MODIFY, "a.b", _u32(2), 2),
        CmapChange(TrackEvent.DELETE, "a.b", None, 3),
    ]
    assert store.take_changes() == []
    assert store.seq == 3


def test_failed_operations_record_nothing() -> None:
    store = CmapStore(record_changes=True)
    store.set_ro("r.o")
    for call in (
        lambda: store.set("ab", 1, ValueType.UINT8),
        lambda: store.set("a.b", 1000, ValueType.UINT8),
        lambda: store.delete("a.b"),
        lambda: store.set("r.o", 1, ValueType.UINT8, check_ro=True),
    ):
        with pytest.raises((NameTooLongError, InvalidParamError, NotExistError, AccessError)):
            call()
    assert store.take_changes() == []
    assert store.seq == 0


def test_take_changes_needs_recording() -> None:
    with pytest.raises(InvalidParamError, match="record"):
        CmapStore().take_changes()
