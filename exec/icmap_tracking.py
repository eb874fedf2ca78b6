"""Change tracking for a cmap map: who wants to hear about which keys, and delivery.

A tracker is (key or prefix, :class:`TrackFlags`, callback) under an integer handle; handles
count up from 1 and are never reused. A change is announced to every tracker whose key equals
the changed key (or, with PREFIX, is a prefix of it) and whose flags include the event. The
callback gets ``(event, key, new entry or None, old entry or None)``.

Delivery rules, chosen so that every tracker sees a consistent history:

* Callbacks run in the order the trackers were added.
* A tracker hears exactly the changes applied after its ``track_add`` and before its
  ``track_delete`` — also when it is added or deleted from inside a callback.
* A change made from inside a callback is applied at once (``get`` sees it) but its
  announcements queue up behind those still in progress, so every tracker sees the changes
  in the order they were applied. Corosync nests them instead, which lets a tracker see a
  key's new value before the older change that preceded it.
* A callback that raises does not stop the others and cannot corrupt the map: the change is
  already applied. The exception goes to the map's ``on_callback_error`` hook (by default it
  is logged with its traceback on the ``pycorosync.CMAP`` logger); it is not raised from the
  ``set``/``delete`` that triggered it, because that change did succeed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pycorosync.lib.cmap_types import CmapEntry, TrackEvent, TrackFlags, check_track_flags
from pycorosync.lib.errors import BadHandleError, InvalidParamError

TrackCallback = Callable[[TrackEvent, str, CmapEntry | None, CmapEntry | None], None]

_log = logging.getLogger("pycorosync.CMAP")


@dataclass(frozen=True, slots=True)
class CallbackError:
    """A tracker callback raised while being told about a change."""

    handle: int
    event: TrackEvent
    key: str
    error: Exception


ErrorHook = Callable[[CallbackError], None]


def log_callback_error(failure: CallbackError) -> None:
    """The default ``on_callback_error``: log the failure with its traceback."""
    _log.error(
        "cmap tracker %d failed on %s of %s",
        failure.handle,
        failure.event.name,
        failure.key,
        exc_info=failure.error,
    )


@dataclass(frozen=True, slots=True)
class _Tracker:
    key: str
    flags: TrackFlags
    callback: TrackCallback


@dataclass(frozen=True, slots=True)
class _Announcement:
    event: TrackEvent
    key: str
    new: CmapEntry | None
    old: CmapEntry | None
    first_unborn: int
    """Trackers with this handle or above were added after the change: they do not hear it."""


class _KeyIndex:
    """Handles by exact key, and by prefix with the distinct prefix lengths to probe."""

    def __init__(self) -> None:
        self.handles: dict[str, dict[int, None]] = {}
        self.lengths: dict[int, int] = {}  # prefix length -> how many keys have it

    def add(self, key: str, handle: int) -> None:
        bucket = self.handles.setdefault(key, {})
        if not bucket:
            self.lengths[len(key)] = self.lengths.get(len(key), 0) + 1
        bucket[handle] = None

    def remove(self, key: str, handle: int) -> None:
        bucket = self.handles[key]
        del bucket[handle]
        if not bucket:
            del self.handles[key]
            self.lengths[len(key)] -= 1
            if not self.lengths[len(key)]:
                del self.lengths[len(key)]

    def exact(self, key: str) -> list[int]:
        return list(self.handles.get(key, ()))

    def prefixes_of(self, key: str) -> list[int]:
        # One dict probe per distinct prefix length: independent of the number of trackers.
        found: list[int] = []
        for length in self.lengths:
            if length <= len(key):
                found.extend(self.handles.get(key[:length], ()))
        return found


class Trackers:
    def __init__(self, on_callback_error: ErrorHook | None = None) -> None:
        self._on_error = on_callback_error or log_callback_error
        self._trackers: dict[int, _Tracker] = {}
        self._exact = _KeyIndex()
        self._prefix = _KeyIndex()
        self._next_handle = 1
        self._queue: deque[_Announcement] = deque()
        self._delivering = False

    def __len__(self) -> int:
        return len(self._trackers)

    def add(self, key_or_prefix: str, flags: int, callback: TrackCallback) -> int:
        if not isinstance(key_or_prefix, str):
            raise InvalidParamError(f"track key must be a str, not {type(key_or_prefix).__name__}")
        checked = check_track_flags(flags)
        if not callable(callback):
            raise InvalidParamError("track callback must be callable")
        handle = self._next_handle
        self._next_handle += 1
        self._trackers[handle] = _Tracker(key_or_prefix, checked, callback)
        self._index_for(checked).add(key_or_prefix, handle)
        return handle

    def delete(self, handle: int) -> None:
        tracker = self._trackers.pop(handle, None) if isinstance(handle, int) else None
        if tracker is None:
            raise BadHandleError(f"no tracker with handle {handle!r}")
        self._index_for(tracker.flags).remove(tracker.key, handle)

    def announce(
        self, event: TrackEvent, key: str, new: CmapEntry | None, old: CmapEntry | None
    ) -> None:
        """Tell the trackers about an applied change (queued if a delivery is under way)."""
        self._queue.append(_Announcement(event, key, new, old, self._next_handle))
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._queue:
                self._deliver(self._queue.popleft())
        finally:
            self._delivering = False

    def _index_for(self, flags: TrackFlags) -> _KeyIndex:
        return self._prefix if flags & TrackFlags.PREFIX else self._exact

    def _deliver(self, news: _Announcement) -> None:
        handles = self._exact.exact(news.key) + self._prefix.prefixes_of(news.key)
        for handle in sorted(h for h in handles if h < news.first_unborn):
            tracker = self._trackers.get(handle)  # None if deleted by an earlier callback
            if tracker is None or not tracker.flags & news.event:
                continue
            try:
                tracker.callback(news.event, news.key, news.new, news.old)
            except Exception as error:  # isolate trackers; reported through the hook
                self._on_error(CallbackError(handle, news.event, news.key, error))
