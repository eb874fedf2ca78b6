"""The ``runtime.members.*`` keys, kept by the Totem process from the configuration changes.

Theory of operation
-------------------
Corosync's main.c updates these on every REGULAR configuration: a member that joined gets
``ip`` ("r(0) ip(ADDR) ", with the trailing space Corosync prints), ``join_count`` one higher
(a node that rejoins counts again), ``status`` "joined" and, the first time, a
``config_version`` of 0; a member that left keeps its keys with ``status`` "left". A node's
first ring counts the node itself as joined, as Corosync lists it. Tools
(``corosync-cmapctl runtime.members``, crmsh, pcs) read them. The keys are written into the
store with the owner's rights (they are read-only for clients), and the changes reach the
workers' replicas like any other.
"""

from __future__ import annotations

from collections.abc import Mapping

from pycorosync.exec.icmap import CmapStore
from pycorosync.exec.totem.events import ConfigChange, ConfigKind
from pycorosync.lib.cmap_types import ValueType


def member_ip_text(address: str) -> str:
    """``runtime.members.N.ip`` as Corosync writes it for link 0."""
    return f"r(0) ip({address}) "


def apply_membership(store: CmapStore, change: ConfigChange, addresses: Mapping[int, str]) -> None:
    """Update ``runtime.members.*`` for one configuration change (SRP reports who left in
    the TRANSITIONAL one, who joined in the REGULAR one)."""
    for nodeid in change.left:
        store.set(f"runtime.members.{nodeid}.status", "left", ValueType.STRING)
    if change.kind is not ConfigKind.REGULAR:
        return
    # A node's first ring names no one as joined (SRP's joined list is relative to a previous
    # ring), yet Corosync lists the node itself: any member not yet "joined" has joined.
    for nodeid in change.members:
        if nodeid in change.joined or not _is_joined(store, nodeid):
            _joined(store, nodeid, addresses.get(nodeid))


def _is_joined(store: CmapStore, nodeid: int) -> bool:
    key = f"runtime.members.{nodeid}.status"
    return key in store and store.get(key).value == "joined"


def _joined(store: CmapStore, nodeid: int, address: str | None) -> None:
    prefix = f"runtime.members.{nodeid}."
    if address is not None:
        store.set(prefix + "ip", member_ip_text(address), ValueType.STRING)
    count_key = prefix + "join_count"
    if count_key in store:
        store.adjust(count_key, 1)
    else:
        store.set(count_key, 1, ValueType.UINT32)
    store.set(prefix + "status", "joined", ValueType.STRING)
    version_key = prefix + "config_version"
    if version_key not in store:
        store.set(version_key, 0, ValueType.UINT64)
