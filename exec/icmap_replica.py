"""A worker's read-only copy of the cmap store, kept current by the store's change records.

The replica starts from a snapshot and applies changes strictly in sequence. A change that
does not follow on — wrong ``seq``, an ADD of a key it already has, a MODIFY or DELETE of one
it lacks — is refused with :class:`CmapRecordError` and leaves the replica untouched: it means
the replica and the store disagree, and the owner must rebuild it from a fresh snapshot.
Applying a change fires the same tracker events the store fired for it.
"""

from __future__ import annotations

from pycorosync.exec.icmap_map import CmapMap
from pycorosync.exec.icmap_records import CmapChange, CmapRecordError, CmapSnapshot
from pycorosync.exec.icmap_tracking import ErrorHook
from pycorosync.lib.cmap_types import TrackEvent


class CmapReplica(CmapMap):
    @classmethod
    def from_snapshot(
        cls, snapshot: CmapSnapshot, *, on_callback_error: ErrorHook | None = None
    ) -> CmapReplica:
        if not isinstance(snapshot, CmapSnapshot):
            raise CmapRecordError("a replica starts from a CmapSnapshot")
        replica = cls(on_callback_error=on_callback_error)
        replica._load(snapshot)
        return replica

    def apply(self, change: CmapChange) -> None:
        self._check_follows_on(change)
        old = self._mutate(change)
        self._announce(change, old)

    def _check_follows_on(self, change: CmapChange) -> None:
        if not isinstance(change, CmapChange):
            raise CmapRecordError(f"not a CmapChange: {type(change).__name__}")
        if change.seq != self._seq + 1:
            raise CmapRecordError(f"change {change.seq} does not follow change {self._seq}")
        present = change.key in self._entries
        if present != (change.op is not TrackEvent.ADD):
            state = "has" if present else "lacks"
            raise CmapRecordError(
                f"change {change.seq} is an {change.op.name} of {change.key!r}, "
                f"which the replica {state}"
            )
        if change.op is TrackEvent.MODIFY and self._entries[change.key] == change.entry:
            raise CmapRecordError(f"change {change.seq} modifies {change.key!r} to its own value")
