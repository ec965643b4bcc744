"""Read a meter's values with their units, then subscribe to changes (asyncua client).

    emu-opcua serve &                                   # demo: meters demo-1..demo-3
    python examples/client_read_subscribe.py opc.tcp://127.0.0.1:4840/ demo-1

Node ids are stable strings derived from the meter name (see ARCHITECTURE.md), so a
client can address a value directly: ns=<EmuMeter>;s=<meter>.Measurements.<BrowseName>.
"""

from __future__ import annotations

import asyncio
import sys

from asyncua import Client, ua

NAMESPACE_URI = "urn:emu-opcua:nodesets:EmuMeter"
WATCH = ("AcActivePowerTotal", "AcCurrentL1", "AcVoltagePeL1", "AcFrequency")


class PrintChanges:
    """asyncua calls this for every data change of a subscribed node."""

    def datachange_notification(self, node, value, data) -> None:
        dv = data.monitored_item.Value
        print(f"  {node.nodeid.Identifier:45} {value!s:>12}  {dv.StatusCode.name}  {dv.SourceTimestamp:%H:%M:%S}")


def shown(dv: ua.DataValue) -> str:
    """The value when it is Good, else the StatusCode's name (what a SCADA shows)."""
    return str(dv.Value.Value) if dv.StatusCode.is_good() else dv.StatusCode.name


async def main(url: str, meter: str) -> None:
    async with Client(url) as client:  # SecurityPolicy None, anonymous (reader role)
        ns = await client.get_namespace_index(NAMESPACE_URI)

        def node(path: str):
            return client.get_node(ua.NodeId(f"{meter}.{path}", ns))

        # A value the gateway has not read from the meter yet (just started, meter down)
        # has a Bad status and no value: read the DataValue and look at its status.
        serial = await node("Identification.SerialNumber").read_data_value(raise_on_bad_status=False)
        state = await node("Diagnostics.ConnectionState").read_data_value(raise_on_bad_status=False)
        print(f"meter {meter}: serial {shown(serial)}, {shown(state)}")

        # Every measurement with its engineering unit, by browsing the Measurements folder.
        for child in await node("Measurements").get_children():
            name = (await child.read_browse_name()).Name
            dv = await child.read_data_value(raise_on_bad_status=False)
            eu = await child.get_child("0:EngineeringUnits")
            unit = (await eu.read_value()).DisplayName.Text
            print(f"  {name:32} {shown(dv):>14} {unit:6} {dv.StatusCode.name}")

        print("subscribed; Ctrl-C stops")
        subscription = await client.create_subscription(500, PrintChanges())
        await subscription.subscribe_data_change([node(f"Measurements.{name}") for name in WATCH])
        while True:
            await asyncio.sleep(1)


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "opc.tcp://127.0.0.1:4840/",
                         sys.argv[2] if len(sys.argv) > 2 else "demo-1"))
    except KeyboardInterrupt:
        pass
