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
generated from) instead of asyncua's generic ``instantiate``: the first meter of a build
in one AddNodes batch, every other meter as a copy of it (:class:`_Template`) that shares
with it every object a client cannot tell apart. Same nodes, browse names, references,
attribute values and type definitions; a thousand meters take ~0.25 MB each (asyncua's
own per-node objects: ~0.6 MB) and build in ~3 s instead of ~50 s (``bench/bench_model.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path

from asyncua import Server, ua
from asyncua.common.node import Node
from asyncua.server.address_space import AddressSpace, AttributeValue, NodeData
from attrs import frozen

from emu_opcua.history import raw
from emu_opcua.opcua import history as hist
from emu_opcua.opcua import nodeset as ns
from emu_opcua.opcua.nodeset import Group, Member
from emu_opcua.opcua.sampling import CONSTANT_MS, UpdateGroup, UpdateRates, update_group

FOLDER_NAME = "Meters"
#: Adds nodes below the first meter (server, meter name, meter object) -> the node ids added.
AddInBuilder = Callable[[Server, str, ua.NodeId], Awaitable[Sequence[ua.NodeId]]]
#: Names a meter may carry: usable in a string node id with "." as separator.
METER_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: Names taken by nodes of the nodeset itself (a meter so named would collide).
RESERVED_NAMES = frozenset({FOLDER_NAME, ns.TYPE_NAME, ns.DEVICE_HEALTH_TYPE, *ns.EVENT_TYPE_BY_NAME})

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
    #: catalogue code -> node id of the HA Configuration of each historized variable
    history: Mapping[str, ua.NodeId] = {}


class MeterModel:
    """The meters' nodes in a server's address space; built by :meth:`build`."""

    def __init__(self, server: Server, namespace_index: int, folder: ua.NodeId,
                 meters: Mapping[str, MeterNodes]) -> None:
        self.server = server
        self.namespace_index = namespace_index
        self.folder = folder
        self.meters: Mapping[str, MeterNodes] = meters

    @classmethod
    async def build(cls, server: Server, meters: Sequence[str], *, extremes: bool = True,
                    history: bool = False,
                    update_rates: Mapping[str, UpdateRates] | None = None,
                    add_ins: Sequence[AddInBuilder] = ()) -> MeterModel:
        """Create ``Objects/Meters/<meter>`` for every name (importing the nodeset if needed).

        ``server`` must be initialised (``await server.init()``); it need not be started.
        ``extremes=False`` leaves out the optional Extremes members. ``history=True`` makes
        every quantity the datalog carries a historized variable with its HA Configuration
        (``emu_opcua.opcua.history``; the history service answers for them).
        ``update_rates``: each meter's poll intervals, for its variables'
        MinimumSamplingInterval (default: the default poll settings).
        ``add_ins``: builders of nodes below each meter that are not in EmuMeterType (the DI
        SoftwareUpdate AddIn): each is called once, for the first meter, and the template then
        copies what it added for every other meter, with the same sharing; their node ids must
        start with ``<meter>.``.
        """
        rates = update_rates or {}
        default_rates = UpdateRates()
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
        built: dict[str, MeterNodes] = {}
        if not names:
            if items:
                await add_nodes(server, items)
            return cls(server, idx, folder, built)
        # The first meter through asyncua's AddNodes (with the folder, if new): the template.
        waiting: list[ua.NodeId] = []
        groups: dict[ua.NodeId, UpdateGroup] = {}
        start = len(items)
        references: list[ua.AddReferencesItem] = []
        first = _meter_items(names[0], idx, folder, items, waiting, extremes, history, references,
                             rates.get(names[0], default_rates), groups)
        await add_nodes(server, items)
        await _add_references(server, references)
        dv = ua.DataValue(StatusCode=_WAITING)
        for node_id in waiting:
            await server.write_attribute_value(node_id, dv)
        template_ids = [item.RequestedNewNodeId for item in items[start:]]
        for add_in in add_ins:
            added = await add_in(server, names[0], first.object)
            prefix = names[0] + "."
            if any(not node_id.Identifier.startswith(prefix) for node_id in added):
                raise ValueError(f"an add-in's node ids must start with {prefix!r}")
            template_ids += added
        template = _Template(server.iserver.aspace, idx, folder, first, template_ids, groups)
        del items
        built[names[0]] = template.install(names[0], rates.get(names[0], default_rates))
        for name in names[1:]:
            # one meter at a time, yielding in between: a server already running keeps
            # answering while a large fleet is added
            await asyncio.sleep(0)
            built[name] = template.install(name, rates.get(name, default_rates))
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
                  | ua.NodeAttributesMask.UserAccessLevel | ua.NodeAttributesMask.Historizing
                  | ua.NodeAttributesMask.MinimumSamplingInterval)


def _variable(node_id: ua.NodeId, parent: ua.NodeId, ref: int, browse: ua.QualifiedName,
              display: ua.LocalizedText, description: ua.LocalizedText, datatype: ua.NodeId,
              value: ua.Variant, type_definition: int, value_rank: int = -1,
              historized: bool = False, minimum_sampling: float = CONSTANT_MS) -> ua.AddNodesItem:
    access, user_access, historizing = hist.historized_access() if historized else (_READ, _READ, False)
    attrs = ua.VariableAttributes(DisplayName=display, Description=description, Value=value,
                                  DataType=datatype, ValueRank=value_rank, AccessLevel=access,
                                  UserAccessLevel=user_access, Historizing=historizing,
                                  MinimumSamplingInterval=minimum_sampling)
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


def _meter_texts(name: str, idx: int) -> tuple[ua.QualifiedName, ua.LocalizedText, ua.LocalizedText]:
    """A meter object's BrowseName, DisplayName and Description."""
    return (ua.QualifiedName(name, idx), ua.LocalizedText(name),
            ua.LocalizedText(f"EMU Professional II meter {name}", "en"))


def _meter_items(name: str, idx: int, folder: ua.NodeId, items: list[ua.AddNodesItem],
                 waiting: list[ua.NodeId], extremes: bool, history: bool = False,
                 references: list[ua.AddReferencesItem] | None = None, rates: UpdateRates = UpdateRates(),
                 groups: dict[ua.NodeId, UpdateGroup] | None = None) -> MeterNodes:
    """The AddNodes items of one meter (into ``items``; with ``history`` the references
    of its historized variables to the HA Configurations shared among them, into
    ``references``, to add after the nodes; ``groups`` (if given) gets each member's
    update group)."""
    meter_id = ua.NodeId(name, idx)
    browse, display, description = _meter_texts(name, idx)
    items.append(_object(meter_id, folder, ua.ObjectIds.Organizes, browse, display, description.Text,
                         ua.NodeId(ns.TYPE_NAME, idx)))
    found: dict[str, dict] = {g.browse_name: {} for g in ns.TYPE_GROUPS}
    quantities: dict[str, ua.NodeId] = {}
    extreme_ids: dict[tuple[str, str], ua.NodeId] = {}
    configurations: dict[str, ua.NodeId] = {}  # code -> HA Configuration
    shared_configurations: dict[bool, ua.NodeId] = {}  # stepped -> HA Configuration
    for group in ns.TYPE_GROUPS:
        group_id = ua.NodeId(node_id_string(name, group.browse_name), idx)
        items.append(_object(group_id, meter_id, ua.ObjectIds.HasComponent,
                             ua.QualifiedName(group.browse_name, idx),
                             ua.LocalizedText(group.display_en, "en"), group.description_en,
                             ua.NodeId(ua.ObjectIds.FolderType)))
        for member in _instantiated(group, extremes):
            member_id = ua.NodeId(node_id_string(name, group.browse_name, member.browse_name), idx)
            initial = _initial_value(member)
            update = update_group(group, member)
            if groups is not None:
                groups[member_id] = update
            if initial is None:
                waiting.append(member_id)
            historized = (history and member.extreme is None and member.quantity is not None
                          and member.quantity.code in hist.HISTORIZED)
            items.append(_variable(
                member_id, group_id,
                ua.ObjectIds.HasProperty if member.kind == "property" else ua.ObjectIds.HasComponent,
                ua.QualifiedName(member.browse_name, idx),
                ua.LocalizedText(member.display_en, "en"), ua.LocalizedText(member.description_en, "en"),
                _datatype(member, idx), initial if initial is not None else ua.Variant(),
                ns.member_type_definition(member), historized=historized,
                minimum_sampling=rates.interval(update)))
            if member.kind == "analog":
                _analog_properties(member, member_id, items)
            if historized:
                stepped = raw.stepped(member.quantity)
                config = shared_configurations.get(stepped)
                if config is None:
                    config_items = hist.configuration_items(member_id, name, stepped)
                    items.extend(config_items)
                    config = shared_configurations[stepped] = config_items[0].RequestedNewNodeId
                    if references is not None:
                        references.extend(hist.configuration_function_references(config))
                else:
                    if references is None:
                        raise ValueError("history needs a list for the references")
                    references.extend(hist.configuration_references(member_id, config))
                configurations[member.quantity.code] = config
            if member.extreme is not None and member.quantity is not None:
                extreme_ids[(member.quantity.code, member.extreme)] = member_id
            elif member.quantity is not None:
                quantities[member.quantity.code] = member_id
            found[group.browse_name][member.browse_name] = member_id
    return MeterNodes(name=name, object=meter_id, identification=found["Identification"],
                      configuration=found["Configuration"], quantities=quantities,
                      extremes=extreme_ids, diagnostics=found["Diagnostics"], history=configurations)


#: Properties whose Value is fixed by the model (the same for every meter).
_STATIC_VALUES = (".EngineeringUnits", ".EURange")
_NODE_ID = ua.AttributeIds.NodeId
_VALUE = ua.AttributeIds.Value
_BROWSE_NAME = ua.AttributeIds.BrowseName
_DISPLAY_NAME = ua.AttributeIds.DisplayName
_DESCRIPTION = ua.AttributeIds.Description
_MINIMUM_SAMPLING_INTERVAL = ua.AttributeIds.MinimumSamplingInterval


async def add_nodes(server: Server, items: list[ua.AddNodesItem]) -> None:
    """asyncua's AddNodes, raising ValueError naming the first node it refused."""
    results = await server.get_objects_node().session.add_nodes(items)
    for item, result in zip(items, results):
        if not result.StatusCode.is_good():
            raise ValueError(f"cannot add node {item.RequestedNewNodeId}: {result.StatusCode.name}")


async def _add_references(server: Server, references: list[ua.AddReferencesItem]) -> None:
    if not references:
        return
    results = await server.get_objects_node().session.add_references(references)
    for item, result in zip(references, results):
        if not result.is_good():
            raise ValueError(f"cannot add reference {item.SourceNodeId} -> {item.TargetNodeId}: {result.name}")


def _read_node_id(node_id: ua.NodeId, attr: ua.AttributeIds) -> ua.DataValue:
    """The NodeId attribute of every meter node (``value_callback`` of one shared AttributeValue)."""
    return ua.DataValue(ua.Variant(node_id, ua.VariantType.NodeId))


def _refuse_write(node: NodeData, attr: ua.AttributeIds, value: ua.DataValue) -> None:
    """``value_setter`` of every shared AttributeValue: one node's write must not change all meters.

    asyncua lets an Admin session write any attribute (it does not look at WriteMask, 0 on
    our nodes); such a write is answered with BadNotWritable, as WriteMask promises.
    """
    raise ua.uaerrors.BadNotWritable()


class _Template:
    """One meter's nodes as asyncua's AddNodes made them, to make every meter's from.

    A meter has ~280 nodes, alike across meters but for their NodeIds and the Value of
    its live variables. asyncua keeps per node a NodeData, a dict of ~11 AttributeValue
    objects (each with its DataValue, Variant and callback dict) and a list of
    ReferenceDescription objects (each with NodeId, QualifiedName, LocalizedText,
    ExpandedNodeId objects): about 2 kB per node when every object is the node's own.
    :meth:`install` builds a meter's NodeData directly, sharing what a client cannot tell
    apart (measured with ``bench/bench_model.py``):

    - one AttributeValue per member and attribute for all meters, and for the NodeId
      attribute one AttributeValue for every node (its ``value_callback`` answers the
      node id asked for); only the Value of a live variable is each node's own, and its
      MinimumSamplingInterval is one AttributeValue per distinct interval (meters may
      poll at different rates, see ``sampling.py``);
    - nodes whose every attribute is static (the groups, EngineeringUnits, EURange) share
      the whole attribute dict across meters;
    - one ReferenceDescription for every reference to a node outside the meter
      (HasTypeDefinition, the meter's inverse Organizes), one per meter for the inverse
      references of siblings to their parent; the forward reference to each child is the
      child's own (it names its NodeId), its names and type definition shared.

    Lists of references and dicts of nodes with a live Value stay per node: asyncua
    appends to and removes from them, and ``write_attribute_value`` replaces the Value's
    DataValue in the node's own AttributeValue (where subscriptions hang their callbacks).
    Shared AttributeValues refuse writes (:func:`_refuse_write`) instead of changing every
    meter; a DataValue, QualifiedName, LocalizedText, NodeId or ReferenceDescription is
    never changed in place by asyncua's services. To give one node an attribute of its own
    (say AccessLevel with HistoryRead), put a new AttributeValue into its attribute dict,
    copying the dict first if the node is static. Not supported on shared attributes:
    ``set_attribute_value_callback`` / ``_setter`` (they would act on every meter); nor
    deleting a meter's static node while another meter's same attribute is monitored.
    """

    def __init__(self, aspace: AddressSpace, idx: int, folder: ua.NodeId, nodes: MeterNodes,
                 node_ids: Sequence[ua.NodeId], groups: Mapping[ua.NodeId, UpdateGroup]) -> None:
        self.aspace = aspace
        self.idx = idx
        self.name = nodes.name
        self.nodes = nodes
        self.node_ids = list(node_ids)
        self.folder = aspace[folder]
        cut = len(self.name)
        self.suffixes = [node_id.Identifier[cut:] for node_id in self.node_ids]  # "" for the meter
        index = {node_id: i for i, node_id in enumerate(self.node_ids)}
        self.index = index
        node_id_attribute = AttributeValue(None)
        node_id_attribute.value_callback = _read_node_id
        node_id_attribute.value_setter = _refuse_write
        canonical: dict[str, ua.ReferenceDescription] = {}

        def shared(ref: ua.ReferenceDescription) -> ua.ReferenceDescription:
            key = f"{ref!r}{type(ref.NodeId).__name__}{type(ref.TypeDefinition).__name__}"
            return canonical.setdefault(key, ref)

        #: MinimumSamplingInterval attributes, one per distinct interval (ms) for all meters
        self.sampling: dict[float, AttributeValue] = {}
        # per node: (attributes, kind, per-node Value or None, update group of a live
        # variable or None, [(reference, target index or -1)])
        self.recipes: list[tuple[dict, str, ua.DataValue | None, UpdateGroup | None,
                                 list[tuple[ua.ReferenceDescription, int]]]] = []
        for node_id, suffix in zip(self.node_ids, self.suffixes):
            data = aspace[node_id]
            attributes = dict(data.attributes)
            attributes[_NODE_ID] = node_id_attribute
            if not suffix:
                kind, own = "meter", (_BROWSE_NAME, _DISPLAY_NAME, _DESCRIPTION)
            # an HA Configuration's values are the same for every meter but its archive
            # start, which one callback answers per node id: static too
            elif _VALUE in attributes and not suffix.endswith(_STATIC_VALUES) \
                    and not hist.is_configuration_node(suffix):
                kind, own = "live", (_VALUE,)
            else:
                kind, own = "static", ()
            for attr, attval in attributes.items():
                if attr not in own:
                    attval.value_setter = _refuse_write
            value = attributes[_VALUE].value if kind == "live" else None
            refs = [(shared(ref), index.get(ref.NodeId, -1)) for ref in data.references]
            self.recipes.append((attributes, kind, value, groups.get(node_id) if kind == "live" else None, refs))
        meter_id = self.node_ids[0]
        self.folder_ref = shared(next(ref for ref in self.folder.references if ref.NodeId == meter_id))

    def _sampling(self, interval_ms: float) -> AttributeValue:
        attval = self.sampling.get(interval_ms)
        if attval is None:
            attval = self.sampling[interval_ms] = AttributeValue(
                ua.DataValue(ua.Variant(interval_ms, ua.VariantType.Double)))
            attval.value_setter = _refuse_write
        return attval

    def install(self, name: str, rates: UpdateRates) -> MeterNodes:
        """Put meter ``name``'s nodes into the address space (the template's own: replace them).

        ``rates``: the meter's poll intervals; each live variable's MinimumSamplingInterval
        is one shared per distinct interval (meters polled alike share it)."""
        idx, aspace = self.idx, self.aspace
        if name == self.name:
            node_ids = self.node_ids
        else:
            node_ids = [ua.NodeId(name + suffix, idx) for suffix in self.suffixes]
            for node_id in node_ids:
                if node_id in aspace:
                    raise ValueError(f"cannot add node {node_id}: BadNodeIdExists")
        browse, display, description = _meter_texts(name, idx)
        mapped: dict[int, ua.ReferenceDescription] = {}

        def reference(ref: ua.ReferenceDescription, target: int) -> ua.ReferenceDescription:
            new = mapped.get(id(ref))
            if new is None:
                meter = target == 0
                new = mapped[id(ref)] = ua.ReferenceDescription(
                    ReferenceTypeId=ref.ReferenceTypeId, IsForward=ref.IsForward, NodeId=node_ids[target],
                    BrowseName=browse if meter else ref.BrowseName,
                    DisplayName=display if meter else ref.DisplayName,
                    NodeClass=ref.NodeClass, TypeDefinition=ref.TypeDefinition)
            return new

        for node_id, (attributes, kind, value, group, refs) in zip(node_ids, self.recipes):
            data = NodeData(node_id)
            if kind == "static":
                data.attributes = attributes
            else:
                data.attributes = attributes = attributes.copy()
                if kind == "live":
                    attributes[_VALUE] = AttributeValue(value)
                    if group is not None:
                        attributes[_MINIMUM_SAMPLING_INTERVAL] = self._sampling(rates.interval(group))
                else:
                    attributes[_BROWSE_NAME] = AttributeValue(
                        ua.DataValue(ua.Variant(browse, ua.VariantType.QualifiedName)))
                    attributes[_DISPLAY_NAME] = AttributeValue(
                        ua.DataValue(ua.Variant(display, ua.VariantType.LocalizedText)))
                    attributes[_DESCRIPTION] = AttributeValue(
                        ua.DataValue(ua.Variant(description, ua.VariantType.LocalizedText)))
            data.references = [ref if target < 0 else reference(ref, target) for ref, target in refs]
            aspace[node_id] = data
        if name == self.name:
            return self.nodes
        self.folder.references.append(reference(self.folder_ref, 0))
        index = self.index

        def ids(mapping: Mapping) -> dict:
            return {key: node_ids[index[node_id]] for key, node_id in mapping.items()}

        t = self.nodes
        return MeterNodes(name=name, object=node_ids[0], identification=ids(t.identification),
                          configuration=ids(t.configuration), quantities=ids(t.quantities),
                          extremes=ids(t.extremes), diagnostics=ids(t.diagnostics), history=ids(t.history))


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
            ua.LocalizedText(ns.eu_description(member.unit)[0], "en"), ua.NodeId(ua.ObjectIds.EUInformation),
            ua.Variant(eu, ua.VariantType.ExtensionObject), ua.ObjectIds.PropertyType))
    if member.eu_range is not None:
        rng = ua.Range(Low=float(member.eu_range[0]), High=float(member.eu_range[1]))
        items.append(_variable(
            ua.NodeId(f"{base}.EURange", member_id.NamespaceIndex), member_id, ua.ObjectIds.HasProperty,
            ua.QualifiedName("EURange", 0), ua.LocalizedText("EURange", "en"),
            ua.LocalizedText(ns.EURANGE_DESCRIPTION[0], "en"), ua.NodeId(ua.ObjectIds.Range),
            ua.Variant(rng, ua.VariantType.ExtensionObject), ua.ObjectIds.PropertyType))
