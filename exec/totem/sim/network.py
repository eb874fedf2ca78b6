"""The simulated network: what happens to each copy of each datagram on each directed link.

Every ordered pair of configured nodes is a *link* with an effective loss probability,
duplication probability, latency, jitter, a FIFO flag and a blocked flag. The fault-free
behaviour is the :class:`LinkProfile` (latency plus a uniform jitter, FIFO); faults are
:class:`Impairment` overlays registered under a key and removed by it, so overlapping episodes
compose and end independently: loss and duplication combine as independent chances
(``1 - prod(1 - p)``), latencies and jitters add up, any overlay may block a link or make it
reorder. A *partition* is an overlay that blocks every link between two different groups (both
ways); a *one-way block* blocks one link. The effective per-link table is recomputed when the
overlays change, never per datagram.

:meth:`SimNetwork.route` decides one send: ``dest=None`` fans out to every other configured
node and each copy is decided on its own link, in ascending nodeid order. A copy on a blocked
link is dropped; otherwise it is lost with the link's loss probability; else it arrives after
``latency + U(0, jitter)``. A FIFO link never lets a copy overtake an earlier one (it is held
back to the last arrival time on that link), so jitter reorders only while some overlay says
``reorder``; the "last arrival" is tracked on every link, so when a reordering or slow episode
ends the copies still in flight are not overtaken either. A duplicated copy arrives a second
time, up to one latency later. A unicast to the sender itself (a singleton ring's token) takes
the base latency and is never impaired: it never leaves the host.

All randomness comes from the ``random.Random`` given to the constructor, drawn in a fixed
order, so one seed gives one network history.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass

from pycorosync.exec.totem.sim.trace import DROP, DUP, Trace

Link = tuple[int, int]
"""A directed link ``(source nodeid, destination nodeid)``."""

Arrival = tuple[float, int]
"""``(arrival time, destination nodeid)`` of one copy of a datagram."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkProfile:
    """The fault-free network, in seconds.

    Slower than a LAN on purpose: a busy token makes one hop per latency, so the latency sets
    what a simulated second costs, and 3 ms is still far below every Totem timer.
    """

    latency: float = 0.003
    jitter: float = 0.001


@dataclass(frozen=True, slots=True, kw_only=True)
class Impairment:
    """One fault overlay; ``links=None`` applies it to every link."""

    loss: float = 0.0
    dup: float = 0.0
    latency: float = 0.0
    """Seconds added to every copy."""
    jitter: float = 0.0
    """Seconds of extra uniform jitter."""
    reorder: bool = False
    """Let jitter reorder copies on the link (otherwise links stay FIFO)."""
    blocked: bool = False
    links: frozenset[Link] | None = None

    def __post_init__(self) -> None:
        for name in ("loss", "dup"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, not {getattr(self, name)}")
        if self.latency < 0 or self.jitter < 0:
            raise ValueError("latency and jitter must not be negative")


class _LinkState:
    __slots__ = ("blocked", "dup", "fifo", "jitter", "last", "latency", "loss")

    def __init__(self, base: LinkProfile) -> None:
        self.last = 0.0
        self.reset(base)

    def reset(self, base: LinkProfile) -> None:
        self.loss = 0.0
        self.dup = 0.0
        self.latency = base.latency
        self.jitter = base.jitter
        self.fifo = True
        self.blocked = False

    def apply(self, imp: Impairment) -> None:
        self.loss = 1.0 - (1.0 - self.loss) * (1.0 - imp.loss)
        self.dup = 1.0 - (1.0 - self.dup) * (1.0 - imp.dup)
        self.latency += imp.latency
        self.jitter += imp.jitter
        self.fifo = self.fifo and not imp.reorder
        self.blocked = self.blocked or imp.blocked


class SimNetwork:
    """Decides the fate of every datagram between the configured ``nodes``."""

    def __init__(
        self,
        rng: random.Random,
        nodes: Iterable[int],
        base: LinkProfile | None = None,
        trace: Trace | None = None,
    ) -> None:
        self.nodes = tuple(sorted(set(nodes)))
        if not self.nodes:
            raise ValueError("a network needs at least one node")
        self.base = base if base is not None else LinkProfile()
        self._rng = rng
        self._trace = trace
        self._others = {n: tuple(m for m in self.nodes if m != n) for n in self.nodes}
        self._links = {(s, d): _LinkState(self.base) for s in self.nodes for d in self._others[s]}
        self._overlays: dict[Hashable, Impairment] = {}
        self.copies = 0
        """Copies that were put on the wire (after fan-out, before loss)."""
        self.lost = 0
        self.blocked = 0
        self.duplicated = 0

    # -- faults ---------------------------------------------------------------------------

    def impair(self, key: Hashable, impairment: Impairment) -> None:
        """Add (or replace) the overlay ``key``."""
        unknown = {n for link in impairment.links or () for n in link} - set(self.nodes)
        if unknown:
            raise ValueError(f"impairment names unknown nodes {sorted(unknown)}")
        self._overlays[key] = impairment
        self._recompute()

    def repair(self, key: Hashable) -> None:
        """Remove the overlay ``key`` (nothing happens if it is not there)."""
        if self._overlays.pop(key, None) is not None:
            self._recompute()

    def partition(self, key: Hashable, groups: Sequence[Collection[int]]) -> None:
        """Block every link between different groups; a node in no group is alone."""
        group_of = {node: i for i, group in enumerate(groups) for node in group}
        # Nodeids are positive, so -nodeid is a group of its own for a node in no group.
        cut = frozenset(
            (s, d) for (s, d) in self._links if group_of.get(s, -s) != group_of.get(d, -d)
        )
        self.impair(key, Impairment(blocked=True, links=cut))

    def block(self, key: Hashable, src: int, dst: int) -> None:
        """Block the one direction ``src`` → ``dst``."""
        self.impair(key, Impairment(blocked=True, links=frozenset({(src, dst)})))

    def heal(self) -> None:
        """Remove every overlay: the network is fault-free again."""
        self._overlays.clear()
        self._recompute()

    @property
    def in_flight_until(self) -> float:
        """When the last datagram already on a FIFO link arrives (a fault can leave a backlog)."""
        return max((link.last for link in self._links.values()), default=0.0)

    @property
    def impaired(self) -> bool:
        return bool(self._overlays)

    def _recompute(self) -> None:
        for state in self._links.values():
            state.reset(self.base)
        for imp in self._overlays.values():
            links = self._links.keys() if imp.links is None else imp.links
            for link in links:
                self._links[link].apply(imp)

    # -- datagrams ------------------------------------------------------------------------

    def route(self, now: float, src: int, dest: int | None) -> list[Arrival]:
        """When and where the copies of one datagram that ``src`` sends at ``now`` arrive."""
        out: list[Arrival] = []
        if dest is None:
            for dst in self._others[src]:
                self._copy(now, src, dst, out)
        elif dest == src:
            out.append((now + self.base.latency, src))
        elif dest in self._others:
            self._copy(now, src, dest, out)
        else:
            raise ValueError(f"node {src} sent a datagram to unconfigured node {dest}")
        return out

    def _copy(self, now: float, src: int, dst: int, out: list[Arrival]) -> None:
        link = self._links[(src, dst)]
        self.copies += 1
        if link.blocked:
            self.blocked += 1
            self._note(now, src, dst, "blocked")
            return
        rng = self._rng
        if link.loss and rng.random() < link.loss:
            self.lost += 1
            self._note(now, src, dst, "lost")
            return
        at = now + link.latency
        if link.jitter:
            at += rng.random() * link.jitter
        if link.fifo and at < link.last:
            at = link.last
        link.last = max(link.last, at)
        out.append((at, dst))
        if link.dup and rng.random() < link.dup:
            # A copy may trail the original by up to one latency; it does not hold back the
            # link's later datagrams (otherwise FIFO + dup compounds into a backlog of seconds).
            again = at + rng.random() * link.latency
            out.append((again, dst))
            self.duplicated += 1
            if self._trace is not None:
                self._trace.entries.append((now, src, DUP, dst, None))

    def _note(self, now: float, src: int, dst: int, reason: str) -> None:
        if self._trace is not None:
            self._trace.entries.append((now, src, DROP, dst, reason))
