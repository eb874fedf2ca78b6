"""The owner's side of a cmap write: apply one worker's write to the store, sans-IO.

Theory of operation. The Totem process owns the cmap store (DESIGN.md); engines and their
clients in the workers write to it by sending a :data:`CmapWrite` over the worker → Totem
ring. The Totem process applies the writes one at a time, in the order they arrive, with
:func:`apply_write`, and then

* sends the result code back to the worker that asked (:mod:`pycorosync.exec.cmap_owner_wire`
  encodes both), and
* fans the change records out to every worker's replica, the asking one included, *before*
  the result, so that a client that is told ``CS_OK`` reads its own write from its replica.

A write from a worker is always checked as a client write: read-only keys refuse it with
``CS_ERR_ACCESS``. Workers host third-party code, and the keys marked read-only (the
nodelist, the crypto settings, ...) are the ones the Totem process acts on; only the Totem
process itself writes them, directly on the store. The other checks are the store's own,
Corosync's: ``CS_ERR_NAME_TOO_LONG`` for a bad new key name, ``CS_ERR_INVALID_PARAM`` for a
value that does not fit its type or an inc/dec of a non-integer, ``CS_ERR_NOT_EXIST`` for a
delete or inc/dec of a missing key. A refused write changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pycorosync.exec.icmap import CmapStore
from pycorosync.exec.icmap_records import CmapChange
from pycorosync.lib.cmap_types import (
    CmapEntry,
    CmapValue,
    TrackEvent,
    ValueType,
    check_key_name,
)
from pycorosync.lib.errors import CsError, CsErrorCode, cs_strerror

_refusals = logging.getLogger("pycorosync.CMAP")

__all__ = ["CmapAdjust", "CmapDelete", "CmapSet", "CmapWrite", "apply_write"]


@dataclass(frozen=True, slots=True)
class CmapSet:
    """Set ``key`` to ``value`` of type ``vtype`` (validated where it is applied)."""

    key: str
    value: CmapValue
    vtype: ValueType


@dataclass(frozen=True, slots=True)
class CmapDelete:
    """Delete ``key``."""

    key: str


@dataclass(frozen=True, slots=True)
class CmapAdjust:
    """Add ``delta`` to an integer key, wrapping in its width (cmap's inc = +1, dec = -1)."""

    key: str
    delta: int


CmapWrite = CmapSet | CmapDelete | CmapAdjust
"""One write a worker asks the owner of the cmap store to apply."""


def apply_write(store: CmapStore, write: CmapWrite) -> tuple[CsErrorCode, list[CmapChange]]:
    """Apply ``write`` to ``store`` with the client checks; return the result code and the
    change records it caused (none when refused or when it changed nothing).

    The records are built here rather than taken from the store's outbox, which may hold
    the Totem process's own changes as well; a shell whose store records changes fans out
    ``store.take_changes()`` instead and uses only the code.
    """
    received: object = write  # it came off a ring: do not trust the annotation
    if not isinstance(received, CmapSet | CmapDelete | CmapAdjust):
        return CsErrorCode.CS_ERR_INVALID_PARAM, []
    key = write.key
    existed = isinstance(key, str) and key in store
    seq_before = store.seq
    try:
        _apply(store, write)
    except CsError as error:
        return error.code, []
    if store.seq == seq_before:
        return CsErrorCode.CS_OK, []  # an identical value: Corosync announces nothing
    return CsErrorCode.CS_OK, [_change_after(store, key, existed)]


def _apply(store: CmapStore, write: CmapWrite) -> None:
    match write:
        case CmapSet(key, value, vtype):
            store.set(key, value, vtype, check_ro=True)
        case CmapDelete(key):
            store.delete(key, check_ro=True)
        case CmapAdjust(key, delta):
            store.adjust(key, delta, check_ro=True)


def _change_after(store: CmapStore, key: str, existed: bool) -> CmapChange:
    if key not in store:
        return CmapChange(TrackEvent.DELETE, key, None, store.seq)
    op = TrackEvent.MODIFY if existed else TrackEvent.ADD
    return CmapChange(op, key, store.get(key), store.seq)


def fire_and_forget_set(
    key: str, value: CmapValue, vtype: ValueType, *, present: bool
) -> tuple[CmapSet, Callable[[CsErrorCode], None]]:
    """``ExecutiveApi.cmap_set``'s checks and its ``done``: the value (and, for a key the
    replica lacks - ``present`` False - the name) are checked at once, raising the matching
    ``CsError``; a refusal by the owner is only logged."""
    CmapEntry(vtype, value)
    if not present:
        check_key_name(key)

    def done(code: CsErrorCode) -> None:
        if code is not CsErrorCode.CS_OK:
            _refusals.warning("cmap_set of %s refused: %s", key, cs_strerror(code))

    return CmapSet(key, value, vtype), done
