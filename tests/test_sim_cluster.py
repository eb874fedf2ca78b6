"""SimCluster: event order and batching, timers, node lifecycle, traffic and the checker."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pycorosync.exec.totem.core_api import Send, TotemCore
from pycorosync.exec.totem.events import (
    ConfigChange,
    ConfigKind,
    Delivery,
    Guarantee,
    PersistRingSeq,
    RingId,
)
from pycorosync.exec.totem.evs_check import EvsChecker, Invariant
from pycorosync.exec.totem.history import Crashed, Restarted, Submitted
from pycorosync.exec.totem.sim.cluster import (
    BATCH_WINDOW,
    CoreFactory,
    NodeState,
    SimCluster,
    SimError,
)
from pycorosync.exec.totem.sim.network import Arrival, LinkProfile
from pycorosync.exec.totem.sim.scenario import SIM_CONFIG
from tests._sim_fakes import (
    RecordingChecker,
    ScriptCore,
    ScriptFactory,
    SoloCore,
    solo_factory,
)

LATENCY = 0.01
STEADY = LinkProfile(latency=LATENCY, jitter=0.0)


def make(
    factory: CoreFactory,
    nodes: int = 2,
    checker: EvsChecker | None = None,
    **options: int,
) -> SimCluster:
    return SimCluster(
        nodes,
        1,
        SIM_CONFIG,
        factory,
        checker if checker is not None else RecordingChecker(),
        link=STEADY,
        **options,  # type: ignore[arg-type]
    )


def sends_at(
    times: Sequence[float], dest: int, prefix: bytes = b"d", dest_deadline: float | None = None
) -> ScriptFactory:
    """Node 1 sends one datagram to ``dest`` at each of ``times`` (its timer)."""
    pending = list(times)

    def arm(core: ScriptCore, now: float) -> None:
        if core.node == 1 and pending:
            core.deadline = pending[0]
        elif core.node == dest and not core.calls[1:]:
            core.deadline = dest_deadline

    def fire(core: ScriptCore, now: float) -> None:
        if core.node != 1:
            return
        index = len(times) - len(pending)
        pending.pop(0)
        core.sends.append(Send(dest, prefix + b"%d" % index))
        arm(core, now)

    return ScriptFactory(on_start=arm, on_timer=fire)


def batches(core: ScriptCore) -> list[tuple[float, object]]:
    return [(now, data) for kind, now, data in core.calls if kind == "batch"]


# -- datagrams and batching --------------------------------------------------------------


def test_datagrams_that_arrived_together_come_as_one_batch_in_order() -> None:
    def burst(core: ScriptCore, now: float) -> None:
        if core.node == 1:
            core.sends += [Send(2, b"a"), Send(2, b"b"), Send(None, b"c")]
            core.deadline = 0.5

    def later(core: ScriptCore, now: float) -> None:
        core.sends.append(Send(2, b"d"))

    factory = ScriptFactory(on_start=burst, on_timer=later)
    cluster = make(factory)
    cluster.start(2)
    cluster.start(1)
    cluster.run_until(1.0)
    assert batches(factory.latest(2)) == [
        (pytest.approx(LATENCY + BATCH_WINDOW), [b"a", b"b", b"c"]),
        (pytest.approx(0.5 + LATENCY + BATCH_WINDOW), [b"d"]),
    ]
    assert batches(factory.latest(1)) == []
    assert cluster.datagrams == 4


def test_a_paused_node_gets_its_timers_then_its_whole_backlog_on_resume() -> None:
    factory = sends_at([0.2, 0.3, 0.4], dest=2, dest_deadline=0.25)
    cluster = make(factory)
    cluster.start(1)
    cluster.start(2)
    cluster.run_until(0.1)
    cluster.pause(2, duration=0.5)
    cluster.run_until(0.599)
    two = factory.latest(2)
    assert two.calls == [("start", 0.0, None)]
    assert cluster.node(2).state is NodeState.PAUSED
    cluster.run_until(0.6)
    assert cluster.node(2).state is NodeState.UP
    assert [(kind, now) for kind, now, _ in two.calls[1:]] == [("timer", 0.6), ("batch", 0.6)]
    assert two.calls[2][2] == [b"d0", b"d1", b"d2"]
    cluster.run_until(1.0)
    assert len(two.calls) == 3


def test_a_paused_nodes_receive_buffer_is_bounded() -> None:
    factory = sends_at([0.1 * i for i in range(1, 6)], dest=2, prefix=b"x" * 39)
    cluster = make(factory, inbox_bytes=100)
    cluster.start(1)
    cluster.start(2)
    cluster.pause(2)
    cluster.run_until(1.0)
    cluster.resume(2)
    (batch,) = batches(factory.latest(2))
    assert batch[1] == [b"x" * 39 + b"0", b"x" * 39 + b"1"]
    assert cluster.inbox_drops == 3
    assert any("receive buffer full" in line for line in cluster.trace.lines())


def test_a_crashed_node_loses_arrivals_but_its_sent_datagrams_still_arrive() -> None:
    def hello(core: ScriptCore, now: float) -> None:
        core.sends.append(Send(None, b"hello %d" % core.node))

    factory = ScriptFactory(on_start=hello)
    cluster = make(factory, nodes=3)
    for node in (1, 2, 3):
        cluster.start(node)
    cluster.run_until(LATENCY / 2)
    cluster.crash(1)
    cluster.run_until(1.0)
    assert batches(factory.latest(2)) == [
        (pytest.approx(LATENCY + BATCH_WINDOW), [b"hello 1", b"hello 3"])
    ]
    assert factory.latest(1).calls == [("start", 0.0, None)]
    assert any("lost datagram from n2 (node down)" in line for line in cluster.trace.lines())


# -- timers ------------------------------------------------------------------------------


def test_timers_fire_at_their_deadlines() -> None:
    deadlines = [0.3, 0.7, 1.2]

    def first(core: ScriptCore, now: float) -> None:
        core.deadline = deadlines[0]

    def next_one(core: ScriptCore, now: float) -> None:
        fired = sum(1 for kind, _, _ in core.calls if kind == "timer")
        core.deadline = deadlines[fired] if fired < len(deadlines) else None

    factory = ScriptFactory(on_start=first, on_timer=next_one)
    cluster = make(factory, nodes=1)
    cluster.start(1)
    cluster.run_until(5.0)
    core = factory.latest(1)
    assert [now for kind, now, _ in core.calls if kind == "timer"] == deadlines
    assert cluster.now == 5.0


def test_a_moved_or_cancelled_deadline_leaves_no_stale_timer() -> None:
    def arm(core: ScriptCore, now: float) -> None:
        core.deadline = 1.0
        if core.node == 2:
            core.sends += [Send(1, b"earlier")]

    def on_batch(core: ScriptCore, datagrams: list[bytes], now: float) -> None:
        core.deadline = 0.5 if datagrams == [b"earlier"] else None

    def on_timer(core: ScriptCore, now: float) -> None:
        if core.node == 1 and now < 2.0:
            core.deadline = 2.0
            core.sends.append(Send(2, b"cancel"))

    factory = ScriptFactory(on_start=arm, on_batch=on_batch, on_timer=on_timer)
    cluster = make(factory)
    cluster.start(1)
    cluster.start(2)
    cluster.run_until(5.0)
    one, two = factory.latest(1), factory.latest(2)
    assert [now for kind, now, _ in one.calls if kind == "timer"] == [0.5, 2.0]
    assert [now for kind, now, _ in two.calls if kind == "timer"] == []


def test_a_deadline_in_the_past_fires_at_once() -> None:
    def arm(core: ScriptCore, now: float) -> None:
        core.deadline = now - 1.0 if not core.calls[1:] else None

    factory = ScriptFactory(on_start=arm)
    cluster = make(factory, nodes=1)
    cluster.at(0.3, lambda: cluster.start(1))
    cluster.run_until(1.0)
    assert factory.latest(1).calls == [("start", 0.3, None), ("timer", 0.3, None)]


def test_a_timer_stuck_at_one_instant_is_an_error() -> None:
    def stuck(core: ScriptCore, now: float) -> None:
        core.deadline = 0.1

    factory = ScriptFactory(on_start=stuck, on_timer=stuck)
    cluster = make(factory, nodes=1)
    cluster.start(1)
    with pytest.raises(SimError, match="keeps coming due"):
        cluster.run_until(1.0)


# -- lifecycle ---------------------------------------------------------------------------


def test_crash_and_restart_pass_the_persisted_ring_seq_and_are_recorded() -> None:
    seqs: list[int] = []

    def factory(nodeid: int, members: Sequence[int], ring_seq: int) -> TotemCore:
        seqs.append(ring_seq)
        return SoloCore(nodeid, members, ring_seq)

    checker = RecordingChecker()
    cluster = make(factory, nodes=1, checker=checker)
    cluster.start(1)
    cluster.run_until(1.0)
    cluster.crash(1)
    assert cluster.node(1).state is NodeState.DOWN
    cluster.run_until(2.0)
    cluster.restart(1)
    cluster.run_until(3.0)
    cluster.crash(1)
    cluster.restart(1)
    assert seqs == [0, 4, 8]
    assert cluster.node(1).persisted_ring_seq == 12
    markers = [type(entry) for _, entry in checker.seen if isinstance(entry, Crashed | Restarted)]
    assert markers == [Crashed, Restarted, Crashed, Restarted]
    regulars = [
        entry.ring_id.seq
        for _, entry in checker.seen
        if isinstance(entry, ConfigChange) and entry.kind is ConfigKind.REGULAR
    ]
    assert regulars == [4, 8, 12]
    assert checker.finish() == []


def test_persist_ring_seq_is_handled_before_the_steps_datagrams_leave() -> None:
    def persist_and_send(core: ScriptCore, now: float) -> None:
        if core.node == 1:
            core.sends.append(Send(2, b"commit"))
            core.events.append(PersistRingSeq(seq=7))

    cluster = make(ScriptFactory(on_start=persist_and_send))
    route = cluster.network.route
    seen: list[int] = []

    def spy(now: float, src: int, dest: int | None) -> list[Arrival]:
        seen.append(cluster.node(src).persisted_ring_seq)
        return route(now, src, dest)

    cluster.network.route = spy  # type: ignore[method-assign]
    cluster.start(1)
    assert seen == [7]
    lines = cluster.trace.lines()
    persist = next(i for i, line in enumerate(lines) if "persist ring seq 7" in line)
    out = next(i for i, line in enumerate(lines) if "out -> n2" in line)
    assert persist < out


def test_leave_sends_the_goodbye_stops_the_node_and_a_restart_follows() -> None:
    factory = ScriptFactory()
    checker = RecordingChecker()
    cluster = make(factory, checker=checker)
    cluster.start(1)
    cluster.start(2)
    cluster.run_until(0.5)
    cluster.leave(1)
    assert factory.latest(1).calls[-1] == ("leave", 0.5, None)
    assert cluster.node(1).state is NodeState.DOWN
    cluster.run_until(1.0)
    assert batches(factory.latest(2)) == [(pytest.approx(0.5 + LATENCY + BATCH_WINDOW), [b"leave"])]
    cluster.restart(1)
    assert len(factory.built) == 3
    assert [type(e) for n, e in checker.seen if n == 1] == [Crashed, Restarted]


def test_node_operations_in_the_wrong_state_are_refused() -> None:
    cluster = make(ScriptFactory())
    with pytest.raises(SimError, match="never ran"):
        cluster.restart(1)
    with pytest.raises(SimError, match="down"):
        cluster.crash(1)
    cluster.start(1)
    with pytest.raises(SimError, match="up"):
        cluster.start(1)
    with pytest.raises(SimError, match="up"):
        cluster.resume(1)
    cluster.pause(1)
    with pytest.raises(SimError, match="paused"):
        cluster.leave(1)
    assert cluster.running() == []


# -- the application and the checker -----------------------------------------------------


def test_submitted_is_recorded_before_the_deliveries_of_the_message() -> None:
    checker = RecordingChecker()
    cluster = make(solo_factory, nodes=1, checker=checker)
    cluster.start(1)
    payload = cluster.send_message(1, Guarantee.SAFE, padding=3)
    assert payload == b"n1:1|~~~"
    tail = checker.seen[-2:]
    assert tail == [
        (1, Submitted(payload=payload, guarantee=Guarantee.SAFE)),
        (1, Delivery(sender=1, ring_id=RingId(4, 1), seq=1, payload=payload, guarantee=1)),
    ]
    assert cluster.outstanding() == {}


def test_a_refused_mcast_is_not_submitted() -> None:
    checker = RecordingChecker()
    cluster = make(ScriptFactory(accept=False), nodes=1, checker=checker)
    cluster.start(1)
    assert cluster.send_message(1) is None
    assert not any(isinstance(entry, Submitted) for _, entry in checker.seen)
    assert (cluster.submitted, cluster.refused) == (0, 1)


def test_the_checker_receives_every_event_in_order() -> None:
    ring = RingId(seq=4, rep=1)
    events = [
        PersistRingSeq(seq=4),
        ConfigChange(kind=ConfigKind.TRANSITIONAL, members=(1,), left=(), joined=(), ring_id=ring),
        ConfigChange(kind=ConfigKind.REGULAR, members=(1,), left=(), joined=(), ring_id=ring),
    ]
    delivery = Delivery(sender=1, ring_id=ring, seq=1, payload=b"n1:1|")

    def emit(core: ScriptCore, now: float) -> None:
        core.events += events
        core.deadline = 0.2

    def deliver(core: ScriptCore, now: float) -> None:
        core.events.append(delivery)

    checker = RecordingChecker()
    cluster = make(ScriptFactory(on_start=emit, on_timer=deliver), nodes=1, checker=checker)
    cluster.start(1)
    assert cluster.send_message(1) == b"n1:1|"
    cluster.run_until(1.0)
    assert checker.seen == [
        (1, events[1]),
        (1, events[2]),
        (1, Submitted(payload=b"n1:1|")),
        (1, delivery),
    ]
    assert (cluster.deliveries, cluster.confchgs) == (1, 2)
    assert cluster.outstanding() == {}
    assert checker.finish() == []


def test_the_first_violation_stops_the_run_and_is_traced() -> None:
    ring = RingId(seq=4, rep=1)

    def broken(core: ScriptCore, now: float) -> None:
        core.events.append(
            ConfigChange(kind=ConfigKind.REGULAR, members=(1,), left=(), joined=(), ring_id=ring)
        )
        core.deadline = 0.5

    factory = ScriptFactory(on_start=broken)
    cluster = make(factory, nodes=1)
    cluster.start(1)
    assert cluster.stopped
    cluster.run_until(2.0)
    assert factory.latest(1).calls == [("start", 0.0, None)]
    assert cluster.checker.violations[0].invariant is Invariant.CONFCHG_PAIRING
    assert "VIOLATION EVS 4 CONFCHG_PAIRING" in cluster.trace.lines()[-1]


def test_traffic_is_a_poisson_stream_of_unique_payloads_from_up_nodes_only() -> None:
    checker = RecordingChecker()
    cluster = make(solo_factory, nodes=3, checker=checker)
    for node in (1, 2, 3):
        cluster.start(node)
    cluster.set_traffic(20.0, safe_fraction=0.5, max_padding=8)
    cluster.pause(3)
    cluster.run_until(10.0)
    submitted = [(n, e) for n, e in checker.seen if isinstance(e, Submitted)]
    per_node = {n: sum(1 for m, _ in submitted if m == n) for n in (1, 2, 3)}
    assert 140 < per_node[1] < 260
    assert 140 < per_node[2] < 260
    assert per_node[3] == 0
    payloads = [e.payload for _, e in submitted]
    assert len(set(payloads)) == len(payloads)
    assert all(p.startswith(b"n%d:" % n) for n, p in ((n, e.payload) for n, e in submitted))
    safe = sum(1 for _, e in submitted if e.guarantee is Guarantee.SAFE)
    assert 0.35 < safe / len(submitted) < 0.65
    cluster.set_traffic(0.0)
    before = cluster.submitted
    cluster.run_until(20.0)
    assert cluster.submitted == before
    assert checker.finish() == []


def test_actions_run_in_time_order_ties_in_scheduling_order_never_in_the_past() -> None:
    cluster = make(ScriptFactory(), nodes=1)
    order: list[tuple[str, float]] = []
    for name, when in (("b", 0.2), ("a", 0.1), ("c", 0.2), ("d", 0.1)):
        cluster.at(when, lambda name=name: order.append((name, cluster.now)), f"action {name}")
    cluster.run_until(0.15)
    cluster.at(0.05, lambda: order.append(("late", cluster.now)))
    cluster.run_until(1.0)
    assert order == [("a", 0.1), ("d", 0.1), ("late", 0.15), ("b", 0.2), ("c", 0.2)]
    assert [line.split()[-1] for line in cluster.trace.lines()] == ["a", "d", "b", "c"]
