// One operator keystore operation with ethers, run in a short-lived worker thread started
// by operator-keystore.ts: the node's own thread never loads ethers (~9 MB that would stay
// resident for the life of the process, only to unlock one file at start), and scrypt
// does not block its event loop. The thread posts one reply and exits, returning its memory.
//
// Plain JavaScript on purpose: a `.ts` entry would start Node's type stripper in the
// thread, which leaves ~3 MB more resident in the process after the thread has ended.
// The messages are typed by KeystoreRequest and KeystoreReply in operator-keystore.ts.
import { parentPort, workerData } from "node:worker_threads";
import { decryptKeystoreJson, encryptKeystoreJson } from "ethers";

/** The private key (decrypt) or the keystore JSON (encrypt). */
async function run(request) {
  if (request.op === "decrypt")
    return (await decryptKeystoreJson(request.json, request.passphrase)).privateKey;
  const { address, privateKey, passphrase, scryptN } = request;
  return encryptKeystoreJson({ address, privateKey }, passphrase, { scrypt: { N: scryptN } });
}

async function reply(request) {
  try {
    return { ok: true, value: await run(request) };
  } catch (error) {
    return { ok: false, failed: error instanceof Error ? error.message : String(error) };
  }
}

parentPort.postMessage(await reply(workerData));
