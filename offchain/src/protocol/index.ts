export * from "./eip712.ts";
export * from "./cid.ts";
export * from "./limits.ts";
export * from "./messages.ts";
export * from "./signing.ts";
export * from "./receipts.ts";
export * from "./signature.ts";
