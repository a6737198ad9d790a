// The revert sentences live with the chain bindings, where the browser console shares them.
export * from "../chain/revert-text.ts";
