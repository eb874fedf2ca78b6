"""The cmap store: the executive's configuration database (Corosync's icmap), sans-IO.

Theory of operation. The Totem process owns the one :class:`CmapStore` of a node (DESIGN.md):
the parsed configuration, the ``runtime.*`` figures and the keys it reacts to. It is a flat
map from key name to a typed :class:`CmapEntry`, with Corosync's rules:

* **set** validates the value for its type (``InvalidParamError``) and, only when it creates a
  key, the key name (``NameTooLongError`` for any bad name, as Corosync answers). Setting an
  identical (type, value) changes nothing and announces nothing; a different value or type
  replaces the entry (MODIFY).
* **delete** of a missing key is ``NotExistError``.
* **adjust** (cmap's inc/dec) adds a step to an integer entry, wrapping around in the stored
  width; a missing key is ``NotExistError``, a non-integer one ``InvalidParamError``.
* **Read-only keys** (exact names or prefixes, :func:`install_default_ro_keys`) refuse
  ``set``/``delete``/``adjust`` with ``AccessError`` only on the client path
  (``check_ro=True``, checked first); the executive's own calls bypass them, as icmap's do.
* **iter_prefix** is byte-wise sorted and live; **tracking** announces ADD/MODIFY/DELETE to
  trackers on a key or prefix (:mod:`pycorosync.exec.icmap_map`,
  :mod:`pycorosync.exec.icmap_tracking`).

Every applied change gets the next sequence number and is described by a :class:`CmapChange`.
With ``record_changes=True`` the store keeps them, in order, until :meth:`CmapStore.take_changes`
hands them over; the shell sends them (encoded with :func:`encode_change`) to the workers,
whose :class:`CmapReplica` applies them. A new worker gets :meth:`CmapStore.snapshot` taken
right after the pending changes were handed out; its ``seq`` is where that worker's change
stream continues. The store does no I/O and reads no clock.

Complexity: ``get`` and modifying ``set`` are dict operations; creating or deleting a key adds
O(log n) comparisons in the sorted index; ``iter_prefix`` starts with a bisection and costs
O(1) per key yielded while the map does not change shape.
"""

from __future__ import annotations

from pycorosync.exec.icmap_map import CmapMap, check_key_type
from pycorosync.exec.icmap_records import (
    CmapChange,
    CmapRecordError,
    CmapSnapshot,
    decode_change,
    decode_snapshot,
    encode_change,
    encode_snapshot,
)
from pycorosync.exec.icmap_replica import CmapReplica
from pycorosync.exec.icmap_tracking import CallbackError, ErrorHook, TrackCallback
from pycorosync.lib.cmap_types import (
    CmapEntry,
    CmapValue,
    TrackEvent,
    TrackFlags,
    ValueType,
    check_key_name,
)
from pycorosync.lib.errors import AccessError, InvalidParamError

__all__ = [
    "DEFAULT_RO_KEYS",
    "DEFAULT_RO_PREFIXES",
    "CallbackError",
    "CmapChange",
    "CmapEntry",
    "CmapRecordError",
    "CmapReplica",
    "CmapSnapshot",
    "CmapStore",
    "ErrorHook",
    "TrackCallback",
    "TrackEvent",
    "TrackFlags",
    "decode_change",
    "decode_snapshot",
    "encode_change",
    "encode_snapshot",
    "install_default_ro_keys",
]

DEFAULT_RO_PREFIXES = (
    "internal_configuration.",
    "runtime.services.",
    "runtime.config.",
    "runtime.totem.",
    "uidgid.config.",
    "system.",
    "nodelist.",
)
"""Prefixes Corosync makes read-only for clients (exec/main.c ``set_icmap_ro_keys_flag``)."""

DEFAULT_RO_KEYS = (
    "totem.crypto_cipher",
    "totem.crypto_hash",
    "totem.crypto_model",
    "totem.keyfile",
    "totem.key",
    "totem.secauth",
    "totem.ip_version",
    "totem.ip_dscp",
    "totem.transport",
    "totem.cluster_name",
    "totem.netmtu",
    "totem.threads",
    "totem.version",
    "totem.nodeid",
    "totem.clear_node_high_bit",
    "config.reload_in_progress",
    "config.totemconfig_reload_in_progress",
    "quorum.allow_downscale",
    "quorum.wait_for_all",
    "quorum.last_man_standing",
    "quorum.last_man_standing_window",
    "quorum.expected_votes_tracking",
    "quorum.auto_tie_breaker",
    "quorum.auto_tie_breaker_node",
    "nodelist.local_node_pos",
)
"""Exact keys Corosync makes read-only (main.c, votequorum.c, totemconfig.c)."""


class CmapStore(CmapMap):
    def __init__(
        self, *, record_changes: bool = False, on_callback_error: ErrorHook | None = None
    ) -> None:
        super().__init__(on_callback_error=on_callback_error)
        self._outbox: list[CmapChange] | None = [] if record_changes else None
        self._ro_keys: set[str] = set()
        self._ro_prefixes: set[str] = set()
        self._ro_prefix_lengths: set[int] = set()

    def set(self, key: str, value: CmapValue, vtype: ValueType, *, check_ro: bool = False) -> None:
        self._refuse_if_ro(key, check_ro)
        entry = CmapEntry(vtype, value)
        old = self._entries.get(key)
        if old is None:
            check_key_name(key)
            self._commit(self._next_change(TrackEvent.ADD, key, entry))
        elif old != entry:
            self._commit(self._next_change(TrackEvent.MODIFY, key, entry))

    def delete(self, key: str, *, check_ro: bool = False) -> None:
        self._refuse_if_ro(key, check_ro)
        self.get(key)  # NotExistError
        self._commit(self._next_change(TrackEvent.DELETE, key, None))

    def adjust(self, key: str, step: int, *, check_ro: bool = False) -> None:
        """Add ``step`` (negative to decrement) to an integer entry, wrapping in its width."""
        self._refuse_if_ro(key, check_ro)
        old = self.get(key)
        if isinstance(step, bool) or not isinstance(step, int):
            raise InvalidParamError(f"adjust step must be an integer, not {type(step).__name__}")
        if not isinstance(old.value, int):
            raise InvalidParamError(f"cannot adjust {key!r}: it holds a {old.vtype.name}")
        low, high = old.vtype.integer_range
        wrapped = (old.value + step - low) % (high - low + 1) + low
        self.set(key, wrapped, old.vtype)

    def set_ro(self, key_or_prefix: str, *, prefix: bool = False) -> None:
        """Make a key, or every key under a prefix, read-only for the client path."""
        if not isinstance(key_or_prefix, str):
            raise InvalidParamError("a read-only key or prefix must be a str")
        if prefix:
            self._ro_prefixes.add(key_or_prefix)
            self._ro_prefix_lengths.add(len(key_or_prefix))
        else:
            self._ro_keys.add(key_or_prefix)

    def is_ro(self, key: str) -> bool:
        check_key_type(key)
        if key in self._ro_keys:
            return True
        return any(
            key[:length] in self._ro_prefixes
            for length in self._ro_prefix_lengths
            if length <= len(key)
        )

    def take_changes(self) -> list[CmapChange]:
        """The changes applied since the last call, oldest first (``record_changes=True``)."""
        if self._outbox is None:
            raise InvalidParamError("this store does not record changes")
        changes, self._outbox = self._outbox, []
        return changes

    def _refuse_if_ro(self, key: str, check_ro: bool) -> None:
        check_key_type(key)
        if check_ro and self.is_ro(key):
            raise AccessError(f"key {key!r} is read-only")

    def _next_change(self, op: TrackEvent, key: str, entry: CmapEntry | None) -> CmapChange:
        return CmapChange(op, key, entry, self._seq + 1)

    def _commit(self, change: CmapChange) -> None:
        old = self._mutate(change)
        if self._outbox is not None:
            self._outbox.append(change)
        self._announce(change, old)


def install_default_ro_keys(store: CmapStore) -> None:
    """Mark Corosync's read-only keys and prefixes (services-notes §2.4) on ``store``."""
    for prefix in DEFAULT_RO_PREFIXES:
        store.set_ro(prefix, prefix=True)
    for key in DEFAULT_RO_KEYS:
        store.set_ro(key)
