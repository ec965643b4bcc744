"""History: the meter's own datalog made durable, gap-free OPC UA history.

What lives here (no asyncua in this package; the OPC UA mapping of history is in
``emu_opcua.opcua``):

    store.py     THE history store interface (:class:`HistoryStore`) and its value
                 classes: series, stored rows, positions, sync state blobs
    sqlite.py    the default backend: one SQLite file under the data directory (WAL,
                 one writer thread, rows and sync state committed in one transaction)
    sync.py      datalog sync planning, sans-IO: which index range to fetch next, how
                 to treat a wrap, an index reset, a replaced meter, a clock change
    syncer.py    the I/O driver of sync: pages from the meter's HTTP client into the
                 store, throttled fleet-wide
    raw.py       sans-IO raw/at-time read rules of OPC 10000-11 over store rows
                 (bounds, direction, interpolation), used by the OPC UA history service

The sibling work adds ``aggregates/`` (OPC 10000-13, sans-IO) and logbook events on the
same store.
"""
