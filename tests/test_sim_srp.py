"""The simulator over the real SRP core: a fixed seed range in CI, and proof that the checkers
catch a deliberately broken core."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pycorosync.exec.totem.core_api import Send
from pycorosync.exec.totem.events import Delivery, TotemEvent
from pycorosync.exec.totem.evs_check import Invariant
from pycorosync.exec.totem.sim import ALL_FAULTS, SIM_CONFIG, run_seed
from pycorosync.exec.totem.sim.runner import nodes_for_seed
from pycorosync.exec.totem.srp import Srp

CI_SEEDS = range(300)
"""The fixed CI range (DESIGN.md: deterministic CI; wider sweeps run outside CI)."""
CHUNK = 25


@pytest.mark.parametrize("first", range(CI_SEEDS.start, CI_SEEDS.stop, CHUNK))
def test_seeds_run_clean_with_every_fault(first: int) -> None:
    failures = []
    for seed in range(first, min(first + CHUNK, CI_SEEDS.stop)):
        result = run_seed(seed, nodes_for_seed(seed, 3, 7), ALL_FAULTS)
        if not result.passed:
            failures.append(result.report())
    assert not failures, "\n\n".join(failures)


class _Broken:
    """A real core whose output is tampered with once, on node 2, after ``after`` deliveries."""

    def __init__(self, core: Srp, mode: str, after: int = 40) -> None:
        self._core = core
        self._mode = mode
        self._after = after
        self._seen = 0
        self._done = False

    def __getattr__(self, name: str) -> object:
        return getattr(self._core, name)

    def take_output(self) -> tuple[list[Send], list[TotemEvent]]:
        sends, events = self._core.take_output()
        if self._done or self._core.nodeid != 2:
            return sends, events
        positions = [i for i, e in enumerate(events) if isinstance(e, Delivery)]
        self._seen += len(positions)
        if self._seen < self._after or len(positions) < 2:
            return sends, events
        self._done = True
        a, b = positions[0], positions[1]
        if self._mode == "swap":
            events[a], events[b] = events[b], events[a]
        elif self._mode == "duplicate":
            events.insert(b, events[a])
        elif self._mode == "drop":
            del events[a]
        return sends, events


def _broken_factory(mode: str):  # type: ignore[no-untyped-def]
    def factory(nodeid: int, members: Sequence[int], ring_seq: int) -> _Broken:
        return _Broken(Srp(SIM_CONFIG, nodeid, members, ring_seq), mode)

    return factory


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("swap", {Invariant.AGREED_ORDER, Invariant.SENDER_FIFO}),
        ("duplicate", {Invariant.INTEGRITY}),
        ("drop", {Invariant.SENDER_FIFO, Invariant.VIRTUAL_SYNCHRONY, Invariant.LIVENESS}),
    ],
)
def test_the_checkers_catch_a_broken_core(mode: str, expected: set[Invariant]) -> None:
    for seed in range(5):
        clean = run_seed(seed, 3, frozenset())
        assert clean.passed, clean.report()
        broken = run_seed(seed, 3, frozenset(), core_factory=_broken_factory(mode))
        assert not broken.passed, f"seed {seed}: a {mode} went unnoticed"
        assert {v.invariant for v in broken.violations} & expected, broken.report()
        assert f"--seeds {seed}" in broken.report()


def test_a_seed_reproduces_exactly() -> None:
    first = run_seed(7, 5, ALL_FAULTS)
    second = run_seed(7, 5, ALL_FAULTS)
    assert first.passed
    assert (first.deliveries, first.datagrams, first.trace) == (
        second.deliveries,
        second.datagrams,
        second.trace,
    )
