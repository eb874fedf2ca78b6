"""``runtime.members.*`` as the Totem process keeps them from configuration changes."""

from __future__ import annotations

from pycorosync.exec.icmap import CmapStore
from pycorosync.exec.runtime_keys import apply_membership
from pycorosync.exec.totem.events import ConfigChange, ConfigKind, RingId

ADDRESSES = {1: "127.0.0.1", 2: "127.0.0.2", 3: "::1"}


def _change(kind: ConfigKind, members: tuple[int, ...], **lists: tuple[int, ...]) -> ConfigChange:
    return ConfigChange(
        kind=kind,
        members=members,
        left=lists.get("left", ()),
        joined=lists.get("joined", ()),
        ring_id=RingId(4, 1),
    )


def _members(store: CmapStore) -> dict[str, object]:
    return {key: entry.value for key, entry in store.iter_prefix("runtime.members.")}


def test_a_first_ring_lists_the_node_itself_as_corosync_does() -> None:
    store = CmapStore()
    apply_membership(store, _change(ConfigKind.REGULAR, (1,)), ADDRESSES)
    assert _members(store) == {
        "runtime.members.1.config_version": 0,
        "runtime.members.1.ip": "r(0) ip(127.0.0.1) ",
        "runtime.members.1.join_count": 1,
        "runtime.members.1.status": "joined",
    }


def test_leaving_keeps_the_keys_and_rejoining_counts_again() -> None:
    store = CmapStore()
    apply_membership(store, _change(ConfigKind.REGULAR, (1,)), ADDRESSES)
    apply_membership(store, _change(ConfigKind.REGULAR, (1, 2, 3), joined=(2, 3)), ADDRESSES)
    assert _members(store)["runtime.members.3.ip"] == "r(0) ip(::1) "
    apply_membership(store, _change(ConfigKind.TRANSITIONAL, (1, 3), left=(2,)), ADDRESSES)
    assert _members(store)["runtime.members.2.status"] == "left"
    apply_membership(store, _change(ConfigKind.REGULAR, (1, 3)), ADDRESSES)
    members = _members(store)
    assert members["runtime.members.2.status"] == "left"
    assert members["runtime.members.1.join_count"] == 1  # still in, not joined again
    apply_membership(store, _change(ConfigKind.REGULAR, (1, 2, 3), joined=(2,)), ADDRESSES)
    members = _members(store)
    assert members["runtime.members.2.status"] == "joined"
    assert members["runtime.members.2.join_count"] == 2
    assert members["runtime.members.3.join_count"] == 1
