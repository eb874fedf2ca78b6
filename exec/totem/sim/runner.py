"""Run seeds: build the cluster and the scenario of each, play it, and report what happened.

A seed determines everything - the scenario (:func:`build_scenario`), the network's and the
traffic's random draws, and therefore the whole run - provided the cores are deterministic
functions of their inputs. :func:`run_seed` returns a :class:`SimResult` with the violations,
the figures of the run and the formatted bounded trace; running the same seed again gives the
same trace, byte for byte, so a failing seed is its own reproduction recipe.
"""

from __future__ import annotations

import importlib
import multiprocessing
import random
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from pycorosync.exec.totem.core_api import TotemCore
from pycorosync.exec.totem.evs_check import EvsChecker, Violation
from pycorosync.exec.totem.sim.cluster import CoreFactory, SimCluster
from pycorosync.exec.totem.sim.scenario import (
    SIM_CONFIG,
    Fault,
    Outcome,
    ScenarioParams,
    build_scenario,
    parse_faults,
    play,
)
from pycorosync.exec.totem.sim.trace import Describe
from pycorosync.exec.totem.srp_config import SrpConfig

TRACE_LINES = 400


def report_tail(head: list[str], error: str | None, trace: Sequence[str]) -> str:
    """A run's report: ``head`` (summary and violations), then the error and the trace."""
    lines = list(head)
    if error is not None:
        lines += ["  error:", *(f"    {line}" for line in error.rstrip().splitlines())]
    lines.append(f"  last {len(trace)} trace lines:")
    lines += [f"    {line}" for line in trace]
    return "\n".join(lines)


Faults = str | Iterable[str]
"""``"all"``, ``"none"``, ``"loss,crash"`` or an iterable of :class:`Fault` names."""


@dataclass(frozen=True, slots=True)
class SimResult:
    seed: int
    nodes: int
    faults: tuple[str, ...]
    violations: tuple[Violation, ...]
    error: str | None
    """The traceback if a core (or the simulator) raised."""
    sim_seconds: float
    wall_seconds: float
    deliveries: int
    confchgs: int
    datagrams: int
    events: int
    converged_after: float | None
    """Seconds from the heal to one ring of every node, if it got there."""
    trace: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.violations and self.error is None

    def summary(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        converged = "-" if self.converged_after is None else f"{self.converged_after:.3f}s"
        return (
            f"seed {self.seed}: {verdict}, {self.nodes} nodes, {self.sim_seconds:.1f} sim s, "
            f"{self.wall_seconds:.2f} wall s, {self.deliveries} deliveries, "
            f"{self.confchgs} confchgs, {self.datagrams} datagrams, converged {converged}"
        )

    def report(self) -> str:
        """The summary, every violation, the error and the trace: what a failure prints."""
        faults = ",".join(self.faults) or "none"
        again = f"--seeds {self.seed} --nodes {self.nodes} --faults {faults}"
        lines = [self.summary(), f"  reproduce: corosync-sim {again}"]
        lines += [f"  {violation}" for violation in self.violations]
        return report_tail(lines, self.error, self.trace)

    def as_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "nodes": self.nodes,
            "passed": self.passed,
            "violations": [str(v) for v in self.violations],
            "error": self.error,
            "sim_seconds": self.sim_seconds,
            "wall_seconds": self.wall_seconds,
            "deliveries": self.deliveries,
            "confchgs": self.confchgs,
            "datagrams": self.datagrams,
            "converged_after": self.converged_after,
        }


def srp_core_factory(config: SrpConfig) -> CoreFactory:
    """Cores of the real Totem SRP, imported when the first one is built."""

    def build(nodeid: int, members: Sequence[int], ring_seq: int) -> TotemCore:
        module = importlib.import_module("pycorosync.exec.totem.srp")
        core: TotemCore = module.Srp(config, nodeid, members, ring_seq)
        return core

    return build


def default_describe() -> Describe | None:
    """The SRP wire module's ``describe(bytes) -> str``, if it has one."""
    try:
        module = importlib.import_module("pycorosync.exec.totem.srp_wire")
    except ImportError:  # pragma: no cover - the wire module ships with the package
        return None
    describe = getattr(module, "describe", None)
    return describe if callable(describe) else None


def _fault_set(faults: Faults) -> frozenset[Fault]:
    if isinstance(faults, str):
        return parse_faults(faults)
    return frozenset(Fault(name) for name in faults)


def run_seed(
    seed: int,
    nodes: int,
    faults: Faults,
    config: SrpConfig | None = None,
    core_factory: CoreFactory | None = None,
    *,
    params: ScenarioParams | None = None,
    describe: Describe | None = None,
    trace_lines: int = TRACE_LINES,
) -> SimResult:
    """Play seed ``seed`` on ``nodes`` nodes (nodeids 1..nodes) with the ``faults`` enabled."""
    config = config if config is not None else SIM_CONFIG
    params = params if params is not None else ScenarioParams()
    factory = core_factory if core_factory is not None else srp_core_factory(config)
    scenario = build_scenario(seed, nodes, _fault_set(faults), config, params)
    checker = EvsChecker()
    cluster = SimCluster(
        nodes,
        seed,
        config,
        factory,
        checker,
        link=params.link,
        trace_lines=trace_lines,
        describe=describe,
    )
    wall = time.perf_counter()
    error = None
    try:
        outcome = play(cluster, scenario)
    except Exception:
        error = traceback.format_exc()
        cluster.trace.note(cluster.now, 0, f"EXCEPTION {error.strip().splitlines()[-1]}")
        outcome = Outcome(violations=list(checker.violations))
    wall = time.perf_counter() - wall
    return SimResult(
        seed=seed,
        nodes=nodes,
        faults=tuple(sorted(fault.value for fault in scenario.faults)),
        violations=tuple(outcome.violations),
        error=error,
        sim_seconds=cluster.now,
        wall_seconds=wall,
        deliveries=cluster.deliveries,
        confchgs=cluster.confchgs,
        datagrams=cluster.datagrams,
        events=cluster.events,
        converged_after=outcome.converged_after,
        trace=tuple(cluster.trace.lines()),
    )


def nodes_for_seed(seed: int, low: int, high: int) -> int:
    """The node count of ``seed`` when the caller gives a range."""
    return random.Random(f"{seed}/nodes").randint(low, high)


@dataclass(frozen=True, slots=True)
class _Task:
    seed: int
    nodes: int
    faults: frozenset[Fault]
    config: SrpConfig | None
    core_factory: CoreFactory | None
    params: ScenarioParams | None
    describe: Describe | None
    trace_lines: int

    def __call__(self) -> SimResult:
        return run_seed(
            self.seed,
            self.nodes,
            self.faults,
            self.config,
            self.core_factory,
            params=self.params,
            describe=self.describe,
            trace_lines=self.trace_lines,
        )


def _run_task(task: _Task) -> SimResult:
    return task()


def run_seeds(
    seeds: Iterable[int],
    nodes: int | tuple[int, int],
    faults: Faults,
    config: SrpConfig | None = None,
    core_factory: CoreFactory | None = None,
    *,
    params: ScenarioParams | None = None,
    describe: Describe | None = None,
    trace_lines: int = TRACE_LINES,
    jobs: int = 1,
    on_result: Callable[[SimResult], None] | None = None,
) -> list[SimResult]:
    """Run every seed (node count fixed, or drawn per seed from ``(low, high)``), in order.

    With ``jobs > 1`` the seeds run in forked worker processes; results still come back in
    seed order, and each is the same as in a single process.
    """
    low, high = (nodes, nodes) if isinstance(nodes, int) else nodes
    fault_set = _fault_set(faults)
    tasks = [
        _Task(
            seed,
            nodes_for_seed(seed, low, high),
            fault_set,
            config,
            core_factory,
            params,
            describe,
            trace_lines,
        )
        for seed in seeds
    ]
    results: list[SimResult] = []
    if jobs <= 1 or len(tasks) <= 1:
        for task in tasks:
            results.append(task())
            if on_result is not None:
                on_result(results[-1])
        return results
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        for result in pool.map(_run_task, tasks):
            results.append(result)
            if on_result is not None:
                on_result(result)
    return results
