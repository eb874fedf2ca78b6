"""A checker of the sync protocol's guarantees (totem-notes §10, invariant 11), fed as it runs.

Theory of operation
-------------------
Under the simulator every node runs the real coordinator and driver over probe engines
(:mod:`.sync_probe`); the probes and the node's stack report what happened to
:meth:`SyncChecker.observe` - per node *incarnation* (a restarted node starts a new one), with
the virtual time. The entries are engine calls (:class:`InitCalled`, :class:`ProcessStarted`,
:class:`ProcessDone`, :class:`Activated`, :class:`Aborted`) and node events
(:class:`RegularInstalled`, :class:`RoundCompleted`, :class:`AppDelivered`). Each is judged at
once and a broken rule is appended to :attr:`SyncChecker.violations`:

* ``AGREEMENT`` - every incarnation that completes the round of a ring activated the same
  services in the same order, with the same members and the same synchronised state, as the
  first one that completed it (compared over the services both run); each activated every
  service it runs, in ascending service id; its members are its ``sync_init``'s.
* ``BARRIER`` - a service is activated only after its own ``sync_process`` returned True and
  after every member that runs it reported the same (so after every member's barrier); the
  probe's state at activation holds every part every such member multicast in the round.
* ``HELD_APP`` - no application message reaches a node's engines between its REGULAR confchg
  and the completion of that ring's round.
* ``ABORT`` - when a round ends unfinished (the next ring's ``sync_init`` arrives), the service
  that had started ``sync_process`` and was not activated got ``sync_abort``; a service aborted
  in a ring is never activated in it, and such a round never completes.
* ``LIVENESS`` (:meth:`SyncChecker.finish`) - every running node completed the round of its
  last ring, within the bound after the heal.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from enum import Enum

from pycorosync.exec.totem.events import RingId

__all__ = [
    "Aborted",
    "Activated",
    "AppDelivered",
    "InitCalled",
    "ProcessDone",
    "ProcessStarted",
    "RegularInstalled",
    "RoundCompleted",
    "SyncChecker",
    "SyncEntry",
    "SyncRule",
    "SyncViolation",
]

Parts = tuple[tuple[int, int, int], ...]
"""A probe's synchronised state: sorted ``(sender, part, parts)`` of the round's multicasts."""


@dataclass(frozen=True, slots=True)
class InitCalled:
    service_id: int
    ring_id: RingId
    transitional: tuple[int, ...]
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ProcessStarted:
    """The first ``sync_process`` call of the service in the round."""

    service_id: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class ProcessDone:
    """``sync_process`` returned True."""

    service_id: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class Activated:
    service_id: int
    ring_id: RingId
    state: Parts


@dataclass(frozen=True, slots=True)
class Aborted:
    service_id: int
    ring_id: RingId


@dataclass(frozen=True, slots=True)
class RegularInstalled:
    ring_id: RingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class RoundCompleted:
    ring_id: RingId
    members: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class AppDelivered:
    sender: int


SyncEntry = (
    InitCalled
    | ProcessStarted
    | ProcessDone
    | Activated
    | Aborted
    | RegularInstalled
    | RoundCompleted
    | AppDelivered
)


class SyncRule(Enum):
    AGREEMENT = "agreement"
    BARRIER = "barrier"
    HELD_APP = "held-app"
    ABORT = "abort"
    LIVENESS = "liveness"


@dataclass(frozen=True, slots=True)
class SyncViolation:
    rule: SyncRule
    nodes: tuple[int, ...]
    description: str

    def __str__(self) -> str:
        nodes = ",".join(map(str, self.nodes))
        return f"SYNC {self.rule.value} [nodes {nodes}]: {self.description}"


@dataclass(slots=True)
class _Life:
    """One node incarnation's view of its rounds."""

    node: int
    ring: RingId | None = None
    synced: bool = False
    members: dict[RingId, tuple[int, ...]] = field(default_factory=dict)
    started: dict[RingId, set[int]] = field(default_factory=dict)
    done: dict[RingId, set[int]] = field(default_factory=dict)
    activated: dict[RingId, list[tuple[int, Parts]]] = field(default_factory=dict)
    aborted: dict[RingId, set[int]] = field(default_factory=dict)
    completed_at: dict[RingId, float] = field(default_factory=dict)
    installed_at: dict[RingId, float] = field(default_factory=dict)
    last_init: RingId | None = None


@dataclass(frozen=True, slots=True)
class _Completion:
    node: int
    members: tuple[int, ...]
    activated: tuple[tuple[int, Parts], ...]


class SyncChecker:
    """Judges every node's sync history as it happens; see the module docstring.

    ``services`` maps each nodeid to the service ids its engines synchronise.
    ``on_violation`` is called with each violation (the simulator stops the run).
    """

    def __init__(
        self,
        services: Mapping[int, Collection[int]],
        on_violation: Callable[[SyncViolation], None] | None = None,
    ) -> None:
        self._services = {node: frozenset(ids) for node, ids in services.items()}
        self._on_violation = on_violation
        self.violations: list[SyncViolation] = []
        self._lives: dict[tuple[int, int], _Life] = {}
        self._current: dict[int, _Life] = {}
        self._done_by: dict[tuple[RingId, int], set[int]] = {}
        self._first: dict[RingId, _Completion] = {}
        self.completions = 0
        self.aborts = 0
        self.aborts_in_barrier = 0
        self.round_seconds: list[float] = []
        """Per completed round: virtual seconds from its REGULAR confchg to completion."""

    def observe(self, node: int, incarnation: int, now: float, entry: SyncEntry) -> None:
        life = self._lives.get((node, incarnation))
        if life is None:
            life = self._lives[node, incarnation] = _Life(node)
        self._current[node] = life
        match entry:
            case RegularInstalled():
                life.ring, life.synced = entry.ring_id, False
                life.installed_at[entry.ring_id] = now
            case InitCalled():
                self._init(life, entry)
            case ProcessStarted():
                life.started.setdefault(entry.ring_id, set()).add(entry.service_id)
            case ProcessDone():
                life.done.setdefault(entry.ring_id, set()).add(entry.service_id)
                self._done_by.setdefault((entry.ring_id, entry.service_id), set()).add(node)
            case Activated():
                self._activated(life, entry)
            case Aborted():
                self._aborted(life, entry)
            case RoundCompleted():
                self._completed(life, entry, now)
            case AppDelivered():
                self._app(life, entry)

    def finish(self, running: Collection[int], healed_at: float, bound: float) -> None:
        """Liveness at the end of a run: each running node synchronised its last ring."""
        for node in sorted(running):
            life = self._current.get(node)
            ring = None if life is None else life.ring
            if life is None or ring is None:
                self._report(SyncRule.LIVENESS, (node,), "never installed a ring")
                continue
            at = life.completed_at.get(ring)
            if at is None:
                self._report(SyncRule.LIVENESS, (node,), f"never completed the round of {ring}")
            elif at > healed_at + bound:
                late = at - healed_at
                self._report(
                    SyncRule.LIVENESS,
                    (node,),
                    f"completed the round of {ring} {late:.3f} s after the heal "
                    f"(bound {bound:.3f} s)",
                )

    # -- the rules ---------------------------------------------------------------------------

    def _init(self, life: _Life, entry: InitCalled) -> None:
        ring = entry.ring_id
        if life.last_init != ring:
            if life.last_init is not None:
                self._check_unfinished(life, life.last_init)
            life.last_init = ring
        life.members[ring] = entry.members

    def _check_unfinished(self, life: _Life, ring: RingId) -> None:
        if ring in life.completed_at:
            return
        activated = {service for service, _ in life.activated.get(ring, [])}
        interrupted = life.started.get(ring, set()) - activated
        missing = interrupted - life.aborted.get(ring, set())
        if missing:
            self._report(
                SyncRule.ABORT,
                (life.node,),
                f"the round of {ring} ended with service(s) {sorted(missing)} started and "
                "neither activated nor aborted",
            )

    def _activated(self, life: _Life, entry: Activated) -> None:
        ring, service = entry.ring_id, entry.service_id
        node = life.node
        history = life.activated.setdefault(ring, [])
        if history and history[-1][0] >= service:
            self._report(
                SyncRule.AGREEMENT,
                (node,),
                f"activated service {service} after {history[-1][0]} in {ring}",
            )
        history.append((service, entry.state))
        if service in life.aborted.get(ring, set()):
            self._report(SyncRule.ABORT, (node,), f"activated service {service} aborted in {ring}")
        if service not in life.done.get(ring, set()):
            self._report(
                SyncRule.BARRIER,
                (node,),
                f"activated service {service} in {ring} before its own sync_process finished",
            )
        members = life.members.get(ring, ())
        runs = [m for m in members if service in self._services.get(m, ())]
        late = [m for m in runs if m not in self._done_by.get((ring, service), set())]
        if late:
            self._report(
                SyncRule.BARRIER,
                (node, *late),
                f"activated service {service} in {ring} before member(s) {late} finished",
            )
        self._check_state(node, ring, service, runs, entry.state)

    def _check_state(
        self, node: int, ring: RingId, service: int, runs: list[int], state: Parts
    ) -> None:
        got: dict[int, set[int]] = {}
        totals: dict[int, set[int]] = {}
        for sender, part, parts in state:
            got.setdefault(sender, set()).add(part)
            totals.setdefault(sender, set()).add(parts)
        for member in runs:
            total = totals.get(member, set())
            if len(total) != 1 or got.get(member) != set(range(next(iter(total)))):
                self._report(
                    SyncRule.BARRIER,
                    (node, member),
                    f"service {service} activated in {ring} without all of member {member}'s "
                    f"sync state (got parts {sorted(got.get(member, set()))})",
                )

    def _aborted(self, life: _Life, entry: Aborted) -> None:
        ring, service = entry.ring_id, entry.service_id
        self.aborts += 1
        self.aborts_in_barrier += service in life.done.get(ring, set())
        life.aborted.setdefault(ring, set()).add(service)
        if any(s == service for s, _ in life.activated.get(ring, [])):
            self._report(
                SyncRule.ABORT, (life.node,), f"aborted service {service} activated in {ring}"
            )
        if len(life.aborted[ring]) > 1 or ring in life.completed_at:
            self._report(
                SyncRule.ABORT,
                (life.node,),
                f"aborts {sorted(life.aborted[ring])} in {ring} (completed: "
                f"{ring in life.completed_at})",
            )

    def _completed(self, life: _Life, entry: RoundCompleted, now: float) -> None:
        ring, node = entry.ring_id, life.node
        self.completions += 1
        life.completed_at[ring] = now
        self.round_seconds.append(now - life.installed_at.get(ring, now))
        life.synced = ring == life.ring
        if life.aborted.get(ring):
            self._report(SyncRule.ABORT, (node,), f"completed the round of {ring} after an abort")
        if entry.members != life.members.get(ring):
            self._report(
                SyncRule.AGREEMENT,
                (node,),
                f"round of {ring} completed with {entry.members}, "
                f"sync_init had {life.members.get(ring)}",
            )
        activated = tuple(life.activated.get(ring, []))
        local = tuple(sorted(self._services.get(node, ())))
        if tuple(service for service, _ in activated) != local:
            self._report(
                SyncRule.AGREEMENT,
                (node,),
                f"round of {ring} completed having activated "
                f"{[s for s, _ in activated]}, not every local service {list(local)}",
            )
        mine = _Completion(node, entry.members, activated)
        first = self._first.setdefault(ring, mine)
        if first is not mine:
            self._compare(first, mine, ring)

    def _compare(self, first: _Completion, other: _Completion, ring: RingId) -> None:
        common = self._services.get(first.node, frozenset()) & self._services.get(
            other.node, frozenset()
        )
        ours = [item for item in first.activated if item[0] in common]
        theirs = [item for item in other.activated if item[0] in common]
        if first.members != other.members or ours != theirs:
            self._report(
                SyncRule.AGREEMENT,
                (first.node, other.node),
                f"round of {ring}: node {first.node} activated {ours} with {first.members}, "
                f"node {other.node} activated {theirs} with {other.members}",
            )

    def _app(self, life: _Life, entry: AppDelivered) -> None:
        if not life.synced:
            self._report(
                SyncRule.HELD_APP,
                (life.node, entry.sender),
                f"an application message from {entry.sender} reached the engines in ring "
                f"{life.ring} before its sync round completed",
            )

    def _report(self, rule: SyncRule, nodes: tuple[int, ...], description: str) -> None:
        violation = SyncViolation(rule, nodes, description)
        self.violations.append(violation)
        if self._on_violation is not None:
            self._on_violation(violation)
