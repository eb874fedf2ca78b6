"""A sorted set of strings with cheap inserts and live, mutation-safe ordered scans.

The cmap store needs byte-wise sorted prefix iteration (cfg reload walks it) without scanning
the whole map for a narrow prefix, and key creation that does not shift the whole key list.

Layout: the keys are kept in *chunks*, each a sorted list of at most ``2 * load`` keys, and
the chunks are in order; ``_maxes[i]`` is the last key of chunk ``i``. Locating a key is two
bisections (over the chunk maxima, then within one chunk), so O(log n) comparisons; an insert
or removal moves at most ``2 * load`` pointers inside its chunk, plus ``n / load`` when a chunk
splits or disappears. Python strings compare by code point, which is the byte order of their
UTF-8 encoding, so the order is Corosync's byte-wise order.

Scans are *live cursors*: :meth:`SortedKeys.iter_from` remembers the last key it yielded and,
whenever the set changed shape since the previous step (``_version``), finds its place again
by bisection. So a scan never fails, never yields a key twice, yields keys in strictly
increasing order, yields only keys present at the moment they are yielded, and yields every
key that is present (and not behind the cursor) for the whole scan.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator


class SortedKeys:
    def __init__(self, load: int = 256) -> None:
        if load < 1:
            raise ValueError("load must be at least 1")
        self._load = load
        self._chunks: list[list[str]] = []
        self._maxes: list[str] = []
        self._len = 0
        self._version = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, key: str) -> bool:
        chunk, pos = self._position(key, after=False)
        return chunk < len(self._chunks) and self._chunks[chunk][pos] == key

    def __iter__(self) -> Iterator[str]:
        return self.iter_from("")

    def add(self, key: str) -> None:
        """Insert ``key``, which must not be present."""
        if not self._chunks:
            self._chunks.append([key])
            self._maxes.append(key)
        else:
            index = min(bisect_left(self._maxes, key), len(self._maxes) - 1)
            chunk = self._chunks[index]
            pos = bisect_left(chunk, key)
            if pos < len(chunk) and chunk[pos] == key:
                raise KeyError(key)
            insort(chunk, key)
            self._maxes[index] = chunk[-1]
            if len(chunk) > 2 * self._load:
                self._split(index)
        self._len += 1
        self._version += 1

    def remove(self, key: str) -> None:
        """Remove ``key``; ``KeyError`` if it is not present."""
        index, pos = self._position(key, after=False)
        if index == len(self._chunks) or self._chunks[index][pos] != key:
            raise KeyError(key)
        chunk = self._chunks[index]
        del chunk[pos]
        if chunk:
            self._maxes[index] = chunk[-1]
            if len(chunk) < self._load // 2:
                self._merge_with_neighbour(index)
        else:
            del self._chunks[index]
            del self._maxes[index]
        self._len -= 1
        self._version += 1

    def iter_from(self, start: str) -> Iterator[str]:
        """Keys ``>= start`` in order, as a live cursor (see the module docstring)."""
        index, pos = self._position(start, after=False)
        version = self._version
        last: str | None = None
        while True:
            if version != self._version:
                index, pos = (
                    self._position(start, after=False)
                    if last is None
                    else self._position(last, after=True)
                )
                version = self._version
            if index >= len(self._chunks):
                return
            chunk = self._chunks[index]
            if pos >= len(chunk):
                index, pos = index + 1, 0
                continue
            last = chunk[pos]
            pos += 1
            yield last

    def _position(self, key: str, *, after: bool) -> tuple[int, int]:
        """(chunk, offset) of the first key ``>= key`` (``> key`` if ``after``).

        A chunk index equal to the number of chunks means "past the end".
        """
        find = bisect_right if after else bisect_left
        index = find(self._maxes, key)
        if index == len(self._maxes):
            return index, 0
        return index, find(self._chunks[index], key)

    def _split(self, index: int) -> None:
        chunk = self._chunks[index]
        half = len(chunk) // 2
        low, high = chunk[:half], chunk[half:]
        self._chunks[index : index + 1] = [low, high]
        self._maxes[index : index + 1] = [low[-1], high[-1]]

    def _merge_with_neighbour(self, index: int) -> None:
        # Keeps chunks from dwindling after mass deletions, so the maxima list stays ~n/load.
        if len(self._chunks) < 2:
            return
        left = index - 1 if index > 0 else index
        merged = self._chunks[left] + self._chunks[left + 1]
        self._chunks[left : left + 2] = [merged]
        self._maxes[left : left + 2] = [merged[-1]]
        if len(merged) > 2 * self._load:
            self._split(left)
