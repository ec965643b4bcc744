"""Write, Read, Browse / BrowseNext and Call as OPC 10000-4 has them (services.py, methods.py).

A real GatewayServer serving one simulated meter (real sockets, 127.0.0.1) and real
asyncua clients: anonymous, and users with each role.
"""

from __future__ import annotations

import asyncio
import datetime
import inspect
import socket
import struct
import attrs
import pytest
import pytest_asyncio
from asyncua import Client, Server, ua
from asyncua.common.utils import Buffer

from emu_opcua.opcua import services
from emu_opcua.opcua.config import MeterConfig, ServerConfig, UserConfig
from emu_opcua.opcua.security import hash_password
from emu_opcua.opcua.serve import GatewayServer
from emu_opcua.simulator.fleet import Fleet, FleetConfig

on_module_loop = pytest.mark.asyncio(loop_scope="module")
WAIT = 20.0
USERS = {"alice": "admin", "bob": "reader", "olga": "operator"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("services")
    async with Fleet(FleetConfig(meters=1, host="127.0.0.1", control_port=None)) as fleet:
        await fleet.wait_warm()
        p = fleet.ports()[0]
        config = ServerConfig(
            host="127.0.0.1", port=free_port(), pki_dir=tmp / "pki", application_uri="urn:test:emu-opcua",
            security_policies=("None",), trust_all_clients=True,
            users=tuple(UserConfig(name, hash_password(f"{name}-pw"), role) for name, role in USERS.items()),
            meters=(MeterConfig(name="boiler", host=p.host, http_port=p.http_port, modbus_port=p.modbus_port,
                                fast_interval=0.5, extremes_interval=1.0, status_interval=1.0),))
        async with GatewayServer(config) as gw:
            await polled(gw)
            yield gw


async def polled(gw: GatewayServer) -> None:
    """Wait until the meter's live value and its serial number were published."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    nodes = (gw.model.quantity("boiler", "active_power_total"), gw.model.identification("boiler", "SerialNumber"))
    while not all(gw.server.read_attribute_value(n).StatusCode.is_good() for n in nodes):
        assert loop.time() < deadline, "the meter was not polled"
        await asyncio.sleep(0.1)


def connect(gw: GatewayServer, user: str | None = None) -> Client:
    client = Client(gw.config.endpoint, timeout=10)
    if user is not None:
        client.set_user(user)
        client.set_password(f"{user}-pw")
    return client


def write_value(node_id: ua.NodeId, value: ua.Variant, attribute=ua.AttributeIds.Value) -> ua.WriteValue:
    return ua.WriteValue(NodeId=node_id, AttributeId=attribute, Value=ua.DataValue(value))


def read_only_items(gw: GatewayServer) -> list[ua.WriteValue]:
    """A measurement, Identification, Configuration, the server's BuildInfo, a DisplayName."""
    m = gw.model
    return [
        write_value(m.quantity("boiler", "active_power_total"), ua.Variant(1234.5, ua.VariantType.Double)),
        write_value(m.identification("boiler", "SerialNumber"), ua.Variant("FAKE-0001", ua.VariantType.String)),
        write_value(m.configuration("boiler", "IpAddress"), ua.Variant("192.0.2.66", ua.VariantType.String)),
        write_value(ua.NodeId(ua.ObjectIds.Server_ServerStatus_BuildInfo_ProductName),
                    ua.Variant("fake", ua.VariantType.String)),
        write_value(m.quantity("boiler", "frequency"), ua.Variant(ua.LocalizedText("fake"), ua.VariantType.LocalizedText),
                    ua.AttributeIds.DisplayName),
    ]


# --- Write -----------------------------------------------------------------------------------
@on_module_loop
@pytest.mark.parametrize("user", [None, "bob", "olga", "alice"], ids=["anonymous", "reader", "operator", "admin"])
async def test_every_role_gets_bad_not_writable_per_item_for_read_only_values(gateway, user):
    items = read_only_items(gateway)
    before = [gateway.server.read_attribute_value(i.NodeId, i.AttributeId) for i in items]
    async with connect(gateway, user) as client:
        results = await client.uaclient.write(ua.WriteParameters(NodesToWrite=items))  # no service fault
    assert [r.value for r in results] == [ua.StatusCodes.BadNotWritable] * len(items)
    after = [gateway.server.read_attribute_value(i.NodeId, i.AttributeId) for i in items]
    assert all(dv.Value != item.Value.Value for dv, item in zip(after, items))  # nothing was applied
    assert [dv.Value for dv in after[1:]] == [dv.Value for dv in before[1:]]  # (the measurement moves on)


@on_module_loop
async def test_a_writable_node_refuses_readers_and_operators_per_item_and_takes_the_admins_write(gateway):
    server = gateway.server
    node = await server.nodes.objects.add_variable(ua.NodeId("test.Setpoint", 1), "Setpoint", 1.0)
    await node.set_writable()
    measurement = gateway.model.quantity("boiler", "active_power_total")
    try:
        for user in (None, "bob", "olga"):
            async with connect(gateway, user) as client:
                results = await client.uaclient.write(ua.WriteParameters(NodesToWrite=[
                    write_value(node.nodeid, ua.Variant(2.0, ua.VariantType.Double)),
                    write_value(measurement, ua.Variant(2.0, ua.VariantType.Double))]))
                assert [r.value for r in results] == [ua.StatusCodes.BadUserAccessDenied,
                                                      ua.StatusCodes.BadNotWritable], user
                # the user attributes say so, per session
                assert await client.get_node(node.nodeid).read_attribute(ua.AttributeIds.UserAccessLevel) \
                    == ua.DataValue(ua.Variant(ua.AccessLevel.CurrentRead.mask, ua.VariantType.Byte))
        assert await node.read_value() == 1.0
        async with connect(gateway, "alice") as client:
            results = await client.uaclient.write(ua.WriteParameters(NodesToWrite=[
                write_value(node.nodeid, ua.Variant(3.0, ua.VariantType.Double)),
                write_value(measurement, ua.Variant(3.0, ua.VariantType.Double)),
                write_value(node.nodeid, ua.Variant("text", ua.VariantType.String))]))
            assert [r.value for r in results] == [ua.StatusCodes.Good, ua.StatusCodes.BadNotWritable,
                                                  ua.StatusCodes.BadTypeMismatch]
            level = await client.get_node(node.nodeid).read_attribute(ua.AttributeIds.UserAccessLevel)
            assert level.Value.Value & ua.AccessLevel.CurrentWrite.mask
        assert await node.read_value() == 3.0
        assert server.read_attribute_value(measurement).Value.Value != 3.0
    finally:
        await server.delete_nodes([node])


@on_module_loop
async def test_write_with_an_index_range_is_refused_not_applied_to_the_whole_value(gateway):
    server = gateway.server
    node = await server.nodes.objects.add_variable(ua.NodeId("test.Array", 1), "Array", [1.0, 2.0, 3.0])
    await node.set_writable()
    try:
        async with connect(gateway, "alice") as client:
            item = write_value(node.nodeid, ua.Variant([9.0], ua.VariantType.Double))
            item.IndexRange = "1"
            [result] = await client.uaclient.write(ua.WriteParameters(NodesToWrite=[item]))
        assert result.value == ua.StatusCodes.BadWriteNotSupported
        assert await node.read_value() == [1.0, 2.0, 3.0]
    finally:
        await server.delete_nodes([node])


# --- Read ------------------------------------------------------------------------------------
async def read_power(client: Client, gw: GatewayServer, timestamps, max_age: float = 0.0) -> ua.DataValue:
    params = ua.ReadParameters(MaxAge=max_age, TimestampsToReturn=timestamps)
    params.NodesToRead = [ua.ReadValueId(NodeId=gw.model.quantity("boiler", "active_power_total"),
                                         AttributeId=ua.AttributeIds.Value)]
    [dv] = await client.uaclient.read(params)
    return dv


@on_module_loop
async def test_read_returns_the_timestamps_asked_for(gateway):
    T = ua.TimestampsToReturn
    async with connect(gateway) as client:
        got = {t: await read_power(client, gateway, t) for t in (T.Source, T.Server, T.Both, T.Neither)}
        assert await read_power(client, gateway, T.Both, max_age=60_000.0)  # MaxAge accepted
    has = {t: (dv.SourceTimestamp is not None, dv.ServerTimestamp is not None) for t, dv in got.items()}
    assert has == {T.Source: (True, False), T.Server: (False, True), T.Both: (True, True), T.Neither: (False, False)}
    assert all(dv.StatusCode.is_good() and isinstance(dv.Value.Value, float) for dv in got.values())
    # the stored value keeps both (subscriptions and other sessions share it)
    stored = gateway.server.read_attribute_value(gateway.model.quantity("boiler", "active_power_total"))
    assert stored.SourceTimestamp is not None and stored.ServerTimestamp is not None


@on_module_loop
@pytest.mark.parametrize("timestamps, max_age, code", [
    (ua.TimestampsToReturn.Invalid, 0.0, ua.StatusCodes.BadTimestampsToReturnInvalid),
    (7, 0.0, ua.StatusCodes.BadTimestampsToReturnInvalid),  # outside the enum
    (ua.TimestampsToReturn.Both, -1.0, ua.StatusCodes.BadMaxAgeInvalid),
], ids=["invalid", "outside-enum", "negative-max-age"])
async def test_read_refuses_invalid_parameters(gateway, timestamps, max_age, code):
    async with connect(gateway) as client:
        with pytest.raises(ua.UaStatusCodeError) as info:
            await read_power(client, gateway, timestamps, max_age)
        assert info.value.code == code
        assert await read_power(client, gateway, ua.TimestampsToReturn.Both)  # the session goes on


# --- Browse / BrowseNext ---------------------------------------------------------------------
def browse_params(node_id: ua.NodeId, max_refs: int) -> ua.BrowseParameters:
    params = ua.BrowseParameters(RequestedMaxReferencesPerNode=max_refs)
    params.NodesToBrowse = [ua.BrowseDescription(
        NodeId=node_id, BrowseDirection=ua.BrowseDirection.Forward,
        ReferenceTypeId=ua.NodeId(ua.ObjectIds.HierarchicalReferences), IncludeSubtypes=True,
        ResultMask=ua.BrowseResultMask.All)]
    return params


def measurements(gw: GatewayServer) -> ua.NodeId:
    return ua.NodeId("boiler.Measurements", gw.model.namespace_index)


def browse_next(points: list[bytes], release: bool = False) -> ua.BrowseNextParameters:
    return ua.BrowseNextParameters(ReleaseContinuationPoints=release, ContinuationPoints=points)


@on_module_loop
async def test_browse_pages_with_continuation_points(gateway):
    async with connect(gateway) as client:
        [whole] = await client.uaclient.browse(browse_params(measurements(gateway), 0))
        assert whole.ContinuationPoint is None and len(whole.References) > 20
        [page] = await client.uaclient.browse(browse_params(measurements(gateway), 7))
        assert len(page.References) == 7 and page.ContinuationPoint
        first_point = page.ContinuationPoint
        refs, point, pages = list(page.References), page.ContinuationPoint, 1
        while point:
            [page] = await client.uaclient.browse_next(browse_next([point]))
            assert page.StatusCode.is_good() and 0 < len(page.References) <= 7
            assert page.ContinuationPoint != point  # single use
            refs += page.References
            point, pages = page.ContinuationPoint, pages + 1
        assert [r.NodeId for r in refs] == [r.NodeId for r in whole.References]
        assert pages == -(-len(whole.References) // 7)
        # a used point is gone; an unknown one never was
        used, unknown = await client.uaclient.browse_next(browse_next([first_point, b"x" * 16]))
        assert used.StatusCode.value == unknown.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid


@on_module_loop
async def test_browse_next_releases_and_continuation_points_are_limited_per_session(gateway):
    limit = gateway.config.max_browse_continuation_points
    async with connect(gateway) as client, connect(gateway) as other:
        node = client.get_node(ua.ObjectIds.Server_ServerCapabilities_MaxBrowseContinuationPoints)
        assert await node.read_value() == limit
        points = []
        for _ in range(limit):
            [page] = await client.uaclient.browse(browse_params(measurements(gateway), 1))
            points.append(page.ContinuationPoint)
        [full] = await client.uaclient.browse(browse_params(measurements(gateway), 1))
        assert full.StatusCode.value == ua.StatusCodes.BadNoContinuationPoints and not full.References
        # another session has its own
        [page] = await other.uaclient.browse(browse_params(measurements(gateway), 1))
        assert page.StatusCode.is_good() and page.ContinuationPoint
        [foreign] = await other.uaclient.browse_next(browse_next([points[0]]))
        assert foreign.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid
        released = await client.uaclient.browse_next(browse_next(points[:2], release=True))
        assert [r.StatusCode.is_good() and not r.References for r in released] == [True, True]
        [gone] = await client.uaclient.browse_next(browse_next(points[:1]))
        assert gone.StatusCode.value == ua.StatusCodes.BadContinuationPointInvalid
        [page] = await client.uaclient.browse(browse_params(measurements(gateway), 1))
        assert page.StatusCode.is_good() and page.ContinuationPoint  # room again


# --- methods ---------------------------------------------------------------------------------
def method_node_ids(server: Server) -> list[ua.NodeId]:
    aspace = server.iserver.aspace
    return [n for n in list(aspace.keys())
            if ua.AttributeIds.NodeClass in aspace[n].attributes
            and aspace[n].attributes[ua.AttributeIds.NodeClass].value.Value.Value == ua.NodeClass.Method]


@on_module_loop
async def test_only_implemented_methods_are_executable(gateway):
    implemented = {ua.NodeId(ua.ObjectIds.Server_GetMonitoredItems), ua.NodeId(ua.ObjectIds.Server_ResendData)}
    # the meters' firmware update methods (shared by every meter's AddIn): executable,
    # but not for an anonymous session (an admin over SignAndEncrypt only), except the
    # informational GetUpdateBehavior
    shared = gateway.software_update.shared
    firmware = {getattr(shared, f.name) for f in attrs.fields(type(shared))}
    methods = method_node_ids(gateway.server)
    assert len(methods) > 400 and implemented | firmware <= set(methods)
    async with connect(gateway) as client:  # anonymous
        for attr, expected in ((ua.AttributeIds.Executable, implemented | firmware),
                               (ua.AttributeIds.UserExecutable, implemented | {shared.get_update_behavior})):
            params = ua.ReadParameters()
            params.NodesToRead = [ua.ReadValueId(NodeId=m, AttributeId=attr) for m in methods]
            values = await client.uaclient.read(params)
            assert {m for m, dv in zip(methods, values) if dv.Value.Value} == expected, attr


@on_module_loop
async def test_calls_of_unimplemented_unknown_and_misplaced_methods(gateway):
    server_object = ua.NodeId(ua.ObjectIds.Server)
    requests = [
        # not implemented: SetSubscriptionDurable(subscriptionId, lifetimeInHours)
        ua.CallMethodRequest(ObjectId=server_object, MethodId=ua.NodeId(ua.ObjectIds.Server_SetSubscriptionDurable),
                             InputArguments=[ua.Variant(1, ua.VariantType.UInt32), ua.Variant(1, ua.VariantType.UInt32)]),
        # no such method
        ua.CallMethodRequest(ObjectId=server_object, MethodId=ua.NodeId("nope", 1)),
        # not a method
        ua.CallMethodRequest(ObjectId=server_object, MethodId=ua.NodeId(ua.ObjectIds.Server_ServerStatus)),
        # a method of another object
        ua.CallMethodRequest(ObjectId=ua.NodeId(ua.ObjectIds.ObjectsFolder),
                             MethodId=ua.NodeId(ua.ObjectIds.Server_GetMonitoredItems),
                             InputArguments=[ua.Variant(1, ua.VariantType.UInt32)]),
        # no such object
        ua.CallMethodRequest(ObjectId=ua.NodeId("nope", 1), MethodId=ua.NodeId(ua.ObjectIds.Server_GetMonitoredItems)),
    ]
    async with connect(gateway) as client:
        results = await client.uaclient.call(requests)
    assert [r.StatusCode.value for r in results] == [
        ua.StatusCodes.BadNotExecutable, ua.StatusCodes.BadMethodInvalid, ua.StatusCodes.BadMethodInvalid,
        ua.StatusCodes.BadMethodInvalid, ua.StatusCodes.BadNodeIdUnknown]


async def get_monitored_items(client: Client, subscription_id: int | ua.Variant):
    if not isinstance(subscription_id, ua.Variant):
        subscription_id = ua.Variant(subscription_id, ua.VariantType.UInt32)
    server = client.get_node(ua.ObjectIds.Server)
    return await server.call_method(ua.NodeId(ua.ObjectIds.Server_GetMonitoredItems), subscription_id)


class Collect:
    def __init__(self) -> None:
        self.values: asyncio.Queue = asyncio.Queue()

    def datachange_notification(self, node, val, data) -> None:
        self.values.put_nowait((node.nodeid, val))


@on_module_loop
async def test_get_monitored_items_for_the_owner_only(gateway):
    power = gateway.model.quantity("boiler", "active_power_total")
    frequency = gateway.model.quantity("boiler", "frequency")
    async with connect(gateway) as client, connect(gateway, "alice") as other:  # anonymous owner, admin other
        subscription = await client.create_subscription(200, Collect())
        handles = await subscription.subscribe_data_change([client.get_node(power), client.get_node(frequency)])
        server_handles, client_handles = await get_monitored_items(client, subscription.subscription_id)
        assert sorted(server_handles) == sorted(handles)
        assert sorted(client_handles) == sorted(subscription._monitored_items)  # asyncua's client handles
        for caller, sub_id, code in ((client, 999_999, ua.StatusCodes.BadSubscriptionIdInvalid),
                                     (other, subscription.subscription_id, ua.StatusCodes.BadUserAccessDenied)):
            with pytest.raises(ua.UaStatusCodeError) as info:
                await get_monitored_items(caller, sub_id)
            assert info.value.code == code
        with pytest.raises(ua.UaStatusCodeError) as info:  # the argument's type is checked
            await get_monitored_items(client, ua.Variant(float(subscription.subscription_id), ua.VariantType.Double))
        assert info.value.code == ua.StatusCodes.BadInvalidArgument
        await subscription.delete()


@on_module_loop
async def test_resend_data_sends_current_values_with_the_next_publish(gateway):
    async with connect(gateway) as client:
        collect = Collect()
        subscription = await client.create_subscription(100, collect)
        # a node whose value does not change by itself: only ResendData can notify again
        serial = gateway.model.identification("boiler", "SerialNumber")
        await subscription.subscribe_data_change([client.get_node(serial)])
        node_id, first = await asyncio.wait_for(collect.values.get(), 10)
        assert node_id == serial and first
        await asyncio.sleep(0.5)
        assert collect.values.empty()
        server = client.get_node(ua.ObjectIds.Server)
        assert await server.call_method(ua.NodeId(ua.ObjectIds.Server_ResendData),
                                        ua.Variant(subscription.subscription_id, ua.VariantType.UInt32)) is None
        node_id, again = await asyncio.wait_for(collect.values.get(), 10)
        assert (node_id, again) == (serial, first)
        with pytest.raises(ua.UaStatusCodeError) as info:
            await server.call_method(ua.NodeId(ua.ObjectIds.Server_ResendData),
                                     ua.Variant(999_999, ua.VariantType.UInt32))
        assert info.value.code == ua.StatusCodes.BadSubscriptionIdInvalid
        await subscription.delete()


# --- the seam itself -------------------------------------------------------------------------
# OpcUaServer.start is asyncua 2.1's Server.start with our BinaryServer; if asyncua's
# changes, compare and update both this pin and OpcUaServer.start.


def test_one_processor_guards_then_serves():
    """The guard's checks run before our services (a None channel must not reach Read)."""
    from emu_opcua.opcua.channel_guard import GuardedUaProcessor

    mro = services.GuardedServiceProcessor.__mro__
    assert mro.index(GuardedUaProcessor) < mro.index(services.ServiceProcessor)
    assert services.OpcUaServer.processor_class is services.GuardedServiceProcessor


def test_timestamps_to_return_is_the_int32_after_max_age():
    # ServiceProcessor reads an undecodable TimestampsToReturn at this offset
    data = ua.ua_binary.struct_to_binary(ua.ReadParameters(MaxAge=1.5, TimestampsToReturn=ua.TimestampsToReturn.Neither))
    buf = Buffer(data)
    assert struct.unpack("<d", buf.read(8))[0] == 1.5
    assert struct.unpack("<i", buf.read(4))[0] == 3


NOW = datetime.datetime(2026, 12, 2, 12, 0, 0, 123456, tzinfo=datetime.timezone.utc)
DATA_VALUES = [
    ua.DataValue(ua.Variant(1.5, ua.VariantType.Double), SourceTimestamp=NOW, ServerTimestamp=NOW),
    ua.DataValue(ua.Variant("x", ua.VariantType.String), StatusCode=ua.StatusCode(ua.StatusCodes.UncertainLastUsableValue),
                 SourceTimestamp=NOW),
    ua.DataValue(StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData)),
    ua.DataValue(ua.Variant([1, 2, 3], ua.VariantType.UInt32), ServerTimestamp=NOW),
    ua.DataValue(ua.Variant(ua.LocalizedText("Leistung", "de"), ua.VariantType.LocalizedText)),
    ua.DataValue(ua.Variant(None, ua.VariantType.Null), StatusCode=None),
]


def test_read_response_encoding_is_asyncuas_with_both_timestamps():
    nodes = [ua.ReadValueId(NodeId=ua.NodeId(i), AttributeId=ua.AttributeIds.Value) for i in range(len(DATA_VALUES))]
    ours = services.encode_read_response(42, nodes, DATA_VALUES, ua.TimestampsToReturn.Both)
    response = ua.ReadResponse()
    response.ResponseHeader.RequestHandle = 42
    response.Results = DATA_VALUES
    theirs = ua.ua_binary.struct_to_binary(response)
    # the ResponseHeader carries the time it was made: compare around it
    decoded = ua.ua_binary.struct_from_binary(ua.ReadResponse, Buffer(ours))
    assert decoded.ResponseHeader.RequestHandle == 42
    assert decoded.Results == ua.ua_binary.struct_from_binary(ua.ReadResponse, Buffer(theirs)).Results
    header = len(ua.ua_binary.struct_to_binary(response.ResponseHeader)) + 4
    assert ours[header:] == theirs[header:]


@pytest.mark.parametrize("timestamps, source, server", [
    (ua.TimestampsToReturn.Source, True, False), (ua.TimestampsToReturn.Server, False, True),
    (ua.TimestampsToReturn.Neither, False, False)])
def test_read_response_keeps_the_timestamps_asked_for_on_value_attributes_only(timestamps, source, server):
    value = ua.DataValue(ua.Variant(1.5, ua.VariantType.Double), SourceTimestamp=NOW, ServerTimestamp=NOW)
    nodes = [ua.ReadValueId(NodeId=ua.NodeId(1), AttributeId=ua.AttributeIds.Value),
             ua.ReadValueId(NodeId=ua.NodeId(1), AttributeId=ua.AttributeIds.DisplayName)]
    data = services.encode_read_response(1, nodes, [value, value], timestamps)
    [got, other] = ua.ua_binary.struct_from_binary(ua.ReadResponse, Buffer(data)).Results
    assert (got.Value, got.StatusCode) == (value.Value, value.StatusCode)
    assert got.SourceTimestamp == (NOW if source else None)
    assert got.ServerTimestamp == (NOW if server else None)
    assert other.SourceTimestamp == other.ServerTimestamp == NOW  # not a Value attribute: as stored


def test_picoseconds_follow_their_timestamp():
    # OPC 10000-6 5.2.2.17: SourceTimestamp, SourcePicoseconds, ServerTimestamp, ServerPicoseconds
    # (asyncua's generic serializer writes both timestamps first; we never set picoseconds)
    dv = ua.DataValue(ua.Variant(True, ua.VariantType.Boolean), SourceTimestamp=NOW, ServerTimestamp=NOW,
                      SourcePicoseconds=7, ServerPicoseconds=9)
    stamp = ua.ua_binary.Primitives.DateTime.pack(NOW)
    assert services.encode_data_value(dv) == (bytes([0x3F]) + ua.ua_binary.variant_to_binary(dv.Value)
                                             + struct.pack("<I", 0) + stamp + struct.pack("<H", 7)
                                             + stamp + struct.pack("<H", 9))
    assert services.encode_data_value(dv, keep_source=False) == (
        bytes([0x2B]) + ua.ua_binary.variant_to_binary(dv.Value) + struct.pack("<I", 0) + stamp + struct.pack("<H", 9))


def test_default_settings():
    assert services.ServiceSettings().max_browse_continuation_points == 10 == ServerConfig().max_browse_continuation_points
