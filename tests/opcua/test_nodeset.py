"""The committed NodeSet2 file is the generated one, and asyncua imports it."""

import xml.etree.ElementTree as ET

from asyncua import Server, ua

from emu_opcua.history.events import KINDS
from emu_opcua.meter.catalogue import MEASUREMENTS, WITH_EXTREMES
from emu_opcua.opcua import nodeset
from emu_opcua.opcua.nodeset import NAMESPACE_URI, NODESET_PATH, generate
from emu_opcua.opcua.nodeset_xml import NS_NODESET, NS_TYPES

NS = {"n": NS_NODESET, "uax": NS_TYPES}


def test_committed_file_equals_generated():
    assert NODESET_PATH.read_bytes() == generate(), "run: python -m emu_opcua.opcua.nodeset"


def test_generation_is_deterministic():
    assert generate() == generate()


def test_structure_of_the_xml():
    root = ET.fromstring(generate())
    assert root.find("n:NamespaceUris/n:Uri", NS).text == NAMESPACE_URI
    model = root.find("n:Models/n:Model", NS)
    assert model.get("ModelUri") == NAMESPACE_URI
    assert model.find("n:RequiredModel", NS).get("ModelUri") == "http://opcfoundation.org/UA/"
    aliases = {a.get("Alias"): a.text for a in root.findall("n:Aliases/n:Alias", NS)}
    assert aliases["HasComponent"] == "i=47" and aliases["Double"] == "i=11"
    object_types = {t.get("BrowseName"): t for t in root.findall("n:UAObjectType", NS)}
    assert set(object_types) == {"1:EmuMeterType"} | {f"1:{t.browse_name}" for t in nodeset.EVENT_TYPES}
    variables = {v.get("NodeId"): v for v in root.findall("n:UAVariable", NS)}
    power = variables["ns=1;s=EmuMeterType.Measurements.AcActivePowerTotal"]
    refs = {(r.get("ReferenceType"), r.text) for r in power.findall("n:References/n:Reference", NS)}
    assert ("HasTypeDefinition", "i=2368") in refs and ("HasModellingRule", "i=78") in refs
    names = {d.get("Locale"): d.text for d in power.findall("n:DisplayName", NS)}
    assert names == {"en": "Active power total", "de": "Wirkleistung total"}
    assert "1-0:16.7.0" in power.find("n:Description[@Locale='en']", NS).text
    eu = variables["ns=1;s=EmuMeterType.Measurements.AcActivePowerTotal.EngineeringUnits"]
    assert eu.find(".//uax:EUInformation/uax:UnitId", NS).text == "4937556"
    # extremes are optional members
    extreme = variables["ns=1;s=EmuMeterType.Extremes.AcFrequencyMaxTime"]
    refs = {(r.get("ReferenceType"), r.text) for r in extreme.findall("n:References/n:Reference", NS)}
    assert ("HasModellingRule", "i=80") in refs
    measurement_ids = {k for k in variables if k.startswith("ns=1;s=EmuMeterType.Measurements.")
                       and k.count(".") == 2}
    assert len(measurement_ids) == len(MEASUREMENTS)
    extreme_ids = {k for k in variables if k.startswith("ns=1;s=EmuMeterType.Extremes.") and k.count(".") == 2}
    assert len(extreme_ids) == 4 * len(WITH_EXTREMES)


async def test_imports_into_asyncua():
    server = Server()
    await server.init()
    added = await server.import_xml(str(NODESET_PATH))
    assert added
    idx = await server.get_namespace_index(NAMESPACE_URI)
    otype = server.get_node(ua.NodeId("EmuMeterType", idx))
    assert (await otype.read_node_class()) == ua.NodeClass.ObjectType
    [parent] = await otype.get_referenced_nodes(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
    assert parent.nodeid == ua.NodeId(ua.ObjectIds.BaseObjectType)
    eu = await server.get_node(ua.NodeId("EmuMeterType.Measurements.AcVoltagePeL1.EngineeringUnits", idx)).read_value()
    assert eu.UnitId == 5655636 and eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
    assert eu.DisplayName.Text == "V"
    rng = await server.get_node(ua.NodeId("EmuMeterType.Measurements.AcFrequency.EURange", idx)).read_value()
    assert (rng.Low, rng.High) == (45.0, 65.0)
    health = server.get_node(ua.NodeId("EmuMeterType.Identification.DeviceHealth", idx))
    assert (await health.read_data_type()) == ua.NodeId("DeviceHealthEnumeration", idx)
    strings = await server.get_node(ua.NodeId("DeviceHealthEnumeration.EnumStrings", idx)).read_value()
    assert [s.Text for s in strings] == list(nodeset.DEVICE_HEALTH)


async def test_event_types_import_below_system_event_type_with_their_properties():
    server = Server()
    await server.init()
    await server.import_xml(str(NODESET_PATH))
    idx = await server.get_namespace_index(NAMESPACE_URI)
    base = server.get_node(ua.NodeId(nodeset.EVENT_BASE_TYPE, idx))
    [parent] = await base.get_referenced_nodes(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
    assert parent.nodeid == ua.NodeId(ua.ObjectIds.SystemEventType)
    assert await base.read_attribute(ua.AttributeIds.IsAbstract) is not None
    logbook = server.get_node(ua.NodeId("LogbookEntryEventType", idx))
    names = {(await p.read_browse_name()).Name for p in await logbook.get_properties()}
    assert {"CtPrimary", "CtPrimaryBefore", "VtSecondaryBefore", "S0PulseValue", "S0PulseLengthBefore",
            "DatalogIndex", "LogbookIndex", "AcActiveEnergyT1ImportHp"} <= names
    outage = server.get_node(ua.NodeId("PowerOutageEventType", idx))
    [status] = await outage.get_referenced_nodes(ua.ObjectIds.HasSubtype, ua.BrowseDirection.Inverse)
    assert status.nodeid == ua.NodeId("DatalogStatusEventType", idx)
    assert {k: t.browse_name for k, t in nodeset.EVENT_TYPE_BY_KIND.items()} == dict(KINDS)
