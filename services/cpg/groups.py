"""The CPG engine's replicated state: which process is in which group, on every node.

Theory of operation. Every node keeps the same table (Corosync's ``process_info`` list): the
engines apply the same PROCJOIN / PROCLEAVE messages in the ring's agreed order and the same
sync rules after a membership change, so the tables agree. A process is ``(nodeid, pid)``;
one process may be in several groups (through several connections), and several processes of
one node may be in one group. A group's members are kept sorted by ``(nodeid, pid)``, the
order Corosync's list has and the order confchg member lists show.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator

__all__ = ["Process", "ProcessTable"]

Process = tuple[int, int]
"""``(nodeid, pid)``."""


class ProcessTable:
    def __init__(self) -> None:
        self._groups: dict[bytes, list[Process]] = {}

    def add(self, group: bytes, process: Process) -> bool:
        """Record ``process`` in ``group``; False if it was there already."""
        members = self._groups.setdefault(group, [])
        index = bisect.bisect_left(members, process)
        if index < len(members) and members[index] == process:
            return False
        members.insert(index, process)
        return True

    def remove(self, group: bytes, process: Process) -> bool:
        """Forget ``process`` in ``group``; False if it was not there."""
        members = self._groups.get(group)
        if members is None or process not in members:
            return False
        members.remove(process)
        if not members:
            del self._groups[group]
        return True

    def __contains__(self, entry: tuple[bytes, Process]) -> bool:
        group, process = entry
        return process in self._groups.get(group, ())

    def members(self, group: bytes) -> tuple[Process, ...]:
        return tuple(self._groups.get(group, ()))

    def node_in_group(self, group: bytes, nodeid: int) -> bool:
        # Asked for every delivered message: members are sorted, so a bisection answers.
        members = self._groups.get(group)
        if not members:
            return False
        index = bisect.bisect_left(members, (nodeid, -1))
        return index < len(members) and members[index][0] == nodeid

    def groups(self) -> list[bytes]:
        """Group names in Corosync's iteration order: the reverse of their first appearance
        in the ``(nodeid, pid)``-sorted process list."""
        return sorted(self._groups, key=lambda g: (self._groups[g][0], g), reverse=True)

    def entries(self) -> Iterator[tuple[bytes, Process]]:
        for group in self.groups():
            for process in self._groups[group]:
                yield group, process

    def of_node(self, nodeid: int) -> list[tuple[bytes, int]]:
        """``(group, pid)`` of every process of ``nodeid``: a node's joinlist."""
        return [(group, pid) for group, (node, pid) in self.entries() if node == nodeid]

    def remove_where(self, doomed: Iterable[tuple[bytes, Process]]) -> dict[bytes, list[Process]]:
        """Remove the given entries; the ones actually removed, by group."""
        removed: dict[bytes, list[Process]] = {}
        for group, process in list(doomed):
            if self.remove(group, process):
                removed.setdefault(group, []).append(process)
        return removed
