"""The Totem process runtime: the sans-IO Totem core driven by a uvloop event loop.

Theory of operation
-------------------
:class:`TotemProcess` is the thin shell of DESIGN.md around a :class:`~.totem.core_api.TotemCore`.
Three things wake it, and after each it runs the same step (:meth:`TotemProcess._flush`):

* **A socket is readable** (``loop.add_reader`` on each of the transport's ``filenos``: one
  for udpu, two for udp). The whole batch waiting is read
  (:meth:`.totemnet.UdpuTransport.read_batch`), every datagram goes through the packet
  protection's ``open`` — authentication before any parsing; a datagram that fails is dropped
  and logged, at most one line per second per reason (:class:`RateLimitedLog`) — a datagram
  whose authenticated sender is this node (our own multicast, looped back by the kernel) is
  dropped, and what survives goes to ``core.handle_datagrams`` as one batch. The core handles
  the tokens of a batch last, so multicasts that arrived before a token are never mistaken for
  lost ones (totem-notes.md, hard part 9).
* **The core's timer** (one ``loop.call_at`` for ``core.next_deadline()``). Core time is
  ``loop.time()``, kept monotonic; a timer that fires early by the loop's millisecond rounding
  is run at its deadline rather than re-armed in a busy loop.
* **Shutdown** (:meth:`TotemProcess.shutdown`): ``core.leave`` and its LEAVE datagrams.

The step drains ``core.take_output()``. A :class:`~.totem.events.PersistRingSeq` is made
durable (:class:`RingSeqFile`) before any datagram that could carry the new ring id leaves the
node, as the driver contract requires; then the datagrams are sent - the token's next hop
first - and the other events handed up after them, except when they are only a few small
deliveries (:data:`EARLY_DELIVERY_BYTES`), which go up first to cut the self-delivery
latency. :class:`~.totem.events.TotemLog` lines go to the TOTEM subsystem; a REGULAR
configuration is logged as Corosync logs it, and the first one makes the node ready ("ready to
provide service.", ``READY=1`` to systemd through :func:`sd_notify`). Then every datagram is
sealed (one ``seal`` per datagram, shared by all its destinations) and sent in order. A token
this node sends to itself (a singleton ring) is handed back to the core on the next loop
iteration without touching the network.

**Scheduling pauses.** :class:`PauseMonitor` runs a timer every token/5; when the gap between
two runs exceeds 0.8 x token, the loop was not scheduled (a stopped process, swapping, a stall
in our own code) and Corosync's warning is logged, so an operator sees why the token was lost.

Nothing here blocks the loop except the ring-seq write: a few bytes, fsync'd, once per new ring
(membership changes, not per message) — durable before the datagrams that follow, by design.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from pycorosync.exec.logformat import NOTICE
from pycorosync.exec.logsys import subsys_logger
from pycorosync.exec.totem.core_api import Send, TotemCore
from pycorosync.exec.totem.events import (
    ConfigChange,
    ConfigKind,
    Delivery,
    PersistRingSeq,
    TotemEvent,
    TotemLog,
)
from pycorosync.exec.totemcrypto import CryptoError
from pycorosync.exec.totemnet import Datagram, NetStats

totem_log = subsys_logger("TOTEM")
main_log = subsys_logger("MAIN")

PAUSE_FRACTION: Final = 0.8
"""A loop gap above this fraction of the token timeout is logged as a scheduling pause."""
DROP_LOG_INTERVAL_S: Final = 1.0
DROP_REASONS_MAX: Final = 32
"""Distinct drop reasons tracked for rate limiting; further ones share one bucket."""


class PacketProtection(Protocol):
    """What the runtime needs from packet protection (:class:`.totemcrypto.PacketCrypto`);
    ``open`` raises :class:`.totemcrypto.CryptoError` for a packet to drop."""

    @property
    def overhead(self) -> int: ...

    def seal(self, payload: bytes) -> bytes: ...

    def open(self, packet: bytes) -> tuple[int, bytes]: ...


class Transport(Protocol):
    """What the runtime needs from a transport (:class:`.totemnet.UdpuTransport`,
    :class:`.totemudp.UdpMulticastTransport`)."""

    nodeid: int
    stats: NetStats

    def filenos(self) -> tuple[int, ...]: ...

    def send(self, nodeid: int, data: bytes) -> None: ...

    def broadcast(self, data: bytes) -> None: ...

    def read_batch(self) -> list[Datagram]: ...


# --- the ring seq on disk --------------------------------------------------------------------


class CounterFile:
    """``<state_dir>/<name>_<nodeid>``: a non-negative number kept durably, as text."""

    what = "number"

    def __init__(self, state_dir: str, nodeid: int, name: str) -> None:
        self.path = os.path.join(state_dir, f"{name}_{nodeid}")

    def load(self) -> int:
        """The stored number; 0 when there is none. An unreadable file is an OSError."""
        try:
            with open(self.path, encoding="ascii") as file:
                text = file.read().strip()
        except FileNotFoundError:
            return 0
        try:
            value = int(text, 10)
        except ValueError:
            raise OSError(f"{self.path} holds no {self.what}: {text[:40]!r}") from None
        if value < 0:
            raise OSError(f"{self.path} holds a negative {self.what}")
        return value

    def save(self, seq: int) -> None:
        """Replace the file atomically and durably: temporary file, fsync, rename, fsync dir.

        For the ring seq this blocks the event loop for the fsyncs; it runs once per new ring,
        and the datagrams that follow must not leave before it is durable (hard part 1).
        """
        tmp = f"{self.path}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, f"{seq}\n".encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        directory = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


class RingSeqFile(CounterFile):
    """``<state_dir>/ringid_<nodeid>``: the highest ring seq this node has used."""

    what = "ring sequence number"

    def __init__(self, state_dir: str, nodeid: int) -> None:
        super().__init__(state_dir, nodeid, "ringid")


def next_boot_id(state_dir: str, nodeid: int, now_ns: int) -> int:
    """This start's boot id for the packet protection, made durable before it is used.

    It must exceed every earlier boot's (peers refuse an older boot, and a repeated one would
    repeat nonces under the same subkey): the wall clock in nanoseconds, unless the clock
    stepped back below the last boot id stored in ``<state_dir>/bootid_<nodeid>``, then one
    more than that."""
    stored = CounterFile(state_dir, nodeid, "bootid")
    boot = max(now_ns, stored.load() + 1)
    stored.save(boot)
    return boot


# --- systemd readiness ----------------------------------------------------------------------


def sd_notify(state: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``state`` (``READY=1``, ``STOPPING=1``) to systemd's ``$NOTIFY_SOCKET``, if any.

    The protocol is one datagram on a Unix socket; ``@`` starts an abstract-namespace name.
    Never blocks and never raises: readiness is advice to the service manager.
    """
    path = environ.get("NOTIFY_SOCKET")
    if not path or path[0] not in "/@":
        return False
    address = "\0" + path[1:] if path[0] == "@" else path
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode("utf-8"), address)
    except OSError:
        return False
    return True


# --- rate-limited drop log ------------------------------------------------------------------


class RateLimitedLog:
    """At most one line per ``interval`` seconds per reason; the next one counts the rest."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        clock: Callable[[], float],
        interval: float = DROP_LOG_INTERVAL_S,
    ) -> None:
        self._logger, self._level, self._clock, self._interval = logger, level, clock, interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        self.total = 0

    def __call__(self, key: str, line: str) -> None:
        """Log ``line`` unless a line of reason ``key`` went out less than ``interval`` ago."""
        self.total += 1
        if key not in self._last and len(self._last) >= DROP_REASONS_MAX:
            key = "other"
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        more = f" ({suppressed} similar suppressed)" if suppressed else ""
        self._logger.log(self._level, "%s%s", line, more)


# --- scheduling pauses ----------------------------------------------------------------------


class PauseMonitor:
    """Warns, in Corosync's words, when the event loop was not scheduled for most of a token."""

    def __init__(self, loop: asyncio.AbstractEventLoop, token_ms: int) -> None:
        self._loop = loop
        self._period = token_ms / 5000.0
        self._threshold = PAUSE_FRACTION * token_ms / 1000.0
        self._last = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self.pauses = 0

    def start(self) -> None:
        self._last = self._loop.time()
        self._handle = self._loop.call_later(self._period, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        now = self._loop.time()
        gap = now - self._last
        if gap > self._threshold:
            self.pauses += 1
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(time.time() - gap))
            main_log.warning(
                "Corosync main process was not scheduled (@%s) for %0.4f ms "
                "(threshold is %0.4f ms). Consider token timeout increase.",
                stamp,
                gap * 1000.0,
                self._threshold * 1000.0,
            )
        self._last = now
        self._handle = self._loop.call_later(self._period, self._tick)


# --- the runtime ----------------------------------------------------------------------------


FLUSH_ROUNDS_MAX = 4
"""Output rounds per wake-up: handing events up may queue messages (sync, held multicasts)
that the core emits at once; a bound keeps one wake-up from running unboundedly."""
EARLY_DELIVERY_BYTES: Final = 4096
"""A step whose events are only deliveries of at most this many bytes in all hands them up
before sending its datagrams (a lightly loaded ring: the self-delivery latency drops by the
time of the sends). Heavier steps send first, so a full token visit is never held back."""


def _light(events: Sequence[TotemEvent]) -> bool:
    total = 0
    for event in events:
        if type(event) is not Delivery:
            return False
        total += len(event.payload)
    return 0 < total <= EARLY_DELIVERY_BYTES


class CoreListener(Protocol):
    """What the Totem process hands up (the executive, :mod:`pycorosync.exec.executive`)."""

    def on_delivery(self, delivery: Delivery) -> None: ...

    def on_config_change(self, change: ConfigChange) -> None: ...

    def before_token(self) -> None:
        """A token is about to be handled: put the staged frames into the core's queue, so
        that they leave on this visit of the token."""
        ...

    def after_step(self) -> None:
        """Called before every output round: queue what waits for room."""
        ...


class TotemProcess:
    """One node's Totem core on an event loop; see the module docstring."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        core: TotemCore,
        transport: Transport,
        protection: PacketProtection,
        ring_seq: RingSeqFile,
        token_ms: int,
        notify: Callable[[str], object] = sd_notify,
        listener: CoreListener | None = None,
    ) -> None:
        self._loop = loop
        self._core = core
        self._net = transport
        self._protect = protection
        self._ring_seq = ring_seq
        self._notify = notify
        self._listener = listener
        self._now = loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline: float | None = None
        self._pause = PauseMonitor(loop, token_ms)
        self._rejected = RateLimitedLog(totem_log, logging.WARNING, loop.time)
        self._send_failed = RateLimitedLog(totem_log, logging.WARNING, loop.time)
        self._running = False
        self.ready = asyncio.Event()
        self.deliveries = 0
        self.own_dropped = 0
        self.rejected_packets = 0
        self.regular_configs: list[ConfigChange] = []

    # -- life cycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        for fd in self._net.filenos():
            self._loop.add_reader(fd, self._on_readable)
        self._pause.start()
        self._core.start(self._clock())
        self._flush()

    def shutdown(self) -> None:
        """Leave the ring (the others reconfigure at once) and stop handling anything."""
        if not self._running:
            return
        self._running = False
        for fd in self._net.filenos():
            self._loop.remove_reader(fd)
        self._pause.stop()
        self._cancel_timer()
        self._core.leave(self._clock())
        self._flush()

    # -- wake-ups --------------------------------------------------------------------------

    def _clock(self) -> float:
        now = max(self._loop.time(), self._now)
        self._now = now
        return now

    def _on_readable(self) -> None:
        batch = self._net.read_batch()
        payloads = self._open_all(batch)
        if payloads and self._running:
            self._step(payloads)

    def _open_all(self, batch: Sequence[Datagram]) -> list[bytes]:
        payloads = []
        open_packet, own = self._protect.open, self._net.nodeid
        for datagram in batch:
            try:
                sender, payload = open_packet(datagram.data)
            except CryptoError as error:
                host, port = datagram.source
                where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
                self.rejected_packets += 1
                self._rejected(error.kind, f"Packet from {where} rejected: {error.reason}")
                continue
            if sender == own:
                # Our own multicast looped back (udp): the core would ignore it; cheaper here.
                self.own_dropped += 1
                continue
            payloads.append(payload)
        return payloads

    def _on_timer(self) -> None:
        deadline = self._deadline
        self._timer = self._deadline = None
        if not self._running:
            return
        now = self._clock()
        if deadline is not None and now < deadline:
            # The loop rounds timers to milliseconds; run it at its deadline, not in a spin.
            now = self._now = deadline
        self._core.handle_timer(now)
        self._flush()

    def _on_self_token(self, data: bytes) -> None:
        if self._running:
            self._step([data])

    def _step(self, payloads: list[bytes]) -> None:
        if self._listener is not None and self._core.brings_token(payloads):
            self._listener.before_token()
        self._core.handle_datagrams(payloads, self._clock())
        self._flush()

    # -- one step's output -----------------------------------------------------------------

    def _flush(self) -> None:
        listener = self._listener
        core = self._core
        for _ in range(FLUSH_ROUNDS_MAX):
            if listener is not None:
                listener.after_step()
            deadline = core.next_deadline()
            if deadline is not None and deadline <= self._now:
                # Due already (a released token hold): run it in this wake-up, not after
                # another turn of the loop.
                core.handle_timer(self._now)
            sends, events = core.take_output()
            if not sends and not events:
                break
            self._handle(sends, events)
        if self._running:
            self._arm_timer()

    def flush(self) -> None:
        """Send what the core has to send now (after the executive queued messages)."""
        if self._running:
            self._flush()

    def _handle(self, sends: Sequence[Send], events: Sequence[TotemEvent]) -> None:
        # The ring seq is made durable before any datagram of the new ring leaves (hard part
        # 1); then the datagrams - the token above all - go before the events are handed up,
        # so that passing deliveries to the workers never delays the next hop of the token.
        # Except for a few small deliveries: handing those up costs less than the sends, and
        # the worker (on the other CPU) then runs beside them rather than after them.
        for event in events:
            if isinstance(event, PersistRingSeq):
                self._ring_seq.save(event.seq)
        if sends and _light(events):
            regular = self._hand_up(events)
            self._send_all(sends)
        else:
            self._send_all(sends)
            regular = self._hand_up(events)
        for change in regular:  # after the step's TOTEM lines ("A new membership ...")
            self._on_regular(change)

    def _hand_up(self, events: Sequence[TotemEvent]) -> list[ConfigChange]:
        return [change for event in events if (change := self._on_event(event)) is not None]

    def _send_all(self, sends: Sequence[Send]) -> None:
        stats = self._net.stats
        dropped = stats.tx_dropped
        for send in sends:
            self._send(send)
        if stats.tx_dropped > dropped:
            # Totem recovers from a lost datagram, but a send that keeps failing (no route,
            # a full buffer) would otherwise leave a ring that silently never forms.
            lost = stats.tx_dropped - dropped
            self._send_failed("send", f"Cannot send {lost} Totem datagram(s): {stats.tx_error}")

    def figures(self) -> dict[str, int]:
        """The figures the stats map shows (``stats.*`` key -> count)."""
        figures = {f"stats.srp.{name}": value for name, value in self._core.counters().items()}
        net = self._net.stats
        figures |= {
            "stats.pg.msg_queue_avail": self._core.room(),
            "stats.net.rx": net.rx,
            "stats.net.rx_unlisted": net.rx_unlisted,
            "stats.net.rx_own": net.rx_own + self.own_dropped,
            "stats.net.tx": net.tx,
            "stats.net.tx_dropped": net.tx_dropped,
            "stats.net.rx_rejected": self.rejected_packets,
            "stats.totem.deliveries": self.deliveries,
            "stats.totem.pauses_detected": self._pause.pauses,
        }
        return figures

    def replace_core(self, core: TotemCore) -> None:
        """Leave the ring with the current core and join again with ``core`` (a worker was
        restarted: every engine must resynchronise)."""
        if not self._running:
            return
        now = self._clock()
        self._core.leave(now)
        self._flush()
        self._core = core
        core.start(self._clock())
        self._flush()

    def _send(self, send: Send) -> None:
        if send.dest == self._net.nodeid:
            self._loop.call_soon(self._on_self_token, send.data)
            return
        packet = self._protect.seal(send.data)
        if send.dest is None:
            self._net.broadcast(packet)
        else:
            self._net.send(send.dest, packet)

    def _arm_timer(self) -> None:
        deadline = self._core.next_deadline()
        if deadline == self._deadline:
            return
        self._cancel_timer()
        if deadline is not None:
            self._deadline = deadline
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._deadline = None

    def _on_event(self, event: TotemEvent) -> ConfigChange | None:
        """Act on one event; a REGULAR configuration is returned, to handle after the rest."""
        if isinstance(event, PersistRingSeq):
            pass  # saved before the step's datagrams were sent
        elif isinstance(event, TotemLog):
            totem_log.log(event.level, "%s", event.text)
        elif isinstance(event, ConfigChange):
            if self._listener is not None:
                self._listener.on_config_change(event)
            return event if event.kind is ConfigKind.REGULAR else None
        else:
            self.deliveries += 1
            if self._listener is not None:
                self._listener.on_delivery(event)
        return None

    def _on_regular(self, change: ConfigChange) -> None:
        self.regular_configs.append(change)
        members = " ".join(str(nodeid) for nodeid in change.members)
        main_log.log(NOTICE, "Members[%d]: %s", len(change.members), members)
        if self._listener is None and not self.ready.is_set():
            # Without service engines there is no sync: the first ring is service.
            self.ready.set()
            main_log.log(NOTICE, "Completed service synchronization, ready to provide service.")
            self._notify("READY=1")
