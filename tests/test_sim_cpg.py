"""cpgverify in the simulator: the real CPG engine in every node's sync stack, on the real SRP
under every fault, with clients that join, send sequenced messages, die and are replaced; a
fixed seed range in CI, proof that the runs exercise what they check, and proof that the
checker catches broken engines."""

from __future__ import annotations

from dataclasses import replace

import pytest

from pycorosync.exec.totem.events import RingId
from pycorosync.exec.totem.sim import ALL_FAULTS
from pycorosync.exec.totem.sim.cpg_check import (
    ClientRecord,
    CpgRule,
    Delivered,
    ViewChanged,
    check_clients,
    check_tables,
    decode_message,
    encode_message,
)
from pycorosync.exec.totem.sim.cpg_runner import CpgSimResult, run_cpg_seed
from pycorosync.exec.totem.sim.runner import nodes_for_seed
from pycorosync.services.cpg import CpgEngine
from pycorosync.services.cpg.merge import GroupChange

CI_SEEDS = range(30)
"""The fixed CI range (wider sweeps run outside CI: 100 seeds passed when this was written)."""
CHUNK = 15


def _run(seed: int, engine_class: type[CpgEngine] = CpgEngine) -> CpgSimResult:
    return run_cpg_seed(seed, nodes_for_seed(seed, 3, 7), ALL_FAULTS, engine_class=engine_class)


@pytest.mark.parametrize("first", range(CI_SEEDS.start, CI_SEEDS.stop, CHUNK))
def test_seeds_run_clean_with_every_fault(first: int) -> None:
    results = [_run(seed) for seed in range(first, min(first + CHUNK, CI_SEEDS.stop))]
    failures = [result.report() for result in results if not result.passed]
    assert not failures, "\n\n".join(failures)
    # The range is only worth running if it drives every path the checker judges.
    seeds = len(results)
    assert sum(r.deaths for r in results) > 3 * seeds  # clients died and were replaced
    assert sum(r.leaves for r in results) > seeds  # clients left gracefully, then went
    assert sum(r.rejoins for r in results) > seeds  # ... or joined again on the same handle
    assert sum(r.fragmented for r in results) > 10 * seeds  # messages sent in fragments
    assert sum(r.interrupted for r in results) > seeds  # CS_ERR_INTERRUPT, sent again
    assert sum(r.dropped for r in results) > 0  # sent past flow control, dropped, told
    assert sum(r.clients for r in results) > 15 * seeds
    assert sum(r.accepted for r in results) > 200 * seeds
    assert sum(r.deliveries for r in results) > 1500 * seeds
    assert sum(r.confchgs for r in results) > 100 * seeds
    assert sum(r.join_retries for r in results) > 0  # JOIN answered TRY_AGAIN, retried
    assert sum(r.held_sends for r in results) > 0  # flow control ENABLED held a send back
    reasons = frozenset().union(*(r.reasons for r in results))
    assert {"JOIN", "LEAVE", "PROCDOWN", "NODEDOWN", "NODEUP"} <= reasons


def test_a_seed_reproduces_exactly() -> None:
    first, second = _run(7), _run(7)
    assert first.passed, first.report()
    assert replace(first, wall_seconds=0.0) == replace(second, wall_seconds=0.0)


# -- broken engines: each must be caught -----------------------------------------------------


class _DropsADelivery(CpgEngine):
    """Now and then does not hand a delivered message to its clients."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _exec_mcast(self, payload: bytes, sender: int) -> None:
        self.calls += 1
        if self.calls % 60 != 0:
            super()._exec_mcast(payload, sender)


class _Reorders(CpgEngine):
    """Now and then hands a message to its clients after the next one."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.held: tuple[bytes, int] | None = None

    def _exec_mcast(self, payload: bytes, sender: int) -> None:
        self.calls += 1
        if self.held is None and self.calls % 60 == 0:
            self.held = (payload, sender)
            return
        super()._exec_mcast(payload, sender)
        if self.held is not None:
            held, self.held = self.held, None
            super()._exec_mcast(*held)


class _SkipsAConfchg(CpgEngine):
    """Now and then does not tell its clients of a membership change."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def _send_confchg(self, change: GroupChange) -> None:
        self.calls += 1
        if self.calls % 15 != 0:
            super()._send_confchg(change)


@pytest.mark.parametrize("broken", [_DropsADelivery, _Reorders, _SkipsAConfchg])
def test_the_checker_catches_a_broken_engine(broken: type[CpgEngine]) -> None:
    for seed in range(5):
        result = _run(seed, broken)
        if not result.passed:
            break
    else:
        pytest.fail(f"{broken.__name__} went unnoticed over 5 seeds")
    assert result.error is None, result.report()
    assert all(v.startswith("CPG") for v in result.violations), result.report()


# -- the checker's rules, fed by hand --------------------------------------------------------

R = RingId(seq=4, rep=1)
A, B = (1, 100), (2, 200)


def _record(address: tuple[int, int], sent: int, *events: Delivered | ViewChanged) -> ClientRecord:
    return ClientRecord(address[0], 0, address[1], sent=sent, events=list(events))


def _view(
    members: tuple[tuple[int, int], ...], joined: tuple[tuple[int, int], ...] = ()
) -> ViewChanged:
    return ViewChanged(R, members, (), joined)


def test_a_message_survives_its_round_trip_and_a_flipped_byte_does_not() -> None:
    data = encode_message(A, 7, 20)
    assert decode_message(data) == (A, 7)
    assert decode_message(data[:5] + bytes([data[5] ^ 1]) + data[6:]) is None


def test_the_checker_accepts_two_clients_that_saw_the_same_thing() -> None:
    both = (_view((A, B), (A, B)), Delivered(A, 0), Delivered(B, 0), _view((A,)))
    records = [_record(A, 1, *both), _record(B, 1, *both[:3])]
    records[1].alive = False
    assert check_clients(records) == []


def test_the_checker_flags_a_lost_own_message_a_gap_and_a_different_stream() -> None:
    a = _record(A, 3, _view((A, B), (A, B)), Delivered(A, 0), Delivered(A, 2), _view((A,)))
    b = _record(B, 0, _view((A, B), (A, B)), Delivered(A, 0), Delivered(A, 1), _view((A,)))
    b.alive = False
    rules = {v.rule for v in check_clients([a, b])}
    assert rules == {CpgRule.SELF_DELIVERY, CpgRule.FIFO, CpgRule.VIEW_AGREEMENT}


def test_a_client_that_saw_itself_leave_must_have_all_its_messages_a_dead_one_a_prefix() -> None:
    leaving = (1, 101)
    gone = ViewChanged(R, (A,), (leaving,), (), frozenset({"LEAVE"}))
    leaver = _record(leaving, 2, _view((A, leaving), (A, leaving)), Delivered(leaving, 0), gone)
    leaver.alive, leaver.left = False, True
    assert [v.rule for v in check_clients([leaver])] == [CpgRule.SELF_DELIVERY]
    leaver.left = False  # it died instead: what it got back is a prefix
    assert check_clients([leaver]) == []


def test_views_are_told_apart_by_the_transitional_configuration_they_came_in() -> None:
    # A ring split: each side delivers the old ring's rest in its own transitional
    # configuration, with different holes, and a leave there gives both the same members.
    def after_split(
        transitional: tuple[int, ...], *got: Delivered
    ) -> list[Delivered | ViewChanged]:
        left = ViewChanged(R, (A, B), ((3, 300),), (), frozenset({"LEAVE"}), transitional)
        return [_view((A, B, (3, 300)), (A, B, (3, 300))), *got, left]

    a = _record(A, 0, *after_split((1,), Delivered((3, 300), 0)))
    b = _record(B, 0, *after_split((2,)))
    c = _record((3, 300), 1)
    c.alive = False
    assert check_clients([a, b, c]) == []
    b.events = after_split((1,))
    assert [v.rule for v in check_clients([a, b, c])] == [CpgRule.VIEW_AGREEMENT]


def test_a_fragmented_message_begun_before_a_join_is_not_owed_to_the_joiner() -> None:
    joined = _view((A, B), (B,))
    old = _record(A, 1, _view((A,), (A,)), joined, Delivered(A, 0, spans_views=True), _view((B,)))
    new = _record(B, 0, joined, _view((B,)))
    old.alive = False
    assert check_clients([old, new]) == []
    old.events[2] = Delivered(A, 0)  # a whole message the joiner should have had
    assert [v.rule for v in check_clients([old, new])] == [CpgRule.VIEW_AGREEMENT]


def test_a_message_the_engine_said_it_dropped_is_owed_to_nobody_and_must_not_arrive() -> None:
    both = (_view((A, B), (A, B)), Delivered(A, 0), Delivered(A, 2))
    sender, receiver = _record(A, 3, *both), _record(B, 0, *both)
    sender.dropped = {1}
    assert check_clients([sender, receiver]) == []
    receiver.events.append(Delivered(A, 1))
    assert CpgRule.INTEGRITY in {v.rule for v in check_clients([sender, receiver])}
    sender.dropped = set()  # not dropped after all: then 1 is missing everywhere
    rules = {v.rule for v in check_clients([sender, _record(B, 0, *both)])}
    assert rules == {CpgRule.SELF_DELIVERY, CpgRule.FIFO}


def test_the_checker_flags_a_corrupted_message_and_one_from_a_non_member() -> None:
    a = _record(A, 0, _view((A,), (A,)), Delivered(B, None), Delivered(B, 0))
    b = _record(B, 1)
    b.alive = False
    rules = [v.rule for v in check_clients([a, b])]
    assert rules == [CpgRule.INTEGRITY, CpgRule.FIFO]


def test_the_checker_flags_tables_that_differ_or_miss_a_live_client() -> None:
    g = b"g"
    same = {1: [(g, A), (g, B)], 2: [(g, A), (g, B)]}
    assert check_tables(same, [A, B], g) == []
    assert [v.rule for v in check_tables(same, [A], g)] == [CpgRule.TABLE] * 2
    differ = {1: [(g, A)], 2: [(g, A), (g, B)]}
    assert {v.rule for v in check_tables(differ, [A, B], g)} == {CpgRule.TABLE}
