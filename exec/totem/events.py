"""The typed events the Totem core hands to its shell (and the simulator records).

These are the only things above the core that the EVS checkers look at, so their meaning is
the meaning of the invariants in ``../shared/reference/totem-notes.md`` §10:

* A :class:`Delivery` is one message handed up in agreed (or safe) order. ``ring_id`` and
  ``seq`` identify the message: the ring it was *sent* in (for a message recovered onto a new
  ring, the ring of its original, inner header) and its sequence number there.
* A :class:`ConfigChange` is a TRANSITIONAL or REGULAR configuration. Every REGULAR one is
  preceded by exactly one TRANSITIONAL one with the same (new) ring id; old-ring messages that
  could not be delivered in the old regular configuration are delivered between the two.
* :class:`PersistRingSeq` asks the shell to make the ring seq durable *before* it sends the
  datagrams produced in the same step (so a restarted node never reuses a ring id).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple


class RingId(NamedTuple):
    """Corosync's ring id: the representative's nodeid and a ring sequence number.

    Ordered by ``seq`` first (field order matters), then ``rep``. A named tuple rather than a
    dataclass because ring ids are compared and hashed on every message: tuple equality and
    hashing run in C.
    """

    seq: int
    rep: int

    def __str__(self) -> str:
        return f"{self.rep}.{self.seq}"


class ConfigKind(IntEnum):
    """Corosync's ``TOTEM_CONFIGURATION_*`` numbering."""

    REGULAR = 0
    TRANSITIONAL = 1


class Guarantee(IntEnum):
    """Delivery guarantee of a multicast (Corosync's ``TOTEM_AGREED`` / ``TOTEM_SAFE``)."""

    AGREED = 0
    SAFE = 1


class Delivery(NamedTuple):
    """One message handed up in agreed (or safe) order.

    A named tuple because one is built for every message on every node: it costs a fraction of
    a frozen dataclass. Build it with keywords.
    """

    sender: int
    """Nodeid of the processor that originated the message."""
    ring_id: RingId
    """The ring the message was sent in (its original ring if it was recovered)."""
    seq: int
    """Its sequence number on that ring."""
    payload: bytes
    guarantee: Guarantee = Guarantee.AGREED


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigChange:
    kind: ConfigKind
    members: tuple[int, ...]
    """Sorted nodeids of the configuration being installed."""
    left: tuple[int, ...]
    joined: tuple[int, ...]
    ring_id: RingId


@dataclass(frozen=True, slots=True, kw_only=True)
class PersistRingSeq:
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TotemLog:
    """A line for the operator's log, in Corosync's words (the shell adds the ``[TOTEM ]`` tag).

    ``level`` is a :mod:`logging` level number (``logformat.NOTICE`` for Corosync's notice).
    """

    level: int
    text: str


TotemEvent = Delivery | ConfigChange | PersistRingSeq | TotemLog
