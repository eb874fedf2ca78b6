"""Run a seed of the simulator with the sync path on every node, under both checkers.

Theory of operation
-------------------
:func:`run_sync_seed` plays the ordinary scenario of a seed (:mod:`.scenario`: chaos, heal,
quiesce) on a :class:`~pycorosync.exec.totem.sim.cluster.SimCluster` whose cores are
:class:`~.sync_stack.SyncStack` nodes. The EVS checker judges SRP as in every run (sync frames
included); the :class:`~.sync_check.SyncChecker` judges the rounds, and its first violation
stops the run just as an EVS one does. Every sync observation is also noted in the run's
trace, so a failing seed's report shows the rounds beside the datagrams.

The engines of a seed are drawn from it: every node runs probes for service ids 0, 2 and 5
(Corosync's cmap, cpg and votequorum), and on some seeds one node runs an extra service 9 that
the others only know as an "Unknown External Service". At the end, each running node must have
completed the round of its last ring within :func:`sync_liveness_bound` of the heal.
"""

from __future__ import annotations

import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pycorosync.exec.sync import SyncCoordinator, SyncLog
from pycorosync.exec.totem.core_api import TotemCore
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.totem.evs_check import EvsChecker
from pycorosync.exec.totem.history import Submitted
from pycorosync.exec.totem.sim.cluster import SimCluster
from pycorosync.exec.totem.sim.runner import Faults, _fault_set, default_describe, report_tail
from pycorosync.exec.totem.sim.scenario import (
    SIM_CONFIG,
    Outcome,
    Scenario,
    ScenarioParams,
    build_scenario,
    liveness_bound,
    play,
)
from pycorosync.exec.totem.sim.sync_check import SyncChecker, SyncEntry, SyncViolation
from pycorosync.exec.totem.sim.sync_stack import CoordinatorFactory, StackHooks, SyncStack
from pycorosync.exec.totem.srp_config import SrpConfig

__all__ = [
    "SyncSimResult",
    "play_checked",
    "run_sync_seed",
    "services_for_seed",
    "stack_hooks",
    "sync_liveness_bound",
]

BASE_SERVICES: tuple[int, ...] = (0, 2, 5)
EXTRA_SERVICE = 9


def sync_liveness_bound(config: SrpConfig) -> float:
    """Seconds from the heal until every node has completed a round of its last ring.

    The ring forms within :func:`~.scenario.liveness_bound`; a round then costs a few token
    rotations per service, far below one token timeout, which is the margin given.
    """
    return liveness_bound(config) + config.token_ms / 1000


def services_for_seed(seed: int, members: Sequence[int]) -> dict[int, tuple[int, ...]]:
    """The service ids each node's probes run on ``seed``."""
    rng = random.Random(f"{seed}/services")
    services = dict.fromkeys(members, BASE_SERVICES)
    if rng.random() < 0.3:
        odd = rng.choice(list(members))
        services[odd] = (*BASE_SERVICES, EXTRA_SERVICE)
    return services


@dataclass(frozen=True, slots=True)
class SyncSimResult:
    seed: int
    nodes: int
    faults: tuple[str, ...]
    violations: tuple[str, ...]
    """EVS violations then sync violations, formatted."""
    error: str | None
    sim_seconds: float
    wall_seconds: float
    rounds_completed: int
    rounds_aborted: int
    aborted_in_barrier: int
    """Aborts of a service whose own ``sync_process`` had finished (its BARRIER phase)."""
    log_counts: dict[str, int]
    """How often each sync log line was written, over every node."""
    round_seconds: tuple[float, ...]
    """Per completed round: virtual seconds from its REGULAR confchg to its completion."""
    converged_after: float | None
    """Seconds from the heal to one ring of every node."""
    trace: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.violations and self.error is None

    def report(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        lines = [
            f"sync seed {self.seed}: {verdict}, {self.nodes} nodes, faults "
            f"{','.join(self.faults) or 'none'}, {self.rounds_completed} rounds completed, "
            f"{self.rounds_aborted} aborts, {self.wall_seconds:.2f} wall s",
            *(f"  {violation}" for violation in self.violations),
        ]
        return report_tail(lines, self.error, self.trace)


def run_sync_seed(
    seed: int,
    nodes: int,
    faults: Faults,
    config: SrpConfig | None = None,
    *,
    params: ScenarioParams | None = None,
    services: Mapping[int, Sequence[int]] | None = None,
    coordinator: CoordinatorFactory = SyncCoordinator,
    trace_lines: int = 400,
) -> SyncSimResult:
    """Play seed ``seed`` on ``nodes`` sync stacks with the ``faults`` enabled."""
    config = config if config is not None else SIM_CONFIG
    params = params if params is not None else ScenarioParams()
    scenario = build_scenario(seed, nodes, _fault_set(faults), config, params)
    chosen = dict(services) if services is not None else services_for_seed(seed, scenario.members)
    evs = EvsChecker()
    sync_violations: list[SyncViolation] = []
    cluster: SimCluster

    def stop(violation: SyncViolation) -> None:
        sync_violations.append(violation)
        cluster.trace.note(cluster.now, 0, f"VIOLATION {violation}")
        cluster.stopped = True

    checker = SyncChecker(chosen, on_violation=stop)
    incarnations = dict.fromkeys(scenario.members, -1)
    logs: Counter[str] = Counter()

    def factory(nodeid: int, members: Sequence[int], ring_seq: int) -> TotemCore:
        incarnations[nodeid] += 1
        hooks = stack_hooks(
            lambda: cluster, checker, evs, logs, nodeid=nodeid, incarnation=incarnations[nodeid]
        )
        return SyncStack(
            config,
            nodeid,
            members,
            ring_seq,
            services=tuple(chosen[nodeid]),
            hooks=hooks,
            coordinator=coordinator,
        )

    cluster = SimCluster(
        nodes,
        seed,
        config,
        factory,
        evs,
        link=params.link,
        trace_lines=trace_lines,
        describe=default_describe(),
    )
    wall = time.perf_counter()
    outcome, error, _clean = play_checked(cluster, scenario, evs, checker, sync_violations)
    wall = time.perf_counter() - wall
    return SyncSimResult(
        seed=seed,
        nodes=nodes,
        faults=tuple(sorted(fault.value for fault in scenario.faults)),
        violations=tuple(str(v) for v in (*outcome.violations, *checker.violations)),
        error=error,
        sim_seconds=cluster.now,
        wall_seconds=wall,
        rounds_completed=checker.completions,
        rounds_aborted=checker.aborts,
        aborted_in_barrier=checker.aborts_in_barrier,
        log_counts=dict(logs),
        round_seconds=tuple(checker.round_seconds),
        converged_after=outcome.converged_after,
        trace=tuple(cluster.trace.lines()),
    )


def play_checked(
    cluster: SimCluster,
    scenario: Scenario,
    evs: EvsChecker,
    checker: SyncChecker,
    sync_violations: Sequence[SyncViolation],
) -> tuple[Outcome, str | None, bool]:
    """Play ``scenario``, an exception kept as its traceback; then, if nothing went wrong,
    judge the sync checker's liveness. ``(outcome, error, clean)``: clean when the run had no
    error and no EVS or sync violation, so that later checks of it are meaningful."""
    error = None
    try:
        outcome = play(cluster, scenario)
    except Exception:
        error = traceback.format_exc()
        outcome = Outcome(violations=list(evs.violations))
    clean = error is None and not outcome.violations and not sync_violations
    if clean:
        healed = outcome.healed_at if outcome.healed_at is not None else 0.0
        checker.finish(cluster.running(), healed, sync_liveness_bound(cluster.config))
    return outcome, error, clean


def stack_hooks(
    cluster: Callable[[], SimCluster],
    /,
    checker: SyncChecker,
    evs: EvsChecker,
    logs: Counter[str],
    *,
    nodeid: int,
    incarnation: int,
) -> StackHooks:
    """``cluster`` is a callable because the cluster is built after its core factory."""

    def observe(now: float, entry: SyncEntry) -> None:
        cluster().trace.note(now, nodeid, f"sync {entry}")
        checker.observe(nodeid, incarnation, now, entry)

    def submitted(frame: bytes, guarantee: Guarantee) -> None:
        evs.observe(nodeid, Submitted(payload=frame, guarantee=guarantee))

    def log(now: float, line: SyncLog) -> None:
        cluster().trace.note(now, nodeid, f"sync log: {line.text}")
        logs[line.text] += 1

    return StackHooks(observe=observe, submitted=submitted, log=log)
