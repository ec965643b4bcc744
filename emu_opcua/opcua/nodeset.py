"""The EmuMeter information model, and the NodeSet2 XML generated from it.

``TYPE_GROUPS`` describes EmuMeterType once: its folders (Identification, Configuration,
Measurements, Extremes, Diagnostics) and their members, derived from the value catalogue.
This module writes that description as ``emu_opcua/nodesets/EmuMeter.NodeSet2.xml``
(``python -m emu_opcua.opcua.nodeset``), and ``emu_opcua.opcua.model`` instantiates the
same description per meter, so type and instances cannot drift apart.

Identification names follow OPC UA DI (OPC 10000-100, DeviceType) without importing the
DI nodeset: EmuMeterType is a BaseObjectType subtype and ``DeviceHealthEnumeration`` is
defined here with DI's values. Measurement names follow OPC 34100 (see the catalogue).

``EVENT_TYPES`` describes the meter's event types (:mod:`emu_opcua.history.events`): an
abstract ``EmuMeterEventType`` below SystemEventType and one concrete subtype per kind.
Why SystemEventType: these are things that happened in a system the server represents
(the meter, or the gateway's link to it), OPC 10000-5's definition of SystemEventType.
Not AuditUpdateEventType, although a logbook entry records a change of settings: audit
events report actions of the server's own clients (ClientUserId, ClientAuditEntryId,
Status of the service call), and a CT ratio set at the meter's keys has none of those.
Event type node ids are their browse names (``ns=1;s=PowerOutageEventType``), their
properties ``<type>.<property>``.

Node ids of the type are strings built from browse paths (``EmuMeterType.Measurements.
AcActivePowerTotal``), so they never depend on catalogue order.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

from attrs import frozen

from emu_opcua.meter.catalogue import CATALOGUE, MEASUREMENTS, WITH_EXTREMES, Quantity
from emu_opcua.meter.units import UNECE_NAMESPACE_URI, Unit
from emu_opcua.opcua.nodeset_xml import NodeSetWriter, add_extension_object, add_text, add_texts, n, t, write_or_check

#: Our namespace: the type, its data type and every meter instance live in it.
NAMESPACE_URI = "urn:emu-opcua:nodesets:EmuMeter"
MODEL_VERSION = "1.0.0"
#: Fixed, so regenerating gives the same bytes; bump together with MODEL_VERSION.
PUBLICATION_DATE = "2025-01-01T00:00:00Z"

NODESET_PATH = Path(__file__).resolve().parent.parent / "nodesets" / "EmuMeter.NodeSet2.xml"

TYPE_NAME = "EmuMeterType"
DEVICE_HEALTH_TYPE = "DeviceHealthEnumeration"
#: DI's DeviceHealthEnumeration values.
DEVICE_HEALTH = ("NORMAL", "FAILURE", "CHECK_FUNCTION", "OFF_SPEC", "MAINTENANCE_REQUIRED")

MANUFACTURER = "EMU Elektronik AG"
MODEL_NAME = "EMU Professional II TCP/IP"

# ns=0 ids used below
I_BOOLEAN, I_BYTE, I_UINT16, I_UINT32, I_UINT64, I_DOUBLE, I_STRING = 1, 3, 5, 7, 9, 11, 12
I_SYSTEM_EVENT_TYPE = 2130
I_LOCALIZED_TEXT, I_UTCTIME, I_RANGE, I_EUINFORMATION, I_ENUMERATION = 21, 294, 884, 887, 29
I_BASE_OBJECT_TYPE, I_FOLDER_TYPE, I_BASE_DATA_VARIABLE_TYPE, I_PROPERTY_TYPE = 58, 61, 63, 68
I_ANALOG_ITEM_TYPE = 2368
I_MANDATORY, I_OPTIONAL = 78, 80
I_RANGE_XML, I_EUINFORMATION_XML = 885, 888

ALIASES: dict[str, str] = {
    "Boolean": "i=1", "Byte": "i=3", "UInt16": "i=5", "UInt32": "i=7", "UInt64": "i=9", "Double": "i=11",
    "String": "i=12", "LocalizedText": "i=21", "UtcTime": "i=294", "Range": "i=884",
    "EUInformation": "i=887",
    "Organizes": "i=35", "HasModellingRule": "i=37", "HasTypeDefinition": "i=40",
    "HasSubtype": "i=45", "HasProperty": "i=46", "HasComponent": "i=47",
}
_DATATYPE_ALIAS = {I_BOOLEAN: "Boolean", I_BYTE: "Byte", I_UINT16: "UInt16", I_UINT32: "UInt32", I_UINT64: "UInt64",
                   I_DOUBLE: "Double", I_STRING: "String", I_LOCALIZED_TEXT: "LocalizedText",
                   I_UTCTIME: "UtcTime", I_RANGE: "Range", I_EUINFORMATION: "EUInformation"}

Kind = Literal["property", "variable", "analog"]


@frozen
class Member:
    """One variable of a group: how it is typed, named and (for analog items) measured."""

    browse_name: str
    datatype: int | str  # ns=0 numeric id, or the name of a data type of ours
    kind: Kind
    display_en: str
    display_de: str
    description_en: str
    description_de: str
    mandatory: bool = True
    unit: Unit | None = None
    eu_range: tuple[float, float] | None = None
    quantity: Quantity | None = None  # the catalogue quantity it carries, if any
    extreme: Literal["min", "min_time", "max", "max_time"] | None = None


@frozen
class Group:
    """A folder below the meter object."""

    browse_name: str
    display_en: str
    display_de: str
    description_en: str
    description_de: str
    members: tuple[Member, ...]


def _prop(browse, datatype, en, de, desc_en, desc_de=None, *, mandatory=True) -> Member:
    return Member(browse, datatype, "property", en, de, desc_en, desc_de or desc_en, mandatory)


def _var(browse, datatype, en, de, desc_en, desc_de=None, *, mandatory=True) -> Member:
    return Member(browse, datatype, "variable", en, de, desc_en, desc_de or desc_en, mandatory)


def _identification() -> Group:
    return Group("Identification", "Identification", "Identifikation",
                 "Device identification (names after OPC UA DI DeviceType)",
                 "Geräteidentifikation (Namen nach OPC UA DI DeviceType)", (
        _prop("Manufacturer", I_LOCALIZED_TEXT, "Manufacturer", "Hersteller", "Manufacturer of the meter",
              "Hersteller des Zählers"),
        _prop("Model", I_LOCALIZED_TEXT, "Model", "Modell", "Model name of the meter", "Modellbezeichnung"),
        _prop("SerialNumber", I_STRING, "Serial number", "Seriennummer",
              "Meter serial number (status.json meterserial)", "Zählerseriennummer (status.json meterserial)"),
        _prop("SoftwareRevision", I_STRING, "Software revision", "Softwarestand",
              "Firmware version of the TCP/IP module", "Firmwareversion des TCP/IP-Moduls"),
        _prop("HardwareRevision", I_STRING, "Hardware revision", "Hardwarestand",
              "Hardware revision (not reported by the meter)", "Hardwarestand (vom Zähler nicht gemeldet)",
              mandatory=False),
        _prop("DeviceRevision", I_STRING, "Device revision", "Gerätestand",
              "Device revision (not reported by the meter)", "Gerätestand (vom Zähler nicht gemeldet)",
              mandatory=False),
        _prop("ProductCode", I_STRING, "Product code", "Produktcode",
              "Product code (not reported by the meter)", "Produktcode (vom Zähler nicht gemeldet)",
              mandatory=False),
        _prop("MacAddress", I_STRING, "MAC address", "MAC-Adresse", "MAC address of the TCP/IP module",
              "MAC-Adresse des TCP/IP-Moduls"),
        _prop("FactoryNumber", I_UINT64, "Factory number", "Fabriknummer", "Factory number of the meter",
              "Fabriknummer des Zählers"),
        _var("DeviceHealth", DEVICE_HEALTH_TYPE, "Device health", "Gerätezustand",
             "DI device health: NORMAL, FAILURE (no communication), CHECK_FUNCTION, OFF_SPEC, "
             "MAINTENANCE_REQUIRED",
             "DI-Gerätezustand: NORMAL, FAILURE (keine Kommunikation), CHECK_FUNCTION, OFF_SPEC, "
             "MAINTENANCE_REQUIRED"),
    ))


def _configuration() -> Group:
    return Group("Configuration", "Configuration", "Konfiguration",
                 "Network configuration reported by the meter (status.json)",
                 "Vom Zähler gemeldete Netzwerkkonfiguration (status.json)", (
        _prop("DhcpEnabled", I_BOOLEAN, "DHCP enabled", "DHCP aktiv", "DHCP enabled"),
        _prop("IpAddress", I_STRING, "IP address", "IP-Adresse", "IP address"),
        _prop("Netmask", I_STRING, "Netmask", "Netzmaske", "Netmask"),
        _prop("Gateway", I_STRING, "Gateway", "Gateway", "Default gateway"),
        _prop("Dns", I_STRING, "DNS server", "DNS-Server", "DNS server"),
        _prop("ModbusEnabled", I_BOOLEAN, "Modbus TCP enabled", "Modbus TCP aktiv", "Modbus TCP server enabled"),
        _prop("ModbusPort", I_UINT16, "Modbus TCP port", "Modbus-TCP-Port", "Modbus TCP port"),
        _prop("NtpEnabled", I_BOOLEAN, "NTP enabled", "NTP aktiv", "NTP time synchronisation enabled"),
        _prop("NtpServer", I_STRING, "NTP server", "NTP-Server", "NTP server"),
        _prop("OnlineUpdateAllowed", I_BOOLEAN, "Online update allowed", "Online-Update erlaubt",
              "Firmware update over the network allowed"),
    ))


def _analog(q: Quantity) -> Member:
    return Member(q.browse_name, I_DOUBLE, "analog", q.display_en, q.display_de,
                  q.description_en, q.description_de, True, q.unit, q.eu_range, q)


def _measurements() -> Group:
    return Group("Measurements", "Measurements", "Messwerte",
                 "Live values (Modbus TCP, meterdata.json, or the datalog for quantities only it carries)",
                 "Momentanwerte (Modbus TCP, meterdata.json oder Datenlogger)",
                 tuple(_analog(q) for q in MEASUREMENTS))


def _extremes() -> Group:
    members: list[Member] = []
    for q in WITH_EXTREMES:
        for which, en, de in (("min", "minimum", "Minimum"), ("max", "maximum", "Maximum")):
            suffix = which.capitalize()
            members.append(Member(
                f"{q.browse_name}{suffix}", I_DOUBLE, "analog",
                f"{q.display_en} {en}", f"{q.display_de} {de}",
                f"{en.capitalize()} of {q.description_en}", f"{de} von {q.description_de}",
                False, q.unit, q.eu_range, q, which))
            members.append(Member(
                f"{q.browse_name}{suffix}Time", I_UTCTIME, "variable",
                f"{q.display_en} {en} time", f"{q.display_de} {de} Zeitpunkt",
                f"When the {en} of {q.display_en} occurred", f"Zeitpunkt des {de}s von {q.display_de}",
                False, quantity=q, extreme=f"{which}_time"))
    return Group("Extremes", "Extremes", "Extremwerte",
                 "Minima and maxima with their times (meterdata.json; meters with serial >= 22350000)",
                 "Minima und Maxima mit Zeitpunkt (meterdata.json; Zähler ab Seriennummer 22350000)",
                 tuple(members))


def _diagnostics() -> Group:
    members = [
        _var("ConnectionState", I_STRING, "Connection state", "Verbindungszustand",
             "Connected, Connecting, Disconnected or Failed"),
        _var("LastSuccessfulPoll", I_UTCTIME, "Last successful poll", "Letzte erfolgreiche Abfrage",
             "Time of the last successful poll", "Zeitpunkt der letzten erfolgreichen Abfrage"),
        _var("ConsecutiveFailures", I_UINT32, "Consecutive failures", "Aufeinanderfolgende Fehler",
             "Failed polls since the last success", "Fehlgeschlagene Abfragen seit dem letzten Erfolg"),
        _var("LastError", I_STRING, "Last error", "Letzter Fehler", "Message of the last poll error",
             "Meldung des letzten Abfragefehlers"),
        _var("PollDuration", I_DOUBLE, "Poll duration", "Abfragedauer", "Duration of the last fast poll [ms]",
             "Dauer der letzten schnellen Abfrage [ms]"),
        _var("CrossCheck", I_STRING, "Cross-check", "Plausibilitätsprüfung",
             "Modbus values vs meterdata.json: summary", "Modbus-Werte gegen meterdata.json: Zusammenfassung"),
        _var("CrossCheckOk", I_BOOLEAN, "Cross-check ok", "Plausibilitätsprüfung ok",
             "True when Modbus values agree with meterdata.json",
             "Wahr, wenn Modbus-Werte mit meterdata.json übereinstimmen"),
        _var("DataSource", I_STRING, "Data source", "Datenquelle",
             "modbus, http (modbus disabled) or http (register map mismatch)"),
        _var("MeterTime", I_UTCTIME, "Meter time", "Zählerzeit", "Clock of the meter (UTC)",
             "Uhrzeit des Zählers (UTC)"),
    ]
    members += [  # datalog sync into the history store (emu_opcua.history)
        _var("HistorySyncState", I_STRING, "History sync state", "Historien-Synchronisation",
             "Datalog sync: starting, backfilling, current, failing or disabled",
             "Datenlogger-Synchronisation: starting, backfilling, current, failing oder disabled"),
        _var("HistorySyncProgress", I_DOUBLE, "History sync progress", "Historien-Fortschritt",
             "Share of the rows the meter holds that are stored [%]",
             "Anteil der gespeicherten Zeilen des Zählers [%]"),
        _var("HistoryRowsStored", I_UINT64, "History rows stored", "Gespeicherte Historienzeilen",
             "Datalog rows in the history store (every series of this meter)",
             "Datenloggerzeilen im Historienspeicher (alle Serien dieses Zählers)"),
        _var("HistoryOldestRow", I_UTCTIME, "Oldest history row", "Älteste Historienzeile",
             "Timestamp of the oldest stored datalog row", "Zeitstempel der ältesten gespeicherten Zeile"),
        _var("HistoryNewestRow", I_UTCTIME, "Newest history row", "Neueste Historienzeile",
             "Timestamp of the newest stored datalog row", "Zeitstempel der neuesten gespeicherten Zeile"),
        _var("HistoryLastSyncError", I_STRING, "Last history sync error", "Letzter Synchronisationsfehler",
             "Message of the last datalog sync error (empty when the last step worked)",
             "Meldung des letzten Synchronisationsfehlers (leer, wenn der letzte Schritt gelang)"),
    ]
    for q in CATALOGUE:
        if q.group == "diagnostic":
            members.append(Member(q.browse_name, I_UINT32, "variable", q.display_en, q.display_de,
                                  q.description_en, q.description_de, quantity=q))
    return Group("Diagnostics", "Diagnostics", "Diagnose",
                 "Health of the connection to the meter", "Zustand der Verbindung zum Zähler",
                 tuple(members))


#: EmuMeterType's folders and members, in browse order.
TYPE_GROUPS: tuple[Group, ...] = (
    _identification(), _configuration(), _measurements(), _extremes(), _diagnostics(),
)
GROUPS: dict[str, Group] = {g.browse_name: g for g in TYPE_GROUPS}


# --- event types --------------------------------------------------------------------------
@frozen
class EventType:
    """An event type: its place in the hierarchy and its own properties."""

    browse_name: str
    parent: int | str  # an ns=0 event type id, or the browse name of one of ours
    abstract: bool
    description_en: str
    description_de: str
    properties: tuple[Member, ...] = ()
    kind: str | None = None  # the MeterEvent kind it carries (concrete types)


EVENT_BASE_TYPE = "EmuMeterEventType"


def _u32(browse, en, de):
    return _prop(browse, I_UINT32, browse, browse, en, de)


def _event_types() -> tuple[EventType, ...]:
    datalog_index = _u32("DatalogIndex", "Index of the datalog row the event belongs to",
                         "Index der zugehörigen Datenloggerzeile")
    settings = []
    for name, en, de in (("CtPrimary", "CT ratio primary", "Stromwandler primär"),
                         ("CtSecondary", "CT ratio secondary", "Stromwandler sekundär"),
                         ("VtPrimary", "VT ratio primary", "Spannungswandler primär"),
                         ("VtSecondary", "VT ratio secondary", "Spannungswandler sekundär"),
                         ("S0PulseValue", "S0 pulse value [pulses/kWh]", "S0-Impulswertigkeit [Imp./kWh]"),
                         ("S0PulseLength", "S0 pulse length [ms]", "S0-Impulslänge [ms]")):
        settings.append(_u32(name, f"{en} after the change", f"{de} nach der Änderung"))
        settings.append(_u32(f"{name}Before", f"{en} before the change", f"{de} vor der Änderung"))
    energies = tuple(
        Member(q.browse_name, I_DOUBLE, "property", q.browse_name, q.browse_name,
               f"{q.description_en} at the change [{q.unit.symbol}]", f"{q.description_de} bei der Änderung",
               quantity=q)
        for q in CATALOGUE if q.code in ("active_energy_import_t1", "active_energy_import_t2",
                                         "active_energy_export_t1", "active_energy_export_t2"))
    status = (datalog_index, _prop("DatalogStatus", I_BYTE, "DatalogStatus", "DatalogStatus",
                                   "The datalog row's status byte", "Statusbyte der Datenloggerzeile"))
    return (
        EventType(EVENT_BASE_TYPE, I_SYSTEM_EVENT_TYPE, True,
                  "Something that happened to an EMU meter or to the gateway's link to it",
                  "Ein Ereignis eines EMU-Zählers oder der Verbindung des Gateways zu ihm",
                  (_prop("MeterSerial", I_STRING, "MeterSerial", "MeterSerial", "Serial number of the meter",
                         "Seriennummer des Zählers"),)),
        EventType("LogbookEntryEventType", EVENT_BASE_TYPE, False,
                  "An entry of the meter's logbook: CT, VT and S0 settings before and after a change, "
                  "the energies at the change",
                  "Ein Eintrag im Logbuch des Zählers: Wandler- und S0-Einstellungen vor und nach einer Änderung, "
                  "die Energien bei der Änderung",
                  (_u32("LogbookIndex", "Index of the logbook entry", "Index des Logbucheintrags"), datalog_index,
                   _prop("TimeAfterChange", I_UTCTIME, "TimeAfterChange", "TimeAfterChange",
                         "The meter's time after the change (differs from Time when the clock was set)",
                         "Zählerzeit nach der Änderung (verschieden von Time, wenn die Uhr gestellt wurde)"),
                   *settings, *energies), "logbook"),
        EventType("DatalogStatusEventType", EVENT_BASE_TYPE, True,
                  "A status bit of a datalog row", "Ein Statusbit einer Datenloggerzeile", status),
        EventType("PowerOutageEventType", "DatalogStatusEventType", False,
                  "Power came back after an outage (status 0x20)", "Netzwiederkehr nach einem Ausfall (Status 0x20)",
                  kind="power_outage"),
        EventType("ClockChangedEventType", "DatalogStatusEventType", False,
                  "The meter's clock was set (status 0x01)", "Die Uhr des Zählers wurde gestellt (Status 0x01)",
                  kind="clock_changed"),
        EventType("ClockNotSynchronisedEventType", "DatalogStatusEventType", False,
                  "The meter's clock is not synchronised (status 0x40 came on)",
                  "Die Uhr des Zählers ist nicht synchronisiert (Status 0x40 gesetzt)", kind="clock_not_synchronised"),
        EventType("LogbookFullEventType", "DatalogStatusEventType", False,
                  "The logbook is full, further changes are not logged (status 0x80 came on)",
                  "Das Logbuch ist voll, weitere Änderungen werden nicht protokolliert (Status 0x80 gesetzt)",
                  kind="logbook_full"),
        EventType("MeterReplacedEventType", EVENT_BASE_TYPE, False,
                  "Another meter (another serial) answers at the meter's address",
                  "Ein anderer Zähler (andere Seriennummer) antwortet unter der Adresse des Zählers",
                  (_prop("PreviousSerial", I_STRING, "PreviousSerial", "PreviousSerial", "Serial of the meter before",
                         "Seriennummer des vorigen Zählers"), datalog_index), "meter_replaced"),
        EventType("IndexResetEventType", EVENT_BASE_TYPE, False,
                  "The datalog index restarted (a factory reset)", "Der Datenloggerindex begann neu (Werksreset)",
                  (datalog_index,), "index_reset"),
        EventType("MeterLostEventType", EVENT_BASE_TYPE, False,
                  "The gateway lost the meter (no answer for longer than stale_after)",
                  "Das Gateway hat den Zähler verloren (keine Antwort länger als stale_after)",
                  (_prop("LastError", I_STRING, "LastError", "LastError", "Why the meter does not answer",
                         "Warum der Zähler nicht antwortet"),), "meter_lost"),
        EventType("MeterRegainedEventType", EVENT_BASE_TYPE, False,
                  "The gateway reaches the meter again", "Das Gateway erreicht den Zähler wieder",
                  kind="meter_regained"),
    )


#: The event types, parents first.
EVENT_TYPES: tuple[EventType, ...] = _event_types()
EVENT_TYPE_BY_KIND: dict[str, EventType] = {t.kind: t for t in EVENT_TYPES if t.kind is not None}
EVENT_TYPE_BY_NAME: dict[str, EventType] = {t.browse_name: t for t in EVENT_TYPES}


def event_type_properties(event_type: EventType) -> tuple[Member, ...]:
    """Every property of ``event_type`` of ours, inherited first (not BaseEventType's)."""
    chain = []
    t: EventType | None = event_type
    while t is not None:
        chain.append(t)
        t = EVENT_TYPE_BY_NAME.get(t.parent) if isinstance(t.parent, str) else None
    return tuple(p for t in reversed(chain) for p in t.properties)


# --- XML --------------------------------------------------------------------------------


def type_node_id(*path: str) -> str:
    """Node id (in the nodeset's own index 1) of the type or one of its descendants."""
    return "ns=1;s=" + ".".join((TYPE_NAME, *path))


def _datatype_ref(datatype: int | str) -> str:
    if isinstance(datatype, int):
        return _DATATYPE_ALIAS[datatype]
    return f"ns=1;s={datatype}"


def _writer() -> NodeSetWriter:
    return NodeSetWriter(NAMESPACE_URI, MODEL_VERSION, PUBLICATION_DATE, ALIASES)


def _node(w: NodeSetWriter, tag: str, node_id: str, browse: str, en: str, de: str, desc_en: str, desc_de: str,
          refs: list[tuple[str, str, bool]], attrs: dict[str, str] | None = None,
          browse_ns: int = 1) -> ET.Element:
    """A node of ours, named in German and English (English last: asyncua keeps the last)."""
    return w.node(tag, node_id, browse, (("de", de), ("en", en)), refs, attrs,
                  descriptions=(("de", desc_de), ("en", desc_en)), browse_ns=browse_ns)


def _ext_value(variable: ET.Element, type_xml: int, body_tag: str) -> ET.Element:
    return add_extension_object(ET.SubElement(variable, n("Value")), type_xml, body_tag)


def _fmt(x: float) -> str:
    return repr(float(x))


def eu_description(unit) -> tuple[str, str]:
    """English and German Description of an EngineeringUnits property."""
    return (f"Unit: {unit.name_en} (UNECE {unit.unece_code})",
            f"Einheit: {unit.symbol or unit.name_en} (UNECE {unit.unece_code})")


#: English and German Description of an EURange property
EURANGE_DESCRIPTION = ("Range the value normally lies in", "Üblicher Wertebereich")


def _analog_property(w: NodeSetWriter, parent: str, browse: str, description: tuple[str, str],
                     data_type: str, type_xml: int) -> ET.Element:
    """An analog item's EngineeringUnits or EURange property; returns its value's body."""
    prop = _node(w, "UAVariable", f"{parent}.{browse}", browse, browse, browse, *description,
                 [("HasTypeDefinition", f"i={I_PROPERTY_TYPE}", True),
                  ("HasModellingRule", f"i={I_MANDATORY}", True),
                  ("HasProperty", parent, False)],
                 {"ParentNodeId": parent, "DataType": data_type, "AccessLevel": "1",
                  "UserAccessLevel": "1"}, browse_ns=0)
    return _ext_value(prop, type_xml, data_type)


def _write_analog_properties(w: NodeSetWriter, member: Member, node_id: str) -> None:
    if member.unit is not None:
        body = _analog_property(w, node_id, "EngineeringUnits", eu_description(member.unit),
                                "EUInformation", I_EUINFORMATION_XML)
        ET.SubElement(body, t("NamespaceUri")).text = UNECE_NAMESPACE_URI
        ET.SubElement(body, t("UnitId")).text = str(member.unit.unece_id)
        add_text(body, "DisplayName", member.unit.symbol, "en")
        add_text(body, "Description", member.unit.name_en, "en")
    if member.eu_range is not None:
        body = _analog_property(w, node_id, "EURange", EURANGE_DESCRIPTION, "Range", I_RANGE_XML)
        ET.SubElement(body, t("Low")).text = _fmt(member.eu_range[0])
        ET.SubElement(body, t("High")).text = _fmt(member.eu_range[1])


def member_reference(member: Member) -> str:
    """Reference type from a group to this member."""
    return "HasProperty" if member.kind == "property" else "HasComponent"


def member_type_definition(member: Member) -> int:
    return {"property": I_PROPERTY_TYPE, "variable": I_BASE_DATA_VARIABLE_TYPE,
            "analog": I_ANALOG_ITEM_TYPE}[member.kind]


def generate() -> bytes:
    """The NodeSet2 XML of the EmuMeter model, as committed in ``emu_opcua/nodesets``."""
    w = _writer()
    # DeviceHealthEnumeration (DI's values, in our namespace)
    dt_id = f"ns=1;s={DEVICE_HEALTH_TYPE}"
    dt = _node(w, "UADataType", dt_id, DEVICE_HEALTH_TYPE, DEVICE_HEALTH_TYPE, DEVICE_HEALTH_TYPE,
               "Device health as defined by OPC UA DI (OPC 10000-100)",
               "Gerätezustand nach OPC UA DI (OPC 10000-100)",
               [("HasSubtype", f"i={I_ENUMERATION}", False),
                ("HasProperty", f"{dt_id}.EnumStrings", True)])
    definition = ET.SubElement(dt, n("Definition"), {"Name": f"1:{DEVICE_HEALTH_TYPE}"})
    for value, name in enumerate(DEVICE_HEALTH):
        ET.SubElement(definition, n("Field"), {"Name": name, "Value": str(value)})
    es = _node(w, "UAVariable", f"{dt_id}.EnumStrings", "EnumStrings", "EnumStrings", "EnumStrings",
               "Names of the values", "Namen der Werte",
               [("HasTypeDefinition", f"i={I_PROPERTY_TYPE}", True),
                ("HasModellingRule", f"i={I_MANDATORY}", True),
                ("HasProperty", dt_id, False)],
               {"ParentNodeId": dt_id, "DataType": "LocalizedText", "ValueRank": "1",
                "ArrayDimensions": str(len(DEVICE_HEALTH))}, browse_ns=0)
    add_texts(es, DEVICE_HEALTH, "en")

    # EmuMeterType
    type_id = type_node_id()
    _node(w, "UAObjectType", type_id, TYPE_NAME, TYPE_NAME, TYPE_NAME,
          "An EMU Professional II TCP/IP electricity meter",
          "Ein Elektrizitätszähler EMU Professional II TCP/IP",
          [("HasSubtype", f"i={I_BASE_OBJECT_TYPE}", False)]
          + [("HasComponent", type_node_id(g.browse_name), True) for g in TYPE_GROUPS])
    for group in TYPE_GROUPS:
        group_id = type_node_id(group.browse_name)
        _node(w, "UAObject", group_id, group.browse_name, group.display_en, group.display_de,
              group.description_en, group.description_de,
              [("HasTypeDefinition", f"i={I_FOLDER_TYPE}", True),
               ("HasModellingRule", f"i={I_MANDATORY}", True),
               ("HasComponent", type_id, False)]
              + [(member_reference(m), type_node_id(group.browse_name, m.browse_name), True)
                 for m in group.members],
              {"ParentNodeId": type_id})
        for m in group.members:
            node_id = type_node_id(group.browse_name, m.browse_name)
            children = []
            if m.kind == "analog":
                if m.unit is not None:
                    children.append(("HasProperty", f"{node_id}.EngineeringUnits", True))
                if m.eu_range is not None:
                    children.append(("HasProperty", f"{node_id}.EURange", True))
            _node(w, "UAVariable", node_id, m.browse_name, m.display_en, m.display_de,
                  m.description_en, m.description_de,
                  [("HasTypeDefinition", f"i={member_type_definition(m)}", True),
                   ("HasModellingRule", f"i={I_MANDATORY if m.mandatory else I_OPTIONAL}", True),
                   (member_reference(m), group_id, False)] + children,
                  {"ParentNodeId": group_id, "DataType": _datatype_ref(m.datatype),
                   "AccessLevel": "1", "UserAccessLevel": "1"})
            if m.kind == "analog":
                _write_analog_properties(w, m, node_id)
    _write_event_types(w)
    return w.to_bytes()


def _write_event_types(w: NodeSetWriter) -> None:
    for event_type in EVENT_TYPES:
        type_id = f"ns=1;s={event_type.browse_name}"
        parent = f"i={event_type.parent}" if isinstance(event_type.parent, int) else f"ns=1;s={event_type.parent}"
        _node(w, "UAObjectType", type_id, event_type.browse_name, event_type.browse_name, event_type.browse_name,
              event_type.description_en, event_type.description_de,
              [("HasSubtype", parent, False)]
              + [("HasProperty", f"{type_id}.{p.browse_name}", True) for p in event_type.properties],
              {"IsAbstract": "true"} if event_type.abstract else None)
        for p in event_type.properties:
            _node(w, "UAVariable", f"{type_id}.{p.browse_name}", p.browse_name, p.display_en, p.display_de,
                  p.description_en, p.description_de,
                  [("HasTypeDefinition", f"i={I_PROPERTY_TYPE}", True),
                   ("HasModellingRule", f"i={I_MANDATORY}", True),
                   ("HasProperty", type_id, False)],
                  {"ParentNodeId": type_id, "DataType": _datatype_ref(p.datatype),
                   "AccessLevel": "1", "UserAccessLevel": "1"})


def main(argv: list[str] | None = None) -> int:
    """Rewrite the committed NodeSet2 file (``--check``: only compare, exit 1 if stale)."""
    return write_or_check(NODESET_PATH, generate(), "emu_opcua.opcua.nodeset",
                          sys.argv[1:] if argv is None else argv)

if __name__ == "__main__":
    sys.exit(main())
