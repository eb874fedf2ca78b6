"""The bounded, lazily formatted trace of a simulated run.

Recording must cost next to nothing, because it happens for every datagram: an entry is a
plain tuple ``(time, node, code, a, b)`` appended to a ``deque`` with a ``maxlen``, so only the
last entries survive and nothing is formatted while the run goes on. :meth:`Trace.lines` turns
what is left into text when somebody wants to read it (a failing seed). Every value formatted
comes from the run itself - virtual times, nodeids, datagram bytes, events - so one seed always
gives the same text.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from pycorosync.exec.totem.events import ConfigChange, Delivery, Guarantee, PersistRingSeq

Describe = Callable[[bytes], str]
"""Summarises a datagram for the trace (for SRP: its message type and key fields)."""

Entry = tuple[float, int, int, object, object]
"""``(virtual time, nodeid or 0 for the whole cluster, code, a, b)``."""

# Entry codes; ``a`` and ``b`` per code are noted beside each.
OUT = 1  # a: dest nodeid or None (every other node), b: datagram
IN = 2  # a: sender nodeid, b: datagram
DROP = 3  # a: dest nodeid, b: reason (the entry's node is the sender)
DUP = 4  # a: dest nodeid, b: None
LOST = 5  # a: sender nodeid, b: reason (arrived at a node that could not take it)
TIMER = 6  # a: deadline, b: None
EVENT = 7  # a: TotemEvent, b: None
SUBMIT = 8  # a: payload, b: Guarantee
REFUSED = 9  # a: payload, b: Guarantee
NOTE = 10  # a: text, b: None
BATCH = 11  # a: number of datagrams, b: None

PAYLOAD_SHOWN = 24
"""Bytes of a payload shown in the trace (simulated payloads start with a unique tag)."""


class Trace:
    """The last ``maxlen`` entries of a run."""

    def __init__(self, maxlen: int, describe: Describe | None = None) -> None:
        self.entries: deque[Entry] = deque(maxlen=maxlen)
        self.describe = describe

    def note(self, now: float, node: int, text: str) -> None:
        self.entries.append((now, node, NOTE, text, None))

    def lines(self) -> list[str]:
        return [self.format(entry) for entry in self.entries]

    def format(self, entry: Entry) -> str:
        now, node, code, a, b = entry
        where = f"n{node}" if node else "--"
        return f"{now:11.6f} {where:>4} {self._text(code, a, b)}"

    def _text(self, code: int, a: object, b: object) -> str:
        if code == OUT:
            dest = "all" if a is None else f"n{a}"
            return f"out -> {dest} {self._datagram(b)}"
        if code == IN:
            return f"in  <- n{a} {self._datagram(b)}"
        if code == BATCH:
            return f"batch of {a} datagram(s)"
        if code == DROP:
            return f"net drops copy to n{a} ({b})"
        if code == DUP:
            return f"net duplicates copy to n{a}"
        if code == LOST:
            return f"lost datagram from n{a} ({b})"
        if code == TIMER:
            return f"timer (deadline {a:.6f})" if isinstance(a, int | float) else "timer"
        if code == EVENT:
            return describe_event(a)
        if code in (SUBMIT, REFUSED):
            assert isinstance(a, bytes)
            assert isinstance(b, Guarantee)
            verb = "submitted" if code == SUBMIT else "mcast refused (would block)"
            return f"{verb} {show_payload(a)} {b.name}"
        return str(a)

    def _datagram(self, data: object) -> str:
        assert isinstance(data, bytes)
        summary = self.describe(data) if self.describe is not None else data[:12].hex()
        return f"{len(data)}B {summary}"


def describe_event(event: object) -> str:
    if isinstance(event, Delivery):
        return (
            f"deliver from n{event.sender} {event.ring_id}/{event.seq} "
            f"{show_payload(event.payload)} {event.guarantee.name}"
        )
    if isinstance(event, ConfigChange):
        return (
            f"confchg {event.kind.name} ring {event.ring_id} members {list(event.members)} "
            f"left {list(event.left)} joined {list(event.joined)}"
        )
    if isinstance(event, PersistRingSeq):
        return f"persist ring seq {event.seq}"
    return repr(event)


def show_payload(payload: bytes) -> str:
    if len(payload) <= PAYLOAD_SHOWN:
        return repr(payload)
    return f"{payload[:PAYLOAD_SHOWN]!r}+{len(payload) - PAYLOAD_SHOWN}B"
