// POST /v1/chat/completions, top to bottom: validate → plan (route) → dispatch →
// respond (buffered JSON, or SSE passed through byte for byte) → settle (costs, ledger row).
import type { KeyRecord } from '../accounts/keys.js';
import { ledgerRow, type Ledger, type LedgerRow, type RequestIds } from '../accounts/ledger.js';
import { priceRequest, upstreamCost, type Costs, type Usage } from '../accounts/pricing.js';
import type { Admission, Limits } from '../accounts/limits.js';
import { fromNano, toNano, type Workspace, type Workspaces } from '../accounts/workspaces.js';
import { Errors, GatewayError } from '../errors.js';
import type { ChatCall, ChatRequest, ResponseSink, UpstreamHandle } from '../providers/provider.js';
import type { Catalog, Route, RoutePolicy } from '../router/catalog.js';
import type { Config, ModelEntry, Prices } from '../config/schema.js';
import type { RouteHealth } from '../router/health.js';
import type { Exchange, HeaderList } from '../server/exchange.js';
import type { WorkerPool } from '../workers/pool.js';
import { ResponsesRequestSchema } from './responses.js';
import { ChatRequestSchema, parseBody, parseJson } from './schemas.js';
import { SseUsageTap, scanCompletion, spliceGateway, type CompletionScan } from './sse-usage.js';
import { figureHeaders, fmtUsd, ms } from './fmt.js';
import { Served, type CacheKind } from './served.js';
import type { ResponseCache } from '../savings/cache.js';
import { isDeterministic, prefixHash, requestHash, splitLastTurn } from '../savings/canonical.js';
import { CACHES, M, NO_SWITCHES, maskOf, type RequestSwitches, type SavedTokens } from '../savings/mechanisms.js';

type SavingsConfig = Config['savings'];

export interface ChatDeps {
  catalog: Catalog;
  ledger: Ledger;
  workspaces: Workspaces;
  limits: Limits;
  health: RouteHealth;
  /** model `auto`: score thresholds and the model or alias of each bucket. */
  router: { mediumFrom: number; complexFrom: number; simple: string; medium: string; complex: string };
  /** Attempts after the first, each on the next eligible route, before any byte reaches the client. */
  maxRetries: number;
  /** Output tokens assumed for the credit check when neither the request nor the model caps them. */
  defaultOutputCap: number;
  ids: RequestIds;
  pool: WorkerPool;
  markup: number;
  /** BASELINE_MODEL's prices; null = benchmark against the requested model. */
  baseline: Prices | null;
  savings: SavingsDeps;
}

export { fmtUsd };

/** The savings engine's part of the gateway's dependencies. */
export interface SavingsDeps {
  config: SavingsConfig;
  cache: ResponseCache;
  /** Mechanisms on in config (bits of mechanisms.ts). */
  enabled: number;
}

/** One chat request between parsing and dispatch. */
interface Pending {
  ex: Exchange;
  key: KeyRecord;
  t0: number;
  api: 'chat' | 'responses';
  router: RouterPick | null;
  /** Savings mechanisms on for this request, plus FORCE_CACHE. */
  bits: number;
  /** The request as the caller sent it, plus any output cap (the caches key on this). */
  original: ChatRequest;
  /** What is sent: the original, or with an output cap, dedupe and compression applied. */
  request: ChatRequest;
  body: Buffer;
  routes: readonly Route[];
  ws: Workspace;
  outputCap: number;
  saved: SavedTokens;
  /** The exact cache's key when the worker pool already computed it (large bodies, with the rewrites). */
  hash: string | null;
}

/** `x-gateway-cache: on`: cache a sampled request too. */
const FORCE_CACHE = 128;

/** Upstream ids that take `max_completion_tokens` (OpenAI's reasoning families reject `max_tokens`). */
const COMPLETION_TOKENS_MODELS = /^(o\d|gpt-5)/;

export class ChatGateway {
  inFlight = 0;
  /** Requests in flight that identical ones may join (in-flight dedupe), by workspace, hash and delivery. */
  private readonly flights = new Map<string, ChatExchange>();

  /** Output caps by model slug or alias (a Map: request model names never reach Object.prototype). */
  private readonly caps: Map<string, number>;
  /** The spliced `"max_tokens":N,` bytes, one per field and cap. */
  private readonly capMembers = new Map<string, Buffer>();

  constructor(readonly deps: ChatDeps) {
    this.caps = new Map(Object.entries(deps.savings.config.output_cap.models));
  }

  /** `pin`: the x-gateway-provider header ('' when absent); the body's `provider` field wins. */
  handle(ex: Exchange, key: KeyRecord, body: Buffer, t0: number, pin = '', api: 'chat' | 'responses' = 'chat', sw: RequestSwitches = NO_SWITCHES): void {
    let request: ChatRequest;
    try {
      request = api === 'responses'
        ? { ...parseBody(ResponsesRequestSchema, parseJson(body)), messages: [] } as ChatRequest
        : parseBody(ChatRequestSchema, parseJson(body)) as ChatRequest;
    } catch (err) {
      this.refuse(ex, key, '', t0, err);
      return;
    }
    const bits = api === 'chat' ? (this.deps.savings.enabled & ~sw.off & ~maskOf(key.limits?.savings_off)) | (sw.forceCache ? FORCE_CACHE : 0) : 0;
    if (api === 'responses') { this.plan(ex, key, body, t0, pin, request, null, api, 0); return; }
    if (request.model !== 'auto') { this.plan(ex, key, body, t0, pin, request, null, api, bits); return; }
    // The smart router: a score from the classifier in the pool picks the bucket's model.
    const r = this.deps.router;
    this.deps.pool.classify(body).then((score) => {
      if (ex.aborted) return;
      const bucket = score >= r.complexFrom ? 'complex' : score >= r.mediumFrom ? 'medium' : 'simple';
      this.plan(ex, key, body, t0, pin, request, { bucket, score, model: r[bucket] }, api, bits);
    }, (err: unknown) => this.refuse(ex, key, request.model, t0, err));
  }

  private plan(ex: Exchange, key: KeyRecord, body: Buffer, t0: number, pin: string, request: ChatRequest, router: RouterPick | null, api: 'chat' | 'responses', bits: number): void {
    let route: Route | undefined;
    let routes: readonly Route[] = [];
    let ws: Workspace | undefined;
    try {
      const entry = this.deps.catalog.resolve(router?.model ?? request.model);
      routes = entry.policy ? this.ordered(entry.routes, entry.policy) : entry.routes;
      const pinned = typeof request.provider === 'string' ? request.provider : pin;
      if (pinned) {
        const all = routes;
        routes = all.filter((r) => r.provider.name === pinned);
        if (!routes.length) {
          throw new GatewayError(Errors.invalidRequest, `No route of '${request.model}' goes through provider '${pinned}' (its routes: ${all.map((r) => r.provider.name).join(', ') || 'none'}).`, 'provider');
        }
      }
      if (api === 'responses') {
        routes = routes.filter((r) => r.provider.kind === 'openai'); // the Responses API passes through to OpenAI-kind upstreams only
        if (!routes.length) throw new GatewayError(Errors.invalidRequest, `No route of '${request.model}' speaks the Responses API.`, 'model');
      }
      const limits = key.limits;
      if (limits && (limits.regions || limits.zdr_only) && routes.length) {
        const all = routes;
        routes = all.filter((r) => (!limits.zdr_only || r.zdr) && (!limits.regions || (r.region !== null && (r.region === 'local' || limits.regions.includes(r.region)))));
        if (!routes.length) throw new GatewayError(Errors.modelNotAllowed, `No route of '${request.model}' meets this key's ${limits.zdr_only ? 'zero-data-retention' : ''}${limits.zdr_only && limits.regions ? ' and ' : ''}${limits.regions ? `region (${limits.regions.join(', ')})` : ''} constraint.`, 'model');
      }
      route = routes[0];
      if (!route) throw new GatewayError(Errors.noRoute, `No enabled provider serves '${request.model}'. Set its provider key or enable sim.`, 'model');
      checkCapabilities(request, route.model);
      ws = this.deps.workspaces.get(key.workspace);
      if (!ws) throw new GatewayError(Errors.forbidden, `This key's workspace ${key.workspace} no longer exists.`);
    } catch (err) {
      this.refuse(ex, key, request.model, t0, err);
      return;
    }
    const p: Pending = { ex, key, t0, api, router, bits, original: request, request, body, routes, ws, outputCap: 0, saved: {}, hash: null };
    if (bits) this.shape(p, route);
    const cfg = this.deps.savings.config;
    if (!(bits & (M.compression | M.chunk_dedupe)) || body.length < cfg.rewrite_min_bytes) { this.preflight(p, null); return; }
    // Chunk dedupe and compression, in the pool; the reply carries the prompt's exact token count.
    const c = cfg.compression;
    this.deps.pool.rewrite(route.model.tokenizer, p.body, bits & M.chunk_dedupe ? cfg.chunk_dedupe.min_chars : 0,
      bits & M.compression ? { budgetTokens: c.budget_tokens, keepLast: c.keep_last, staleMaxChars: c.stale_max_chars } : null,
      this.cacheable(p),
    ).then((r) => {
      if (ex.aborted) return;
      if (r.hash) p.hash = r.hash;
      if (r.body !== null) {
        p.body = Buffer.from(r.body);
        p.request = JSON.parse(r.body) as ChatRequest;
        if (r.savedChunk) p.saved.chunk_dedupe = r.savedChunk;
        if (r.savedCompression) p.saved.compression = r.savedCompression;
      }
      this.preflight(p, r.promptTokens);
    }, (err: unknown) => this.refuse(ex, key, request.model, t0, err));
  }

  /** Output budget shaping: a max_tokens for a request that sets none (spliced in; the body is not re-encoded). */
  private shape(p: Pending, route: Route): void {
    const req = p.request;
    if (!(p.bits & M.output_cap) || req.max_tokens != null || req.max_completion_tokens != null) return;
    const asked = this.caps.get(req.model) ?? this.caps.get(route.slug) ?? this.deps.savings.config.output_cap.default;
    if (!asked) return;
    const cap = Math.min(asked, route.model.max_output_tokens ?? asked);
    // Only where the cap surely fits beside the prompt (a prompt has at most as many tokens as
    // the body has bytes): near the context window a cap could turn an answerable request
    // into a context_length_exceeded the caller never asked for.
    if (p.body.length + cap > route.model.context_window) return;
    const field = COMPLETION_TOKENS_MODELS.test(route.upstreamModel) ? 'max_completion_tokens' : 'max_tokens';
    // Set on the parsed request itself (it is this call's own object): the caches then key on
    // the request with its cap, which is what the upstream answers.
    req[field] = cap;
    const key = `${field}:${cap}`;
    let member = this.capMembers.get(key);
    if (!member) this.capMembers.set(key, member = Buffer.from(`"${field}":${cap},`));
    const open = p.body.indexOf(123); // '{' (the body parsed as an object)
    p.body = Buffer.concat([p.body.subarray(0, open + 1), member, p.body.subarray(open + 1)]);
    p.outputCap = cap;
  }

  /**
   * Context window and credits before anything leaves. Without I/O when bounds allow: a
   * prompt has at most as many tokens as the body has bytes, so only a body near the
   * context window, or a balance too tight for the byte bound, pays for an exact count.
   */
  private preflight(p: Pending, knownTokens: number | null): void {
    const { ex, key, t0, request: req, ws } = p;
    const route = p.routes[0]!;
    const prices = route.prices;
    const window = route.model.context_window;
    const cap = req.max_completion_tokens ?? req.max_tokens ?? route.model.max_output_tokens ?? this.deps.defaultOutputCap;
    const hold = (promptTokens: number) => (ws.metered
      ? toNano(upstreamCost(prices, { prompt_tokens: promptTokens, completion_tokens: cap, cached_tokens: 0 }) * (1 + this.deps.markup)) : 0);
    const check = (tokens: number) => {
      const asked = req.max_completion_tokens ?? req.max_tokens ?? 0; // as OpenAI: the prompt plus what max_tokens asks for
      if (tokens + asked > window) {
        this.refuse(ex, key, req.model, t0, new GatewayError(Errors.contextLength,
          `This model's context window is ${window} tokens; the messages use ${tokens}${asked ? ` and max_tokens asks for ${asked} more` : ''}. Shorten the messages or lower max_tokens.`, 'messages'));
        return;
      }
      const needed = hold(tokens);
      const available = this.deps.workspaces.availableNano(ws);
      if (ws.metered && available < needed) {
        this.refuse(ex, key, req.model, t0, new GatewayError(Errors.insufficientCredits,
          `Insufficient credits: this request may cost up to $${fmtUsd(fromNano(needed))} (${tokens} prompt tokens, up to ${cap} output tokens) and the workspace has $${fmtUsd(fromNano(Math.max(0, available)))} available. Top up, or lower max_tokens.`));
        return;
      }
      this.start(p, needed);
    };
    if (knownTokens !== null) { check(knownTokens); return; }
    const bound = hold(p.body.length);
    if (p.body.length + cap <= window && this.deps.workspaces.availableNano(ws) >= bound) { this.start(p, bound); return; }
    this.deps.pool.countPrompt(route.model.tokenizer, p.body).then((tokens) => {
      if (!ex.aborted) check(tokens);
    }, (err: unknown) => this.refuse(ex, key, req.model, t0, err));
  }

  /** An alias's routes in its policy's order: cheapest, fastest (latency EWMA; unmeasured first), or price × latency. */
  private ordered(routes: readonly Route[], policy: RoutePolicy): readonly Route[] {
    if (policy === 'cost') return routes;
    const latency = (r: Route) => this.deps.health.view(r.decision).latency_ewma_ms ?? 0;
    const price = (r: Route) => r.prices.input + r.prices.output;
    const score = policy === 'latency' ? latency : (r: Route) => price(r) * (1 + latency(r));
    return [...routes].sort((a, b) => score(a) - score(b));
  }

  /** Limits, then the caches: an exact hit, a flight to join, a semantic hit; else upstream. */
  private start(p: Pending, holdNano: number): void {
    const route = p.routes[0]!;
    let admission: Admission | null;
    try {
      admission = this.deps.limits.admit(p.key, route.slug, route.provider.name);
    } catch (err) {
      this.refuse(p.ex, p.key, p.original.model, p.t0, err);
      return;
    }
    const { bits, original } = p;
    const cfg = this.deps.savings.config;
    const hash = this.cacheable(p) ? p.hash ?? requestHash(original) : null;
    if (!hash) {
      this.launch(p, holdNano, admission, null, null);
      return;
    }
    const cache = this.deps.savings.cache;
    if (bits & M.exact_cache) {
      const hit = cache.getExact(p.ws.id, hash);
      if (hit) { this.served(p, admission, 'exact').replay(hit); return; }
    }
    if (bits & M.dedupe && this.join(p, admission, hash)) return;
    const turn = bits & M.semantic_cache ? splitLastTurn(original) : null;
    if (!turn || turn.text.length > cfg.semantic_cache.max_prompt_chars) { this.launch(p, holdNano, admission, hash, null); return; }
    this.deps.pool.embed(turn.text).then((vec) => {
      if (p.ex.aborted) { if (admission) this.deps.limits.finish(p.key, admission, 0, 0); return; }
      const hit = cache.findSimilar(p.ws.id, turn.context, vec, turn.text, cfg.semantic_cache.threshold);
      if (hit) { this.served(p, admission, 'semantic', hit.similarity).replay(hit); return; }
      if (bits & M.dedupe && this.join(p, admission, hash)) return;
      this.launch(p, holdNano, admission, hash, { vec, text: turn.text, context: turn.context });
    }, () => this.launch(p, holdNano, admission, hash, null));
  }

  /** The caches and dedupe apply: on for this request, and deterministic (or opted in). */
  private cacheable(p: Pending): boolean {
    return (p.bits & CACHES) !== 0 && ((p.bits & FORCE_CACHE) !== 0 || this.deps.savings.config.exact_cache.nondeterministic || isDeterministic(p.original));
  }

  private served(p: Pending, admission: Admission | null, kind: CacheKind, similarity: number | null = null): Served {
    const route = p.routes[0]!;
    return new Served(this.deps, p.ex, p.key, p.ws, admission, p.original, p.t0, kind, route.decision, route.prices, similarity);
  }

  private flightKey(p: Pending, hash: string): string {
    return `${p.ws.id}\n${hash}\n${p.original.stream === true ? (p.original.stream_options?.include_usage === true ? 'su' : 's') : 'j'}`;
  }

  /** Joins an identical request in flight (same workspace, same answer-determining body, same delivery). */
  private join(p: Pending, admission: Admission | null, hash: string): boolean {
    const leader = this.flights.get(this.flightKey(p, hash));
    if (!leader?.joinable()) return false;
    leader.join(this.served(p, admission, 'dedupe'));
    return true;
  }

  private launch(p: Pending, holdNano: number, admission: Admission | null, hash: string | null, semantic: SemanticKey | null): void {
    if (holdNano) this.deps.workspaces.reserve(p.ws, holdNano);
    this.inFlight++;
    const exchange = new ChatExchange(this, p, holdNano, admission);
    if (hash) {
      const bits = p.bits;
      exchange.cacheAs = { hash, exact: (bits & M.exact_cache) !== 0, semantic: bits & M.semantic_cache ? semantic : null };
      if (bits & M.dedupe) {
        const fk = this.flightKey(p, hash);
        this.flights.set(fk, exchange);
        exchange.flightKey = fk;
      }
    }
    exchange.dispatch();
  }

  /** Called by a leader when identical requests may no longer join it. */
  land(fk: string, exchange: ChatExchange): void {
    if (this.flights.get(fk) === exchange) this.flights.delete(fk);
  }

  /** Refused before anything went upstream: the error, and a row that says so. */
  private refuse(ex: Exchange, key: KeyRecord, model: string, t0: number, err: unknown): void {
    ex.sendError(err);
    const e = err instanceof GatewayError ? err : null;
    this.deps.ledger.append(ledgerRow({
      id: ex.requestId, kind: 'request', workspace: key.workspace, key_id: key.id, endpoint: 'chat.completions', requested_model: model,
      status: e?.status ?? 500, error: e?.code ?? 'internal_error', total_ms: ms(t0, performance.now()),
    }), undefined);
  }
}

/** Where a miss's answer is stored once it completes. */
interface SemanticKey {
  vec: Float32Array;
  text: string;
  context: string;
}

/** The smart router's choice for a request to model `auto`. */
interface RouterPick {
  bucket: 'simple' | 'medium' | 'complex';
  score: number;
  model: string;
}

/** What the request needs that the model may lack (a model that lists no capabilities is not restricted). */
function checkCapabilities(request: ChatRequest, model: ModelEntry): void {
  const caps = model.capabilities;
  if (!caps.length) return;
  const lacks = (cap: (typeof caps)[number], param: string, what: string) => {
    if (!caps.includes(cap)) throw new GatewayError(Errors.invalidRequest, `'${model.slug}' does not support ${what}.`, param);
  };
  if (Array.isArray(request.tools) && request.tools.length) lacks('tools', 'tools', 'tools');
  const format = request.response_format as { type?: unknown } | null | undefined;
  if (format && (format.type === 'json_object' || format.type === 'json_schema')) lacks('json', 'response_format', 'JSON output');
  if (request.messages.some((m) => Array.isArray(m.content) && m.content.some((p) => typeof p === 'object' && p !== null && (p as { type?: unknown }).type === 'image_url'))) {
    lacks('vision', 'messages', 'image inputs');
  }
}

/** Per-route headers that do not change between requests, built once. */
const routeHeaderCache = new WeakMap<Route, HeaderList>();

/** Stands for "each client's own gateway comment" in the stream log (followers write theirs). */
const GATEWAY_MARK = Buffer.alloc(0);

/**
 * One chat request in flight: it is the sink the provider adapter answers into. With
 * in-flight dedupe it also leads: identical requests that arrive meanwhile follow it
 * (Served), receiving the bytes written so far and then the live ones.
 */
class ChatExchange implements ResponseSink {
  private readonly stream: boolean;
  private readonly ex: Exchange;
  private readonly key: KeyRecord;
  private readonly ws: Workspace;
  private readonly request: ChatRequest;
  private readonly body: Buffer;
  private readonly routes: readonly Route[];
  private readonly t0: number;
  /** Set when the smart router picked the model. */
  private readonly router: RouterPick | null;
  private readonly api: 'chat' | 'responses';
  private readonly saved: SavedTokens;
  private readonly outputCap: number;
  private readonly bits: number;
  private handle: UpstreamHandle | null = null;
  private tap: SseUsageTap | null = null;
  private chunks: Buffer[] = [];
  private status = 0;
  private tDispatch = 0;
  private tFirstByte = 0;
  private tUpstreamEnd = 0;
  private settled = false;
  /** The route of the current attempt; `retries` attempts failed before it. */
  private route: Route;
  private retries = 0;
  private readonly tried = new Set<Route>();
  private retryTimer: NodeJS.Timeout | null = null;
  /** Where the answer is stored when it completes (a cacheable request). */
  cacheAs: { hash: string; exact: boolean; semantic: SemanticKey | null } | null = null;
  /** Set while identical requests may join this one. */
  flightKey: string | null = null;
  private followers: Served[] | null = null;
  /** What was written to the client so far (kept while followers may join a stream). */
  private log: Buffer[] | null = null;
  /** The upstream's SSE bytes, kept to assemble the answer for the cache. */
  private sse: Buffer[] | null = null;
  /** The leader's own client went away while followers still wait: the upstream call goes on for them. */
  private leaderGone = false;

  constructor(private readonly gw: ChatGateway, p: Pending, private readonly holdNano: number, private readonly admission: Admission | null) {
    this.ex = p.ex;
    this.key = p.key;
    this.ws = p.ws;
    this.request = p.request;
    this.body = p.body;
    this.routes = p.routes;
    this.t0 = p.t0;
    this.router = p.router;
    this.api = p.api;
    this.saved = p.saved;
    this.outputCap = p.outputCap;
    this.bits = p.bits;
    this.stream = p.request.stream === true;
    this.route = p.routes[0]!;
    this.ex.onAbort(() => this.clientAborted());
  }

  // ---- in-flight dedupe ------------------------------------------------------------------

  joinable(): boolean {
    return this.flightKey !== null && !this.tUpstreamEnd;
  }

  join(f: Served): void {
    (this.followers ??= []).push(f);
    f.onGone = () => this.followerGone(f);
    if (this.tap) {
      // Already streaming: what the leader's client got so far, then live.
      f.startStream();
      for (const chunk of this.log ?? []) f.write(chunk === GATEWAY_MARK ? f.comment(this.tap.usage) : chunk);
    }
  }

  private followerGone(f: Served): void {
    const list = this.followers;
    if (!list) return;
    const i = list.indexOf(f);
    if (i !== -1) list.splice(i, 1);
    if (!this.leaderGone) return;
    // The payer left: the next follower takes over; with nobody left, the call is cancelled.
    if (f.payer && list[0]) list[0].payer = true;
    if (!list.length) this.cancelUpstream();
  }

  /** Leaves the flight: later identical requests start their own call (or hit the cache). */
  private land(): void {
    if (this.flightKey) { this.gw.land(this.flightKey, this); this.flightKey = null; }
  }

  /** Every client of this exchange gets the same failure (each with its own row). */
  private fail(err: GatewayError, relay?: { status: number; body: Buffer }): void {
    this.land();
    if (relay) this.ex.send(relay.status, 'application/json', relay.body, this.routeHeaders());
    else this.ex.sendError(err, this.routeHeaders());
    if (this.followers) for (const f of this.followers) f.fail(err, relay);
  }

  /** Sends the request to the first untried route whose breaker admits it. */
  dispatch(): void {
    this.retryTimer = null;
    if (this.ex.aborted && !this.leaderGone) return;
    const health = this.gw.deps.health;
    const next = this.routes.find((r) => !this.tried.has(r) && health.admits(r.decision));
    if (!next) {
      const err = this.lastError ?? new GatewayError(Errors.noRoute, `Every route for '${this.request.model}' is unavailable (disabled or failing); retry shortly.`);
      this.fail(err);
      this.settle(err.status, this.lastError ? `upstream_${this.lastError.code}` : err.code, null);
      return;
    }
    this.route = next;
    this.tried.add(next);
    this.status = 0;
    this.retryAfterMs = null;
    this.chunks = [];
    this.tFirstByte = 0;
    this.tUpstreamEnd = 0;
    const call: ChatCall = {
      upstreamModel: next.upstreamModel, encoding: next.model.tokenizer,
      request: this.request, body: this.body, stream: this.stream, api: this.api,
      promptCacheKey: this.promptCacheKey(),
    };
    this.tDispatch = performance.now();
    this.handle = next.provider.chat(call, this);
  }

  /** Provider prompt caching: a key for the prompt's stable head (large prompts only; null = leave the request as it is). */
  private promptCacheKey(): string | null {
    const s = this.gw.deps.savings;
    if (!(this.bits & M.prompt_cache) || this.body.length < s.config.prompt_cache.min_body_bytes) return null;
    return prefixHash(this.ws.id, this.request);
  }

  private lastError: GatewayError | null = null;

  /**
   * A failure before any byte reached the client: counts against the route's breaker, and
   * the request moves to the next route after a short jittered backoff while retries last.
   * Returns false when the caller must answer with the failure itself.
   */
  private failover(err: GatewayError, reason: string): boolean {
    this.gw.deps.health.failure(this.route.decision, reason, this.retryAfterMs);
    this.lastError = err;
    if (this.retries >= this.gw.deps.maxRetries || (this.ex.aborted && !this.leaderGone)) return false;
    if (!this.routes.some((r) => !this.tried.has(r))) return false;
    this.retries++;
    // The next attempt goes to another route, so the wait is short: 5, 10, 20 ms … (± 50%).
    const backoff = Math.min(1000, 5 * 2 ** (this.retries - 1)) * (0.5 + Math.random());
    this.retryTimer = setTimeout(() => this.dispatch(), backoff);
    return true;
  }

  // ---- respond -------------------------------------------------------------------------

  private retryAfterMs: number | null = null;

  onStart(status: number, contentType: string, retryAfterMs?: number | null): void {
    this.tFirstByte = performance.now();
    this.status = status;
    this.retryAfterMs = retryAfterMs ?? null;
    if (this.stream && status === 200 && contentType.includes('event-stream')) {
      this.gw.deps.health.success(this.route.decision, this.tFirstByte - this.tDispatch);
      this.tap = new SseUsageTap(this.request.stream_options?.include_usage === true, this.emit, () => GATEWAY_MARK);
      if (this.cacheAs) this.sse = [];
      this.ex.startStream(200, 'text/event-stream; charset=utf-8', this.routeHeaders(), () => {
        this.writable = true;
        this.handle?.resume();
      });
      if (this.followers) for (const f of this.followers) f.startStream();
    }
  }

  /** The tap's writer: each client's own comment at the mark; while others may join, the bytes are logged for them. */
  private readonly emit = (chunk: Buffer): boolean => {
    if (this.flightKey) (this.log ??= []).push(chunk);
    if (this.followers) for (const f of this.followers) f.write(chunk === GATEWAY_MARK ? f.comment(this.tap!.usage) : chunk);
    return this.ex.write(chunk === GATEWAY_MARK ? this.gatewayComment() : chunk);
  };

  onData(chunk: Buffer): boolean {
    if (!this.tap) {
      this.chunks.push(chunk);
      return true;
    }
    if (this.sse) this.sse.push(chunk);
    // Written at once, one corked write per upstream chunk. When uWS reports backpressure
    // the adapter pauses; nothing more is written until onWritable resumes it (writing on
    // into a backpressured uWS response can lose bytes, so the rule is strict).
    this.pending = chunk;
    if (this.leaderGone) this.pushPending();
    else this.ex.corked(this.pushPending);
    return this.writable || this.leaderGone;
  }

  // Bound once, not a closure per chunk.
  private pending: Buffer | null = null;
  private writable = true;
  private readonly pushPending = (): void => {
    this.writable = this.tap!.push(this.pending!);
    this.pending = null;
  };

  onEnd(): void {
    this.tUpstreamEnd = performance.now();
    this.land();
    if (!this.tap) { this.finishBuffered(); return; }
    if (this.leaderGone) this.writeTail(); else this.ex.corked(this.writeTail);
    const usage = this.tap.usage;
    this.settle(200, null, usage);
    if (this.followers) for (const f of this.followers) f.end(usage);
    // The response completes only once its ledger row (and charge) is committed.
    this.gw.deps.ledger.whenCommitted(() => this.ex.end());
    const sse = this.sse;
    this.sse = null;
    if (sse && usage) {
      this.gw.deps.pool.assemble(Buffer.concat(sse)).then((json) => { if (json) this.store(json, usage); }, () => undefined);
    }
  }

  private readonly writeTail = (): void => {
    const tap = this.tap!;
    const tail = tap.flushTail();
    if (tail) this.emit(tail);
    if (!tap.sawDone) this.emit(GATEWAY_MARK);
  };

  /** Keeps a completed answer for the exact and semantic caches. */
  private store(json: string, usage: Usage): void {
    const c = this.cacheAs;
    const cfg = this.gw.deps.savings.config;
    if (!c || json.length > cfg.exact_cache.max_entry_bytes) return;
    const answer = { decision: this.route.decision, body: json, usage };
    if (c.exact) this.gw.deps.savings.cache.putExact(this.ws.id, c.hash, answer, cfg.exact_cache.ttl_seconds * 1000);
    if (c.semantic) this.gw.deps.savings.cache.putSimilar(this.ws.id, c.semantic.context, this.ex.requestId, c.semantic.vec, c.semantic.text, answer, cfg.semantic_cache.ttl_seconds * 1000);
  }

  onError(err: GatewayError): void {
    this.tUpstreamEnd = performance.now();
    if (this.ex.aborted && !this.leaderGone) return;
    if (this.tap) {
      // Headers are gone: the stream ends with an error event, never a silent truncation.
      this.land();
      this.gw.deps.health.failure(this.route.decision, `stream_broken_${err.code}`);
      const event = Buffer.from(`data: ${JSON.stringify(err.toJSON())}\n\n`);
      this.ex.end(event);
      if (this.followers) for (const f of this.followers) f.breakStream(event, err);
      this.settle(err.status, err.code, this.tap.usage);
      return;
    }
    if (err.status >= 500 && this.failover(err, err.code)) return; // a 4xx is the caller's, on any route
    this.fail(err);
    this.settle(err.status, err.code, null);
  }

  private clientAborted(): void {
    if (this.followers?.length) {
      // Others wait for this answer: the call goes on for them, and the first of them pays for it.
      this.leaderGone = true;
      this.followers[0]!.payer = true;
      this.settleHandedOver();
      return;
    }
    this.cancelUpstream();
    if (!this.tUpstreamEnd) this.tUpstreamEnd = performance.now();
    this.settle(499, 'client_closed_request', this.tap?.usage ?? null);
  }

  private cancelUpstream(): void {
    if (this.retryTimer) { clearTimeout(this.retryTimer); this.retryTimer = null; }
    if (!this.tFirstByte) this.gw.deps.health.release(this.route.decision);
    this.handle?.abort();
    this.land();
  }

  private finishBuffered(): void {
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    if (this.status !== 200) {
      // 5xx and 429 may go to the next route; what cannot is answered as 502 (a 4xx is relayed below).
      const err = new GatewayError(Errors.upstreamError, `Upstream ${this.route.decision} returned HTTP ${this.status}.`);
      if ((this.status >= 500 || this.status === 429) && this.failover(err, `http_${this.status}`)) return;
      if (this.status >= 500 || this.status < 400) {
        this.fail(err);
        this.settle(err.status, `upstream_${this.status}`, null);
        return;
      }
    }
    this.gw.deps.health.success(this.route.decision, this.tUpstreamEnd - this.tDispatch);
    if (this.status >= 400) {
      // The provider's own 4xx (already in OpenAI's envelope for OpenAI-kind upstreams) is the caller's to see.
      this.fail(new GatewayError(Errors.upstreamError, `Upstream ${this.route.decision} returned HTTP ${this.status}.`), { status: this.status, body });
      this.settle(this.status, `upstream_${this.status}`, null);
      return;
    }
    const scan = scanCompletion(body);
    if (!scan.isObject) {
      const err = new GatewayError(Errors.upstreamError, `Upstream ${this.route.decision} sent a body that is not a JSON object.`);
      this.fail(err);
      this.settle(err.status, 'upstream_bad_body', null);
      return;
    }
    if (scan.usage) { this.respondBuffered(body, scan, scan.usage); return; }
    // Rare: an upstream without usage. Count the prompt in the pool before answering.
    this.gw.deps.pool.countPrompt(this.route.model.tokenizer, this.body).then(
      (prompt) => this.respondBuffered(body, scan, { prompt_tokens: prompt, completion_tokens: 0, cached_tokens: 0 }, 'estimate'),
      () => this.respondBuffered(body, scan, { prompt_tokens: 0, completion_tokens: 0, cached_tokens: 0 }, 'estimate'),
    );
  }

  private respondBuffered(body: Buffer, scan: CompletionScan, usage: Usage, source: 'upstream' | 'estimate' = 'upstream'): void {
    if (this.followers) for (const f of this.followers) f.sendBuffered(body, scan, usage);
    if (this.cacheAs && source === 'upstream') this.store(body.toString('utf8'), usage);
    if (this.ex.aborted) return;
    const costs = this.costs(usage);
    const overhead = this.overheadMs(performance.now());
    const headers = [...this.routeHeaders(), ...figureHeaders(costs, overhead)];
    const out = spliceGateway(body, scan, this.gatewayJson(usage, costs, overhead));
    this.settle(200, null, usage, source, costs);
    // The response completes only once its ledger row (and charge) is committed.
    this.gw.deps.ledger.whenCommitted((err) => {
      if (err) this.ex.sendError(new GatewayError(Errors.internal, 'The ledger could not record this request; it was not charged. Retry shortly.'));
      else this.ex.send(200, 'application/json', out, headers);
    });
  }

  // ---- figures ---------------------------------------------------------------------------

  private routeHeaders(): HeaderList {
    // First attempts (nearly all requests) share one list per route; a retried request builds its own.
    let headers = this.retries ? undefined : routeHeaderCache.get(this.route);
    if (!headers) {
      headers = [['x-gateway-decision', this.route.decision], ['x-gateway-retries', String(this.retries)], ['x-gateway-cache', 'miss']];
      if (!this.retries) routeHeaderCache.set(this.route, headers);
    }
    if (this.outputCap) headers = [...headers, ['x-gateway-output-cap', String(this.outputCap)]];
    if (this.router) headers = [...headers, ['x-gateway-route-bucket', this.router.bucket], ['x-gateway-route-score', String(this.router.score)]];
    return this.admission ? [...headers, ...this.admission.headers] : headers;
  }

  /** Prompt tokens the rewrites removed: the benchmark prices the prompt as the caller sent it. */
  private get rewritten(): number {
    return (this.saved.chunk_dedupe ?? 0) + (this.saved.compression ?? 0);
  }

  private costs(usage: Usage): Costs {
    const prices = this.route.prices;
    return priceRequest(prices, this.gw.deps.baseline ?? prices, usage, this.gw.deps.markup, this.rewritten);
  }

  private overheadMs(now: number): number {
    // Rounded to the microsecond like every timing in the row (not float noise such as 1.5195079999996).
    const upstream = (this.tUpstreamEnd || now) - this.tDispatch;
    return Math.max(0, ms(this.t0 + upstream, now));
  }

  /** Tokens each mechanism saved: the rewrites, and the provider's prompt cache (cached tokens are billed at the cached price). */
  private savedTokens(usage: Usage | null): SavedTokens {
    const cached = usage?.cached_tokens ?? 0;
    return cached ? { ...this.saved, prompt_cache: cached } : this.saved;
  }

  private savedJson(usage: Usage | null): string {
    return this.rewritten || usage?.cached_tokens ? JSON.stringify(this.savedTokens(usage)) : '{}';
  }

  /** The `gateway` object, written directly (it is on every response; JSON.stringify of an object literal costs more). */
  private gatewayJson(usage: Usage | null, costs: Costs | null, overhead: number): string {
    const u = usage ? `{"prompt_tokens":${usage.prompt_tokens},"completion_tokens":${usage.completion_tokens},"cached_tokens":${usage.cached_tokens}}` : 'null';
    const c = costs ? `,"cost_usd":${costs.cost_usd},"benchmark_usd":${costs.benchmark_usd},"charge_usd":${costs.charge_usd},"saved_usd":${costs.saved_usd}` : '';
    const cap = this.outputCap ? `,"output_cap":${this.outputCap}` : '';
    return `{"request_id":"${this.ex.requestId}","served":${this.route.decisionJson},"cache":"miss","retries":${this.retries},"usage":${u},"saved_tokens":${this.savedJson(usage)}${cap}${c},"overhead_ms":${Math.round(overhead * 1000) / 1000}}`;
  }

  /** The streamed equivalent of the headers: an SSE comment before `[DONE]` (SDKs skip comments). */
  private gatewayComment(): Buffer {
    const usage = this.tap?.usage ?? null;
    return Buffer.from(`: gateway ${this.gatewayJson(usage, usage ? this.costs(usage) : null, this.overheadMs(performance.now()))}\n\n`);
  }

  // ---- settle ------------------------------------------------------------------------------

  /** The leader's client left while followers wait: its row says so, and charges nothing (the payer follower is charged). */
  private settleHandedOver(): void {
    if (this.settled) return;
    this.settled = true;
    this.gw.inFlight--;
    this.record(499, 'client_closed_request', performance.now(), null, 'none', null);
  }

  private settle(status: number, error: string | null, usage: Usage | null, source: 'upstream' | 'estimate' = 'upstream', known?: Costs): void {
    if (this.settled) return;
    this.settled = true;
    this.gw.inFlight--;
    const tDone = performance.now();
    if (usage) { this.record(status, error, tDone, usage, source, known ?? this.costs(usage)); return; }
    if (status !== 499 && !this.tap) { this.record(status, error, tDone, null, 'none', null); return; }
    // The stream was cut before the usage frame: the upstream still bills us, so estimate.
    // Each content event carries about one token; the role and finish events carry none.
    const completion = Math.max(0, (this.tap?.events ?? 0) - 2);
    const estimate = (prompt: number) => {
      const u = { prompt_tokens: prompt, completion_tokens: completion, cached_tokens: 0 };
      this.record(status, error, tDone, u, 'estimate', this.costs(u));
    };
    this.gw.deps.pool.countPrompt(this.route.model.tokenizer, this.body).then(estimate, () => estimate(0));
  }

  /** The ledger row, built in one literal (it is on every request), and the charge it carries. */
  private record(status: number, error: string | null, tDone: number, u: Usage | null, source: LedgerRow['usage_source'], c: Costs | null): void {
    const { workspaces, ledger, limits } = this.gw.deps;
    if (this.holdNano) workspaces.release(this.ws, this.holdNano);
    const chargeNano = c ? toNano(c.charge_usd) : 0;
    if (this.admission) limits.finish(this.key, this.admission, u ? u.prompt_tokens + u.completion_tokens : 0, chargeNano);
    ledger.append({
      id: this.ex.requestId, ts: Date.now(), kind: 'request', workspace: this.ws.id, key_id: this.key.id, endpoint: this.api === 'responses' ? 'responses' : 'chat.completions',
      requested_model: this.request.model, served: this.route.decision, router_bucket: this.router?.bucket ?? null, router_score: this.router?.score ?? null, cache: 'miss',
      stream: this.stream, prompt_tokens: u?.prompt_tokens ?? 0, cached_tokens: u?.cached_tokens ?? 0,
      completion_tokens: u?.completion_tokens ?? 0, usage_source: source, saved_tokens: this.savedTokens(u),
      cost_usd: c?.cost_usd ?? 0, benchmark_usd: c?.benchmark_usd ?? 0, charge_usd: c?.charge_usd ?? 0, saved_usd: c?.saved_usd ?? 0,
      ttfb_ms: this.tFirstByte ? ms(this.t0, this.tFirstByte) : null, total_ms: ms(this.t0, tDone),
      overhead_ms: this.overheadMs(tDone), status, retries: this.retries, error,
      delta_nano: this.ws.metered ? -chargeNano : 0, balance_nano: null, note: null,
    }, this.ws);
  }
}
