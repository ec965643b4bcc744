// Independent OPC UA client (node-opcua) subscribing to meter events, for tests/opcua/test_events_interop.py.
// Usage: node meter_events.mjs <endpointUrl> <notifier nodeId> <meter nodeId> <namespace index> <events wanted>
// Subscribes to events of the notifier (Server or a meter) selecting BaseEventType's fields and
// two of the LogbookEntryEventType's, prints {"ready": true} once the monitored item exists,
// waits for the events wanted (30 s at most), then reads the meter's event history
// (ReadEventDetails, one event a page, following continuation points) and prints one JSON
// object: the live events and the history, each event as {eventId (hex), eventType, sourceName,
// message, ctPrimary, ctPrimaryBefore}.
import {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, AttributeIds, ClientSubscription, ClientMonitoredItem,
  TimestampsToReturn, constructEventFilter, HistoryReadRequest, ReadEventDetails,
} from "node-opcua-client";

const [endpointUrl, notifier, meter, ns, wantedText] = process.argv.slice(2);
const wanted = Number(wantedText);
const fields = ["EventId", "EventType", "SourceName", "Message", `${ns}:CtPrimary`, `${ns}:CtPrimaryBefore`];

function asEvent(variants) {
  const v = variants.map((x) => (x && x.value !== undefined ? x.value : null));
  return {
    eventId: v[0] ? Buffer.from(v[0]).toString("hex") : null,
    eventType: v[1] ? v[1].toString() : null,
    sourceName: v[2],
    message: v[3] ? v[3].text : null,
    ctPrimary: v[4],
    ctPrimaryBefore: v[5],
  };
}

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
    const filter = constructEventFilter(fields);
    const subscription = ClientSubscription.create(session, {
      requestedPublishingInterval: 100, requestedLifetimeCount: 600, requestedMaxKeepAliveCount: 20,
      maxNotificationsPerPublish: 100, publishingEnabled: true, priority: 1,
    });
    const live = [];
    let done;
    const enough = new Promise((resolve) => { done = resolve; });
    const item = ClientMonitoredItem.create(subscription, { nodeId: notifier, attributeId: AttributeIds.EventNotifier },
      { samplingInterval: 0, filter, queueSize: 100, discardOldest: true }, TimestampsToReturn.Neither);
    item.on("changed", (variants) => {
      live.push(asEvent(variants));
      if (live.length >= wanted) done();
    });
    await new Promise((resolve, reject) => { item.on("initialized", resolve); item.on("err", reject); });
    process.stdout.write(JSON.stringify({ ready: true }) + "\n");
    await Promise.race([enough, new Promise((resolve) => setTimeout(resolve, 30000))]);
    await subscription.terminate();

    const history = [];
    let continuationPoint = null;
    let pages = 0;
    // the same request on every page (a continuation point belongs to its request)
    const startTime = new Date(Date.now() - 30 * 86400e3);
    const endTime = new Date(Date.now() + 86400e3);
    for (;;) {
      const response = await session.historyRead(new HistoryReadRequest({
        historyReadDetails: new ReadEventDetails({
          numValuesPerNode: 1, startTime, endTime, filter,
        }),
        timestampsToReturn: TimestampsToReturn.Both,
        releaseContinuationPoints: false,
        nodesToRead: [{ nodeId: meter, continuationPoint }],
      }));
      const result = response.results[0];
      if (result.statusCode.value !== 0) throw new Error(`HistoryRead: ${result.statusCode.toString()}`);
      pages += 1;
      for (const e of (result.historyData && result.historyData.events) || []) history.push(asEvent(e.eventFields));
      if (!result.continuationPoint || result.continuationPoint.length === 0) break;
      if (pages > 10000) throw new Error("no end of pages");
      continuationPoint = result.continuationPoint;
    }
    process.stdout.write(JSON.stringify({ live, history, pages }) + "\n");
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
