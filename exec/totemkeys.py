"""The keys Corosync writes itself once the totem values are known.

``runtime.config.totem.*`` shows the effective values (what ``corosync-cmapctl
runtime.config.totem.token`` prints, and what crmsh reads); with udp, the derived multicast
address and port are written back into ``totem.interface.<N>.*`` as Corosync does.
"""

from __future__ import annotations

from typing import NamedTuple

from pycorosync.exec.coroparse import ParsedConfig
from pycorosync.exec.totemconfig import TotemConfig, Transport
from pycorosync.lib.cmap_types import CmapValue, ValueType


class CmapItem(NamedTuple):
    """A key Corosync writes itself (``runtime.config.totem.*``, write-backs)."""

    key: str
    value: CmapValue
    vtype: ValueType


_RUNTIME_U32 = (
    ("token", "token_ms"),
    ("token_retransmits_before_loss_const", "token_retransmits_before_loss_const"),
    ("token_warning", "token_warning_percent"),
    ("max_network_delay", "max_network_delay_ms"),
    ("window_size", "window_size"),
    ("max_messages", "max_messages"),
    ("miss_count_const", "miss_count_const"),
    ("knet_pmtud_interval", "knet_pmtud_interval_s"),
    ("knet_mtu", "knet_mtu"),
    ("token_retransmit", "token_retransmit_ms"),
    ("hold", "hold_ms"),
    ("join", "join_ms"),
    ("consensus", "consensus_ms"),
    ("merge", "merge_ms"),
    ("downcheck", "downcheck_ms"),
    ("fail_recv_const", "fail_recv_const"),
    ("seqno_unchanged_const", "seqno_unchanged_const"),
    ("send_join", "send_join_ms"),
    ("heartbeat_failures_allowed", "heartbeat_failures_allowed"),
    ("knet_compression_threshold", "knet_compression_threshold"),
)


def runtime_keys(totem: TotemConfig) -> list[CmapItem]:
    """The ``runtime.config.totem.*`` keys, with Corosync's names and types."""
    prefix = "runtime.config.totem."
    items = [
        CmapItem(prefix + name, getattr(totem, attribute), ValueType.UINT32)
        for name, attribute in _RUNTIME_U32
    ]
    items += [
        CmapItem(prefix + "knet_compression_level", totem.knet_compression_level, ValueType.INT32),
        CmapItem(prefix + "knet_compression_model", totem.knet_compression_model, ValueType.STRING),
        CmapItem(prefix + "block_unlisted_ips", int(totem.block_unlisted_ips), ValueType.UINT32),
        CmapItem(
            prefix + "cancel_token_hold_on_retransmit",
            int(totem.cancel_token_hold_on_retransmit),
            ValueType.UINT32,
        ),
    ]
    for interface in totem.interfaces:
        link = f"{prefix}interface.{interface.linknumber}."
        items.append(
            CmapItem(link + "knet_ping_timeout", interface.knet_ping_timeout_ms, ValueType.UINT32)
        )
        items.append(
            CmapItem(link + "knet_ping_interval", interface.knet_ping_interval_ms, ValueType.UINT32)
        )
        if totem.transport is Transport.KNET:
            items.append(CmapItem(link + "mcastport", interface.mcastport, ValueType.UINT16))
    return items


def udp_writeback_keys(totem: TotemConfig, parsed: ParsedConfig) -> list[CmapItem]:
    """udp only: the derived multicast address and port, written back as Corosync does."""
    if totem.transport is not Transport.UDP:
        return []
    items: list[CmapItem] = []
    for interface in totem.interfaces:
        prefix = f"totem.interface.{interface.linknumber}."
        if prefix + "mcastaddr" not in parsed and interface.mcastaddr is not None:
            items.append(CmapItem(prefix + "mcastaddr", str(interface.mcastaddr), ValueType.STRING))
        if prefix + "mcastport" not in parsed:
            items.append(CmapItem(prefix + "mcastport", interface.mcastport, ValueType.UINT16))
    return items
