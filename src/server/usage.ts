// Usage APIs (scope usage:read, the caller's own workspace): summaries and time series from
// the incremental rollups, and the request drill-down from the ledger through the
// per-workspace index. Operators get cross-workspace spend at /admin/spend.
import type { TemplatedApp } from 'uWebSockets.js';
import { z } from 'zod';
import { isOperatorKey, type KeyRecord } from '../accounts/keys.js';
import type { Ledger, LedgerRow } from '../accounts/ledger.js';
import type { AdaptiveRouter } from '../router/adaptive.js';
import { ALL_WORKSPACES, GRANULARITY, UsageRollups, type Granularity } from '../accounts/usage.js';
import { fromNano } from '../accounts/workspaces.js';
import { Errors, GatewayError } from '../errors.js';
import { RequestId, checkId } from './schemas.js';
import { parseBody } from '../wire/body.js';
import type { Handlers } from './handlers.js';

export interface UsageDeps {
  usage: UsageRollups;
  ledger: Ledger;
  /** The adaptive router (its stored quality signals show in a request's drill-down); null when off. */
  adaptive: AdaptiveRouter | null;
}

const DAY = 86400;
/** Rows one page of /v1/requests reads at most. */
const SCAN_LIMIT = 1000;
const unix = z.coerce.number().int().min(0).max(32503680000);

export const RangeQuery = z.object({ start: unix.optional(), end: unix.optional() }).strict();
export const TimeseriesQuery = RangeQuery.extend({ bucket: z.enum(['minute', 'hour', 'day']).default('hour') });
export const SpendQuery = RangeQuery.extend({ by: z.enum(['key', 'workspace', 'model', 'provider']).default('workspace') });
export const RequestsQuery = RangeQuery.extend({
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: RequestId.optional(),
  key: z.string().min(1).max(80).optional(),
  model: z.string().min(1).max(256).optional(),
  status: z.coerce.number().int().min(100).max(599).optional(),
  cache: z.enum(['miss', 'exact', 'semantic', 'dedupe', 'none']).optional(),
}).strict();

function query<T>(schema: z.ZodType<T>, params: URLSearchParams): T {
  return parseBody(schema, Object.fromEntries(params));
}

/** Default range: the last 30 days; `start` < `end` required. */
function range(q: { start?: number | undefined; end?: number | undefined }): { start: number; end: number } {
  const end = q.end ?? Math.ceil(Date.now() / 1000);
  const start = q.start ?? end - 30 * DAY;
  if (start >= end) throw new GatewayError(Errors.invalidRequest, "Invalid 'start': it must be before 'end'.", 'start');
  return { start, end };
}

/** A ledger row as the API shows it (money in USD). */
export function requestView(row: LedgerRow) {
  const { delta_nano, balance_nano, ...rest } = row;
  return { object: 'request', ...rest, balance_change_usd: fromNano(delta_nano), balance_after_usd: balance_nano === null ? null : fromNano(balance_nano) };
}

/** Request ids start with the base36 millisecond time: a time bound is an id bound. */
const idAt = (unixSeconds: number) => `req_${(unixSeconds * 1000).toString(36).padStart(9, '0')}`;

export function registerUsage(app: TemplatedApp, on: Handlers, deps: UsageDeps): void {
  app.get('/v1/usage/summary', on.noBody('usage:read', (ex, key, _p, params) => {
    const { start, end } = range(query(RangeQuery, params));
    const ws = key!.workspace;
    const r = deps.usage.range(ws, start, end, 'model');
    const byCache = deps.usage.range(ws, start, end, 'cache', r.granularity).by;
    const bySaving = deps.usage.range(ws, start, end, 'saving', r.granularity).by;
    const byOutcome = Object.fromEntries(deps.usage.range(ws, start, end, 'outcome', r.granularity).by.map((b) => [b.value, b.requests]));
    ex.sendJson(200, { object: 'usage.summary', workspace: ws, start: r.start, end: r.end, granularity: r.granularity,
      ...r.totals,
      /** Requests the gateway refused (limits, credits, bad input) and requests whose upstream failed: counted apart from the answered ones. */
      refused: byOutcome.refused ?? 0, failed: byOutcome.failed ?? 0,
      /** Tokens kept off the upstream bill, by savings mechanism. */
      saved_tokens: Object.fromEntries(bySaving.filter((b) => b.prompt_tokens > 0).map((b) => [b.value, b.prompt_tokens])),
      /** Where the saving came from: routing (cheaper than the benchmark's list price) and each mechanism, in requests, tokens and dollars. */
      by_saving: bySaving.map((b) => ({ mechanism: b.value, requests: b.requests, tokens: b.prompt_tokens, saved_usd: b.saved_usd })).sort((a, b) => b.saved_usd - a.saved_usd || b.tokens - a.tokens),
      /** Answered requests by how they were served. */
      by_cache: Object.fromEntries(byCache.map((b) => [b.value, b.requests])),
      by_model: r.by.map(({ value, ...f }) => ({ model: value, ...f })) });
  }));

  app.get('/v1/usage/timeseries', on.noBody('usage:read', (ex, key, _p, params) => {
    const q = query(TimeseriesQuery, params);
    const { start, end } = range(q);
    const bucket: Granularity = q.bucket;
    if ((end - start) / GRANULARITY[bucket] > 5000) {
      throw new GatewayError(Errors.invalidRequest, `Invalid 'bucket': ${bucket} buckets over this range would be more than 5,000 points; use a larger bucket or a shorter range.`, 'bucket');
    }
    const r = deps.usage.range(key!.workspace, start, end, 'all', bucket);
    ex.sendJson(200, { object: 'usage.timeseries', workspace: key!.workspace, bucket, start: r.start, end: r.end, data: r.points });
  }));

  app.get('/v1/requests', on.noBody('usage:read', (ex, key, _p, params) => {
    const q = query(RequestsQuery, params);
    const ws = key!.workspace;
    const upper = q.cursor ?? (q.end !== undefined ? idAt(q.end) : 'req_~');
    const lower = q.start !== undefined ? idAt(q.start) : 'req_';
    const data: ReturnType<typeof requestView>[] = [];
    let scanned = 0;
    let last: string | null = null;
    // Newest first; a page stops at `limit` matches or after 1,000 rows looked at (the cursor goes on from there):
    // each row read is a parse on the main thread (~20 µs), so a filter that matches nothing costs at most ~20 ms.
    for (const id of deps.ledger.requestIds(ws, upper, lower)) {
      if (id === q.cursor) continue;
      last = id;
      if (++scanned > SCAN_LIMIT) break;
      const row = deps.ledger.row(id);
      if (!row) continue;
      if ((q.key && row.key_id !== q.key) || (q.model && row.requested_model !== q.model && row.served !== q.model)
        || (q.status !== undefined && row.status !== q.status) || (q.cache && row.cache !== q.cache)) continue;
      data.push(requestView(row));
      if (data.length === q.limit) break;
    }
    const more = last !== null && (data.length === q.limit || scanned > SCAN_LIMIT);
    ex.sendJson(200, { object: 'list', data, has_more: more, next_cursor: more ? last : null });
  }));

  app.get('/v1/requests/:id', on.noBody('usage:read', (ex, key, [id]) => {
    const row = deps.ledger.row(checkId(id ?? '', 'req_'));
    if (!row || (row.workspace !== key!.workspace && !isAdmin(key!))) {
      throw new GatewayError(Errors.notFound, `No request with id ${id} in this workspace.`, 'id');
    }
    // the quality signals it got (/v1/feedback and the judge), when the adaptive router is on
    const signal = (source: 'app' | 'judge') => {
      const sig = deps.adaptive?.signalOf(row.id, source);
      return sig ? { score: sig.score, comment: sig.comment, at: new Date(sig.ts).toISOString(), ...(sig.judge_request ? { judge_request: sig.judge_request } : {}) } : null;
    };
    // (the judge's score only to operator keys: a tenant that saw it could echo it where the judge looked and lie elsewhere)
    ex.sendJson(200, deps.adaptive ? { ...requestView(row), feedback: { app: signal('app'), ...(isOperatorKey(key!) ? { judge: signal('judge') } : {}) } } : requestView(row));
  }));

  app.get('/admin/spend', on.noBody('admin', (ex, _key, _p, params) => {
    const q = query(SpendQuery, params);
    const { start, end } = range(q);
    const r = deps.usage.range(ALL_WORKSPACES, start, end, q.by);
    ex.sendJson(200, { object: 'spend', by: q.by, start: r.start, end: r.end, granularity: r.granularity, ...r.totals,
      data: r.by.map(({ value, ...f }) => ({ [q.by]: value, ...f })) });
  }));
}

function isAdmin(key: KeyRecord): boolean {
  return key.scopes.includes('admin');
}
