export * from "./eip712.ts";
export * from "./cid.ts";
