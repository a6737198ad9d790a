/** Builds the browser console into offchain/web/dist/ unless it is current; true when it built. */
export function buildWeb(options?: { force?: boolean }): Promise<boolean>;
