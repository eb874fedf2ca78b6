"""The chunked sorted index under the cmap store: order, cost and live scans."""

from __future__ import annotations

from bisect import bisect_left

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycorosync.exec.sorted_keys import SortedKeys

KEYS = st.text(alphabet="ab.:", min_size=0, max_size=4)
OPS = st.lists(st.tuples(st.booleans(), KEYS), max_size=80)


def _replay(ops: list[tuple[bool, str]], load: int) -> tuple[SortedKeys, set[str]]:
    index, model = SortedKeys(load), set[str]()
    for adding, key in ops:
        if adding and key not in model:
            index.add(key)
            model.add(key)
        elif not adding and key in model:
            index.remove(key)
            model.discard(key)
    return index, model


def _assert_well_formed(index: SortedKeys, load: int) -> None:
    """Chunks are non-empty, bounded, and their recorded maxima are right."""
    chunks = index._chunks
    assert all(0 < len(chunk) <= 2 * load for chunk in chunks)
    assert index._maxes == [chunk[-1] for chunk in chunks]


@given(OPS, st.integers(1, 6))
def test_matches_a_sorted_set(ops: list[tuple[bool, str]], load: int) -> None:
    index, model = _replay(ops, load)
    assert list(index) == sorted(model)
    assert len(index) == len(model)
    _assert_well_formed(index, load)
    for _, key in ops:
        assert (key in index) == (key in model)


@given(OPS, KEYS, st.integers(1, 6))
def test_iter_from_starts_at_the_first_key_not_below(
    ops: list[tuple[bool, str]], start: str, load: int
) -> None:
    index, model = _replay(ops, load)
    assert list(index.iter_from(start)) == [k for k in sorted(model) if k >= start]


def test_duplicate_add_and_missing_remove_raise() -> None:
    index = SortedKeys(2)
    index.add("b")
    with pytest.raises(KeyError):
        index.add("b")
    with pytest.raises(KeyError):
        index.remove("a")
    with pytest.raises(KeyError):
        index.remove("c")
    assert list(index) == ["b"]


def test_load_must_be_positive() -> None:
    with pytest.raises(ValueError, match="load"):
        SortedKeys(0)


@given(OPS, st.lists(st.tuples(st.booleans(), KEYS), max_size=30), st.integers(1, 3))
def test_live_scan_survives_changes_between_steps(
    before: list[tuple[bool, str]], during: list[tuple[bool, str]], load: int
) -> None:
    """Strictly increasing; only present keys; every key present throughout is seen."""
    index, model = _replay(before, load)
    always = set(model)
    scan = index.iter_from("")
    seen: list[str] = []
    for adding, key in during:
        step = next(scan, None)
        if step is not None:
            assert step in model
            assert not seen or step > seen[-1]
            seen.append(step)
        if adding and key not in model:
            index.add(key)
            model.add(key)
        elif not adding and key in model:
            index.remove(key)
            model.discard(key)
            always.discard(key)
    for step in scan:
        assert step in model
        assert not seen or step > seen[-1]
        seen.append(step)
    assert always <= set(seen)


def test_removing_the_current_key_mid_scan() -> None:
    index = SortedKeys(1)
    for key in "abcdef":
        index.add(key)
    seen = []
    for key in index.iter_from(""):
        seen.append(key)
        index.remove(key)
    assert seen == list("abcdef")
    assert len(index) == 0


class _Counted(str):
    """A key that counts how often it is compared, to measure the index's work."""

    comparisons = 0

    def __lt__(self, other: str) -> bool:
        _Counted.comparisons += 1
        return str.__lt__(self, other)

    def __gt__(self, other: str) -> bool:
        _Counted.comparisons += 1
        return str.__gt__(self, other)


def test_narrow_scan_and_insert_do_not_touch_the_whole_index() -> None:
    size = 20_000
    index = SortedKeys()
    for n in range(size):
        index.add(_Counted(f"k.{n:06d}"))
    _Counted.comparisons = 0
    found = list(index.iter_from(_Counted("k.012345")))[:3]
    assert found == ["k.012345", "k.012346", "k.012347"]
    assert _Counted.comparisons < 40
    _Counted.comparisons = 0
    index.add(_Counted("k.0123455"))
    assert _Counted.comparisons < 40
    assert bisect_left(list(index), "k.0123455") == 12346
