"""MeterModel over a real asyncua server, browsed by a real asyncua client over TCP."""

import socket

import pytest
from asyncua import Client, Server, ua

from emu_opcua.meter.catalogue import MEASUREMENTS, WITH_EXTREMES
from emu_opcua.opcua import nodeset
from emu_opcua.opcua.model import MeterModel, check_meter_name, node_id_string


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_server(meters):
    server = Server()
    await server.init()
    server.disable_clock()
    url = f"opc.tcp://127.0.0.1:{free_port()}/"
    server.set_endpoint(url)
    server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    model = await MeterModel.build(server, meters)
    await server.start()
    return server, model, url


@pytest.fixture
async def running():
    server, model, url = await start_server(["boiler", "hall-3", "pv_roof"])
    client = Client(url, timeout=10)
    await client.connect()
    try:
        yield server, model, client
    finally:
        await client.disconnect()
        await server.stop()


async def test_browse_meters_over_tcp(running):
    server, model, client = running
    idx = await client.get_namespace_index(nodeset.NAMESPACE_URI)
    assert idx == model.namespace_index
    objects = client.nodes.objects
    meters_folder = await objects.get_child(f"{idx}:Meters")
    names = sorted([(await c.read_browse_name()).Name for c in await meters_folder.get_children()])
    assert names == ["boiler", "hall-3", "pv_roof"]
    boiler = await meters_folder.get_child(f"{idx}:boiler")
    assert boiler.nodeid == ua.NodeId("boiler", idx)
    typedef = await boiler.read_type_definition()
    assert typedef == ua.NodeId("EmuMeterType", idx)
    groups = sorted([(await c.read_browse_name()).Name for c in await boiler.get_children()])
    assert groups == sorted(g.browse_name for g in nodeset.TYPE_GROUPS)
    power = await boiler.get_child([f"{idx}:Measurements", f"{idx}:AcActivePowerTotal"])
    assert power.nodeid == ua.NodeId("boiler.Measurements.AcActivePowerTotal", idx)
    assert power.nodeid == model.quantity("boiler", "active_power_total")
    assert await power.read_type_definition() == ua.NodeId(ua.ObjectIds.AnalogItemType)


async def test_instance_has_the_type_browse_names(running):
    server, model, client = running
    idx = model.namespace_index
    for group in nodeset.TYPE_GROUPS:
        type_group = client.get_node(ua.NodeId(f"EmuMeterType.{group.browse_name}", idx))
        type_names = {(await c.read_browse_name()).Name for c in await type_group.get_children()}
        inst_group = client.get_node(ua.NodeId(f"pv_roof.{group.browse_name}", idx))
        inst_names = {(await c.read_browse_name()).Name for c in await inst_group.get_children()}
        mandatory = {m.browse_name for m in group.members if m.mandatory or m.extreme}
        assert mandatory <= inst_names <= type_names


async def test_engineering_units_display_name_and_initial_status(running):
    server, model, client = running
    power = client.get_node(model.quantity("hall-3", "active_power_total"))
    eu = await (await power.get_child("0:EngineeringUnits")).read_value()
    assert eu.UnitId == 4937556 and eu.DisplayName.Text == "kW"
    assert eu.NamespaceUri == "http://www.opcfoundation.org/UA/units/un/cefact"
    energy = client.get_node(model.quantity("hall-3", "active_energy_import_total"))
    assert (await (await energy.get_child("0:EngineeringUnits")).read_value()).UnitId == 4937544
    rng = await (await power.get_child("0:EURange")).read_value()
    assert (rng.Low, rng.High) == (-1000.0, 1000.0)
    name = await power.read_display_name()
    assert (name.Locale, name.Text) == ("en", "Active power total")
    assert "1-0:16.7.0" in (await power.read_description()).Text
    dv = await power.read_data_value(raise_on_bad_status=False)
    assert dv.StatusCode.value == ua.StatusCodes.BadWaitingForInitialData
    assert dv.Value.Value is None
    access = await power.read_attribute(ua.AttributeIds.AccessLevel)
    assert access.Value.Value & ua.AccessLevel.CurrentRead.mask
    assert not access.Value.Value & ua.AccessLevel.CurrentWrite.mask
    manufacturer = client.get_node(model.identification("hall-3", "Manufacturer"))
    assert (await manufacturer.read_value()).Text == nodeset.MANUFACTURER


async def test_publisher_writes_and_client_reads(running):
    server, model, client = running
    node_id = model.quantity("boiler", "frequency")
    await server.write_attribute_value(node_id, ua.DataValue(ua.Variant(50.01, ua.VariantType.Double)))
    assert await client.get_node(node_id).read_value() == 50.01
    t_node = model.extreme("boiler", "frequency", "max_time")
    assert t_node == ua.NodeId("boiler.Extremes.AcFrequencyMaxTime", model.namespace_index)
    state = model.diagnostics("boiler", "ConnectionState")
    await server.write_attribute_value(state, ua.DataValue(ua.Variant("Connected", ua.VariantType.String)))
    assert await client.get_node(state).read_value() == "Connected"


def test_lookup_tables_cover_the_catalogue():
    # pure: the mapping keys are catalogue codes
    from emu_opcua.opcua.model import _meter_items

    items, waiting = [], []
    nodes = _meter_items("m1", 2, ua.NodeId("Meters", 2), items, waiting, True)
    assert {q.code for q in MEASUREMENTS} <= set(nodes.quantities)
    assert "power_fail_count" in nodes.quantities
    assert set(nodes.extremes) == {(q.code, w) for q in WITH_EXTREMES for w in ("min", "min_time", "max", "max_time")}
    assert len({i.RequestedNewNodeId for i in items}) == len(items)
    assert all(str(i.RequestedNewNodeId.Identifier).startswith("m1") for i in items)


async def test_node_ids_are_stable_across_starts_and_orders():
    async def snapshot(meters):
        server = Server()
        await server.init()
        model = await MeterModel.build(server, meters)
        ids = {(m, code): nid.to_string() for (m, code), nid in model.items()}
        ids.update({(m, "object"): model.meters[m].object.to_string() for m in meters})
        return ids

    first = await snapshot(["a", "b", "c"])
    second = await snapshot(["c", "a", "b"])
    assert first == second
    assert first[("b", "voltage_l2")] == f"ns=2;s={node_id_string('b', 'Measurements', 'AcVoltagePeL2')}"


async def test_bad_meter_names_are_refused():
    assert check_meter_name("boiler-1_a") is None
    assert check_meter_name("a.b") is not None
    assert check_meter_name("EmuMeterType") is not None
    server = Server()
    await server.init()
    with pytest.raises(ValueError, match="a.b"):
        await MeterModel.build(server, ["a.b"])
    with pytest.raises(ValueError, match="unique"):
        await MeterModel.build(server, ["x", "x"])


async def test_build_can_be_called_twice_for_more_meters():
    server = Server()
    await server.init()
    first = await MeterModel.build(server, ["one"])
    second = await MeterModel.build(server, ["two"])
    assert first.folder == second.folder
    children = await server.get_node(first.folder).get_children()
    assert {c.nodeid.Identifier for c in children} == {"one", "two"}

