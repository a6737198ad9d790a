export {
  DEFAULT_SCRYPT_N,
  OPERATOR_KEYSTORE_FILE,
  PEER_KEY_FILE,
  initIdentity,
  loadOrCreateIdentity,
  readPublicIdentity,
  signWithPeerKey,
  verifyPeerSignature,
} from "./identity.ts";
export type {
  Identity,
  IdentityLogger,
  InitIdentityOptions,
  KeyOptions,
  LoadIdentityOptions,
  PublicIdentity,
} from "./identity.ts";
export { didFromPublicKey, peerIdFromPublicKey, publicKeyFromDid, publicKeyFromPeerId } from "./encoding.ts";
export { SecretBytes } from "./secret.ts";
export { operatorAccount } from "./operator-account.ts";
export { decryptOperatorKey, encryptOperatorKey, readKeystoreAddress } from "./operator-keystore.ts";
export { writePrivateFile } from "./files.ts";
