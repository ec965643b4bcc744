"""The default history store: one SQLite file (WAL, one writer), rows packed in chunks.

Layout
------
``series``      one row per :class:`~emu_opcua.history.store.Series`, with its row count
                and the widest time span of any of its chunks (``span``, see reading).
``chunk``       keyed ``(series_id, chunk_no)`` (unique index) where ``chunk_no =
                index // CHUNK_ROWS``: up to :data:`CHUNK_ROWS` consecutive indices of one
                series, with the smallest and largest timestamp in it (``t_min``,
                ``t_max``), the row count and the rows packed in one blob.
``sync_state``  the sync state of each meter (JSON), committed with the rows.
``event``       meter events (:mod:`emu_opcua.history.events`), unique per (meter, kind,
                key), found by (meter, time, seq); ``seq`` (the rowid) is the order
                they were stored. Events are rare (a few per meter and day): one SQLite
                row each, fields as JSON.
``logbook_state`` the logbook sync state of each meter (JSON), committed with its events.

Why chunks: a datalog row is 27 integers (timestamp, index, status, 24 columns); as one
SQLite row each, the record header and the varints alone take ~90 bytes. Packed per
column, each value as the zigzag delta from the previous row's, the bytes of the 64-bit
deltas split into planes (all lowest bytes first, ...) and deflated, a row takes ~25-35
bytes (``bench/bench_history.py`` measures it): counters rise by little per quarter
hour, timestamps by 900, the index by 1, the status is mostly 0. Packing uses only
C-level iteration (``map`` over :mod:`operator`, :func:`itertools.accumulate`, slices).

Reading a time range: a chunk holds rows with ``t_min <= timestamp <= t_max``; chunks are
found through the indexes ``(series_id, t_min)`` and ``(series_id, t_max)``, bounded on
both sides with the series' widest chunk span, so a read touches the chunks of its range
(and costs O(log n) to find them) however large the store grows. Timestamps inside a
series are not monotonic (a clock set back repeats them): a chunk's span covers that, and
rows are sorted by :class:`RowPosition` after decoding. A chunk's planes hold one column
after the other, so :meth:`SqliteHistoryStore.read_columns` decodes only the columns a
read asks for (a history read of one quantity: 4 of 27).

Threads: the store object may be shared between threads. Writes (``new_series``,
``append``, ``prune``) go through one connection under a lock (one writer at a time, as
SQLite wants); reads use one connection per thread, so readers never wait for the writer
(WAL). Each method is one transaction.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import json
import operator
import sqlite3
import threading
import zlib
from array import array
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from emu_opcua.errors import EmuError
from emu_opcua.history.events import MeterEvent
from emu_opcua.history.store import EventPosition, RowPosition, Series, StoredEvent, StoredRow
from emu_opcua.meter.datalog import RAW_COLUMNS, DatalogRow

__all__ = ["CHUNK_ROWS", "FILE_NAME", "SqliteHistoryStore", "StoreError"]

#: Consecutive indices per chunk (128 quarter hours: 32 h). Larger chunks pack better;
#: every append to the newest chunk rewrites it (~3 KB).
CHUNK_ROWS = 128
#: The store's file name under the data directory.
FILE_NAME = "history.sqlite"
#: Columns of a packed row: timestamp, index, status, the datalog's integer columns.
ROW_WIDTH = 3 + RAW_COLUMNS
_SCHEMA_VERSION = 1
_ALL_RAW = tuple(range(RAW_COLUMNS))
#: deflate level: 1 packs simulator rows ~4 % larger than 6 (24.8 / 23.8 bytes a row in
#: the blob) in half the time; every append rewrites the newest chunk, so it is paid often
_ZLIB_LEVEL = 1
#: Chunks are ~3 KB: with SQLite's default 4 KB pages one fits a page and a quarter of
#: each page is empty; 64 KB pages hold ~20 (bench_history: bytes per row).
PAGE_SIZE = 65536


class StoreError(EmuError):
    """The history store cannot be opened or is not one of ours."""


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    serial TEXT NOT NULL,
    first_index INTEGER NOT NULL,
    rows INTEGER NOT NULL DEFAULT 0,
    span INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS series_meter ON series (meter, id);
CREATE TABLE IF NOT EXISTS chunk (
    id INTEGER PRIMARY KEY,
    series_id INTEGER NOT NULL,
    chunk_no INTEGER NOT NULL,
    t_min INTEGER NOT NULL,
    t_max INTEGER NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS chunk_key ON chunk (series_id, chunk_no);
CREATE INDEX IF NOT EXISTS chunk_t_min ON chunk (series_id, t_min, t_max);
CREATE INDEX IF NOT EXISTS chunk_t_max ON chunk (series_id, t_max, t_min);
CREATE TABLE IF NOT EXISTS sync_state (meter TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event (
    seq INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    time INTEGER NOT NULL,
    message TEXT NOT NULL,
    fields TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS event_key ON event (meter, kind, key);
CREATE INDEX IF NOT EXISTS event_time ON event (meter, time, seq);
CREATE TABLE IF NOT EXISTS logbook_state (meter TEXT PRIMARY KEY, state TEXT NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('schema', '{_SCHEMA_VERSION}');
"""

# --- packing ------------------------------------------------------------------------------
_sub, _xor, _lshift, _rshift, _and, _neg, _or = (
    operator.sub, operator.xor, operator.lshift, operator.rshift, operator.and_, operator.neg, operator.or_)
_repeat = itertools.repeat
_accumulate = itertools.accumulate


def pack_rows(rows: Sequence[tuple[int, ...]]) -> bytes:
    """Pack rows (each ``ROW_WIDTH`` integers, in index order) into one blob."""
    n = len(rows)
    if not n:
        return b""
    # every column after the other (column-major), each value less the one before it in
    # its column: one pass of C-level maps over the whole chunk
    flat = list(itertools.chain.from_iterable(zip(*rows)))
    prev = [0]
    prev += flat[:-1]
    prev[n::n] = _repeat(0, len(prev[n::n]))  # a column's first value: less 0
    deltas = list(map(_sub, flat, prev))
    try:
        zz = array("Q", map(_xor, map(_lshift, deltas, _repeat(1)), map(_rshift, deltas, _repeat(63))))
    except OverflowError:
        raise ValueError("a history value (or its difference to the previous row's) does not fit in 63 bits") from None
    raw = zz.tobytes()
    planes = b"".join([raw[i::8] for i in range(8)])
    return zlib.compress(planes, _ZLIB_LEVEL)


def unpack_rows(blob: bytes, n: int) -> list[tuple[int, ...]]:
    """The rows :func:`pack_rows` packed (``n`` of them)."""
    if not n:
        return []
    planes = zlib.decompress(blob)
    count = n * ROW_WIDTH
    if len(planes) != count * 8:
        raise StoreError(f"a history chunk is damaged ({len(planes)} bytes for {n} rows)")
    raw = bytearray(count * 8)
    for i in range(8):
        raw[i::8] = planes[i * count:(i + 1) * count]
    zz = array("Q")
    zz.frombytes(raw)
    deltas = list(map(_xor, map(_rshift, zz, _repeat(1)), map(_neg, map(_and, zz, _repeat(1)))))
    cols = [_accumulate(deltas[c * n:(c + 1) * n]) for c in range(ROW_WIDTH)]
    return list(zip(*cols))


def unpack_columns(blob: bytes, n: int, columns: Sequence[int]) -> list[list[int]]:
    """Only ``columns`` (positions in a packed row: 0 timestamp, 1 index, 2 status, 3..
    the datalog's columns) of the rows :func:`pack_rows` packed: each column is its own
    delta run, so the others need not be decoded (the blob is still inflated whole)."""
    if not n:
        return [[] for _ in columns]
    planes = zlib.decompress(blob)
    count = n * ROW_WIDTH
    if len(planes) != count * 8:
        raise StoreError(f"a history chunk is damaged ({len(planes)} bytes for {n} rows)")
    out = []
    zero = bytes(n)
    for c in columns:
        zz: list[int] | None = None
        for i in range(8):  # small deltas leave the high byte planes zero: skipped
            start = i * count + c * n
            plane = planes[start:start + n]
            if plane == zero:
                continue
            part = map(_lshift, plane, _repeat(8 * i)) if i else plane
            zz = list(part) if zz is None else list(map(_or, zz, part))
        if zz is None:
            out.append([0] * n)
            continue
        out.append(list(_accumulate(map(_xor, map(_rshift, zz, _repeat(1)), map(_neg, map(_and, zz, _repeat(1)))))))
    return out


def _sparse(columns: Sequence[int]):
    """values of ``columns`` -> a full raw tuple with 0 in the other columns."""
    if len(columns) == 1:
        (c,) = columns
        head, tail = (0,) * c, (0,) * (RAW_COLUMNS - c - 1)
        return lambda values: head + values + tail

    def full(values: tuple[int, ...]) -> tuple[int, ...]:
        raw = [0] * RAW_COLUMNS
        for c, v in zip(columns, values):
            raw[c] = v
        return tuple(raw)
    return full


def row_tuple(row: DatalogRow) -> tuple[int, ...]:
    """A parsed datalog row as the store packs it."""
    return (int(row.timestamp.timestamp()), row.index, int(row.status), *row.raw)


class SqliteHistoryStore:
    """:class:`~emu_opcua.history.store.HistoryStore` on one SQLite file.

    ``path`` is the database file (``data_dir / FILE_NAME`` by convention; parent
    directories are created). ``synchronous=NORMAL`` in WAL mode: a committed
    transaction survives a killed process (SIGKILL); a power cut may lose the last
    transactions but never corrupts the file, and sync refetches what is missing.
    """

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._synchronous = synchronous
        self._lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        try:
            self._writer = self._connect(new_page_size=PAGE_SIZE)
            self._writer.executescript(_SCHEMA)
            version = self._writer.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path}: not a usable history store ({exc})") from exc
        if int(version) != _SCHEMA_VERSION:
            raise StoreError(f"{self.path}: history store schema {version}, this version reads {_SCHEMA_VERSION}")

    @classmethod
    def in_directory(cls, data_dir: str | Path, **kwargs: Any) -> SqliteHistoryStore:
        return cls(Path(data_dir) / FILE_NAME, **kwargs)

    def _connect(self, new_page_size: int | None = None) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30.0)
        if new_page_size:  # before anything is written; an existing file keeps its own
            con.execute(f"PRAGMA page_size={new_page_size}")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute(f"PRAGMA synchronous={self._synchronous}")
        return con

    def _reader(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.path}: the history store is closed")
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._connect()
            con.execute("PRAGMA query_only=ON")
            self._local.con = con
            with self._lock:
                self._readers.append(con)
        return con

    # --- series and sync state ---------------------------------------------------------
    def series(self, meter: str) -> tuple[Series, ...]:
        rows = self._reader().execute(
            "SELECT id, meter, serial, first_index FROM series WHERE meter=? ORDER BY id", (meter,))
        return tuple(Series(*r) for r in rows)

    def meters(self) -> tuple[str, ...]:
        """Every meter with a series, by name."""
        return tuple(r[0] for r in self._reader().execute("SELECT DISTINCT meter FROM series ORDER BY meter"))

    def new_series(self, meter: str, serial: str, first_index: int,
                   sync_state: Mapping[str, Any] | None = None) -> Series:
        """Start a new series; ``sync_state``, when given, is committed with it, its
        ``series_id`` set to the new series' id (so a restart never finds a series its
        sync state does not know)."""
        with self._write() as con:
            cur = con.execute("INSERT INTO series (meter, serial, first_index) VALUES (?, ?, ?)",
                              (meter, serial, first_index))
            series = Series(cur.lastrowid, meter, serial, first_index)
            if sync_state is not None:
                self._put_state(con, meter, {**sync_state, "series_id": series.id})
        return series

    def sync_state(self, meter: str) -> Mapping[str, Any] | None:
        row = self._reader().execute("SELECT state FROM sync_state WHERE meter=?", (meter,)).fetchone()
        return None if row is None else json.loads(row[0])

    def append(self, series: Series, rows: Sequence[DatalogRow], sync_state: Mapping[str, Any],
               events: Sequence[MeterEvent] = ()) -> int:
        return self.append_tuples(series, [row_tuple(r) for r in rows], sync_state, events)

    def append_tuples(self, series: Series, rows: Sequence[tuple[int, ...]],
                      sync_state: Mapping[str, Any] | None, events: Sequence[MeterEvent] = ()) -> int:
        """:meth:`append` for rows already in packed form (:func:`row_tuple`)."""
        by_chunk: dict[int, list[tuple[int, ...]]] = {}
        for r in rows:
            if len(r) != ROW_WIDTH:
                raise ValueError(f"a history row has {ROW_WIDTH} integers, got {len(r)}")
            by_chunk.setdefault(r[1] // CHUNK_ROWS, []).append(r)
        added = 0
        with self._write() as con:
            sid = series.id
            span = 0
            for chunk_no, new in by_chunk.items():
                old = con.execute("SELECT n, data FROM chunk WHERE series_id=? AND chunk_no=?",
                                  (sid, chunk_no)).fetchone()
                merged = {r[1]: r for r in new}
                if old is None:
                    added += len(merged)
                else:
                    before = unpack_rows(old[1], old[0])
                    merged.update((r[1], r) for r in before)  # stored rows stay as they are
                    if len(merged) == len(before):
                        continue  # nothing new in this chunk
                    added += len(merged) - len(before)
                packed = sorted(merged.values(), key=operator.itemgetter(1))
                times = [r[0] for r in packed]
                t_min, t_max = min(times), max(times)
                span = max(span, t_max - t_min)
                con.execute("INSERT OR REPLACE INTO chunk (series_id, chunk_no, t_min, t_max, n, data) "
                            "VALUES (?, ?, ?, ?, ?, ?)",
                            (sid, chunk_no, t_min, t_max, len(packed), pack_rows(packed)))
            if added or span:
                con.execute("UPDATE series SET rows = rows + ?, span = max(span, ?) WHERE id=?",
                            (added, span, sid))
            if sync_state is not None:
                self._put_state(con, series.meter, sync_state)
            if events:
                self._put_events(con, events)
        return added

    def put_sync_state(self, meter: str, sync_state: Mapping[str, Any]) -> None:
        """Commit ``sync_state`` alone (a sync step that stored no rows)."""
        with self._write() as con:
            self._put_state(con, meter, sync_state)

    @staticmethod
    def _put_state(con: sqlite3.Connection, meter: str, state: Mapping[str, Any]) -> None:
        con.execute("INSERT OR REPLACE INTO sync_state VALUES (?, ?)", (meter, json.dumps(state, sort_keys=True)))

    # --- events -------------------------------------------------------------------------
    @staticmethod
    def _put_events(con: sqlite3.Connection, events: Sequence[MeterEvent]) -> list[MeterEvent]:
        new = []
        for e in events:
            cur = con.execute("INSERT OR IGNORE INTO event (meter, kind, key, time, message, fields) "
                              "VALUES (?, ?, ?, ?, ?, ?)",
                              (e.meter, e.kind, e.key, e.time, e.message, json.dumps(dict(e.fields), sort_keys=True)))
            if cur.rowcount:
                new.append(e)
        return new

    def add_events(self, events: Sequence[MeterEvent]) -> list[MeterEvent]:
        if not events:
            return []
        with self._write() as con:
            return self._put_events(con, events)

    def logbook_state(self, meter: str) -> Mapping[str, Any] | None:
        row = self._reader().execute("SELECT state FROM logbook_state WHERE meter=?", (meter,)).fetchone()
        return None if row is None else json.loads(row[0])

    def append_logbook(self, meter: str, events: Sequence[MeterEvent],
                       logbook_state: Mapping[str, Any]) -> list[MeterEvent]:
        with self._write() as con:
            new = self._put_events(con, events)
            con.execute("INSERT OR REPLACE INTO logbook_state VALUES (?, ?)",
                        (meter, json.dumps(logbook_state, sort_keys=True)))
        return new

    def read_events(self, meter: str, start: int, end: int, *, after: EventPosition | None = None,
                    limit: int | None = None, reverse: bool = False) -> list[StoredEvent]:
        if limit is not None and limit <= 0:
            return []
        sql = ["SELECT time, seq, kind, key, message, fields FROM event WHERE meter=? AND time >= ? AND time < ?"]
        args: list[Any] = [meter, start, end]
        if after is not None:
            sql.append("AND (time, seq) < (?, ?)" if reverse else "AND (time, seq) > (?, ?)")
            args += [after.time, after.seq]
        sql.append("ORDER BY time DESC, seq DESC" if reverse else "ORDER BY time, seq")
        if limit is not None:
            sql.append("LIMIT ?")
            args.append(limit)
        rows = self._reader().execute(" ".join(sql), args).fetchall()
        return [StoredEvent(EventPosition(t, seq), MeterEvent(meter, kind, t, key, message, json.loads(fields)))
                for t, seq, kind, key, message, fields in rows]

    def event_count(self, meter: str) -> int:
        return self._reader().execute("SELECT count(*) FROM event WHERE meter=?", (meter,)).fetchone()[0]

    # --- reading -----------------------------------------------------------------------
    def _series_spans(self, con: sqlite3.Connection, meter: str) -> list[tuple[int, int]]:
        return con.execute("SELECT id, span FROM series WHERE meter=? ORDER BY id", (meter,)).fetchall()

    def read(self, meter: str, start: int, end: int, *, after: RowPosition | None = None,
             limit: int | None = None, reverse: bool = False,
             columns: Sequence[int] | None = None) -> list[StoredRow]:
        """``columns``: only these datalog columns (indices into ``StoredRow.raw``) are
        decoded, the others read 0 (a processed read needs one quantity's: 3x cheaper)."""
        return [StoredRow(t, sid, idx, status, raw) for t, sid, idx, status, raw in
                self.read_tuples(meter, start, end, after=after, limit=limit, reverse=reverse, columns=columns)]

    def read_columns(self, meter: str, start: int, end: int, columns: Sequence[int], *,
                     after: RowPosition | None = None, limit: int | None = None,
                     reverse: bool = False) -> list[tuple[int, ...]]:
        """:meth:`read` decoding only the datalog columns ``columns`` (indices into
        :attr:`StoredRow.raw`): each row a tuple ``(timestamp, series_id, index, status,
        raw[c] for c in columns)``: a raw read needs one quantity's columns, and a row
        object costs as much as decoding its columns."""
        if limit is not None and limit <= 0:
            return []
        packed = (0, 1, 2, *(3 + c for c in columns))
        if any(not 3 <= c < ROW_WIDTH for c in packed[3:]):
            raise ValueError(f"datalog columns are 0..{RAW_COLUMNS - 1}, got {tuple(columns)}")
        con = self._reader()
        con.execute("BEGIN")  # one snapshot for every series and chunk
        try:
            return self._read_columns(con, meter, start, end, after, limit, reverse, packed)
        finally:
            con.execute("COMMIT")

    def _read_columns(self, con, meter, start, end, after, limit, reverse, packed) -> list[tuple[int, ...]]:
        lo, hi = start, end  # timestamps wanted: lo <= t < hi
        if after is not None:
            if reverse:
                hi = min(hi, after.timestamp + 1)
            else:
                lo = max(lo, after.timestamp)
        if lo >= hi:
            return []
        cursors = []
        for sid, span in self._series_spans(con, meter):
            if reverse:  # chunks by t_max descending: t_max >= lo, t_min < hi
                cur = con.execute(
                    "SELECT -t_max, t_min, t_max, series_id, n, data FROM chunk WHERE series_id=? "
                    "AND t_max >= ? AND t_max < ? AND t_min < ? ORDER BY t_max DESC",
                    (sid, lo, hi + span, hi))
            else:
                cur = con.execute(
                    "SELECT t_min, t_min, t_max, series_id, n, data FROM chunk WHERE series_id=? "
                    "AND t_min > ? AND t_min < ? AND t_max >= ? ORDER BY t_min",
                    (sid, lo - span - 1, hi, lo))
            cursors.append(cur)
        chunks = heapq.merge(*cursors, key=operator.itemgetter(0)) if len(cursors) > 1 else (
            cursors[0] if cursors else ())
        found: list[tuple[int, ...]] = []
        key_after = None if after is None else (after.timestamp, after.series_id, after.index)
        for order_key, t_min, t_max, sid, n, data in chunks:
            if limit is not None and len(found) >= limit:
                found.sort(reverse=reverse)
                del found[limit:]
                boundary = found[-1][0]
                # later chunks hold rows at or after (reverse: at or before) order_key
                if (not reverse and order_key > boundary) or (reverse and -order_key < boundary):
                    break
            ts, idx, *rest = unpack_columns(data, n, packed)
            rows = zip(ts, _repeat(sid), idx, *rest)
            if lo <= t_min and t_max < hi and (
                    key_after is None or (t_max < key_after[0] if reverse else t_min > key_after[0])):
                found.extend(rows)  # the whole chunk is wanted
                continue
            for r in rows:
                if lo <= r[0] < hi:
                    if key_after is not None and (r[:3] <= key_after if not reverse else r[:3] >= key_after):
                        continue
                    found.append(r)
        found.sort(reverse=reverse)
        if limit is not None:
            del found[limit:]
        return found

    def read_tuples(self, meter: str, start: int, end: int, *, after: RowPosition | None = None,
                    limit: int | None = None, reverse: bool = False,
                    columns: Sequence[int] | None = None) -> list[tuple[int, int, int, int, tuple[int, ...]]]:
        """:meth:`read` as plain ``(timestamp, series id, index, status, raw)`` tuples: for
        reads of many rows (building a StoredRow costs as much as decoding its columns)."""
        if limit is not None and limit <= 0:
            return []
        if columns is None:  # every column: status and the 24 raw ones follow the index
            packed = tuple(range(ROW_WIDTH))
            shape = lambda rest: rest  # noqa: E731
        else:
            packed = (0, 1, 2, *(3 + c for c in columns))
            sparse = _sparse(columns)
            shape = lambda rest: sparse(rest)  # noqa: E731
        con = self._reader()
        con.execute("BEGIN")  # one snapshot for every series and chunk
        try:
            found = self._read_columns(con, meter, start, end, after, limit, reverse, packed)
        finally:
            con.execute("COMMIT")
        return [(r[0], r[1], r[2], r[3], shape(r[4:])) for r in found]

    def read_around(self, meter: str, cuts: Sequence[int], *,
                    columns: Sequence[int] | None = None, exact: bool = False) -> list[StoredRow]:
        """For each cut (unix seconds): the last row with ``timestamp < cut`` and the first
        with ``timestamp >= cut`` (in :class:`RowPosition` order, every series); each row
        once, ascending. The same rows as two :meth:`read` calls per cut (limit 1, one of
        them reversed), but only the chunks holding them are decoded: the bounding values
        of processed reads (DeltaBounds over a month touches 2 chunks, not 23).

        ``columns``: only these datalog columns (indices into ``StoredRow.raw``) are
        decoded, the others read 0 in the rows returned (a processed read needs one
        quantity's; decoding all 27 columns of a chunk costs 6x more). ``exact``: where a
        row lies exactly at a cut, the row before it is not needed (simple bounding values
        take the row at the boundary) and its chunk is not decoded for it."""
        if not cuts:
            return []
        con = self._reader()
        con.execute("BEGIN")
        try:
            meta = con.execute(
                "SELECT c.id, c.t_min, c.t_max FROM chunk c JOIN series s ON c.series_id = s.id "
                "WHERE s.meter=?", (meter,)).fetchall()
            if not meta:
                return []
            span = max(t_max - t_min for _id, t_min, t_max in meta)
            by_min = sorted(meta, key=operator.itemgetter(1))
            mins = [m[1] for m in by_min]
            by_max = sorted(meta, key=operator.itemgetter(2))
            maxes = [m[2] for m in by_max]
            # chunk id -> (series id, its columns wanted, in RowPosition order), decoded once
            decoded: dict[int, tuple[int, list[list[int]]]] = {}
            wanted_columns = list(range(ROW_WIDTH)) if columns is None else [0, 1, 2, *(3 + c for c in columns)]
            found: dict[tuple[int, int, int], StoredRow] = {}

            def chunk(cid: int) -> tuple[int, list[list[int]]]:
                got = decoded.get(cid)
                if got is None:
                    sid, n, data = con.execute("SELECT series_id, n, data FROM chunk WHERE id=?", (cid,)).fetchone()
                    cols = unpack_columns(data, n, wanted_columns)
                    ts, idx = cols[0], cols[1]
                    if not all(map(operator.le, ts, ts[1:])):  # a clock set back: (timestamp, index) order
                        order = sorted(range(n), key=lambda j: (ts[j], idx[j]))
                        cols = [[col[j] for j in order] for col in cols]
                    got = decoded[cid] = (sid, cols)
                return got

            for cut in cuts:
                before = after = None  # (position key, columns, row number)

                def consider(cid: int) -> None:
                    nonlocal before, after
                    sid, cols = chunk(cid)
                    ts = cols[0]
                    i = bisect.bisect_left(ts, cut)
                    if i:
                        key = (ts[i - 1], sid, cols[1][i - 1])
                        if before is None or key > before[0]:
                            before = (key, cols, i - 1)
                    if i < len(ts):
                        key = (ts[i], sid, cols[1][i])
                        if after is None or key < after[0]:
                            after = (key, cols, i)

                # chunks holding rows on both sides of the cut (t_min < cut <= t_max) first
                for i in range(bisect.bisect_left(mins, cut - span), bisect.bisect_left(mins, cut)):
                    if by_min[i][2] >= cut:
                        consider(by_min[i][0])
                # then the chunk(s) starting first at or after the cut, and those ending
                # last before it, unless their rows cannot beat the rows already found (so
                # for the usual, ordered chunks one chunk per cut is decoded; two when a
                # chunk starts at the cut, unless ``exact``)
                i = bisect.bisect_left(mins, cut)
                first = mins[i] if i < len(mins) else None
                while i < len(mins) and mins[i] == first:
                    if after is None or first <= after[0][0]:
                        consider(by_min[i][0])
                    i += 1
                if not (exact and after is not None and after[0][0] == cut):
                    i = bisect.bisect_left(maxes, cut) - 1
                    last = maxes[i] if i >= 0 else None
                    while i >= 0 and maxes[i] == last:
                        if before is None or last >= before[0][0]:
                            consider(by_max[i][0])
                        i -= 1
                for pick in (before, after):
                    if pick is not None and pick[0] not in found:
                        key, cols, j = pick
                        if columns is None:
                            raw = tuple(col[j] for col in cols[3:])
                        else:
                            full = [0] * RAW_COLUMNS
                            for c, col in zip(columns, cols[3:]):
                                full[c] = col[j]
                            raw = tuple(full)
                        found[key] = StoredRow(key[0], key[1], key[2], cols[2][j], raw)
        finally:
            con.execute("COMMIT")
        return [found[k] for k in sorted(found)]

    def series_extents(self, meter: str) -> list[tuple[int, int, int]]:
        """(series id, oldest, newest row timestamp) of every series of ``meter`` with rows."""
        return self._reader().execute(
            "SELECT c.series_id, min(c.t_min), max(c.t_max) FROM chunk c JOIN series s ON c.series_id = s.id "
            "WHERE s.meter=? GROUP BY c.series_id ORDER BY c.series_id", (meter,)).fetchall()

    def extent(self, meter: str) -> tuple[StoredRow, StoredRow] | None:
        oldest = self.read(meter, -(1 << 62), 1 << 62, limit=1)
        if not oldest:
            return None
        newest = self.read(meter, -(1 << 62), 1 << 62, limit=1, reverse=True)
        return oldest[0], newest[0]

    def row_count(self, meter: str) -> int:
        row = self._reader().execute("SELECT coalesce(sum(rows), 0) FROM series WHERE meter=?", (meter,)).fetchone()
        return row[0]

    def series_row_count(self, series: Series) -> int:
        row = self._reader().execute("SELECT rows FROM series WHERE id=?", (series.id,)).fetchone()
        return 0 if row is None else row[0]

    def indices(self, series: Series) -> Iterator[int]:
        """Every stored index of ``series``, ascending (tests and consistency checks)."""
        con = self._reader()
        for n, data in con.execute("SELECT n, data FROM chunk WHERE series_id=? ORDER BY chunk_no", (series.id,)):
            for r in unpack_rows(data, n):
                yield r[1]

    # --- housekeeping ------------------------------------------------------------------
    def prune(self, before: int) -> int:
        removed = 0
        with self._write() as con:
            per_series: dict[int, int] = {}
            old = []
            for (sid,) in con.execute("SELECT id FROM series").fetchall():  # by index, never a table scan
                old += con.execute("SELECT series_id, chunk_no, t_max, n, data FROM chunk "
                                   "WHERE series_id=? AND t_min < ?", (sid, before)).fetchall()
            for sid, chunk_no, t_max, n, data in old:
                if t_max < before:
                    con.execute("DELETE FROM chunk WHERE series_id=? AND chunk_no=?", (sid, chunk_no))
                    gone = n
                else:
                    kept = [r for r in unpack_rows(data, n) if r[0] >= before]
                    gone = n - len(kept)
                    times = [r[0] for r in kept]
                    con.execute("UPDATE chunk SET t_min=?, t_max=?, n=?, data=? WHERE series_id=? AND chunk_no=?",
                                (min(times), max(times), len(kept), pack_rows(kept), sid, chunk_no))
                per_series[sid] = per_series.get(sid, 0) + gone
                removed += gone
            for sid, gone in per_series.items():
                con.execute("UPDATE series SET rows = rows - ? WHERE id=?", (gone, sid))
            con.execute("DELETE FROM event WHERE time < ?", (before,))
        return removed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for con in self._readers:
                con.close()
            self._readers.clear()
            self._writer.close()

    # --- transactions --------------------------------------------------------------------
    def _write(self) -> _WriteTransaction:
        if self._closed:
            raise StoreError(f"{self.path}: the history store is closed")
        return _WriteTransaction(self._lock, self._writer)


class _WriteTransaction:
    """``with``: the writer lock and one ``BEGIN IMMEDIATE`` ... ``COMMIT`` (or rollback)."""

    __slots__ = ("_lock", "_con")

    def __init__(self, lock: threading.Lock, con: sqlite3.Connection) -> None:
        self._lock = lock
        self._con = con

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._con.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._con

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._con.execute("ROLLBACK" if exc_type is not None else "COMMIT")
        finally:
            self._lock.release()
