// GET /explorer/…: the chain index (offchain/src/indexer) as paged, filterable JSON. The data
// is public chain history, so these routes need no token. Query parameters are checked by
// one strict zod schema per route: an unknown or malformed one is refused, named.
import type { IncomingMessage, ServerResponse } from "node:http";
import { getAddress } from "viem";
import type { Address, Hex } from "viem";
import { z } from "zod/v4";
import { ApiError, sendJson } from "./errors.ts";
import { describeIssues } from "./schemas.ts";

/** Largest page a query returns, and the page size when `limit` is not given. */
export const EXPLORER_LIMIT_MAX = 500;
export const EXPLORER_LIMIT_DEFAULT = 50;

export interface ExplorerPage {
  items: unknown[];
  nextCursor?: string;
}

interface Paged {
  limit: number;
  cursor?: string;
}

/** What the explorer reads: the store's index (store/indexer.ts) and the indexer's progress. */
export interface ExplorerSource {
  status(): unknown;
  stakes(query: Paged & { donor?: Address }): ExplorerPage;
  donor(donor: Address, page: Paged): unknown;
  channels(query: Paged & { address?: Address; channel?: Hex }): ExplorerPage;
  channelEvents(channel: Hex, limit: number): unknown[];
  settlements(
    query: Paged & { submitter?: Address; epoch?: bigint; payee?: Address; channel?: Hex },
  ): ExplorerPage;
  settlement(tx: Hex): unknown;
  slashes(query: Paged & { address?: Address; kind?: string }): ExplorerPage;
  anchors(query: Paged & { epoch?: bigint; submitter?: Address }): ExplorerPage;
  zkChannels(query: Paged & { payee?: Address; buyer?: Address; leaf?: number }): ExplorerPage;
  zkBatches(query: Paged & { submitter?: Address }): ExplorerPage;
  zkPayouts(query: Paged & { payee?: Address; leaf?: number }): ExplorerPage;
}

const address = z
  .string()
  .regex(/^0x[0-9a-fA-F]{40}$/, { message: "must be an address: 0x and 40 hex digits", abort: true })
  .transform((text) => getAddress(text.toLowerCase()));
const bytes32 = (what: string) =>
  z
    .string()
    .regex(/^0x[0-9a-fA-F]{64}$/, { message: `must be ${what}: 0x and 64 hex digits`, abort: true })
    .transform((text) => text.toLowerCase() as Hex);
const epoch = z
  .string()
  .regex(/^\d{1,20}$/, { message: "must be a decimal integer", abort: true })
  .transform((text) => BigInt(text))
  .refine((value) => value < 2n ** 64n, "must fit in 64 bits");
const zkLeaf = z
  .string()
  .regex(/^\d{1,10}$/, { message: "must be a leaf index (a whole number)", abort: true })
  .transform(Number)
  .refine((n) => n < 2 ** 32, "must fit in 32 bits");
const placeCursor = z
  .string()
  .regex(/^\d{1,15}-\d{1,9}$/, "must be a nextCursor of an earlier page (<block>-<logIndex>)");
const limit = z
  .string()
  .regex(/^\d{1,4}$/, { message: "must be a whole number", abort: true })
  .transform(Number)
  .refine((n) => n >= 1 && n <= EXPLORER_LIMIT_MAX, `must be between 1 and ${EXPLORER_LIMIT_MAX}`)
  .default(EXPLORER_LIMIT_DEFAULT);

const paged = { limit, cursor: placeCursor.optional() };
const QUERIES = {
  none: z.strictObject({}),
  page: z.strictObject(paged),
  stakes: z.strictObject({ limit, cursor: address.optional(), address: address.optional() }),
  channels: z.strictObject({
    ...paged,
    address: address.optional(),
    channel: bytes32("a channel id").optional(),
  }),
  settlements: z.strictObject({
    ...paged,
    submitter: address.optional(),
    payee: address.optional(),
    channel: bytes32("a channel id").optional(),
    epoch: epoch.optional(),
  }),
  slashes: z.strictObject({
    ...paged,
    address: address.optional(),
    kind: z.enum(["equivocation", "outvoted", "court"]).optional(),
  }),
  anchors: z.strictObject({ ...paged, epoch: epoch.optional(), submitter: address.optional() }),
  events: z.strictObject({ limit }),
  zkChannels: z.strictObject({
    ...paged,
    payee: address.optional(),
    buyer: address.optional(),
    leaf: zkLeaf.optional(),
  }),
  zkBatches: z.strictObject({ ...paged, submitter: address.optional() }),
  zkPayouts: z.strictObject({ ...paged, payee: address.optional(), leaf: zkLeaf.optional() }),
};

interface Route {
  pattern: RegExp;
  run(source: ExplorerSource, params: string[], query: URLSearchParams): unknown;
}

const ROUTES: Route[] = [
  { pattern: /^\/explorer\/status$/, run: (source, _, query) => (parse("none", query), source.status()) },
  {
    pattern: /^\/explorer\/stakes$/,
    run: (source, _, query) => {
      const { address: donor, ...page } = parse("stakes", query);
      return source.stakes({ ...page, ...(donor ? { donor } : {}) });
    },
  },
  {
    pattern: /^\/explorer\/donors\/([^/]+)$/,
    run: (source, [donor], query) =>
      source.donor(param(address, donor, "donor address"), parse("page", query)),
  },
  {
    pattern: /^\/explorer\/channels$/,
    run: (source, _, query) => source.channels(defined(parse("channels", query))),
  },
  {
    pattern: /^\/explorer\/channels\/([^/]+)$/,
    run: (source, [id], query) => {
      const channel = param(bytes32("a channel id"), id, "channel id");
      const found = source.channels({ limit: 1, channel }).items[0];
      if (!found) throw new ApiError(404, "not_found", `no channel ${channel} in the index`);
      return { channel: found, events: source.channelEvents(channel, parse("events", query).limit) };
    },
  },
  {
    pattern: /^\/explorer\/settlements$/,
    run: (source, _, query) => source.settlements(defined(parse("settlements", query))),
  },
  {
    pattern: /^\/explorer\/settlements\/([^/]+)$/,
    run: (source, [tx], query) => {
      parse("none", query);
      const hash = param(bytes32("a transaction hash"), tx, "transaction hash");
      const found = source.settlement(hash);
      if (!found) throw new ApiError(404, "not_found", `no settlement in transaction ${hash} in the index`);
      return found;
    },
  },
  {
    pattern: /^\/explorer\/slashes$/,
    run: (source, _, query) => source.slashes(defined(parse("slashes", query))),
  },
  {
    pattern: /^\/explorer\/anchors$/,
    run: (source, _, query) => source.anchors(defined(parse("anchors", query))),
  },
  {
    pattern: /^\/explorer\/zk\/channels$/,
    run: (source, _, query) => source.zkChannels(defined(parse("zkChannels", query))),
  },
  {
    pattern: /^\/explorer\/zk\/batches$/,
    run: (source, _, query) => source.zkBatches(defined(parse("zkBatches", query))),
  },
  {
    pattern: /^\/explorer\/zk\/payouts$/,
    run: (source, _, query) => source.zkPayouts(defined(parse("zkPayouts", query))),
  },
];

/** Answers one GET /explorer/… request; `source` undefined when the node runs no indexer. */
export function serveExplorer(
  source: ExplorerSource | undefined,
  request: IncomingMessage,
  response: ServerResponse,
): void {
  const url = new URL(request.url ?? "/", "http://localhost");
  const route = ROUTES.find((candidate) => candidate.pattern.test(url.pathname));
  if (!route) throw new ApiError(404, "not_found", `no route ${url.pathname}`);
  if (!source)
    throw new ApiError(404, "not_found", "this node does not index the chain (set indexer.enabled = true)");
  const params = (route.pattern.exec(url.pathname) ?? []).slice(1).map((p) => decodeURIComponent(p));
  sendJson(response, 200, route.run(source, params, url.searchParams));
}

function parse<K extends keyof typeof QUERIES>(
  kind: K,
  query: URLSearchParams,
): z.output<(typeof QUERIES)[K]> {
  const result = QUERIES[kind].safeParse(Object.fromEntries(query));
  if (result.success) return result.data as z.output<(typeof QUERIES)[K]>;
  const issues = describeIssues(result.error).map((issue) => ({
    ...issue,
    path: issue.path === "(body)" ? "(query)" : issue.path,
  }));
  const summary = issues.map((issue) => `${issue.path}: ${issue.message}`).join("; ");
  throw new ApiError(400, "bad_request", `invalid query: ${summary}`, issues);
}

function param<T>(schema: z.ZodType<T, string>, value: string | undefined, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success)
    throw new ApiError(
      400,
      "bad_request",
      `${what} ${JSON.stringify(value)} ${result.error.issues[0]?.message}`,
    );
  return result.data;
}

/** Drops absent filters, so the source's optional fields stay absent (exactOptionalPropertyTypes). */
function defined<T extends object>(query: T): T {
  return Object.fromEntries(Object.entries(query).filter(([, value]) => value !== undefined)) as T;
}
