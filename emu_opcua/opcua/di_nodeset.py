"""The DI types emu-opcua uses, as a NodeSet2 of the DI namespace, generated from facts.

OPC 10000-100 (Devices) defines software update as an AddIn, ``SoftwareUpdateType``,
with loading, installation and confirmation parts. asyncua ships no DI nodeset, and we
copy no third-party XML: this module states the facts of the part we use (the official
numeric node ids, browse names, data types, modelling rules and method arguments of the
DI namespace ``http://opcfoundation.org/UA/DI/``) and writes them as
``emu_opcua/nodesets/DI.SoftwareUpdate.NodeSet2.xml`` (``python -m
emu_opcua.opcua.di_nodeset``). A client sees the standard's ids, so a generic DI update
client finds its way.

What is defined: SoftwareUpdateType (Loading, Installation, Confirmation, UpdateStatus,
VendorErrorCode), SoftwareLoadingType, PackageLoadingType, CachedLoadingType,
SoftwareVersionType, InstallationStateMachineType (Idle, Installing, Error),
ConfirmationStateMachineType (NotWaitingForConfirm, WaitingForConfirm), the
SoftwareVersionFileType enumeration and the UpdateBehavior option set. Left out (we do
not offer them): PrepareForUpdate, PowerCycle, Parameters, DirectLoading and
FileSystemLoading, the state machines' transition objects.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from attrs import frozen

from emu_opcua.opcua.nodeset_xml import NodeSetWriter, add_extension_object, add_texts, n, t, write_or_check

DI_NAMESPACE_URI = "http://opcfoundation.org/UA/DI/"
DI_MODEL_VERSION = "1.04.0"  # the subset follows DI 1.04
PUBLICATION_DATE = "2025-01-01T00:00:00Z"  # ours: fixed so regenerating gives the same bytes
NODESET_PATH = Path(__file__).resolve().parent.parent / "nodesets" / "DI.SoftwareUpdate.NodeSet2.xml"

# --- the facts: DI numeric ids (namespace index 1 in the file) -----------------------------
SOFTWARE_UPDATE_TYPE = 1
SOFTWARE_LOADING_TYPE = 135
PACKAGE_LOADING_TYPE = 137
CACHED_LOADING_TYPE = 171
SOFTWARE_VERSION_TYPE = 212
INSTALLATION_STATE_MACHINE_TYPE = 249
CONFIRMATION_STATE_MACHINE_TYPE = 307
SOFTWARE_VERSION_FILE_TYPE = 331
UPDATE_BEHAVIOR = 333
#: StateNumber of each state (InstallationStateMachineType, ConfirmationStateMachineType)
INSTALLATION_STATES = {"Idle": (271, 272, 1), "Installing": (273, 274, 2), "Error": (275, 276, 3)}
CONFIRMATION_STATES = {"NotWaitingForConfirm": (323, 324, 1), "WaitingForConfirm": (325, 326, 2)}
#: SoftwareVersionFileType values (GenerateFileForWrite's generateOptions)
SOFTWARE_VERSION_FILE = ("Current", "Pending", "Fallback")
#: UpdateBehavior bits
UPDATE_BEHAVIOR_BITS = ("KeysPreserved", "WillDisconnect", "RequiresPowerCycle", "WillReboot", "NeedsPreparation")
KEYS_PRESERVED, WILL_DISCONNECT, REQUIRES_POWER_CYCLE, WILL_REBOOT, NEEDS_PREPARATION = (1 << i for i in range(5))

# ns=0 ids
I_BYTE, I_INT32, I_UINT32, I_STRING, I_DATETIME, I_BYTESTRING = 3, 6, 7, 12, 13, 15
I_LOCALIZED_TEXT, I_QUALIFIED_NAME, I_DURATION, I_ARGUMENT, I_ENUMERATION, I_OPTION_SET_UINT32 = 21, 20, 290, 296, 29, 7
I_BASE_OBJECT_TYPE, I_BASE_DATA_VARIABLE_TYPE, I_PROPERTY_TYPE = 58, 63, 68
I_FINITE_STATE_MACHINE_TYPE, I_STATE_TYPE, I_INITIAL_STATE_TYPE = 2771, 2307, 2309
I_TEMPORARY_FILE_TRANSFER_TYPE = 15744
I_MANDATORY, I_OPTIONAL = 78, 80
I_ARGUMENT_XML = 297


@frozen
class Arg:
    name: str
    datatype: int
    value_rank: int = -1  # 1: an array


@frozen
class Child:
    """One member of a type: ``kind`` object, variable, property or method."""

    id: int
    browse: str
    kind: str
    modelling: int  # I_MANDATORY or I_OPTIONAL
    type_definition: int | None = None  # objects: their type (ns=1 unless ``ns0``)
    datatype: int | None = None  # variables: ns=0 data type
    value_rank: int = -1
    ns0_type: bool = False  # the type definition is in namespace 0
    inputs: tuple[Arg, ...] = ()
    input_args_id: int | None = None
    outputs: tuple[Arg, ...] = ()
    output_args_id: int | None = None
    children: tuple[Child, ...] = ()  # an object child's own members (instance declarations)


def _version_children(base: dict[str, int]) -> tuple[Child, ...]:
    return (
        Child(base["Manufacturer"], "Manufacturer", "property", I_MANDATORY, datatype=I_LOCALIZED_TEXT),
        Child(base["ManufacturerUri"], "ManufacturerUri", "property", I_MANDATORY, datatype=I_STRING),
        Child(base["SoftwareRevision"], "SoftwareRevision", "property", I_MANDATORY, datatype=I_STRING),
        Child(base["PatchIdentifiers"], "PatchIdentifiers", "property", I_OPTIONAL, datatype=I_STRING, value_rank=1),
        Child(base["ReleaseDate"], "ReleaseDate", "property", I_OPTIONAL, datatype=I_DATETIME),
        Child(base["ChangeLogReference"], "ChangeLogReference", "property", I_OPTIONAL, datatype=I_STRING),
        Child(base["Hash"], "Hash", "property", I_OPTIONAL, datatype=I_BYTESTRING),
    )


_VERSION_NAMES = ("Manufacturer", "ManufacturerUri", "SoftwareRevision", "PatchIdentifiers", "ReleaseDate",
                  "ChangeLogReference", "Hash")


def _ids(first: int) -> dict[str, int]:
    return {name: first + i for i, name in enumerate(_VERSION_NAMES)}


VERSION_ARGS = (Arg("ManufacturerUri", I_STRING), Arg("SoftwareRevision", I_STRING),
                Arg("PatchIdentifiers", I_STRING, 1))


@frozen
class ObjectTypeFacts:
    id: int
    browse: str
    base: int
    base_ns0: bool
    abstract: bool
    children: tuple[Child, ...]


OBJECT_TYPES: tuple[ObjectTypeFacts, ...] = (
    ObjectTypeFacts(SOFTWARE_UPDATE_TYPE, "SoftwareUpdateType", I_BASE_OBJECT_TYPE, True, False, (
        Child(2, "Loading", "object", I_OPTIONAL, SOFTWARE_LOADING_TYPE),
        Child(40, "Installation", "object", I_OPTIONAL, INSTALLATION_STATE_MACHINE_TYPE),
        Child(98, "Confirmation", "object", I_OPTIONAL, CONFIRMATION_STATE_MACHINE_TYPE),
        Child(133, "UpdateStatus", "variable", I_OPTIONAL, datatype=I_LOCALIZED_TEXT),
        Child(402, "VendorErrorCode", "variable", I_OPTIONAL, datatype=I_INT32),
    )),
    ObjectTypeFacts(SOFTWARE_LOADING_TYPE, "SoftwareLoadingType", I_BASE_OBJECT_TYPE, True, True, ()),
    ObjectTypeFacts(PACKAGE_LOADING_TYPE, "PackageLoadingType", SOFTWARE_LOADING_TYPE, False, True, (
        Child(139, "CurrentVersion", "object", I_MANDATORY, SOFTWARE_VERSION_TYPE),
        Child(140, "FileTransfer", "object", I_MANDATORY, I_TEMPORARY_FILE_TRANSFER_TYPE, ns0_type=True),
        Child(151, "ErrorMessage", "variable", I_MANDATORY, datatype=I_LOCALIZED_TEXT),
        Child(152, "WriteBlockSize", "property", I_OPTIONAL, datatype=I_UINT32),
    )),
    ObjectTypeFacts(CACHED_LOADING_TYPE, "CachedLoadingType", PACKAGE_LOADING_TYPE, False, False, (
        Child(187, "PendingVersion", "object", I_MANDATORY, SOFTWARE_VERSION_TYPE),
        Child(188, "FallbackVersion", "object", I_OPTIONAL, SOFTWARE_VERSION_TYPE),
        Child(189, "GetUpdateBehavior", "method", I_MANDATORY, inputs=VERSION_ARGS, input_args_id=190,
              outputs=(Arg("UpdateBehavior", UPDATE_BEHAVIOR),), output_args_id=191),
    )),
    ObjectTypeFacts(SOFTWARE_VERSION_TYPE, "SoftwareVersionType", I_BASE_OBJECT_TYPE, True, False,
                    _version_children(_ids(380))),
    ObjectTypeFacts(INSTALLATION_STATE_MACHINE_TYPE, "InstallationStateMachineType",
                    I_FINITE_STATE_MACHINE_TYPE, True, False, (
        Child(263, "PercentComplete", "variable", I_OPTIONAL, datatype=I_BYTE),
        Child(264, "InstallationDelay", "variable", I_OPTIONAL, datatype=I_DURATION),
        Child(265, "InstallSoftwarePackage", "method", I_OPTIONAL,
              inputs=VERSION_ARGS + (Arg("Hash", I_BYTESTRING),), input_args_id=266),
        Child(270, "Resume", "method", I_MANDATORY),
    )),
    ObjectTypeFacts(CONFIRMATION_STATE_MACHINE_TYPE, "ConfirmationStateMachineType",
                    I_FINITE_STATE_MACHINE_TYPE, True, False, (
        Child(321, "Confirm", "method", I_MANDATORY),
        Child(322, "ConfirmationTimeout", "variable", I_MANDATORY, datatype=I_DURATION),
    )),
)
#: UpdateBehavior's data type id is not a ns=0 id: the method's output names it in ns=1
_NS1_DATATYPES = {UPDATE_BEHAVIOR}

# --- XML ------------------------------------------------------------------------------------


def _ref(i: int, ns0: bool = False) -> str:
    return f"i={i}" if ns0 else f"ns=1;i={i}"


def _writer() -> NodeSetWriter:
    return NodeSetWriter(DI_NAMESPACE_URI, DI_MODEL_VERSION, PUBLICATION_DATE)


def _node(w: NodeSetWriter, tag: str, node_id: str, browse: str, refs: list[tuple[str, str, bool]],
          attrs: dict[str, str] | None = None, browse_ns: int = 1) -> ET.Element:
    """A DI node: its browse name is its only DisplayName (no locale), no Description."""
    return w.node(tag, node_id, browse, [(None, browse)], refs, attrs, browse_ns=browse_ns)


HAS_COMPONENT, HAS_PROPERTY, HAS_SUBTYPE = "i=47", "i=46", "i=45"
HAS_TYPE_DEFINITION, HAS_MODELLING_RULE = "i=40", "i=37"


def _datatype(i: int) -> str:
    return _ref(i) if i in _NS1_DATATYPES else _ref(i, ns0=True)


def _arguments(w: NodeSetWriter, node_id: int, name: str, parent: str, args: tuple[Arg, ...]) -> None:
    var = _node(w, "UAVariable", _ref(node_id), name,
                [(HAS_TYPE_DEFINITION, _ref(I_PROPERTY_TYPE, True), True),
                 (HAS_MODELLING_RULE, _ref(I_MANDATORY, True), True), (HAS_PROPERTY, parent, False)],
                {"ParentNodeId": parent, "DataType": "i=296", "ValueRank": "1", "ArrayDimensions": str(len(args))},
                browse_ns=0)
    values = ET.SubElement(ET.SubElement(var, n("Value")), t("ListOfExtensionObject"))
    for arg in args:
        body = add_extension_object(values, I_ARGUMENT_XML, "Argument")
        ET.SubElement(body, t("Name")).text = arg.name
        ET.SubElement(ET.SubElement(body, t("DataType")), t("Identifier")).text = _datatype(arg.datatype)
        ET.SubElement(body, t("ValueRank")).text = str(arg.value_rank)
        ET.SubElement(body, t("ArrayDimensions"))
        ET.SubElement(body, t("Description"))


def _child(w: NodeSetWriter, child: Child, parent: str) -> None:
    node_id = _ref(child.id)
    back = HAS_PROPERTY if child.kind == "property" else HAS_COMPONENT
    rule = (HAS_MODELLING_RULE, _ref(child.modelling, True), True)
    if child.kind == "object":
        _node(w, "UAObject", node_id, child.browse,
              [(HAS_TYPE_DEFINITION, _ref(child.type_definition, child.ns0_type), True), rule,
               (back, parent, False)], {"ParentNodeId": parent})
    elif child.kind in ("variable", "property"):
        type_def = I_PROPERTY_TYPE if child.kind == "property" else I_BASE_DATA_VARIABLE_TYPE
        attrs = {"ParentNodeId": parent, "DataType": _datatype(child.datatype)}
        if child.value_rank != -1:
            attrs["ValueRank"] = str(child.value_rank)
        _node(w, "UAVariable", node_id, child.browse,
              [(HAS_TYPE_DEFINITION, _ref(type_def, True), True), rule, (back, parent, False)], attrs)
    else:
        refs = [rule, (HAS_COMPONENT, parent, False)]
        if child.input_args_id:
            refs.append((HAS_PROPERTY, _ref(child.input_args_id), True))
        if child.output_args_id:
            refs.append((HAS_PROPERTY, _ref(child.output_args_id), True))
        _node(w, "UAMethod", node_id, child.browse, refs, {"ParentNodeId": parent})
        if child.inputs:
            _arguments(w, child.input_args_id, "InputArguments", node_id, child.inputs)
        if child.outputs:
            _arguments(w, child.output_args_id, "OutputArguments", node_id, child.outputs)


def _names_property(w: NodeSetWriter, node_id: int, browse: str, data_type: int, names: tuple[str, ...]) -> None:
    """A data type's EnumStrings or OptionSetValues: its value names, a LocalizedText array."""
    prop = _node(w, "UAVariable", _ref(node_id), browse,
                 [(HAS_TYPE_DEFINITION, _ref(I_PROPERTY_TYPE, True), True),
                  (HAS_MODELLING_RULE, _ref(I_MANDATORY, True), True),
                  (HAS_PROPERTY, _ref(data_type), False)],
                 {"ParentNodeId": _ref(data_type), "DataType": "i=21", "ValueRank": "1",
                  "ArrayDimensions": str(len(names))}, browse_ns=0)
    add_texts(prop, names)


def generate() -> bytes:
    w = _writer()
    # SoftwareVersionFileType (an enumeration) and UpdateBehavior (an option set of UInt32)
    enum = _node(w, "UADataType", _ref(SOFTWARE_VERSION_FILE_TYPE), "SoftwareVersionFileType",
                 [(HAS_SUBTYPE, _ref(I_ENUMERATION, True), False), (HAS_PROPERTY, _ref(332), True)])
    definition = ET.SubElement(enum, n("Definition"), {"Name": "1:SoftwareVersionFileType"})
    for value, name in enumerate(SOFTWARE_VERSION_FILE):
        ET.SubElement(definition, n("Field"), {"Name": name, "Value": str(value)})
    _names_property(w, 332, "EnumStrings", SOFTWARE_VERSION_FILE_TYPE, SOFTWARE_VERSION_FILE)
    _node(w, "UADataType", _ref(UPDATE_BEHAVIOR), "UpdateBehavior",
          [(HAS_SUBTYPE, _ref(I_OPTION_SET_UINT32, True), False), (HAS_PROPERTY, _ref(388), True)])
    # (no Definition: a UInt32 option set is described by its OptionSetValues alone)
    _names_property(w, 388, "OptionSetValues", UPDATE_BEHAVIOR, UPDATE_BEHAVIOR_BITS)

    for facts in OBJECT_TYPES:
        type_id = _ref(facts.id)
        refs = [(HAS_SUBTYPE, _ref(facts.base, facts.base_ns0), False)]
        refs += [(HAS_PROPERTY if c.kind == "property" else HAS_COMPONENT, _ref(c.id), True) for c in facts.children]
        states = {INSTALLATION_STATE_MACHINE_TYPE: INSTALLATION_STATES,
                  CONFIRMATION_STATE_MACHINE_TYPE: CONFIRMATION_STATES}.get(facts.id, {})
        refs += [(HAS_COMPONENT, _ref(ids[0]), True) for ids in states.values()]
        _node(w, "UAObjectType", type_id, facts.browse, refs, {"IsAbstract": "true"} if facts.abstract else None)
        for child in facts.children:
            _child(w, child, type_id)
        for i, (name, (state_id, number_id, number)) in enumerate(states.items()):
            _node(w, "UAObject", _ref(state_id), name,
                  [(HAS_TYPE_DEFINITION, _ref(I_INITIAL_STATE_TYPE if i == 0 else I_STATE_TYPE, True), True),
                   (HAS_PROPERTY, _ref(number_id), True), (HAS_COMPONENT, type_id, False)],
                  {"ParentNodeId": type_id})
            num = _node(w, "UAVariable", _ref(number_id), "StateNumber",
                        [(HAS_TYPE_DEFINITION, _ref(I_PROPERTY_TYPE, True), True),
                         (HAS_MODELLING_RULE, _ref(I_MANDATORY, True), True),
                         (HAS_PROPERTY, _ref(state_id), False)],
                        {"ParentNodeId": _ref(state_id), "DataType": "i=7"}, browse_ns=0)
            ET.SubElement(ET.SubElement(num, n("Value")), t("UInt32")).text = str(number)
    return w.to_bytes()


def main(argv: list[str] | None = None) -> int:
    """Rewrite the committed NodeSet2 file (``--check``: only compare, exit 1 if stale)."""
    return write_or_check(NODESET_PATH, generate(), "emu_opcua.opcua.di_nodeset",
                          sys.argv[1:] if argv is None else argv)

if __name__ == "__main__":
    sys.exit(main())
