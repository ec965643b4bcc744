"""A HistoryStore in memory, for tests of the read path until emu_opcua.history.sqlite
exists on this branch (the read rules only need ``read`` and ``extent``)."""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from emu_opcua.history.store import RowPosition, Series, StoredRow


class MemoryStore:
    def __init__(self) -> None:
        self._rows: dict[str, list[StoredRow]] = {}
        self._keys: dict[str, list[RowPosition]] = {}

    def put(self, meter: str, rows: Sequence[StoredRow]) -> None:
        merged = sorted([*self._rows.get(meter, []), *rows], key=lambda r: r.position)
        self._rows[meter] = merged
        self._keys[meter] = [r.position for r in merged]

    def read(self, meter, start, end, *, after=None, limit=None, reverse=False):
        rows, keys = self._rows.get(meter, []), self._keys.get(meter, [])
        lo = bisect.bisect_left(keys, RowPosition(start, -(2**62), -(2**62)))
        hi = bisect.bisect_left(keys, RowPosition(end, -(2**62), -(2**62)))
        if after is not None:
            if reverse:
                hi = min(hi, bisect.bisect_left(keys, after))
            else:
                lo = max(lo, bisect.bisect_right(keys, after))
        if reverse:
            picked = rows[lo:hi][::-1]
        else:
            picked = rows[lo:hi]
        return picked if limit is None else picked[:limit]

    def extent(self, meter):
        rows = self._rows.get(meter)
        return (rows[0], rows[-1]) if rows else None

    def row_count(self, meter):
        return len(self._rows.get(meter, []))

    def series(self, meter):
        return tuple(Series(s, meter, "x", 0) for s in sorted({r.series_id for r in self._rows.get(meter, [])}))

    def close(self):
        pass
