// Independent OPC UA client (node-opcua) reading history, for tests/opcua/test_history_interop.py
// and bench/bench_history_read.py.
// Usage: node read_history.mjs <endpointUrl> <nodeId> <request JSON>
//   {"mode": "raw", "start": ms|null, "end": ms|null, "numValuesPerNode": n, "returnBounds": bool,
//    "summary": bool, "repeat": n}
//   {"mode": "attime", "times": [ms, ...], "useSimpleBounds": bool}
// Connects anonymously (SecurityPolicy None) and follows every continuation point; prints one
// JSON object on stdout: the values ({t: ms, v, s: status code}), the page count, and the
// milliseconds the reads took (all pages, without connecting). "summary" leaves out the
// values (count, first and last only); "repeat" reads the whole range n times (elapsed: each).
import {
  OPCUAClient, MessageSecurityMode, SecurityPolicy, HistoryReadRequest, ReadRawModifiedDetails,
  ReadAtTimeDetails, TimestampsToReturn,
} from "node-opcua-client";

const [endpointUrl, nodeId, requestJson] = process.argv.slice(2);
const request = JSON.parse(requestJson);
const time = (ms) => (ms === null || ms === undefined ? new Date(Date.UTC(1601, 0, 1)) : new Date(ms));

function details() {
  if (request.mode === "attime") {
    return new ReadAtTimeDetails({ reqTimes: request.times.map(time), useSimpleBounds: request.useSimpleBounds });
  }
  return new ReadRawModifiedDetails({
    isReadModified: false, startTime: time(request.start), endTime: time(request.end),
    numValuesPerNode: request.numValuesPerNode || 0, returnBounds: !!request.returnBounds,
  });
}

async function readAll(session) {
  const values = [];
  const pages = [];
  let continuationPoint = null;
  for (;;) {
    const response = await session.historyRead(new HistoryReadRequest({
      historyReadDetails: details(),
      timestampsToReturn: TimestampsToReturn.Both,
      releaseContinuationPoints: false,
      nodesToRead: [{ nodeId, continuationPoint }],
    }));
    const result = response.results[0];
    const dataValues = (result.historyData && result.historyData.dataValues) || [];
    pages.push({ statusCode: result.statusCode.value, count: dataValues.length,
                 continuationPoint: !!(result.continuationPoint && result.continuationPoint.length) });
    for (const dv of dataValues) {
      values.push({ t: dv.sourceTimestamp ? dv.sourceTimestamp.getTime() : null,
                    v: dv.value && dv.value.value !== undefined ? dv.value.value : null,
                    s: dv.statusCode.value });
    }
    if (!result.continuationPoint || result.continuationPoint.length === 0) break;
    if (dataValues.length === 0) throw new Error("an empty page with a continuation point");
    if (pages.length > 100000) throw new Error("no end of pages");
    continuationPoint = result.continuationPoint;
  }
  return { values, pages };
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
    const { values, pages } = last;
    const out = { count: values.length, pages, elapsedMs: elapsed };
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
