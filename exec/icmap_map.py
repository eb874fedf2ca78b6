"""The read side shared by the cmap store and its replicas: entries, order, tracking.

Entries live in a dict (O(1) ``get``) beside a :class:`SortedKeys` index for ordered prefix
scans. Both the store and a replica change the map only through :meth:`CmapMap._mutate`
followed by :meth:`CmapMap._announce`, so the two fire the same tracker events for the same
change.

Iteration is *live*, not a snapshot, as Corosync's trie iterator is: ``iter_prefix`` yields
each key with its entry as of the moment it is yielded, in byte-wise order, and keeps going
correctly while the map changes (see :mod:`pycorosync.exec.sorted_keys`). Live because the
cmap engine keeps a client's iteration open across many requests and a snapshot would cost
a copy per client for as long as it pleases; because cfg reload deletes keys while it walks
them; and because a slow iterating client should not be shown values that no longer exist.
"""

from __future__ import annotations

from collections.abc import Iterator

from pycorosync.exec.icmap_records import CmapChange, CmapSnapshot
from pycorosync.exec.icmap_tracking import ErrorHook, TrackCallback, Trackers
from pycorosync.exec.sorted_keys import SortedKeys
from pycorosync.lib.cmap_types import CmapEntry, TrackFlags
from pycorosync.lib.errors import InvalidParamError, NotExistError


class CmapMap:
    def __init__(self, *, on_callback_error: ErrorHook | None = None) -> None:
        self._entries: dict[str, CmapEntry] = {}
        self._keys = SortedKeys()
        self._trackers = Trackers(on_callback_error)
        self._seq = 0

    @property
    def seq(self) -> int:
        """Number of the last change applied (0 for a map that never changed)."""
        return self._seq

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._entries

    def get(self, key: str) -> CmapEntry:
        check_key_type(key)
        try:
            return self._entries[key]
        except KeyError:
            raise NotExistError(f"key {key!r} does not exist") from None

    def iter_prefix(self, prefix: str = "") -> Iterator[tuple[str, CmapEntry]]:
        """Keys starting with ``prefix`` (all keys for ``""``) and their entries, byte-wise
        sorted, live (see the module docstring)."""
        check_key_type(prefix, "prefix")
        return self._scan(prefix)

    def snapshot(self) -> CmapSnapshot:
        return CmapSnapshot(self._seq, tuple(self._scan("")))

    def track_add(self, key_or_prefix: str, flags: TrackFlags, callback: TrackCallback) -> int:
        return self._trackers.add(key_or_prefix, flags, callback)

    def track_delete(self, handle: int) -> None:
        self._trackers.delete(handle)

    def _scan(self, prefix: str) -> Iterator[tuple[str, CmapEntry]]:
        for key in self._keys.iter_from(prefix):
            if not key.startswith(prefix):
                return
            yield key, self._entries[key]

    def _load(self, snapshot: CmapSnapshot) -> None:
        for key, entry in snapshot.entries:
            self._entries[key] = entry
            self._keys.add(key)
        self._seq = snapshot.seq

    def _mutate(self, change: CmapChange) -> CmapEntry | None:
        """Apply an already validated change; return the entry it replaced."""
        old = self._entries.get(change.key)
        if change.entry is None:
            del self._entries[change.key]
            self._keys.remove(change.key)
        else:
            if old is None:
                self._keys.add(change.key)
            self._entries[change.key] = change.entry
        self._seq = change.seq
        return old

    def _announce(self, change: CmapChange, old: CmapEntry | None) -> None:
        self._trackers.announce(change.op, change.key, change.entry, old)


def check_key_type(key: object, what: str = "key name") -> None:
    if not isinstance(key, str):
        raise InvalidParamError(f"{what} must be a str, not {type(key).__name__}")
