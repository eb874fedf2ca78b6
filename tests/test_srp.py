"""The Totem SRP core in scripted scenarios; every run is also checked by the EVS checker."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pycorosync.exec.totem.events import (
    ConfigKind,
    Guarantee,
    PersistRingSeq,
    RingId,
)
from pycorosync.exec.totem.history import Crashed, Submitted
from pycorosync.exec.totem.srp import Srp, State
from pycorosync.exec.totem.srp_wire import (
    MAGIC,
    CommitEntry,
    CommitToken,
    Join,
    Mcast,
    MessageType,
    Token,
    decode,
    encode,
    encode_mcast,
    peek_type,
)
from tests._srp_net import FAST, Net

BOUND = 3 * (FAST.token_ms + FAST.consensus_ms) / 1000
"""Generous bound for a reconfiguration (DESIGN.md: three times the configured figure)."""


def formed(nodes: tuple[int, ...], **kwargs: object) -> Net:
    net = Net(nodes, **kwargs)  # type: ignore[arg-type]
    net.start()
    assert net.run_until(lambda: net.one_ring(nodes), BOUND), "the ring did not form"
    return net


def finish(net: Net) -> None:
    """Quiesce and check every EVS invariant over the whole run."""
    net.run(2.0)
    assert net.checker.finish() == []


# -- forming rings and ordering ---------------------------------------------------------------


def test_a_single_node_forms_its_own_ring_and_delivers_its_messages() -> None:
    net = formed((1,))
    assert net.cores[1].members == (1,)
    assert net.mcast(1, b"agreed")
    assert net.mcast(1, b"safe", Guarantee.SAFE)
    assert net.run_until(lambda: len(net.payloads(1)) == 2, 1.0)
    assert net.payloads(1) == [b"agreed", b"safe"]
    assert net.regulars(1)[-1].members == (1,)
    assert "A new membership (1.5) was formed. Members joined: 1" in net.logs(1)
    finish(net)


@pytest.mark.parametrize("nodes", [(1, 2, 3), (1, 2, 3, 4, 5)])
def test_nodes_form_one_ring_and_deliver_in_one_order(nodes: tuple[int, ...]) -> None:
    net = formed(nodes)
    for i in range(30):
        assert net.mcast(nodes[i % len(nodes)], f"m{i}".encode())
    assert net.run_until(lambda: all(len(net.payloads(n)) == 30 for n in nodes), 2.0)
    orders = {tuple(net.payloads(n)) for n in nodes}
    assert len(orders) == 1
    ring = net.cores[1].ring_id
    assert ring.rep == 1
    assert any(line.startswith("A new membership (1.") for line in net.logs(1))
    finish(net)


def test_sequence_numbers_run_through_the_u32_wrap() -> None:
    config = replace(FAST, initial_seq=(1 << 32) - 10)
    net = formed((1, 2, 3), config=config)
    for i in range(60):
        assert net.mcast(1 + i % 3, f"w{i}".encode())
    assert net.run_until(lambda: all(len(net.payloads(n)) == 60 for n in (1, 2, 3)), 3.0)
    seqs = [d.seq for d in net.deliveries(2)]
    assert seqs == sorted(seqs)
    assert seqs[-1] > 1 << 32
    wire_seqs = [
        decode(s.data).seq  # type: ignore[union-attr]
        for _, _, s in net.sent
        if peek_type(s.data) is MessageType.MCAST
    ]
    assert min(wire_seqs) < 100 < (1 << 32) - 100 < max(wire_seqs), "the wire value must wrap"
    finish(net)


# -- membership ---------------------------------------------------------------------------------


def test_a_ring_seq_is_persisted_before_the_commit_token_leaves() -> None:
    net = Net((1, 2))
    net.cores[1].start(0.0)
    sends, events = net.cores[1].take_output()
    persists = [e for e in events if isinstance(e, PersistRingSeq)]
    commits = [s for s in sends if peek_type(s.data) is MessageType.COMMIT]
    assert persists, "a lone node commits a singleton ring at once"
    assert commits
    commit = decode(commits[0].data)
    assert persists[0].seq == commit.ring_id.seq  # type: ignore[union-attr]


def test_a_restarted_node_never_reuses_a_ring_id() -> None:
    net = formed((1, 2, 3))
    before = net.cores[1].ring_id
    net.crash(1)
    earlier = len(net.regulars(1))
    net.restart(1)
    assert net.run_until(lambda: net.one_ring((1, 2, 3)), 3 * BOUND)
    assert net.cores[1].ring_id.seq > before.seq
    fresh = net.regulars(1)[earlier:]
    assert fresh
    assert all(r.ring_id.seq > before.seq for r in fresh), "ring ids only grow across a restart"
    finish(net)


def test_a_crashed_node_is_removed_within_token_plus_consensus() -> None:
    net = formed((1, 2, 3))
    start = net.now
    net.crash(2)
    assert net.run_until(lambda: net.one_ring((1, 3)), BOUND)
    assert net.now - start <= BOUND
    lines = net.logs(1) + net.logs(3)
    assert any("A processor failed, forming new configuration" in line for line in lines)
    assert any("left: 2" in line for line in net.logs(1))
    assert "Failed to receive the leave message. failed: 2" in net.logs(1)
    finish(net)


def test_a_leave_reconfigures_without_waiting_for_a_token_timeout() -> None:
    net = formed((1, 2, 3))
    start = net.now
    net.cores[3].leave(net.now)
    net._drain(3)
    del net.cores[3]
    net.checker.observe(3, Crashed())
    assert net.run_until(lambda: net.one_ring((1, 2)), BOUND)
    assert net.now - start < FAST.token_ms / 1000, "a LEAVE must not wait for the token timeout"
    assert any(line.endswith("left: 3") for line in net.logs(1))
    assert not any("Failed to receive the leave message" in line for line in net.logs(1))
    finish(net)


def test_partitions_form_rings_of_their_own_and_merge_when_healed() -> None:
    side = {1: 0, 2: 0, 3: 1, 4: 1}
    cut = [True]
    net = formed((1, 2, 3, 4))
    net.link = lambda src, dst, data: not cut[0] or side[src] == side[dst]
    for i in range(10):
        net.mcast(1 + i % 4, f"p{i}".encode())
    assert net.run_until(lambda: net.one_ring((1, 2)) and net.one_ring((3, 4)), BOUND)
    assert net.cores[1].ring_id != net.cores[3].ring_id
    net.mcast(1, b"left side")
    net.mcast(3, b"right side")
    assert net.run_until(lambda: b"left side" in net.payloads(2), 1.0)
    assert b"right side" not in net.payloads(2)
    cut[0] = False
    assert net.run_until(lambda: net.one_ring((1, 2, 3, 4)), BOUND)
    regular = net.regulars(1)[-1]
    assert regular.joined == (3, 4)
    finish(net)


def test_a_node_that_receives_no_multicast_gives_up_and_forms_a_singleton() -> None:
    config = replace(FAST, fail_recv_const=20)
    net = formed((1, 2, 3), config=config)

    def no_mcast_to_3(src: int, dst: int, data: bytes) -> bool:
        return dst != 3 or peek_type(data) is not MessageType.MCAST

    net.link = no_mcast_to_3
    for i in range(5):
        net.mcast(1, f"f{i}".encode())
    assert net.run_until(lambda: any("FAILED TO RECEIVE" in x for x in net.logs(3)), 10.0)
    net.link = lambda src, dst, data: True
    assert net.run_until(lambda: net.one_ring((1, 2, 3)), 3 * BOUND)
    finish(net)


# -- SAFE delivery ------------------------------------------------------------------------------


def test_safe_waits_until_every_member_has_the_message() -> None:
    net = formed((1, 2, 3))
    blocked = [True]

    def starve_3(src: int, dst: int, data: bytes) -> bool:
        return not (blocked[0] and dst == 3 and peek_type(data) is MessageType.MCAST)

    net.link = starve_3
    net.mcast(1, b"agreed")
    net.mcast(1, b"safe", Guarantee.SAFE)
    assert net.run_until(lambda: b"agreed" in net.payloads(2), 0.5)
    net.run(0.2)
    assert b"safe" not in net.payloads(1)
    assert b"safe" not in net.payloads(2)
    blocked[0] = False
    assert net.run_until(lambda: all(b"safe" in net.payloads(n) for n in (1, 2, 3)), 3.0)
    finish(net)


def test_safe_messages_of_a_departed_sender_reach_every_survivor() -> None:
    net = formed((1, 2, 3))
    for i in range(20):
        net.mcast(3, f"s{i}".encode(), Guarantee.SAFE)
    net.run(0.002)
    net.crash(3)
    assert net.run_until(lambda: net.one_ring((1, 2)), BOUND)
    assert net.payloads(1) == net.payloads(2)
    finish(net)


# -- flow control, queues and token hold --------------------------------------------------------


def test_mcast_answers_would_block_when_the_queue_is_full() -> None:
    net = formed((1, 2), config=replace(FAST, max_queue=4))
    assert all(net.cores[1].mcast(f"q{i}".encode()) for i in range(4))
    assert not net.cores[1].mcast(b"one too many")
    assert not net.cores[1].mcast(b"sync too", sync=False)
    assert net.cores[1].mcast(b"sync lane has its own room", sync=True)


def test_no_node_sends_more_than_max_messages_per_token_visit() -> None:
    config = replace(FAST, max_messages=5, window_size=12)
    net = formed((1, 2, 3), config=config)
    for i in range(200):
        net.mcast(1 + i % 3, f"b{i}".encode())
    start = len(net.sent)
    assert net.run_until(lambda: all(len(net.payloads(n)) >= 200 for n in (1, 2, 3)), 10.0)
    burst: dict[int, int] = {}
    per_rotation = 0
    for _, node, send in net.sent[start:]:
        kind = peek_type(send.data)
        if kind is MessageType.MCAST:
            burst[node] = burst.get(node, 0) + 1
            per_rotation += 1
            assert burst[node] <= config.max_messages
        elif kind is MessageType.TOKEN:
            burst[node] = 0
            if node == 3:
                assert per_rotation <= 2 * config.window_size
                per_rotation = 0
    finish(net)


def test_sync_traffic_goes_first_and_application_traffic_can_wait_for_sync() -> None:
    net = Net((1, 2))
    for node in (1, 2):
        net.cores[node] = Srp(FAST, node, (1, 2), 0, hold_app_until_sync=True)
    net.start()
    assert net.run_until(lambda: net.one_ring((1, 2)), BOUND)
    net.mcast(1, b"app")
    net.cores[1].mcast(b"sync", sync=True)
    net.checker.observe(1, Submitted(payload=b"sync"))
    net.run(0.5)
    assert net.payloads(2) == [b"sync"], "the application queue waits until sync completes"
    net.cores[1].release_app()
    assert net.run_until(lambda: net.payloads(2) == [b"sync", b"app"], 1.0)
    finish(net)


def test_an_idle_ring_holds_the_token_and_a_new_message_releases_it() -> None:
    net = formed((1, 2, 3))
    net.run(3.0)
    tokens_before = net.cores[2].stats.orf_token_rx
    net.run(2.0)
    idle_rate = (net.cores[2].stats.orf_token_rx - tokens_before) / 2.0
    assert idle_rate < 1000 / FAST.hold_ms + 2, "an idle ring must slow to one visit per hold"
    sent_at = net.now
    net.mcast(2, b"wake up")
    assert net.run_until(lambda: b"wake up" in net.payloads(1), 1.0)
    assert net.now - sent_at < FAST.hold_ms / 1000, "HOLD_CANCEL must release the held token"
    assert net.cores[2].stats.token_hold_cancel_tx >= 1
    finish(net)


def test_a_message_of_the_node_holding_the_token_leaves_on_it_at_once() -> None:
    net = formed((1, 2, 3))
    assert net.run_until(lambda: net.cores[1].holding_token, 3.0), "no hold set in"
    rep = net.cores[1]
    visits, cancels = rep.stats.orf_token_rx, rep.stats.token_hold_cancel_tx
    sent_at = net.now
    net.mcast(1, b"on the held token")
    assert net.run_until(lambda: b"on the held token" in net.payloads(1), 0.1)
    assert rep.stats.orf_token_rx == visits, "it must not wait for the token to come round"
    assert rep.stats.token_hold_cancel_tx == cancels, "the holder has nobody to tell"
    assert net.run_until(lambda: all(b"on the held token" in net.payloads(n) for n in (2, 3)), 0.1)
    assert net.now - sent_at < FAST.token_retransmit_ms / 1000
    net.mcast(2, b"and the ring goes on")
    assert net.run_until(
        lambda: all(b"and the ring goes on" in net.payloads(n) for n in (1, 2, 3)), 1.0
    )
    finish(net)


# -- hostile input ------------------------------------------------------------------------------


def _snapshot(core: Srp) -> tuple[object, ...]:
    return (core.state, core.ring_id, core.members, core._aru, core._high_delivered)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=120), min_size=1, max_size=8))
def test_garbage_never_crashes_the_core_or_changes_its_state(batch: list[bytes]) -> None:
    core = Srp(FAST, 1, (1, 2, 3), 0)
    core.start(0.0)
    core.take_output()
    before = _snapshot(core)
    invalid = core.stats.rx_invalid
    core.handle_datagrams(batch, 0.001)
    sends, _ = core.take_output()
    assert _snapshot(core) == before
    assert core.stats.rx_invalid - invalid == len(batch)
    assert sends == []


def test_a_flood_of_corrupt_copies_of_real_datagrams_leaves_the_ring_working() -> None:
    net = formed((1, 2, 3))
    real = [s.data for _, _, s in net.sent[-50:]]
    corrupt = []
    for i, data in enumerate(real):
        position = i % len(data)
        corrupt.append(data[:position] + bytes([data[position] ^ 0xFF]) + data[position + 1 :])
        corrupt.append(data[: position or 1])
    for node in (1, 2, 3):
        net.inject(node, corrupt)
    assert net.cores[1].stats.rx_invalid > 0
    net.mcast(1, b"still works")
    assert net.run_until(lambda: all(b"still works" in net.payloads(n) for n in (1, 2, 3)), 1.0)
    assert net.one_ring((1, 2, 3))
    finish(net)


def test_datagrams_from_nodes_outside_the_nodelist_are_dropped() -> None:
    net = formed((1, 2))
    ring = net.cores[1].ring_id
    stranger = encode(Join(sender=9, ring_seq=ring.seq + 100, proc=(9,), failed=()))
    forged = encode_mcast(9, ring, 1, Guarantee.AGREED, b"forged")
    net.inject(1, [stranger, forged])
    assert net.cores[1].stats.rx_invalid == 2
    assert net.cores[1].state is State.OPERATIONAL
    assert b"forged" not in net.payloads(1)


def test_another_wire_version_is_refused_in_words() -> None:
    net = formed((1, 2))
    good = encode(
        Token(sender=2, ring_id=RingId(seq=1, rep=1), token_seq=0, seq=0, aru=0, aru_addr=0)
    )
    other_version = MAGIC.to_bytes(2, "big") + bytes([9]) + good[3:]
    net.inject(1, [other_version])
    assert any("wire format version 9" in line for line in net.logs(1))
    assert net.one_ring((1, 2))


def test_a_forged_token_for_another_ring_is_ignored() -> None:
    net = formed((1, 2))
    token = Token(
        sender=2, ring_id=RingId(seq=999, rep=1), token_seq=10**6, seq=50, aru=50, aru_addr=0
    )
    seq_before = net.cores[1]._aru
    net.inject(1, [encode(token)])
    assert net.cores[1]._aru == seq_before
    net.mcast(2, b"after")
    assert net.run_until(lambda: b"after" in net.payloads(1), 1.0)
    finish(net)


def test_mcast_with_a_stale_ring_id_from_a_member_does_not_break_the_ring() -> None:
    net = formed((1, 2, 3))
    old = RingId(seq=1, rep=2)
    stale = encode_mcast(2, old, 1, Guarantee.AGREED, b"stale")
    gathers = net.cores[1].stats.gather_entered
    net.inject(1, [stale])
    assert net.cores[1].stats.gather_entered == gathers
    assert isinstance(decode(stale), Mcast)
    assert ConfigKind.REGULAR is net.regulars(1)[-1].kind


def test_recovery_resends_what_a_survivor_missed_and_then_installs_the_ring() -> None:
    net = formed((1, 2, 3))
    starving = [True]

    def starve_3(src: int, dst: int, data: bytes) -> bool:
        return not (starving[0] and dst == 3 and peek_type(data) is MessageType.MCAST)

    net.link = starve_3
    sent = [f"r{i}".encode() for i in range(10)]
    for payload in sent:
        net.mcast(1, payload)
    assert net.run_until(lambda: net.payloads(2)[-10:] == sent, 0.5)
    assert not set(sent) & set(net.payloads(3))
    net.crash(2)
    starving[0] = False
    assert net.run_until(lambda: net.one_ring((1, 3)), BOUND), "RECOVERY must complete"
    assert net.payloads(3)[-10:] == sent
    assert net.cores[1].stats.recovery_entered >= 1
    finish(net)


def test_a_commit_token_that_arrives_too_late_pulls_the_node_into_the_new_ring() -> None:
    # Node 3 formed its own ring while 1 and 2 committed a ring {1, 2, 3}: the commit token it
    # ignored while busy is retransmitted to it; it must gather with those members at once.
    net = Net((1, 2, 3))
    net.start([3])
    assert net.run_until(lambda: net.one_ring((3,)), BOUND)
    core = net.cores[3]
    entry = CommitEntry(
        old_ring_id=RingId(seq=1, rep=1), aru=0, high_delivered=0, safe_seq=0, received=True
    )
    commit = CommitToken(
        sender=2,
        ring_id=RingId(seq=core.ring_id.seq + 8, rep=1),
        token_seq=2,
        members=(1, 2, 3),
        entries=[entry, replace(entry, old_ring_id=RingId(seq=1, rep=2))],
    )
    start = len(net.sent)
    net.inject(3, [encode(commit)])
    assert core.state is State.GATHER
    joins = [
        decode(s.data) for _, _, s in net.sent[start:] if peek_type(s.data) is MessageType.JOIN
    ]
    assert joins
    assert joins[-1].proc == (1, 2, 3)  # type: ignore[union-attr]
    net.inject(3, [encode(commit)])  # the retransmission
    assert core.state is State.COMMIT


def test_a_member_that_will_refuse_the_commit_token_aborts_the_commit_at_once() -> None:
    # Node 1 committed {1, 2}; node 2 has meanwhile heard of node 3 and will refuse that token.
    # Its JOIN (carrying its old ring seq) must make node 1 give up now, not a token later.
    def no_commit_between_nodes(src: int, dst: int, data: bytes) -> bool:
        return src == dst or peek_type(data) is not MessageType.COMMIT

    net = Net((1, 2, 3), link=no_commit_between_nodes)
    net.start([1, 2])
    core = net.cores[1]
    assert net.run_until(lambda: core.state is State.COMMIT and len(core._new_members) == 2, 2.0)
    join = Join(sender=2, ring_seq=1, proc=(1, 2, 3), failed=())
    net.inject(1, [encode(join)])
    assert core.state is State.GATHER
    assert core.stats.commit_token_lost == 0


def test_joins_queued_during_a_pause_are_flushed_not_acted_on() -> None:
    net = formed((1, 2, 3))
    core = net.cores[1]
    deadline = core.next_deadline()
    assert deadline is not None
    ring = core.ring_id
    stale = encode(Join(sender=2, ring_seq=ring.seq, proc=(1, 2), failed=(3,)))
    joins_seen = core.stats.memb_join_rx
    net.now = deadline + FAST.token_ms / 1000  # woken a whole token after our own deadline
    net.inject(1, [stale])
    assert any("Process pause detected" in line for line in net.logs(1))
    assert core.stats.memb_join_rx == joins_seen, "the JOIN is dropped before it is processed"
    assert core.ring_id == ring
    assert 3 in core._proc
    assert 3 not in core._failed, "the stale JOIN's view must not be merged"
