"""The cmap store against a plain-dict model, driven by hypothesis' stateful testing.

The model restates Corosync's rules independently (services-notes §2): which operations
fail and with what, which entries exist, which tracker hears what, and what a live iterator
may and must yield. A replica fed the store's change records, through their msgpack codec,
must equal the store and have fired the same events.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    precondition,
    rule,
)

from pycorosync.exec.icmap import (
    CmapEntry,
    CmapReplica,
    CmapStore,
    TrackEvent,
    decode_change,
    decode_snapshot,
    encode_change,
    encode_snapshot,
)
from pycorosync.lib.cmap_types import TrackFlags, ValueType
from pycorosync.lib.errors import (
    AccessError,
    BadHandleError,
    CsError,
    InvalidParamError,
    NameTooLongError,
    NotExistError,
)

VALID_KEYS = ["a.b", "a.bc", "a.b.c", "abc", "b/x", "b:y", "z-z"]
KEYS = st.sampled_from([*VALID_KEYS, "ab", "a b"])
PREFIXES = st.sampled_from(["", "a.", "a.b", "b", "zz", "a b"])
RO_PREFIX, RO_KEY = "b/", "abc"

Ident = tuple[ValueType, object]
"""A value as the model compares it: floats by their bits, as Corosync compares bytes."""
Event = tuple[TrackEvent, str, Ident | None, Ident | None]


def _ident(vtype: ValueType, value: object) -> Ident:
    if isinstance(value, float):
        return vtype, struct.pack("<d", value)
    return vtype, value


def _entry_ident(entry: CmapEntry | None) -> Ident | None:
    return None if entry is None else _ident(entry.vtype, entry.value)


def _model_normalize(vtype: ValueType, value: object) -> object:
    """The stored value, or ``None`` where Corosync answers INVALID_PARAM."""
    if isinstance(value, bool):
        return None
    if vtype.is_integer:
        low, high = vtype.integer_range
        return value if isinstance(value, int) and low <= value <= high else None
    if vtype in (ValueType.FLOAT, ValueType.DOUBLE):
        if not isinstance(value, float):
            return None
        if vtype is ValueType.DOUBLE:
            return value
        try:
            return struct.unpack("<f", struct.pack("<f", value))[0]
        except OverflowError:
            return None
    if vtype is ValueType.STRING:
        ok = isinstance(value, str) and "\0" not in value and len(value.encode()) < 16384
        return value if ok else None
    return value if isinstance(value, bytes) and len(value) <= 16384 else None


def _typed_values(vtype: ValueType) -> st.SearchStrategy[tuple[ValueType, object]]:
    if vtype.is_integer:
        low, high = vtype.integer_range
        edges = st.sampled_from([low, high, 0, 1, low - 1, high + 1])
        values: st.SearchStrategy[object] = st.one_of(edges, st.integers(low, high))
    elif vtype in (ValueType.FLOAT, ValueType.DOUBLE):
        values = st.one_of(st.floats(), st.sampled_from([0.1, 1e39, -0.0]))
    elif vtype is ValueType.STRING:
        values = st.one_of(st.text(max_size=4), st.just("a\0"))
    else:
        values = st.binary(max_size=4)
    return st.tuples(st.just(vtype), values)


def _valid_values(vtype: ValueType) -> st.SearchStrategy[tuple[ValueType, object]]:
    if vtype.is_integer:
        low, high = vtype.integer_range
        values: st.SearchStrategy[object] = st.integers(low, min(high, low + 3))
    elif vtype is ValueType.FLOAT:
        values = st.sampled_from([0.5, 0.1, -0.0, float("nan")])
    elif vtype is ValueType.DOUBLE:
        values = st.sampled_from([0.5, 0.1, 0.0, float("inf")])
    elif vtype is ValueType.STRING:
        values = st.sampled_from(["", "x", "é"])
    else:
        values = st.sampled_from([b"", b"x"])
    return st.tuples(st.just(vtype), values)


VALID_TYPED_VALUES = st.sampled_from(list(ValueType)).flatmap(_valid_values)
TYPED_VALUES = st.one_of(
    st.sampled_from(list(ValueType)).flatmap(_typed_values),
    st.sampled_from([(ValueType.UINT8, True), (ValueType.STRING, 1), (ValueType.DOUBLE, 1)]),
)


INITIAL_TRACKERS = [("", 15), ("a.b", 5), ("a.", 10), ("b", 12)]
"""Trackers every run starts with, so that each event kind is heard from the first step."""
TRACK_FLAGS = st.sampled_from([*range(16), 16, 0x40])


@dataclass
class _Tracker:
    key: str
    flags: int
    store_log: list[Event] = field(default_factory=list)
    replica_log: list[Event] = field(default_factory=list)
    expected: list[Event] = field(default_factory=list)

    def hears(self, event: TrackEvent, key: str) -> bool:
        if not self.flags & event:
            return False
        return key.startswith(self.key) if self.flags & TrackFlags.PREFIX else key == self.key


@dataclass
class _OpenScan:
    prefix: str
    scan: Any
    present_throughout: set[str]
    seen: list[str] = field(default_factory=list)


def _recording(log: list[Event]) -> Any:
    def record(event: TrackEvent, key: str, new: CmapEntry | None, old: CmapEntry | None) -> None:
        log.append((event, key, _entry_ident(new), _entry_ident(old)))

    return record


class CmapMachine(RuleBasedStateMachine):
    handles = Bundle("handles")

    def __init__(self) -> None:
        super().__init__()
        self.store = CmapStore(record_changes=True)
        self.store.set_ro(RO_PREFIX, prefix=True)
        self.store.set_ro(RO_KEY)
        self.replica = CmapReplica.from_snapshot(
            decode_snapshot(encode_snapshot(self.store.snapshot()))
        )
        self.model: dict[str, Ident] = {}
        self.trackers: dict[int, _Tracker] = {}
        self.scans: list[_OpenScan] = []
        for key, flags in INITIAL_TRACKERS:
            self._add_tracker(key, flags)

    # --- the model's side effects -----------------------------------------------------------

    def _model_apply(self, event: TrackEvent, key: str, new: Ident | None) -> None:
        old = self.model.get(key)
        if new is None:
            del self.model[key]
            for scan in self.scans:
                scan.present_throughout.discard(key)
        else:
            self.model[key] = new
        for tracker in self.trackers.values():
            if tracker.hears(event, key):
                tracker.expected.append((event, key, new, old))

    def _add_tracker(self, key: str, flags: int) -> int:
        tracker = _Tracker(key, flags)
        handle = self.store.track_add(key, TrackFlags(flags), _recording(tracker.store_log))
        self.replica.track_add(key, TrackFlags(flags), _recording(tracker.replica_log))
        self.trackers[handle] = tracker
        return handle

    def _expect_error(self, error: type[CsError], call: Any) -> None:
        with pytest.raises(CsError) as raised:
            call()
        assert type(raised.value) is error, f"expected {error.__name__}, got {raised.value!r}"

    def _model_ro(self, key: str, check_ro: bool) -> bool:
        return check_ro and (key == RO_KEY or key.startswith(RO_PREFIX))

    # --- operations -------------------------------------------------------------------------

    @rule(key=KEYS, typed=TYPED_VALUES, check_ro=st.booleans())
    def set(self, key: str, typed: tuple[ValueType, Any], check_ro: bool) -> None:
        vtype, value = typed
        call = lambda: self.store.set(key, value, vtype, check_ro=check_ro)  # noqa: E731
        normalized = _model_normalize(vtype, value)
        if self._model_ro(key, check_ro):
            self._expect_error(AccessError, call)
        elif normalized is None:
            self._expect_error(InvalidParamError, call)
        elif key not in self.model and key not in VALID_KEYS:
            self._expect_error(NameTooLongError, call)
        else:
            call()
            new = _ident(vtype, normalized)
            if key not in self.model:
                self._model_apply(TrackEvent.ADD, key, new)
            elif self.model[key] != new:
                self._model_apply(TrackEvent.MODIFY, key, new)

    @rule(key=st.sampled_from(VALID_KEYS), typed=VALID_TYPED_VALUES)
    def set_valid(self, key: str, typed: tuple[ValueType, Any]) -> None:
        """Mostly-succeeding sets, small values so that they collide (no-ops, MODIFYs)."""
        self.set(key, typed, check_ro=False)

    @rule(key=KEYS, check_ro=st.booleans())
    def delete(self, key: str, check_ro: bool) -> None:
        call = lambda: self.store.delete(key, check_ro=check_ro)  # noqa: E731
        if self._model_ro(key, check_ro):
            self._expect_error(AccessError, call)
        elif key not in self.model:
            self._expect_error(NotExistError, call)
        else:
            call()
            self._model_apply(TrackEvent.DELETE, key, None)

    @rule(
        key=KEYS,
        step=st.one_of(st.integers(-300, 300), st.sampled_from([1 << 32, -(1 << 64)])),
        check_ro=st.booleans(),
    )
    def adjust(self, key: str, step: int, check_ro: bool) -> None:
        call = lambda: self.store.adjust(key, step, check_ro=check_ro)  # noqa: E731
        if self._model_ro(key, check_ro):
            self._expect_error(AccessError, call)
        elif key not in self.model:
            self._expect_error(NotExistError, call)
        elif not self.model[key][0].is_integer:
            self._expect_error(InvalidParamError, call)
        else:
            call()
            vtype, value = self.model[key]
            assert isinstance(value, int)
            low, high = vtype.integer_range
            span = high - low + 1
            new = (vtype, (value + step - low) % span + low)
            if new != self.model[key]:
                self._model_apply(TrackEvent.MODIFY, key, new)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        if key in self.model:
            assert _entry_ident(self.store.get(key)) == self.model[key]
        else:
            self._expect_error(NotExistError, lambda: self.store.get(key))

    @rule(prefix=PREFIXES)
    def iterate(self, prefix: str) -> None:
        expected = sorted((k, v) for k, v in self.model.items() if k.startswith(prefix))
        got = [(k, _entry_ident(e)) for k, e in self.store.iter_prefix(prefix)]
        assert got == expected

    # --- tracking ---------------------------------------------------------------------------

    @rule(target=handles, key=st.one_of(KEYS, PREFIXES), flags=TRACK_FLAGS)
    def track_add(self, key: str, flags: int) -> int:
        self.sync()  # a replica's tracker must start at the same point in history
        if flags > 15:
            self._expect_error(
                InvalidParamError, lambda: self.store.track_add(key, flags, lambda *_: None)
            )
            return -1
        return self._add_tracker(key, flags)

    @rule(handle=consumes(handles))
    def track_delete(self, handle: int) -> None:
        if handle not in self.trackers:
            self._expect_error(BadHandleError, lambda: self.store.track_delete(handle))
            return
        self.sync()
        self.store.track_delete(handle)
        del self.trackers[handle]

    # --- replication ------------------------------------------------------------------------

    @rule()
    def sync(self) -> None:
        for change in self.store.take_changes():
            self.replica.apply(decode_change(encode_change(change)))
        assert self.replica.seq == self.store.seq
        assert list(self.replica.iter_prefix()) == list(self.store.iter_prefix())
        for tracker in self.trackers.values():
            assert tracker.replica_log == tracker.store_log

    @rule()
    def fresh_replica_from_snapshot(self) -> None:
        snapshot = decode_snapshot(encode_snapshot(self.store.snapshot()))
        fresh = CmapReplica.from_snapshot(snapshot)
        assert list(fresh.iter_prefix()) == list(self.store.iter_prefix())
        assert fresh.seq == self.store.seq

    # --- live iteration ---------------------------------------------------------------------

    @precondition(lambda self: len(self.scans) < 3)
    @rule(prefix=PREFIXES)
    def open_scan(self, prefix: str) -> None:
        present = {k for k in self.model if k.startswith(prefix)}
        self.scans.append(_OpenScan(prefix, self.store.iter_prefix(prefix), present))

    @precondition(lambda self: bool(self.scans))
    @rule(which=st.integers(0, 2))
    def step_scan(self, which: int) -> None:
        scan = self.scans[which % len(self.scans)]
        step = next(scan.scan, None)
        if step is None:
            assert scan.present_throughout <= set(scan.seen)
            self.scans.remove(scan)
            return
        key, entry = step
        assert key.startswith(scan.prefix)
        assert self.model[key] == _entry_ident(entry)
        assert not scan.seen or key > scan.seen[-1]
        scan.seen.append(key)

    # --- invariants -------------------------------------------------------------------------

    @invariant()
    def store_equals_model(self) -> None:
        got = [(k, _entry_ident(e)) for k, e in self.store.iter_prefix()]
        assert got == sorted(self.model.items())
        assert len(self.store) == len(self.model)

    @invariant()
    def trackers_heard_what_the_model_says(self) -> None:
        for tracker in self.trackers.values():
            assert tracker.store_log == tracker.expected


CmapMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=60)
TestCmapStateful = CmapMachine.TestCase
