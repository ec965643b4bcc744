"""Processed history: every aggregate of OPC 10000-13 v1.05, sans-IO.

Pure functions over raw points ``(time_ms, value, status)`` (times in milliseconds,
StatusCodes as plain ints, see :mod:`.status`); no asyncua, no I/O. The OPC UA layer
(ReadProcessed) maps names/NodeIds and errors; the store layer feeds pages of rows.

    status.py     StatusCode values and the historian bits (one place)
    _window.py    the streaming window over pages, AggregateConfiguration, and the
                  bounding values of Part 13 5.4 (interpolated and simple bounds)
    _engine.py    the interval loop and the 37 aggregate functions
    catalogue.py  supported aggregates with their ns=0 NodeIds

Streaming: :func:`process` pulls rows from the page iterator only as far as the current
interval needs (up to the first Good row after it) and drops rows older than the second
last Good row before the next interval, so a ten-year query at a daily interval holds
about one day of rows (reverse order holds the results, one per interval, not the rows).
The one exception is a stretch without any Good row: the late bound is the next Good row,
so the window reads ahead to it (an iterator cannot seek).

Conformance: tests/history/test_aggregate_conformance.py runs all 159 tables of Part 13
Annex A (our fixture, converted by tools/convert_aggregate_examples.py); where the file
contradicts Part 13 the test lists each value with the reason.

Rules worth knowing (Part 13 and the Annex A data):

* Raw ``BadNoData`` points are archive placeholders ("no data yet"), not values: ignored.
* TreatUncertainAsBad: Uncertain raw values count as Bad for calculations, and Uncertain
  time counts as Bad in the time-based status (Part 13 5.4.3.2.1).
* Interpolated bounds skip Bad data (the bound becomes UncertainDataSubNormal); simple
  bounds use the raw points next to the boundary: sloped between them when both are
  Good, stepped (the earlier value with its quality) otherwise.
* TimeAverage and Total always draw sloped lines between points, also for stepped
  variables (Part 13 v1.05 5.4.3.6, Mantis 5210); TimeAverage2/Total2 follow Stepped.
* Average, Count, Delta, Minimum..Range and the statistics use Good raw values only
  (Uncertain values make the result UncertainDataSubNormal, they are not used).
* Intervals after the end of data are BadNoData (no extrapolation of whole intervals).
* AnnotationCount counts the annotation times given to :func:`process` (Part 13
  5.4.3.20), not raw values; with no annotation history the OPC UA layer may rather
  answer BadAggregateNotSupported for it.
* Reverse order (end before start) keeps the half-open ``[start, end)`` membership of raw
  points of the forward computation; only the alignment and the order change.

Energy counters (datalog kWh registers):

* The consumption of an interval is **DeltaBounds**: the simple end bound minus the
  simple start bound (interpolated between the readings around each boundary), so
  consecutive intervals add up to the counter difference over the whole range.
  **Delta** is the last minus the first Good raw value *inside* the interval: it misses
  the energy between the last reading before and the first reading inside.
* A counter that goes back (meter replaced, counter reset) is no consumption. The store
  keeps each meter identity in its own series; callers compute per series (a series
  boundary splits). Within one series, a negative DeltaBounds or Delta over an interval
  is returned as ``Bad`` (0x80000000) with the Calculated bit and no value, when the
  request asks for counter semantics (``counter=True`` in :func:`process`): a reset is
  reported, never a huge negative consumption.
"""

from ._engine import AggregateInvalidInputs, AggregateNotSupported, ProcessedValue, process
from ._window import AggregateConfiguration, AggregateConfigurationRejected
from .catalogue import NODE_IDS, SUPPORTED_AGGREGATES, aggregate_name

__all__ = ["AggregateConfiguration", "AggregateConfigurationRejected",
           "AggregateInvalidInputs", "AggregateNotSupported",
           "NODE_IDS", "ProcessedValue", "SUPPORTED_AGGREGATES", "aggregate_name", "process"]
