// Independent OPC UA client (node-opcua) reading history, for tests/opcua/test_history_interop.py
// and bench/bench_history_read.py.
// Usage: node read_history.mjs <endpointUrl> <nodeId> <request JSON>
//   {"mode": "raw", "start": ms|null, "end": ms|null, "numValuesPerNode": n, "returnBounds": bool,
//    "summary": bool, "repeat": n}
//   {"mode": "attime", "times": [ms, ...], "useSimpleBounds": bool}
//   {"mode": "processed", "start": ms, "end": ms, "interval": ms, "aggregate": "i=11507",
//    "nodeIds": [...] (optional: more nodes in the same request, the first argument's node first),
//    "configuration": {...} (optional AggregateConfiguration; default: the server's)}
// Connects anonymously (SecurityPolicy None) and follows every continuation point; prints one
// JSON object on stdout: the values ({t: ms, v, s: status code}), the page count, and the
// milliseconds the reads took (all pages, without connecting). "summary" leaves out the
// values (count, first and last only); "repeat" reads the whole range n times (elapsed: each).
import {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, HistoryReadRequest, ReadRawModifiedDetails,
  ReadAtTimeDetails, ReadProcessedDetails, TimestampsToReturn, resolveNodeId,
} from "node-opcua-client";

const [endpointUrl, nodeId, requestJson] = process.argv.slice(2);
const request = JSON.parse(requestJson);
const time = (ms) => (ms === null || ms === undefined ? new Date(Date.UTC(1601, 0, 1)) : new Date(ms));

const nodeIds = [nodeId, ...(request.nodeIds || [])];

function details(count) {
  if (request.mode === "processed") {
    return new ReadProcessedDetails({
      startTime: time(request.start), endTime: time(request.end), processingInterval: request.interval,
      aggregateType: Array.from({ length: count }, () => resolveNodeId(request.aggregate)),
      aggregateConfiguration: request.configuration || { useServerCapabilitiesDefaults: true },
    });
  }
  if (request.mode === "attime") {
    return new ReadAtTimeDetails({ reqTimes: request.times.map(time), useSimpleBounds: request.useSimpleBounds });
  }
  return new ReadRawModifiedDetails({
    isReadModified: false, startTime: time(request.start), endTime: time(request.end),
    numValuesPerNode: request.numValuesPerNode || 0, returnBounds: !!request.returnBounds,
  });
}

async function readAll(session) {
  // every node's values; a node whose result has a continuation point is asked again
  // (alone with the others still pending) until none is left
  const values = nodeIds.map(() => []);
  const pages = [];
  let pending = nodeIds.map((id, i) => ({ i, id, continuationPoint: null }));
  while (pending.length) {
    const response = await session.historyRead(new HistoryReadRequest({
      historyReadDetails: details(pending.length),
      timestampsToReturn: TimestampsToReturn.Both,
      releaseContinuationPoints: false,
      nodesToRead: pending.map((p) => ({ nodeId: p.id, continuationPoint: p.continuationPoint })),
    }));
    const next = [];
    response.results.forEach((result, k) => {
      const p = pending[k];
      const dataValues = (result.historyData && result.historyData.dataValues) || [];
      if (p.i === 0) {
        pages.push({ statusCode: result.statusCode.value, count: dataValues.length,
                     continuationPoint: !!(result.continuationPoint && result.continuationPoint.length) });
      }
      for (const dv of dataValues) {
        const v = dv.value && dv.value.value !== undefined ? dv.value.value : null;
        values[p.i].push({ t: dv.sourceTimestamp ? dv.sourceTimestamp.getTime() : null,
                           v: v !== null && typeof v === "object" && "value" in v ? v.value : v,
                           s: dv.statusCode.value });
      }
      if (p.i > 0 && !result.statusCode.isGood()) values[p.i].push({ error: result.statusCode.value });
      if (result.continuationPoint && result.continuationPoint.length) {
        if (dataValues.length === 0) throw new Error("an empty page with a continuation point");
        next.push({ ...p, continuationPoint: result.continuationPoint });
      }
    });
    if (pages.length > 100000) throw new Error("no end of pages");
    pending = next;
  }
  return { values: values[0], pages, others: values.slice(1) };
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
    const elapsed = [];
    let last;
    for (let i = 0; i < (request.repeat || 1); i++) {
      const t0 = process.hrtime.bigint();
      last = await readAll(session);
      elapsed.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const { values, pages, others } = last;
    const out = { count: values.length, pages, elapsedMs: elapsed };
    if (others.length) {
      out.others = others.map((vs) => ({ count: vs.length, first: vs[0] || null, last: vs[vs.length - 1] || null }));
    }
    if (request.summary) {
      out.first = values[0] || null;
      out.last = values[values.length - 1] || null;
    } else {
      out.values = values;
    }
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
