// Independent OPC UA client (node-opcua) used by tests/opcua/test_interop.py.
// Usage: node read_measurement.mjs <endpointUrl> <browsePath...>
// Connects anonymously (SecurityPolicy None), follows the browse path from the Objects
// folder (each element "nsUri|BrowseName" or "BrowseName"), reads the variable's Value and
// its EngineeringUnits property, and prints one JSON object on stdout.
import { OPCUAClient, AttributeIds, makeBrowsePath, MessageSecurityMode, SecurityPolicy } from "node-opcua-client";

const [endpointUrl, ...pathParts] = process.argv.slice(2);

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
    const nsArray = await session.readNamespaceArray();
    const qualify = (part) => {
      const bar = part.lastIndexOf("|");
      if (bar < 0) return part;
      const idx = nsArray.indexOf(part.slice(0, bar));
      if (idx < 0) throw new Error(`namespace not found: ${part.slice(0, bar)}`);
      return `${idx}:${part.slice(bar + 1)}`;
    };
    const relPath = "/" + pathParts.map(qualify).join("/");
    const result = await session.translateBrowsePath(makeBrowsePath("ObjectsFolder", relPath));
    if (!result.targets || result.targets.length === 0) {
      throw new Error(`browse path not found: ${relPath} (${result.statusCode.toString()})`);
    }
    const nodeId = result.targets[0].targetId;
    const value = await session.read({ nodeId, attributeId: AttributeIds.Value });
    const euPath = await session.translateBrowsePath(makeBrowsePath(nodeId, "/EngineeringUnits"));
    let eu = null;
    if (euPath.targets && euPath.targets.length > 0) {
      const euValue = await session.read({ nodeId: euPath.targets[0].targetId, attributeId: AttributeIds.Value });
      const e = euValue.value.value;
      eu = { namespaceUri: e.namespaceUri, unitId: e.unitId, displayName: e.displayName.text, description: e.description.text };
    }
    const displayName = await session.read({ nodeId, attributeId: AttributeIds.DisplayName });
    process.stdout.write(JSON.stringify({
      nodeId: nodeId.toString(),
      statusCode: value.statusCode.name,
      value: value.value.value,
      displayName: displayName.value.value.text,
      engineeringUnits: eu,
    }) + "\n");
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
