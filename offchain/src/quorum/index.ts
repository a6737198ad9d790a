export * from "./report.ts";
export * from "./verdict.ts";
