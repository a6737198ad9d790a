// A donor of `npm run bench -- quorum` whose executor lies on the jobs the benchmark marks
// (test/support/lying-runtime.ts). Run like offchain/src/node/run.ts (`--config FILE`): it
// prints the same first line and stops on SIGTERM.
import { withNodeFlags } from "../offchain/src/node/launch.ts";
import { serveNode } from "../offchain/src/node/run.ts";
import { lyingRuntime } from "../test/support/lying-runtime.ts";

await withNodeFlags();
await serveNode(process.argv.slice(2), { wrapRuntime: (runtime) => lyingRuntime(runtime) });
