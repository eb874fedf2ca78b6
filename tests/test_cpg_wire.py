"""lib/cpg_wire: every body round-trips, and no input makes a decoder raise anything but the
``CS_ERR_MESSAGE_ERROR`` / ``CS_ERR_NAME_TOO_LONG`` errors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pycorosync.lib import cpg_wire as wire
from pycorosync.lib.cpg_wire import (
    ConfChgBody,
    CpgAddress,
    CpgReason,
    CpgRingId,
    DeliverBody,
    FlowControlBody,
    FlowControlState,
    IterationDescription,
    TotemConfChgBody,
)
from pycorosync.lib.errors import CsError, MessageError, NameTooLongError

names = st.binary(max_size=128)
u32 = st.integers(0, 2**32 - 1)
addresses = st.builds(CpgAddress, u32, u32, st.sampled_from(CpgReason))

DECODERS: list[Callable[[bytes], object]] = [
    wire.decode_join,
    wire.decode_leave,
    wire.decode_mcast,
    wire.decode_group,
    wire.decode_iteration_init,
    wire.decode_handle,
    wire.decode_empty,
    wire.decode_members,
    wire.decode_nodeid,
    wire.decode_description,
    wire.decode_confchg,
    wire.decode_deliver,
    wire.decode_totem_confchg,
    wire.decode_flow_control,
    wire.decode_proc,
    wire.decode_exec_mcast,
    wire.decode_joinlist,
    wire.decode_downlist,
]

junk_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.binary(max_size=140)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(junk_values, max_size=5) | st.binary(max_size=40).map(lambda b: [b]))
def test_decoders_refuse_junk_with_cpg_errors_only(fields: list[object]) -> None:
    data = msgpack.packb(fields, use_bin_type=True)
    for decode in DECODERS:
        with contextlib.suppress(MessageError, NameTooLongError):
            decode(data)
    for decode in DECODERS:
        with pytest.raises(MessageError):
            decode(b"\xc1")


@settings(deadline=None, derandomize=True)
@given(
    names,
    st.lists(addresses, max_size=4),
    st.lists(addresses, max_size=4),
    st.lists(addresses, max_size=4),
)
def test_confchg_round_trips(
    group: bytes, members: list[CpgAddress], left: list[CpgAddress], joined: list[CpgAddress]
) -> None:
    body = ConfChgBody(group, tuple(members), tuple(left), tuple(joined))
    assert wire.decode_confchg(wire.encode_confchg(body)) == body


@settings(deadline=None, derandomize=True)
@given(names, u32, u32, st.binary(max_size=64))
def test_deliver_and_exec_messages_round_trip(
    group: bytes, nodeid: int, pid: int, message: bytes
) -> None:
    body = DeliverBody(group, nodeid, pid, message)
    assert wire.decode_deliver(wire.encode_deliver(body)) == body
    assert wire.deliveries_fields(wire.encode_deliver(body)) == (group, [nodeid, pid, message])
    assert wire.decode_exec_mcast(wire.encode_exec_mcast(group, pid, message)) == (
        group,
        pid,
        message,
    )
    exec_mcast = wire.encode_exec_mcast(group, pid, message)
    assert wire.exec_mcast_fields(exec_mcast) == (group, pid, message)
    assert wire.decode_proc(wire.encode_proc(group, pid, CpgReason.PROCDOWN)) == (
        group,
        pid,
        CpgReason.PROCDOWN,
    )
    joinlist = wire.JoinList(nodeid, ((group, pid),), ((group, pid, CpgReason.LEAVE),))
    assert wire.decode_joinlist(wire.encode_joinlist(joinlist)) == joinlist
    entry = IterationDescription(group, nodeid, pid)
    assert wire.decode_description(wire.encode_description(entry)) == entry


def test_other_bodies_round_trip() -> None:
    totem = TotemConfChgBody(CpgRingId(3, 2**40), (1, 2, 3))
    assert wire.decode_totem_confchg(wire.encode_totem_confchg(totem)) == totem
    flow = FlowControlBody(FlowControlState.ENABLED, 7)
    assert wire.decode_flow_control(wire.encode_flow_control(flow)) == flow
    assert wire.decode_members(wire.encode_members([(1, 2), (3, 4)])) == [
        CpgAddress(1, 2),
        CpgAddress(3, 4),
    ]
    assert wire.decode_downlist(wire.encode_downlist(5, [2, 3])) == (5, [2, 3])


def test_names_over_128_bytes_are_name_too_long() -> None:
    with pytest.raises(NameTooLongError):
        wire.decode_group(wire.encode_group(b"x" * 129))
    assert wire.decode_group(wire.encode_group(b"\x00" * 128)) == b"\x00" * 128


@pytest.mark.parametrize(
    "bad",
    [
        msgpack.packb([b"g" * 129, 1, b"m"]),
        msgpack.packb([b"g", -1, b"m"]),
        msgpack.packb([b"g", True, b"m"]),
        msgpack.packb([b"g", 1, "text"]),
        msgpack.packb([b"g", 1]),
        b"\xc1",
    ],
)
def test_a_bad_exec_mcast_is_refused_on_the_delivery_path(bad: bytes) -> None:
    with pytest.raises(CsError):
        wire.exec_mcast_fields(bad)


@pytest.mark.parametrize(
    "bad",
    [
        msgpack.packb([b"g" * 129, 1, 2, b"m"]),
        msgpack.packb([b"g", 2**32, 2, b"m"]),
        msgpack.packb([b"g", 1, True, b"m"]),
        msgpack.packb([b"g", 1, 2, "text"]),
        msgpack.packb([b"g", 1, 2]),
        msgpack.packb([b"g", 1, 2, b"m", 3]),
        msgpack.packb([b"g", 1, 2, b"m", 3, 4, None]),
        msgpack.packb([b"g", 1, 2, b"m", -1, 4, b"n"]),
        msgpack.packb([b"g"]),
        msgpack.packb([None, 1, 2, b"m"]),
        msgpack.packb({"g": 1}),
        b"\xc1",
    ],
)
def test_a_bad_deliver_body_is_refused_by_the_fast_decoder_too(bad: bytes) -> None:
    with pytest.raises(CsError):
        wire.deliveries_fields(bad)
    with pytest.raises(CsError):
        wire.decode_deliveries(bad)


def test_one_deliver_carries_several_messages_of_its_group_in_order() -> None:
    body = wire.encode_deliveries(b"g", [1, 10, b"a", 2, 20, b"", 1, 10, b"c"])
    assert wire.decode_deliveries(body) == [
        DeliverBody(b"g", 1, 10, b"a"),
        DeliverBody(b"g", 2, 20, b""),
        DeliverBody(b"g", 1, 10, b"c"),
    ]
    with pytest.raises(CsError, match="3 messages where one was expected"):
        wire.decode_deliver(body)


@pytest.mark.parametrize(
    "bad",
    [
        msgpack.packb([True, b"m"]),
        msgpack.packb([2**32, b"m"]),
        msgpack.packb([-1, b"m"]),
        msgpack.packb([1, "text"]),
        msgpack.packb([1]),
        msgpack.packb({"a": 1}),
        b"\xc1",
    ],
)
def test_a_bad_mcast_request_is_refused_by_the_fast_decoder(bad: bytes) -> None:
    with pytest.raises(CsError):
        wire.decode_mcast(bad)


def test_the_fast_paths_agree_with_the_plain_codecs() -> None:
    assert wire.decode_mcast(wire.encode_mcast(2, b"m")) == (2, b"m")
    exec_body = wire.encode_exec_mcast(b"g", 7, b"m")
    assert wire.decode_exec_mcast(exec_body) == (b"g", 7, b"m")
    assert wire.exec_mcast_fields(exec_body) == (b"g", 7, b"m")
