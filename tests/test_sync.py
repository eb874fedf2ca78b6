"""The sync coordinator, its wire and its driver, in scripted rounds (no simulator)."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec import sync_wire
from pycorosync.exec.sync import (
    READY_LINE,
    SyncAbort,
    SyncActivate,
    SyncComplete,
    SyncCoordinator,
    SyncInit,
    SyncLog,
    SyncMcast,
    SyncOutput,
    SyncProcess,
)
from pycorosync.exec.sync_driver import ServiceDone, SyncDriver
from pycorosync.exec.sync_wire import Barrier, ServiceBuild, SyncVersionError, SyncWireError
from pycorosync.exec.totem.events import ConfigChange, ConfigKind, RingId
from pycorosync.lib.errors import CsErrorCode, InvalidParamError, NotExistError
from tests._engines import ValidEngine

R1 = RingId(seq=4, rep=1)
R2 = RingId(seq=8, rep=1)


def _trans(members: tuple[int, ...], ring: RingId) -> ConfigChange:
    return ConfigChange(
        kind=ConfigKind.TRANSITIONAL, members=members, left=(), joined=(), ring_id=ring
    )


def _regular(members: tuple[int, ...], ring: RingId) -> ConfigChange:
    return ConfigChange(kind=ConfigKind.REGULAR, members=members, left=(), joined=(), ring_id=ring)


def _commands(out: list[SyncOutput]) -> list[SyncOutput]:
    """Everything but log lines and multicasts."""
    return [o for o in out if not isinstance(o, SyncLog | SyncMcast)]


def _logs(out: list[SyncOutput]) -> list[str]:
    return [o.text for o in out if isinstance(o, SyncLog)]


def _mcasts(out: list[SyncOutput]) -> list[sync_wire.SyncMessage]:
    return [sync_wire.decode(o.payload) for o in out if isinstance(o, SyncMcast)]


class Ring:
    """Coordinators of a few nodes over one agreed stream, stepped by hand."""

    def __init__(self, services: dict[int, list[int]]) -> None:
        self.nodes = {node: SyncCoordinator(ids) for node, ids in services.items()}
        self.stream: list[tuple[int, bytes]] = []
        self.out: dict[int, list[SyncOutput]] = {node: [] for node in services}

    def collect(self) -> None:
        for node, coordinator in self.nodes.items():
            for output in coordinator.take_output():
                self.out[node].append(output)
                if isinstance(output, SyncMcast):
                    self.stream.append((node, output.payload))

    def confchg(self, members: tuple[int, ...], ring: RingId) -> None:
        for node in members:
            self.nodes[node].config_change(_trans(members, ring))
            self.nodes[node].config_change(_regular(members, ring))
        self.collect()

    def deliver_all(self, members: tuple[int, ...] | None = None) -> None:
        """Deliver the stream in order to ``members`` (every node by default)."""
        targets = members if members is not None else tuple(self.nodes)
        while self.stream:
            sender, payload = self.stream.pop(0)
            for node in targets:
                self.nodes[node].deliver(sender, payload)
            self.collect()

    def done(self, node: int, service: int, ring: RingId) -> None:
        self.nodes[node].service_done(service, ring)
        self.collect()

    def take(self, node: int) -> list[SyncOutput]:
        out, self.out[node] = self.out[node], []
        return out


def test_a_node_alone_goes_through_every_step() -> None:
    ring = Ring({1: [2, 0]})
    ring.confchg((1,), R1)
    out = ring.take(1)
    assert _mcasts(out) == [ServiceBuild(R1, (0, 2))]
    assert _commands(out) == [SyncInit((1,), (1,), R1)]
    ring.deliver_all()
    assert _commands(ring.take(1)) == [SyncProcess(0, R1)]
    ring.done(1, 0, R1)
    assert _mcasts(ring.take(1)) == [Barrier(R1, 0)]
    assert not ring.nodes[1].in_sync
    ring.deliver_all()
    assert _commands(ring.take(1)) == [SyncActivate(0, R1), SyncProcess(2, R1)]
    ring.done(1, 2, R1)
    ring.deliver_all()
    assert _commands(ring.take(1)) == [SyncActivate(2, R1), SyncComplete(R1, (1,))]
    assert ring.nodes[1].in_sync


def test_activate_waits_for_every_members_barrier_and_services_run_in_id_order() -> None:
    ring = Ring({1: [5, 0], 2: [0, 5], 3: [5, 0]})
    ring.confchg((1, 2, 3), R1)
    ring.deliver_all()
    for node in (1, 2, 3):
        assert _commands(ring.take(node))[-1] == SyncProcess(0, R1)
    ring.done(1, 0, R1)
    ring.done(3, 0, R1)
    ring.deliver_all()
    assert all(not _commands(ring.take(node)) for node in (1, 2, 3))
    ring.done(2, 0, R1)
    ring.deliver_all()
    for node in (1, 2, 3):
        assert _commands(ring.take(node)) == [SyncActivate(0, R1), SyncProcess(5, R1)]


def _ring_in_process(services: list[int]) -> Ring:
    ring = Ring({1: services, 2: services})
    ring.confchg((1, 2), R1)
    ring.deliver_all()
    ring.take(1)
    ring.take(2)
    return ring


def test_a_new_configuration_aborts_mid_process_and_the_late_report_is_ignored() -> None:
    ring = _ring_in_process([0, 2])
    ring.nodes[1].config_change(_trans((1,), R2))
    assert _commands(ring.nodes[1].take_output()) == []
    ring.nodes[1].config_change(_regular((1,), R2))
    out = ring.nodes[1].take_output()
    assert _commands(out) == [SyncAbort(0, R1), SyncInit((1,), (1,), R2)]
    ring.nodes[1].service_done(0, R1)
    assert _mcasts(ring.nodes[1].take_output()) == []


def test_a_new_configuration_aborts_mid_barrier() -> None:
    ring = _ring_in_process([0, 2])
    ring.done(1, 0, R1)
    ring.deliver_all()
    assert _commands(ring.take(1)) == []
    ring.nodes[1].config_change(_trans((1,), R2))
    ring.nodes[1].config_change(_regular((1,), R2))
    assert _commands(ring.nodes[1].take_output())[0] == SyncAbort(0, R1)


def test_nothing_is_aborted_before_the_service_list_is_built_or_after_completion() -> None:
    coordinator = SyncCoordinator([0])
    coordinator.config_change(_regular((1, 2), R1))
    coordinator.config_change(_trans((1,), R2))
    coordinator.config_change(_regular((1,), R2))
    assert not [o for o in coordinator.take_output() if isinstance(o, SyncAbort)]


def test_old_ring_messages_are_discarded_with_corosyncs_words() -> None:
    ring = _ring_in_process([0])
    stale_barrier = sync_wire.encode(Barrier(R1, 0))
    stale_build = sync_wire.encode(ServiceBuild(R1, (0, 7)))
    node = ring.nodes[1]
    node.config_change(_trans((1, 2), R2))
    node.config_change(_regular((1, 2), R2))
    node.take_output()
    node.deliver(2, stale_barrier)
    node.deliver(2, stale_build)
    assert _logs(node.take_output()) == [
        "barrier for old ring - discarding",
        "service build for old ring - discarding",
    ]
    # The new round is unaffected: service 7 from the stale build never joins its list.
    node.deliver(1, sync_wire.encode(ServiceBuild(R2, (0,))))
    node.deliver(2, sync_wire.encode(ServiceBuild(R2, (0,))))
    assert _commands(node.take_output()) == [SyncProcess(0, R2)]


def test_a_round_cannot_complete_between_the_transitional_and_regular_confchg() -> None:
    ring = _ring_in_process([0])
    ring.done(1, 0, R1)
    ring.done(2, 0, R1)
    # The last barriers are delivered after node 1 saw the TRANSITIONAL of the next ring.
    ring.nodes[1].config_change(_trans((1,), R2))
    ring.deliver_all(members=(1,))
    out = ring.take(1)
    assert SyncComplete(R1, (1, 2)) not in out
    assert not [o for o in out if isinstance(o, SyncActivate)]
    assert "barrier for old ring - discarding" in _logs(out)
    assert not ring.nodes[1].in_sync
    ring.nodes[1].config_change(_regular((1,), R2))
    assert _commands(ring.nodes[1].take_output())[0] == SyncAbort(0, R1)


def test_an_unknown_external_service_is_a_no_op_here() -> None:
    ring = Ring({1: [0], 2: [0, 9]})
    ring.confchg((1, 2), R1)
    ring.deliver_all()
    ring.done(1, 0, R1)
    ring.done(2, 0, R1)
    ring.deliver_all()
    one, two = ring.take(1), ring.take(2)
    assert SyncProcess(9, R1) not in one
    assert Barrier(R1, 9) in _mcasts(one)
    assert "Unknown External Service (id = 9) runs as a no-op here" in _logs(one)
    assert _commands(two)[-1] == SyncProcess(9, R1)
    ring.done(2, 9, R1)
    ring.deliver_all()
    assert _commands(ring.take(1)) == [SyncComplete(R1, (1, 2))]
    assert _commands(ring.take(2)) == [SyncActivate(9, R1), SyncComplete(R1, (1, 2))]


def test_transitional_members_are_the_saved_ones_still_in_the_ring() -> None:
    coordinator = SyncCoordinator([0])
    coordinator.config_change(_trans((1, 3, 4), R1))
    coordinator.config_change(_regular((1, 2, 3), R1))
    assert _commands(coordinator.take_output()) == [SyncInit((1, 3), (1, 2, 3), R1)]


@pytest.mark.parametrize(
    "garbage",
    [
        b"",
        b"\x01",
        b"\x02\x00" + msgpack.packb([4, 1, 0]),
        b"\x01\x07" + msgpack.packb([4, 1, 0]),
        b"\x01\x00\xc1",
        b"\x01\x00" + msgpack.packb([4, 1, 0]) + b"\x00",
        b"\x01\x00" + msgpack.packb([4, 1]),
        b"\x01\x00" + msgpack.packb([True, 1, 0]),
        b"\x01\x00" + msgpack.packb([-1, 1, 0]),
        b"\x01\x00" + msgpack.packb([4, 0, 0]),
        b"\x01\x00" + msgpack.packb([4, 1, 0x10000]),
        b"\x01\x00" + msgpack.packb({"ring": 4}),
        b"\x01\x01" + msgpack.packb([4, 1, [0, 0]]),
        b"\x01\x01" + msgpack.packb([4, 1, 3]),
        b"\x01\x01" + msgpack.packb([4, 1, list(range(1025))]),
        b"\x01\x01" + msgpack.packb([4, 1, [b"x"]]),
    ],
)
def test_garbage_is_refused_with_a_typed_error_and_dropped(garbage: bytes) -> None:
    with pytest.raises(SyncWireError) as refused:
        sync_wire.decode(garbage)
    assert refused.value.code is CsErrorCode.CS_ERR_MESSAGE_ERROR
    ring = _ring_in_process([0])
    ring.nodes[1].deliver(2, garbage)
    out = ring.nodes[1].take_output()
    assert [o.level for o in out if isinstance(o, SyncLog)] == [logging.WARNING]
    assert _logs(out)[0].startswith("discarding sync message from node 2: ")
    ring.done(1, 0, R1)
    ring.done(2, 0, R1)
    ring.deliver_all()
    assert SyncComplete(R1, (1, 2)) in ring.take(1)


def test_another_version_has_its_own_error() -> None:
    with pytest.raises(SyncVersionError, match="version 2"):
        sync_wire.decode(b"\x02\x00" + msgpack.packb([4, 1, 0]))


def test_messages_from_a_non_member_or_out_of_phase_are_dropped() -> None:
    ring = _ring_in_process([0])
    node = ring.nodes[1]
    node.deliver(9, sync_wire.encode(Barrier(R1, 0)))
    node.deliver(2, sync_wire.encode(Barrier(R1, 5)))
    node.deliver(2, sync_wire.encode(ServiceBuild(R1, (0, 5))))
    out = node.take_output()
    assert not _commands(out)
    assert len(_logs(out)) == 3
    ring.done(1, 0, R1)
    ring.done(2, 0, R1)
    ring.deliver_all()
    assert _commands(ring.take(1)) == [SyncActivate(0, R1), SyncComplete(R1, (1, 2))]


def test_a_report_for_another_service_is_ignored() -> None:
    ring = _ring_in_process([0, 2])
    ring.done(1, 2, R1)
    assert _mcasts(ring.take(1)) == []


def test_local_services_must_be_distinct() -> None:
    with pytest.raises(InvalidParamError):
        SyncCoordinator([0, 0])


def test_the_ready_line_is_corosyncs() -> None:
    assert READY_LINE == "Completed service synchronization, ready to provide service."


@pytest.mark.parametrize(
    "message",
    [
        ServiceBuild(RingId(seq=0, rep=1), ()),
        ServiceBuild(RingId(seq=(1 << 64) - 1, rep=0xFFFFFFFF), tuple(range(1024))),
        Barrier(RingId(seq=12, rep=3), 0xFFFF),
    ],
)
def test_wire_round_trip(message: sync_wire.SyncMessage) -> None:
    assert sync_wire.decode(sync_wire.encode(message)) == message


def test_encode_refuses_out_of_range_fields() -> None:
    with pytest.raises(SyncWireError):
        sync_wire.encode(Barrier(RingId(seq=1, rep=0), 0))
    with pytest.raises(SyncWireError):
        sync_wire.encode(ServiceBuild(RingId(seq=1, rep=1), (1, 1)))


@settings(derandomize=True, deadline=None, max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_only_the_typed_error(data: bytes) -> None:
    try:
        message = sync_wire.decode(data)
    except SyncWireError:
        return
    assert isinstance(message, ServiceBuild | Barrier)


@settings(derandomize=True, deadline=None, max_examples=200)
@given(st.binary(max_size=48))
def test_random_bytes_never_disturb_a_round(data: bytes) -> None:
    ring = _ring_in_process([0])
    ring.nodes[1].deliver(2, b"\x01\x00" + data)
    ring.nodes[1].take_output()
    ring.done(1, 0, R1)
    ring.done(2, 0, R1)
    ring.deliver_all()
    assert SyncComplete(R1, (1, 2)) in ring.take(1)


# -- the driver ------------------------------------------------------------------------------


class _Engine(ValidEngine):
    """Records its calls; ``sync_process`` says "again" ``again`` times per round."""

    service_id: ClassVar[int] = 40
    again: ClassVar[int] = 0

    def __init__(self) -> None:
        super().__init__()
        self.left = 0

    def sync_init(self, transitional: tuple[int, ...], members: tuple[int, ...], ring: Any) -> None:
        super().sync_init(transitional, members, ring)
        self.left = self.again

    def sync_process(self) -> bool:
        self.calls.append("sync_process")
        self.left -= 1
        return self.left < 0


class _Second(_Engine):
    name: ClassVar[str] = "second"
    service_id: ClassVar[int] = 3
    again: ClassVar[int] = 2


def test_the_driver_runs_every_callback_in_order_and_reports_done() -> None:
    first, second = _Engine(), _Second()
    driver = SyncDriver([first, second])
    assert driver.service_ids == (3, 40)
    driver.apply(SyncInit((1,), (1, 2), R1))
    assert first.calls == second.calls == [f"sync_init (1,) (1, 2) {R1}"]
    driver.apply(SyncProcess(3, R1))
    assert driver.busy
    assert driver.poll() == []
    assert driver.poll(max_calls=5) == [ServiceDone(3, R1)]
    assert second.calls.count("sync_process") == 3
    assert not driver.busy
    assert driver.poll() == []
    driver.apply(SyncActivate(3, R1))
    assert second.calls[-1] == "sync_activate"
    assert "sync_process" not in first.calls


def test_an_abort_drops_the_pending_process() -> None:
    engine = _Second()
    driver = SyncDriver([engine])
    driver.apply(SyncInit((), (1,), R1))
    driver.apply(SyncProcess(3, R1))
    assert driver.poll() == []
    driver.apply(SyncAbort(3, R1))
    assert not driver.busy
    assert engine.calls[-1] == "sync_abort"
    assert driver.poll() == []


def test_the_driver_refuses_an_unknown_service_and_duplicate_ids() -> None:
    driver = SyncDriver([_Engine()])
    with pytest.raises(NotExistError):
        driver.apply(SyncProcess(7, R1))
    with pytest.raises(InvalidParamError):
        SyncDriver([_Engine(), _Engine()])
