"""The owner's side of cmap writes: apply_write's checks and records, and the write codec."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycorosync.exec.cmap_owner import CmapAdjust, CmapDelete, CmapSet, CmapWrite, apply_write
from pycorosync.exec.cmap_owner_wire import (
    CmapWriteCodecError,
    WriteRequest,
    WriteResult,
    decode_write_request,
    decode_write_result,
    encode_write_request,
    encode_write_result,
)
from pycorosync.exec.icmap import CmapReplica, CmapStore, install_default_ro_keys
from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, ValueType
from pycorosync.lib.errors import CsErrorCode, MessageError

OK = CsErrorCode.CS_OK


@pytest.fixture
def store() -> CmapStore:
    store = CmapStore()
    install_default_ro_keys(store)
    return store


def test_set_add_modify_and_identical(store: CmapStore) -> None:
    code, changes = apply_write(store, CmapSet("a.key", 1, ValueType.UINT8))
    assert code is OK
    assert [(c.op, c.key, c.entry, c.seq) for c in changes] == [
        (TrackEvent.ADD, "a.key", CmapEntry(ValueType.UINT8, 1), 1)
    ]
    code, changes = apply_write(store, CmapSet("a.key", "x", ValueType.STRING))
    assert (code, [c.op for c in changes]) == (OK, [TrackEvent.MODIFY])
    assert apply_write(store, CmapSet("a.key", "x", ValueType.STRING)) == (OK, [])
    assert store.seq == 2


def test_delete_and_adjust_records(store: CmapStore) -> None:
    store.set("n.key", 255, ValueType.UINT8)
    code, changes = apply_write(store, CmapAdjust("n.key", 1))
    assert code is OK
    assert changes[0].op is TrackEvent.MODIFY
    assert changes[0].entry == CmapEntry(ValueType.UINT8, 0)
    code, changes = apply_write(store, CmapDelete("n.key"))
    assert (code, changes[0].op, changes[0].entry) == (OK, TrackEvent.DELETE, None)
    assert "n.key" not in store


@pytest.mark.parametrize(
    ("write", "expected"),
    [
        (CmapSet("totem.cluster_name", "x", ValueType.STRING), CsErrorCode.CS_ERR_ACCESS),
        (CmapSet("nodelist.node.0.nodeid", 2, ValueType.UINT32), CsErrorCode.CS_ERR_ACCESS),
        (CmapDelete("totem.cluster_name"), CsErrorCode.CS_ERR_ACCESS),
        (CmapAdjust("runtime.config.totem.token", 1), CsErrorCode.CS_ERR_ACCESS),
        (CmapSet("ab", "x", ValueType.STRING), CsErrorCode.CS_ERR_NAME_TOO_LONG),
        (CmapSet("bad key", "x", ValueType.STRING), CsErrorCode.CS_ERR_NAME_TOO_LONG),
        (CmapSet("a.key", 256, ValueType.UINT8), CsErrorCode.CS_ERR_INVALID_PARAM),
        (CmapSet("a.key", "x", 99), CsErrorCode.CS_ERR_INVALID_PARAM),  # type: ignore[arg-type]
        (CmapSet("a.key", True, ValueType.UINT8), CsErrorCode.CS_ERR_INVALID_PARAM),
        (CmapAdjust("s.key", 1), CsErrorCode.CS_ERR_INVALID_PARAM),
        (CmapAdjust("d.key", -1), CsErrorCode.CS_ERR_INVALID_PARAM),
        (CmapAdjust("missing.key", 1), CsErrorCode.CS_ERR_NOT_EXIST),
        (CmapDelete("missing.key"), CsErrorCode.CS_ERR_NOT_EXIST),
    ],
)
def test_refused_writes_change_nothing(
    store: CmapStore, write: CmapWrite, expected: CsErrorCode
) -> None:
    store.set("totem.cluster_name", "probe", ValueType.STRING)
    store.set("runtime.config.totem.token", 3000, ValueType.UINT32)
    store.set("s.key", "1", ValueType.STRING)
    store.set("d.key", 1.0, ValueType.DOUBLE)
    before = store.snapshot()
    assert apply_write(store, write) == (expected, [])
    assert store.snapshot() == before


def test_something_that_is_not_a_write_is_invalid(store: CmapStore) -> None:
    assert apply_write(store, "set a.key") == (CsErrorCode.CS_ERR_INVALID_PARAM, [])  # type: ignore[arg-type]


# Against a dict model, and replayed on a replica -----------------------------------------

_KEYS = st.sampled_from(["a.one", "a.two", "b.one", "totem.version", "ab"])
_U8 = st.integers(-5, 260)
_WRITES = st.one_of(
    st.builds(CmapSet, _KEYS, _U8, st.just(ValueType.UINT8)),
    st.builds(CmapSet, _KEYS, st.text("xyz", max_size=3), st.just(ValueType.STRING)),
    st.builds(CmapDelete, _KEYS),
    st.builds(CmapAdjust, _KEYS, st.sampled_from([1, -1])),
)


def _model_apply(model: dict[str, tuple[ValueType, Any]], write: CmapWrite) -> CsErrorCode:
    if write.key == "totem.version":
        return CsErrorCode.CS_ERR_ACCESS
    current = model.get(write.key)
    if isinstance(write, CmapSet):
        if write.vtype is ValueType.UINT8 and not 0 <= int(write.value) <= 255:
            return CsErrorCode.CS_ERR_INVALID_PARAM
        if current is None and len(write.key) < 3:
            return CsErrorCode.CS_ERR_NAME_TOO_LONG
        model[write.key] = (write.vtype, write.value)
    elif current is None:
        return CsErrorCode.CS_ERR_NOT_EXIST
    elif isinstance(write, CmapDelete):
        del model[write.key]
    elif current[0] is not ValueType.UINT8:
        return CsErrorCode.CS_ERR_INVALID_PARAM
    else:
        model[write.key] = (ValueType.UINT8, (current[1] + write.delta) % 256)
    return OK


@given(st.lists(_WRITES, max_size=30))
def test_owner_matches_a_dict_model_and_replicas_follow(writes: list[CmapWrite]) -> None:
    store = CmapStore()
    install_default_ro_keys(store)
    replica = CmapReplica.from_snapshot(store.snapshot())
    model: dict[str, tuple[ValueType, Any]] = {}
    for write in writes:
        code, changes = apply_write(store, write)
        assert code is _model_apply(model, write), write
        for change in changes:
            replica.apply(change)
    assert {k: (e.vtype, e.value) for k, e in store.iter_prefix()} == model
    assert replica.snapshot() == store.snapshot()


# Codec -----------------------------------------------------------------------------------

_VALUES = st.one_of(
    st.integers(-(1 << 63), (1 << 64) - 1),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.binary(max_size=20),
)
_ANY_WRITE = st.one_of(
    st.builds(CmapSet, st.text(max_size=20), _VALUES, st.sampled_from(list(ValueType))),
    st.builds(CmapDelete, st.text(max_size=20)),
    st.builds(CmapAdjust, st.text(max_size=20), st.integers(-(1 << 63), (1 << 63) - 1)),
)


@given(st.integers(0, (1 << 64) - 1), _ANY_WRITE)
def test_write_requests_round_trip(request_id: int, write: CmapWrite) -> None:
    request = WriteRequest(request_id, write)
    assert decode_write_request(encode_write_request(request)) == request


@given(st.integers(0, (1 << 64) - 1), st.sampled_from(list(CsErrorCode)))
def test_write_results_round_trip(request_id: int, code: CsErrorCode) -> None:
    result = WriteResult(request_id, code)
    assert decode_write_result(encode_write_result(result)) == result


@given(st.binary(max_size=40))
def test_garbage_decodes_to_a_typed_error_or_a_valid_record(data: bytes) -> None:
    for decode in (decode_write_request, decode_write_result):
        try:
            decoded: object = decode(data)
        except CmapWriteCodecError as error:
            decoded = error
        assert isinstance(decoded, WriteRequest | WriteResult | MessageError)
        if isinstance(decoded, MessageError):
            assert decoded.code is CsErrorCode.CS_ERR_MESSAGE_ERROR


@pytest.mark.parametrize(
    "record",
    [
        [3, 1, 0, "a.key", 6],  # short
        [3, -1, 1, "a.key", None, None],  # negative id
        [3, 1, 1, 5, None, None],  # key not a str
        [3, 1, 0, "a.key", 6, None],  # set without a value
        [3, 1, 0, "a.key", 6, [1]],  # value of no cmap family
        [3, 1, 0, "a.key", True, 1],  # bool as a type
        [3, 1, 1, "a.key", 6, None],  # delete with a type
        [3, 1, 3, "a.key", 1.5, None],  # adjust by a float
        [3, 1, 3, "a.key", 1, 2],  # adjust with a value
        [3, 1, 7, "a.key", None, None],  # unknown kind
        [4, 1, 29],  # unused cs_error_t
        [4, 1, "ok"],
        [1, 1, 0, "a.key", 6, 1],  # a change record's tag
        [3.0, 1, 1, "a.key", None, None],
        {"not": "an array"},
    ],
)
def test_malformed_records_are_refused(record: object) -> None:
    data = msgpack.packb(record)
    with pytest.raises(CmapWriteCodecError):
        decode_write_request(data)
    with pytest.raises(CmapWriteCodecError):
        decode_write_result(data)


def test_only_bytes_decode() -> None:
    with pytest.raises(CmapWriteCodecError, match="must be bytes"):
        decode_write_request("text")  # type: ignore[arg-type]


def test_a_decoded_set_carries_a_value_type() -> None:
    data = encode_write_request(WriteRequest(1, CmapSet("a.key", 1, ValueType.UINT8)))
    write = decode_write_request(data).write
    assert isinstance(write, CmapSet)
    assert write.vtype is ValueType.UINT8
