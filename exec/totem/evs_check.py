"""An incremental checker of the extended virtual synchrony invariants (totem-notes §10).

Theory of operation
-------------------
The simulator feeds every node's history to :meth:`EvsChecker.observe` as it happens:
:class:`Delivery`, :class:`ConfigChange`, :class:`Submitted`, :class:`Crashed`,
:class:`Restarted`. The checker keeps, per node *incarnation* (the span between restarts) and
per ring, only what the invariants need, so each entry costs amortised O(1) (O(log n) where a
sorted set is consulted) and no history is ever rescanned. Violations are appended to
:attr:`EvsChecker.violations` as soon as they are certain; :meth:`EvsChecker.finish` adds the
ones that need the end of the run. Observations must respect causality across nodes (a message
is submitted before it is delivered anywhere), which the simulator's step order gives.

Vocabulary, precisely:

* A message is identified by ``(ring_id, seq)`` of its :class:`Delivery` (``MessageId``). It
  is **sent in C** when its ``ring_id`` is C (for a recovered message, its original ring). Its
  content is ``(sender, payload)``. A sender may submit the same payload more than once (a
  CPG process that leaves and joins again sends the same join twice): a content is then
  delivered as at most as many messages as it was submitted.
* A node-incarnation's **configuration** C is the ring of its latest REGULAR confchg. Between a
  TRANSITIONAL confchg for ring R and the REGULAR one for R the incarnation is in the
  **transitional phase** of C, with transitional members T (the TRANSITIONAL's members);
  otherwise it is in the **regular phase** of C. Both confchgs carry R's ring id.
* A fresh incarnation (a node's first, or one after :class:`Restarted`) comes from a
  private singleton configuration: its first TRANSITIONAL must list just itself.
* An incarnation **closes** C when it delivers the REGULAR confchg of its next ring.
  :class:`Crashed` ends an incarnation: it owes nothing more in its current configuration and
  nothing but :class:`Restarted` may follow. A :class:`Restarted` without a preceding
  :class:`Crashed` ends the previous incarnation the same way. :meth:`finish` treats the end of
  the run as closing every live incarnation's configuration, so call it on a quiesced run.

The invariants and how each is computed (numbers as in totem-notes §10):

1. Agreed order: an incarnation delivers the messages of one ring in strictly increasing
   ``seq``. Together with 3 and 4 (a node's rings strictly increase, and a ring's messages are
   delivered only while it is the node's configuration) every node's deliveries are sorted by
   ``(ring_id, seq)``, so any two messages are delivered in the same relative order everywhere.
2. Integrity: an incarnation delivers a ``MessageId`` at most once; one ``MessageId`` always
   carries the same content and one content the same ``MessageId``, on every node; every
   delivered content was :class:`Submitted` by its sender (checked at :meth:`finish`, so the
   observation order of one step does not matter); a confchg ``(kind, ring_id)`` is delivered
   at most once per incarnation.
3. Configuration scoping: a message is delivered only while its ring is the incarnation's
   configuration (regular or transitional phase), and its sender is a member of that ring.
4. Confchg pairing and monotonicity: every REGULAR is preceded by a TRANSITIONAL with the same
   ring id with nothing but deliveries between them, and every TRANSITIONAL is followed by
   its REGULAR (or by the end of the incarnation); the rings a node installs strictly increase
   in ``seq``, across restarts too (ring seq persistence); ``ring_id.rep`` is the lowest
   member.
5. Membership agreement: every REGULAR for one ring id lists the same members; the node is in
   its T and its R; T is a subset of R and of its previous configuration's members;
   TRANSITIONAL ``left`` = previous members - T and ``joined`` = (); REGULAR ``joined`` = R - T
   and ``left`` = (); for any two incarnations installing R, each lists the other in its T
   exactly when both come from the same previous ring.
6. Virtual synchrony: any two incarnations that move from the same C to the same R deliver
   the same set of C messages in C's regular phase and the same set in its transitional
   phase (compared when the second one installs R; with 1 the order is the same too).
7. Self delivery: an incarnation that closes C delivers every message it sent in C that any
   node delivered (checked at close, and again when such a delivery is observed later).
8. Sender FIFO: in C's regular phase an incarnation delivers consecutive seqs (a gap there is
   never legitimate: agreed delivery waits for every lower seq); and per sender and ring, the
   seqs an incarnation delivers are a gap-free prefix of that sender's messages in the ring
   as known from every node's deliveries (with 1, a seq that is skipped can never come later).
9. No post-departure delivery: once an incarnation's TRANSITIONAL lists a node in ``left``,
   nothing from that node is delivered until a REGULAR lists it in ``joined``, with one
   exception EVS allows: in the transitional phase, before its first hole (a delivered seq
   that is not the previous one + 1), a departed node's messages may still be delivered -
   nothing missing precedes them, so none can depend causally on a lost message. This is what
   lets a SAFE message that one member delivered in C reach every member (invariant 13) even
   when its sender left. After the first hole only messages from T are delivered. (Corosync
   drops every departed sender's message in the transitional phase, which is stricter.)
13. Safe delivery: a message delivered as SAFE in C's regular phase is delivered by every
    incarnation that installed C and closes it. (SAFE in the transitional phase promises it
    to the members of T only, which is what 6 already checks.)

Liveness (10) needs the final state and the set of nodes expected to run:
:func:`liveness_violations`. Sync ordering (11) and flow control (12) are out of scope.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from enum import IntEnum

from pycorosync.exec.totem.events import ConfigChange, ConfigKind, Delivery, Guarantee, RingId
from pycorosync.exec.totem.history import Crashed, HistoryEntry, Restarted, Submitted

MessageId = tuple[RingId, int]
Content = tuple[int, bytes]


class Invariant(IntEnum):
    """The invariants of totem-notes §10, numbered as there; 0 is a malformed history."""

    WELL_FORMED = 0
    AGREED_ORDER = 1
    INTEGRITY = 2
    CONFIG_SCOPING = 3
    CONFCHG_PAIRING = 4
    MEMBERSHIP_AGREEMENT = 5
    VIRTUAL_SYNCHRONY = 6
    SELF_DELIVERY = 7
    SENDER_FIFO = 8
    NO_POST_DEPARTURE = 9
    LIVENESS = 10
    SAFE_DELIVERY = 13


@dataclass(frozen=True, slots=True)
class Violation:
    invariant: Invariant
    nodes: tuple[int, ...]
    description: str

    def __str__(self) -> str:
        nodes = ",".join(map(str, self.nodes))
        return (
            f"EVS {self.invariant.value} {self.invariant.name} [nodes {nodes}]: {self.description}"
        )


@dataclass(frozen=True, slots=True)
class _Fresh:
    """The private singleton configuration a fresh incarnation comes from."""

    node: int
    incarnation: int


@dataclass(eq=False)
class _Incarnation:
    node: int
    number: int
    alive: bool = True
    ring: RingId | None = None
    members: frozenset[int] = frozenset()
    origin: RingId | _Fresh | None = None
    """Where this incarnation's current configuration came from (6 and 5's T agreement)."""
    trans_ring: RingId | None = None
    trans_members: frozenset[int] = frozenset()
    confchgs: set[tuple[ConfigKind, RingId]] = field(default_factory=set)
    departed: set[int] = field(default_factory=set)
    delivered: set[MessageId] = field(default_factory=set)
    closed: set[RingId] = field(default_factory=set)
    last_seq: int | None = None
    trans_gap: bool = False
    """The transitional phase has skipped a seq: from now on only T's messages (invariant 9)."""
    regular_seqs: list[int] = field(default_factory=list)
    trans_seqs: list[int] = field(default_factory=list)
    progress: dict[tuple[int, RingId], list[int]] = field(default_factory=dict)
    """Per (sender, ring): [messages delivered, highest seq delivered]."""

    @property
    def in_transition(self) -> bool:
        return self.trans_ring is not None

    def previous(self) -> RingId | _Fresh:
        return self.ring if self.ring is not None else _Fresh(self.node, self.number)

    def previous_members(self) -> frozenset[int]:
        return self.members if self.ring is not None else frozenset({self.node})


@dataclass(frozen=True, slots=True)
class _Install:
    incarnation: _Incarnation
    origin: RingId | _Fresh
    trans: frozenset[int] | None


class EvsChecker:
    """Feed it every history entry of every node; read :attr:`violations` at any time."""

    def __init__(self) -> None:
        self.violations: list[Violation] = []
        self._current: dict[int, _Incarnation] = {}
        self._last_ring_seq: dict[int, int] = {}
        self._content: dict[MessageId, Content] = {}
        self._messages_of: dict[Content, set[MessageId]] = {}
        self._submitted: dict[Content, int] = {}
        """How many times each content was submitted."""
        self._unsubmitted: dict[Content, int] = {}
        self._ring_members: dict[RingId, frozenset[int]] = {}
        self._installs: dict[RingId, list[_Install]] = {}
        self._installed_by: dict[tuple[int, RingId], _Incarnation] = {}
        self._moves: dict[tuple[RingId, RingId], tuple[int, tuple[int, ...], tuple[int, ...]]] = {}
        self._sender_seqs: dict[tuple[int, RingId], list[int]] = {}
        self._sender_views: dict[tuple[int, RingId], list[_Incarnation]] = {}
        self._fifo_reported: set[tuple[int, int, RingId]] = set()
        self._safe: dict[RingId, list[MessageId]] = {}
        self._finished = False

    # -- entry points -------------------------------------------------------------------

    def observe(self, nodeid: int, entry: HistoryEntry) -> None:
        """Check one history entry of ``nodeid``, in the order the node produced it."""
        if self._finished:
            raise RuntimeError("EvsChecker.observe after finish()")
        if isinstance(entry, Restarted):
            self._restart(nodeid)
            return
        me = self._incarnation(nodeid)
        if not me.alive:
            self._report(Invariant.WELL_FORMED, (nodeid,), f"{_kind(entry)} after Crashed")
            return
        match entry:
            case Delivery():
                self._deliver(me, entry)
            case ConfigChange(kind=ConfigKind.TRANSITIONAL):
                self._transitional(me, entry)
            case ConfigChange():
                self._regular(me, entry)
            case Submitted():
                self._submit(nodeid, entry.payload)
            case Crashed():
                self._crash(me)

    def finish(self) -> list[Violation]:
        """End of a quiesced run: close every open configuration; return all violations."""
        if not self._finished:
            self._finished = True
            for me in self._current.values():
                self._end_of_run(me)
            for (sender, payload), observer in self._unsubmitted.items():
                self._report(
                    Invariant.INTEGRITY,
                    (observer, sender),
                    f"node {observer} delivered {payload!r} from {sender}, which never sent it",
                )
        return self.violations

    def _end_of_run(self, me: _Incarnation) -> None:
        if not me.alive:
            return
        if me.in_transition:
            self._report(
                Invariant.CONFCHG_PAIRING,
                (me.node,),
                f"the run ended between the TRANSITIONAL and REGULAR for ring {me.trans_ring}",
            )
        if me.ring is not None and me.ring not in me.closed:
            self._close(me, me.ring)

    def configuration(self, nodeid: int) -> tuple[RingId, frozenset[int]] | None:
        """The regular configuration ``nodeid`` is in now (None if crashed or not yet in one)."""
        me = self._current.get(nodeid)
        if me is None or not me.alive or me.ring is None or me.in_transition:
            return None
        return me.ring, me.members

    # -- incarnations ---------------------------------------------------------------------

    def _incarnation(self, nodeid: int) -> _Incarnation:
        me = self._current.get(nodeid)
        if me is None:
            me = self._current[nodeid] = _Incarnation(nodeid, 0)
        return me

    def _restart(self, nodeid: int) -> None:
        old = self._current.get(nodeid)
        number = 0 if old is None else old.number + 1
        if old is not None:
            old.alive = False
        self._current[nodeid] = _Incarnation(nodeid, number)

    def _crash(self, me: _Incarnation) -> None:
        me.alive = False

    def _submit(self, nodeid: int, payload: bytes) -> None:
        content = (nodeid, payload)
        self._submitted[content] = self._submitted.get(content, 0) + 1
        self._unsubmitted.pop((nodeid, payload), None)

    # -- deliveries ---------------------------------------------------------------------

    def _deliver(self, me: _Incarnation, d: Delivery) -> None:
        mid: MessageId = (d.ring_id, d.seq)
        if not self._consistent_identity(me, d, mid):
            return
        if mid in me.delivered:
            self._report(
                Invariant.INTEGRITY, (me.node,), f"delivered {_mid(mid)} twice (from {d.sender})"
            )
            return
        me.delivered.add(mid)
        if (d.sender, d.payload) not in self._submitted:
            self._unsubmitted.setdefault((d.sender, d.payload), me.node)
        if not self._in_scope(me, d):
            return
        self._check_order(me, d)
        if me.in_transition:
            me.trans_seqs.append(d.seq)
        else:
            me.regular_seqs.append(d.seq)
        if d.sender in me.departed and (me.trans_gap or not me.in_transition):
            self._report(
                Invariant.NO_POST_DEPARTURE,
                (me.node, d.sender),
                f"delivered {_mid(mid)} from {d.sender} after it left and before it rejoined",
            )
        self._track_sender(me, d.sender, d.ring_id, d.seq)
        if d.guarantee is Guarantee.SAFE and not me.in_transition:
            self._safe_delivered(me, mid)
        self._late_self_delivery(d.sender, mid)

    def _consistent_identity(self, me: _Incarnation, d: Delivery, mid: MessageId) -> bool:
        content: Content = (d.sender, d.payload)
        known = self._content.setdefault(mid, content)
        if known != content:
            self._report(
                Invariant.INTEGRITY,
                (me.node,),
                f"{_mid(mid)} delivered as {d.payload!r} from {d.sender}, "
                f"elsewhere as {known[1]!r} from {known[0]}",
            )
            return False
        ids = self._messages_of.setdefault(content, set())
        if mid not in ids and ids and len(ids) >= self._submitted.get(content, 1):
            others = ", ".join(_mid(other) for other in sorted(ids, key=_mid_order))
            self._report(
                Invariant.INTEGRITY,
                (me.node,),
                f"{d.payload!r} from {d.sender} delivered as {_mid(mid)}, elsewhere as {others}",
            )
            return False
        ids.add(mid)
        return True

    def _in_scope(self, me: _Incarnation, d: Delivery) -> bool:
        if me.ring is None or d.ring_id != me.ring:
            where = "outside any configuration" if me.ring is None else f"in ring {me.ring}"
            self._report(
                Invariant.CONFIG_SCOPING,
                (me.node,),
                f"delivered {_mid((d.ring_id, d.seq))} (sent in ring {d.ring_id}) {where}",
            )
            return False
        if d.sender not in me.members:
            self._report(
                Invariant.CONFIG_SCOPING,
                (me.node, d.sender),
                f"delivered {_mid((d.ring_id, d.seq))} from {d.sender}, "
                f"not a member of ring {d.ring_id}",
            )
            return False
        return True

    def _check_order(self, me: _Incarnation, d: Delivery) -> None:
        last = me.last_seq
        if last is not None and d.seq <= last:
            self._report(
                Invariant.AGREED_ORDER,
                (me.node,),
                f"delivered seq {d.seq} of ring {d.ring_id} after seq {last}",
            )
            return
        me.last_seq = d.seq
        if me.in_transition and last is not None and d.seq != last + 1:
            me.trans_gap = True
        if not me.in_transition and me.regular_seqs and last is not None and d.seq != last + 1:
            self._report(
                Invariant.SENDER_FIFO,
                (me.node,),
                f"regular delivery in ring {d.ring_id} jumped from seq {last} to {d.seq}",
            )

    def _track_sender(self, me: _Incarnation, sender: int, ring: RingId, seq: int) -> None:
        """Invariant 8: ``me`` holds a gap-free prefix of ``sender``'s messages in ``ring``."""
        key = (sender, ring)
        known = self._sender_seqs.setdefault(key, [])
        views = self._sender_views.setdefault(key, [])
        index = bisect.bisect_left(known, seq)
        if index == len(known) or known[index] != seq:
            known.insert(index, seq)
            for other in views:
                gapped = other is not me and other.progress[key][1] > seq
                if gapped and (id(other), sender, ring) not in self._fifo_reported:
                    self._fifo_gap(other, sender, ring, seq)
        progress = me.progress.get(key)
        if progress is None:
            progress = me.progress[key] = [0, seq]
            views.append(me)
        progress[0] += 1
        progress[1] = max(progress[1], seq)
        reported = (id(me), sender, ring) in self._fifo_reported
        if not reported and bisect.bisect_right(known, progress[1]) > progress[0]:
            missing = next(s for s in known if (ring, s) not in me.delivered)
            self._fifo_gap(me, sender, ring, missing)

    def _fifo_gap(self, me: _Incarnation, sender: int, ring: RingId, missing: int) -> None:
        """Report once per (incarnation, sender, ring): one gap makes every later rank lag."""
        self._fifo_reported.add((id(me), sender, ring))
        self._report(
            Invariant.SENDER_FIFO,
            (me.node, sender),
            f"skipped seq {missing} from {sender} in ring {ring} but delivered a later one",
        )

    # -- configuration changes ----------------------------------------------------------

    def _first_time(self, me: _Incarnation, change: ConfigChange) -> bool:
        key = (change.kind, change.ring_id)
        if key in me.confchgs:
            self._report(
                Invariant.INTEGRITY,
                (me.node,),
                f"{change.kind.name} confchg for ring {change.ring_id} delivered twice",
            )
            return False
        me.confchgs.add(key)
        return True

    def _transitional(self, me: _Incarnation, change: ConfigChange) -> None:
        if not self._first_time(me, change):
            return
        if me.in_transition:
            self._report(
                Invariant.CONFCHG_PAIRING,
                (me.node,),
                f"TRANSITIONAL for ring {me.trans_ring} not followed by its REGULAR",
            )
        trans = frozenset(change.members)
        old = me.previous_members()
        problems = []
        if me.node not in trans:
            problems.append("the node is not in its own transitional configuration")
        if not trans <= old:
            problems.append(f"T {sorted(trans)} is not within the previous members {sorted(old)}")
        if sorted(change.left) != sorted(old - trans):
            problems.append(f"left {list(change.left)} is not {sorted(old - trans)}")
        if change.joined:
            problems.append(f"a TRANSITIONAL confchg with joined {list(change.joined)}")
        self._membership_problems(me, change.ring_id, problems)
        me.trans_ring = change.ring_id
        me.trans_members = trans
        me.trans_gap = False
        me.departed.update(change.left)

    def _regular(self, me: _Incarnation, change: ConfigChange) -> None:
        if not self._first_time(me, change):
            return
        ring = change.ring_id
        trans = self._paired_trans(me, ring)
        self._check_ring_id(me, change)
        self._check_regular_membership(me, change, trans)
        if trans is not None and me.ring is not None:
            self._check_move(me, me.ring, ring)
        if me.ring is not None:
            self._close(me, me.ring)
        self._install(me, change, trans)

    def _paired_trans(self, me: _Incarnation, ring: RingId) -> frozenset[int] | None:
        if me.trans_ring == ring:
            return me.trans_members
        self._report(
            Invariant.CONFCHG_PAIRING,
            (me.node,),
            f"REGULAR for ring {ring} not immediately preceded by its TRANSITIONAL",
        )
        return None

    def _check_ring_id(self, me: _Incarnation, change: ConfigChange) -> None:
        ring = change.ring_id
        last = self._last_ring_seq.get(me.node)
        if last is not None and ring.seq <= last:
            self._report(
                Invariant.CONFCHG_PAIRING,
                (me.node,),
                f"installed ring {ring} after a ring with seq {last}",
            )
        if change.members and ring.rep != min(change.members):
            self._report(
                Invariant.CONFCHG_PAIRING,
                (me.node,),
                f"ring {ring} has representative {ring.rep}, lowest member is "
                f"{min(change.members)}",
            )

    def _check_regular_membership(
        self, me: _Incarnation, change: ConfigChange, trans: frozenset[int] | None
    ) -> None:
        ring = change.ring_id
        members = frozenset(change.members)
        problems = []
        agreed = self._ring_members.setdefault(ring, members)
        if agreed != members:
            problems.append(f"members {sorted(members)}, elsewhere {sorted(agreed)}")
        if me.node not in members:
            problems.append("the node is not a member of its own ring")
        if change.left:
            problems.append(f"a REGULAR confchg with left {list(change.left)}")
        if trans is not None:
            if not trans <= members:
                problems.append(f"T {sorted(trans)} is not within R {sorted(members)}")
            if sorted(change.joined) != sorted(members - trans):
                problems.append(f"joined {list(change.joined)} is not {sorted(members - trans)}")
        self._membership_problems(me, ring, problems)
        if trans is not None:
            self._check_trans_agreement(me, ring, trans)

    def _check_trans_agreement(self, me: _Incarnation, ring: RingId, trans: frozenset[int]) -> None:
        origin = me.previous()
        for other in self._installs.get(ring, []):
            if other.trans is None or other.incarnation.node == me.node:
                continue
            same = other.origin == origin
            peer = other.incarnation.node
            if (peer in trans) != same or (me.node in other.trans) != same:
                relation = "came" if same else "did not come"
                self._report(
                    Invariant.MEMBERSHIP_AGREEMENT,
                    (me.node, peer),
                    f"nodes {me.node} and {peer} {relation} from the same ring into {ring} "
                    f"but their transitional configurations say otherwise",
                )

    def _membership_problems(self, me: _Incarnation, ring: RingId, problems: list[str]) -> None:
        for problem in problems:
            self._report(Invariant.MEMBERSHIP_AGREEMENT, (me.node,), f"ring {ring}: {problem}")

    def _check_move(self, me: _Incarnation, old: RingId, new: RingId) -> None:
        """Invariant 6 between ``me`` and the first incarnation seen moving ``old`` → ``new``."""
        # Sets, not sequences: the order within a ring is invariant 1's to judge.
        mine = (me.node, tuple(sorted(me.regular_seqs)), tuple(sorted(me.trans_seqs)))
        first = self._moves.setdefault((old, new), mine)
        if first[1:] == mine[1:]:
            return
        phase = "regular" if first[1] != mine[1] else "transitional"
        theirs, ours = (first[1], mine[1]) if phase == "regular" else (first[2], mine[2])
        self._report(
            Invariant.VIRTUAL_SYNCHRONY,
            (first[0], me.node),
            f"moving {old} -> {new}, {phase} deliveries of ring {old} differ: "
            f"node {first[0]} only {sorted(set(theirs) - set(ours))}, "
            f"node {me.node} only {sorted(set(ours) - set(theirs))}",
        )

    def _install(
        self, me: _Incarnation, change: ConfigChange, trans: frozenset[int] | None
    ) -> None:
        ring = change.ring_id
        self._installs.setdefault(ring, []).append(_Install(me, me.previous(), trans))
        self._installed_by[(me.node, ring)] = me
        self._last_ring_seq[me.node] = max(ring.seq, self._last_ring_seq.get(me.node, ring.seq))
        me.ring = ring
        me.members = frozenset(change.members)
        me.trans_ring = None
        me.trans_members = frozenset()
        me.departed.difference_update(change.joined)
        me.last_seq = None
        me.regular_seqs = []
        me.trans_seqs = []

    # -- obligations due when a configuration closes ------------------------------------

    def _close(self, me: _Incarnation, ring: RingId) -> None:
        me.closed.add(ring)
        for seq in self._sender_seqs.get((me.node, ring), []):
            if (ring, seq) not in me.delivered:
                self._self_delivery_missed(me, (ring, seq))
        for mid in self._safe.get(ring, []):
            if mid not in me.delivered:
                self._safe_missed(me, mid)

    def _late_self_delivery(self, sender: int, mid: MessageId) -> None:
        owner = self._installed_by.get((sender, mid[0]))
        if owner is not None and mid[0] in owner.closed and mid not in owner.delivered:
            self._self_delivery_missed(owner, mid)

    def _self_delivery_missed(self, me: _Incarnation, mid: MessageId) -> None:
        self._report(
            Invariant.SELF_DELIVERY,
            (me.node,),
            f"never delivered its own message {_mid(mid)} although others did",
        )

    def _safe_delivered(self, me: _Incarnation, mid: MessageId) -> None:
        self._safe.setdefault(mid[0], []).append(mid)
        for install in self._installs.get(mid[0], []):
            other = install.incarnation
            if mid[0] in other.closed and mid not in other.delivered:
                self._safe_missed(other, mid)

    def _safe_missed(self, me: _Incarnation, mid: MessageId) -> None:
        self._report(
            Invariant.SAFE_DELIVERY,
            (me.node,),
            f"left ring {mid[0]} without delivering {_mid(mid)}, delivered as SAFE elsewhere",
        )

    def _report(self, invariant: Invariant, nodes: Iterable[int], description: str) -> None:
        unique = tuple(dict.fromkeys(nodes))
        self.violations.append(Violation(invariant, unique, description))


def liveness_violations(checker: EvsChecker, running: Collection[int]) -> list[Violation]:
    """Invariant 10 over the final state: every node in ``running`` is in one common regular
    configuration whose members are exactly ``running``.

    Call it after the simulator has run a connected, loss-free network for longer than the
    convergence bound (token + consensus + a few join/merge periods); the time bound itself
    is the simulator's to enforce.
    """
    expected = frozenset(running)
    configs = {node: checker.configuration(node) for node in sorted(expected)}
    rings = {config[0] for config in configs.values() if config is not None}
    problems = []
    for node, config in configs.items():
        if config is None:
            problems.append(
                Violation(Invariant.LIVENESS, (node,), "not in a regular configuration")
            )
        elif config[1] != expected:
            problems.append(
                Violation(
                    Invariant.LIVENESS,
                    (node,),
                    f"in ring {config[0]} with {sorted(config[1])}, expected {sorted(expected)}",
                )
            )
    if len(rings) > 1:
        names = ", ".join(sorted(map(str, rings)))
        problems.append(
            Violation(Invariant.LIVENESS, tuple(sorted(expected)), f"several rings: {names}")
        )
    return problems


def _mid(mid: MessageId) -> str:
    return f"message {mid[0]}/{mid[1]}"


def _kind(entry: HistoryEntry) -> str:
    return type(entry).__name__


def _mid_order(mid: MessageId) -> tuple[int, int, int]:
    return mid[0].seq, mid[0].rep, mid[1]
