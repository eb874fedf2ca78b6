"""Messages over :data:`~pycorosync.lib.cpg_wire.MAX_ATOMIC_MSG_SIZE`: cutting and reassembly.

Theory of operation
-------------------
As in Corosync's libcpg, a message too big for one IPC frame and one Totem message is cut
into fragments of at most ``MAX_ATOMIC_MSG_SIZE`` bytes - FIRST, CONTINUED ..., LAST - each
sent as a PARTIAL_MCAST request that the engine answers once it has multicast it. Every
fragment is delivered in agreed order like any multicast, so the fragments of one sender
arrive in order, interleaved with other senders' messages; each receiver's library
reassembles per sender process (nodeid, pid) and hands the application the whole message,
once, when LAST arrives. Nothing else is ever delivered for a fragment.

What a receiver drops, and why (never raising: a bad assembly loses only itself):

* a FIRST starts afresh, discarding any unfinished assembly of that sender (the sender's
  earlier message was interrupted by a membership change);
* a CONTINUED or LAST with no assembly (this handle joined in the middle of the message);
* an assembly that grows past the total its fragments announce, or whose fragments disagree
  on the total, or whose LAST leaves it short;
* the assembly of a process that a confchg lists as left (:meth:`Reassembly.forget`).

Memory follows what arrives, not the announced total: a hostile total cannot make a
receiver allocate it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pycorosync.lib.cpg_wire import MAX_ATOMIC_MSG_SIZE, FragmentType, PartialBody

__all__ = ["Reassembly", "cut"]


def cut(message: bytes, size: int = MAX_ATOMIC_MSG_SIZE) -> Iterator[tuple[FragmentType, bytes]]:
    """The fragments of ``message`` (longer than ``size``), in order."""
    if len(message) <= size:
        raise ValueError(f"a {len(message)} byte message needs no fragments")
    view = memoryview(message)
    for start in range(0, len(message), size):
        if start == 0:
            kind = FragmentType.FIRST
        elif start + size >= len(message):
            kind = FragmentType.LAST
        else:
            kind = FragmentType.CONTINUED
        yield kind, bytes(view[start : start + size])


@dataclass
class _Assembly:
    total: int
    data: bytearray = field(default_factory=bytearray)


class Reassembly:
    """One handle's unfinished messages, by sender process."""

    def __init__(self) -> None:
        self._open: dict[tuple[int, int], _Assembly] = {}
        self.dropped = 0
        """Assemblies abandoned (interrupted, inconsistent or of a process that left)."""

    def __len__(self) -> int:
        return len(self._open)

    def add(self, part: PartialBody) -> bytes | None:
        """Take one fragment; the whole message once ``part`` completes it."""
        sender = (part.nodeid, part.pid)
        if part.kind is FragmentType.FIRST:
            if self._open.pop(sender, None) is not None:
                self.dropped += 1
            assembly = self._open[sender] = _Assembly(part.total)
        else:
            found = self._open.get(sender)
            if found is None:
                return None  # joined mid-message: its start went to others only
            assembly = found
        assembly.data += part.fragment
        if assembly.total != part.total or len(assembly.data) > assembly.total:
            self._abandon(sender)
            return None
        if part.kind is not FragmentType.LAST:
            return None
        del self._open[sender]
        if len(assembly.data) != assembly.total:
            self.dropped += 1
            return None
        return bytes(assembly.data)

    def forget(self, nodeid: int, pid: int) -> None:
        """A process left the group: its unfinished message will never end."""
        self._abandon((nodeid, pid))

    def _abandon(self, sender: tuple[int, int]) -> None:
        if self._open.pop(sender, None) is not None:
            self.dropped += 1
