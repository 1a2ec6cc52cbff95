// The adaptive router's API: apps' quality signals (POST /v1/feedback), the learned state
// (GET /v1/router), and the operator's controls (POST /v1/reset, POST /v1/simulate-price).
// A low score also evicts the cached answer it scores (savings/cache.ts: a wrong semantic
// hit tightens its neighbourhood), and operators can evict by request or purge a workspace
// (DELETE /v1/cache/requests/{id}, DELETE /v1/cache/workspaces/{id}).
import type { TemplatedApp } from 'uWebSockets.js';
import { z } from 'zod';
import { isOperatorKey, type KeyRecord } from '../accounts/keys.js';
import type { Ledger } from '../accounts/ledger.js';
import type { Config } from '../config/schema.js';
import type { ResponseCache } from '../savings/cache.js';
import type { Store } from '../store/lmdb.js';
import { Errors, GatewayError } from '../errors.js';
import type { Judge } from '../gateway/judge.js';
import type { AdaptiveRouter, Signal } from '../router/adaptive.js';
import type { Catalog } from '../router/catalog.js';
import { parseBody, parseJson, parseJsonOrEmpty } from '../wire/body.js';
import { FreeText } from '../wire/text.js';
import type { Handlers } from './handlers.js';
import { checkId, RequestId } from './schemas.js';

export interface RouterDeps {
  ledger: Ledger;
  catalog: Catalog;
  /** null: the adaptive router is off (config `router.adaptive.enabled`). */
  adaptive: AdaptiveRouter | null;
  judge: Judge | null;
  margin: number;
  cache: ResponseCache;
  /** Where signals are kept when the adaptive router is off (it keeps them itself when on). */
  feedback: Store['feedback'];
  savings: Config['savings'];
}

export const FeedbackSchema = z.object({
  request_id: RequestId,
  /** 0 (wrong, unusable) to 1 (fully right). */
  score: z.number().finite().min(0, 'score is 0 to 1').max(1, 'score is 0 to 1'),
  comment: FreeText(2000).optional(),
}).strict();

/** A simulated price, USD per 1M tokens: at most 1,000,000 (a price beyond means nothing to a cost comparison and overflows it). */
const SimPrice = z.number().finite().min(0).max(1_000_000);

export const SimulatePriceSchema = z.object({
  model: z.string().min(1).max(256),
  /** USD per 1M tokens, as the catalog's; null: back to its list prices. */
  prices: z.object({ input: SimPrice, cached_input: SimPrice.optional(), cache_write: SimPrice.optional(), output: SimPrice }).strict().nullable(),
}).strict();

/** POST /v1/reset takes an empty body or `{}`. */
export const ResetSchema = z.object({}).strict();

function requireOperator(key: KeyRecord): void {
  if (!isOperatorKey(key)) throw new GatewayError(Errors.forbidden, 'This control needs an operator key (the master key or one of config `api_keys`).');
}

function requireAdaptive(deps: RouterDeps): AdaptiveRouter {
  if (!deps.adaptive) throw new GatewayError(Errors.notFound, 'The adaptive router is off (config router.adaptive.enabled).');
  return deps.adaptive;
}

export function registerRouter(app: TemplatedApp, on: Handlers, deps: RouterDeps): void {
  const sem = deps.savings.semantic_cache;
  /** Evicts what a request stored or was served (null: it left nothing in the caches). */
  const evict = (requestId: string) => deps.cache.evict(requestId, sem.threshold, sem.ttl_seconds * 1000);
  /** Signals being written when the adaptive router is off: a second one for the same request meanwhile is a duplicate. */
  const recording = new Set<string>();
  const keep = async (requestId: string, signal: Signal): Promise<'stored' | 'duplicate'> => {
    if (recording.has(requestId) || deps.feedback.get([requestId, 'app']) !== undefined) return 'duplicate';
    recording.add(requestId);
    try { await deps.feedback.put([requestId, 'app'], signal); } finally { recording.delete(requestId); }
    return 'stored';
  };

  app.post('/v1/feedback', on.withBody(['inference', 'feedback'], (ex, key, body) => {
    const input = parseBody(FeedbackSchema, parseJson(body));
    // (cluster mode: a request another replica served is read from Postgres)
    deps.ledger.find(input.request_id).then((row) => {
      // Another workspace's request does not exist for this key (the master key's included: it would use up the workspace's one signal).
      if (!row || row.kind !== 'request' || row.workspace !== key.workspace) {
        throw new GatewayError(Errors.notFound, `No request ${input.request_id} in this workspace (request_id is the x-request-id header, or the gateway object's request_id).`, 'request_id');
      }
      if (row.status !== 200) throw new GatewayError(Errors.invalidRequest, `Request ${input.request_id} was not answered (status ${row.status}); only answers can be scored.`, 'request_id');
      // It scores the policy's choice only when the policy chose and the model's own call answered (not a cache hit or a shared call).
      const routed = row.router_task !== null && row.router_model !== null && row.cache === 'miss';
      const signal = { workspace: row.workspace, score: input.score, comment: input.comment ?? null, task: routed ? row.router_task : null,
        model: routed ? row.router_model : null, ts: Date.now(), judge_request: null, trusted: isOperatorKey(key), served_at: row.ts };
      return (deps.adaptive ? deps.adaptive.signal(row.id, 'app', signal) : keep(row.id, signal)).then(async (outcome) => {
        if (outcome === 'duplicate') throw new GatewayError(Errors.conflict, `Request ${input.request_id} has feedback already (one per request).`, 'request_id');
        // A bad answer is not served again: the entry it came from (a hit) or it made (a miss) goes.
        const evicted = input.score < deps.savings.evict_below ? await evict(row.id) : null;
        ex.sendJson(200, { request_id: row.id, score: input.score, applied_to: outcome === 'applied' ? { task_type: row.router_task, model: row.router_model } : null, evicted });
      });
    }).catch((err: unknown) => { ex.sendError(err); });
  }));

  app.del('/v1/cache/requests/:id', on.noBody('inference', (ex, key, [id]) => {
    requireOperator(key!);
    const requestId = checkId(id ?? '', 'req_');
    evict(requestId).then((evicted) => {
      if (!evicted) { ex.sendError(new GatewayError(Errors.notFound, `Request ${requestId} left nothing in the caches (not cached, or expired).`)); return; }
      ex.sendJson(200, { request_id: requestId, evicted });
    }, (err: unknown) => { ex.sendError(err); });
  }));

  app.del('/v1/cache/workspaces/:id', on.noBody('inference', (ex, key, [id]) => {
    requireOperator(key!);
    // (an id as Sluice issues them: no pattern characters reach the shared cache's key scan)
    const workspace = checkId(id ?? '', 'ws_');
    deps.cache.purgeWorkspace(workspace).then((purged) => { ex.sendJson(200, { workspace, purged }); }, (err: unknown) => { ex.sendError(err); });
  }));

  // Every key sees what the shared policy chooses and how good it thinks each choice is; the
  // traffic figures (requests, signals, tokens), the judge's spend and simulated prices are
  // across every tenant: operator keys only.
  app.get('/v1/router', on.noBody(['inference', 'usage:read', 'feedback'], (ex, key) => {
    const adaptive = requireAdaptive(deps);
    const full = isOperatorKey(key!);
    const tasks = adaptive.view();
    ex.sendJson(200, {
      object: 'router.state', margin: deps.margin,
      candidates: adaptive.candidates.map((c) => (full ? { model: c.name, prices: adaptive.pricesOf(c), list_prices: c.prices } : { model: c.name, list_prices: c.prices })),
      ...(full ? {
        simulated_prices: adaptive.simulatedPrices(),
        judge: deps.judge ? { model: deps.judge.opts.model, sample_rate: deps.judge.opts.sampleRate, in_flight: deps.judge.inFlight, ...deps.judge.stats } : null,
      } : {}),
      task_types: full ? tasks : tasks.map((t) => ({
        task_type: t.task_type, choice: t.choice,
        candidates: t.candidates.map((c) => ({ model: c.model, quality: c.quality, quality_interval: c.quality_interval })),
      })),
    });
  }));

  app.post('/v1/reset', on.withBody('inference', (ex, key, body) => {
    requireOperator(key);
    const adaptive = requireAdaptive(deps);
    parseBody(ResetSchema, parseJsonOrEmpty(body));
    adaptive.reset().then(() => { ex.sendJson(200, { reset: true }); }, (err: unknown) => { ex.sendError(err); });
  }));

  app.post('/v1/simulate-price', on.withBody('inference', (ex, key, body) => {
    requireOperator(key);
    const adaptive = requireAdaptive(deps);
    const input = parseBody(SimulatePriceSchema, parseJson(body));
    // a candidate by its name, or by any name the catalog resolves to the same model (a bare id)
    const entry = deps.catalog.find(input.model);
    const candidate = adaptive.candidates.find((c) => c.name === input.model) ?? (entry ? adaptive.candidates.find((c) => deps.catalog.find(c.name) === entry) : undefined);
    if (!candidate) {
      throw new GatewayError(Errors.invalidRequest, `'${input.model}' is not one of the router's candidates (${adaptive.candidates.map((c) => c.name).join(', ')}).`, 'model');
    }
    adaptive.simulatePrice(candidate.name, input.prices).then(() => {
      ex.sendJson(200, { model: candidate.name, prices: adaptive.pricesOf(candidate), simulated: input.prices !== null });
    }, (err: unknown) => { ex.sendError(err); });
  }));
}
