"""The EVS checker: one valid and one minimally broken history per invariant, and a model."""

from __future__ import annotations

import time
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec.totem.events import ConfigChange, ConfigKind, Delivery, Guarantee, RingId
from pycorosync.exec.totem.evs_check import (
    EvsChecker,
    Invariant,
    Violation,
    liveness_violations,
)
from pycorosync.exec.totem.history import Crashed, HistoryEntry, Restarted, Submitted
from tests._evs_model import Chooser, RingModel

Step = tuple[int, HistoryEntry]

R1 = RingId(seq=4, rep=1)
R2 = RingId(seq=8, rep=1)
R2B = RingId(seq=8, rep=2)
R3 = RingId(seq=12, rep=1)


def sub(node: int, payload: bytes, safe: bool = False) -> Step:
    guarantee = Guarantee.SAFE if safe else Guarantee.AGREED
    return node, Submitted(payload=payload, guarantee=guarantee)


def dl(
    node: int, sender: int, ring: RingId, seq: int, payload: bytes, *, safe: bool = False
) -> Step:
    guarantee = Guarantee.SAFE if safe else Guarantee.AGREED
    return node, Delivery(
        sender=sender, ring_id=ring, seq=seq, payload=payload, guarantee=guarantee
    )


def trans(node: int, ring: RingId, members: Iterable[int], left: Iterable[int] = ()) -> Step:
    return node, ConfigChange(
        kind=ConfigKind.TRANSITIONAL,
        members=tuple(sorted(members)),
        left=tuple(sorted(left)),
        joined=(),
        ring_id=ring,
    )


def reg(node: int, ring: RingId, members: Iterable[int], joined: Iterable[int] = ()) -> Step:
    return node, ConfigChange(
        kind=ConfigKind.REGULAR,
        members=tuple(sorted(members)),
        left=(),
        joined=tuple(sorted(joined)),
        ring_id=ring,
    )


def form(ring: RingId, members: tuple[int, ...]) -> list[Step]:
    """Fresh nodes forming their first ring together."""
    steps: list[Step] = []
    for node in members:
        steps += [trans(node, ring, [node]), reg(node, ring, members, set(members) - {node})]
    return steps


def check(steps: list[Step]) -> list[Violation]:
    checker = EvsChecker()
    for node, entry in steps:
        checker.observe(node, entry)
    return checker.finish()


def kinds(violations: list[Violation]) -> set[Invariant]:
    return {v.invariant for v in violations}


# Three nodes form R1; 1 and 2 each send; node 3 sends m3 and crashes; 1 and 2 move to R2.
BASE: list[Step] = [
    sub(1, b"m1"),
    sub(2, b"m2"),
    sub(3, b"m3"),
    *form(R1, (1, 2, 3)),
    *[dl(n, 1, R1, 1, b"m1") for n in (1, 2, 3)],
    *[dl(n, 2, R1, 2, b"m2") for n in (1, 2, 3)],
    dl(1, 3, R1, 3, b"m3"),
    dl(2, 3, R1, 3, b"m3"),
    (3, Crashed()),
    trans(1, R2, [1, 2], left=[3]),
    reg(1, R2, [1, 2]),
    trans(2, R2, [1, 2], left=[3]),
    reg(2, R2, [1, 2]),
]


def test_base_history_is_valid() -> None:
    assert check(BASE) == []


def test_transitional_delivery_from_a_surviving_member_after_a_hole_is_valid() -> None:
    # seq 3 (from the crashed node 3) was received by nobody in T; seq 4 from node 1 is
    # delivered in the transitional configuration by both survivors.
    steps = [
        sub(1, b"a"),
        sub(3, b"lost"),
        sub(1, b"b", safe=True),
        *form(R1, (1, 2, 3)),
        *[dl(n, 1, R1, 1, b"a") for n in (1, 2)],
        (3, Crashed()),
        *[
            step
            for n in (1, 2)
            for step in (
                trans(n, R2, [1, 2], left=[3]),
                dl(n, 1, R1, 4, b"b", safe=True),
                reg(n, R2, [1, 2]),
            )
        ],
    ]
    assert check(steps) == []


def test_restart_rejoin_and_merge_are_valid() -> None:
    steps = [
        *BASE,
        (3, Restarted()),
        sub(3, b"again"),
        *[
            step
            for n in (1, 2)
            for step in (trans(n, R3, [1, 2]), reg(n, R3, [1, 2, 3], joined=[3]))
        ],
        trans(3, R3, [3]),
        reg(3, R3, [1, 2, 3], joined=[1, 2]),
        *[dl(n, 3, R3, 1, b"again") for n in (1, 2, 3)],
    ]
    assert check(steps) == []


def test_partitions_with_distinct_rings_are_valid() -> None:
    steps = [
        sub(1, b"m1", safe=True),
        *form(R1, (1, 2)),
        *[dl(n, 1, R1, 1, b"m1", safe=True) for n in (1, 2)],
        trans(1, R2, [1], left=[2]),
        reg(1, R2, [1]),
        trans(2, R2B, [2], left=[1]),
        reg(2, R2B, [2]),
    ]
    assert check(steps) == []


def broken(steps: list[Step], invariant: Invariant) -> list[Violation]:
    violations = check(steps)
    assert kinds(violations) == {invariant}, [str(v) for v in violations]
    return violations


def minimal(valid: list[Step], mutated: list[Step], invariant: Invariant) -> list[Violation]:
    """``valid`` passes and ``mutated``, a small change of it, breaks exactly ``invariant``."""
    assert check(valid) == []
    return broken(mutated, invariant)


def swap(steps: list[Step], a: Step, b: Step) -> list[Step]:
    out = list(steps)
    i, j = out.index(a), out.index(b)
    out[i], out[j] = b, a
    return out


def replace(steps: list[Step], old: Step, *new: Step) -> list[Step]:
    i = steps.index(old)
    return [*steps[:i], *new, *steps[i + 1 :]]


M3_AT_1 = dl(1, 3, R1, 3, b"m3")
TRANS_1 = trans(1, R2, [1, 2], left=[3])
REG_1 = reg(1, R2, [1, 2])
REG_2 = reg(2, R2, [1, 2])


def test_1_agreed_order() -> None:
    steps = swap(BASE, dl(1, 1, R1, 1, b"m1"), dl(1, 2, R1, 2, b"m2"))
    (violation,) = broken(steps, Invariant.AGREED_ORDER)
    assert violation.nodes == (1,)
    assert "seq 1" in violation.description


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(replace(BASE, M3_AT_1, M3_AT_1, M3_AT_1), id="delivered twice"),
        pytest.param(
            replace(BASE, dl(3, 2, R1, 2, b"m2"), dl(3, 2, R1, 2, b"other")), id="two contents"
        ),
        pytest.param(
            replace(BASE, dl(2, 3, R1, 3, b"m3"), dl(2, 3, R1, 3, b"m3"), dl(1, 2, R1, 4, b"m2")),
            id="one content, two ids",
        ),
        pytest.param(replace(BASE, sub(1, b"m1"), sub(1, b"m1-not")), id="never submitted"),
        pytest.param(replace(BASE, REG_1, REG_1, REG_1), id="confchg twice"),
    ],
)
def test_2_integrity(steps: list[Step]) -> None:
    broken(steps, Invariant.INTEGRITY)


def test_2_a_payload_submitted_twice_is_two_messages_and_no_more() -> None:
    # A CPG process that leaves and joins again multicasts the same join twice.
    twice = [sub(1, b"join"), sub(1, b"join"), *form(R1, (1, 2))]
    twice += [dl(n, 1, R1, seq, b"join") for seq in (1, 2) for n in (1, 2)]
    assert check(twice) == []
    broken([*twice, dl(2, 1, R1, 3, b"join")], Invariant.INTEGRITY)


def test_3_configuration_scoping() -> None:
    steps = [sub(3, b"m4"), *BASE, dl(1, 3, R1, 4, b"m4")]
    (violation,) = broken(steps, Invariant.CONFIG_SCOPING)
    assert "in ring 1.8" in violation.description


def test_3_sender_must_be_a_member() -> None:
    valid = [sub(1, b"x"), *form(R1, (1,)), dl(1, 1, R1, 1, b"x")]
    mutated = [sub(9, b"x"), *form(R1, (1,)), dl(1, 9, R1, 1, b"x")]
    minimal(valid, mutated, Invariant.CONFIG_SCOPING)


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(replace(BASE, TRANS_1), id="regular without trans"),
        pytest.param(replace(BASE, REG_1), id="trans never followed by its regular"),
        pytest.param(
            [*form(R2, (1,)), trans(1, R1, [1]), reg(1, R1, [1])], id="ring seq goes back"
        ),
        pytest.param(form(RingId(seq=4, rep=2), (1,)), id="rep is not the lowest member"),
    ],
)
def test_4_confchg_pairing_and_monotonicity(steps: list[Step]) -> None:
    broken(steps, Invariant.CONFCHG_PAIRING)


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(replace(BASE, REG_2, reg(2, R2, [1, 2, 4], joined=[4])), id="members differ"),
        pytest.param(replace(BASE, TRANS_1, trans(1, R2, [1, 2])), id="left is not old minus T"),
        pytest.param(
            replace(BASE, TRANS_1, trans(1, R2, [1], left=[2, 3]), reg(1, R2, [1, 2], joined=[2]))[
                :-3
            ]
            + BASE[-2:],
            id="T disagreement",
        ),
        pytest.param([trans(1, R1, [1, 2]), reg(1, R1, [1, 2])], id="T outside old members"),
        pytest.param(replace(BASE, REG_1, reg(1, R2, [1, 2], joined=[2])), id="joined not R - T"),
    ],
)
def test_5_membership_agreement(steps: list[Step]) -> None:
    broken(steps, Invariant.MEMBERSHIP_AGREEMENT)


def test_6_virtual_synchrony_same_set() -> None:
    steps = replace(BASE, dl(2, 3, R1, 3, b"m3"))
    (violation,) = broken(steps, Invariant.VIRTUAL_SYNCHRONY)
    assert set(violation.nodes) == {1, 2}
    assert "node 1 only [3]" in violation.description


def test_6_virtual_synchrony_same_split() -> None:
    # Node 2 delivers node 1's m1b in the transitional configuration, node 1 in the regular.
    valid = [
        sub(1, b"m1"),
        sub(1, b"m1b"),
        *form(R1, (1, 2)),
        *[dl(n, 1, R1, 1, b"m1") for n in (1, 2)],
        dl(1, 1, R1, 2, b"m1b"),
        trans(1, R2, [1, 2]),
        reg(1, R2, [1, 2]),
        dl(2, 1, R1, 2, b"m1b"),
        trans(2, R2, [1, 2]),
        reg(2, R2, [1, 2]),
    ]
    mutated = swap(valid, dl(2, 1, R1, 2, b"m1b"), trans(2, R2, [1, 2]))
    (violation,) = minimal(valid, mutated, Invariant.VIRTUAL_SYNCHRONY)
    assert "regular deliveries" in violation.description


def partition(node_one_extra: list[Step], node_two_extra: list[Step]) -> list[Step]:
    return [
        *node_one_extra,
        trans(1, R2, [1], left=[2, 3]),
        reg(1, R2, [1]),
        *node_two_extra,
        trans(2, R2B, [2], left=[1, 3]),
        reg(2, R2B, [2]),
    ]


def ring_of_three(*deliveries: Step) -> list[Step]:
    return [sub(1, b"m1", safe=True), sub(2, b"m2"), *form(R1, (1, 2, 3)), *deliveries]


def test_7_self_delivery() -> None:
    delivered = [dl(1, 2, R1, 1, b"m2"), dl(2, 2, R1, 1, b"m2")]
    valid = [*ring_of_three(*delivered), (3, Crashed()), *partition([], [])]
    mutated = replace(valid, dl(2, 2, R1, 1, b"m2"))
    (violation,) = minimal(valid, mutated, Invariant.SELF_DELIVERY)
    assert violation.nodes == (2,)


def test_7_self_delivery_is_not_owed_after_a_crash() -> None:
    steps = [*ring_of_three(dl(1, 2, R1, 1, b"m2")), (2, Crashed()), (3, Crashed())]
    steps += [trans(1, R2, [1], left=[2, 3]), reg(1, R2, [1])]
    assert check(steps) == []


def test_8_regular_delivery_gap() -> None:
    valid = [sub(1, b"a"), sub(1, b"b"), sub(1, b"c"), *form(R1, (1,))]
    valid += [dl(1, 1, R1, 1, b"a"), dl(1, 1, R1, 2, b"b"), dl(1, 1, R1, 3, b"c")]
    mutated = replace(valid, dl(1, 1, R1, 2, b"b"))
    (violation,) = minimal(valid, mutated, Invariant.SENDER_FIFO)
    assert "jumped from seq 1 to 3" in violation.description


def test_8_sender_prefix_across_nodes() -> None:
    # Node 2's first delivery in R1 is node 1's second message: it missed the first.
    valid = [sub(1, b"a"), sub(1, b"b"), *form(R1, (1, 2))]
    valid += [dl(1, 1, R1, 1, b"a"), dl(1, 1, R1, 2, b"b")]
    valid += [dl(2, 1, R1, 1, b"a"), dl(2, 1, R1, 2, b"b")]
    mutated = replace(valid, dl(2, 1, R1, 1, b"a"))
    (violation,) = minimal(valid, mutated, Invariant.SENDER_FIFO)
    assert violation.nodes == (2, 1)


def test_9_no_delivery_from_a_departed_node() -> None:
    steps = [
        sub(3, b"x"),
        sub(3, b"y"),
        *form(R1, (1, 3)),
        *[dl(n, 3, R1, 1, b"x") for n in (1, 3)],
    ]
    steps += [(3, Crashed()), trans(1, R2, [1], left=[3]), reg(1, R2, [1])]
    mutated = replace(steps, reg(1, R2, [1]), dl(1, 3, R1, 3, b"y"), reg(1, R2, [1]))
    (violation,) = minimal(steps, mutated, Invariant.NO_POST_DEPARTURE)
    assert violation.nodes == (1, 3)


def test_13_safe_delivery() -> None:
    safe = [dl(n, 1, R1, 1, b"m1", safe=True) for n in (1, 2)]
    valid = [*ring_of_three(*safe), (3, Crashed()), *partition([], [])]
    mutated = replace(valid, safe[1])
    (violation,) = minimal(valid, mutated, Invariant.SAFE_DELIVERY)
    assert violation.nodes == (2,)


def test_13_safe_is_checked_when_the_safe_delivery_is_observed_late() -> None:
    steps = [sub(1, b"m1", safe=True), *form(R1, (1, 2)), trans(2, R2B, [2], left=[1])]
    steps += [reg(2, R2B, [2]), dl(1, 1, R1, 1, b"m1", safe=True)]
    checker = EvsChecker()
    for node, entry in steps:
        checker.observe(node, entry)
    assert kinds(checker.violations) == {Invariant.SAFE_DELIVERY}


def test_0_nothing_but_a_restart_after_a_crash() -> None:
    minimal(BASE, [*BASE, dl(3, 1, R1, 1, b"m1")], Invariant.WELL_FORMED)


def test_violations_are_reported_incrementally() -> None:
    checker = EvsChecker()
    prefix = BASE[: BASE.index(dl(1, 1, R1, 1, b"m1")) + 1]
    for node, entry in prefix:
        checker.observe(node, entry)
    assert checker.violations == []
    checker.observe(1, dl(1, 1, R1, 1, b"m1")[1])
    assert kinds(checker.violations) == {Invariant.INTEGRITY}
    assert "twice" in str(checker.violations[0])


def test_observe_after_finish_is_refused() -> None:
    checker = EvsChecker()
    checker.finish()
    with pytest.raises(RuntimeError):
        checker.observe(1, Crashed())


def test_liveness() -> None:
    checker = EvsChecker()
    for node, entry in BASE:
        checker.observe(node, entry)
    assert liveness_violations(checker, [1, 2]) == []
    assert kinds(liveness_violations(checker, [1, 2, 3])) == {Invariant.LIVENESS}
    split = EvsChecker()
    for node, entry in partition([], []):
        split.observe(node, entry)
    assert len(liveness_violations(split, [1, 2])) == 3  # two wrong memberships, two rings


@given(nodes=st.integers(2, 5), data=st.data())
@settings(max_examples=60)
def test_model_histories_have_no_violations(nodes: int, data: st.DataObject) -> None:
    model = RingModel(nodes, Chooser(lambda options: data.draw(st.sampled_from(options))))
    model.run(steps=40)
    checker = EvsChecker()
    for node, entry in model.history:
        checker.observe(node, entry)
    assert checker.violations == []
    assert checker.finish() == []
    assert liveness_violations(checker, model.running()) == []


def test_model_sweep_exercises_the_hard_cases_and_order_mutations_are_caught() -> None:
    totals = {"transitional_deliveries": 0, "holes": 0, "safe": 0, "restarts": 0, "merges": 0}
    mutated = 0
    for seed in range(60):
        model = RingModel(2 + seed % 4, Chooser.seeded(seed))
        model.run(steps=200)
        assert check(model.history) == [], seed
        totals["transitional_deliveries"] += model.stats.transitional_deliveries
        totals["holes"] += model.stats.holes
        totals["safe"] += model.stats.safe_deliveries
        totals["restarts"] += model.stats.restarts
        totals["merges"] += model.stats.merges
        swapped = swap_two_deliveries(model.history)
        if swapped is not None:
            mutated += 1
            assert Invariant.AGREED_ORDER in kinds(check(swapped)), seed
    assert all(count > 0 for count in totals.values()), totals
    assert mutated > 40


def swap_two_deliveries(history: list[Step]) -> list[Step] | None:
    """Swap a node's two consecutive deliveries of one ring (an agreed-order violation)."""
    last: dict[int, int] = {}
    for index, (node, entry) in enumerate(history):
        if not isinstance(entry, Delivery):
            last.pop(node, None)
            continue
        previous = last.get(node)
        if previous is not None:
            earlier = history[previous][1]
            assert isinstance(earlier, Delivery)
            if earlier.ring_id == entry.ring_id:
                swapped = list(history)
                swapped[previous], swapped[index] = history[index], history[previous]
                return swapped
        last[node] = index
    return None


def test_checker_is_fast_for_five_nodes_and_thousands_of_messages() -> None:
    nodes = (1, 2, 3, 4, 5)
    steps: list[Step] = [*form(R1, nodes)]
    count = 4000
    for seq in range(1, count + 1):
        sender = nodes[seq % 5]
        payload = f"p{seq}".encode()
        steps.append(sub(sender, payload))
        steps += [dl(n, sender, R1, seq, payload, safe=seq % 7 == 0) for n in nodes]
    for n in nodes:
        steps += [trans(n, R2, nodes), reg(n, R2, nodes)]
    checker = EvsChecker()
    start = time.perf_counter()
    for node, entry in steps:
        checker.observe(node, entry)
    assert checker.finish() == []
    elapsed = time.perf_counter() - start
    # ~24k entries; measured well under 0.3 s here, so 3 s only catches quadratic behaviour.
    assert elapsed < 3.0, elapsed


def test_9_a_departed_node_before_the_first_hole_of_the_transitional_phase_is_valid() -> None:
    # Node 1 delivers node 3's x in R1's regular phase and y right after it (no hole) in the
    # transitional phase: nothing missing precedes y, so EVS allows it.
    steps = [
        sub(3, b"x"),
        sub(3, b"y"),
        *form(R1, (1, 3)),
        *[dl(n, 3, R1, 1, b"x") for n in (1, 3)],
    ]
    steps += [(3, Crashed()), trans(1, R2, [1], left=[3]), dl(1, 3, R1, 2, b"y"), reg(1, R2, [1])]
    assert check(steps) == []
