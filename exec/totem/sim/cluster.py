"""N sans-IO Totem cores on one virtual clock, wired to a :class:`SimNetwork`.

The clock is a heap of events keyed by ``(time, counter)``: the counter makes ties resolve in
scheduling order, so a run is a pure function of its seed. Event kinds:

* ARRIVE - a copy of a datagram reaches a node. An up node puts it in its inbox (bounded in
  bytes, like a socket's receive buffer: what does not fit is dropped) and, if no read is
  pending, schedules a WAKE ``batch_window`` later. A down node loses it.
* WAKE - the node reads its socket until EAGAIN: everything in the inbox goes to
  ``handle_datagrams`` as one batch, in arrival order.
* TIMER - the node's ``next_deadline()``. After every call into a core the cluster asks for it
  and schedules a TIMER if it changed; each scheduling bumps the node's timer generation, and a
  popped TIMER of an older generation is stale and ignored.
* TRAFFIC - the node's application sends a message (a Poisson process per node).
* ACTION - anything else at a given time: faults, phase changes, node operations.

After every call into a core the cluster drains ``take_output()`` in the order the core
contract asks (:mod:`pycorosync.exec.totem.core_api`): first the events - each
:class:`Delivery` and :class:`ConfigChange` goes to ``checker.observe`` and a
:class:`PersistRingSeq` becomes the node's persisted ring seq - then the sends, in order, to the
network; then it re-arms the timer. A message the core accepts (``mcast`` returned True) is
recorded as :class:`Submitted` before anything that call produced. The checker judges every
entry as it comes; the first violation stops the run (:attr:`SimCluster.stopped`) so the trace
ends right where things went wrong.

Node lifecycle: DOWN → :meth:`start` → UP. :meth:`crash` records :class:`Crashed` and drops the
core and its inbox; copies it already sent still arrive elsewhere. :meth:`restart` records
:class:`Restarted` and builds a new core from ``core_factory(nodeid, members, ring_seq)`` with
the ring seq persisted last. :meth:`pause` stops the node's clock (a SIGSTOP): its TIMERs and
WAKEs are ignored while datagrams pile up in the bounded inbox; :meth:`resume` first fires the
timers that came due (an event loop runs expired timers before polling), then hands over the
whole backlog as one batch. :meth:`leave` calls ``leave(now)``, sends what that produced and
stops the process; the history has no marker of its own for a clean exit, so the stop is
recorded as :class:`Crashed` (the incarnation owes nothing more) and a later start is a
:meth:`restart`.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from pycorosync.exec.totem.core_api import Send, TotemCore
from pycorosync.exec.totem.events import (
    ConfigChange,
    ConfigKind,
    Delivery,
    Guarantee,
    PersistRingSeq,
    TotemEvent,
    TotemLog,
)
from pycorosync.exec.totem.evs_check import EvsChecker
from pycorosync.exec.totem.history import Crashed, Restarted, Submitted
from pycorosync.exec.totem.sim.network import LinkProfile, SimNetwork
from pycorosync.exec.totem.sim.trace import (
    BATCH,
    EVENT,
    IN,
    LOST,
    NOTE,
    OUT,
    REFUSED,
    SUBMIT,
    TIMER,
    Describe,
    Trace,
)
from pycorosync.exec.totem.srp_config import SrpConfig

CoreFactory = Callable[[int, Sequence[int], int], TotemCore]
"""``core_factory(nodeid, members, persisted_ring_seq)`` builds one node's core."""

BATCH_WINDOW = 0.0001
"""Seconds between a datagram reaching an idle node and the node reading its socket."""

INBOX_BYTES = 212992
"""A node's receive buffer (Linux's default ``rmem_default``)."""

MAX_FIRES_AT_ONE_INSTANT = 10000
"""A core whose timer keeps coming due at the same virtual instant is stuck; give up."""

_ARRIVE, _WAKE, _TIMER, _TRAFFIC, _ACTION = range(5)

_Event = tuple[float, int, int, "SimNode", Any, Any]


class SimError(RuntimeError):
    """The simulation itself cannot go on (a core misbehaves towards its driver)."""


class NodeState(Enum):
    DOWN = "down"
    UP = "up"
    PAUSED = "paused"


class SimNode:
    """One simulated process: its core (while it runs) and what its driver keeps for it."""

    __slots__ = (
        "core",
        "epoch",
        "fires_at_instant",
        "inbox",
        "inbox_bytes",
        "last_fire",
        "next_payload",
        "nodeid",
        "outstanding",
        "persisted_ring_seq",
        "started",
        "state",
        "timer_at",
        "timer_gen",
        "traffic_live",
        "wake_pending",
    )

    def __init__(self, nodeid: int) -> None:
        self.nodeid = nodeid
        self.core: TotemCore | None = None
        self.state = NodeState.DOWN
        self.started = False
        self.persisted_ring_seq = 0
        self.epoch = 0
        """Bumped whenever the node stops or pauses: its pending WAKE becomes stale."""
        self.timer_at: float | None = None
        self.timer_gen = 0
        self.inbox: list[tuple[int, bytes]] = []
        self.inbox_bytes = 0
        self.wake_pending = False
        self.outstanding: set[bytes] = set()
        """Payloads this incarnation submitted and has not delivered yet."""
        self.next_payload = 0
        self.traffic_live = False
        self.last_fire = -1.0
        self.fires_at_instant = 0

    def __repr__(self) -> str:
        return f"SimNode({self.nodeid}, {self.state.value})"


class SimCluster:
    """The nodes, the network, the clock and the checker of one simulated run."""

    def __init__(
        self,
        nodes: int | Sequence[int],
        seed: int,
        config: SrpConfig,
        core_factory: CoreFactory,
        checker: EvsChecker,
        *,
        link: LinkProfile | None = None,
        trace_lines: int = 400,
        describe: Describe | None = None,
        batch_window: float = BATCH_WINDOW,
        inbox_bytes: int = INBOX_BYTES,
    ) -> None:
        ids = range(1, nodes + 1) if isinstance(nodes, int) else nodes
        self.members = tuple(sorted(set(ids)))
        self.seed = seed
        self.config = config
        self.core_factory = core_factory
        self.checker = checker
        self.trace = Trace(trace_lines, describe)
        self.network = SimNetwork(random.Random(f"{seed}/network"), self.members, link, self.trace)
        self.batch_window = batch_window
        self.inbox_limit = inbox_bytes
        self.nodes = {n: SimNode(n) for n in self.members}
        self.now = 0.0
        self.stopped = False
        self.traffic_rate = 0.0
        self.safe_fraction = 0.25
        self.max_padding = 64
        self._traffic_rng = random.Random(f"{seed}/traffic")
        self._heap: list[_Event] = []
        self._counter = 0
        self._seen_violations = len(checker.violations)
        self._log = self.trace.entries.append
        self.events = 0
        self.deliveries = 0
        self.confchgs = 0
        self.regular_confchgs = 0
        self.datagrams = 0
        """Datagrams the cores sent (a fan-out counts once)."""
        self.inbox_drops = 0
        self.submitted = 0
        self.refused = 0

    # -- the clock ------------------------------------------------------------------------

    def _push(self, at: float, kind: int, node: SimNode, a: Any = None, b: Any = None) -> None:
        self._counter += 1
        heapq.heappush(self._heap, (at, self._counter, kind, node, a, b))

    def at(self, when: float, action: Callable[[], None], note: str | None = None) -> None:
        """Run ``action`` at virtual time ``when`` (noting ``note`` in the trace first).

        A time in the past means "next": the clock never runs backwards.
        """
        self._counter += 1
        anchor = self.nodes[self.members[0]]
        at = max(when, self.now)
        heapq.heappush(self._heap, (at, self._counter, _ACTION, anchor, action, note))

    def run_until(self, end: float) -> None:
        """Process every event up to and including ``end`` (or until a violation)."""
        heap = self._heap
        pop = heapq.heappop
        while heap and heap[0][0] <= end and not self.stopped:
            at, _, kind, node, a, b = pop(heap)
            self.now = at
            self.events += 1
            if kind == _ARRIVE:
                self._arrive(node, a, b)
            elif kind == _WAKE:
                if a == node.epoch:
                    self._wake(node)
            elif kind == _TIMER:
                if a == node.timer_gen and node.state is NodeState.UP:
                    self._fire(node)
            elif kind == _TRAFFIC:
                self._traffic(node)
            else:
                if b is not None:
                    self.trace.note(at, 0, b)
                a()
        if not self.stopped and end > self.now:
            self.now = end

    # -- node operations ------------------------------------------------------------------

    def node(self, nodeid: int) -> SimNode:
        return self.nodes[nodeid]

    def running(self) -> list[int]:
        """Nodeids whose process is up (not down, not paused)."""
        return [n for n, node in self.nodes.items() if node.state is NodeState.UP]

    def start(self, nodeid: int) -> None:
        """Start a node that is down; a node that ran before is restarted."""
        node = self.nodes[nodeid]
        if node.state is not NodeState.DOWN:
            raise SimError(f"start of node {nodeid}, which is {node.state.value}")
        if node.started:
            self._log((self.now, nodeid, NOTE, "restart", None))
            self.checker.observe(nodeid, Restarted())
        else:
            self._log((self.now, nodeid, NOTE, "start", None))
        node.started = True
        core = self.core_factory(nodeid, self.members, node.persisted_ring_seq)
        node.core = core
        node.state = NodeState.UP
        node.timer_at = None
        core.start(self.now)
        self._after_call(node, core)
        self._start_traffic(node)

    def restart(self, nodeid: int) -> None:
        """Bring a crashed (or stopped) node back with only its persisted ring seq."""
        if not self.nodes[nodeid].started:
            raise SimError(f"restart of node {nodeid}, which never ran")
        self.start(nodeid)

    def crash(self, nodeid: int) -> None:
        """Kill the process: no goodbye, its state is gone (but not its persisted ring seq)."""
        node = self.nodes[nodeid]
        if node.state is NodeState.DOWN:
            raise SimError(f"crash of node {nodeid}, which is down")
        self._log((self.now, nodeid, NOTE, "crash", None))
        self._stop(node)

    def leave(self, nodeid: int) -> None:
        """Graceful shutdown: the core says goodbye, its datagrams go out, the process ends."""
        node = self.nodes[nodeid]
        core = node.core
        if node.state is not NodeState.UP or core is None:
            raise SimError(f"leave of node {nodeid}, which is {node.state.value}")
        self._log((self.now, nodeid, NOTE, "leave", None))
        core.leave(self.now)
        self._after_call(node, core)
        if node.state is NodeState.UP:
            self._log((self.now, nodeid, NOTE, "stopped after leave", None))
            self._stop(node)

    def pause(self, nodeid: int, duration: float | None = None) -> None:
        """Freeze the process: its timers and reads wait until :meth:`resume`.

        With ``duration`` the resume is scheduled ``duration`` seconds from now.
        """
        node = self.nodes[nodeid]
        if node.state is not NodeState.UP:
            raise SimError(f"pause of node {nodeid}, which is {node.state.value}")
        self._log((self.now, nodeid, NOTE, "pause", None))
        node.state = NodeState.PAUSED
        node.epoch += 1
        node.timer_gen += 1
        node.wake_pending = False
        if duration is not None:
            self.at(self.now + duration, lambda: self.resume(nodeid))

    def resume(self, nodeid: int) -> None:
        """Let a paused node run: expired timers first, then its whole backlog as one batch."""
        node = self.nodes[nodeid]
        core = node.core
        if node.state is not NodeState.PAUSED or core is None:
            raise SimError(f"resume of node {nodeid}, which is {node.state.value}")
        self._log((self.now, nodeid, NOTE, f"resume, {len(node.inbox)} waiting", None))
        node.state = NodeState.UP
        if node.timer_at is not None and node.timer_at <= self.now:
            self._fire(node)
        elif node.timer_at is not None:
            self._schedule_timer(node, node.timer_at)
        if node.inbox and node.state is NodeState.UP and not self.stopped:
            self._wake(node)

    def _stop(self, node: SimNode) -> None:
        self.checker.observe(node.nodeid, Crashed())
        node.core = None
        node.state = NodeState.DOWN
        node.epoch += 1
        node.timer_gen += 1
        node.timer_at = None
        node.wake_pending = False
        node.inbox.clear()
        node.inbox_bytes = 0
        node.outstanding.clear()
        self._check()

    # -- datagrams and timers -------------------------------------------------------------

    def _arrive(self, node: SimNode, src: int, data: bytes) -> None:
        if node.state is NodeState.DOWN:
            self._log((self.now, node.nodeid, LOST, src, "node down"))
            return
        size = len(data)
        if node.inbox_bytes + size > self.inbox_limit:
            self.inbox_drops += 1
            self._log((self.now, node.nodeid, LOST, src, "receive buffer full"))
            return
        node.inbox.append((src, data))
        node.inbox_bytes += size
        if not node.wake_pending and node.state is NodeState.UP:
            node.wake_pending = True
            self._push(self.now + self.batch_window, _WAKE, node, node.epoch)

    def _wake(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        node.wake_pending = False
        inbox = node.inbox
        now = self.now
        nodeid = node.nodeid
        log = self._log
        log((now, nodeid, BATCH, len(inbox), None))
        for src, data in inbox:
            log((now, nodeid, IN, src, data))
        batch = [data for _, data in inbox]
        node.inbox = []
        node.inbox_bytes = 0
        core.handle_datagrams(batch, now)
        self._after_call(node, core)

    def _fire(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        now = self.now
        if now == node.last_fire:
            node.fires_at_instant += 1
            if node.fires_at_instant > MAX_FIRES_AT_ONE_INSTANT:
                raise SimError(f"node {node.nodeid}'s timer keeps coming due at {now:.6f}")
        else:
            node.last_fire = now
            node.fires_at_instant = 0
        self._log((now, node.nodeid, TIMER, node.timer_at, None))
        node.timer_at = None
        core.handle_timer(now)
        self._after_call(node, core)

    def _schedule_timer(self, node: SimNode, deadline: float) -> None:
        node.timer_at = deadline
        node.timer_gen += 1
        self._push(max(deadline, self.now), _TIMER, node, node.timer_gen)

    def _after_call(self, node: SimNode, core: TotemCore) -> None:
        """Drain the step's output (events, then sends) and re-arm the node's timer."""
        sends, events = core.take_output()
        if events:
            self._record(node, events)
        if sends:
            self._send(node, sends)
        deadline = core.next_deadline()
        if deadline is None:
            if node.timer_at is not None:
                node.timer_at = None
                node.timer_gen += 1
        elif deadline != node.timer_at:
            self._schedule_timer(node, deadline)
        if len(self.checker.violations) != self._seen_violations:
            self._check()

    def _record(self, node: SimNode, events: list[TotemEvent]) -> None:
        nodeid = node.nodeid
        now = self.now
        observe = self.checker.observe
        for event in events:
            self._log((now, nodeid, EVENT, event, None))
            if isinstance(event, Delivery):
                self.deliveries += 1
                observe(nodeid, event)
                if event.sender == nodeid:
                    node.outstanding.discard(event.payload)
            elif isinstance(event, ConfigChange):
                self.confchgs += 1
                if event.kind is ConfigKind.REGULAR:
                    self.regular_confchgs += 1
                observe(nodeid, event)
            elif isinstance(event, PersistRingSeq):
                node.persisted_ring_seq = event.seq
            elif isinstance(event, TotemLog):
                pass  # already in the trace: log lines are for operators, not for the checker
            else:
                raise SimError(f"node {nodeid} emitted {event!r}, not a Totem event")

    def _send(self, node: SimNode, sends: list[Send]) -> None:
        nodeid = node.nodeid
        now = self.now
        route = self.network.route
        push = self._push
        nodes = self.nodes
        log = self._log
        for send in sends:
            data = send.data
            log((now, nodeid, OUT, send.dest, data))
            self.datagrams += 1
            for at, dst in route(now, nodeid, send.dest):
                push(at, _ARRIVE, nodes[dst], nodeid, data)

    def _check(self) -> None:
        violations = self.checker.violations
        for violation in violations[self._seen_violations :]:
            self.trace.note(self.now, 0, f"VIOLATION {violation}")
        self._seen_violations = len(violations)
        if violations:
            self.stopped = True

    # -- application traffic --------------------------------------------------------------

    def set_traffic(
        self, rate: float, *, safe_fraction: float | None = None, max_padding: int | None = None
    ) -> None:
        """Each up node sends ``rate`` messages a second on average (0 stops the traffic)."""
        if rate < 0:
            raise ValueError("traffic rate must not be negative")
        self.traffic_rate = rate
        if safe_fraction is not None:
            self.safe_fraction = safe_fraction
        if max_padding is not None:
            self.max_padding = max_padding
        for node in self.nodes.values():
            if node.state is not NodeState.DOWN:
                self._start_traffic(node)

    def _start_traffic(self, node: SimNode) -> None:
        if self.traffic_rate > 0 and not node.traffic_live:
            node.traffic_live = True
            gap = self._traffic_rng.expovariate(self.traffic_rate)
            self._push(self.now + gap, _TRAFFIC, node)

    def _traffic(self, node: SimNode) -> None:
        rate = self.traffic_rate
        if rate <= 0 or node.state is NodeState.DOWN:
            node.traffic_live = False
            return
        rng = self._traffic_rng
        self._push(self.now + rng.expovariate(rate), _TRAFFIC, node)
        if node.state is NodeState.UP:
            safe = rng.random() < self.safe_fraction
            padding = rng.randrange(self.max_padding + 1)
            self.send_message(node.nodeid, Guarantee.SAFE if safe else Guarantee.AGREED, padding)

    def send_message(
        self, nodeid: int, guarantee: Guarantee = Guarantee.AGREED, padding: int = 0
    ) -> bytes | None:
        """Have ``nodeid``'s application multicast a unique payload; None if it would block."""
        node = self.nodes[nodeid]
        core = node.core
        if node.state is not NodeState.UP or core is None:
            raise SimError(f"node {nodeid} cannot send: it is {node.state.value}")
        node.next_payload += 1
        payload = b"n%d:%d|" % (nodeid, node.next_payload) + b"~" * padding
        accepted = core.mcast(payload, guarantee)
        if accepted:
            self.submitted += 1
            self.checker.observe(nodeid, Submitted(payload=payload, guarantee=guarantee))
            node.outstanding.add(payload)
            self._log((self.now, nodeid, SUBMIT, payload, guarantee))
        else:
            self.refused += 1
            self._log((self.now, nodeid, REFUSED, payload, guarantee))
        self._after_call(node, core)
        return payload if accepted else None

    def outstanding(self) -> dict[int, int]:
        """Per up-or-paused node, how many of its submitted messages it has not delivered."""
        return {n: len(node.outstanding) for n, node in self.nodes.items() if node.outstanding}
