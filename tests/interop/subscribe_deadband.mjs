// Independent OPC UA client (node-opcua) used by tests/opcua/test_interop.py: deadbands.
// Usage: node subscribe_deadband.mjs <endpointUrl> <nodeId> <None|Absolute|Percent> <deadbandValue> [samplingIntervalMs]
// Connects anonymously (SecurityPolicy None), creates a subscription (publishing 20 ms) and
// one monitored item on the Value of <nodeId> with a DataChangeFilter (StatusValue, the
// deadband given), and prints JSON lines on stdout:
//   {"created": {"statusCode": name, "revisedSamplingInterval": ms}}   once
//   {"value": number|null, "statusCode": name}                          per notification
// It stops when its standard input closes (or the item was refused), after a last
// publishing cycle; then prints {"done": true}.
import {
  OPCUAClient, AttributeIds, MessageSecurityMode, SecurityPolicy, DataChangeFilter, DataChangeTrigger,
  DeadbandType, TimestampsToReturn, MonitoringMode, ClientMonitoredItem,
} from "node-opcua-client";

const [endpointUrl, nodeId, deadbandName, deadbandValue, sampling = "0"] = process.argv.slice(2);
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const stdinClosed = new Promise((resolve) => {
  process.stdin.on("end", resolve);
  process.stdin.on("close", resolve);
  process.stdin.resume();
});

async function main() {
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(endpointUrl);
  const session = await client.createSession();
  try {
    const subscription = await session.createSubscription2({
      requestedPublishingInterval: 20, requestedLifetimeCount: 1000, requestedMaxKeepAliveCount: 20,
      maxNotificationsPerPublish: 0, publishingEnabled: true, priority: 1,
    });
    const filter = new DataChangeFilter({
      trigger: DataChangeTrigger.StatusValue,
      deadbandType: DeadbandType[deadbandName],
      deadbandValue: Number(deadbandValue),
    });
    // The raw service first: its result carries the operation StatusCode and the revised
    // sampling interval, which node-opcua's ClientMonitoredItem does not report on refusal.
    const response = await session.createMonitoredItems({
      subscriptionId: subscription.subscriptionId,
      timestampsToReturn: TimestampsToReturn.Both,
      itemsToCreate: [{
        itemToMonitor: { nodeId, attributeId: AttributeIds.Value },
        monitoringMode: MonitoringMode.Disabled,
        requestedParameters: { clientHandle: 4242, samplingInterval: Number(sampling), queueSize: 1, discardOldest: true, filter },
      }],
    });
    const result = response.results[0];
    print({ created: { statusCode: result.statusCode.name, revisedSamplingInterval: result.revisedSamplingInterval } });
    if (result.statusCode.isGood()) {
      await session.deleteMonitoredItems({ subscriptionId: subscription.subscriptionId, monitoredItemIds: [result.monitoredItemId] });
      const item = ClientMonitoredItem.create(
        subscription, { nodeId, attributeId: AttributeIds.Value },
        { samplingInterval: Number(sampling), queueSize: 100, discardOldest: true, filter },
        TimestampsToReturn.Both);
      item.on("changed", (dataValue) => {
        const v = dataValue.value ? dataValue.value.value : null;
        print({ value: typeof v === "number" ? v : null, statusCode: dataValue.statusCode.name });
      });
      await new Promise((resolve, reject) => { item.once("initialized", resolve); item.once("err", reject); });
      print({ ready: true });
      await stdinClosed;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    await subscription.terminate();
  } finally {
    await session.close();
    await client.disconnect();
  }
  print({ done: true });
}

main().then(() => process.exit(0))
  .catch((err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
