"""What a CPG sync round changes in the process table, as Corosync's ``cpg_sync_activate``.

Theory of operation. After a membership change every node multicasts its *joinlist* (its own
processes) and keeps its own *downlist* (the nodes it was with before that did not come
through the transitional configuration). At activation, on every node:

1. the processes of downlist nodes are removed - one confchg per group, reason NODEDOWN;
2. the processes in other nodes' joinlists that the table lacks are added - one confchg per
   group, reason NODEUP;
3. any other remote process no joinlist names is removed - one confchg each, reason PROCDOWN
   (it left while we were apart).

A process whose PROCLEAVE is still on its way is in its node's joinlist like any other: the
leave takes it out where it is delivered, in agreed order, after the messages it sent before
(the engine drops from the collected joinlists a process whose leave is delivered during the
round, so a joinlist built before that leave came back cannot bring it back).

Afterwards each node's table holds exactly what every member says of itself, so all members
agree however the partitions were split and merged. :func:`merge` is pure: it changes the
table and returns the confchgs to send, in order.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

from pycorosync.lib.cpg_wire import CpgAddress, CpgReason
from pycorosync.services.cpg.groups import Process, ProcessTable

__all__ = ["GroupChange", "JoinEntry", "merge"]

JoinEntry = tuple[int, bytes, int]
"""``(sender nodeid, group, pid)`` from a received joinlist."""


@dataclass(frozen=True, slots=True)
class GroupChange:
    """One confchg for one group: ``members`` after the change."""

    group: bytes
    members: tuple[Process, ...]
    left: tuple[CpgAddress, ...]
    joined: tuple[CpgAddress, ...]


def merge(
    table: ProcessTable,
    local: int,
    downlist: Collection[int],
    joinlists: Iterable[JoinEntry],
) -> list[GroupChange]:
    reported = {(group, (node, pid)) for node, group, pid in joinlists if node != local}
    changes = _removed(table, [e for e in table.entries() if e[1][0] in downlist], "down")
    changes += _added(table, sorted(reported))
    zombies = [e for e in table.entries() if e[1][0] != local and e not in reported]
    for entry in zombies:
        changes += _removed(table, [entry], "zombie")
    return changes


def _removed(
    table: ProcessTable, doomed: list[tuple[bytes, Process]], why: str
) -> list[GroupChange]:
    reason = CpgReason.NODEDOWN if why == "down" else CpgReason.PROCDOWN
    removed = table.remove_where(doomed)
    return [
        GroupChange(group, table.members(group), _addresses(gone, reason), ())
        for group, gone in removed.items()
    ]


def _added(table: ProcessTable, entries: list[tuple[bytes, Process]]) -> list[GroupChange]:
    added: dict[bytes, list[Process]] = {}
    for group, process in entries:
        if table.add(group, process):
            added.setdefault(group, []).append(process)
    return [
        GroupChange(group, table.members(group), (), _addresses(new, CpgReason.NODEUP))
        for group, new in added.items()
    ]


def _addresses(processes: Iterable[Process], reason: CpgReason) -> tuple[CpgAddress, ...]:
    return tuple(CpgAddress(node, pid, reason) for node, pid in processes)
