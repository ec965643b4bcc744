"""HistoryRead processed (ReadProcessedDetails) on asyncua: the request mapped to
:mod:`emu_opcua.history.processed` (the math is there and in ``history.aggregates``).

- **Aggregates.** ``AggregateType`` has one NodeId per NodeToRead (OPC 10000-11 6.4.4.1):
  another count is Bad_AggregateListMismatch for every node; an aggregate that is not one
  of the 37 ``AggregateFunction_*`` objects of ns=0 we compute, Bad_AggregateNotSupported
  for that node. AnnotationCount is served: the datalog has no annotations, so every
  interval counts 0 (Part 13 5.4.3.20 counts annotations, not values).
- **AggregateConfiguration.** UseServerCapabilitiesDefaults true: the values of the
  node's HA Configuration (its AggregateConfiguration object, OPC 10000-13 defaults);
  false: the request's TreatUncertainAsBad, PercentDataBad/Good, UseSlopedExtrapolation.
  Percentages over 100: Bad_AggregateConfigurationRejected.
- **Times.** StartTime and EndTime must both be given (else Bad_InvalidTimestampArgument);
  end before start returns the intervals latest first; ProcessingInterval 0 is one
  interval over the range; start == end or a negative interval:
  Bad_AggregateInvalidInputs. Intervals align to StartTime (a client wanting local days
  passes its local midnight in UTC).
- **Pages.** At most MaxReturnDataValues intervals per node and answer, then a
  continuation point (the next interval's offset, the same rules as raw reads).
- **Counters.** Energy registers are read with counter semantics and the meter's series
  changes (``emu_opcua.history.processed``); DeltaBounds, StartBound and EndBound read only
  the bounding rows from the store.
- **Values.** Count, AnnotationCount and NumberOfTransitions are Int32, WorstQuality(2)
  StatusCode, everything else Double, encoded straight to bytes like raw pages.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from asyncua import ua

from emu_opcua.history import processed as pr
from emu_opcua.history.aggregates import (
    NODE_IDS,
    SUPPORTED_AGGREGATES,
    AggregateConfiguration,
    AggregateConfigurationRejected,
    AggregateInvalidInputs,
    AggregateNotSupported,
    aggregate_name,
)
from emu_opcua.history.raw import KIND_PROCESSED, ContinuationState, StatusCodes, stepped

if TYPE_CHECKING:
    from emu_opcua.opcua.history import HistoryService

_SC = ua.StatusCodes
#: Aggregates whose values are not Double (OPC 10000-13 5.4.3: Count, AnnotationCount,
#: NumberOfTransitions Int32; WorstQuality, WorstQuality2 StatusCode)
_INT32 = frozenset({"Count", "AnnotationCount", "NumberOfTransitions"})
_STATUS = frozenset({"WorstQuality", "WorstQuality2"})
_CONFIG_NAMES = ("TreatUncertainAsBad", "PercentDataBad", "PercentDataGood", "UseSlopedExtrapolation")


def aggregate_function_ids() -> list[ua.NodeId]:
    """The ns=0 AggregateFunction objects of every aggregate served, in NodeId order."""
    return [ua.NodeId(NODE_IDS[name]) for name in SUPPORTED_AGGREGATES]


def _aggregate(node_id: ua.NodeId) -> str | int:
    """The aggregate's name, or the StatusCode why it is not served."""
    if node_id.NamespaceIndex != 0 or not isinstance(node_id.Identifier, int):
        return _SC.BadAggregateNotSupported
    try:
        return aggregate_name(node_id.Identifier)
    except AggregateNotSupported:
        return _SC.BadAggregateNotSupported


class _Job:
    __slots__ = ("node_id", "meter", "converter", "aggregate", "config", "request", "offset", "fingerprint",
                 "page", "error")

    def __init__(self, node_id: ua.NodeId) -> None:
        self.node_id = node_id
        self.meter: str | None = None
        self.converter = None
        self.aggregate = ""
        self.config: AggregateConfiguration | None = None
        self.request: pr.ProcessedRequest | None = None
        self.offset = 0
        self.fingerprint = b""
        self.page: Any = None
        self.error: int | None = None


def _node_config(service: HistoryService, meter: str, node_id: ua.NodeId) -> AggregateConfiguration:
    """The AggregateConfiguration of the node's HA Configuration (read from the address space)."""
    from emu_opcua.opcua.history import HA_CONFIGURATION  # one place for the node ids

    quantity = service.nodes[node_id][1].quantity
    base = f"{meter}.{HA_CONFIGURATION}.{'Stepped' if stepped(quantity) else 'Sloped'}.AggregateConfiguration"
    aspace = service.iserver.aspace
    values = []
    for name in _CONFIG_NAMES:
        dv = aspace.read_attribute_value(ua.NodeId(f"{base}.{name}", node_id.NamespaceIndex), ua.AttributeIds.Value)
        values.append(dv.Value.Value if dv.Value is not None else None)
    tuab, bad, good, sloped = values
    return AggregateConfiguration(treat_uncertain_as_bad=bool(tuab), percent_data_bad=int(bad),
                                  percent_data_good=int(good), use_sloped_extrapolation=bool(sloped))


def _request_config(config: ua.AggregateConfiguration) -> AggregateConfiguration:
    return AggregateConfiguration(treat_uncertain_as_bad=bool(config.TreatUncertainAsBad),
                                  percent_data_bad=int(config.PercentDataBad),
                                  percent_data_good=int(config.PercentDataGood),
                                  use_sloped_extrapolation=bool(config.UseSlopedExtrapolation))


def _data_values(aggregate: str, values, timestamps: ua.TimestampsToReturn) -> list[ua.DataValue]:
    from emu_opcua.opcua.history import _datetime

    vt = ua.VariantType.Int32 if aggregate in _INT32 else ua.VariantType.StatusCode
    source = timestamps != ua.TimestampsToReturn.Server
    server = timestamps != ua.TimestampsToReturn.Source
    out = []
    for t, v, s in values:
        when = _datetime(t)
        if v is None:
            variant = None
        elif vt is ua.VariantType.StatusCode:
            variant = ua.Variant(ua.StatusCode(int(v)), vt)
        else:
            variant = ua.Variant(int(v), vt)
        out.append(ua.DataValue(Value=variant, StatusCode=ua.StatusCode(s),
                                SourceTimestamp=when if source else None, ServerTimestamp=when if server else None))
    return out


async def read_processed(service: HistoryService, params: ua.HistoryReadParameters,
                         session: Any) -> list[ua.HistoryReadResult]:
    """The ReadProcessedDetails handler (registered with :meth:`HistoryService.register`)."""
    from emu_opcua.opcua.history import _fingerprint, _us

    details: ua.ReadProcessedDetails = params.HistoryReadDetails
    nodes = params.NodesToRead

    def every(code: int) -> list[ua.HistoryReadResult]:
        return [ua.HistoryReadResult(StatusCode=ua.StatusCode(code)) for _ in nodes]

    start, end = _us(details.StartTime), _us(details.EndTime)
    if start is None or end is None:
        return every(_SC.BadInvalidTimestampArgument)
    aggregates = list(details.AggregateType or ())
    if len(aggregates) != len(nodes):
        return every(_SC.BadAggregateListMismatch)
    interval = float(details.ProcessingInterval or 0.0)
    request_config = details.AggregateConfiguration or ua.AggregateConfiguration()
    use_defaults = bool(request_config.UseServerCapabilitiesDefaults)
    if not use_defaults:
        try:
            own_config = _request_config(request_config)
        except AggregateConfigurationRejected:
            return every(_SC.BadAggregateConfigurationRejected)
    jobs = []
    for rv, aggregate_id in zip(nodes, aggregates):
        job = _Job(rv.NodeId)
        jobs.append(job)
        found = service.resolve(rv.NodeId)
        if isinstance(found, int):
            job.error = found
            continue
        name = _aggregate(aggregate_id)
        if isinstance(name, int):
            job.error = name
            continue
        job.meter, job.converter = found
        job.aggregate = name
        job.config = _node_config(service, job.meter, rv.NodeId) if use_defaults else own_config
        try:
            job.request = pr.ProcessedRequest(name, start, end, interval, job.config)
        except AggregateInvalidInputs:
            job.error = _SC.BadAggregateInvalidInputs
            continue
        c = job.config
        job.fingerprint = _fingerprint(rv.NodeId, KIND_PROCESSED, start, end, interval, name,
                                       c.treat_uncertain_as_bad, c.percent_data_bad, c.percent_data_good,
                                       c.use_sloped_extrapolation)
        if rv.ContinuationPoint:
            state = service.take_point(session, rv.ContinuationPoint, KIND_PROCESSED, job.fingerprint)
            if state is None:
                job.error = _SC.BadContinuationPointInvalid
                continue
            job.offset = state.offset
    store = service.store
    max_values = service.max_values
    read_around = getattr(store, "read_around", None)
    read_tuples = getattr(store, "read_tuples", None)
    extents = getattr(store, "series_extents", None)

    def work() -> None:
        gaps: dict[str, list[tuple[int, int]]] = {}
        for job in jobs:
            if job.error is not None:
                continue
            request = job.request
            quantity = job.converter.quantity
            counter = quantity.group == "energy"
            columns = tuple(c - 5 for c in quantity.datalog.columns)  # CSV column -> raw index
            source = service.source(job.meter, columns)
            if counter and request.aggregate in pr.COUNTER_AGGREGATES and job.meter not in gaps:
                gaps[job.meter] = pr.series_gaps(extents(job.meter)) if extents is not None else []
            if read_around is not None:
                meter = job.meter

                def bounding(cuts, exact=False, meter=meter, columns=columns):
                    return read_around(meter, cuts, columns=columns, exact=exact)
            else:
                def bounding(cuts, exact=False, source=source):
                    return pr.bounding_rows(source, cuts)
            tuples = None
            if read_tuples is not None:
                def tuples(start, end, *, after=None, limit=None, reverse=False, meter=job.meter, columns=columns):
                    return read_tuples(meter, start, end, after=after, limit=limit, reverse=reverse, columns=columns)
            job.page = pr.read_processed(source, job.converter, request, limit=max_values, offset=job.offset,
                                         stepped=stepped(quantity), counter=counter,
                                         series_gaps=gaps.get(job.meter, ()), bounding=bounding, tuples=tuples)

    await service.run(work)
    results = []
    timestamps = params.TimestampsToReturn
    for job in jobs:
        if job.error is not None:
            results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode(job.error)))
            continue
        values, following = job.page
        point = None
        if following is not None:
            point = service.new_point(session, ContinuationState(KIND_PROCESSED, None, following, job.fingerprint,
                                                                 secrets.token_bytes(8)))
        if job.aggregate in _INT32 or job.aggregate in _STATUS:
            data: Any = ua.HistoryData(DataValues=_data_values(job.aggregate, values, timestamps))
        else:
            data = service.history_data(values, timestamps, session)
        status = StatusCodes.GOOD_NO_DATA if not values and point is None else StatusCodes.GOOD
        results.append(ua.HistoryReadResult(StatusCode=ua.StatusCode(status), ContinuationPoint=point,
                                            HistoryData=data))
    return results


def register(service: HistoryService) -> None:
    service.register(ua.ReadProcessedDetails, read_processed)


# --- the AggregateFunctions folders --------------------------------------------------------------
def folder_item(node_id: ua.NodeId, parent: ua.NodeId) -> ua.AddNodesItem:
    """An HA Configuration's ``AggregateFunctions`` folder (OPC 10000-13 4.2.2.1)."""
    attrs = ua.ObjectAttributes(DisplayName=ua.LocalizedText("AggregateFunctions", "en"), EventNotifier=0)
    attrs.SpecifiedAttributes = ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.EventNotifier
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
                           RequestedNewNodeId=node_id, BrowseName=ua.QualifiedName("AggregateFunctions", 0),
                           NodeClass=ua.NodeClass.Object, NodeAttributes=attrs,
                           TypeDefinition=ua.NodeId(ua.ObjectIds.FolderType))


def function_references(folder: ua.NodeId) -> list[ua.AddReferencesItem]:
    """HasComponent from ``folder`` to each AggregateFunction object served (forward only:
    the ns=0 objects do not list every folder naming them)."""
    ref = ua.NodeId(ua.ObjectIds.HasComponent)
    return [ua.AddReferencesItem(SourceNodeId=folder, ReferenceTypeId=ref, IsForward=True, TargetNodeId=target,
                                 TargetNodeClass=ua.NodeClass.Object) for target in aggregate_function_ids()]


#: The Server's two AggregateFunctions folders (ServerCapabilities, HistoryServerCapabilities).
SERVER_FOLDERS = (ua.ObjectIds.Server_ServerCapabilities_AggregateFunctions,
                  ua.ObjectIds.HistoryServerCapabilities_AggregateFunctions)


def server_function_references() -> list[ua.AddReferencesItem]:
    return [item for folder in SERVER_FOLDERS for item in function_references(ua.NodeId(folder))]
