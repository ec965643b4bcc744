// Independent OPC UA client (node-opcua) used by tests/opcua/test_interop_security.py.
// Usage: node session_security.mjs <endpointUrl> [<userName> <password> [clear-text]]
// Opens a SecurityPolicy None channel and tries to create and activate a session,
// anonymously or with a user name; "clear-text" makes it send the password unencrypted
// whatever the server's user token policy demands (node-opcua follows the policy
// otherwise). Where the server offers no None endpoint, node-opcua itself would not
// try: the script then takes a secured endpoint for a None one (what a hostile client
// sends on the wire). Prints one JSON object: {"session": "activated", "state": <ServerState>}
// or {"refused": "<StatusCode name>", "message": ...}.
import { OPCUAClient, AttributeIds, MessageSecurityMode, SecurityPolicy, UserTokenType } from "node-opcua-client";

const [endpointUrl, userName, password, clearText] = process.argv.slice(2);
const NONE_URI = "http://opcfoundation.org/UA/SecurityPolicy#None";

function statusName(err) {
  const m = /Bad[A-Za-z]+/.exec(String(err && err.message || err));
  return m ? m[0] : null;
}

async function main() {
  const client = OPCUAClient.create({
    endpointMustExist: false,
    securityMode: MessageSecurityMode.None,
    securityPolicy: SecurityPolicy.None,
    connectionStrategy: { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
  });
  await client.connect(endpointUrl);
  try {
    const endpoints = client._serverEndpoints || [];
    if (!endpoints.some((e) => e.securityMode === MessageSecurityMode.None) && endpoints.length > 0) {
      endpoints[0].securityMode = MessageSecurityMode.None;
      endpoints[0].securityPolicyUri = NONE_URI;
    }
    if (clearText === "clear-text") {
      // what a careless client does: ignore the token policy's SecurityPolicyUri
      for (const endpoint of client._serverEndpoints || []) {
        for (const token of endpoint.userIdentityTokens || []) {
          if (token.tokenType === UserTokenType.UserName) token.securityPolicyUri = NONE_URI;
        }
      }
    }
    const identity = userName ? { type: UserTokenType.UserName, userName, password } : undefined;
    let session;
    try {
      session = await client.createSession(identity);
    } catch (err) {
      process.stdout.write(JSON.stringify({ refused: statusName(err), message: String(err.message) }) + "\n");
      return;
    }
    try {
      const state = await session.read({ nodeId: "ns=0;i=2259", attributeId: AttributeIds.Value });
      process.stdout.write(JSON.stringify({ session: "activated", state: state.value.value }) + "\n");
    } finally {
      await session.close();
    }
  } finally {
    await client.disconnect();
  }
}

main().catch((err) => { process.stderr.write(String(err && err.stack || err) + "\n"); process.exit(1); });
