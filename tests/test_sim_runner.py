"""run_seed / run_seeds: results, failures with their trace, and exact reproduction."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

import pytest

from pycorosync.exec.totem.core_api import TotemCore
from pycorosync.exec.totem.evs_check import Invariant
from pycorosync.exec.totem.sim import SIM_CONFIG, Fault, run_seed, run_seeds, srp_core_factory
from pycorosync.exec.totem.sim.runner import nodes_for_seed
from pycorosync.exec.totem.srp_config import SrpConfig
from tests._sim_fakes import SoloCore, describe_ring, ring_factory, solo_factory


def test_a_passing_seed_reports_its_figures() -> None:
    result = run_seed(3, 1, "all", core_factory=solo_factory)
    assert result.passed, result.report()
    assert (result.seed, result.nodes) == (3, 1)
    assert result.faults == tuple(sorted(fault.value for fault in Fault))
    assert result.sim_seconds > 15.0
    assert result.deliveries > 0
    assert result.confchgs >= 2
    assert result.datagrams > 0
    assert result.events > result.datagrams
    assert result.converged_after == 0.0
    assert result.wall_seconds > 0
    assert "seed 3: ok, 1 nodes" in result.summary()


def test_a_correct_ring_passes_with_the_exact_number_of_deliveries() -> None:
    result = run_seed(8, 3, "none", core_factory=ring_factory, describe=describe_ring)
    assert result.passed, result.report()
    assert result.deliveries % 3 == 0
    assert result.deliveries > 300
    assert any("TOKEN next" in line for line in result.trace)


def test_a_failing_seed_carries_its_violations_and_trace() -> None:
    result = run_seed(2, 2, "none", core_factory=solo_factory, trace_lines=50)
    assert not result.passed
    (violation,) = result.violations
    assert violation.invariant is Invariant.LIVENESS
    assert "no single ring of all 2 nodes 5.400 s after the heal" in violation.description
    assert len(result.trace) == 50
    assert "VIOLATION EVS 10 LIVENESS" in result.trace[-1]
    report = result.report()
    assert "seed 2: FAILED, 2 nodes" in report
    assert "reproduce: corosync-sim --seeds 2 --nodes 2 --faults none" in report
    assert result.trace[-1] in report
    assert result.as_dict()["violations"] == [str(violation)]


def test_the_same_seed_gives_a_byte_identical_trace() -> None:
    one = run_seed(11, 4, "all", core_factory=solo_factory, trace_lines=100000)
    two = run_seed(11, 4, "all", core_factory=solo_factory, trace_lines=100000)
    assert len(one.trace) > 1000
    assert "\n".join(one.trace).encode() == "\n".join(two.trace).encode()
    assert one.violations == two.violations
    assert (one.deliveries, one.datagrams, one.events) == (
        two.deliveries,
        two.datagrams,
        two.events,
    )
    other = run_seed(12, 4, "all", core_factory=solo_factory, trace_lines=100000)
    assert other.trace != one.trace


def test_an_exception_in_a_core_fails_the_seed_with_the_traceback() -> None:
    class Exploding(SoloCore):
        def handle_datagrams(self, datagrams: Sequence[bytes], now: float) -> None:
            raise RuntimeError("kaboom")

    def factory(nodeid: int, members: Sequence[int], ring_seq: int) -> TotemCore:
        return Exploding(nodeid, members, ring_seq)

    result = run_seed(1, 2, "none", core_factory=factory)
    assert not result.passed
    assert result.error is not None
    assert "RuntimeError: kaboom" in result.error
    assert "EXCEPTION RuntimeError: kaboom" in result.trace[-1]
    assert "kaboom" in result.report()


def test_the_default_core_is_the_real_srp_built_with_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[tuple[SrpConfig, int, tuple[int, ...], int]] = []

    def srp(config: SrpConfig, nodeid: int, members: Sequence[int], ring_seq: int) -> SoloCore:
        built.append((config, nodeid, tuple(members), ring_seq))
        return SoloCore(nodeid, members, ring_seq)

    module = types.ModuleType("pycorosync.exec.totem.srp")
    module.Srp = srp  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pycorosync.exec.totem.srp", module)
    core = srp_core_factory(SIM_CONFIG)(2, [1, 2], 8)
    assert isinstance(core, SoloCore)
    assert built == [(SIM_CONFIG, 2, (1, 2), 8)]
    result = run_seed(1, 1, "crash")
    assert result.passed, result.report()
    assert built[1] == (SIM_CONFIG, 1, (1,), 0)
    assert [ring_seq for *_, ring_seq in built[2:4]] == [4, 8]


def test_run_seeds_draws_node_counts_from_the_seed_and_keeps_seed_order() -> None:
    seen: list[int] = []
    results = run_seeds(
        range(5, 11),
        (1, 4),
        "all",
        core_factory=solo_factory,
        on_result=lambda r: seen.append(r.seed),
    )
    assert [r.seed for r in results] == seen == list(range(5, 11))
    assert [r.nodes for r in results] == [nodes_for_seed(s, 1, 4) for s in range(5, 11)]
    assert all(1 <= r.nodes <= 4 for r in results)
    assert len({r.nodes for r in results}) > 1
    assert [r.nodes for r in run_seeds([1, 2], 3, "none", core_factory=solo_factory)] == [3, 3]


def test_parallel_jobs_give_the_same_results() -> None:
    serial = run_seeds(range(4), (1, 3), "all", core_factory=solo_factory)
    parallel = run_seeds(range(4), (1, 3), "all", core_factory=solo_factory, jobs=2)
    assert [(r.seed, r.nodes, r.violations, r.trace) for r in serial] == [
        (r.seed, r.nodes, r.violations, r.trace) for r in parallel
    ]


def test_a_seed_from_a_node_range_replays_alone_with_its_node_count() -> None:
    ranged = run_seeds(range(20, 24), (2, 5), "all", core_factory=solo_factory)
    for result in ranged:
        again = run_seed(result.seed, result.nodes, "all", core_factory=solo_factory)
        assert again.trace == result.trace
        assert again.violations == result.violations
