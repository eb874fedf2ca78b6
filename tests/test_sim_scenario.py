"""Scenarios: fault parsing, the seeded schedule, its bounds, and playing it through."""

from __future__ import annotations

import itertools
import re

import pytest

from pycorosync.exec.totem.evs_check import EvsChecker, Invariant
from pycorosync.exec.totem.sim.cluster import NodeState, SimCluster
from pycorosync.exec.totem.sim.scenario import (
    ALL_FAULTS,
    SIM_CONFIG,
    Fault,
    Scenario,
    ScenarioParams,
    build_scenario,
    liveness_bound,
    parse_faults,
    play,
    quiesce_bound,
)
from pycorosync.exec.totem.srp_config import SrpConfig
from tests._sim_fakes import ring_factory, solo_factory

TOKEN = SIM_CONFIG.token_ms / 1000
NODE_FAULT = re.compile(r"fault #(\d+): (crash|pause|leave) n(\d+) for ([\d.]+) s")


def test_parse_faults() -> None:
    assert parse_faults("all") == ALL_FAULTS
    assert parse_faults("none") == frozenset()
    assert parse_faults(" Loss,crash ") == {Fault.LOSS, Fault.CRASH}
    with pytest.raises(ValueError, match=r"unknown fault kind\(s\) bogus; choose from"):
        parse_faults("loss,bogus")


def test_bounds_follow_the_timers() -> None:
    assert liveness_bound(SIM_CONFIG) == pytest.approx(2 * (1.0 + 1.2) + 4 * (0.05 + 0.2))
    slow = SrpConfig(token_ms=3000, consensus_ms=3600, join_ms=50, merge_ms=200)
    assert liveness_bound(slow) == pytest.approx(2 * 6.6 + 1.0)
    assert quiesce_bound(SIM_CONFIG) == pytest.approx(2.2)


def notes(scenario: Scenario) -> list[str]:
    return [action.note for action in scenario.actions]


def test_a_seed_always_builds_the_same_scenario() -> None:
    one = build_scenario(5, 4, ALL_FAULTS)
    two = build_scenario(5, 4, ALL_FAULTS)
    assert notes(one) == notes(two)
    assert [a.at for a in one.actions] == [a.at for a in two.actions]
    assert (one.starts, one.chaos_end, one.traffic) == (two.starts, two.chaos_end, two.traffic)
    assert notes(build_scenario(6, 4, ALL_FAULTS)) != notes(one)


def test_the_schedule_stays_inside_the_chaos_phase_and_uses_only_enabled_kinds() -> None:
    params = ScenarioParams()
    for seed in range(30):
        scenario = build_scenario(seed, 5, {Fault.LOSS, Fault.CRASH})
        assert params.chaos_seconds[0] <= scenario.chaos_end <= params.chaos_seconds[1]
        assert scenario.actions, seed
        for action in scenario.actions:
            assert max(at for at, _ in scenario.starts) < action.at < scenario.chaos_end
            kind = re.search(r"(loss|crash|restart|delay|dup|partition|pause|leave)", action.note)
            assert kind is not None
            assert kind.group(1) in ("loss", "crash", "restart"), action.note
    assert build_scenario(1, 5, set()).actions == ()


def test_node_faults_never_overlap_on_a_node_nor_take_every_node() -> None:
    crash_downs, pauses = [], []
    for seed in range(60):
        scenario = build_scenario(seed, 3, {Fault.CRASH, Fault.PAUSE, Fault.LEAVE})
        busy: dict[int, float] = {}
        for action in scenario.actions:
            match = NODE_FAULT.match(action.note)
            if match is None:
                continue
            node, duration = int(match.group(3)), float(match.group(4))
            assert busy.get(node, 0.0) <= action.at, (seed, action.note)
            busy[node] = action.at + duration
            others_busy = sum(1 for n, until in busy.items() if n != node and until > action.at)
            assert others_busy < 2, (seed, action.note)
            if match.group(2) == "crash":
                crash_downs.append(duration)
            elif match.group(2) == "pause":
                pauses.append(duration)
    assert any(down < TOKEN for down in crash_downs)
    assert any(down > TOKEN for down in crash_downs)
    assert pauses
    assert all(pause > TOKEN for pause in pauses)


def test_traffic_alternates_bursts_and_lulls() -> None:
    scenario = build_scenario(3, 3, ALL_FAULTS)
    rates = [rate for _, rate in scenario.traffic]
    assert rates[0] == ScenarioParams().chaos_traffic
    assert all(a != b for a, b in itertools.pairwise(rates))
    assert set(rates) == {0.0, ScenarioParams().chaos_traffic}


def cluster_for(scenario: Scenario, factory: object = solo_factory) -> SimCluster:
    return SimCluster(
        len(scenario.members),
        scenario.seed,
        scenario.config,
        factory,  # type: ignore[arg-type]
        EvsChecker(),
        link=scenario.params.link,
    )


@pytest.mark.parametrize("seed", range(12))
def test_every_fault_kind_plays_through_on_singleton_rings(seed: int) -> None:
    scenario = build_scenario(seed, 1 + seed % 4, ALL_FAULTS)
    cluster = cluster_for(scenario)
    outcome = play(cluster, scenario)
    if len(scenario.members) == 1:
        assert outcome.violations == []
        assert outcome.converged_after == 0.0
    else:
        (violation,) = outcome.violations
        assert violation.invariant is Invariant.LIVENESS
        assert f"{liveness_bound(SIM_CONFIG):.3f} s after the heal" in violation.description
    assert all(node.state is NodeState.UP for node in cluster.nodes.values())
    assert cluster.now > scenario.chaos_end


def test_a_correct_ring_passes_the_whole_scenario_without_faults() -> None:
    scenario = build_scenario(4, 4, set())
    cluster = cluster_for(scenario, ring_factory)
    outcome = play(cluster, scenario)
    assert outcome.violations == []
    assert outcome.converged_after == 0.0
    assert cluster.submitted > 100
    assert cluster.deliveries == 4 * cluster.submitted
    assert cluster.outstanding() == {}
