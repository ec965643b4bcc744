// Independent OPC UA client (node-opcua) used by tests/opcua/test_interop.py.
// Usage: node services.mjs <endpointUrl> <user> <password> <measurementNodeId> <serialNodeId> <ipNodeId>
// Logs in (SecurityPolicy None, user name token), tries to overwrite read-only values in one
// Write request (a measurement, Identification, Configuration, the server's BuildInfo), reads
// the serial number back, subscribes to the measurement and calls Server.GetMonitoredItems
// (for its subscription and for an unknown one). Prints one JSON object on stdout.
import {
  OPCUAClient, AttributeIds, DataType, MessageSecurityMode, SecurityPolicy, UserTokenType, TimestampsToReturn,
} from "node-opcua-client";

const [endpointUrl, userName, password, measurementId, serialId, ipId] = process.argv.slice(2);
const BUILD_INFO_PRODUCT_NAME = "ns=0;i=2261";

async function main() {
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(endpointUrl);
  const session = await client.createSession({ type: UserTokenType.UserName, userName, password });
  try {
    const text = (value) => ({ value: { dataType: DataType.String, value } });
    const writes = await session.write([
      { nodeId: measurementId, attributeId: AttributeIds.Value, value: { value: { dataType: DataType.Double, value: 1234.5 } } },
      { nodeId: serialId, attributeId: AttributeIds.Value, value: text("FAKE-0001") },
      { nodeId: ipId, attributeId: AttributeIds.Value, value: text("192.0.2.66") },
      { nodeId: BUILD_INFO_PRODUCT_NAME, attributeId: AttributeIds.Value, value: text("fake") },
    ]);
    const serial = await session.read({ nodeId: serialId, attributeId: AttributeIds.Value });

    const subscription = await session.createSubscription2({
      requestedPublishingInterval: 200, requestedMaxKeepAliveCount: 10, requestedLifetimeCount: 100,
      maxNotificationsPerPublish: 100, publishingEnabled: true, priority: 1,
    });
    const item = await subscription.monitor(
      { nodeId: measurementId, attributeId: AttributeIds.Value },
      { samplingInterval: 200, queueSize: 1, discardOldest: true }, TimestampsToReturn.Both);
    const handles = await session.getMonitoredItems(subscription.subscriptionId);
    const unknown = await session.call({
      objectId: "ns=0;i=2253", methodId: "ns=0;i=11492",
      inputArguments: [{ dataType: DataType.UInt32, value: 999999 }],
    });
    await subscription.terminate();
    process.stdout.write(JSON.stringify({
      writeStatuses: writes.map((s) => s.name),
      serialStatus: serial.statusCode.name,
      serial: serial.value.value,
      monitoredItemId: item.monitoredItemId,
      clientHandle: item.monitoringParameters.clientHandle,
      serverHandles: Array.from(handles.serverHandles),
      clientHandles: Array.from(handles.clientHandles),
      unknownSubscription: unknown.statusCode.name,
    }) + "\n");
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
