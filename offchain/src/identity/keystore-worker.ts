// One keystore operation with ethers, run in a short-lived worker thread: the node's own
// thread never loads ethers (~9 MB that would stay resident for the life of the process,
// only to unlock one file at start), and scrypt does not block its event loop. The thread
// posts one reply and exits, returning its memory.
import { parentPort, workerData } from "node:worker_threads";
import { decryptKeystoreJson, encryptKeystoreJson } from "ethers";

export type KeystoreRequest =
  | { op: "decrypt"; json: string; passphrase: string }
  | { op: "encrypt"; address: string; privateKey: string; passphrase: string; scryptN: number };

/** `failed`: ethers rejected the request (for `decrypt`, a wrong passphrase or a modified file). */
export type KeystoreReply = { ok: true; value: string } | { ok: false; failed: string };

async function run(request: KeystoreRequest): Promise<string> {
  if (request.op === "decrypt") return (await decryptKeystoreJson(request.json, request.passphrase)).privateKey;
  const { address, privateKey, passphrase, scryptN } = request;
  return encryptKeystoreJson({ address, privateKey }, passphrase, { scrypt: { N: scryptN } });
}

async function reply(request: KeystoreRequest): Promise<KeystoreReply> {
  try {
    return { ok: true, value: await run(request) };
  } catch (error) {
    return { ok: false, failed: error instanceof Error ? error.message : String(error) };
  }
}

parentPort?.postMessage(await reply(workerData as KeystoreRequest));
