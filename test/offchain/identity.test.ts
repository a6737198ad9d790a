import assert from "node:assert/strict";
import { chmod, readFile, rm, stat, writeFile } from "node:fs/promises";
import { Writable } from "node:stream";
import { describe, test } from "node:test";
import { inspect } from "node:util";
import { generateKeyPair, generateKeyPairFromSeed } from "@libp2p/crypto/keys";
import { peerIdFromPrivateKey, peerIdFromString } from "@libp2p/peer-id";
import { decryptKeystoreJson, Wallet } from "ethers";
import { base58btc } from "multiformats/bases/base58";
import { pino } from "pino";
import { verifyTypedData, type Hex } from "viem";
import {
  DEFAULT_SCRYPT_N,
  initIdentity,
  loadOrCreateIdentity,
  publicKeyFromDid,
  publicKeyFromPeerId,
  readPublicIdentity,
  signWithPeerKey,
  verifyPeerSignature,
  type Identity,
} from "../../offchain/src/identity/index.ts";
import { freshDirs } from "../support/fresh-dirs.ts";

const FAST = 1024;
const PASSPHRASE = "correct horse battery staple";

const freshDir = freshDirs("cell-identity-", "keys");

async function secretsOf(identity: Identity): Promise<string[]> {
  const seed = Buffer.from(identity.peerKeySeed);
  const operatorKey = (await decryptKeystoreJson(await readFile(identity.keystorePath, "utf8"), PASSPHRASE))
    .privateKey;
  const bytes = Array.from(seed);
  return [
    seed.toString("hex"),
    seed.toString("base64"),
    bytes.join(","),
    bytes.map((byte, index) => `"${index}":${byte}`).join(","),
    operatorKey.slice(2),
  ];
}

/** Compares without whitespace, so multi-line inspect output of byte arrays is caught too. */
function assertNoSecret(text: string, secrets: string[], where: string): void {
  const haystack = text.replace(/\s+/g, "").toLowerCase();
  for (const secret of secrets) assert.ok(!haystack.includes(secret.toLowerCase()), `${where} leaks a key`);
}

describe("identity keys on disk", () => {
  test("init writes encrypted owner-only files and reopening yields the same identity", async () => {
    const dir = freshDir();
    const created = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(created.peerKeyPath)).mode & 0o777, 0o600);
    assert.equal((await stat(created.keystorePath)).mode & 0o777, 0o600);

    const reopened = await loadOrCreateIdentity({ dir, passphrase: PASSPHRASE, create: false });
    assert.equal(reopened.peerId, created.peerId);
    assert.equal(reopened.did, created.did);
    assert.equal(reopened.peerKeyHex, created.peerKeyHex);
    assert.equal(reopened.operator.address, created.operator.address);
    assert.deepEqual(Buffer.from(reopened.peerKeySeed), Buffer.from(created.peerKeySeed));

    const onDisk =
      (await readFile(created.peerKeyPath, "utf8")) + (await readFile(created.keystorePath, "utf8"));
    assertNoSecret(onDisk, await secretsOf(created), "key files");
  });

  test("loadOrCreateIdentity creates keys on first use and reuses them after", async () => {
    const dir = freshDir();
    const first = await loadOrCreateIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    const second = await loadOrCreateIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    assert.equal(second.peerId, first.peerId);
    assert.equal(second.operator.address, first.operator.address);
  });

  test("new key files use the standard scrypt cost unless told otherwise", async () => {
    const identity = await initIdentity({ dir: freshDir(), passphrase: PASSPHRASE });
    const keystore = JSON.parse(await readFile(identity.keystorePath, "utf8"));
    const peerFile = JSON.parse(await readFile(identity.peerKeyPath, "utf8"));
    assert.equal(DEFAULT_SCRYPT_N, 131072);
    assert.equal(keystore.Crypto?.kdfparams?.n ?? keystore.crypto?.kdfparams?.n, DEFAULT_SCRYPT_N);
    assert.equal(peerFile.crypto.kdfparams.n, DEFAULT_SCRYPT_N);
  });

  test("readPublicIdentity shows the public half without the passphrase", async () => {
    const dir = freshDir();
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    const pub = await readPublicIdentity(dir);
    assert.equal(pub.peerId, identity.peerId);
    assert.equal(pub.did, identity.did);
    assert.equal(pub.peerKeyHex, identity.peerKeyHex);
    assert.equal(pub.operatorAddress, identity.operator.address);
    assert.equal("peerKeySeed" in pub, false);
  });

  test("a keystore that is not v3 is refused with the field that is wrong", async () => {
    const dir = freshDir();
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    const keystore = JSON.parse(await readFile(identity.keystorePath, "utf8")) as Record<string, unknown>;
    for (const [change, reason] of [
      [{ version: 2 }, /is not a v3 keystore: 'version' expected version 3/],
      [{ address: "0x1234" }, /is not a v3 keystore: 'address' expected a 20-byte hex address/],
      [{ crypto: undefined, Crypto: undefined }, /is not a v3 keystore: '' missing crypto section/],
    ] as const) {
      await writeFile(identity.keystorePath, JSON.stringify({ ...keystore, ...change }));
      await assert.rejects(readPublicIdentity(dir), reason);
    }
    await writeFile(identity.keystorePath, "{ not json");
    await assert.rejects(readPublicIdentity(dir), /operator keystore .*operator\.json is not valid JSON/);
  });

  test("init refuses to overwrite keys unless forced", async () => {
    const dir = freshDir();
    const first = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    await assert.rejects(
      initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST }),
      /keys already exist in .*peer-key\.json, operator\.json.*--force/,
    );
    const replaced = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST, force: true });
    assert.notEqual(replaced.peerId, first.peerId);
    assert.notEqual(replaced.operator.address, first.operator.address);
  });

  test("missing, partial and locked key directories fail with a clear reason", async () => {
    const empty = freshDir();
    await assert.rejects(
      loadOrCreateIdentity({ dir: empty, passphrase: PASSPHRASE, create: false }),
      /no keys in .*cell keys init/,
    );
    await assert.rejects(readPublicIdentity(empty), /missing peer-key\.json, operator\.json/);

    const dir = freshDir();
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    await assert.rejects(loadOrCreateIdentity({ dir, passphrase: "" }), /passphrase is empty/);
    await assert.rejects(
      loadOrCreateIdentity({ dir, passphrase: "wrong" }),
      /cannot decrypt peer key file .*wrong passphrase/,
    );

    await rm(identity.keystorePath);
    await assert.rejects(
      loadOrCreateIdentity({ dir, passphrase: PASSPHRASE }),
      /incomplete keys .*peer-key\.json exists but operator\.json is missing/,
    );
  });

  test("a tampered peer key file is detected", async () => {
    const dir = freshDir();
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    const file = JSON.parse(await readFile(identity.peerKeyPath, "utf8"));
    file.publicKey = Buffer.from((await generateKeyPair("Ed25519")).publicKey.raw).toString("hex");
    await writeFile(identity.peerKeyPath, JSON.stringify(file));
    await assert.rejects(
      loadOrCreateIdentity({ dir, passphrase: PASSPHRASE }),
      /wrong passphrase or the file was modified/,
    );

    file.crypto.iv = "zz";
    await writeFile(identity.peerKeyPath, JSON.stringify(file));
    await assert.rejects(loadOrCreateIdentity({ dir, passphrase: PASSPHRASE }), /malformed at 'crypto\.iv'/);
  });

  test("an operator key can be imported", async () => {
    const wallet = Wallet.createRandom();
    const identity = await initIdentity({
      dir: freshDir(),
      passphrase: PASSPHRASE,
      scryptN: FAST,
      operatorPrivateKey: wallet.privateKey as Hex,
    });
    assert.equal(identity.operator.address, wallet.address);
  });
});

describe("peer key and did:key", () => {
  test("the PeerId is the one libp2p derives from the same seed", async () => {
    const identity = await initIdentity({ dir: freshDir(), passphrase: PASSPHRASE, scryptN: FAST });
    const libp2pKey = await generateKeyPairFromSeed("Ed25519", identity.peerKeySeed);
    assert.equal(peerIdFromPrivateKey(libp2pKey).toString(), identity.peerId);
    assert.deepEqual(Buffer.from(libp2pKey.publicKey.raw), Buffer.from(identity.peerPublicKey));
    assert.match(identity.peerId, /^12D3KooW/);
    assert.equal(identity.peerKeyHex, `0x${Buffer.from(libp2pKey.publicKey.raw).toString("hex")}`);
  });

  test("publicKeyFromPeerId inverts the PeerId and rejects non-Ed25519 ids", async () => {
    const key = await generateKeyPair("Ed25519");
    const peerId = peerIdFromPrivateKey(key).toString();
    assert.deepEqual(Buffer.from(publicKeyFromPeerId(peerId)), Buffer.from(key.publicKey.raw));
    assert.equal(peerIdFromString(peerId).type, "Ed25519");

    const secp = peerIdFromPrivateKey(await generateKeyPair("secp256k1")).toString();
    assert.throws(() => publicKeyFromPeerId(secp), /is not an Ed25519 peer id/);
    assert.throws(() => publicKeyFromPeerId("not-base58-0OIl"), /is not valid base58btc/);
  });

  test("did:key is multicodec ed25519-pub in base58btc", async () => {
    const identity = await initIdentity({ dir: freshDir(), passphrase: PASSPHRASE, scryptN: FAST });
    assert.match(identity.did, /^did:key:z6Mk/);
    const bytes = base58btc.decode(identity.did.slice("did:key:".length));
    assert.deepEqual([...bytes.slice(0, 2)], [0xed, 0x01]);
    assert.deepEqual(Buffer.from(bytes.slice(2)), Buffer.from(identity.peerPublicKey));
    assert.deepEqual(Buffer.from(publicKeyFromDid(identity.did)), Buffer.from(identity.peerPublicKey));
    assert.throws(() => publicKeyFromDid("did:web:example.com"), /is not a base58btc did:key/);
  });

  test("peer key signatures verify with the public key and with libp2p", async () => {
    const identity = await initIdentity({ dir: freshDir(), passphrase: PASSPHRASE, scryptN: FAST });
    const message = new TextEncoder().encode("genome manifest");
    const signature = await signWithPeerKey(identity, message);
    assert.equal(await verifyPeerSignature(identity.peerPublicKey, message, signature), true);
    assert.equal(
      await verifyPeerSignature(identity.peerPublicKey, new TextEncoder().encode("other"), signature),
      false,
    );
    const libp2pKey = await generateKeyPairFromSeed("Ed25519", identity.peerKeySeed);
    assert.equal(await libp2pKey.publicKey.verify(message, signature), true);
  });
});

describe("operator keystore", () => {
  test("is a v3 keystore that ethers opens, and the account signs EIP-712 data", async () => {
    const identity = await initIdentity({ dir: freshDir(), passphrase: PASSPHRASE, scryptN: FAST });
    const text = await readFile(identity.keystorePath, "utf8");
    const keystore = JSON.parse(text);
    assert.equal(keystore.version, 3);
    assert.equal((keystore.Crypto ?? keystore.crypto).kdf, "scrypt");
    const wallet = await Wallet.fromEncryptedJson(text, PASSPHRASE);
    assert.equal(wallet.address, identity.operator.address);

    const typedData = {
      domain: { name: "Cell", version: "1", chainId: 31337 },
      types: { Ping: [{ name: "n", type: "uint256" }] },
      primaryType: "Ping" as const,
      message: { n: 7n },
    };
    const signature = await identity.operator.signTypedData(typedData);
    assert.equal(
      await verifyTypedData({ ...typedData, address: identity.operator.address, signature }),
      true,
    );
  });
});

describe("redaction", () => {
  test("keys never reach JSON, inspect, strings or pino logs", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    });
    const logger = pino({ level: "debug" }, sink);
    const dir = freshDir();
    const created = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST, logger });
    const identity = await loadOrCreateIdentity({ dir, passphrase: PASSPHRASE, logger });
    const secrets = await secretsOf(identity);

    logger.info({ identity }, "identity");
    logger.info({ seed: identity.peerKeySeed, created }, "seed");
    logger.info(identity, "as merge object");
    const printed = [
      ...lines,
      JSON.stringify(identity),
      JSON.stringify({ nested: { identity } }),
      inspect(identity, { depth: 10, showHidden: true }),
      inspect(identity.peerKeySeed),
      String(identity.peerKeySeed),
      `${identity.peerKeySeed}`,
    ].join("\n");
    assertNoSecret(printed, secrets, "printed identity");
    assert.match(printed, /\[redacted\]/);
    assert.ok(printed.includes(identity.peerId), "the public identity is still printed");
    assert.ok(lines.some((line) => line.includes("unlocked node keys")));
  });

  test("errors name the problem without echoing keys or the passphrase", async () => {
    const dir = freshDir();
    const identity = await initIdentity({ dir, passphrase: PASSPHRASE, scryptN: FAST });
    const secrets = await secretsOf(identity);
    const failures: string[] = [];
    const collect = async (promise: Promise<unknown>) => {
      const error = await promise.then(
        () => assert.fail("expected a rejection"),
        (e: unknown) => e as Error,
      );
      failures.push(`${error.message}\n${error.stack ?? ""}\n${inspect(error)}`);
    };
    await collect(loadOrCreateIdentity({ dir, passphrase: `${PASSPHRASE}!` }));
    await collect(
      initIdentity({
        dir: freshDir(),
        passphrase: PASSPHRASE,
        scryptN: FAST,
        operatorPrivateKey: `0x${secrets[0]!.slice(0, 63)}` as Hex,
      }),
    );
    const file = JSON.parse(await readFile(identity.keystorePath, "utf8"));
    (file.Crypto ?? file.crypto).ciphertext = "00".repeat(32);
    await writeFile(identity.keystorePath, JSON.stringify(file));
    await chmod(identity.keystorePath, 0o600);
    await collect(loadOrCreateIdentity({ dir, passphrase: PASSPHRASE }));

    assert.equal(failures.length, 3);
    assert.match(
      failures[2]!,
      /cannot decrypt operator keystore .*wrong passphrase or the file was modified/,
    );
    for (const failure of failures) {
      assertNoSecret(failure, secrets, "error");
      assert.ok(!failure.includes(PASSPHRASE), "error leaks the passphrase");
    }
  });
});
