"""The values Totem SRP runs on, taken from the effective configuration (or set by a test).

Times are given in milliseconds, as ``corosync.conf`` gives them; the core converts them to
seconds, the unit of ``now`` (:mod:`pycorosync.exec.totem.core_api`).
"""

from __future__ import annotations

from dataclasses import dataclass

from pycorosync.exec.totemconfig import TotemConfig

QUEUE_BYTES = 4 * (1 << 20)
"""Bytes of frames one pending queue may hold (Corosync's ``MESSAGE_QUEUE_MAX`` budget)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SrpConfig:
    token_ms: int = 3000
    token_retransmit_ms: int = 714
    hold_ms: int = 561
    join_ms: int = 50
    consensus_ms: int = 3600
    merge_ms: int = 200
    token_warning_ms: int = 2250
    """Warn when no token came for this long; 0 disables the warning."""
    fail_recv_const: int = 2500
    seqno_unchanged_const: int = 30
    window_size: int = 50
    max_messages: int = 17
    miss_count_const: int = 5
    cancel_token_hold_on_retransmit: bool = False
    max_queue: int = 2796
    """Frames each pending queue (application, sync) holds before ``mcast`` would block."""
    initial_seq: int = 0
    """Sequence number a new ring starts from; a test sets it near 2**32 to cross the wrap."""

    @classmethod
    def from_totem(cls, totem: TotemConfig) -> SrpConfig:
        return cls(
            token_ms=totem.token_ms,
            token_retransmit_ms=totem.token_retransmit_ms,
            hold_ms=totem.hold_ms,
            join_ms=totem.join_ms,
            consensus_ms=totem.consensus_ms,
            merge_ms=totem.merge_ms,
            token_warning_ms=totem.token_warning_ms,
            fail_recv_const=totem.fail_recv_const,
            seqno_unchanged_const=totem.seqno_unchanged_const,
            window_size=totem.window_size,
            max_messages=totem.max_messages,
            miss_count_const=totem.miss_count_const,
            cancel_token_hold_on_retransmit=totem.cancel_token_hold_on_retransmit,
            max_queue=max(64, QUEUE_BYTES // max(totem.netmtu, 1)),
        )
