"""The contract between a Totem core and whatever drives it: the daemon's shell or the simulator.

A core is sans-IO (DESIGN.md). The driver calls it with datagrams, timer expiries and requests,
always passing ``now`` (seconds on a monotonic clock, real or virtual); after every call it
drains :meth:`TotemCore.take_output`, which returns the datagrams to send and the typed events
(:mod:`pycorosync.exec.totem.events`) of that step, then asks :meth:`TotemCore.next_deadline`
when to call :meth:`TotemCore.handle_timer` next.

Ordering within one step matters: the driver first acts on the events - a
:class:`~pycorosync.exec.totem.events.PersistRingSeq` must be durable before any datagram of the
same step leaves the node (a restarted node must never reuse a ring id) - and then sends the
datagrams in the order given.

Addressing. ``Send.dest`` is a nodeid for a unicast (the token, which may be addressed to the
node itself on a singleton ring) or ``None`` for "every other configured member" (udpu fans it
out; multicast sends it once and filters its own loop-back). A core never needs its own
broadcasts back: it applies them to itself when it sends them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pycorosync.exec.totem.events import Guarantee, TotemEvent


@dataclass(frozen=True, slots=True)
class Send:
    dest: int | None
    """The nodeid to unicast to, or ``None`` to send to every other configured member."""
    data: bytes


class TotemCore(Protocol):
    """What a driver may call. :class:`pycorosync.exec.totem.srp.Srp` is the implementation."""

    @property
    def nodeid(self) -> int: ...

    def start(self, now: float) -> None:
        """Bring the node up: it starts gathering a membership."""

    def handle_datagrams(self, datagrams: Sequence[bytes], now: float) -> None:
        """Handle every datagram received since the last call, as one batch.

        The core handles tokens after everything else in the batch (totem-notes, hard part 9),
        so the driver simply passes what it read, in the order it read it.
        """

    def brings_token(self, datagrams: Sequence[bytes]) -> bool:
        """True if handling ``datagrams`` will process a regular token (a pure peek).

        The driver then lets the layer above put what it has staged into the queue first, so
        that it leaves on this visit of the token rather than the next (Corosync's
        ``TOTEM_CALLBACK_TOKEN_RECEIVED``, which totempg uses to flush its packing buffer)."""

    def handle_timer(self, now: float) -> None:
        """Fire every timer whose deadline is at or before ``now``."""

    def next_deadline(self) -> float | None:
        """The earliest pending timer deadline, or ``None`` when no timer is armed."""

    def mcast(
        self, payload: bytes, guarantee: Guarantee = Guarantee.AGREED, *, sync: bool = False
    ) -> bool:
        """Queue ``payload`` for multicast; False means "would block" (the queue is full).

        ``sync`` selects the sync queue, which is served ahead of the application queue.
        """

    def room(self, *, sync: bool = False) -> int:
        """How many more messages ``mcast`` accepts on that queue right now."""

    def leave(self, now: float) -> None:
        """Shut down gracefully: send a LEAVE so the others reconfigure at once."""

    def counters(self) -> dict[str, int]:
        """The protocol's counters by Corosync's ``stats.srp.*`` names."""

    def take_output(self) -> tuple[list[Send], list[TotemEvent]]:
        """Drain the datagrams and events produced since the last call."""
