// `npm run build:jobs`: compiles the AssemblyScript example jobs in examples/jobs/ to
// examples/jobs/build/<name>.wasm. Tests and benchmarks call ensureJobs(), which only
// rebuilds what is missing or older than its sources.
import { mkdirSync, readdirSync, statSync } from "node:fs";
import { fileURLToPath } from "node:url";
import asc from "assemblyscript/asc";

export const JOBS_DIR = fileURLToPath(new URL("../examples/jobs/", import.meta.url));
export const BUILD_DIR = `${JOBS_DIR}build/`;
export const JOB_NAMES = ["sha256", "sieve", "matmul", "wordcount"] as const;
export type JobName = (typeof JOB_NAMES)[number];

const ASC_FLAGS = [
  "-O3",
  "--noAssert",
  "--runtime",
  "stub",
  "--use",
  "abort=",
  "--disable",
  "simd",
  "--disable",
  "reference-types",
];

export function jobPath(name: JobName): string {
  return `${BUILD_DIR}${name}.wasm`;
}

function newestSource(): number {
  const sources = [JOBS_DIR, `${JOBS_DIR}lib/`].flatMap((dir) =>
    readdirSync(dir)
      .filter((file) => file.endsWith(".ts"))
      .map((file) => statSync(`${dir}${file}`).mtimeMs),
  );
  return Math.max(...sources);
}

export async function buildJob(name: JobName): Promise<string> {
  mkdirSync(BUILD_DIR, { recursive: true });
  const output = jobPath(name);
  const { error, stderr } = await asc.main([`${JOBS_DIR}${name}.ts`, "-o", output, ...ASC_FLAGS]);
  if (error) throw new Error(`building ${name} failed: ${error.message}\n${stderr.toString()}`);
  return output;
}

/** Builds the named jobs when their wasm is missing or stale; returns their paths. */
export async function ensureJobs(names: readonly JobName[] = JOB_NAMES): Promise<Record<JobName, string>> {
  const sourcesTime = newestSource();
  const paths = {} as Record<JobName, string>;
  for (const name of names) {
    const output = jobPath(name);
    const built = statSync(output, { throwIfNoEntry: false });
    paths[name] = built && built.mtimeMs >= sourcesTime ? output : await buildJob(name);
  }
  return paths;
}

if (import.meta.main) {
  for (const name of JOB_NAMES) {
    const started = performance.now();
    const output = await buildJob(name);
    console.log(
      `built ${output} (${statSync(output).size} bytes, ${(performance.now() - started).toFixed(0)} ms)`,
    );
  }
}
