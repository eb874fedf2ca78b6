"""The simulated network: loss, duplication, latency, FIFO and reordering, blocks, fan-out."""

from __future__ import annotations

import itertools
import random

import pytest

from pycorosync.exec.totem.sim.network import Arrival, Impairment, LinkProfile, SimNetwork

SENDS = 20000


def net(nodes: int = 3, seed: int = 1, **base: float) -> SimNetwork:
    return SimNetwork(random.Random(seed), range(1, nodes + 1), LinkProfile(**base))


def arrivals(network: SimNetwork, src: int, dest: int | None, count: int) -> list[Arrival]:
    out: list[Arrival] = []
    for i in range(count):
        out += network.route(i * 0.001, src, dest)
    return out


def test_fault_free_links_deliver_everything_within_latency_plus_jitter() -> None:
    network = net(latency=0.01, jitter=0.002)
    for i in range(1000):
        now = i * 0.5
        (arrival,) = network.route(now, 1, 2)
        assert arrival[1] == 2
        assert 0.01 <= arrival[0] - now <= 0.012
    delays = [at - 7.0 for at, _ in network.route(7.0, 1, None)]
    assert len(delays) == 2
    assert network.lost == network.blocked == network.duplicated == 0


def test_mean_latency_is_base_plus_half_the_jitter() -> None:
    network = net(latency=0.01, jitter=0.004)
    delays = [network.route(i * 1.0, 1, 2)[0][0] - i * 1.0 for i in range(SENDS)]
    assert sum(delays) / SENDS == pytest.approx(0.012, abs=0.0001)
    assert min(delays) >= 0.01
    assert max(delays) <= 0.014


@pytest.mark.parametrize("loss", [0.05, 0.3, 0.7])
def test_loss_drops_the_given_fraction(loss: float) -> None:
    network = net()
    network.impair("loss", Impairment(loss=loss))
    got = len(arrivals(network, 1, 2, SENDS))
    assert got / SENDS == pytest.approx(1 - loss, abs=0.015)
    assert network.lost == SENDS - got


def test_duplication_adds_the_given_fraction_never_earlier_than_the_original() -> None:
    network = net(latency=0.01, jitter=0.0)
    network.impair("dup", Impairment(dup=0.25))
    extra = 0
    for i in range(SENDS):
        now = i * 1.0
        copies = network.route(now, 1, 2)
        assert len(copies) in (1, 2)
        if len(copies) == 2:
            extra += 1
            assert copies[0][0] <= copies[1][0] <= copies[0][0] + 0.01
    assert extra / SENDS == pytest.approx(0.25, abs=0.015)
    assert network.duplicated == extra


def test_fan_out_reaches_every_other_node_and_decides_each_copy_independently() -> None:
    network = net(nodes=4)
    assert sorted(dst for _, dst in network.route(0.0, 2, None)) == [1, 3, 4]
    network.impair("loss", Impairment(loss=0.5))
    seen = {1: 0, 3: 0, 4: 0}
    split = 0
    for i in range(SENDS // 4):
        got = {dst for _, dst in network.route(i * 0.01, 2, None)}
        for dst in got:
            seen[dst] += 1
        split += 0 < len(got) < 3
    for count in seen.values():
        assert count / (SENDS // 4) == pytest.approx(0.5, abs=0.03)
    # Independent copies: all-or-nothing would make "some but not all" impossible; 1 - 2/8.
    assert split / (SENDS // 4) == pytest.approx(0.75, abs=0.03)


def test_partition_blocks_both_ways_between_groups_and_isolates_unlisted_nodes() -> None:
    network = net(nodes=4)
    network.partition("p", [[1, 2], [3]])
    assert [dst for _, dst in network.route(0.0, 1, None)] == [2]
    assert network.route(0.0, 1, 3) == []
    assert network.route(0.0, 3, 1) == []
    assert network.route(0.0, 3, None) == []
    assert network.route(0.0, 4, None) == []
    assert [dst for _, dst in network.route(0.0, 2, 1)] == [1]
    network.repair("p")
    assert sorted(dst for _, dst in network.route(1.0, 4, None)) == [1, 2, 3]


def test_one_way_block_blocks_one_direction_only() -> None:
    network = net()
    network.block("b", 1, 2)
    assert network.route(0.0, 1, 2) == []
    assert [dst for _, dst in network.route(0.0, 1, None)] == [3]
    assert [dst for _, dst in network.route(0.0, 2, 1)] == [1]
    assert network.blocked == 2
    network.heal()
    assert [dst for _, dst in network.route(1.0, 1, 2)] == [2]
    assert not network.impaired


def test_fifo_links_never_reorder_but_a_reorder_episode_does() -> None:
    network = net(latency=0.002, jitter=0.01)
    fifo = [at for at, _ in arrivals(network, 1, 2, 2000)]
    assert fifo == sorted(fifo)
    network.impair("r", Impairment(jitter=0.03, reorder=True))
    mixed = [at for at, _ in arrivals(network, 1, 2, 2000)]
    inversions = sum(1 for a, b in itertools.pairwise(mixed) if b < a)
    assert inversions > 200


def test_copies_in_flight_are_not_overtaken_when_a_delay_ends() -> None:
    network = net(latency=0.002, jitter=0.0)
    network.impair("slow", Impairment(latency=0.1))
    ((slow, _),) = network.route(0.0, 1, 2)
    network.repair("slow")
    ((fast, _),) = network.route(0.001, 1, 2)
    assert slow == pytest.approx(0.102)
    assert fast >= slow
    ((other, _),) = network.route(0.001, 1, 3)
    assert other == pytest.approx(0.003)


def test_overlays_compose_and_end_independently() -> None:
    network = net(latency=0.001, jitter=0.0)
    network.impair("a", Impairment(loss=0.5, latency=0.01))
    network.impair("b", Impairment(loss=0.5, latency=0.02, links=frozenset({(1, 2)})))
    delays = [at - i for i in range(SENDS) for at, _ in network.route(float(i), 1, 2)]
    assert len(delays) / SENDS == pytest.approx(0.25, abs=0.015)
    assert delays == pytest.approx([0.031] * len(delays))
    network.repair("a")
    later = range(SENDS, 2 * SENDS)
    delays = [at - i for i in later for at, _ in network.route(float(i), 1, 2)]
    assert len(delays) / SENDS == pytest.approx(0.5, abs=0.015)
    assert delays == pytest.approx([0.021] * len(delays))
    assert len(arrivals(network, 1, 3, 100)) == 100


def test_a_unicast_to_oneself_is_never_impaired() -> None:
    network = net(latency=0.004, jitter=0.002)
    network.impair("all", Impairment(loss=1.0, blocked=True))
    network.partition("p", [[1], [2, 3]])
    assert network.route(1.0, 1, 1) == [(1.004, 1)]
    assert network.route(1.0, 1, None) == []


def test_unknown_destinations_and_bad_impairments_are_refused() -> None:
    network = net()
    with pytest.raises(ValueError, match="unconfigured node 9"):
        network.route(0.0, 1, 9)
    with pytest.raises(ValueError, match="probability"):
        Impairment(loss=1.5)
    with pytest.raises(ValueError, match="negative"):
        Impairment(latency=-1.0)
    with pytest.raises(ValueError, match="unknown nodes"):
        network.impair("x", Impairment(loss=0.1, links=frozenset({(1, 7)})))


def test_same_seed_same_fates_other_seed_other_fates() -> None:
    def history(seed: int) -> list[list[Arrival]]:
        network = net(nodes=5, seed=seed)
        network.impair("l", Impairment(loss=0.2, dup=0.1, jitter=0.01, reorder=True))
        return [network.route(i * 0.01, 1 + i % 5, None) for i in range(2000)]

    assert history(7) == history(7)
    assert history(7) != history(8)
