"""totempg: packing, fragmentation, process groups and service routing above Totem SRP.

Theory of operation
-------------------
SRP multicasts opaque *frames* of at most ``max_frame`` bytes, each AGREED or SAFE, and
delivers them to every member in one agreed order as ``(sender nodeid, frame, guarantee)``.
totempg turns that into a stream of *application messages* of up to
:data:`~pycorosync.exec.totem.pg_wire.MAX_MESSAGE_SIZE` bytes, addressed to named groups.

Sending (:class:`Packer`, one per lane). ``send`` appends a message to the *staged* frame. A
message that does not fit the staged frame's remainder but fits an empty frame closes the staged
frame and starts a new one (small messages are never split); a message larger than an empty
frame is fragmented: its first piece fills the staged frame's remainder, then whole frames
follow, and its last piece stays staged. A frame is emitted as soon as it is full, when a
message of the other guarantee arrives (the guarantee of a frame is the guarantee of all its
messages, so SAFE survives packing and fragmentation), or on :meth:`Packer.flush`, which the
integration calls when the token arrives so that latency stays one rotation at most. Before
touching any state ``send`` computes how many frames the message would occupy (those emitted
now plus the one left staged) and refuses the message - returning False, the would-block
answer - unless the SRP queue can take all of them: a message is never half sent.

Receiving (:class:`Unpacker`). Reassembly state is kept per (lane, sender). Each frame is
validated completely before any state changes, so a hostile frame is refused with a typed
:class:`~pycorosync.exec.totem.pg_wire.PgWireError` and leaves every sender's state, its own
included, as it was. A frame's first piece either starts a message (``continues`` = 0) or
continues the link the sender's previous frame announced. Anything else - a continuation whose
head was never seen, or a new message while one is unfinished - means a frame of the sender was
lost to us (it left the configuration, or its remainder was never delivered): the unfinished
message is dropped and the orphaned pieces are thrown away until that chain ends (*throw-away
mode*). Unlike Corosync, only the orphaned pieces are dropped, never the complete messages that
share their frame. A half message is therefore never delivered and never joined to another.
Pieces are copied into the sender's buffer, so its memory is the message's size however it was
framed (a chain of one-byte pieces cannot amplify it), and never more than
``MAX_PACKED_MESSAGE`` bytes (checked before appending); the frame being parsed is the only
other memory, hence "max message + one frame".

Back-pressure: the would-block answer is only honest if the message can fit one day, so a
packer told its queue's total size refuses a message needing more frames with ``TooBigError``.

Configuration changes: when a TRANSITIONAL configuration reports members that left,
their unfinished messages are discarded in both lanes; EVS guarantees nothing more from them is
delivered until they rejoin, and a rejoined sender starts with a fresh message.

Lanes (hard part 4). Sync traffic and application traffic are packed separately and each frame
carries its lane in its header, so the two lanes have separate reassembly state that is chosen
by the frame, not by the receiver's mode. Corosync instead switches buffers when the sync round
starts and must do so only after the recovered old-ring messages are delivered, or it corrupts
half-assembled fragments; with the lane on the wire that ordering hazard does not exist - an
old-ring application fragment always lands in the application buffer. The integration keeps
sync frames ahead of application frames by giving each lane's packer its own SRP queue.

Groups. Every application message carries one or more group names; :class:`TotemPg` delivers it
once to every joined group it names (in the message's order, each group once). Service routing
(:class:`ServiceRouter`) reads the service header inside the payload so the executive can hand
each message to the engine with that service id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from pycorosync.exec.totem.events import ConfigChange, ConfigKind, Guarantee
from pycorosync.exec.totem.pg_wire import (
    FRAME_HEADER_SIZE,
    MAX_LINK_ID,
    MAX_PACKED_MESSAGE,
    PIECE_LENGTH_SIZE,
    MalformedServiceHeaderError,
    OversizeMessageError,
    PgWireError,
    ServiceMessage,
    check_group_name,
    decode_frame,
    decode_groups,
    decode_service,
    encode_frame,
    encode_groups,
    validate_max_frame,
)
from pycorosync.lib.errors import InvalidParamError, TooBigError

MulticastFn = Callable[[bytes, Guarantee], bool]
"""SRP's multicast: queue one frame; False means "would block" (the queue is full)."""
RoomFn = Callable[[], int]
"""How many more frames SRP's queue accepts right now."""


class Lane(IntEnum):
    APP = 0
    SYNC = 1


class FrameSinkError(RuntimeError):
    """The frame queue refused a frame after its room query promised space (integration bug)."""


@dataclass(frozen=True, slots=True)
class PgMessage:
    """One reassembled message as it came off the wire (group header still in front)."""

    sender: int
    lane: Lane
    guarantee: Guarantee
    data: bytes


class Packer:
    """Packs and fragments one lane's messages into frames and pushes them to SRP.

    ``mcast`` queues a frame in SRP; ``room`` says how many frames it accepts now. ``send``
    calls ``mcast`` only for frames ``room`` made space for, and treats a refusal as a broken
    promise (:class:`FrameSinkError`). With ``queue_size`` (the most frames the queue can ever
    hold) a message that could never fit is refused with ``TooBigError`` instead of a "would
    block" that would last forever (Corosync's ``totempg_size_limit``).
    """

    def __init__(
        self,
        *,
        max_frame: int,
        mcast: MulticastFn,
        room: RoomFn,
        lane: Lane,
        queue_size: int | None = None,
    ) -> None:
        validate_max_frame(max_frame)
        if queue_size is not None and queue_size < 1:
            raise InvalidParamError(f"queue_size {queue_size} must be at least 1")
        self._queue_size = queue_size
        self._max_frame = max_frame
        self._full = max_frame - FRAME_HEADER_SIZE - PIECE_LENGTH_SIZE
        self._mcast = mcast
        self._room = room
        self._sync_lane = lane is Lane.SYNC
        self._pieces: list[bytes | memoryview] = []
        self._lengths: list[int] = []
        self._used = 0
        self._continues = 0
        self._guarantee = Guarantee.AGREED
        self._last_link = 0

    @property
    def staged(self) -> bool:
        """Whether a partly filled frame waits for :meth:`flush`."""
        return bool(self._pieces)

    def frames_needed(self, size: int, guarantee: Guarantee) -> int:
        """Frames that sending a ``size``-byte message would emit now or leave staged."""
        closed = 0
        count, used = len(self._pieces), self._used
        if count and guarantee != self._guarantee:
            closed, count, used = 1, 0, 0
        room = self._piece_room(count, used)
        if size <= room:
            return closed + 1
        if size <= self._full:
            return closed + 2
        rest = size - room
        return closed + 1 + -(-rest // self._full)

    def send(
        self, message: bytes | bytearray | memoryview, guarantee: Guarantee = Guarantee.AGREED
    ) -> bool:
        """Queue ``message``; False (nothing changed) if SRP cannot take all its frames now."""
        pieces = self._pieces
        if type(message) is bytes and pieces and guarantee == self._guarantee:
            # The common case under load: it fits the staged frame, which needs one slot.
            size = len(message)
            if 0 < size <= self._piece_room(len(pieces), self._used):
                if self._room() < 1:
                    return False
                self._stage(message)
                return True
        if not isinstance(message, bytes):
            message = bytes(message)  # staged pieces are views: they must not change under us
        size = len(message)
        if size == 0:
            raise InvalidParamError("empty message")
        if size > MAX_PACKED_MESSAGE:
            raise TooBigError(f"message of {size} bytes exceeds {MAX_PACKED_MESSAGE}")
        alone = -(-size // self._full)
        if self._queue_size is not None and alone > self._queue_size:
            raise TooBigError(
                f"message of {size} bytes needs {alone} frames, the queue holds {self._queue_size}"
            )
        if self.frames_needed(size, guarantee) > self._room():
            return False
        if self._pieces and guarantee != self._guarantee:
            self._emit(link=0)
        self._guarantee = guarantee
        room = self._piece_room(len(self._pieces), self._used)
        last: bytes | memoryview = message
        if room < size <= self._full:
            self._emit(link=0)
        elif size > room:
            # Slices of the caller's bytes (immutable), so staging them copies nothing.
            last = self._send_fragments(memoryview(message), room)
        self._stage(last)
        return True

    def flush(self) -> bool:
        """Emit the staged frame; False if SRP has no room (it stays staged)."""
        if not self._pieces:
            return True
        if self._room() < 1:
            return False
        return self._emit(link=0, promised=False)

    def _send_fragments(self, view: memoryview, room: int) -> memoryview:
        """Emit every frame of a large message but the last; return the last piece."""
        offset = 0
        while len(view) - offset > room:
            self._pieces.append(view[offset : offset + room])
            self._lengths.append(room)
            offset += room
            self._emit(link=self._new_link())
            room = self._full
        return view[offset:]

    def _stage(self, piece: bytes | memoryview) -> None:
        self._pieces.append(piece)
        self._lengths.append(len(piece))
        self._used += len(piece)
        if self._piece_room(len(self._pieces), self._used) < 1:
            self._emit(link=0)

    def _piece_room(self, count: int, used: int) -> int:
        """Data bytes a new piece may have in a frame holding ``count`` pieces of ``used``."""
        return self._max_frame - FRAME_HEADER_SIZE - PIECE_LENGTH_SIZE * (count + 1) - used

    def _new_link(self) -> int:
        self._last_link = self._last_link % MAX_LINK_ID + 1
        return self._last_link

    def _emit(self, *, link: int, promised: bool = True) -> bool:
        frame = encode_frame(
            sync_lane=self._sync_lane,
            continues=self._continues,
            link=link,
            lengths=self._lengths,
            pieces=self._pieces,
        )
        if not self._mcast(frame, self._guarantee):
            if promised:
                raise FrameSinkError("SRP refused a frame its room query made space for")
            return False
        self._pieces = []
        self._lengths = []
        self._used = 0
        self._continues = link
        return True


@dataclass(slots=True)
class ReassemblyStats:
    """What reassembly had to drop, for the log (each counts one event)."""

    rejected_frames: int = 0
    """Frames refused as malformed or oversize."""
    orphaned_pieces: int = 0
    """Continuation pieces whose message head was never received (throw-away mode)."""
    abandoned_messages: int = 0
    """Unfinished messages dropped because their sender's next frame did not continue them."""
    departed_messages: int = 0
    """Unfinished messages dropped because their sender left the configuration."""


@dataclass(slots=True)
class _Assembly:
    """One sender's unfinished message in one lane."""

    buffer: bytearray = field(default_factory=bytearray)
    """The pieces so far, copied: memory stays the message's size, whatever the frames were."""
    expect: int = 0
    """Link id the next frame must continue; 0 when no message is unfinished."""
    discarding: bool = False
    """The unfinished message lost its head: its pieces are thrown away."""

    @property
    def size(self) -> int:
        return len(self.buffer)

    def clear(self) -> None:
        self.buffer = bytearray()
        self.expect = 0
        self.discarding = False


class Unpacker:
    """Reassembles frames into messages, per lane and per sender."""

    def __init__(self, *, max_frame: int) -> None:
        validate_max_frame(max_frame)
        self._max_frame = max_frame
        self._lanes: tuple[dict[int, _Assembly], dict[int, _Assembly]] = ({}, {})
        self.stats = ReassemblyStats()

    def receive(
        self, sender: int, frame: bytes | bytearray | memoryview, guarantee: Guarantee
    ) -> list[PgMessage]:
        """The messages ``frame`` completes, in order; raise PgWireError for a bad frame."""
        lane, completed = self.receive_data(sender, frame)
        return [PgMessage(sender, lane, guarantee, data) for data in completed]

    def receive_data(
        self, sender: int, frame: bytes | bytearray | memoryview
    ) -> tuple[Lane, list[bytes]]:
        """:meth:`receive` as the frame's lane and its completed messages' bytes: what a
        frame's messages share is not repeated for each (the delivery hot path)."""
        if not isinstance(frame, bytes):
            frame = bytes(frame)  # a receive buffer may be reused once we return
        try:
            layout = decode_frame(frame, self._max_frame)
        except PgWireError:
            self.stats.rejected_frames += 1
            raise
        lane = Lane.SYNC if layout.sync_lane else Lane.APP
        assembly = self._lanes[lane].setdefault(sender, _Assembly())
        self._check_bound(assembly, layout.continues, layout.lengths[0])
        lengths = layout.lengths
        view = memoryview(frame)
        offset = layout.data_offset
        last = len(lengths) - 1
        completed: list[bytes] = []
        for index, length in enumerate(lengths):
            piece = view[offset : offset + length]
            offset += length
            if index == 0:
                self._begin(assembly, layout.continues)
            if index == last and layout.link:
                self._append(assembly, piece, layout.link)
            elif index == 0:
                self._complete(assembly, piece, completed)
            else:
                completed.append(piece.tobytes())
        return lane, completed

    def members_left(self, left: Iterable[int]) -> None:
        """Discard the unfinished messages of nodes that left the configuration."""
        for node in left:
            for lane in self._lanes:
                assembly = lane.pop(node, None)
                if assembly is not None and assembly.expect:
                    self.stats.departed_messages += 1

    def reset_lane(self, lane: Lane) -> None:
        """Forget every unfinished message of ``lane`` (e.g. an aborted sync round).

        Every node must do it at the same point of the agreed stream (on a configuration
        change), or their reassembly states diverge.
        """
        self._lanes[lane].clear()

    def unfinished(self, lane: Lane) -> dict[int, int]:
        """Bytes held per sender for unfinished messages of ``lane`` (for bounds and tests)."""
        return {node: a.size for node, a in self._lanes[lane].items() if a.expect}

    def _check_bound(self, assembly: _Assembly, continues: int, first: int) -> None:
        joins = continues and continues == assembly.expect and not assembly.discarding
        if joins and assembly.size + first > MAX_PACKED_MESSAGE:
            self.stats.rejected_frames += 1
            raise OversizeMessageError(
                f"fragment chain grows beyond {MAX_PACKED_MESSAGE} bytes; frame refused"
            )

    def _begin(self, assembly: _Assembly, continues: int) -> None:
        """Match the frame's first piece against the sender's unfinished message."""
        if continues and continues == assembly.expect:
            return
        if assembly.expect:
            self.stats.abandoned_messages += not assembly.discarding
            assembly.clear()
        if continues:
            self.stats.orphaned_pieces += 1
            assembly.discarding = True

    def _append(self, assembly: _Assembly, piece: memoryview, link: int) -> None:
        """``piece`` continues in the next frame, through ``link``."""
        if assembly.expect == 0 and not assembly.discarding:
            assembly.clear()
        if assembly.discarding:
            self.stats.orphaned_pieces += bool(assembly.expect)
        else:
            assembly.buffer += piece
        assembly.expect = link

    def _complete(self, assembly: _Assembly, piece: memoryview, out: list[bytes]) -> None:
        """``piece`` ends the message the frame's first piece belongs to."""
        if assembly.discarding:
            self.stats.orphaned_pieces += bool(assembly.expect)
        elif assembly.buffer:
            assembly.buffer += piece
            out.append(bytes(assembly.buffer))
        else:
            out.append(piece.tobytes())
        assembly.clear()


@dataclass(frozen=True, slots=True)
class FrameOutlet:
    """One SRP queue as a packer sees it."""

    mcast: MulticastFn
    room: RoomFn
    queue_size: int | None = None
    """The most frames the queue can ever hold, if bounded (see :class:`Packer`)."""


@dataclass(frozen=True, slots=True)
class GroupDelivery:
    """A message handed to one joined group."""

    group: bytes
    sender: int
    lane: Lane
    guarantee: Guarantee
    payload: bytes


class TotemPg:
    """The totempg facade: group multicast and delivery over two lanes.

    ``deliver`` raises :class:`~pycorosync.exec.totem.pg_wire.PgWireError` for a frame that
    does not decode. A reassembled message whose group header does not decode is dropped and
    counted in ``malformed_messages`` instead, so the good messages of its frame still arrive.
    """

    def __init__(self, *, max_frame: int, app: FrameOutlet, sync: FrameOutlet) -> None:
        self._packers = (
            _packer(max_frame, app, Lane.APP),
            _packer(max_frame, sync, Lane.SYNC),
        )
        self.unpacker = Unpacker(max_frame=max_frame)
        self._joined: set[bytes] = set()
        self.malformed_messages = 0
        """Reassembled messages dropped because their group header did not decode."""

    @property
    def joined(self) -> frozenset[bytes]:
        return frozenset(self._joined)

    def join(self, group: bytes) -> None:
        check_group_name(group)
        self._joined.add(group)

    def leave(self, group: bytes) -> None:
        self._joined.discard(group)

    def mcast(
        self,
        groups: Sequence[bytes],
        payload: bytes,
        *,
        guarantee: Guarantee = Guarantee.AGREED,
        lane: Lane = Lane.APP,
    ) -> bool:
        """Multicast ``payload`` to ``groups``; False means "try again" (queue full)."""
        return self._packers[lane].send(encode_groups(groups, payload), guarantee)

    def mcast_with_header(
        self,
        header: bytes,
        payload: bytes,
        *,
        guarantee: Guarantee = Guarantee.AGREED,
        lane: Lane = Lane.APP,
    ) -> bool:
        """:meth:`mcast` with the group header made once by ``encode_groups(groups, b"")``
        (checked there), for a caller that sends to the same groups every time."""
        return self._packers[lane].send(header + payload, guarantee)

    def flush(self) -> bool:
        """Emit both lanes' staged frames, sync first; False if one had to stay staged."""
        sync_done = self._packers[Lane.SYNC].flush()
        return self._packers[Lane.APP].flush() and sync_done

    def deliver(self, sender: int, frame: bytes, guarantee: Guarantee) -> list[GroupDelivery]:
        """The group deliveries one SRP delivery yields, in order."""
        lane, messages = self.unpacker.receive_data(sender, frame)
        return [
            GroupDelivery(group, sender, lane, guarantee, payload)
            for group, payload in self._to_groups(messages)
        ]

    def deliver_payloads(self, sender: int, frame: bytes) -> list[tuple[bytes, bytes]]:
        """:meth:`deliver` as ``(group, payload)`` pairs, with no object per delivery: what
        the executive routes (sender, lane and guarantee are the frame's)."""
        return self._to_groups(self.unpacker.receive_data(sender, frame)[1])

    def config_change(self, change: ConfigChange) -> None:
        """Feed every configuration change in delivery order."""
        if change.kind is ConfigKind.TRANSITIONAL and change.left:
            self.unpacker.members_left(change.left)

    def _to_groups(self, messages: list[bytes]) -> list[tuple[bytes, bytes]]:
        """``(group, payload)`` for every joined group each message names, each group once."""
        out: list[tuple[bytes, bytes]] = []
        joined = self._joined
        for data in messages:
            try:
                groups, offset = decode_groups(data)
            except ValueError:
                # Counted rather than raised: the frame's other messages are good and in order.
                self.malformed_messages += 1
                continue
            payload = data[offset:]
            if len(groups) == 1:  # the common case: one group, no duplicates to skip
                if groups[0] in joined:
                    out.append((groups[0], payload))
                continue
            seen: set[bytes] = set()
            for group in groups:
                if group in joined and group not in seen:
                    seen.add(group)
                    out.append((group, payload))
        return out


def _packer(max_frame: int, outlet: FrameOutlet, lane: Lane) -> Packer:
    return Packer(
        max_frame=max_frame,
        mcast=outlet.mcast,
        room=outlet.room,
        lane=lane,
        queue_size=outlet.queue_size,
    )


class UnknownServiceError(MalformedServiceHeaderError):
    """A message for a service id no engine registered."""


class ServiceRouter:
    """Routes executive messages (the payload of group ``a``) by service id, as main.c does."""

    def __init__(self) -> None:
        self._functions: dict[int, int] = {}

    def register(self, service: int, function_count: int) -> None:
        if service in self._functions:
            raise InvalidParamError(f"service {service} registered twice")
        if function_count < 1:
            raise InvalidParamError("a service needs at least one exec function")
        self._functions[service] = function_count

    def unregister(self, service: int) -> None:
        self._functions.pop(service, None)

    def route(self, payload: bytes) -> ServiceMessage:
        """Decode ``payload``; raise for an unknown service or function (the caller logs it)."""
        message = decode_service(payload)
        count = self._functions.get(message.service)
        if count is None:
            raise UnknownServiceError(f"discarded message for unknown service {message.service}")
        if message.function >= count:
            raise UnknownServiceError(
                f"discarded unknown message {message.function} for service {message.service} "
                f"(max id {count - 1})"
            )
        return message
