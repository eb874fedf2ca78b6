"""Run a seed with the real CPG engine and simulated clients on every node, under three checkers.

Theory of operation
-------------------
:func:`run_cpg_seed` plays the ordinary scenario of a seed (:mod:`.scenario`) on a
:class:`CpgCluster` whose cores are :class:`~.cpg_stack.CpgStack` nodes: real SRP, totempg,
the sync coordinator and driver, the real CPG engine as service 2 (probes for the others, as
:mod:`.sync_runner` draws them) and a pool of simulated clients. The simulator's traffic
schedule - bursts and lulls in the chaos phase, a trickle while healing, silence to quiesce -
drives the clients: each tick on a node is one of its clients sending (:meth:`CpgCluster.
send_message`), so the Totem traffic is the engines' own frames.

Three checkers judge a run. The EVS checker sees SRP's deliveries and every engine frame; the
:class:`~.sync_check.SyncChecker` the rounds (over the probes); both stop the run at their
first violation. If the run ended clean, :mod:`.cpg_check` judges the clients' records and the
nodes' process tables (every node is up and in one ring by then, and the quiesce phase gave
the engines and clients time to finish what they had started).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pycorosync.exec.totem.core_api import TotemCore
from pycorosync.exec.totem.events import Guarantee
from pycorosync.exec.totem.evs_check import EvsChecker
from pycorosync.exec.totem.sim.cluster import SimCluster, SimError
from pycorosync.exec.totem.sim.cpg_check import (
    ClientRecord,
    CpgViolation,
    ViewChanged,
    check_clients,
    check_tables,
)
from pycorosync.exec.totem.sim.cpg_clients import GROUP, ClientRegistry
from pycorosync.exec.totem.sim.cpg_stack import CPG_SERVICE, CpgStack
from pycorosync.exec.totem.sim.runner import Faults, _fault_set, default_describe, report_tail
from pycorosync.exec.totem.sim.scenario import (
    SIM_CONFIG,
    ScenarioParams,
    build_scenario,
)
from pycorosync.exec.totem.sim.sync_check import SyncChecker, SyncViolation
from pycorosync.exec.totem.sim.sync_runner import (
    play_checked,
    services_for_seed,
    stack_hooks,
)
from pycorosync.exec.totem.srp_config import SrpConfig
from pycorosync.services.cpg import CpgEngine

__all__ = ["CpgCluster", "CpgSimResult", "run_cpg_seed"]


class CpgCluster(SimCluster):
    """A :class:`SimCluster` whose traffic ticks make a CPG client send, not the core."""

    def send_message(
        self, nodeid: int, guarantee: Guarantee = Guarantee.AGREED, padding: int = 0
    ) -> bytes | None:
        node = self.nodes[nodeid]
        core = node.core
        if not isinstance(core, CpgStack):
            raise SimError(f"node {nodeid} has no CPG stack to send through")
        core.client_tick(self.now)
        self._after_call(node, core)
        return None


@dataclass(frozen=True, slots=True)
class CpgSimResult:
    seed: int
    nodes: int
    faults: tuple[str, ...]
    violations: tuple[str, ...]
    """EVS, sync, then CPG violations, formatted."""
    error: str | None
    sim_seconds: float
    wall_seconds: float
    rounds_completed: int
    clients: int
    deaths: int
    """Clients that died (``lib_exit``) during the run; a node's crash is not counted."""
    leaves: int
    """Clients that left the group gracefully, then disconnected."""
    rejoins: int
    """Clients that left the group and joined it again on the same handle."""
    fragmented: int
    """Messages sent whole in fragments (PARTIAL_MCAST)."""
    interrupted: int
    """Fragmented sends answered CS_ERR_INTERRUPT and started again."""
    dropped: int
    """Messages of clients that ignore flow control, dropped by the engine and said so."""
    join_retries: int
    held_sends: int
    accepted: int
    """Messages the clients sent."""
    deliveries: int
    """Messages delivered to clients, over all of them."""
    confchgs: int
    """Confchgs delivered to clients, over all of them."""
    reasons: frozenset[str]
    """The CPG reasons seen in confchgs' joined and left lists."""
    trace: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.violations and self.error is None

    def report(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        lines = [
            f"cpg seed {self.seed}: {verdict}, {self.nodes} nodes, faults "
            f"{','.join(self.faults) or 'none'}, {self.clients} clients "
            f"({self.deaths} died, {self.leaves} left, {self.rejoins} rejoined), "
            f"{self.accepted} sent, {self.deliveries} delivered, {self.confchgs} confchgs, "
            f"{self.wall_seconds:.2f} wall s",
            *(f"  {violation}" for violation in self.violations),
        ]
        return report_tail(lines, self.error, self.trace)


def run_cpg_seed(
    seed: int,
    nodes: int,
    faults: Faults,
    config: SrpConfig | None = None,
    *,
    params: ScenarioParams | None = None,
    engine_class: type[CpgEngine] = CpgEngine,
    trace_lines: int = 400,
) -> CpgSimResult:
    """Play seed ``seed`` on ``nodes`` CPG stacks with the ``faults`` enabled."""
    config = config if config is not None else SIM_CONFIG
    params = params if params is not None else ScenarioParams()
    scenario = build_scenario(seed, nodes, _fault_set(faults), config, params)
    services = services_for_seed(seed, scenario.members)
    probes = {node: [s for s in ids if s != CPG_SERVICE] for node, ids in services.items()}
    evs = EvsChecker()
    sync_violations: list[SyncViolation] = []
    cluster: CpgCluster

    def stop(violation: SyncViolation) -> None:
        sync_violations.append(violation)
        cluster.trace.note(cluster.now, 0, f"VIOLATION {violation}")
        cluster.stopped = True

    checker = SyncChecker(probes, on_violation=stop)
    registry = ClientRegistry(random.Random(f"{seed}/cpg"))
    stacks: dict[int, CpgStack] = {}
    incarnations = dict.fromkeys(scenario.members, -1)

    def factory(nodeid: int, members: Sequence[int], ring_seq: int) -> TotemCore:
        previous = stacks.get(nodeid)
        if previous is not None:
            previous.pool.stopped()  # the old process is gone, and its clients with it
        incarnations[nodeid] += 1
        incarnation = incarnations[nodeid]
        hooks = stack_hooks(
            lambda: cluster, checker, evs, Counter(), nodeid=nodeid, incarnation=incarnation
        )
        stack = CpgStack(
            config,
            nodeid,
            members,
            ring_seq,
            services=tuple(services[nodeid]),
            hooks=hooks,
            clients=registry,
            incarnation=incarnation,
            engine_class=engine_class,
        )
        stacks[nodeid] = stack
        return stack

    cluster = CpgCluster(
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
    outcome, error, clean = play_checked(cluster, scenario, evs, checker, sync_violations)
    cpg_violations: list[CpgViolation] = []
    if clean:
        cpg_violations = _judge(cluster, stacks, registry)
    wall = time.perf_counter() - wall
    records = registry.records
    return CpgSimResult(
        seed=seed,
        nodes=nodes,
        faults=tuple(sorted(fault.value for fault in scenario.faults)),
        violations=tuple(
            str(v) for v in (*outcome.violations, *checker.violations, *cpg_violations)
        ),
        error=error,
        sim_seconds=cluster.now,
        wall_seconds=wall,
        rounds_completed=checker.completions,
        clients=len(records),
        deaths=registry.deaths,
        leaves=registry.leaves,
        rejoins=registry.rejoins,
        fragmented=registry.fragmented,
        interrupted=registry.interrupted,
        dropped=registry.dropped,
        join_retries=registry.join_retries,
        held_sends=registry.held_sends,
        accepted=sum(r.sent for r in records),
        deliveries=sum(len(r.events) for r in records) - _confchgs(records),
        confchgs=_confchgs(records),
        reasons=frozenset(
            reason
            for r in records
            for e in r.events
            if isinstance(e, ViewChanged)
            for reason in e.reasons
        ),
        trace=tuple(cluster.trace.lines()),
    )


def _judge(
    cluster: SimCluster, stacks: dict[int, CpgStack], registry: ClientRegistry
) -> list[CpgViolation]:
    running = set(cluster.running())
    for node, stack in stacks.items():
        if node not in running:
            stack.pool.stopped()
    violations = check_clients(registry.records)
    tables = {node: list(stacks[node].cpg.table.entries()) for node in sorted(running)}
    live = [record.address for node in running for record in stacks[node].pool.live]
    violations += check_tables(tables, live, GROUP)
    return violations


def _confchgs(records: Sequence[ClientRecord]) -> int:
    return sum(isinstance(e, ViewChanged) for r in records for e in r.events)
