// The API's console routes: the static files (public, with a content policy), the chain
// config (behind the token), and the operator's registration proof, which must recover to
// the operator for the donor asking.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { recoverAddress, type Address, type Hex } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { createApiServer, type ApiNode, type ApiServer } from "../../offchain/src/api/index.ts";
import { operatorRegistrationDigest, signOperatorRegistration } from "../../offchain/src/chain/index.ts";

const TOKEN = "console-route-token-0123456789";
const OPERATOR = privateKeyToAccount(`0x${"42".repeat(32)}`);
const PEER_KEY: Hex = `0x${"07".repeat(32)}`;
const DONOR: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
const CHAIN = {
  chainId: 31337,
  rpcUrl: "http://127.0.0.1:9999",
  contracts: {
    atpToken: "0x5FbDB2315678afecb367f032d93F642f64180aa3" as Address,
    donorRegistry: "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512" as Address,
    paymentChannels: "0xDc64a140Aa3E981100a9becA4E685f962f0cF6C9" as Address,
  },
};

const node: ApiNode = {
  peerId: "12D3KooWConsoleRouteTest",
  did: "did:key:z6MkConsole",
  operator: OPERATOR.address,
  chainInfo: CHAIN,
  multiaddrs: () => [],
  submitJob: () => Promise.reject(new Error("not in this test")),
  getJob: () => undefined,
  listJobs: () => [],
  peers: () => [],
  on: () => undefined,
  registrationProof: async (donor, nonce) => {
    const registration = { donor, peerKey: PEER_KEY, nonce };
    const signature = await signOperatorRegistration(
      OPERATOR,
      CHAIN.chainId,
      CHAIN.contracts.donorRegistry,
      registration,
    );
    return { ...registration, operator: OPERATOR.address, signature };
  },
};

describe("API console routes", () => {
  let dir: string;
  let server: ApiServer;
  let unbuilt: ApiServer;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "cell-console-"));
    await writeFile(join(dir, "index.html"), "<!doctype html><title>Cell</title>");
    await writeFile(join(dir, "console.js"), "console.log('cell')");
    await writeFile(join(dir, "notes.txt"), "not served");
    server = await createApiServer({ node, token: TOKEN, port: 0, consoleDir: dir });
    unbuilt = await createApiServer({ node, token: TOKEN, port: 0, consoleDir: join(dir, "absent") });
  });

  after(async () => {
    await server?.close();
    await unbuilt?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const authorized = { headers: { authorization: `Bearer ${TOKEN}` } };

  it("serves the console's files without the token, scripts and network limited to itself and the RPC", async () => {
    const page = await fetch(`${server.url}/`);
    assert.equal(page.status, 200);
    assert.equal(page.headers.get("content-type"), "text/html; charset=utf-8");
    assert.match(await page.text(), /<title>Cell<\/title>/);
    const policy = page.headers.get("content-security-policy") ?? "";
    assert.match(policy, /default-src 'self'/);
    assert.match(policy, /connect-src 'self' http:\/\/127\.0\.0\.1:9999/);
    const script = await fetch(`${server.url}/console.js`);
    assert.equal(script.headers.get("content-type"), "text/javascript; charset=utf-8");
    assert.equal((await fetch(`${server.url}/notes.txt`)).status, 404);
    assert.equal((await fetch(`${server.url}/..%2Fpackage.json`)).status, 404);
  });

  it("says how to build the console when it is not built", async () => {
    const response = await fetch(`${unbuilt.url}/`);
    assert.equal(response.status, 404);
    const body = (await response.json()) as { error: { message: string } };
    assert.match(body.error.message, /the console is not built: run `npm run setup`/);
  });

  it("gives the chain config only with the token", async () => {
    assert.equal((await fetch(`${server.url}/console/config`)).status, 401);
    const response = await fetch(`${server.url}/console/config`, authorized);
    assert.deepEqual(await response.json(), {
      chainId: 31337,
      rpcUrl: CHAIN.rpcUrl,
      contracts: CHAIN.contracts,
      operator: OPERATOR.address,
      peerId: node.peerId,
    });
  });

  it("signs the operator's registration proof for the donor asking", async () => {
    const response = await fetch(`${server.url}/registration/proof`, {
      method: "POST",
      headers: { ...authorized.headers, "content-type": "application/json" },
      body: JSON.stringify({ donor: DONOR.toLowerCase() }),
    });
    assert.equal(response.status, 200);
    const proof = (await response.json()) as {
      operator: Address;
      peerKey: Hex;
      nonce: string;
      signature: Hex;
    };
    assert.equal(proof.nonce, "0");
    const digest = operatorRegistrationDigest(CHAIN.chainId, CHAIN.contracts.donorRegistry, {
      donor: DONOR,
      operator: OPERATOR.address,
      peerKey: PEER_KEY,
      nonce: 0n,
    });
    assert.equal(await recoverAddress({ hash: digest, signature: proof.signature }), OPERATOR.address);
  });

  it("refuses a registration proof request without a donor address, saying so", async () => {
    const response = await fetch(`${server.url}/registration/proof`, {
      method: "POST",
      headers: { ...authorized.headers, "content-type": "application/json" },
      body: JSON.stringify({ donor: "0x1234" }),
    });
    assert.equal(response.status, 400);
    const body = (await response.json()) as { error: { message: string } };
    assert.match(body.error.message, /donor: donor must be a 0x-prefixed 20-byte address/);
  });
});
