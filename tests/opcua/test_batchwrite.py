"""batchwrite sets Value attributes directly in asyncua's address space: pin that Read
and subscriptions see what it writes, as they see ``write_attribute_value``."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta

from asyncua import Client, Server, ua

from emu_opcua.opcua.batchwrite import value_attribute, write_values


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Changes:
    def __init__(self) -> None:
        self.values: list[ua.DataValue] = []

    def datachange_notification(self, node, val, data) -> None:
        self.values.append(data.monitored_item.Value)


async def _wait(check, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not check() and loop.time() < end:
        await asyncio.sleep(0.02)


async def test_read_and_subscriptions_see_batch_written_values():
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{free_port()}/")
    idx = await server.register_namespace("urn:test:batchwrite")
    objects = server.get_objects_node()
    a = await objects.add_variable(ua.NodeId("a", idx), "a", ua.Variant(1.5, ua.VariantType.Double))
    b = await objects.add_variable(ua.NodeId("b", idx), "b", ua.Variant(2.5, ua.VariantType.Double))
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for node, value in ((a, 1.5), (b, 2.5)):
        await server.write_attribute_value(node.nodeid, ua.DataValue(
            Value=ua.Variant(value, ua.VariantType.Double), SourceTimestamp=t0, ServerTimestamp=t0))
    async with server:
        async with Client(server.endpoint.geturl(), timeout=10) as client:
            on_timestamp, on_value = Changes(), Changes()
            sub_ts = await client.create_subscription(20, on_timestamp)
            sub_value = await client.create_subscription(20, on_value)
            # (asyncua's client has no public call for a DataChangeFilter other than deadbands)
            await sub_ts._subscribe(client.get_node(b.nodeid), queuesize=10, mfilter=ua.DataChangeFilter(
                Trigger=ua.DataChangeTrigger.StatusValueTimestamp))
            await sub_value.subscribe_data_change(client.get_node(a.nodeid))  # default trigger: StatusValue
            await _wait(lambda: on_value.values and on_timestamp.values)
            await asyncio.sleep(0.2)
            assert len(on_value.values) == 1 and len(on_timestamp.values) == 1  # the initial values

            t1 = t0 + timedelta(seconds=1)
            writes = [(node.nodeid, value_attribute(server, node.nodeid), ua.DataValue(
                Value=ua.Variant(value, ua.VariantType.Double), StatusCode=ua.StatusCode(ua.StatusCodes.Good),
                SourceTimestamp=t1, ServerTimestamp=t1)) for node, value in ((a, 1.5), (b, 2.5))]
            await write_values(server, writes)

            for node, value in ((a, 1.5), (b, 2.5)):
                dv = await client.get_node(node.nodeid).read_data_value()
                assert (dv.Value.Value, dv.SourceTimestamp) == (value, t1)
            # a subscription triggered by timestamps is told; one by value is not
            await _wait(lambda: len(on_timestamp.values) > 1)
            assert [dv.SourceTimestamp for dv in on_timestamp.values[1:]] == [t1]
            await asyncio.sleep(0.2)
            assert len(on_value.values) == 1
