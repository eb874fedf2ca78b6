"""One seed's story: a chaos phase of random faults, a heal phase, then quiescence.

:func:`build_scenario` draws everything from ``random.Random(f"{seed}/scenario")``: the node
start times (all at once, or staggered), the length of the chaos phase and the fault schedule.
Fault *episodes* start at exponentially distributed gaps (the mean gap itself is drawn per seed,
so some seeds are calm and some stormy); each picks one of the enabled :class:`Fault` kinds:

* network episodes, over all links or a random subset - ``loss`` (2-30 %), ``delay`` (extra
  latency from 5 ms up to 0.6 x token, plus jitter, links stay FIFO), ``dup`` (5-40 %),
  ``reorder`` (2-30 ms of jitter that may reorder), ``partition`` (a symmetric split into two
  or three groups, then heal; sometimes shorter than the token timeout), ``oneway`` (one
  direction of one link);
* node episodes, at most one per node at a time and never taking the last running node -
  ``crash`` (then a restart, sometimes within the token timeout), ``pause`` (1.2-3 x token,
  then resume with the backlog), ``leave`` (graceful stop, later a restart).

An episode's end is scheduled only if it falls inside the chaos phase. :func:`play` runs the
phases on a :class:`SimCluster`:

1. chaos - the nodes start, the faults happen, and traffic comes in bursts of
   ``chaos_traffic`` messages/s per node separated by lulls (in which the token may be held
   and merge-detect runs - and a seed stays cheap, since a busy token circulates at network
   speed);
2. heal - every fault is removed, every node is brought up (resumed, started or restarted),
   traffic drops to ``heal_traffic``; within :func:`liveness_bound` seconds every node must
   be in one regular configuration with all of them (``liveness_violations`` empty), else a
   LIVENESS violation says how long it waited; then traffic goes on for ``settle_seconds``;
3. quiesce - traffic stops; within :func:`quiesce_bound` every node must have delivered its
   own submitted messages (else LIVENESS), then ``grace`` more time lets the others catch up;
   the ring must still be whole; :meth:`EvsChecker.finish` closes the run.

Any violation during a phase ends the run there (the checker must not be asked to close a run
that did not quiesce).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from pycorosync.exec.totem.evs_check import Invariant, Violation, liveness_violations
from pycorosync.exec.totem.sim.cluster import NodeState, SimCluster
from pycorosync.exec.totem.sim.network import Impairment, Link, LinkProfile
from pycorosync.exec.totem.srp_config import SrpConfig


class Fault(StrEnum):
    LOSS = "loss"
    DELAY = "delay"
    DUP = "dup"
    REORDER = "reorder"
    PARTITION = "partition"
    ONEWAY = "oneway"
    CRASH = "crash"
    PAUSE = "pause"
    LEAVE = "leave"


ALL_FAULTS = frozenset(Fault)

SIM_CONFIG = SrpConfig(
    token_ms=1000,
    token_retransmit_ms=238,
    hold_ms=180,
    join_ms=50,
    consensus_ms=1200,
    merge_ms=200,
    token_warning_ms=750,
)
"""Corosync 2.x-era timers: short enough that a seed stays cheap, long next to the network."""


def parse_faults(text: str) -> frozenset[Fault]:
    """``all``, ``none`` or a comma-separated list of fault names."""
    spec = text.strip().lower()
    if spec == "all":
        return ALL_FAULTS
    if spec in ("none", ""):
        return frozenset()
    names = [name.strip() for name in spec.split(",")]
    known = {fault.value for fault in Fault}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"unknown fault kind(s) {', '.join(unknown)}; choose from all, none or "
            f"{','.join(fault.value for fault in Fault)}"
        )
    return frozenset(Fault(name) for name in names)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioParams:
    chaos_seconds: tuple[float, float] = (15.0, 25.0)
    fault_gap_seconds: tuple[float, float] = (0.6, 2.5)
    """Range of the per-seed mean gap between the starts of two fault episodes."""
    start_stagger_seconds: float = 1.0
    chaos_traffic: float = 6.0
    """Messages a second per node during a burst of the chaos phase."""
    burst_seconds: tuple[float, float] = (0.5, 3.0)
    """Range of the length of a traffic burst in the chaos phase."""
    lull_seconds: tuple[float, float] = (0.3, 2.5)
    """Range of the quiet time between bursts (the token may be held, merge-detect runs)."""
    heal_traffic: float = 2.0
    safe_fraction: float = 0.25
    max_padding: int = 64
    settle_seconds: float = 1.0
    link: LinkProfile = field(default_factory=LinkProfile)


@dataclass(frozen=True, slots=True)
class Action:
    at: float
    note: str
    apply: Callable[[SimCluster], None]


@dataclass(frozen=True, slots=True)
class Scenario:
    seed: int
    members: tuple[int, ...]
    faults: frozenset[Fault]
    config: SrpConfig
    params: ScenarioParams
    starts: tuple[tuple[float, int], ...]
    chaos_end: float
    actions: tuple[Action, ...]
    traffic: tuple[tuple[float, float], ...]
    """``(time, messages a second per node)``: the bursts and lulls of the chaos phase."""


def _seconds(ms: int) -> float:
    return ms / 1000.0


def liveness_bound(config: SrpConfig) -> float:
    """Seconds from the heal until every node must be in one ring.

    ``2 x (token + consensus) + 4 x (join + merge)``. At the heal a member may first have to
    time out a token that a fault lost (token), then a gather may fail once because a peer
    was still busy in another attempt (consensus); a ring formed without a late node must
    then notice it and merge, which can cost the same again; the join and merge periods pay
    for JOIN resends and for merge-detect between rings that are already operational. With
    :data:`SIM_CONFIG` that is 5.4 s.
    """
    token, consensus = _seconds(config.token_ms), _seconds(config.consensus_ms)
    return 2 * (token + consensus) + 4 * (_seconds(config.join_ms) + _seconds(config.merge_ms))


def quiesce_bound(config: SrpConfig) -> float:
    """Seconds after the traffic stops until every node has delivered its own messages."""
    return _seconds(config.token_ms) + _seconds(config.consensus_ms)


def grace(config: SrpConfig) -> float:
    """Seconds the run continues after the senders are done, so every member catches up."""
    return _seconds(config.token_ms)


# -- building the schedule ------------------------------------------------------------------


class _Planner:
    def __init__(self, rng: random.Random, scenario_end: float, members: tuple[int, ...]) -> None:
        self.rng = rng
        self.end = scenario_end
        self.members = members
        self.busy_until = dict.fromkeys(members, 0.0)
        self.actions: list[Action] = []
        self.episodes = 0

    def add(self, at: float, note: str, apply: Callable[[SimCluster], None]) -> None:
        self.actions.append(Action(at, note, apply))

    def episode(self) -> int:
        self.episodes += 1
        return self.episodes

    def free_node(self, at: float) -> int | None:
        """A node with no node fault at ``at``, unless that would take the last one."""
        busy = sum(1 for until in self.busy_until.values() if until > at)
        if busy >= max(1, len(self.members) - 1):
            return None
        free = [n for n, until in self.busy_until.items() if until <= at]
        return self.rng.choice(free) if free else None

    def links(self) -> tuple[frozenset[Link] | None, str]:
        """All links, one node's outgoing links, or a random subset of directed links."""
        rng = self.rng
        everything = [(s, d) for s in self.members for d in self.members if s != d]
        roll = rng.random()
        if roll < 0.4 or len(self.members) < 2:
            return None, "all links"
        if roll < 0.7:
            node = rng.choice(self.members)
            return frozenset(link for link in everything if link[0] == node), f"links from n{node}"
        chosen = frozenset(link for link in everything if rng.random() < 0.3)
        chosen = chosen or frozenset({rng.choice(everything)})
        return chosen, f"{len(chosen)} links"

    def overlay(self, at: float, duration: float, what: str, imp: Impairment) -> None:
        key = ("fault", self.episode())
        self.add(at, f"fault #{key[1]}: {what} for {duration:.3f} s", _impair(key, imp))
        if at + duration < self.end:
            self.add(at + duration, f"end of fault #{key[1]} ({what})", _repair(key))


def _impair(key: tuple[str, int], imp: Impairment) -> Callable[[SimCluster], None]:
    return lambda cluster: cluster.network.impair(key, imp)


def _repair(key: tuple[str, int]) -> Callable[[SimCluster], None]:
    return lambda cluster: cluster.network.repair(key)


def _partition(key: tuple[str, int], groups: list[list[int]]) -> Callable[[SimCluster], None]:
    return lambda cluster: cluster.network.partition(key, groups)


def _block(key: tuple[str, int], src: int, dst: int) -> Callable[[SimCluster], None]:
    return lambda cluster: cluster.network.block(key, src, dst)


def _node_op(op: str, node: int) -> Callable[[SimCluster], None]:
    return lambda cluster: getattr(cluster, op)(node)


class _Episodes:
    """One builder per fault kind; each schedules its start and (if in time) its end."""

    def __init__(self, planner: _Planner, config: SrpConfig) -> None:
        self.p = planner
        self.rng = planner.rng
        self.token = _seconds(config.token_ms)
        self.consensus = _seconds(config.consensus_ms)

    def build(self, kind: Fault, at: float) -> None:
        getattr(self, kind.value)(at)

    def loss(self, at: float) -> None:
        loss = self.rng.uniform(0.02, 0.3)
        links, where = self.p.links()
        imp = Impairment(loss=loss, links=links)
        self.p.overlay(at, self.rng.uniform(0.5, 5.0), f"loss {loss:.1%} on {where}", imp)

    def delay(self, at: float) -> None:
        rng = self.rng
        extra = math.exp(rng.uniform(math.log(0.005), math.log(0.6 * self.token)))
        jitter = rng.uniform(0.0, 0.2) * extra
        links, where = self.p.links()
        imp = Impairment(latency=extra, jitter=jitter, links=links)
        what = f"delay +{extra * 1000:.1f} ms jitter {jitter * 1000:.1f} ms on {where}"
        self.p.overlay(at, rng.uniform(0.5, 5.0), what, imp)

    def dup(self, at: float) -> None:
        dup = self.rng.uniform(0.05, 0.4)
        links, where = self.p.links()
        imp = Impairment(dup=dup, links=links)
        self.p.overlay(at, self.rng.uniform(0.5, 5.0), f"dup {dup:.1%} on {where}", imp)

    def reorder(self, at: float) -> None:
        jitter = self.rng.uniform(0.002, 0.03)
        links, where = self.p.links()
        imp = Impairment(jitter=jitter, reorder=True, links=links)
        what = f"reorder, jitter {jitter * 1000:.1f} ms on {where}"
        self.p.overlay(at, self.rng.uniform(0.5, 5.0), what, imp)

    def partition(self, at: float) -> None:
        rng, members = self.rng, list(self.p.members)
        if len(members) < 2:
            return
        count = 3 if len(members) >= 5 and rng.random() < 0.3 else 2
        rng.shuffle(members)
        cuts = sorted(rng.sample(range(1, len(members)), count - 1))
        groups = [
            sorted(members[a:b]) for a, b in zip([0, *cuts], [*cuts, len(members)], strict=True)
        ]
        if rng.random() < 0.3:
            duration = rng.uniform(0.2, 0.9) * self.token
        else:
            duration = rng.uniform(1.0, 3.0) * (self.token + self.consensus)
        key = ("fault", self.p.episode())
        what = f"partition {' | '.join(map(str, groups))}"
        self.p.add(at, f"fault #{key[1]}: {what} for {duration:.3f} s", _partition(key, groups))
        if at + duration < self.p.end:
            self.p.add(at + duration, f"end of fault #{key[1]} ({what})", _repair(key))

    def oneway(self, at: float) -> None:
        if len(self.p.members) < 2:
            return
        src, dst = self.rng.sample(self.p.members, 2)
        duration = self.rng.uniform(0.5, 5.0)
        key = ("fault", self.p.episode())
        what = f"one-way block n{src} -> n{dst}"
        self.p.add(at, f"fault #{key[1]}: {what} for {duration:.3f} s", _block(key, src, dst))
        if at + duration < self.p.end:
            self.p.add(at + duration, f"end of fault #{key[1]} ({what})", _repair(key))

    def crash(self, at: float) -> None:
        rng = self.rng
        if rng.random() < 0.4:
            down = rng.uniform(0.1, 0.9) * self.token
        else:
            down = rng.uniform(1.0, 3.0) * (self.token + self.consensus)
        self._node_episode(at, "crash", "restart", down)

    def pause(self, at: float) -> None:
        self._node_episode(at, "pause", "resume", self.rng.uniform(1.2, 3.0) * self.token)

    def leave(self, at: float) -> None:
        down = self.rng.uniform(0.3, 3.0) * (self.token + self.consensus)
        self._node_episode(at, "leave", "restart", down)

    def _node_episode(self, at: float, op: str, undo: str, duration: float) -> None:
        node = self.p.free_node(at)
        if node is None:
            return
        number = self.p.episode()
        self.p.add(at, f"fault #{number}: {op} n{node} for {duration:.3f} s", _node_op(op, node))
        if at + duration < self.p.end:
            self.p.busy_until[node] = at + duration
            self.p.add(
                at + duration, f"end of fault #{number}: {undo} n{node}", _node_op(undo, node)
            )
        else:
            self.p.busy_until[node] = math.inf


def build_scenario(
    seed: int,
    nodes: int,
    faults: Iterable[Fault],
    config: SrpConfig = SIM_CONFIG,
    params: ScenarioParams | None = None,
) -> Scenario:
    """The start times and the fault schedule of ``seed``, all drawn from the seed."""
    if nodes < 1:
        raise ValueError("a scenario needs at least one node")
    params = params if params is not None else ScenarioParams()
    rng = random.Random(f"{seed}/scenario")
    members = tuple(range(1, nodes + 1))
    if rng.random() < 0.4:
        starts = tuple((0.0, n) for n in members)
    else:
        starts = tuple((rng.uniform(0.0, params.start_stagger_seconds), n) for n in members)
    chaos_end = rng.uniform(*params.chaos_seconds)
    enabled = sorted(set(faults), key=lambda fault: fault.value)
    planner = _Planner(rng, chaos_end, members)
    if enabled:
        episodes = _Episodes(planner, config)
        mean_gap = rng.uniform(*params.fault_gap_seconds)
        at = max(at for at, _ in starts) + rng.uniform(0.2, 1.5)
        while at < chaos_end - 0.2:
            episodes.build(rng.choice(enabled), at)
            at += rng.expovariate(1.0 / mean_gap)
    actions = tuple(sorted(planner.actions, key=lambda action: action.at))
    traffic = _bursts(rng, chaos_end, params)
    return Scenario(
        seed, members, frozenset(enabled), config, params, starts, chaos_end, actions, traffic
    )


def _bursts(
    rng: random.Random, chaos_end: float, params: ScenarioParams
) -> tuple[tuple[float, float], ...]:
    changes = []
    at, burst = 0.0, True
    while at < chaos_end:
        changes.append((at, params.chaos_traffic if burst else 0.0))
        at += rng.uniform(*(params.burst_seconds if burst else params.lull_seconds))
        burst = not burst
    return tuple(changes)


# -- playing it -----------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    violations: list[Violation] = field(default_factory=list)
    healed_at: float | None = None
    converged_after: float | None = None
    """Seconds from the heal to one ring of every node."""


def play(cluster: SimCluster, scenario: Scenario) -> Outcome:
    """Run the three phases of ``scenario`` on ``cluster``; see the module docstring."""
    params, config = scenario.params, scenario.config
    for at, node in scenario.starts:
        cluster.at(at, _starter(cluster, node))
    for action in scenario.actions:
        cluster.at(action.at, _applier(cluster, action), action.note)
    cluster.set_traffic(0.0, safe_fraction=params.safe_fraction, max_padding=params.max_padding)
    for at, rate in scenario.traffic:
        note = f"traffic {rate:g}/s per node" if rate else "traffic lull"
        cluster.at(at, _traffic(cluster, rate), note)
    cluster.run_until(scenario.chaos_end)
    outcome = Outcome()
    if not cluster.stopped:
        _heal(cluster, scenario, outcome)
    if not cluster.stopped and not outcome.violations:
        _quiesce(cluster, config, outcome)
    if cluster.stopped:
        outcome.violations[:0] = cluster.checker.violations
    return outcome


def _starter(cluster: SimCluster, node: int) -> Callable[[], None]:
    return lambda: cluster.start(node)


def _traffic(cluster: SimCluster, rate: float) -> Callable[[], None]:
    return lambda: cluster.set_traffic(rate)


def _applier(cluster: SimCluster, action: Action) -> Callable[[], None]:
    return lambda: action.apply(cluster)


def heal_everything(cluster: SimCluster) -> None:
    """Remove every network fault and bring every node up."""
    cluster.network.heal()
    for nodeid, node in cluster.nodes.items():
        if node.state is NodeState.PAUSED:
            cluster.resume(nodeid)
        elif node.state is NodeState.DOWN:
            cluster.start(nodeid)


def _heal(cluster: SimCluster, scenario: Scenario, outcome: Outcome) -> None:
    cluster.trace.note(cluster.now, 0, "heal: every fault off, every node up")
    heal_everything(cluster)
    cluster.set_traffic(scenario.params.heal_traffic)
    # The network is healed once the backlog a delay or dup fault left on a FIFO link has
    # arrived: until then a datagram sent in the chaos phase can still disturb the rings.
    healed = outcome.healed_at = max(cluster.now, cluster.network.in_flight_until)
    bound = liveness_bound(scenario.config)
    if _await_one_ring(cluster, healed + bound):
        outcome.converged_after = cluster.now - healed
        cluster.trace.note(cluster.now, 0, f"one ring after {outcome.converged_after:.3f} s")
        cluster.run_until(cluster.now + scenario.params.settle_seconds)
        return
    if cluster.stopped:
        return
    problems = "; ".join(
        v.description for v in liveness_violations(cluster.checker, cluster.members)
    )
    violation = Violation(
        Invariant.LIVENESS,
        cluster.members,
        f"no single ring of all {len(cluster.members)} nodes {bound:.3f} s after the heal "
        f"(network drained) at {healed:.3f} s "
        f"(bound 2*(token+consensus)+4*(join+merge)): {problems}",
    )
    cluster.trace.note(cluster.now, 0, f"VIOLATION {violation}")
    outcome.violations.append(violation)


def _await_one_ring(cluster: SimCluster, deadline: float, step: float = 0.01) -> bool:
    seen = -1
    while not cluster.stopped:
        if cluster.regular_confchgs != seen:
            seen = cluster.regular_confchgs
            if not liveness_violations(cluster.checker, cluster.members):
                return True
        if cluster.now >= deadline:
            return False
        cluster.run_until(min(cluster.now + step, deadline))
    return False


def _advance(cluster: SimCluster, end: float) -> bool:
    """Run until ``end``; False if a violation stopped the run."""
    cluster.run_until(end)
    return not cluster.stopped


def _quiesce(cluster: SimCluster, config: SrpConfig, outcome: Outcome) -> None:
    cluster.set_traffic(0.0)
    start = cluster.now
    cluster.trace.note(start, 0, "quiesce: traffic stopped")
    deadline = start + quiesce_bound(config)
    while cluster.outstanding() and cluster.now < deadline and not cluster.stopped:
        cluster.run_until(min(cluster.now + 0.02, deadline))
    if cluster.stopped:
        return
    left = cluster.outstanding()
    if left:
        waiting = ", ".join(f"n{n}: {count}" for n, count in sorted(left.items()))
        outcome.violations.append(
            Violation(
                Invariant.LIVENESS,
                tuple(sorted(left)),
                f"{deadline - start:.3f} s after the traffic stopped, own messages were still "
                f"undelivered ({waiting})",
            )
        )
        return
    if not _advance(cluster, cluster.now + grace(config)):
        return
    for violation in liveness_violations(cluster.checker, cluster.members):
        outcome.violations.append(
            Violation(violation.invariant, violation.nodes, f"after quiescing: {violation}")
        )
    if not outcome.violations:
        outcome.violations.extend(cluster.checker.finish())
