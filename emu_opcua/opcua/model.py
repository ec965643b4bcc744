"""One EmuMeterType instance per meter, with node ids derived from names.

Node id scheme (all in our namespace, ``nodeset.NAMESPACE_URI``)::

    s=Meters                                        the folder below Objects
    s=<meter>                                       the meter object (EmuMeterType)
    s=<meter>.<Group>                               Identification, Configuration, ...
    s=<meter>.<Group>.<Member>                      e.g. boiler.Measurements.AcActivePowerTotal
    s=<meter>.<Group>.<Member>.EngineeringUnits     (and .EURange) of analog items

Ids depend only on the meter name and the catalogue's browse names, never on creation
order, so a client's saved node ids survive restarts and reordered configurations.

Nodes are created from ``nodeset.TYPE_GROUPS`` (the description the NodeSet2 file is
generated from) in one AddNodes batch instead of asyncua's generic ``instantiate``: same
browse names and type definitions, a fraction of the time for a thousand meters.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from asyncua import Server, ua
from asyncua.common.node import Node
from attrs import frozen

from emu_opcua.opcua import nodeset as ns
from emu_opcua.opcua.nodeset import Group, Member

FOLDER_NAME = "Meters"
#: Names a meter may carry: usable in a string node id with "." as separator.
METER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Names taken by nodes of the nodeset itself (a meter so named would collide).
RESERVED_NAMES = frozenset({FOLDER_NAME, ns.TYPE_NAME, ns.DEVICE_HEALTH_TYPE})

_WAITING = ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)
_READ = ua.AccessLevel.CurrentRead.mask  # HistoryRead is added where history is served


def check_meter_name(name: str) -> str | None:
    """Why ``name`` cannot be a meter name, or None when it can."""
    if not METER_NAME_RE.match(name):
        return "must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'"
    if name in RESERVED_NAMES:
        return f"{name!r} is reserved"
    return None


def node_id_string(meter: str, *path: str) -> str:
    """The string identifier of a meter's node: ``node_id_string("boiler", "Measurements", "AcFrequency")``."""
    return ".".join((meter, *path))


async def import_nodeset(server: Server, path: Path | str = ns.NODESET_PATH) -> int:
    """Import the EmuMeter NodeSet2 file (once) and return our namespace index."""
    uris = await server.get_namespace_array()
    if ns.NAMESPACE_URI not in uris or not await _type_exists(server, uris.index(ns.NAMESPACE_URI)):
        await server.import_xml(str(path))
    return await server.get_namespace_index(ns.NAMESPACE_URI)


async def _type_exists(server: Server, idx: int) -> bool:
    try:
        await server.get_node(ua.NodeId(ns.TYPE_NAME, idx)).read_browse_name()
    except ua.UaError:
        return False
    return True


@frozen
class MeterNodes:
    """The node ids of one meter's instance."""

    name: str
    object: ua.NodeId
    identification: Mapping[str, ua.NodeId]  # browse name -> node id
    configuration: Mapping[str, ua.NodeId]  # browse name -> node id
    quantities: Mapping[str, ua.NodeId]  # catalogue code -> node id (measurements + diagnostic counts)
    extremes: Mapping[tuple[str, str], ua.NodeId]  # (code, "min"|"min_time"|"max"|"max_time") -> id
    diagnostics: Mapping[str, ua.NodeId]  # browse name -> node id


class MeterModel:
    """The meters' nodes in a server's address space; built by :meth:`build`."""

    def __init__(self, server: Server, namespace_index: int, folder: ua.NodeId,
                 meters: Mapping[str, MeterNodes]) -> None:
        self.server = server
        self.namespace_index = namespace_index
        self.folder = folder
        self.meters: Mapping[str, MeterNodes] = meters

    @classmethod
    async def build(cls, server: Server, meters: Sequence[str], *, extremes: bool = True) -> MeterModel:
        """Create ``Objects/Meters/<meter>`` for every name (importing the nodeset if needed).

        ``server`` must be initialised (``await server.init()``); it need not be started.
        ``extremes=False`` leaves out the optional Extremes members.
        """
        names = list(meters)
        for name in names:
            if (why := check_meter_name(name)) is not None:
                raise ValueError(f"meter name {name!r}: {why}")
        if len(set(names)) != len(names):
            raise ValueError("meter names must be unique")
        idx = await import_nodeset(server)
        folder = ua.NodeId(FOLDER_NAME, idx)
        items: list[ua.AddNodesItem] = []
        if not await _exists(server, folder):
            items.append(_object(folder, ua.NodeId(ua.ObjectIds.ObjectsFolder), ua.ObjectIds.Organizes,
                                 ua.QualifiedName(FOLDER_NAME, idx), ua.LocalizedText(FOLDER_NAME, "en"),
                                 "Every configured meter", ua.NodeId(ua.ObjectIds.FolderType)))
        session = server.get_objects_node().session
        dv = ua.DataValue(StatusCode=_WAITING)
        built: dict[str, MeterNodes] = {}
        shared: dict[tuple[str, int], object] = {}
        for name in names:
            # one AddNodes batch per meter, yielding in between: a server already running
            # keeps answering while a large fleet is added
            waiting: list[ua.NodeId] = []
            built[name] = _meter_items(name, idx, folder, items, waiting, extremes)
            results = await session.add_nodes(items)
            for item, result in zip(items, results):
                if not result.StatusCode.is_good():
                    raise ValueError(f"cannot add node {item.RequestedNewNodeId}: {result.StatusCode.name}")
            for node_id in waiting:
                await server.write_attribute_value(node_id, dv)
            _share_static_attributes(server, name, [item.RequestedNewNodeId for item in items], shared)
            items = []
            await asyncio.sleep(0)
        return cls(server, idx, folder, built)

    # --- look-ups for the publisher ------------------------------------------------------
    def quantity(self, meter: str, code: str) -> ua.NodeId:
        """Node of a catalogue quantity (a measurement, or a diagnostic count like power_fail_count)."""
        return self.meters[meter].quantities[code]

    def extreme(self, meter: str, code: str, which: str) -> ua.NodeId:
        """``which``: "min", "min_time", "max" or "max_time"."""
        return self.meters[meter].extremes[(code, which)]

    def identification(self, meter: str, browse_name: str) -> ua.NodeId:
        return self.meters[meter].identification[browse_name]

    def configuration(self, meter: str, browse_name: str) -> ua.NodeId:
        return self.meters[meter].configuration[browse_name]

    def diagnostics(self, meter: str, browse_name: str) -> ua.NodeId:
        return self.meters[meter].diagnostics[browse_name]

    def node(self, node_id: ua.NodeId) -> Node:
        return self.server.get_node(node_id)

    def items(self) -> Iterable[tuple[tuple[str, str], ua.NodeId]]:
        """Every ((meter, quantity code), node id) pair."""
        for meter, nodes in self.meters.items():
            for code, node_id in nodes.quantities.items():
                yield (meter, code), node_id


async def _exists(server: Server, node_id: ua.NodeId) -> bool:
    try:
        await server.get_node(node_id).read_node_class()
    except ua.UaError:
        return False
    return True


def _object(node_id: ua.NodeId, parent: ua.NodeId, ref: int, browse: ua.QualifiedName,
            display: ua.LocalizedText, description: str, type_definition: ua.NodeId) -> ua.AddNodesItem:
    attrs = ua.ObjectAttributes(DisplayName=display, Description=ua.LocalizedText(description, "en"),
                                EventNotifier=0)
    attrs.SpecifiedAttributes = (ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.Description
                                 | ua.NodeAttributesMask.EventNotifier)
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=ua.NodeId(ref), RequestedNewNodeId=node_id,
                           BrowseName=browse, NodeClass=ua.NodeClass.Object, NodeAttributes=attrs,
                           TypeDefinition=type_definition)


_VARIABLE_MASK = (ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.Description
                  | ua.NodeAttributesMask.Value | ua.NodeAttributesMask.DataType
                  | ua.NodeAttributesMask.ValueRank | ua.NodeAttributesMask.AccessLevel
                  | ua.NodeAttributesMask.UserAccessLevel | ua.NodeAttributesMask.Historizing)


def _variable(node_id: ua.NodeId, parent: ua.NodeId, ref: int, browse: ua.QualifiedName,
              display: ua.LocalizedText, description: ua.LocalizedText, datatype: ua.NodeId,
              value: ua.Variant, type_definition: int, value_rank: int = -1) -> ua.AddNodesItem:
    attrs = ua.VariableAttributes(DisplayName=display, Description=description, Value=value,
                                  DataType=datatype, ValueRank=value_rank, AccessLevel=_READ,
                                  UserAccessLevel=_READ, Historizing=False)
    attrs.SpecifiedAttributes = _VARIABLE_MASK
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=ua.NodeId(ref), RequestedNewNodeId=node_id,
                           BrowseName=browse, NodeClass=ua.NodeClass.Variable, NodeAttributes=attrs,
                           TypeDefinition=ua.NodeId(type_definition))


def _datatype(member: Member, idx: int) -> ua.NodeId:
    return ua.NodeId(member.datatype) if isinstance(member.datatype, int) else ua.NodeId(member.datatype, idx)


def _initial_value(member: Member) -> ua.Variant | None:
    """A value known at build time, or None (the variable then waits for its first poll)."""
    if member.browse_name == "Manufacturer":
        return ua.Variant(ua.LocalizedText(ns.MANUFACTURER), ua.VariantType.LocalizedText)
    if member.browse_name == "Model":
        return ua.Variant(ua.LocalizedText(ns.MODEL_NAME), ua.VariantType.LocalizedText)
    return None


def _meter_items(name: str, idx: int, folder: ua.NodeId, items: list[ua.AddNodesItem],
                 waiting: list[ua.NodeId], extremes: bool) -> MeterNodes:
    meter_id = ua.NodeId(name, idx)
    items.append(_object(meter_id, folder, ua.ObjectIds.Organizes, ua.QualifiedName(name, idx),
                         ua.LocalizedText(name), f"EMU Professional II meter {name}",
                         ua.NodeId(ns.TYPE_NAME, idx)))
    found: dict[str, dict] = {g.browse_name: {} for g in ns.TYPE_GROUPS}
    quantities: dict[str, ua.NodeId] = {}
    extreme_ids: dict[tuple[str, str], ua.NodeId] = {}
    for group in ns.TYPE_GROUPS:
        group_id = ua.NodeId(node_id_string(name, group.browse_name), idx)
        items.append(_object(group_id, meter_id, ua.ObjectIds.HasComponent,
                             ua.QualifiedName(group.browse_name, idx),
                             ua.LocalizedText(group.display_en, "en"), group.description_en,
                             ua.NodeId(ua.ObjectIds.FolderType)))
        for member in _instantiated(group, extremes):
            member_id = ua.NodeId(node_id_string(name, group.browse_name, member.browse_name), idx)
            initial = _initial_value(member)
            if initial is None:
                waiting.append(member_id)
            items.append(_variable(
                member_id, group_id,
                ua.ObjectIds.HasProperty if member.kind == "property" else ua.ObjectIds.HasComponent,
                ua.QualifiedName(member.browse_name, idx),
                ua.LocalizedText(member.display_en, "en"), ua.LocalizedText(member.description_en, "en"),
                _datatype(member, idx), initial if initial is not None else ua.Variant(),
                ns.member_type_definition(member)))
            if member.kind == "analog":
                _analog_properties(member, member_id, items)
            if member.extreme is not None and member.quantity is not None:
                extreme_ids[(member.quantity.code, member.extreme)] = member_id
            elif member.quantity is not None:
                quantities[member.quantity.code] = member_id
            found[group.browse_name][member.browse_name] = member_id
    return MeterNodes(name=name, object=meter_id, identification=found["Identification"],
                      configuration=found["Configuration"], quantities=quantities,
                      extremes=extreme_ids, diagnostics=found["Diagnostics"])


#: Properties whose Value is fixed by the model (the same for every meter).
_STATIC_VALUES = (".EngineeringUnits", ".EURange")


def _share_static_attributes(server: Server, meter: str, node_ids: Sequence[ua.NodeId],
                             shared: dict[tuple[str, int], object]) -> None:
    """Let every meter's node use one attribute object per member for what never changes.

    asyncua keeps ~12 attribute objects (DataValue, Variant, callback dict) per node; a
    meter has ~280 nodes, all alike across meters but for their NodeId and live Value.
    Sharing the static ones (DisplayName, Description, DataType, AccessLevel, ...; and
    the Value of EngineeringUnits / EURange) cuts the model's memory per meter by more
    than half. Safe because those attributes are never written: WriteMask is 0 and the
    publisher writes only Value attributes of live variables; a shared attribute is only
    taken when its value equals the first meter's.
    """
    aspace = server.iserver.aspace
    prefix = len(meter) + 1
    node_id_attr, value_attr = ua.AttributeIds.NodeId, ua.AttributeIds.Value
    for node_id in node_ids:
        path = node_id.Identifier[prefix:] if isinstance(node_id.Identifier, str) \
            and node_id.Identifier.startswith(meter + ".") else None
        if not path:
            continue  # the meter object (its names are its own) or the Meters folder
        data = aspace.get(node_id)
        if data is None:
            continue
        static_value = path.endswith(_STATIC_VALUES)
        attributes = data.attributes
        for attr, attval in attributes.items():
            if attr == node_id_attr or (attr == value_attr and not static_value):
                continue
            key = (path, attr)
            canon = shared.get(key)
            if canon is None:
                shared[key] = attval
            elif canon is not attval and canon.value.Value == attval.value.Value:
                attributes[attr] = canon


def _instantiated(group: Group, extremes: bool) -> Iterable[Member]:
    for member in group.members:
        if member.mandatory or (extremes and member.extreme is not None):
            yield member


def _analog_properties(member: Member, member_id: ua.NodeId, items: list[ua.AddNodesItem]) -> None:
    base = member_id.Identifier
    if member.unit is not None:
        eu = ua.EUInformation(NamespaceUri=ns.UNECE_NAMESPACE_URI, UnitId=member.unit.unece_id,
                              DisplayName=ua.LocalizedText(member.unit.symbol, "en"),
                              Description=ua.LocalizedText(member.unit.name_en, "en"))
        items.append(_variable(
            ua.NodeId(f"{base}.EngineeringUnits", member_id.NamespaceIndex), member_id, ua.ObjectIds.HasProperty,
            ua.QualifiedName("EngineeringUnits", 0), ua.LocalizedText("EngineeringUnits", "en"),
            ua.LocalizedText(f"Unit: {member.unit.name_en}", "en"), ua.NodeId(ua.ObjectIds.EUInformation),
            ua.Variant(eu, ua.VariantType.ExtensionObject), ua.ObjectIds.PropertyType))
    if member.eu_range is not None:
        rng = ua.Range(Low=float(member.eu_range[0]), High=float(member.eu_range[1]))
        items.append(_variable(
            ua.NodeId(f"{base}.EURange", member_id.NamespaceIndex), member_id, ua.ObjectIds.HasProperty,
            ua.QualifiedName("EURange", 0), ua.LocalizedText("EURange", "en"),
            ua.LocalizedText("Range the value normally lies in", "en"), ua.NodeId(ua.ObjectIds.Range),
            ua.Variant(rng, ua.VariantType.ExtensionObject), ua.ObjectIds.PropertyType))
