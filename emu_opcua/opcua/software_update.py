"""DI SoftwareUpdate (OPC 10000-100, Cached Loading) on every meter: the OPC UA mapping.

Each meter object gets an AddIn ``DI:SoftwareUpdate`` (HasAddIn), typed by the DI
nodeset we generate (:mod:`emu_opcua.opcua.di_nodeset`)::

    <meter>/SoftwareUpdate                 DI:SoftwareUpdateType
      Loading                              DI:CachedLoadingType
        CurrentVersion / PendingVersion / FallbackVersion   DI:SoftwareVersionType
          Manufacturer, ManufacturerUri, SoftwareRevision, Hash   (slot 0 / slot 1)
        FileTransfer                       TemporaryFileTransferType (ns=0)
          GenerateFileForWrite, CloseAndCommit, ClientProcessingTimeout
        ErrorMessage
        GetUpdateBehavior
      Installation                         DI:InstallationStateMachineType
        CurrentState (Idle / Installing / Error), PercentComplete,
        InstallSoftwarePackage, Resume
      Confirmation                         DI:ConfirmationStateMachineType
        CurrentState (NotWaitingForConfirm / WaitingForConfirm), ConfirmationTimeout, Confirm
      UpdateStatus, VendorErrorCode
      UpdateFirmware (vendor: the whole sequence from one ByteString)
    FallbackVersion/Clear (vendor: erase slot 1)

How DI maps onto MCUboot (the module's bootloader): CloseAndCommit uploads the file into
slot 1, which becomes the PendingVersion; InstallSoftwarePackage is ``image test`` +
``reset`` + waiting until the meter answers again; Confirm is ``image confirm``; no
Confirm within ConfirmationTimeout and the gateway resets the module, which reverts.
After a confirmed update the old image stays in slot 1 as the FallbackVersion until
Clear erases it.

Methods are shared: the type's (or namespace 0's) method node is a component of every
meter's object, and the call is dispatched by its ObjectId, so a thousand meters add no
method nodes. The work runs in background tasks (a method returns at once; progress is
in variables a client subscribes to), one update per meter at a time. The steps
themselves are :class:`emu_opcua.firmware.updater.FirmwareUpdater`'s: this module maps.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from asyncua import Server, ua
from attrs import frozen

from emu_opcua.errors import EmuError
from emu_opcua.firmware.image import ImageInfo, InvalidImage
from emu_opcua.firmware.update import Phase, SlotState, running_slot, secondary_slot
from emu_opcua.firmware.updater import FirmwareUpdater, Progress
from emu_opcua.opcua import di_nodeset as di
from emu_opcua.opcua import nodeset as ns
from emu_opcua.opcua.model import add_nodes

log = logging.getLogger(__name__)

ADDIN_NAME = "SoftwareUpdate"
#: our subtypes of DI's SoftwareUpdateType and SoftwareVersionType, declaring the vendor
#: methods UpdateFirmware (the whole sequence in one call) and Clear (erase the fallback)
UPDATE_TYPE = "EmuSoftwareUpdateType"
FALLBACK_TYPE = "EmuFallbackVersionType"
MANUFACTURER_URI = "urn:emu-elektronik:tcp-module"
DI_NODESET_PATH = di.NODESET_PATH
#: The largest image a client may write (a slot of the module).
MAX_IMAGE_SIZE = 0x40000
#: Seconds a client has between GenerateFileForWrite and CloseAndCommit.
CLIENT_PROCESSING_TIMEOUT = 600.0

_VT = ua.VariantType
_GOOD = ua.StatusCode(ua.StatusCodes.Good)


def _status(name: str) -> ua.StatusCode:
    return ua.StatusCode(getattr(ua.StatusCodes, name))


async def import_di_nodeset(server: Server) -> int:
    """Import our DI subset (once) and return the DI namespace index."""
    uris = await server.get_namespace_array()
    if di.DI_NAMESPACE_URI not in uris:
        await server.import_xml(str(DI_NODESET_PATH))
    return await server.get_namespace_index(di.DI_NAMESPACE_URI)


@frozen
class VersionNodes:
    manufacturer: ua.NodeId
    manufacturer_uri: ua.NodeId
    software_revision: ua.NodeId
    hash: ua.NodeId


@frozen
class SoftwareUpdateNodes:
    """One meter's AddIn: the ids of its objects and of the variables we write."""

    addin: ua.NodeId
    loading: ua.NodeId
    file_transfer: ua.NodeId
    installation: ua.NodeId
    confirmation: ua.NodeId
    fallback: ua.NodeId
    current: VersionNodes
    pending: VersionNodes
    fallback_version: VersionNodes
    error_message: ua.NodeId
    installation_state: ua.NodeId
    installation_state_id: ua.NodeId
    percent_complete: ua.NodeId
    confirmation_state: ua.NodeId
    confirmation_state_id: ua.NodeId
    confirmation_timeout: ua.NodeId
    update_status: ua.NodeId
    vendor_error_code: ua.NodeId


@frozen
class SharedMethods:
    """The method nodes every meter's objects share (DI and namespace 0 declarations,
    plus our two vendor methods)."""

    generate_file_for_write: ua.NodeId
    close_and_commit: ua.NodeId
    file_write: ua.NodeId
    file_close: ua.NodeId
    get_update_behavior: ua.NodeId
    install_software_package: ua.NodeId
    resume: ua.NodeId
    confirm: ua.NodeId
    clear: ua.NodeId
    update_firmware: ua.NodeId


# --- building ---------------------------------------------------------------------------
def _object(node_id, parent, ref, browse, display, type_definition) -> ua.AddNodesItem:
    attrs = ua.ObjectAttributes(DisplayName=ua.LocalizedText(display, "en"), EventNotifier=0)
    attrs.SpecifiedAttributes = ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.EventNotifier
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=ua.NodeId(ref), RequestedNewNodeId=node_id,
                           BrowseName=browse, NodeClass=ua.NodeClass.Object, NodeAttributes=attrs,
                           TypeDefinition=type_definition)


def _variable(node_id, parent, ref, browse, datatype: ua.NodeId, value: ua.Variant,
              type_definition: int = ua.ObjectIds.BaseDataVariableType, value_rank: int = -1) -> ua.AddNodesItem:
    read = ua.AccessLevel.CurrentRead.mask
    attrs = ua.VariableAttributes(DisplayName=ua.LocalizedText(browse.Name, "en"), Value=value, DataType=datatype,
                                  ValueRank=value_rank, AccessLevel=read, UserAccessLevel=read)
    attrs.SpecifiedAttributes = (ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.Value
                                 | ua.NodeAttributesMask.DataType | ua.NodeAttributesMask.ValueRank
                                 | ua.NodeAttributesMask.AccessLevel | ua.NodeAttributesMask.UserAccessLevel)
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=ua.NodeId(ref), RequestedNewNodeId=node_id,
                           BrowseName=browse, NodeClass=ua.NodeClass.Variable, NodeAttributes=attrs,
                           TypeDefinition=ua.NodeId(type_definition))


def _object_type(node_id, base: ua.NodeId, browse: ua.QualifiedName) -> ua.AddNodesItem:
    attrs = ua.ObjectTypeAttributes(DisplayName=ua.LocalizedText(browse.Name, "en"), IsAbstract=False)
    attrs.SpecifiedAttributes = ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.IsAbstract
    return ua.AddNodesItem(ParentNodeId=base, ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasSubtype),
                           RequestedNewNodeId=node_id, BrowseName=browse, NodeClass=ua.NodeClass.ObjectType,
                           NodeAttributes=attrs)


def _method(node_id, parent, browse, display) -> ua.AddNodesItem:
    attrs = ua.MethodAttributes(DisplayName=ua.LocalizedText(display, "en"), Executable=True, UserExecutable=True)
    attrs.SpecifiedAttributes = (ua.NodeAttributesMask.DisplayName | ua.NodeAttributesMask.Executable
                                 | ua.NodeAttributesMask.UserExecutable)
    return ua.AddNodesItem(ParentNodeId=parent, ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
                           RequestedNewNodeId=node_id, BrowseName=browse, NodeClass=ua.NodeClass.Method,
                           NodeAttributes=attrs)


def _arguments(node_id, parent, name: str, args: Sequence[ua.Argument]) -> ua.AddNodesItem:
    return _variable(node_id, parent, ua.ObjectIds.HasProperty, ua.QualifiedName(name, 0),
                     ua.NodeId(ua.ObjectIds.Argument), ua.Variant(list(args), _VT.ExtensionObject),
                     ua.ObjectIds.PropertyType, value_rank=1)


def _arg(name: str, datatype: int, value_rank: int = -1, description: str = "") -> ua.Argument:
    return ua.Argument(Name=name, DataType=ua.NodeId(datatype), ValueRank=value_rank, ArrayDimensions=[],
                       Description=ua.LocalizedText(description, "en"))


@frozen
class AddIn:
    """What the model needs to put the AddIn on every meter (see :meth:`MeterModel.build`):
    the shared declarations, and :meth:`add_first` to build the first meter's, which the
    model's template then copies for every other meter, sharing what is static."""

    shared: SharedMethods
    idx: int
    di_idx: int

    async def add_first(self, server: Server, name: str, meter_id: ua.NodeId) -> list[ua.NodeId]:
        """Add meter ``name``'s AddIn with asyncua's AddNodes; returns the node ids added."""
        items, method_refs = _addin_items(name, meter_id, self.idx, self.di_idx, self.shared)
        await add_nodes(server, items)
        # forward references only: the shared method would otherwise collect one inverse
        # reference per meter, which browsing the method does not need
        for item in method_refs:
            _add_forward_reference(server.iserver.aspace, item)
        return [item.RequestedNewNodeId for item in items]

    def nodes(self, name: str) -> SoftwareUpdateNodes:
        """The ids of meter ``name``'s AddIn nodes (the same scheme as every meter node)."""
        return nodes_of(name, self.idx)


async def prepare(server: Server, idx: int) -> AddIn:
    """Import the DI subset and declare our two vendor types (once); ``idx``: our namespace."""
    di_idx = await import_di_nodeset(server)
    aspace = server.iserver.aspace

    def d(i: int) -> ua.NodeId:
        return ua.NodeId(i, di_idx)

    # our vendor additions, once: two subtypes of DI's types, declaring our methods
    update_type, fallback_type = ua.NodeId(UPDATE_TYPE, idx), ua.NodeId(FALLBACK_TYPE, idx)
    update_firmware = ua.NodeId(f"{UPDATE_TYPE}.UpdateFirmware", idx)
    clear = ua.NodeId(f"{FALLBACK_TYPE}.Clear", idx)
    if update_type not in aspace:
        items = [
            _object_type(update_type, d(di.SOFTWARE_UPDATE_TYPE), ua.QualifiedName(UPDATE_TYPE, idx)),
            _method(update_firmware, update_type, ua.QualifiedName("UpdateFirmware", idx), "UpdateFirmware"),
            _arguments(ua.NodeId(f"{UPDATE_TYPE}.UpdateFirmware.InputArguments", idx), update_firmware,
                       "InputArguments", [
                           _arg("Image", ua.ObjectIds.ByteString, description="the signed MCUboot image"),
                           _arg("Confirm", ua.ObjectIds.Boolean,
                                description="confirm the new image once it runs (false: it reverts at the next "
                                            "reset unless Confirmation/Confirm is called)")]),
            _object_type(fallback_type, d(di.SOFTWARE_VERSION_TYPE), ua.QualifiedName(FALLBACK_TYPE, idx)),
            _method(clear, fallback_type, ua.QualifiedName("Clear", idx), "Clear"),
        ]
        await add_nodes(server, items)
    shared = SharedMethods(
        generate_file_for_write=ua.NodeId(ua.ObjectIds.TemporaryFileTransferType_GenerateFileForWrite),
        close_and_commit=ua.NodeId(ua.ObjectIds.TemporaryFileTransferType_CloseAndCommit),
        file_write=ua.NodeId(ua.ObjectIds.FileType_Write), file_close=ua.NodeId(ua.ObjectIds.FileType_Close),
        get_update_behavior=d(189), install_software_package=d(265), resume=d(270), confirm=d(321),
        clear=clear, update_firmware=update_firmware)
    return AddIn(shared, idx, di_idx)


def nodes_of(name: str, idx: int) -> SoftwareUpdateNodes:
    """Meter ``name``'s AddIn node ids: ``<meter>.SoftwareUpdate.<path>`` in our namespace."""

    def n(*path: str) -> ua.NodeId:
        return ua.NodeId(".".join((name, ADDIN_NAME, *path)), idx)

    def version(which: str) -> VersionNodes:
        return VersionNodes(*(n("Loading", which, prop) for prop in _VERSION_PROPERTIES))

    return SoftwareUpdateNodes(
        addin=n(), loading=n("Loading"), file_transfer=n("Loading", "FileTransfer"),
        installation=n("Installation"), confirmation=n("Confirmation"), fallback=n("Loading", "FallbackVersion"),
        current=version("CurrentVersion"), pending=version("PendingVersion"),
        fallback_version=version("FallbackVersion"), error_message=n("Loading", "ErrorMessage"),
        installation_state=n("Installation", "CurrentState"),
        installation_state_id=n("Installation", "CurrentState", "Id"),
        percent_complete=n("Installation", "PercentComplete"),
        confirmation_state=n("Confirmation", "CurrentState"),
        confirmation_state_id=n("Confirmation", "CurrentState", "Id"),
        confirmation_timeout=n("Confirmation", "ConfirmationTimeout"), update_status=n("UpdateStatus"),
        vendor_error_code=n("VendorErrorCode"))


#: a SoftwareVersionType's properties: (browse name, data type, initial value), in VersionNodes' order
_VERSION_PROPERTIES = ("Manufacturer", "ManufacturerUri", "SoftwareRevision", "Hash")
_VERSION_PROPERTY_TYPES = {
    "Manufacturer": (ua.ObjectIds.LocalizedText, ua.Variant(ua.LocalizedText("", "en"))),
    "ManufacturerUri": (ua.ObjectIds.String, ua.Variant("", _VT.String)),
    "SoftwareRevision": (ua.ObjectIds.String, ua.Variant("", _VT.String)),
    "Hash": (ua.ObjectIds.ByteString, ua.Variant(b"", _VT.ByteString)),
}


def _addin_items(name: str, meter_id: ua.NodeId, idx: int, di_idx: int,
                 shared: SharedMethods) -> tuple[list[ua.AddNodesItem], list[ua.AddReferencesItem]]:
    """One meter's AddIn as AddNodes items, and its forward references to the shared methods."""
    nodes = nodes_of(name, idx)
    update_type, fallback_type = ua.NodeId(UPDATE_TYPE, idx), ua.NodeId(FALLBACK_TYPE, idx)

    def d(i: int) -> ua.NodeId:
        return ua.NodeId(i, di_idx)

    def q(browse: str) -> ua.QualifiedName:
        return ua.QualifiedName(browse, di_idx)

    addin, loading, transfer = nodes.addin, nodes.loading, nodes.file_transfer
    installation, confirmation = nodes.installation, nodes.confirmation
    items = [
        _object(addin, meter_id, ua.ObjectIds.HasAddIn, q(ADDIN_NAME), ADDIN_NAME, update_type),
        _object(loading, addin, ua.ObjectIds.HasComponent, q("Loading"), "Loading", d(di.CACHED_LOADING_TYPE)),
        _object(transfer, loading, ua.ObjectIds.HasComponent, q("FileTransfer"), "FileTransfer",
                ua.NodeId(ua.ObjectIds.TemporaryFileTransferType)),
        _variable(ua.NodeId(f"{transfer.Identifier}.ClientProcessingTimeout", idx), transfer,
                  ua.ObjectIds.HasProperty, ua.QualifiedName("ClientProcessingTimeout", 0),
                  ua.NodeId(ua.ObjectIds.Duration), ua.Variant(CLIENT_PROCESSING_TIMEOUT * 1000, _VT.Double),
                  ua.ObjectIds.PropertyType),
        _variable(nodes.error_message, loading, ua.ObjectIds.HasComponent, q("ErrorMessage"),
                  ua.NodeId(ua.ObjectIds.LocalizedText), ua.Variant(ua.LocalizedText("", "en"))),
        _variable(ua.NodeId(f"{loading.Identifier}.WriteBlockSize", idx), loading, ua.ObjectIds.HasProperty,
                  q("WriteBlockSize"), ua.NodeId(ua.ObjectIds.UInt32), ua.Variant(65536, _VT.UInt32),
                  ua.ObjectIds.PropertyType),
        _object(installation, addin, ua.ObjectIds.HasComponent, q("Installation"), "Installation",
                d(di.INSTALLATION_STATE_MACHINE_TYPE)),
        _object(confirmation, addin, ua.ObjectIds.HasComponent, q("Confirmation"), "Confirmation",
                d(di.CONFIRMATION_STATE_MACHINE_TYPE)),
        _variable(nodes.update_status, addin, ua.ObjectIds.HasComponent, q("UpdateStatus"),
                  ua.NodeId(ua.ObjectIds.LocalizedText), ua.Variant(ua.LocalizedText("Idle", "en"))),
        _variable(nodes.vendor_error_code, addin, ua.ObjectIds.HasComponent, q("VendorErrorCode"),
                  ua.NodeId(ua.ObjectIds.Int32), ua.Variant(0, _VT.Int32)),
    ]
    for which, version in (("CurrentVersion", nodes.current), ("PendingVersion", nodes.pending),
                           ("FallbackVersion", nodes.fallback_version)):
        obj = ua.NodeId(f"{loading.Identifier}.{which}", idx)
        items.append(_object(obj, loading, ua.ObjectIds.HasComponent, q(which), which,
                             fallback_type if which == "FallbackVersion" else d(di.SOFTWARE_VERSION_TYPE)))
        for prop, node_id in zip(_VERSION_PROPERTIES, (version.manufacturer, version.manufacturer_uri,
                                                       version.software_revision, version.hash)):
            datatype, value = _VERSION_PROPERTY_TYPES[prop]
            items.append(_variable(node_id, obj, ua.ObjectIds.HasProperty, q(prop), ua.NodeId(datatype),
                                   value, ua.ObjectIds.PropertyType))
    for parent, state, state_id, initial in (
            (installation, nodes.installation_state, nodes.installation_state_id, "Idle"),
            (confirmation, nodes.confirmation_state, nodes.confirmation_state_id, "NotWaitingForConfirm")):
        items += [
            _variable(state, parent, ua.ObjectIds.HasComponent, ua.QualifiedName("CurrentState", 0),
                      ua.NodeId(ua.ObjectIds.LocalizedText), ua.Variant(ua.LocalizedText(initial, "en")),
                      ua.ObjectIds.FiniteStateVariableType),
            _variable(state_id, state, ua.ObjectIds.HasProperty, ua.QualifiedName("Id", 0),
                      ua.NodeId(ua.ObjectIds.NodeId), ua.Variant(ua.NodeId()), ua.ObjectIds.PropertyType),
        ]
    items += [
        _variable(nodes.percent_complete, installation, ua.ObjectIds.HasComponent, q("PercentComplete"),
                  ua.NodeId(ua.ObjectIds.Byte), ua.Variant(0, _VT.Byte)),
        _variable(nodes.confirmation_timeout, confirmation, ua.ObjectIds.HasComponent, q("ConfirmationTimeout"),
                  ua.NodeId(ua.ObjectIds.Duration), ua.Variant(0.0, _VT.Double)),
    ]
    method_refs = [
        ua.AddReferencesItem(SourceNodeId=source, ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent),
                             IsForward=True, TargetNodeId=method, TargetNodeClass=ua.NodeClass.Method)
        for source, method in ((transfer, shared.generate_file_for_write), (transfer, shared.close_and_commit),
                               (loading, shared.get_update_behavior),
                               (installation, shared.install_software_package), (installation, shared.resume),
                               (confirmation, shared.confirm), (addin, shared.update_firmware),
                               (nodes.fallback, shared.clear))]
    return items, method_refs


def _add_forward_reference(aspace, item: ua.AddReferencesItem) -> None:
    target = aspace[item.TargetNodeId]
    source = aspace[item.SourceNodeId]
    browse = target.attributes[ua.AttributeIds.BrowseName].value.Value.Value
    display = target.attributes[ua.AttributeIds.DisplayName].value.Value.Value
    source.references.append(ua.ReferenceDescription(
        ReferenceTypeId=item.ReferenceTypeId, IsForward=True, NodeId=item.TargetNodeId, BrowseName=browse,
        DisplayName=display, NodeClass=ua.NodeClass.Method, TypeDefinition=ua.NodeId()))


# --- running ------------------------------------------------------------------------------
_INSTALLATION_STATES = {name: number for name, (_i, _n, number) in di.INSTALLATION_STATES.items()}


class MeterSoftwareUpdate:
    """One meter's AddIn at run time: method handlers, background work, its variables.

    ``pause_polling(reason)`` / ``resume_polling()`` are called around the reboot so the
    meter's poller neither marks it failed nor hammers it while the module restarts.
    """

    def __init__(self, server: Server, name: str, nodes: SoftwareUpdateNodes, updater: FirmwareUpdater, *,
                 di_idx: int, confirmation_timeout: float = 300.0,
                 pause_polling: Callable[[str], None] | None = None,
                 resume_polling: Callable[[], None] | None = None) -> None:
        self.server = server
        self.name = name
        self.nodes = nodes
        self.updater = updater
        self.di_idx = di_idx
        self.confirmation_timeout = confirmation_timeout
        self.pause_polling = pause_polling or (lambda reason: None)
        self.resume_polling = resume_polling or (lambda: None)
        updater.on_progress = self._progress
        self.pending: ImageInfo | None = None  # what slot 1 holds after our upload
        self.testing: ImageInfo | None = None  # running unconfirmed, waiting for Confirm
        self._file: bytearray | None = None  # the temporary file being written
        self._file_handle = 0
        self._file_node: ua.NodeId | None = None
        self._task: asyncio.Task | None = None
        self._confirm_deadline: asyncio.TimerHandle | None = None

    # --- variables ----------------------------------------------------------------------
    async def _write(self, node_id: ua.NodeId, variant: ua.Variant) -> None:
        await self.server.write_attribute_value(node_id, ua.DataValue(variant, SourceTimestamp=datetime.now(UTC)))

    def _write_soon(self, node_id: ua.NodeId, variant: ua.Variant) -> None:
        asyncio.get_running_loop().create_task(self._write(node_id, variant))

    def _progress(self, progress: Progress) -> None:
        self._write_soon(self.nodes.update_status, ua.Variant(ua.LocalizedText(
            f"{progress.phase.value}: {progress.message}", "en")))
        if progress.phase is Phase.INSTALLING:
            self._write_soon(self.nodes.percent_complete, ua.Variant(int(progress.percent), _VT.Byte))

    async def _installation(self, state: str) -> None:
        await self._write(self.nodes.installation_state, ua.Variant(ua.LocalizedText(state, "en")))
        state_id = ua.NodeId(di.INSTALLATION_STATES[state][0], self.di_idx)
        await self._write(self.nodes.installation_state_id, ua.Variant(state_id, _VT.NodeId))

    async def _confirmation(self, waiting: bool) -> None:
        state = "WaitingForConfirm" if waiting else "NotWaitingForConfirm"
        await self._write(self.nodes.confirmation_state, ua.Variant(ua.LocalizedText(state, "en")))
        await self._write(self.nodes.confirmation_state_id,
                          ua.Variant(ua.NodeId(di.CONFIRMATION_STATES[state][0], self.di_idx), _VT.NodeId))
        await self._write(self.nodes.confirmation_timeout,
                          ua.Variant(self.confirmation_timeout * 1000.0 if waiting else 0.0, _VT.Double))

    async def _error(self, message: str, rc: int | None) -> None:
        await self._write(self.nodes.error_message, ua.Variant(ua.LocalizedText(message, "en")))
        await self._write(self.nodes.vendor_error_code, ua.Variant(int(rc or 0), _VT.Int32))

    async def _versions(self, slots: tuple[SlotState, ...]) -> None:
        """Current / Pending / Fallback from ``image list``: slot 0 runs; slot 1 is the
        PendingVersion while it holds an image we may install (uploaded, not booted),
        else (after a confirmed update) the FallbackVersion."""
        running = running_slot(slots)
        secondary = secondary_slot(slots)
        pending = secondary if secondary is not None and self.pending is not None \
            and secondary.hash == self.pending.hash and self.testing is None else None
        fallback = secondary if secondary is not None and pending is None else None
        for nodes, slot in ((self.nodes.current, running), (self.nodes.pending, pending),
                            (self.nodes.fallback_version, fallback)):
            filled = slot is not None
            await self._write(nodes.manufacturer, ua.Variant(ua.LocalizedText(ns.MANUFACTURER if filled else "", "en")))
            await self._write(nodes.manufacturer_uri, ua.Variant(MANUFACTURER_URI if filled else "", _VT.String))
            await self._write(nodes.software_revision, ua.Variant(slot.version if filled else "", _VT.String))
            await self._write(nodes.hash, ua.Variant(bytes(slot.hash or b"") if filled else b"", _VT.ByteString))

    async def refresh(self) -> None:
        """Read ``image list`` and show it (start-up, after every step)."""
        try:
            await self._versions(await self.updater.image_states())
        except EmuError as exc:
            log.info("%s: image list not readable: %s", self.name, exc)

    # --- background work ----------------------------------------------------------------
    def _busy(self) -> bool:
        return self.updater.busy or (self._task is not None and not self._task.done())

    def _start(self, work: Callable[[], Awaitable[None]]) -> None:
        self._task = asyncio.get_running_loop().create_task(self._guarded(work), name=f"firmware {self.name}")

    async def _guarded(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except EmuError as exc:
            log.warning("%s: firmware step failed: %s", self.name, exc)
            await self._error(str(exc), getattr(exc, "rc", None))
            await self._installation("Error")
        except Exception:  # noqa: BLE001 - a bug must show as Error, not kill the server
            log.exception("%s: firmware step failed", self.name)
            await self._error("internal error (see the server log)", None)
            await self._installation("Error")
        finally:
            self.resume_polling()
            await self.refresh()

    # --- Loading: the temporary file ----------------------------------------------------
    async def generate_file_for_write(self, actor: str, options: object) -> list[ua.Variant] | ua.StatusCode:
        if self._busy():
            return _status("BadInvalidState")
        if options not in (None, 1):  # SoftwareVersionFileType Pending: the only one writable
            return _status("BadInvalidArgument")
        self._file = bytearray()
        self._file_handle += 1
        self._file_node = self._file_node or ua.NodeId(f"{self.nodes.file_transfer.Identifier}.File",
                                                       self.nodes.file_transfer.NamespaceIndex)
        await self._ensure_file_node()
        log.info("%s: %s opened the temporary file for an image", self.name, actor)
        return [ua.Variant(self._file_node, _VT.NodeId), ua.Variant(self._file_handle, _VT.UInt32)]

    async def _ensure_file_node(self) -> None:
        aspace = self.server.iserver.aspace
        if self._file_node in aspace:
            return
        session = self.server.get_objects_node().session
        items = [_object(self._file_node, self.nodes.file_transfer, ua.ObjectIds.HasComponent,
                         ua.QualifiedName("File", 0), "File", ua.NodeId(ua.ObjectIds.FileType))]
        for prop, datatype, value in (("Size", ua.ObjectIds.UInt64, ua.Variant(0, _VT.UInt64)),
                                      ("Writable", ua.ObjectIds.Boolean, ua.Variant(True, _VT.Boolean)),
                                      ("UserWritable", ua.ObjectIds.Boolean, ua.Variant(True, _VT.Boolean)),
                                      ("OpenCount", ua.ObjectIds.UInt16, ua.Variant(1, _VT.UInt16))):
            items.append(_variable(ua.NodeId(f"{self._file_node.Identifier}.{prop}", self._file_node.NamespaceIndex),
                                   self._file_node, ua.ObjectIds.HasProperty, ua.QualifiedName(prop, 0),
                                   ua.NodeId(datatype), value, ua.ObjectIds.PropertyType))
        await session.add_nodes(items)
        for method in (ua.ObjectIds.FileType_Write, ua.ObjectIds.FileType_Close):
            _add_forward_reference(aspace, ua.AddReferencesItem(
                SourceNodeId=self._file_node, ReferenceTypeId=ua.NodeId(ua.ObjectIds.HasComponent), IsForward=True,
                TargetNodeId=ua.NodeId(method), TargetNodeClass=ua.NodeClass.Method))

    async def file_write(self, handle: int, data: bytes) -> ua.StatusCode | list:
        if self._file is None or handle != self._file_handle:
            return _status("BadInvalidArgument")
        if len(self._file) + len(data or b"") > MAX_IMAGE_SIZE:
            return _status("BadOutOfRange")
        self._file += data or b""
        await self._write(ua.NodeId(f"{self._file_node.Identifier}.Size", self._file_node.NamespaceIndex),
                          ua.Variant(len(self._file), _VT.UInt64))
        return []

    async def file_close(self, handle: int) -> ua.StatusCode | list:
        """Close without commit: the written data is dropped."""
        if self._file is None or handle != self._file_handle:
            return _status("BadInvalidArgument")
        self._file = None
        return []

    async def close_and_commit(self, actor: str, handle: int) -> list[ua.Variant] | ua.StatusCode:
        if self._file is None or handle != self._file_handle:
            return _status("BadInvalidArgument")
        data, self._file = bytes(self._file), None
        try:
            image = self.updater.check(data)
        except InvalidImage as exc:
            await self._error(f"not accepted: {exc}", None)
            log.warning("%s: image from %s refused: %s", self.name, actor, exc)
            return _status("BadInvalidArgument")
        await self._error("", None)

        async def upload() -> None:
            self.pending = image
            self.testing = None
            _image, _before = await self.updater.upload(data, actor=actor)

        self._start(upload)
        return [ua.Variant(ua.NodeId(), _VT.NodeId)]  # no completion state machine: watch PendingVersion

    def get_update_behavior(self) -> list[ua.Variant]:
        behavior = di.KEYS_PRESERVED | di.WILL_DISCONNECT | di.WILL_REBOOT
        return [ua.Variant(behavior, _VT.UInt32)]

    # --- Installation and Confirmation --------------------------------------------------
    async def install_software_package(self, actor: str, manufacturer_uri: str, revision: str,
                                       patches: object, hash_: bytes | None) -> ua.StatusCode | list:
        if self._busy():
            return _status("BadInvalidState")
        image = self.pending
        if image is None:
            return _status("BadInvalidState")  # nothing uploaded: PendingVersion is empty
        if revision and revision != str(image.version):
            return _status("BadInvalidArgument")
        if hash_ and bytes(hash_) != image.hash:
            return _status("BadInvalidArgument")
        if manufacturer_uri and manufacturer_uri != MANUFACTURER_URI:
            return _status("BadInvalidArgument")
        await self._installation("Installing")  # the spec: not before the state is Installing
        await self._write(self.nodes.percent_complete, ua.Variant(0, _VT.Byte))

        async def install() -> None:
            self.pause_polling("firmware update: the module reboots")
            await self.updater.install(image, actor=actor)
            self.testing, self.pending = image, None
            self.resume_polling()
            await self._installation("Idle")
            await self._confirmation(True)
            self._arm_confirmation_timeout(image, actor)

        self._start(install)
        return []

    def _arm_confirmation_timeout(self, image: ImageInfo, actor: str) -> None:
        loop = asyncio.get_running_loop()
        if self._confirm_deadline is not None:
            self._confirm_deadline.cancel()
        self._confirm_deadline = loop.call_later(self.confirmation_timeout, self._confirmation_expired, image, actor)

    def _confirmation_expired(self, image: ImageInfo, actor: str) -> None:
        self._confirm_deadline = None
        if self.testing is None or self.testing.hash != image.hash:
            return
        log.warning("%s: %s not confirmed within %g s: resetting the module to revert", self.name,
                    image.version, self.confirmation_timeout)

        async def revert() -> None:
            self.testing = None
            await self._confirmation(False)
            self.pause_polling("firmware update: reverting an unconfirmed image")
            await self.updater.revert(image, actor=f"{actor} (confirmation timeout)")
            await self._error(f"{image.version} was not confirmed within {self.confirmation_timeout:g} s and was "
                              "reverted", None)

        self._start(revert)

    async def confirm(self, actor: str) -> ua.StatusCode | list:
        image = self.testing
        if image is None or self._busy():
            return _status("BadInvalidState")
        await self.updater.confirm(image, actor=actor)
        self.testing = None
        if self._confirm_deadline is not None:
            self._confirm_deadline.cancel()
            self._confirm_deadline = None
        await self._confirmation(False)
        await self.refresh()
        return []

    async def resume(self) -> ua.StatusCode | list:
        """Installation Error -> Idle (the error was seen)."""
        await self._installation("Idle")
        await self._error("", None)
        return []

    async def clear_fallback(self, actor: str) -> ua.StatusCode | list:
        if self._busy() or self.testing is not None:
            return _status("BadInvalidState")
        await self.updater.erase(actor=actor)
        await self.refresh()
        return []

    async def update_firmware(self, actor: str, image: bytes, confirm: bool) -> ua.StatusCode | list:
        if self._busy():
            return _status("BadInvalidState")
        try:
            info = self.updater.check(bytes(image or b""))
        except InvalidImage as exc:
            await self._error(f"not accepted: {exc}", None)
            return _status("BadInvalidArgument")
        await self._installation("Installing")

        async def whole() -> None:
            self.pause_polling("firmware update: the module reboots")
            phase = await self.updater.update(bytes(image), actor=actor, confirm=confirm)
            if phase is Phase.AWAITING_CONFIRMATION:
                self.testing = info
                await self._confirmation(True)
                self._arm_confirmation_timeout(info, actor)
            await self._installation("Idle")

        self._start(whole)
        return []

    async def close(self) -> None:
        if self._confirm_deadline is not None:
            self._confirm_deadline.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()


# --- the method-call seam -----------------------------------------------------------------
class SoftwareUpdateService:
    """Every meter's AddIn behind the shared methods, registered in the server's
    :class:`~emu_opcua.opcua.methods.MethodRegistry`: only an authenticated admin over a
    SignAndEncrypt channel may change firmware (others: BadUserAccessDenied /
    BadSecurityModeInsufficient, checked by the registry before a handler runs)."""

    def __init__(self, shared: SharedMethods) -> None:
        self.shared = shared
        self.meters: dict[str, MeterSoftwareUpdate] = {}
        self._by_object: dict[ua.NodeId, MeterSoftwareUpdate] = {}

    def add(self, meter: MeterSoftwareUpdate) -> None:
        self.meters[meter.name] = meter
        n = meter.nodes
        for object_id in (n.addin, n.loading, n.file_transfer, n.installation, n.confirmation, n.fallback):
            self._by_object[object_id] = meter
        self._by_object[ua.NodeId(f"{n.file_transfer.Identifier}.File", n.file_transfer.NamespaceIndex)] = meter

    def _meter(self, object_id: ua.NodeId) -> MeterSoftwareUpdate:
        meter = self._by_object.get(object_id)
        if meter is None:
            raise ua.uaerrors.BadMethodInvalid()
        return meter

    def register(self, registry) -> None:
        from emu_opcua.opcua.methods import MethodRequirement

        admin = MethodRequirement(min_role="admin", min_security_mode=ua.MessageSecurityMode.SignAndEncrypt)
        anyone = MethodRequirement(min_role="reader")
        s = self.shared
        for method_id, handler, requirement in (
                (s.generate_file_for_write, self._generate, admin), (s.file_write, self._file_write, admin),
                (s.file_close, self._file_close, admin), (s.close_and_commit, self._commit, admin),
                (s.get_update_behavior, self._behavior, anyone), (s.install_software_package, self._install, admin),
                (s.resume, self._resume, admin), (s.confirm, self._confirm, admin),
                (s.clear, self._clear, admin), (s.update_firmware, self._update, admin)):
            registry.register(method_id, handler, requirement)

    @staticmethod
    def _actor(context) -> str:
        return context.user or "anonymous"

    @staticmethod
    def _out(result):
        if isinstance(result, ua.StatusCode):
            raise ua.UaStatusCodeError(result.value)
        return result

    async def _generate(self, context, object_id, args):
        return self._out(await self._meter(object_id).generate_file_for_write(
            self._actor(context), args[0].Value if args else None))

    async def _file_write(self, context, object_id, args):
        return self._out(await self._meter(object_id).file_write(args[0].Value, args[1].Value))

    async def _file_close(self, context, object_id, args):
        return self._out(await self._meter(object_id).file_close(args[0].Value))

    async def _commit(self, context, object_id, args):
        return self._out(await self._meter(object_id).close_and_commit(self._actor(context), args[0].Value))

    async def _behavior(self, context, object_id, args):
        return self._meter(object_id).get_update_behavior()

    async def _install(self, context, object_id, args):
        uri, revision, patches, hash_ = (a.Value for a in args)
        return self._out(await self._meter(object_id).install_software_package(
            self._actor(context), uri, revision, patches, hash_))

    async def _resume(self, context, object_id, args):
        return self._out(await self._meter(object_id).resume())

    async def _confirm(self, context, object_id, args):
        meter = self._meter(object_id)
        try:
            return self._out(await meter.confirm(self._actor(context)))
        except EmuError as exc:
            await meter._error(str(exc), getattr(exc, "rc", None))
            raise ua.uaerrors.BadInvalidState() from None

    async def _clear(self, context, object_id, args):
        meter = self._meter(object_id)
        try:
            return self._out(await meter.clear_fallback(self._actor(context)))
        except EmuError as exc:
            await meter._error(str(exc), getattr(exc, "rc", None))
            raise ua.uaerrors.BadInvalidState() from None

    async def _update(self, context, object_id, args):
        image, confirm = args[0].Value, args[1].Value
        return self._out(await self._meter(object_id).update_firmware(self._actor(context), image, bool(confirm)))

    async def close(self) -> None:
        for meter in self.meters.values():
            await meter.close()
