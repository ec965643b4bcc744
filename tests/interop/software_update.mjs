// Independent OPC UA client (node-opcua) used by tests/opcua/test_interop.py.
// Usage: node software_update.mjs <endpointUrl> <user> <password> <fileTransferNodeId> <pendingRevisionNodeId> <image>
// Over Basic256Sha256 SignAndEncrypt, as a generic DI update client does (OPC 10000-100
// Cached Loading): GenerateFileForWrite(Pending) on the FileTransfer object, Write the
// image to the temporary file in blocks, CloseAndCommit, then waits until
// PendingVersion.SoftwareRevision is set. Prints one JSON object on stdout.
import fs from "node:fs";
import { OPCUAClient, AttributeIds, DataType, MessageSecurityMode, SecurityPolicy, UserTokenType } from "node-opcua-client";

const [endpointUrl, userName, password, transferId, pendingId, imagePath] = process.argv.slice(2);
const GENERATE_FILE_FOR_WRITE = "ns=0;i=15749";
const CLOSE_AND_COMMIT = "ns=0;i=15751";
const FILE_WRITE = "ns=0;i=11588";

async function main() {
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.SignAndEncrypt,
    securityPolicy: SecurityPolicy.Basic256Sha256,
    connectionStrategy: { maxRetry: 2, initialDelay: 200, maxDelay: 1000 },
  });
  await client.connect(endpointUrl);
  const session = await client.createSession({ type: UserTokenType.UserName, userName, password });
  try {
    const image = fs.readFileSync(imagePath);
    const generated = await session.call({
      objectId: transferId, methodId: GENERATE_FILE_FOR_WRITE,
      inputArguments: [{ dataType: DataType.Int32, value: 1 }],  // SoftwareVersionFileType Pending
    });
    const fileId = generated.outputArguments[0].value;
    const handle = generated.outputArguments[1].value;
    const writes = [];
    for (let offset = 0; offset < image.length; offset += 16384) {
      const result = await session.call({
        objectId: fileId, methodId: FILE_WRITE,
        inputArguments: [{ dataType: DataType.UInt32, value: handle },
                         { dataType: DataType.ByteString, value: image.subarray(offset, offset + 16384) }],
      });
      writes.push(result.statusCode.name);
    }
    const committed = await session.call({
      objectId: transferId, methodId: CLOSE_AND_COMMIT,
      inputArguments: [{ dataType: DataType.UInt32, value: handle }],
    });
    let pending = "";
    for (let i = 0; i < 300 && !pending; i++) {
      const dv = await session.read({ nodeId: pendingId, attributeId: AttributeIds.Value });
      pending = dv.value.value || "";
      if (!pending) await new Promise((r) => setTimeout(r, 100));
    }
    process.stdout.write(JSON.stringify({
      generate: generated.statusCode.name, fileId: fileId.toString(),
      writes: [...new Set(writes)], commit: committed.statusCode.name, pending,
    }) + "\n");
  } finally {
    await session.close();
    await client.disconnect();
  }
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack || err) + "\n");
  process.exit(1);
});
