"""The aggregates this engine computes, with their standard NodeIds.

Each is the ns=0 numeric id of the ``AggregateFunction_<name>`` object of OPC 10000-13
(the Server's AggregateFunctions folder lists them); tests/history/test_aggregates.py
checks the numbers against asyncua's ``ua.ObjectIds``.
"""

from __future__ import annotations

from types import MappingProxyType

from ._engine import FUNCTIONS, AggregateNotSupported

NODE_IDS = MappingProxyType({
    "Interpolative": 2341,
    "Average": 2342,
    "TimeAverage": 2343,
    "Total": 2344,
    "Minimum": 2346,
    "Maximum": 2347,
    "MinimumActualTime": 2348,
    "MaximumActualTime": 2349,
    "Range": 2350,
    "AnnotationCount": 2351,
    "Count": 2352,
    "NumberOfTransitions": 2355,
    "Start": 2357,
    "End": 2358,
    "Delta": 2359,
    "DurationGood": 2360,
    "DurationBad": 2361,
    "PercentGood": 2362,
    "PercentBad": 2363,
    "WorstQuality": 2364,
    "TimeAverage2": 11285,
    "Minimum2": 11286,
    "Maximum2": 11287,
    "Range2": 11288,
    "WorstQuality2": 11292,
    "Total2": 11304,
    "MinimumActualTime2": 11305,
    "MaximumActualTime2": 11306,
    "DurationInStateZero": 11307,
    "DurationInStateNonZero": 11308,
    "StandardDeviationSample": 11426,
    "StandardDeviationPopulation": 11427,
    "VarianceSample": 11428,
    "VariancePopulation": 11429,
    "StartBound": 11505,
    "EndBound": 11506,
    "DeltaBounds": 11507,
})

#: every supported aggregate name, in NodeId order
SUPPORTED_AGGREGATES: tuple[str, ...] = tuple(sorted(NODE_IDS, key=NODE_IDS.__getitem__))

_BY_NODE_ID = {node_id: name for name, node_id in NODE_IDS.items()}

assert set(NODE_IDS) == set(FUNCTIONS), "catalogue and engine disagree"


def aggregate_name(aggregate: str | int) -> str:
    """The aggregate's name from its name or its ns=0 numeric NodeId; raises
    :class:`AggregateNotSupported` for anything else."""
    if isinstance(aggregate, int) and not isinstance(aggregate, bool):
        try:
            return _BY_NODE_ID[aggregate]
        except KeyError:
            raise AggregateNotSupported(f"no supported aggregate has NodeId i={aggregate}") from None
    if aggregate in NODE_IDS:
        return aggregate
    raise AggregateNotSupported(f"aggregate {aggregate!r} is not supported")
