"""What the simulator records per node and the EVS checkers read.

A node's history is the ordered list of what its core did that matters for extended virtual
synchrony: the :class:`~pycorosync.exec.totem.events.Delivery` and
:class:`~pycorosync.exec.totem.events.ConfigChange` events it emitted, plus markers for the
messages it accepted for sending and for crashes and restarts (a crash ends the node's
obligations in its current configuration; a restarted node starts a new incarnation).

Payloads in simulated runs are unique per sender, so ``(sender, payload)`` identifies a message
from the moment it is submitted.
"""

from __future__ import annotations

from dataclasses import dataclass

from pycorosync.exec.totem.events import ConfigChange, Delivery, Guarantee


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """The core accepted ``payload`` for multicast (``mcast`` did not answer "would block")."""

    payload: bytes
    guarantee: Guarantee = Guarantee.AGREED


@dataclass(frozen=True, slots=True, kw_only=True)
class Crashed:
    """The node stopped without a goodbye; it owes nothing more in its current ring."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Restarted:
    """The node came back with only its persisted state (a new incarnation)."""


HistoryEntry = Delivery | ConfigChange | Submitted | Crashed | Restarted
