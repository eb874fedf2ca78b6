"""Totem SRP: the single-ring ordering protocol and its membership protocol, sans-IO.

Theory of operation
-------------------
Ordering (OPERATIONAL). A token circulates the ring, unicast from each member to the next in
nodeid order. Only the holder of the token originates messages: each gets the next ring-wide
``seq`` (``token.seq``), is multicast, and is kept in the ring queue until everybody has it.
A member delivers in ``seq`` order as soon as every lower seq is present (AGREED); a SAFE
message additionally waits until it is known that every member holds it (below). The token
carries ``aru`` ("all received up to"), lowered by any member that lacks something and raised
only by the member that lowered it (``aru_addr``) or by anyone once nothing is missing; a
message is released once two successive visits saw it covered by ``aru`` and it was delivered
here. Missing seqs are requested through the token's retransmit list after they have been
missing for ``miss_count_const`` visits (multicast may trail the unicast token); whoever holds
a requested message re-sends it. Flow control is Corosync's: at most ``max_messages`` per visit
and ``window_size`` per rotation, shared out by backlog. A representative that sees the ring
idle for ``seqno_unchanged_const`` rotations holds the token for ``hold`` ms; a new message
anywhere multicasts HOLD_CANCEL, which releases it at once.

SAFE delivery. Let ``aru_out`` be ``token.aru`` as this node forwarded it on its previous
visit and ``aru_in`` the value the token brings on this visit. Between the two visits every
other member saw the token exactly once and lowered ``aru`` below its own if it lacked
something; only the member that lowered it may raise it again, and it has passed. So every
member holds everything up to ``min(aru_out, aru_in)`` - the safe point, ``safe_seq``. A SAFE
message at or below it may be delivered. Delivery stays in seq order, so AGREED messages
behind an unsafe SAFE one wait too.

Membership. A node that loses the token, sees a foreign ring (merge detect, a foreign message),
or gets a JOIN it must answer enters GATHER and multicasts a JOIN with its ``proc`` and
``failed`` sets; JOINs merge views (filtering rules of totem-notes §2.5, which decide whether
partitions ever merge). When every member of ``proc - failed`` has sent a JOIN identical to
ours (consensus), the lowest of them, the representative, creates the commit token for a new
ring id (seq above any seen, persisted before it leaves - :class:`PersistRingSeq`). The commit
token makes two rotations: on the first each member records its old ring (id, aru, delivered,
safe point) and enters COMMIT; on the second each enters RECOVERY. In RECOVERY the members that
share an old ring (the transitional members T) re-send, encapsulated on the new ring, every
old-ring message above the lowest aru among them; once two rotations show that nobody has more
to re-send and everybody has all of it, each node installs the new ring.

Installing a ring (extended virtual synchrony). After recovery every member of T holds the same
old-ring messages (the union of what T held), so the following is computed identically
everywhere in T:

1. Deliver, in the old regular configuration, the contiguous old-ring messages, stopping at
   the first hole and at the first SAFE message that is not known safe in the old ring. A SAFE
   message is known safe if T is the whole old ring (all of it now holds everything) or its seq
   is at or below the highest safe point any member of T had proven (each one is a fact about
   the whole old ring; the commit token carries them).
2. Deliver the TRANSITIONAL configuration T (``left`` = old members - T).
3. Deliver the remaining old-ring messages in seq order, skipping holes. Before the first hole
   any sender's message is delivered (nothing missing precedes it); after it, only messages from
   members of T (a departed sender's later message may depend on one that is lost). SAFE
   messages delivered here are safe in T: every member of T holds them.
4. Deliver the REGULAR configuration (``joined`` = new members - T).

Old-ring state (id, queue, aru, ...) is saved once when the first commit token is accepted
after OPERATIONAL and kept through any number of failed COMMIT/RECOVERY attempts (hard part 2);
recovered messages are merged into it as they arrive, so a failed attempt loses nothing.

Sequence numbers are unbounded ints here and u32 on the wire; received values are unwrapped
against this node's aru (:func:`~pycorosync.exec.totem.srp_wire.unwrap`), so a ring may run
through 2**32 (``SrpConfig.initial_seq`` starts rings near it in tests).

Every datagram is validated by the codec before it touches state; one that fails, or names a
node outside the configured nodelist, is dropped and counted (``stats.rx_invalid``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum

from pycorosync.exec.logformat import NOTICE
from pycorosync.exec.totem.core_api import Send
from pycorosync.exec.totem.events import (
    ConfigChange,
    ConfigKind,
    Delivery,
    Guarantee,
    PersistRingSeq,
    RingId,
    TotemEvent,
    TotemLog,
)
from pycorosync.exec.totem.srp_config import SrpConfig
from pycorosync.exec.totem.srp_wire import (
    MCAST_HEADER_SIZE,
    RTR_MAX,
    CommitEntry,
    CommitToken,
    HoldCancel,
    Join,
    Mcast,
    MergeDetect,
    MessageType,
    RtrEntry,
    SrpWireError,
    Token,
    WireVersionError,
    decode,
    decode_inner_mcast,
    encode,
    encode_mcast,
    peek_type,
    plain_mcast_fields,
    unwrap,
)

QUEUE_WINDOW = 16384
"""Seqs beyond ``aru + QUEUE_WINDOW`` are refused, and origination stops short of it."""


class State(IntEnum):
    """Corosync's ``memb_state`` numbering, plus DOWN (not started, or left)."""

    OPERATIONAL = 1
    GATHER = 2
    COMMIT = 3
    RECOVERY = 4
    DOWN = 5


class _Timer(IntEnum):
    TOKEN_LOSS = 0
    TOKEN_RETRANSMIT = 1
    HOLD = 2
    JOIN = 3
    CONSENSUS = 4
    MERGE = 5
    WARNING = 6


@dataclass(slots=True)
class SrpStats:
    """What Corosync exposes under ``stats.srp.*`` (plus ``rx_invalid``)."""

    orf_token_tx: int = 0
    orf_token_rx: int = 0
    mcast_tx: int = 0
    mcast_retx: int = 0
    mcast_rx: int = 0
    memb_join_tx: int = 0
    memb_join_rx: int = 0
    memb_merge_detect_tx: int = 0
    memb_merge_detect_rx: int = 0
    memb_commit_token_tx: int = 0
    memb_commit_token_rx: int = 0
    token_hold_cancel_tx: int = 0
    token_hold_cancel_rx: int = 0
    operational_entered: int = 0
    operational_token_lost: int = 0
    gather_entered: int = 0
    gather_token_lost: int = 0
    commit_entered: int = 0
    commit_token_lost: int = 0
    recovery_entered: int = 0
    recovery_token_lost: int = 0
    consensus_timeouts: int = 0
    rx_msg_dropped: int = 0
    rx_invalid: int = 0
    continuous_gather: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class _Msg:
    """A message held in a ring queue: its datagram (for retransmission) and its content."""

    raw: bytes
    sender: int
    guarantee: Guarantee
    payload: bytes
    encapsulated: bool


@dataclass(slots=True)
class _OldRing:
    """The last operational ring, saved once per reconfiguration (hard part 2)."""

    ring_id: RingId
    members: frozenset[int]
    queue: dict[int, _Msg]
    aru: int
    high_seq: int
    high_delivered: int
    safe_seq: int

    def add(self, seq: int, message: _Msg) -> None:
        if seq <= self.aru or seq in self.queue:
            return
        self.queue[seq] = message
        self.high_seq = max(self.high_seq, seq)
        while self.aru + 1 in self.queue:
            self.aru += 1


class Srp:
    """One node's Totem SRP core; see the module docstring and :mod:`.core_api`."""

    # Per-ring counters, (re)set by _reset_ring_counters at start-up and on every new ring.
    _queue: dict[int, _Msg]
    _miss: dict[int, int]
    _aru: int
    _high_seq: int
    _high_delivered: int
    _last_released: int
    _last_aru: int
    _aru_out: int
    _safe_seq: int
    _last_seq: int
    _install_seq: int
    _seq_unchanged: int
    _aru_count: int
    _trc: int
    _pbl: int
    _cbl: int
    _token_held: bool
    _set_retrans_flg: bool
    _retrans_flg_count: int
    _rotations: int

    def __init__(
        self,
        config: SrpConfig,
        nodeid: int,
        members: Sequence[int],
        ring_seq: int,
        *,
        hold_app_until_sync: bool = False,
    ) -> None:
        if nodeid not in members:
            raise ValueError(f"node {nodeid} is not in the configured members {list(members)}")
        self._cfg = config
        self._id = nodeid
        self._configured = frozenset(members)
        self._hold_app = hold_app_until_sync
        self.stats = SrpStats()
        self._sends: list[Send] = []
        self._events: list[TotemEvent] = []
        self._timers: dict[_Timer, float] = {}
        self._now = 0.0
        self._state = State.DOWN
        self._started = False
        # +1: a restarted node must never reuse the ring id of the ring it left (hard part 1).
        self._ring_id = RingId(seq=ring_seq + 1, rep=nodeid)
        self._highest_ring_seq = self._ring_id.seq
        self._members: frozenset[int] = frozenset((nodeid,))
        self._reset_ring_counters()
        self._token_seq = -1
        self._sync_q: deque[tuple[bytes, Guarantee]] = deque()
        self._app_q: deque[tuple[bytes, Guarantee]] = deque()
        self._retrans_q: deque[bytes] = deque()
        self._app_held = False
        self._proc: set[int] = {nodeid}
        self._failed: set[int] = set()
        self._consensus: set[int] = set()
        self._failed_to_recv = False
        self._old: _OldRing | None = None
        self._new_members: tuple[int, ...] = ()
        self._trans: frozenset[int] = frozenset()
        self._common_safe: int | None = None
        self._next = nodeid
        self._last_token_raw: bytes | None = None
        self._held_token: Token | None = None
        self._originated = False
        self._leavers: set[int] = set()
        self._expected_by: float | None = None
        """The deadline we asked to be woken by; far past it, we were not scheduled."""
        self._pause_flush = False
        self._invalid_logged_at = -1e18
        self._invalid_suppressed = 0

    # -- the driver's interface (core_api.TotemCore) -----------------------------------------

    @property
    def nodeid(self) -> int:
        return self._id

    @property
    def state(self) -> State:
        return self._state

    @property
    def ring_id(self) -> RingId:
        return self._ring_id

    @property
    def members(self) -> tuple[int, ...]:
        """Members of the current (last installed) ring."""
        return tuple(sorted(self._members))

    @property
    def undelivered(self) -> int:
        """Events produced but not yet taken by the driver."""
        return len(self._events)

    def start(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        self._now = now
        self._gather("interface up")
        self._expected_by = self.next_deadline()

    def handle_datagrams(self, datagrams: Sequence[bytes], now: float) -> None:
        self._wake(now)
        flush_joins, self._pause_flush = self._pause_flush, False
        tokens: list[bytes] = []
        for data in datagrams:
            if self._fast_mcast(data):
                continue
            kind = peek_type(data)
            if kind is MessageType.TOKEN or kind is MessageType.COMMIT:
                tokens.append(data)
            elif kind is MessageType.JOIN and flush_joins:
                self.stats.rx_msg_dropped += 1  # queued while we were not scheduled
            else:
                self._handle(data)
        for data in tokens:
            self._handle(data)
        self._expected_by = self.next_deadline()

    @property
    def token_held(self) -> bool:
        """The ring is idle and holds its token (here, or this node counts it held at the
        representative): a message queued now multicasts a hold cancel."""
        return self._token_held

    @property
    def holding_token(self) -> bool:
        """This node keeps the token of an idle ring here until the hold ends."""
        return _Timer.HOLD in self._timers

    def brings_token(self, datagrams: Sequence[bytes]) -> bool:
        return any(peek_type(data) is MessageType.TOKEN for data in datagrams)

    def _wake(self, now: float) -> None:
        """Note ``now``; a wake-up far past our own deadline means the process was paused.

        JOINs that queued up meanwhile describe views that are long gone; acting on them
        makes a paused node churn the membership, so the next batch drops them (Corosync's
        pause flush, hard part 7). They are resent every join period anyway.
        """
        self._now = now
        expected = self._expected_by
        if expected is not None and now - expected > self._cfg.token_ms / 2000:
            late = round((now - expected) * 1000)
            self._log(
                NOTICE, f"Process pause detected for {late} ms, flushing membership messages."
            )
            self._pause_flush = True
        self._expected_by = None

    def handle_timer(self, now: float) -> None:
        self._wake(now)
        self._handle_timers(now)
        self._expected_by = self.next_deadline()

    def _handle_timers(self, now: float) -> None:
        for _ in range(16):
            due = [t for t, deadline in self._timers.items() if deadline <= now]
            if not due:
                return
            for timer in sorted(due, key=lambda t: (self._timers.get(t, now), t)):
                if self._timers.get(timer, now + 1) <= now:
                    del self._timers[timer]
                    self._fire(timer)

    def next_deadline(self) -> float | None:
        return min(self._timers.values()) if self._timers else None

    def mcast(
        self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, *, sync: bool = False
    ) -> bool:
        if self._state is State.DOWN:
            return False
        queue = self._sync_q if sync else self._app_q
        if len(queue) >= self._cfg.max_queue:
            return False
        queue.append((bytes(payload), guarantee))
        if self._token_held:
            self._cancel_hold()
        return True

    def room(self, *, sync: bool = False) -> int:
        """How many more messages ``mcast`` accepts on that queue right now."""
        return self._cfg.max_queue - len(self._sync_q if sync else self._app_q)

    def counters(self) -> dict[str, int]:
        return self.stats.as_dict()

    def release_app(self) -> None:
        """Sync finished: serve the application queue again (``hold_app_until_sync``)."""
        self._app_held = False

    def leave(self, now: float) -> None:
        if self._state is State.DOWN:
            return
        self._now = now
        proc = tuple(sorted(self._proc - {self._id}))
        failed = (*sorted(self._failed - {self._id}), self._id)
        self._broadcast(
            encode(
                Join(
                    sender=self._id,
                    ring_seq=self._ring_id.seq,
                    proc=proc,
                    failed=failed,
                    leave=True,
                )
            )
        )
        self.stats.memb_join_tx += 1
        self._state = State.DOWN
        self._timers.clear()

    def take_output(self) -> tuple[list[Send], list[TotemEvent]]:
        sends, events = self._sends, self._events
        self._sends, self._events = [], []
        return sends, events

    # -- receiving ---------------------------------------------------------------------------

    def _handle(self, data: bytes) -> None:
        if self._state is State.DOWN:
            return
        try:
            message = decode(data)
        except WireVersionError as error:
            self._invalid(str(error))
            return
        except SrpWireError as error:
            self._invalid(f"invalid Totem message dropped: {error}")
            return
        if not self._plausible(message):
            return
        match message:
            case Token():
                self._on_token(message)
            case Mcast():
                self._on_mcast(message, data)
            case Join():
                self._on_join(message)
            case CommitToken():
                self._on_commit(message)
            case MergeDetect():
                self.stats.memb_merge_detect_rx += 1
                if message.ring_id != self._ring_id:
                    self._foreign(message.sender, message.ring_id)
            case HoldCancel():
                self._on_hold_cancel(message)

    def _plausible(
        self, message: Token | Mcast | Join | CommitToken | MergeDetect | HoldCancel
    ) -> bool:
        """Only configured nodes take part; our own broadcasts never come back to us."""
        known = self._configured
        names: Iterable[int] = (message.sender,)
        if isinstance(message, Join):
            names = (message.sender, *message.proc, *message.failed)
        elif isinstance(message, CommitToken):
            names = (message.sender, *message.members)
        if not known.issuperset(names):
            self._invalid(f"message from or about a node outside the nodelist: {sorted(names)}")
            return False
        own_broadcast = message.sender == self._id and not isinstance(message, Token | CommitToken)
        return not own_broadcast

    def _invalid(self, reason: str) -> None:
        self.stats.rx_invalid += 1
        if self._now - self._invalid_logged_at < 1.0:
            self._invalid_suppressed += 1
            return
        if self._invalid_suppressed:
            reason += f" ({self._invalid_suppressed} more suppressed)"
        self._invalid_logged_at = self._now
        self._invalid_suppressed = 0
        self._log(logging.WARNING, reason)

    # -- multicast messages ------------------------------------------------------------------

    def _fast_mcast(self, data: bytes) -> bool:
        """The common case on the hot path: a plain MCAST of our operational ring from a member.

        Exactly what :meth:`_on_mcast` would do with it, without building a message object;
        False leaves the datagram to the general path (which also explains a bad one).
        """
        if self._state is not State.OPERATIONAL:
            return False
        fields = plain_mcast_fields(data)
        if fields is None:
            return False
        sender, rep, ring_seq, wire_seq, guarantee = fields
        ring = self._ring_id
        if rep != ring.rep or ring_seq != ring.seq or sender == self._id:
            return False
        if sender not in self._members:
            return False
        self.stats.mcast_rx += 1
        seq = unwrap(wire_seq, self._aru)
        queue = self._queue
        if seq <= self._aru or seq in queue or seq > self._aru + QUEUE_WINDOW:
            return True
        queue[seq] = _Msg(data, sender, guarantee, data[MCAST_HEADER_SIZE:], False)
        self._high_seq = max(self._high_seq, seq)
        if seq == self._aru + 1:
            self._update_aru()
        self._deliver()
        return True

    def _on_mcast(self, message: Mcast, raw: bytes) -> None:
        self.stats.mcast_rx += 1
        if message.ring_id != self._ring_id:
            self._foreign(message.sender, message.ring_id)
            return
        if not self._accepting_mcast(message):
            self.stats.rx_msg_dropped += 1
            return
        seq = unwrap(message.seq, self._aru)
        if seq <= self._aru or seq in self._queue or seq > self._aru + QUEUE_WINDOW:
            return
        self._queue[seq] = _Msg(
            raw, message.sender, message.guarantee, message.payload, message.encapsulated
        )
        self._high_seq = max(self._high_seq, seq)
        if message.encapsulated and self._old is not None:
            self._recovered(message.payload)
        self._update_aru()
        if self._state is State.OPERATIONAL:
            self._deliver()

    def _accepting_mcast(self, message: Mcast) -> bool:
        if self._state is State.OPERATIONAL:
            return not message.encapsulated
        if self._state is State.RECOVERY:
            return message.encapsulated
        # GATHER keeps collecting the operational ring's messages; after a failed attempt the
        # ring id is the failed ring's, whose traffic is of no use.
        return self._state is State.GATHER and self._old is None and not message.encapsulated

    def _recovered(self, inner_raw: bytes) -> None:
        """Merge a re-sent old-ring message into the saved old ring as soon as it arrives."""
        old = self._old
        assert old is not None
        try:
            inner = decode_inner_mcast(inner_raw)
        except SrpWireError as error:
            self._invalid(f"invalid recovered message dropped: {error}")
            return
        if inner.ring_id != old.ring_id or inner.sender not in old.members:
            return
        seq = unwrap(inner.seq, old.aru)
        old.add(seq, _Msg(inner_raw, inner.sender, inner.guarantee, inner.payload, False))

    def _foreign(self, sender: int, ring_id: RingId) -> None:
        """A sign of another ring: merge with it (totem-notes §2.12)."""
        if sender in self._members and ring_id.seq < self._ring_id.seq:
            return  # a stale datagram of a ring we both left
        operational = self._state is State.OPERATIONAL
        if operational or (self._state is State.GATHER and sender not in self._proc):
            self._proc.add(sender)
            self._gather("foreign message")

    def _on_hold_cancel(self, message: HoldCancel) -> None:
        self.stats.token_hold_cancel_rx += 1
        if message.ring_id == self._ring_id:
            self._seq_unchanged = 0
            self._release_held_token()

    # -- JOIN and consensus ------------------------------------------------------------------

    def _on_join(self, join: Join) -> None:
        self.stats.memb_join_rx += 1
        if join.leave:
            self._leavers.add(join.sender)  # for the log: "left" rather than "failed"
        self._highest_ring_seq = max(self._highest_ring_seq, join.ring_seq)
        if self._join_is_relevant(join):
            self._process_join(join)

    def _join_is_relevant(self, join: Join) -> bool:
        """The state-dependent JOIN filters of totem-notes §2.5 (hard part 7)."""
        state = self._state
        stale = join.ring_seq < self._ring_id.seq
        if state is State.OPERATIONAL:
            return self._id not in join.failed and not (join.sender in self._members and stale)
        if state is State.COMMIT and join.sender in self._new_members and not join.leave:
            # A member whose view is not the commit token's will refuse the token when it
            # comes: give up now instead of waiting for the token timeout (a join race that a
            # simultaneous start of slow processes hits).
            view = set(join.proc) - set(join.failed)
            return not stale or view != set(self._new_members)
        if state is State.COMMIT or state is State.RECOVERY:
            return join.sender in self._new_members and not stale
        return True

    def _process_join(self, join: Join) -> None:
        sender = join.sender
        proc, failed = set(join.proc), set(join.failed)
        if join.leave:
            failed.add(sender)
        if proc == self._proc and failed == self._failed:
            if not join.leave and self._state is State.GATHER:
                self._consensus.add(sender)
                self._check_consensus()
                return
        elif proc <= self._proc and failed <= self._failed:
            pass  # it knows less than we do
        elif sender in self._failed:
            pass
        else:
            changed = self._merge_view(sender, proc, failed, leave=join.leave)
            # Re-announcing an unchanged view only feeds a JOIN storm between two nodes whose
            # failed sets differ (neither may adopt the other's); the join timer repeats it.
            if changed or self._state is not State.GATHER:
                self._gather("merge during join")
            return
        if self._state is not State.GATHER:
            self._gather("join while not gathering")

    def _merge_view(self, sender: int, proc: set[int], failed: set[int], *, leave: bool) -> bool:
        """Merge a JOIN's view into ours (totem-notes §2.5 step 4); True if ours changed."""
        before = (len(self._proc), len(self._failed))
        self._proc |= proc
        if self._id in failed:
            self._failed.add(sender)  # it cannot hear us: we cannot be in one ring
        elif sender in self._members:
            self._failed |= failed  # only a member of our old ring may tell us who failed
        if leave:
            self._failed.add(sender)
        if not self._failed_to_recv:
            self._failed.discard(self._id)
        return (len(self._proc), len(self._failed)) != before

    def _check_consensus(self) -> None:
        wanted = self._proc - self._failed
        if not wanted <= self._consensus:
            return
        if self._failed_to_recv:
            self._proc, self._failed = {self._id}, set()
            self._create_commit()
        elif wanted and self._id == min(wanted):
            self._create_commit()

    def _consensus_expired(self) -> None:
        self.stats.consensus_timeouts += 1
        wanted = self._proc - self._failed
        if wanted <= self._consensus:
            # We agree and wait for the representative; the token timer is a second chance.
            self._consensus = {self._id}
            self._arm(_Timer.TOKEN_LOSS, self._cfg.token_ms)
            return
        self._failed |= wanted - self._consensus
        self._gather("consensus timeout")

    def _gather(self, reason: str) -> None:
        was = self._state
        if was is State.GATHER:
            self.stats.continuous_gather += 1
        else:
            self.stats.continuous_gather = 0
        self.stats.gather_entered += 1
        self._log(logging.DEBUG, f"entering GATHER state from {was.name} ({reason}).")
        if was is State.COMMIT or was is State.RECOVERY:
            # The failed set of the attempt that was abandoned is stale: its excluded nodes
            # may well be reachable now, and carrying it into the next attempt makes every
            # node it reaches exclude them too (two halves then keep forming side by side).
            self._failed = set()
        self._state = State.GATHER
        self._token_held = False
        self._proc.add(self._id)
        self._consensus = {self._id}
        for timer in (
            _Timer.TOKEN_LOSS,
            _Timer.TOKEN_RETRANSMIT,
            _Timer.MERGE,
            _Timer.HOLD,
            _Timer.WARNING,
        ):
            self._timers.pop(timer, None)
        self._send_join()
        self._arm(_Timer.JOIN, self._cfg.join_ms)
        self._arm(_Timer.CONSENSUS, self._cfg.consensus_ms)
        self._check_consensus()

    def _send_join(self) -> None:
        self.stats.memb_join_tx += 1
        join = Join(
            sender=self._id,
            ring_seq=self._ring_id.seq,
            proc=tuple(sorted(self._proc)),
            failed=tuple(sorted(self._failed)),
        )
        self._broadcast(encode(join))

    # -- the commit token --------------------------------------------------------------------

    def _create_commit(self) -> None:
        members = tuple(sorted(self._proc - self._failed))
        seq = max(self._highest_ring_seq, self._ring_id.seq) + 4
        commit = CommitToken(
            sender=self._id, ring_id=RingId(seq=seq, rep=self._id), token_seq=0, members=members
        )
        self._commit_enter(commit)

    def _on_commit(self, commit: CommitToken) -> None:
        self.stats.memb_commit_token_rx += 1
        if self._id not in commit.members:
            return
        full = len(commit.entries) == len(commit.members)
        if self._state is State.GATHER:
            if (
                set(commit.members) == self._proc - self._failed
                and commit.ring_id.seq > self._ring_id.seq
                and len(commit.entries) == commit.members.index(self._id)
            ):
                self._commit_enter(commit)
        elif self._state is State.COMMIT:
            # The first full arrival starts RECOVERY; later copies meet us in RECOVERY.
            if commit.ring_id == self._ring_id and full:
                self._recovery_enter(commit)
        elif self._state is State.RECOVERY:
            rep = commit.ring_id.rep == self._id
            if rep and commit.ring_id == self._ring_id and full and not self._originated:
                self._originate_token()
        elif (
            self._state is State.OPERATIONAL
            and commit.ring_id.seq > self._ring_id.seq
            and commit.ring_id.rep not in self._members
        ):
            # A ring that counts us is waiting in COMMIT for this token, which we got too late
            # (we were still forming our own ring). Left alone, it would wait a whole token
            # timeout; gathering with its members lets the retransmitted token find us ready.
            self._proc |= set(commit.members)
            self._gather("commit token for a ring that includes us")

    def _commit_enter(self, commit: CommitToken) -> None:
        old = self._old
        if old is None:
            old = self._old = _OldRing(
                ring_id=self._ring_id,
                members=self._members,
                queue=self._queue,
                aru=self._aru,
                high_seq=self._high_seq,
                high_delivered=self._high_delivered,
                safe_seq=self._safe_seq,
            )
        commit.entries.append(
            CommitEntry(
                old_ring_id=old.ring_id,
                aru=old.aru,
                high_delivered=old.high_delivered,
                safe_seq=old.safe_seq,
                received=old.aru == old.high_seq,
            )
        )
        self._ring_id = commit.ring_id
        self._highest_ring_seq = max(self._highest_ring_seq, commit.ring_id.seq)
        self._events.append(PersistRingSeq(seq=commit.ring_id.seq))
        self._new_members = commit.members
        index = commit.members.index(self._id)
        self._next = commit.members[(index + 1) % len(commit.members)]
        self._state = State.COMMIT
        self.stats.commit_entered += 1
        self._timers.pop(_Timer.JOIN, None)
        self._timers.pop(_Timer.CONSENSUS, None)
        self._arm(_Timer.TOKEN_LOSS, self._cfg.token_ms)
        self._trc = self._pbl = self._cbl = 0
        self._token_seq = commit.token_seq
        self._forward_commit(commit)

    def _forward_commit(self, commit: CommitToken) -> None:
        commit.sender = self._id
        commit.token_seq += 1
        self._token_seq = commit.token_seq
        self.stats.memb_commit_token_tx += 1
        self._send_token(encode(commit))

    def _recovery_enter(self, commit: CommitToken) -> None:
        old = self._old
        assert old is not None
        entries = dict(zip(commit.members, commit.entries, strict=True))
        trans = frozenset(
            m for m, e in entries.items() if m in old.members and e.old_ring_id == old.ring_id
        )
        mine = [entries[m] for m in sorted(trans)]
        if trans == old.members:
            self._common_safe = None
        else:
            self._common_safe = max(unwrap(e.safe_seq, old.aru) for e in mine)
        low = min(unwrap(e.aru, old.aru) for e in mine)
        everyone_has_all = all(e.received for e in mine) and len({e.aru for e in mine}) == 1
        self._retrans_q = deque(
            old.queue[s].raw for s in sorted(old.queue) if s > low and not everyone_has_all
        )
        self._trans = trans
        self._state = State.RECOVERY
        self.stats.recovery_entered += 1
        self._queue = {}
        self._reset_ring_counters()
        self._originated = False
        self._arm(_Timer.TOKEN_LOSS, self._cfg.token_ms)
        self._forward_commit(commit)
        self._token_seq = -1

    def _originate_token(self) -> None:
        self._originated = True
        # The representative owns the flag it raises here, so it is the one to lower it.
        self._set_retrans_flg = bool(self._retrans_q)
        start = self._cfg.initial_seq
        token = Token(
            sender=self._id,
            ring_id=self._ring_id,
            token_seq=0,
            seq=start,
            aru=start,
            aru_addr=0,
            retrans_flg=bool(self._retrans_q),
        )
        self.stats.orf_token_tx += 1
        self._send_token(encode(token))

    # -- the ORF token -----------------------------------------------------------------------

    def _on_token(self, token: Token) -> None:
        self.stats.orf_token_rx += 1
        if self._state is not State.OPERATIONAL and self._state is not State.RECOVERY:
            return
        if token.ring_id != self._ring_id:
            return
        token_seq = unwrap(token.token_seq, self._token_seq)
        if token_seq <= self._token_seq:
            return  # a retransmitted copy (hard part 3)
        self._unwrap_token(token)
        hold = self._idle_bookkeeping(token.seq)
        if self._state is State.OPERATIONAL:
            self._release(min(token.aru, self._last_aru, self._high_delivered))
            self._safe_seq = max(self._safe_seq, min(self._aru_out, token.aru))
        last_aru = self._last_aru
        self._last_aru = token.aru
        allowed = self._fcc_allowed(token)
        retransmitted = self._serve_retransmits(token, allowed)
        self._request_missing(token)
        if self._cfg.cancel_token_hold_on_retransmit and (token.rtr or retransmitted):
            hold = False
        sent = self._originate(token, max(0, min(allowed - retransmitted, self._room(token))))
        self._fcc_update(token, retransmitted + sent)
        if self._update_token_aru(token, last_aru):
            return
        self._aru_out = token.aru
        self._token_seq = token_seq
        token.token_seq = token_seq + 1
        if self._state is State.RECOVERY:
            self._recovery_rotation(token)
        token.sender = self._id
        self.stats.orf_token_tx += 1
        raw = encode(token)
        if hold:
            self._last_token_raw = raw
            self._held_token = token
            self._arm(_Timer.HOLD, self._cfg.hold_ms)
            self._arm(_Timer.TOKEN_RETRANSMIT, self._cfg.token_retransmit_ms)
        else:
            self._send_token(raw)
        if self._state is State.OPERATIONAL:
            self._deliver()
        self._arm(_Timer.TOKEN_LOSS, self._cfg.token_ms)
        if self._cfg.token_warning_ms and self._state is State.OPERATIONAL:
            self._arm(_Timer.WARNING, self._cfg.token_warning_ms)

    def _unwrap_token(self, token: Token) -> None:
        ref = self._aru
        token.seq = unwrap(token.seq, ref)
        token.aru = unwrap(token.aru, ref)
        for entry in token.rtr:
            entry.seq = unwrap(entry.seq, ref)

    def _idle_bookkeeping(self, seq: int) -> bool:
        """Merge-detect and token-hold counting; True if this node should hold the token."""
        if seq == self._last_seq:
            self._seq_unchanged += 1
            rep = self._ring_id.rep == self._id
            if rep and _Timer.MERGE not in self._timers and self._state is State.OPERATIONAL:
                self._arm(_Timer.MERGE, self._cfg.merge_ms)
        else:
            self._timers.pop(_Timer.MERGE, None)
            self._seq_unchanged = 0
        self._last_seq = seq
        rep = self._ring_id.rep == self._id
        limit = self._cfg.seqno_unchanged_const
        self._token_held = self._seq_unchanged > limit if rep else self._seq_unchanged >= limit
        return rep and self._token_held and self._state is State.OPERATIONAL

    def _fcc_allowed(self, token: Token) -> int:
        cfg = self._cfg
        allowed = max(0, min(cfg.max_messages, cfg.window_size - token.fcc))
        self._cbl = self._backlog()
        denominator = token.backlog + self._cbl - self._pbl
        if denominator > 0:
            share = cfg.window_size * self._pbl // denominator
            if 0 < share < allowed:
                allowed = share
        return allowed

    def _fcc_update(self, token: Token, sent: int) -> None:
        token.fcc = max(0, token.fcc + sent - self._trc)
        token.backlog = max(0, token.backlog + self._cbl - self._pbl)
        self._trc = sent
        self._pbl = self._cbl

    def _backlog(self) -> int:
        if self._state is State.RECOVERY:
            return len(self._retrans_q)
        return len(self._sync_q) + (0 if self._app_held else len(self._app_q))

    def _serve_retransmits(self, token: Token, allowed: int) -> int:
        if not token.rtr:
            return 0
        sent = 0
        keep: list[RtrEntry] = []
        for entry in token.rtr:
            if entry.ring_id != self._ring_id:
                continue  # nobody on this ring can serve it
            held = self._queue.get(entry.seq)
            if held is not None and sent < allowed:
                self._broadcast(held.raw)
                sent += 1
            else:
                keep.append(entry)
        self.stats.mcast_retx += sent
        token.rtr = keep
        return sent

    def _request_missing(self, token: Token) -> None:
        if token.seq <= self._aru:
            return
        listed = {entry.seq for entry in token.rtr}
        miss = self._miss
        limit = self._cfg.miss_count_const
        for seq in range(self._aru + 1, min(token.seq, self._aru + QUEUE_WINDOW) + 1):
            if len(token.rtr) >= RTR_MAX:
                break
            if seq in self._queue:
                continue
            count = miss.get(seq, 0) + 1
            miss[seq] = count
            if count >= limit and seq not in listed:
                token.rtr.append(RtrEntry(ring_id=self._ring_id, seq=seq))

    def _originate(self, token: Token, allowed: int) -> int:
        sent = 0
        recovery = self._state is State.RECOVERY
        while sent < allowed:
            item = self._next_to_send(recovery)
            if item is None:
                break
            payload, guarantee = item
            token.seq += 1
            raw = encode_mcast(
                self._id, self._ring_id, token.seq, guarantee, payload, encapsulated=recovery
            )
            self._queue[token.seq] = _Msg(raw, self._id, guarantee, payload, recovery)
            self._broadcast(raw)
            sent += 1
        if sent:
            self.stats.mcast_tx += sent
            self._high_seq = token.seq
            self._update_aru()
        return sent

    def _next_to_send(self, recovery: bool) -> tuple[bytes, Guarantee] | None:
        if recovery:
            return (self._retrans_q.popleft(), Guarantee.AGREED) if self._retrans_q else None
        if self._sync_q:
            return self._sync_q.popleft()
        if self._app_q and not self._app_held:
            return self._app_q.popleft()
        return None

    def _room(self, token: Token) -> int:
        """New messages the ring queue can take on this visit (its window past the release)."""
        return self._last_released + QUEUE_WINDOW - self._cfg.window_size - token.seq

    def _lower_token_aru(self, token: Token) -> None:
        """Corosync's rule: lower the token's aru to ours, or raise it if we lowered it."""
        if self._aru < token.aru or token.aru_addr in (self._id, 0):
            token.aru = self._aru
            token.aru_addr = 0 if token.aru == token.seq else self._id

    def _update_token_aru(self, token: Token, last_aru: int) -> bool:
        """Corosync's aru rules; True when this node gave up: FAILED TO RECEIVE."""
        me = self._id
        self._lower_token_aru(token)
        if token.aru == last_aru and token.aru_addr != 0:
            self._aru_count += 1
        else:
            self._aru_count = 0
        if self._aru_count > self._cfg.fail_recv_const and token.aru_addr == me:
            self._log(logging.ERROR, "FAILED TO RECEIVE")
            self._failed_to_recv = True
            self._failed.add(me)
            self._gather("failed to receive")
            return True
        return False

    def _recovery_rotation(self, token: Token) -> None:
        if self._retrans_q and not token.retrans_flg:
            token.retrans_flg = True
            self._set_retrans_flg = True
        elif not self._retrans_q and token.retrans_flg and self._set_retrans_flg:
            token.retrans_flg = False
            self._set_retrans_flg = False
        self._retrans_flg_count = 0 if token.retrans_flg else self._retrans_flg_count + 1
        if self._retrans_flg_count == 2:
            self._install_seq = token.seq
        if self._retrans_flg_count >= 3 and self._install_seq <= token.aru:
            self._rotations += 1
        else:
            self._rotations = 0
        if self._rotations == 2:
            self._install(token)

    # -- installing a ring (EVS delivery, see the module docstring) ----------------------------

    def _install(self, token: Token) -> None:
        old = self._old
        assert old is not None
        new = frozenset(self._new_members)
        trans = self._trans
        delivered = self._deliver_old_regular(old)
        left = tuple(sorted(old.members - trans))
        joined = tuple(sorted(new - trans))
        self._events.append(
            ConfigChange(
                kind=ConfigKind.TRANSITIONAL,
                members=tuple(sorted(trans)),
                left=left,
                joined=(),
                ring_id=self._ring_id,
            )
        )
        self._deliver_old_transitional(old, delivered, trans)
        self._events.append(
            ConfigChange(
                kind=ConfigKind.REGULAR,
                members=tuple(sorted(new)),
                left=(),
                joined=joined,
                ring_id=self._ring_id,
            )
        )
        self._members = new
        self._proc, self._failed = set(new), set()
        self._old = None
        self._failed_to_recv = False
        # Recovery traffic is consumed, not delivered: free it now (hard part 5).
        self._release(self._aru)
        self._high_delivered = self._aru
        self._safe_seq = self._aru
        self._aru_out = token.aru
        self._state = State.OPERATIONAL
        self.stats.operational_entered += 1
        if self._hold_app:
            self._app_held = True
        # Corosync names the node itself among the joined of its first ring.
        first = self.stats.operational_entered == 1
        self._log(NOTICE, self._membership_line(tuple(sorted(new)) if first else joined, left))
        failed = [node for node in left if node not in self._leavers]
        if failed:
            self._log(
                NOTICE, "Failed to receive the leave message. failed: " + " ".join(map(str, failed))
            )
        self._leavers.clear()

    def _deliver_old_regular(self, old: _OldRing) -> int:
        seq = old.high_delivered + 1
        safe = self._common_safe
        while (message := old.queue.get(seq)) is not None:
            unsafe = safe is not None and seq > safe
            if message.guarantee is Guarantee.SAFE and unsafe:
                break
            self._deliver_one(old.ring_id, seq, message)
            seq += 1
        return seq - 1

    def _deliver_old_transitional(
        self, old: _OldRing, delivered: int, trans: frozenset[int]
    ) -> None:
        previous = delivered
        hole = False
        for seq in sorted(s for s in old.queue if s > delivered):
            hole = hole or seq != previous + 1
            previous = seq
            message = old.queue[seq]
            if hole and message.sender not in trans:
                continue
            self._deliver_one(old.ring_id, seq, message)

    def _membership_line(self, joined: tuple[int, ...], left: tuple[int, ...]) -> str:
        ring = self._ring_id
        line = f"A new membership ({ring.rep:x}.{ring.seq:x}) was formed. Members"
        if joined:
            line += " joined: " + " ".join(map(str, joined))
        if left:
            line += " left: " + " ".join(map(str, left))
        return line

    # -- delivery and release ----------------------------------------------------------------

    def _deliver(self) -> None:
        queue = self._queue
        seq = self._high_delivered + 1
        while (message := queue.get(seq)) is not None:
            if message.guarantee is Guarantee.SAFE and seq > self._safe_seq:
                break
            if not message.encapsulated:
                self._deliver_one(self._ring_id, seq, message)
            self._high_delivered = seq
            seq += 1

    def _deliver_one(self, ring_id: RingId, seq: int, message: _Msg) -> None:
        self._events.append(
            Delivery(
                sender=message.sender,
                ring_id=ring_id,
                seq=seq,
                payload=message.payload,
                guarantee=message.guarantee,
            )
        )

    def _release(self, upto: int) -> None:
        queue = self._queue
        for seq in range(self._last_released + 1, upto + 1):
            queue.pop(seq, None)
        self._last_released = max(self._last_released, upto)

    def _update_aru(self) -> None:
        queue, miss = self._queue, self._miss
        aru = self._aru
        while aru + 1 in queue:
            aru += 1
            if miss:
                miss.pop(aru, None)
        self._aru = aru

    def _reset_ring_counters(self) -> None:
        start = self._cfg.initial_seq
        self._queue = {}
        self._aru = self._high_seq = self._high_delivered = self._last_released = start
        self._last_aru = self._aru_out = self._safe_seq = self._last_seq = start
        self._install_seq = start
        self._miss = {}
        self._seq_unchanged = self._aru_count = 0
        self._trc = self._pbl = self._cbl = 0
        self._token_held = False
        self._set_retrans_flg = False
        self._retrans_flg_count = 0
        self._rotations = 0

    # -- timers ------------------------------------------------------------------------------

    def _arm(self, timer: _Timer, ms: int | float) -> None:
        self._timers[timer] = self._now + ms / 1000.0

    def _fire(self, timer: _Timer) -> None:
        state = self._state
        if timer is _Timer.TOKEN_LOSS:
            self._token_lost()
        elif timer is _Timer.TOKEN_RETRANSMIT:
            if state in (State.OPERATIONAL, State.COMMIT, State.RECOVERY) and self._last_token_raw:
                self._send_token(self._last_token_raw)
        elif timer is _Timer.HOLD:
            if state is State.OPERATIONAL and self._last_token_raw:
                self._send_held_token()
        elif timer is _Timer.JOIN:
            if state is State.GATHER:
                self._send_join()
                self._arm(_Timer.JOIN, self._cfg.join_ms)
        elif timer is _Timer.CONSENSUS:
            if state is State.GATHER:
                self._consensus_expired()
        elif timer is _Timer.MERGE:
            if state is State.OPERATIONAL and self._ring_id.rep == self._id:
                self.stats.memb_merge_detect_tx += 1
                self._broadcast(encode(MergeDetect(sender=self._id, ring_id=self._ring_id)))
        elif timer is _Timer.WARNING and state is State.OPERATIONAL:
            self._log(NOTICE, f"Token has not been received in {self._cfg.token_warning_ms} ms")

    def _token_lost(self) -> None:
        state = self._state
        if state is State.OPERATIONAL:
            self.stats.operational_token_lost += 1
            self._log(
                NOTICE,
                f"A processor failed, forming new configuration: token timed out "
                f"({self._cfg.token_ms}ms), waiting {self._cfg.consensus_ms}ms for consensus.",
            )
            self._gather("token loss")
        elif state is State.GATHER:
            self.stats.gather_token_lost += 1
            self._consensus_expired()
        elif state is State.COMMIT:
            self.stats.commit_token_lost += 1
            self._gather("token loss in COMMIT")
        elif state is State.RECOVERY:
            self.stats.recovery_token_lost += 1
            self._gather("token loss in RECOVERY")

    # -- token hold --------------------------------------------------------------------------

    def _cancel_hold(self) -> None:
        self._token_held = False
        self._seq_unchanged = 0
        if _Timer.HOLD in self._timers:
            # The token is here: it leaves at once with the new message on it, and the
            # others see the ring busy again from its seq - nobody needs to be told.
            self._release_held_token()
            return
        self.stats.token_hold_cancel_tx += 1
        self._broadcast(encode(HoldCancel(sender=self._id, ring_id=self._ring_id)))

    def _release_held_token(self) -> None:
        """A representative holding the token sends it at once (on the driver's next timer)."""
        self._token_held = False
        if _Timer.HOLD in self._timers:
            self._timers[_Timer.HOLD] = self._now

    def _send_held_token(self) -> None:
        """Release the held token, first originating what was queued while it was held.

        The held token has not left this node, so nobody has seen this visit yet: carrying the
        new messages on it is the visit it would have been had they come before the token.
        Without this a message that ends the hold waits for the token to go round once more."""
        token = self._held_token
        backlog = self._backlog()
        if token is None or not backlog:
            assert self._last_token_raw is not None
            self._send_token(self._last_token_raw)
            return
        cfg = self._cfg
        allowed = max(0, min(cfg.max_messages, cfg.window_size - token.fcc))
        sent = self._originate(token, max(0, min(allowed, self._room(token))))
        token.fcc += sent  # the visit's sends so far were none: these are all of them
        self._trc += sent
        token.backlog = max(0, token.backlog + backlog - self._pbl)
        self._pbl = backlog
        self._lower_token_aru(token)
        self._aru_out = token.aru
        self._send_token(encode(token))
        self._deliver()

    # -- sending -----------------------------------------------------------------------------

    def _send_token(self, raw: bytes) -> None:
        self._held_token = None
        self._last_token_raw = raw
        self._sends.append(Send(self._next, raw))
        self._timers.pop(_Timer.HOLD, None)
        self._arm(_Timer.TOKEN_RETRANSMIT, self._cfg.token_retransmit_ms)

    def _broadcast(self, raw: bytes) -> None:
        self._sends.append(Send(None, raw))

    def _log(self, level: int, text: str) -> None:
        self._events.append(TotemLog(level=level, text=text))
