// The adaptive router's API: apps' quality signals (POST /v1/feedback), the learned state
// (GET /v1/router), and the operator's controls (POST /v1/reset, POST /v1/simulate-price).
import type { TemplatedApp } from 'uWebSockets.js';
import { z } from 'zod';
import type { KeyRecord } from '../accounts/keys.js';
import type { Ledger } from '../accounts/ledger.js';
import { PricesSchema } from '../config/schema.js';
import { Errors, GatewayError } from '../errors.js';
import type { Judge } from '../gateway/judge.js';
import type { AdaptiveRouter } from '../router/adaptive.js';
import { parseBody, parseJson } from '../wire/body.js';
import type { Handlers } from './handlers.js';
import { RequestId } from './schemas.js';

export interface RouterDeps {
  ledger: Ledger;
  /** null: the adaptive router is off (config `router.adaptive.enabled`). */
  adaptive: AdaptiveRouter | null;
  judge: Judge | null;
  margin: number;
}

export const FeedbackSchema = z.object({
  request_id: RequestId,
  /** 0 (wrong, unusable) to 1 (fully right). */
  score: z.number().finite().min(0, 'score is 0 to 1').max(1, 'score is 0 to 1'),
  comment: z.string().max(2000).optional(),
}).strict();

export const SimulatePriceSchema = z.object({
  model: z.string().min(1).max(256),
  /** USD per 1M tokens, as the catalog's; null: back to its list prices. */
  prices: PricesSchema.nullable(),
}).strict();

const isOperator = (key: KeyRecord) => key.kind === 'master' || key.kind === 'operator';

function requireOperator(key: KeyRecord): void {
  if (!isOperator(key)) throw new GatewayError(Errors.forbidden, 'Router controls need an operator key (the master key or one of config `api_keys`).');
}

function requireAdaptive(deps: RouterDeps): AdaptiveRouter {
  if (!deps.adaptive) throw new GatewayError(Errors.notFound, 'The adaptive router is off (config router.adaptive.enabled).');
  return deps.adaptive;
}

export function registerRouter(app: TemplatedApp, on: Handlers, deps: RouterDeps): void {
  app.post('/v1/feedback', on.withBody(['inference', 'feedback'], (ex, key, body) => {
    const adaptive = requireAdaptive(deps);
    const input = parseBody(FeedbackSchema, parseJson(body));
    const row = deps.ledger.row(input.request_id);
    // Another workspace's request does not exist for this key (the master key sees every workspace).
    if (!row || row.kind !== 'request' || (row.workspace !== key.workspace && key.kind !== 'master')) {
      throw new GatewayError(Errors.notFound, `No request ${input.request_id} in this workspace.`, 'request_id');
    }
    if (row.status !== 200) throw new GatewayError(Errors.invalidRequest, `Request ${input.request_id} was not answered (status ${row.status}); only answers can be scored.`, 'request_id');
    if (adaptive.hasSignal(row.id, 'app')) throw new GatewayError(Errors.conflict, `Request ${input.request_id} has feedback already (one per request).`, 'request_id');
    // It scores the policy's choice only when the policy chose and the model's own call answered (not a cache hit or a shared call).
    const applies = row.router_task !== null && row.router_model !== null && row.cache === 'miss';
    const signal = { workspace: row.workspace, score: input.score, comment: input.comment ?? null, task: applies ? row.router_task : null,
      model: applies ? row.router_model : null, ts: Date.now(), judge_request: null };
    adaptive.signal(row.id, 'app', signal).then((stored) => {
      if (!stored) { ex.sendError(new GatewayError(Errors.conflict, `Request ${input.request_id} has feedback already (one per request).`, 'request_id')); return; }
      ex.sendJson(200, { request_id: row.id, score: input.score, applied_to: applies ? { task_type: row.router_task, model: row.router_model } : null });
    }, (err: unknown) => { ex.sendError(err); });
  }));

  app.get('/v1/router', on.noBody(['inference', 'usage:read', 'feedback'], (ex) => {
    const adaptive = requireAdaptive(deps);
    ex.sendJson(200, {
      object: 'router.state', margin: deps.margin, candidates: adaptive.candidates.map((c) => ({ model: c.name, prices: adaptive.pricesOf(c), list_prices: c.prices })),
      simulated_prices: adaptive.simulatedPrices(),
      judge: deps.judge ? { model: deps.judge.opts.model, sample_rate: deps.judge.opts.sampleRate, in_flight: deps.judge.inFlight, ...deps.judge.stats } : null,
      task_types: adaptive.view(),
    });
  }));

  app.post('/v1/reset', on.withBody('inference', (ex, key) => {
    requireOperator(key);
    const adaptive = requireAdaptive(deps);
    adaptive.reset().then(() => { ex.sendJson(200, { reset: true }); }, (err: unknown) => { ex.sendError(err); });
  }));

  app.post('/v1/simulate-price', on.withBody('inference', (ex, key, body) => {
    requireOperator(key);
    const adaptive = requireAdaptive(deps);
    const input = parseBody(SimulatePriceSchema, parseJson(body));
    const candidate = adaptive.candidates.find((c) => c.name === input.model);
    if (!candidate) {
      throw new GatewayError(Errors.invalidRequest, `'${input.model}' is not one of the router's candidates (${adaptive.candidates.map((c) => c.name).join(', ')}).`, 'model');
    }
    adaptive.simulatePrice(candidate.name, input.prices).then(() => {
      ex.sendJson(200, { model: candidate.name, prices: adaptive.pricesOf(candidate), simulated: input.prices !== null });
    }, (err: unknown) => { ex.sendError(err); });
  }));
}
