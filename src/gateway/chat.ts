// POST /v1/chat/completions, top to bottom: validate → plan (route) → dispatch →
// respond (buffered JSON, or SSE passed through byte for byte) → settle (costs, ledger row).
import type { KeyRecord } from '../accounts/keys.js';
import { ledgerRow, type Ledger, type LedgerRow, type RequestIds } from '../accounts/ledger.js';
import { priceRequest, savingsOf, upstreamCost, type Costs, type SavingsUsd, type Usage } from '../accounts/pricing.js';
import { routeAllowed, type Admission, type Limits, type Reservation } from '../accounts/limits.js';
import type { KeyLimits, KeyRing } from '../accounts/keys.js';
import { fromNano, toNano, type Workspace, type Workspaces } from '../accounts/workspaces.js';
import { Ticket } from './ticket.js';
import { IMAGE_BOUND, IMAGE_COUNTED, promptExtras } from './prompt-bound.js';
import type { ResponseIds } from './response-ids.js';
import { Errors, GatewayError, LimitError, asGatewayError } from '../errors.js';
import { upstreamError } from '../providers/upstream-error.js';
import type { ChatCall, ChatRequest, ResponseSink, UpstreamHandle } from '../providers/provider.js';
import type { Catalog, ModelRoutes, Route, RoutePolicy } from '../router/catalog.js';
import type { Config, ModelEntry, Prices } from '../config/schema.js';
import type { RouteHealth } from '../router/health.js';
import type { Client as Exchange, HeaderList } from '../wire/http.js';
import type { WorkerPool } from '../workers/pool.js';
import { ResponsesRequestSchema } from './responses.js';
import { ChatRequestSchema } from '../wire/chat.js';
import { parseBody, parseJson } from '../wire/body.js';
import { SseUsageTap, responseIdOf, scanCompletion, spliceGateway, type CompletionScan } from '../wire/sse-usage.js';
import { figureHeaders, fmtUsd, ms } from './fmt.js';
import { Served, type CacheKind } from './served.js';
import type { ResponseCache } from '../savings/cache.js';
import { isDeterministic, prefixHash, requestHash, splitLastTurn } from '../savings/canonical.js';
import { CACHES, M, NO_SWITCHES, maskOf, type RequestSwitches } from '../savings/mechanisms.js';
import type { SavedTokens } from '../wire/savings.js';

type SavingsConfig = Config['savings'];

export interface ChatDeps {
  catalog: Catalog;
  keys: KeyRing;
  /** Passthrough Responses ids per workspace (previous_response_id is only a workspace's own). */
  responseIds: ResponseIds;
  ledger: Ledger;
  workspaces: Workspaces;
  limits: Limits;
  health: RouteHealth;
  /** model `auto`: score thresholds and the model or alias of each bucket. */
  router: { mediumFrom: number; complexFrom: number; simple: string; medium: string; complex: string };
  /** Attempts after the first, each on the next eligible route, before any byte reaches the client. */
  maxRetries: number;
  /** A same-route retry waits at most this long (its Retry-After); longer, the caller gets the error. */
  maxRetryWaitMs: number;
  /** Output tokens assumed for the credit check when neither the request nor the model caps them. */
  defaultOutputCap: number;
  ids: RequestIds;
  pool: WorkerPool;
  markup: number;
  /** BASELINE_MODEL's prices; null = benchmark against the requested model's list price. */
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

/** What a refusal needs to know of a request, from the moment it arrives. */
interface Arrival {
  ex: Exchange;
  key: KeyRecord;
  t0: number;
  api: 'chat' | 'responses';
  /** The requested model ('' until the body is read). */
  model: string;
  ticket: Ticket;
}

/** One chat request between parsing and dispatch. */
interface Pending extends Arrival {
  router: RouterPick | null;
  /** Savings mechanisms on for this request, plus FORCE_CACHE. */
  bits: number;
  /** The request as the caller sent it, plus any output cap (the caches key on this). */
  original: ChatRequest;
  /** What is sent: the original, or with an output cap, dedupe and compression applied. */
  request: ChatRequest;
  body: Buffer;
  routes: readonly Route[];
  /** The key and the keys above it: their limits all apply. */
  chain: readonly KeyRecord[];
  ws: Workspace;
  outputCap: number;
  saved: SavedTokens;
  /** The exact cache's key when the worker pool already computed it (large bodies, with the rewrites). */
  hash: string | null;
  /** The prices of the naive direct call (BASELINE_MODEL, else the requested model's list price): never the served route's. */
  benchmark: Prices;
  /**
   * Prompt tokens the body's bytes do not show (prompt-bound.ts): images at their bound, a
   * previous response's conversation; `unsized`: content stored upstream, bounded only by the context window.
   */
  extra: { bytes: number; counted: number; previous: number; unsized: boolean };
}

/** `x-gateway-cache: on`: cache a sampled request too. */
const FORCE_CACHE = 128;

/** Upstream ids that take `max_completion_tokens` (OpenAI's reasoning families reject `max_tokens`). */
const COMPLETION_TOKENS_MODELS = /^(o\d|gpt-5)/;

export class ChatGateway {
  /** Admitted requests not yet settled (tickets holding): what /health shows and a graceful stop waits for. */
  inFlight = 0;
  readonly workspaces: Workspaces;
  readonly limits: Limits;
  /** Requests in flight that identical ones may join (in-flight dedupe), by workspace, hash and delivery. */
  private readonly flights = new Map<string, ChatExchange>();

  /** Output caps by model slug or alias (a Map: request model names never reach Object.prototype). */
  private readonly caps: Map<string, number>;
  /** The spliced `"max_tokens":N,` bytes, one per field and cap. */
  private readonly capMembers = new Map<string, Buffer>();

  /** `auto`'s benchmark without a baseline: the most capable bucket's model. */
  private readonly autoBenchmark: Prices;

  constructor(readonly deps: ChatDeps) {
    this.workspaces = deps.workspaces;
    this.limits = deps.limits;
    this.autoBenchmark = deps.catalog.resolve(deps.router.complex).model.prices;
    this.caps = new Map(Object.entries(deps.savings.config.output_cap.models));
  }

  /** `pin`: the x-gateway-provider header ('' when absent); the body's `provider` field wins. */
  handle(ex: Exchange, key: KeyRecord, body: Buffer, t0: number, pin = '', api: 'chat' | 'responses' = 'chat', sw: RequestSwitches = NO_SWITCHES): void {
    const arrival: Arrival = { ex, key, t0, api, model: '', ticket: new Ticket(this, key) };
    let request: ChatRequest;
    try {
      request = api === 'responses'
        ? { ...parseBody(ResponsesRequestSchema, parseJson(body)), messages: [] } as ChatRequest
        : parseBody(ChatRequestSchema, parseJson(body)) as ChatRequest;
    } catch (err) {
      this.refuse(arrival, err);
      return;
    }
    arrival.model = request.model;
    // Everything from here to the next pool step runs in this turn; a throw anywhere in it
    // (after admission too) refuses the request through its own ticket, releasing what it holds.
    try {
      const bits = api === 'chat' ? (this.deps.savings.enabled & ~sw.off & ~maskOf(key.limits?.savings_off)) | (sw.forceCache ? FORCE_CACHE : 0) : 0;
      if (api === 'responses') { this.plan(arrival, body, pin, request, null, 0); return; }
      if (request.model !== 'auto') { this.plan(arrival, body, pin, request, null, bits); return; }
      // The smart router: a score from the classifier in the pool picks the bucket's model.
      const r = this.deps.router;
      this.beforeAdmission(arrival, body.length, () => this.deps.pool.classify(body), (score) => {
        const bucket = score >= r.complexFrom ? 'complex' : score >= r.mediumFrom ? 'medium' : 'simple';
        this.plan(arrival, body, pin, request, { bucket, score, model: r[bucket] }, bits);
      });
    } catch (err) {
      this.refuse(arrival, err);
    }
  }

  /**
   * A worker-pool step of the request path: its result goes on to `next` unless the client
   * left meanwhile; a failure of the task, or a throw in `next`, refuses the request. Either
   * way the request's ticket (holds, counters, its row) is settled.
   */
  private after<T>(r: Arrival, task: Promise<T>, next: (value: T) => void): void {
    task.then((value) => {
      if (r.ex.aborted) { this.refuse(r, new GatewayError(Errors.clientClosed, 'The client closed the request.')); return; }
      try {
        next(value);
      } catch (err) {
        this.refuse(r, err);
      }
    }, (err: unknown) => this.refuse(r, err));
  }

  /**
   * Worker-pool work before admission (the classifier, the rewrites, an exact count): only
   * for a request the key's limits and the workspace's credits would still let in now, and
   * within the workspace's share of the pool, so no one makes the pool work for free or
   * queues every other tenant behind its bodies.
   */
  private beforeAdmission<T>(r: Arrival, bytes: number, task: () => Promise<T>, next: (value: T) => void): void {
    let release: (() => void) | null;
    try {
      this.deps.limits.precheck(this.deps.keys.chain(r.key));
      const ws = this.deps.workspaces.get(r.key.workspace);
      if (ws?.metered && this.deps.workspaces.availableNano(ws) <= 0) {
        throw new GatewayError(Errors.insufficientCredits, 'Insufficient credits: the workspace has none available. Top up.');
      }
      release = this.deps.pool.reserveFor(r.key.workspace, bytes);
      if (!release) {
        throw new LimitError('concurrency', 1, 'This workspace already has requests as large as the worker pool\'s share for one workspace being read; retry in 1s.',
          [['retry-after', '1'], ['x-gateway-limit-kind', 'concurrency']], { worker_bytes_per_workspace: this.deps.pool.bytesPerTenantLimit });
      }
    } catch (err) {
      this.refuse(r, err);
      return;
    }
    const done = release;
    this.after(r, task().finally(done), next);
  }

  private plan(arrival: Arrival, body: Buffer, pin: string, request: ChatRequest, router: RouterPick | null, bits: number): void {
    const { key, api } = arrival;
    let route: Route | undefined;
    let routes: readonly Route[] = [];
    let ws: Workspace | undefined;
    let chain: readonly KeyRecord[] = [];
    let entry: ModelRoutes | undefined;
    let prevTokens = 0;
    try {
      entry = this.deps.catalog.resolve(router?.model ?? request.model);
      routes = entry.policy ? this.ordered(entry.routes, entry.policy) : entry.routes;
      const pinned = typeof request.provider === 'string' ? request.provider : pin;
      if (pinned) {
        const all = routes;
        routes = all.filter((r) => r.provider.name === pinned);
        if (!routes.length) {
          throw new GatewayError(Errors.invalidRequest, `No route of '${request.model}' goes through provider '${pinned.slice(0, 64)}' (its routes: ${all.map((r) => r.provider.name).join(', ') || 'none'}).`, 'provider');
        }
      }
      if (api === 'responses') {
        routes = routes.filter((r) => r.provider.kind === 'openai'); // the Responses API passes through to OpenAI-kind upstreams only
        if (!routes.length) throw new GatewayError(Errors.invalidRequest, `No route of '${request.model}' speaks the Responses API.`, 'model');
      }
      // Only routes the key (and every key above it) may use: the first choice and every failover alike.
      chain = this.deps.keys.chain(key);
      for (const k of chain) {
        const limits = k.limits;
        if (!limits || k.kind === 'master' || k.kind === 'operator' || !(limits.models || limits.providers || limits.regions || limits.zdr_only)) continue;
        const all = routes;
        routes = all.filter((r) => routeAllowed(limits, r));
        if (!routes.length && all.length) {
          throw new GatewayError(Errors.modelNotAllowed, `${k === key ? 'This key' : `The key that minted this one (${k.id})`} may not use '${request.model}' on any of its routes (${describeConstraints(limits)}).`, 'model');
        }
      }
      route = routes[0];
      if (!route) throw new GatewayError(Errors.noRoute, `No enabled provider serves '${request.model}'. Set its provider key or enable sim.`, 'model');
      checkCapabilities(request, route.model);
      ws = this.deps.workspaces.get(key.workspace);
      if (!ws) throw new GatewayError(Errors.forbidden, `This key's workspace ${key.workspace} no longer exists.`);
      const previous = api === 'responses' ? request.previous_response_id : undefined;
      if (previous !== undefined && previous !== null) {
        if (typeof previous !== 'string') throw new GatewayError(Errors.invalidRequest, "Invalid 'previous_response_id': expected a string.", 'previous_response_id');
        prevTokens = this.deps.responseIds.tokensOf(ws.id, previous);
      }
    } catch (err) {
      this.refuse(arrival, err);
      return;
    }
    // The benchmark: BASELINE_MODEL, else the requested model at its catalog list price (an
    // alias: its first model; `auto`: the complex bucket's), so cheaper routing shows as saved.
    const benchmark = this.deps.baseline ?? (router ? this.autoBenchmark : entry!.model.prices);
    // A literal, not a spread of `arrival`: V8 gives a spread object of this size a
    // dictionary shape, and every stage after reads it (measured: ~20 µs per request).
    const found = promptExtras(request);
    const extra = { bytes: found.images * IMAGE_BOUND + prevTokens, counted: found.images * (IMAGE_BOUND - IMAGE_COUNTED) + prevTokens, previous: prevTokens, unsized: found.unsized };
    const p: Pending = { ex: arrival.ex, key, t0: arrival.t0, api, model: arrival.model, ticket: arrival.ticket,
      router, bits, original: request, request, body, routes, chain, ws, outputCap: 0, saved: {}, hash: null, benchmark, extra };
    this.shape(p, route);
    const cfg = this.deps.savings.config;
    if (!(bits & (M.compression | M.chunk_dedupe)) || body.length < cfg.rewrite_min_bytes || body.length > cfg.rewrite_max_bytes) { this.preflight(p, null); return; }
    // Chunk dedupe and compression, in the pool; the reply carries the prompt's exact token count.
    const c = cfg.compression;
    this.beforeAdmission(p, p.body.length, () => this.deps.pool.rewrite(route.model.tokenizer, p.body, bits & M.chunk_dedupe ? cfg.chunk_dedupe.min_chars : 0,
      bits & M.compression ? { budgetTokens: c.budget_tokens, keepLast: c.keep_last, staleMaxChars: c.stale_max_chars } : null,
      this.cacheable(p),
    ), (r) => {
      if (r.hash) p.hash = r.hash;
      if (r.body !== null) {
        p.body = Buffer.from(r.body);
        p.request = JSON.parse(r.body) as ChatRequest;
        if (r.savedChunk) p.saved.chunk_dedupe = r.savedChunk;
        if (r.savedCompression) p.saved.compression = r.savedCompression;
      }
      this.preflight(p, r.promptTokens);
    });
  }

  /**
   * A max_tokens for a request that sets none (spliced in; the body is not re-encoded): the
   * savings engine's output cap when it is on, else, for a model whose catalog entry has no
   * max output either, billing.default_output_cap, so that what is reserved for the output
   * is what the upstream may really generate.
   */
  private shape(p: Pending, route: Route): void {
    const req = p.request;
    if (askedCap(req, p.api) !== null) return;
    const savingsCap = p.bits & M.output_cap ? this.caps.get(req.model) ?? this.caps.get(route.slug) ?? this.deps.savings.config.output_cap.default : null;
    // Every route it may fail over to must be capped: by this, or by its model's own max output.
    const asked = savingsCap ?? (maxOutputOf(p.routes) !== null ? null : this.deps.defaultOutputCap);
    if (!asked) return;
    const cap = Math.min(asked, route.model.max_output_tokens ?? asked);
    // Only where the cap surely fits beside the prompt (a prompt has at most as many tokens as
    // the body has bytes): near the context window a cap could turn an answerable request
    // into a context_length_exceeded the caller never asked for.
    if (p.body.length + p.extra.bytes + cap > route.model.context_window) return;
    const field = p.api === 'responses' ? 'max_output_tokens' : COMPLETION_TOKENS_MODELS.test(route.upstreamModel) ? 'max_completion_tokens' : 'max_tokens';
    // Set on the parsed request itself (it is this call's own object): the caches then key on
    // the request with its cap, which is what the upstream answers.
    req[field] = cap;
    const key = `${field}:${cap}`;
    let member = this.capMembers.get(key);
    if (!member) this.capMembers.set(key, member = Buffer.from(`,"${field}":${cap}`));
    // Spliced as the body's last member: a body may already name the field (`"max_tokens":
    // null`, or twice), and JSON parsers take the last one, as the gateway's own parse did.
    const close = p.body.lastIndexOf(125); // '}' (the body parsed as an object)
    p.body = Buffer.concat([p.body.subarray(0, close), member, p.body.subarray(close)]);
    p.outputCap = cap;
  }

  /**
   * Context window, credits and the reservation, before anything leaves. Without I/O when
   * bounds allow: a prompt has at most as many tokens as the body has bytes, so only a body
   * near the context window, a balance too tight for the byte bound, or a large body under
   * a tpm limit (where the byte bound would reserve ~4× too much) pays for an exact count.
   */
  private preflight(p: Pending, knownTokens: number | null): void {
    const { request: req, ws, extra } = p;
    const route = p.routes[0]!;
    const window = route.model.context_window;
    // The output is bounded by the request's cap (or the one shape() set), else by the largest
    // max output among the models it may fail over to; with neither, only a context window bounds it.
    const cap = askedCap(req, p.api) ?? maxOutputOf(p.routes);
    const widest = p.routes.length === 1 ? window : Math.max(...p.routes.map((r) => r.model.context_window));
    const choices = typeof req.n === 'number' ? req.n : 1; // every choice may use the cap
    // Failover may land on the dearest route allowed.
    const prices = p.routes.length === 1 && route.prices.cache_write === undefined ? route.prices : dearest(p.routes);
    // Output: the cap, else what the window leaves beside the prompt as the upstream counts it.
    const outputFor = (prompt: number) => (cap ?? Math.max(0, widest - prompt)) * choices;
    const maxCharge = (prompt: number, output: number) => toNano(upstreamCost(prices, { prompt_tokens: prompt, completion_tokens: output, cached_tokens: 0 }) * (1 + this.deps.markup));
    const admit = (prompt: number, output: number, charge: number) => this.start(p, { tokens: prompt + output, nano: charge }, ws.metered ? charge : 0);
    const check = (counted: number) => {
      // The context check is the upstream's own arithmetic (an image at its usual count, not its bound): never refuse what it would take.
      const asked = askedCap(req, p.api) ?? 0; // as OpenAI: the prompt plus what max_tokens asks for
      const usual = counted + extra.previous;
      if (usual + asked > window) {
        this.refuse(p, new GatewayError(Errors.contextLength,
          `This model's context window is ${window} tokens; the messages use ${usual}${asked ? ` and max_tokens asks for ${asked} more` : ''}. Shorten the messages or lower max_tokens.`, 'messages'));
        return;
      }
      // Money and tpm take the bound: images at their ceiling; content stored upstream (a file id) as the whole window.
      const tokens = extra.unsized ? window : counted + extra.counted;
      const output = outputFor(usual);
      const needed = maxCharge(tokens, output);
      const available = this.deps.workspaces.availableNano(ws);
      if (ws.metered && available < needed) {
        this.refuse(p, new GatewayError(Errors.insufficientCredits,
          `Insufficient credits: this request may cost up to $${fmtUsd(fromNano(needed))} (${tokens} prompt tokens, up to ${output} output tokens) and the workspace has $${fmtUsd(fromNano(Math.max(0, available)))} available. Top up, or lower max_tokens.`));
        return;
      }
      admit(tokens, output, needed);
    };
    if (knownTokens !== null) { check(knownTokens); return; }
    const bound = extra.unsized ? window : p.body.length + extra.bytes;
    const exactForTpm = p.body.length > 4096 && p.chain.some((k) => k.limits?.tpm !== undefined);
    if (cap !== null && !exactForTpm && bound + cap <= window) {
      const output = cap * choices;
      const charge = maxCharge(bound, output);
      if (!ws.metered || this.deps.workspaces.availableNano(ws) >= charge) { admit(bound, output, charge); return; }
    }
    this.beforeAdmission(p, p.body.length, () => this.deps.pool.countPrompt(route.model.tokenizer, p.body), check);
  }

  /** An alias's routes in its policy's order: cheapest, fastest (latency EWMA; unmeasured first), or price × latency. */
  private ordered(routes: readonly Route[], policy: RoutePolicy): readonly Route[] {
    if (policy === 'cost') return routes;
    const latency = (r: Route) => this.deps.health.view(r.decision).latency_ewma_ms ?? 0;
    const price = (r: Route) => r.prices.input + r.prices.output;
    const score = policy === 'latency' ? latency : (r: Route) => price(r) * (1 + latency(r));
    return [...routes].sort((a, b) => score(a) - score(b));
  }

  /**
   * Admission (the limits of the key and the keys above it, reserving `reserve`; then the
   * credit hold), then the caches: an exact hit, a flight to join, a semantic hit; else upstream.
   */
  private start(p: Pending, reserve: Reservation, holdNano: number): void {
    let admission: Admission | null;
    try {
      admission = this.deps.limits.admit(p.chain, reserve);
    } catch (err) {
      this.refuse(p, err);
      return;
    }
    // From here the request holds a slot, counters and credits: every path releases them through the ticket.
    p.ticket.hold(p.ws, admission, holdNano);
    const { bits, original } = p;
    const cfg = this.deps.savings.config;
    const hash = this.cacheable(p) ? p.hash ?? requestHash(original) : null;
    if (!hash) {
      this.launch(p, null, null);
      return;
    }
    const cache = this.deps.savings.cache;
    if (bits & M.exact_cache) {
      const hit = cache.getExact(p.ws.id, hash);
      if (hit && allows(p.routes, hit.decision)) { this.served(p, 'exact').replay(hit); return; }
    }
    if (bits & M.dedupe && this.join(p, hash)) return;
    const turn = bits & M.semantic_cache ? splitLastTurn(original) : null;
    if (!turn || turn.text.length > cfg.semantic_cache.max_prompt_chars) { this.launch(p, hash, null); return; }
    // An embedding that fails only means no semantic lookup for this request.
    this.after(p, this.deps.pool.embed(turn.text).catch(() => null), (vec) => {
      if (!vec) { this.launch(p, hash, null); return; }
      const hit = cache.findSimilar(p.ws.id, turn.context, vec, turn.text, cfg.semantic_cache.threshold);
      if (hit && allows(p.routes, hit.decision)) { this.served(p, 'semantic', hit.similarity).replay(hit); return; }
      if (bits & M.dedupe && this.join(p, hash)) return;
      this.launch(p, hash, { vec, text: turn.text, context: turn.context });
    });
  }

  /** The caches and dedupe apply: on for this request, and deterministic (or opted in). */
  private cacheable(p: Pending): boolean {
    return (p.bits & CACHES) !== 0 && ((p.bits & FORCE_CACHE) !== 0 || this.deps.savings.config.exact_cache.nondeterministic || isDeterministic(p.original));
  }

  private served(p: Pending, kind: CacheKind, similarity: number | null = null): Served {
    const route = p.routes[0]!;
    return new Served(this.deps, p.ex, p.ticket, p.ws, p.original, p.t0, kind, route.decision, route.prices, p.benchmark, similarity);
  }

  private flightKey(p: Pending, hash: string): string {
    return `${p.ws.id}\n${hash}\n${p.original.stream === true ? (p.original.stream_options?.include_usage === true ? 'su' : 's') : 'j'}`;
  }

  /** Joins an identical request in flight (same workspace, same answer-determining body, same delivery). */
  private join(p: Pending, hash: string): boolean {
    const leader = this.flights.get(this.flightKey(p, hash));
    // Only a leader whose every possible route this request may use too (its key's constraints).
    if (!leader?.joinable() || !leader.routes.every((r) => p.routes.includes(r))) return false;
    leader.join(this.served(p, 'dedupe'));
    return true;
  }

  private launch(p: Pending, hash: string | null, semantic: SemanticKey | null): void {
    const exchange = new ChatExchange(this, p);
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

  /**
   * Refused before anything went upstream (or abandoned before it could): the holds are
   * released, and the error is sent once its row is committed (a refusal is a request too,
   * and is never missing from the ledger after a crash). The row says `cache: none`.
   */
  refuse(r: Arrival, err: unknown): void {
    const e = asGatewayError(err);
    if (!r.ticket.claimRow()) return; // another part of the path has answered it
    r.ticket.release(0, 0);
    this.deps.ledger.append(ledgerRow({
      id: r.ex.requestId, kind: 'request', workspace: r.key.workspace, key_id: r.key.id, endpoint: r.ex.endpoint,
      requested_model: r.model, cache: 'none', status: e.status, error: e.code, total_ms: ms(r.t0, performance.now()),
    }), undefined);
    this.deps.ledger.whenCommitted(() => r.ex.sendError(e));
  }

  /** A refusal from outside the chat path (the route's body could not be read, or bridged): the same row and ordering. */
  reject(ex: Exchange, key: KeyRecord, t0: number, err: unknown): void {
    this.refuse({ ex, key, t0, api: 'chat', model: '', ticket: new Ticket(this, key) }, err);
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

/**
 * A cached answer is served only if a route this request may use produced it: a key held to
 * some providers, regions or ZDR routes never sees another's answer from elsewhere.
 */
function allows(routes: readonly Route[], decision: string): boolean {
  for (const r of routes) if (r.decision === decision) return true;
  return false;
}

/**
 * The output cap the request itself sets, or null: the Responses API's max_output_tokens (its
 * upstream reads nothing else); for chat, the larger of max_tokens and max_completion_tokens
 * when both are sent (a compatible server may obey either).
 */
function askedCap(req: ChatRequest, api: 'chat' | 'responses'): number | null {
  if (api === 'responses') return typeof req.max_output_tokens === 'number' ? req.max_output_tokens : null;
  const a = typeof req.max_tokens === 'number' ? req.max_tokens : null;
  const b = typeof req.max_completion_tokens === 'number' ? req.max_completion_tokens : null;
  return a === null ? b : b === null ? a : Math.max(a, b);
}

/** The largest max output among the routes' models, or null when one of them lists none (only its context window bounds it). */
function maxOutputOf(routes: readonly Route[]): number | null {
  let most = 0;
  for (const r of routes) {
    const m = r.model.max_output_tokens;
    if (m === undefined) return null;
    if (m > most) most = m;
  }
  return most;
}

/**
 * The highest price of each kind among the routes: what a request may cost wherever failover
 * takes it (a prompt token at most its cache-write price, where the provider writes caches).
 */
function dearest(routes: readonly Route[]): Prices {
  let input = 0;
  let output = 0;
  for (const r of routes) { input = Math.max(input, r.prices.input, r.prices.cache_write ?? 0); output = Math.max(output, r.prices.output); }
  return { input, output };
}

/** A key's route constraints, for the 403 that names them. */
function describeConstraints(l: KeyLimits): string {
  const parts: string[] = [];
  if (l.models) parts.push(`models ${l.models.join(', ')}`);
  if (l.providers) parts.push(`providers ${l.providers.join(', ')}`);
  if (l.regions) parts.push(`regions ${l.regions.join(', ')}`);
  if (l.zdr_only) parts.push('zero-data-retention routes only');
  return `it allows ${parts.join('; ')}`;
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
 *
 * Its end always goes the same way: the row is recorded (the ticket's holds released with
 * what the request really used), and the last bytes reach the client only once that row is
 * committed, so an acknowledged answer is never missing from the ledger after a crash.
 */
class ChatExchange implements ResponseSink {
  private readonly stream: boolean;
  private readonly ex: Exchange;
  private readonly key: KeyRecord;
  private readonly ticket: Ticket;
  private readonly ws: Workspace;
  private readonly request: ChatRequest;
  private readonly body: Buffer;
  /** Every route this request may go to (failover included). */
  readonly routes: readonly Route[];
  private readonly t0: number;
  /** Set when the smart router picked the model. */
  private readonly router: RouterPick | null;
  private readonly api: 'chat' | 'responses';
  private readonly saved: SavedTokens;
  private readonly outputCap: number;
  private readonly bits: number;
  private readonly benchmark: Prices;
  private handle: UpstreamHandle | null = null;
  private tap: SseUsageTap | null = null;
  private chunks: Buffer[] = [];
  private status = 0;
  private tDispatch = 0;
  private tFirstByte = 0;
  private tUpstreamEnd = 0;
  /** Set once the request's end is decided (its row may still be counted in the pool). */
  private settling = false;
  /** Set once the call's outcome (an answer, a failure) has gone to every client of it, followers included. */
  private over = false;
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
  /** The upstream's SSE bytes: the cache assembles the answer from them, and billing counts them when no usage comes. */
  private sse: Buffer[] | null = null;
  /** Usage counted here (no usage frame came): the stream's closing figures carry it. */
  private counted: Usage | null = null;
  /** The leader's own client went away while followers still wait: the upstream call goes on for them. */
  private leaderGone = false;
  /** A passthrough Responses answer's id (a buffered body's; a stream's is the tap's). */
  private responseId: string | null = null;

  constructor(private readonly gw: ChatGateway, p: Pending) {
    this.ex = p.ex;
    this.key = p.key;
    this.ticket = p.ticket;
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
    this.benchmark = p.benchmark;
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
    f.via(this.route);
    if (this.tap) {
      // Already streaming: what the leader's client got so far, then live.
      f.startStream();
      for (const chunk of this.log ?? []) f.write(chunk === GATEWAY_MARK ? f.comment(this.finalUsage()) : chunk);
    }
  }

  /**
   * A follower's client went away. While the leader's client is there, nothing changes for
   * the call. Once it is gone, the payer's leaving hands the bill to the next follower; the
   * last one leaving cancels the call and owes what the upstream did so far (the billing
   * rule, counted like the leader's own), which this returns for it to record.
   */
  private followerGone(f: Served): Promise<{ usage: Usage; source: 'estimate' }> | null {
    const list = this.followers;
    if (!list) return null;
    const i = list.indexOf(f);
    if (i !== -1) list.splice(i, 1);
    if (!this.leaderGone) return null;
    if (f.payer && list[0]) { list[0].payer = true; return null; }
    if (list.length) return null;
    const answered = this.status === 200 && this.tFirstByte > 0;
    this.cancelUpstream();
    return f.payer ? this.countAnswer(answered).then((usage) => ({ usage, source: 'estimate' as const })) : null;
  }

  /** A shared stream broke after its headers went out: each follower ends with the same error event; a payer owes what streamed so far. */
  private breakFollowers(event: Buffer, err: GatewayError): void {
    if (!this.followers) return;
    const payer = this.leaderGone ? this.followers.find((f) => f.payer) : undefined;
    for (const f of this.followers) if (f !== payer) f.breakStream(event, err);
    if (payer) this.countAnswer(true).then((u) => payer.breakStream(event, err, u), () => payer.breakStream(event, err));
  }

  /** Leaves the flight: later identical requests start their own call (or hit the cache). */
  private land(): void {
    if (this.flightKey) { this.gw.land(this.flightKey, this); this.flightKey = null; }
  }

  /** Every client of this exchange gets the same failure (each with its own row, each sent once that row is committed). */
  private fail(err: GatewayError, code: string): void {
    this.over = true;
    this.land();
    this.settle(err.status, code, null, () => this.ex.sendError(err, this.routeHeaders()));
    if (this.followers) for (const f of this.followers) { f.via(this.route); f.fail(err); }
  }

  /** No route may take the request now: the last attempt's error (or 503), with Retry-After for when one may. */
  private noRoute(): void {
    const err = this.lastError ?? new GatewayError(Errors.noRoute, `Every route for '${this.request.model}' is unavailable (disabled or failing); retry shortly.`);
    if (!err.headers.some(([k]) => k === 'retry-after')) {
      const wait = this.gw.deps.health.waitMs(this.routes.map((r) => r.decision));
      err.retryAfter(wait ?? this.gw.deps.health.cooldownMs);
    }
    this.fail(err, this.lastError ? `upstream_${this.lastError.code}` : err.code);
  }

  /** Sends the request to the first untried route whose breaker admits it. */
  dispatch(): void {
    this.retryTimer = null;
    if (this.ex.aborted && !this.leaderGone) return;
    const health = this.gw.deps.health;
    const next = this.routes.find((r) => !this.tried.has(r) && health.admits(r.decision));
    if (!next) { this.noRoute(); return; }
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
    try {
      this.handle = next.provider.chat(call, this);
    } catch (err) {
      // An adapter that cannot even send the request (a bug): the attempt failed like any other.
      this.handle = null;
      this.onError(asGatewayError(err));
    }
  }

  /** Provider prompt caching: a key for the prompt's stable head (large prompts only; null = leave the request as it is). */
  private promptCacheKey(): string | null {
    const s = this.gw.deps.savings;
    if (!(this.bits & M.prompt_cache) || this.body.length < s.config.prompt_cache.min_body_bytes) return null;
    return prefixHash(this.ws.id, this.request);
  }

  private lastError: GatewayError | null = null;

  /**
   * A failure before any byte reached the client: counts against the route's breaker (an
   * upstream's Retry-After rests the route that long), and the request moves on after a
   * short jittered backoff while retries last: to the next untried route, or with none left
   * (`sameRoute`: the failure may pass, as a 5xx, a 429 or a refused connection can) to the
   * same route once its rest is over, if that is within max_retry_wait_ms. Returns false
   * when the caller must answer with the failure itself.
   */
  private failover(err: GatewayError, reason: string, sameRoute: boolean): boolean {
    const { health, maxRetries, maxRetryWaitMs } = this.gw.deps;
    health.failure(this.route.decision, reason, this.retryAfterMs);
    this.lastError = err;
    if (this.retries >= maxRetries || (this.ex.aborted && !this.leaderGone)) return false;
    // The next attempt goes to another route, so the wait is short: 5, 10, 20 ms … (± 50%).
    let wait = Math.min(1000, 5 * 2 ** this.retries) * (0.5 + Math.random());
    if (!this.routes.some((r) => !this.tried.has(r))) {
      const rest = health.waitMs([this.route.decision]);
      if (!sameRoute || rest === null) return false;
      wait = Math.max(wait, rest);
      if (wait > maxRetryWaitMs) return false;
      this.tried.delete(this.route);
    }
    this.retries++;
    this.handle = null;
    this.retryTimer = setTimeout(() => this.dispatch(), wait);
    return true;
  }

  // ---- respond -------------------------------------------------------------------------
  // The provider calls these; a throw in any of them (a bug) ends the request like an
  // upstream failure instead of escaping into the adapter.

  private retryAfterMs: number | null = null;

  onStart(status: number, contentType: string, retryAfterMs?: number | null): void {
    try {
      this.tFirstByte = performance.now();
      this.status = status;
      this.retryAfterMs = retryAfterMs ?? null;
      if (this.stream && status === 200 && contentType.includes('event-stream')) {
        this.gw.deps.health.success(this.route.decision, this.tFirstByte - this.tDispatch);
        this.tap = new SseUsageTap(this.request.stream_options?.include_usage === true, this.emit, () => GATEWAY_MARK, true);
        this.sse = [];
        this.ex.startStream(200, 'text/event-stream; charset=utf-8', this.routeHeaders(), () => {
          this.writable = true;
          this.handle?.resume();
        });
        if (this.followers) for (const f of this.followers) { f.via(this.route); f.startStream(); }
      }
    } catch (err) {
      this.fault(err);
    }
  }

  /** The tap's writer: each client's own comment at the mark; while others may join, the bytes are logged for them. */
  private readonly emit = (chunk: Buffer): boolean => {
    if (this.flightKey) (this.log ??= []).push(chunk);
    if (this.followers) for (const f of this.followers) f.write(chunk === GATEWAY_MARK ? f.comment(this.finalUsage()) : chunk);
    return this.ex.write(chunk === GATEWAY_MARK ? this.gatewayComment() : chunk);
  };

  onData(chunk: Buffer): boolean {
    try {
      if (!this.tap) {
        this.chunks.push(chunk);
        return true;
      }
      this.sse!.push(chunk);
      // Written at once, one corked write per upstream chunk. When uWS reports backpressure
      // the adapter pauses; nothing more is written until onWritable resumes it (writing on
      // into a backpressured uWS response can lose bytes, so the rule is strict).
      this.pending = chunk;
      if (this.leaderGone) this.pushPending();
      else this.ex.corked(this.pushPending);
      return this.writable || this.leaderGone;
    } catch (err) {
      this.fault(err);
      return true;
    }
  }

  // Bound once, not a closure per chunk.
  private pending: Buffer | null = null;
  private writable = true;
  private readonly pushPending = (): void => {
    this.writable = this.tap!.push(this.pending!);
    this.pending = null;
  };

  onEnd(): void {
    try {
      this.tUpstreamEnd = performance.now();
      this.land();
      if (!this.tap) { this.finishBuffered(); return; }
      const usage = this.tap.usage;
      if (usage) { this.endStream(usage, 'upstream'); return; }
      // No usage frame: the answer is counted before the stream's closing figures are written.
      this.countAnswer(true).then((u) => this.endStream(u, 'estimate'), (err: unknown) => this.fault(err));
    } catch (err) {
      this.fault(err);
    }
  }

  private endStream(usage: Usage, source: 'upstream' | 'estimate'): void {
    this.over = true;
    if (source === 'estimate') this.counted = usage;
    // The terminal event (held by the tap) and the figures go out once the row is committed:
    // a client that has them has the whole answer.
    // A leader whose client left is settled already (handed over): the tail still goes to its followers, once their rows are.
    if (this.settling) this.gw.deps.ledger.whenCommitted(this.finishStream);
    else this.settle(200, null, usage, this.finishStream, source);
    if (this.followers) for (const f of this.followers) f.end(usage, undefined, source);
    const sse = this.sse;
    this.sse = null;
    if (sse && this.cacheAs && source === 'upstream') {
      this.gw.deps.pool.assemble(Buffer.concat(sse)).then((json) => { if (json) this.store(json, usage); }, () => undefined);
    }
  }

  /**
   * The stream's last bytes: the figures and the held terminal event (or an unterminated
   * tail), to every follower, and to the leader's client in the same write as the end of
   * the response (one corked syscall). Bound once, not a closure per request.
   */
  private readonly finishStream = (): void => {
    const tap = this.tap!;
    const tail = tap.flushTail();
    const own: Buffer[] = [];
    const out = (chunk: Buffer) => {
      if (this.followers) for (const f of this.followers) f.write(chunk === GATEWAY_MARK ? f.comment(this.finalUsage()) : chunk);
      own.push(chunk === GATEWAY_MARK ? this.gatewayComment() : chunk);
    };
    if (tap.sawDone) out(GATEWAY_MARK); // the figures go before the held [DONE]
    if (tail) out(tail);
    if (!tap.sawDone) out(GATEWAY_MARK);
    this.ex.end(own.length === 1 ? own[0]! : Buffer.concat(own));
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
    try {
      this.tUpstreamEnd = performance.now();
      // (`settling` is not enough: a leader whose client left is settled early, and its followers still wait for this outcome.)
      if (this.over || (this.ex.aborted && !this.leaderGone)) return;
      if (this.tap) {
        // Headers are gone: the stream ends with an error event, never a silent truncation.
        this.over = true;
        this.land();
        this.gw.deps.health.failure(this.route.decision, `stream_broken_${err.code}`);
        const event = Buffer.from(`data: ${JSON.stringify(err.toJSON())}\n\n`);
        this.settle(err.status, err.code, this.tap.usage, () => this.ex.end(event));
        this.breakFollowers(event, err);
        return;
      }
      // A 4xx is the caller's, on any route; a timeout is not tried again on the same route.
      if (err.status >= 500 && this.failover(err, err.code, err.code !== Errors.upstreamTimeout.code)) return;
      this.fail(err, err.code);
    } catch (e) {
      this.fault(e);
    }
  }

  /**
   * A bug in the gateway's own handling of this answer: the upstream call stops and the
   * request ends as an internal error, its holds released and its row written.
   */
  private fault(err: unknown): void {
    const e = asGatewayError(err);
    this.cancelUpstream();
    if (this.over) return;
    this.over = true;
    if (this.tap) {
      const event = Buffer.from(`data: ${JSON.stringify(e.toJSON())}\n\n`);
      this.settle(e.status, e.code, null, () => this.ex.end(event));
      this.breakFollowers(event, e);
      return;
    }
    this.fail(e, e.code);
  }

  private clientAborted(): void {
    if (this.followers?.length) {
      // Others wait for this answer: the call goes on for them, and the first of them pays for it.
      this.leaderGone = true;
      this.followers[0]!.payer = true;
      this.settleHandedOver();
      return;
    }
    const dispatched = this.handle !== null;
    this.over = true;
    this.cancelUpstream();
    if (!this.tUpstreamEnd) this.tUpstreamEnd = performance.now();
    this.settle(499, 'client_closed_request', this.tap?.usage ?? null, undefined, 'upstream', undefined, dispatched);
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
      // Every upstream error reaches the caller in OpenAI's envelope (upstream-error.ts), a
      // 429 or 5xx only once no retry is left; a 4xx about the request is the caller's, from any route.
      const err = upstreamError(this.status, body, this.route.decision, this.retryAfterMs);
      if ((this.status >= 500 || this.status === 429) && this.failover(err, `http_${this.status}`, true)) return;
      if (this.status < 500 && this.status !== 429) this.gw.deps.health.success(this.route.decision, this.tUpstreamEnd - this.tDispatch);
      this.fail(err, `upstream_${this.status}`);
      return;
    }
    this.gw.deps.health.success(this.route.decision, this.tUpstreamEnd - this.tDispatch);
    const scan = scanCompletion(body);
    if (!scan.isObject) {
      this.fail(new GatewayError(Errors.upstreamError, `Upstream ${this.route.decision} sent a body that is not a JSON object.`), 'upstream_bad_body');
      return;
    }
    if (scan.usage) { this.respondBuffered(body, scan, scan.usage); return; }
    // Rare: an upstream without usage. The prompt and the answer are counted in the pool before answering.
    this.chunks = [body];
    this.countAnswer(true).then((u) => this.respondBuffered(body, scan, u, 'estimate'), (err: unknown) => this.fault(err));
  }

  /**
   * What the upstream will bill when it did not say: the prompt as sent, counted, and (when
   * `answered`) the text it generated as far as it reached the gateway, counted.
   */
  private countAnswer(answered: boolean): Promise<Usage> {
    const parts = this.tap ? this.sse ?? [] : this.chunks;
    const answer = answered ? (parts.length === 1 ? parts[0]! : Buffer.concat(parts)) : EMPTY;
    return this.gw.deps.pool.countAnswer(this.route.model.tokenizer, this.body, answer, this.tap !== null)
      .then((c) => ({ prompt_tokens: c.prompt, completion_tokens: c.completion, cached_tokens: 0 }));
  }

  private respondBuffered(body: Buffer, scan: CompletionScan, usage: Usage, source: 'upstream' | 'estimate' = 'upstream'): void {
    this.over = true;
    if (this.api === 'responses') this.responseId = responseIdOf(body);
    if (this.followers) for (const f of this.followers) { f.via(this.route); f.sendBuffered(body, scan, usage, source); }
    if (this.cacheAs && source === 'upstream') this.store(body.toString('utf8'), usage);
    const costs = this.costs(usage);
    const overhead = this.overheadMs(performance.now());
    const headers = [...this.routeHeaders(), ...figureHeaders(costs, overhead)];
    const out = spliceGateway(body, scan, this.gatewayJson(usage, costs, overhead));
    // The response completes only once its ledger row (and charge) is committed.
    this.settle(200, null, usage, (err) => {
      if (err) this.ex.sendError(new GatewayError(Errors.internal, 'The ledger could not record this request; it was not charged. Retry shortly.'));
      else this.ex.send(200, 'application/json', out, headers);
    }, source, costs);
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
    const limit = this.ticket.limitHeaders;
    return limit.length ? [...headers, ...limit] : headers;
  }

  /** Prompt tokens the rewrites removed: the benchmark prices the prompt as the caller sent it. */
  private get rewritten(): number {
    return (this.saved.chunk_dedupe ?? 0) + (this.saved.compression ?? 0);
  }

  private costs(usage: Usage): Costs {
    return priceRequest(this.route.prices, this.benchmark, usage, this.gw.deps.markup, this.rewritten);
  }

  /** The saving in dollars by where it came from: routing, the prompt cache, the rewrites (kept for the usage it was computed for: the figures and the row ask twice). */
  private savings(usage: Usage | null): SavingsUsd {
    if (!usage) return NO_SAVINGS;
    if (this.savingsMemo?.usage !== usage) this.savingsMemo = { usage, by: savingsOf(this.route.prices, this.benchmark, usage, this.saved) };
    return this.savingsMemo.by;
  }

  private savingsMemo: { usage: Usage; by: SavingsUsd } | null = null;

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
    const by = this.savings(usage);
    const savings = by.routing === undefined && by.prompt_cache === undefined && by.compression === undefined && by.chunk_dedupe === undefined ? '{}' : JSON.stringify(by);
    return `{"request_id":"${this.ex.requestId}","served":${this.route.decisionJson},"cache":"miss","retries":${this.retries},"usage":${u},"saved_tokens":${this.savedJson(usage)},"savings_usd":${savings}${cap}${c},"overhead_ms":${Math.round(overhead * 1000) / 1000}}`;
  }

  /** Usage as far as it is known: the upstream's frame, or what was counted without one. */
  private finalUsage(): Usage | null {
    return this.tap?.usage ?? this.counted;
  }

  /** The streamed equivalent of the headers: an SSE comment before `[DONE]` (SDKs skip comments). */
  private gatewayComment(): Buffer {
    const usage = this.finalUsage();
    return Buffer.from(`: gateway ${this.gatewayJson(usage, usage ? this.costs(usage) : null, this.overheadMs(performance.now()))}\n\n`);
  }

  // ---- settle ------------------------------------------------------------------------------

  /** The leader's client left while followers wait: its row says so, and charges nothing (the payer follower is charged). */
  private settleHandedOver(): void {
    if (this.settling) return;
    this.settling = true;
    this.record(499, 'client_closed_request', performance.now(), null, 'none', null);
  }

  /**
   * The request's end: its row, then `done` once the row is committed (the client's last
   * bytes go there). Without usage from the upstream, billing follows one rule (README,
   * "Billing"): the upstream had the request and answered, fully or in part, or the client
   * left while it was working on it → the prompt as sent and the text received so far are
   * counted; the upstream never answered (it failed, or timed out) → nothing is billed.
   * `processed`: the upstream had the request when the client left.
   */
  private settle(status: number, error: string | null, usage: Usage | null, done?: (err: unknown) => void, source: 'upstream' | 'estimate' = 'upstream', known?: Costs, processed = false): void {
    if (this.settling) return;
    this.settling = true;
    const tDone = performance.now();
    const after = () => { if (done) this.gw.deps.ledger.whenCommitted(done); };
    if (usage) { this.record(status, error, tDone, usage, source, known ?? this.costs(usage)); after(); return; }
    const answered = this.status === 200 && this.tFirstByte > 0;
    if (!answered && !processed) { this.record(status, error, tDone, null, 'none', null); after(); return; }
    this.countAnswer(answered).then(
      (u) => this.record(status, error, tDone, u, 'estimate', this.costs(u)),
      () => this.record(status, error, tDone, null, 'none', null),
    ).then(after, after);
  }

  /** The ledger row, built in one literal (it is on every request), and the charge it carries. */
  private record(status: number, error: string | null, tDone: number, u: Usage | null, source: LedgerRow['usage_source'], c: Costs | null): void {
    if (!this.ticket.claimRow()) return;
    const responseId = this.responseId ?? this.tap?.responseId ?? null;
    if (responseId && status === 200) this.gw.deps.responseIds.remember(this.ws.id, responseId, u ? u.prompt_tokens + u.completion_tokens : 0);
    const chargeNano = c ? toNano(c.charge_usd) : 0;
    this.ticket.release(u ? u.prompt_tokens + u.completion_tokens : 0, chargeNano);
    this.gw.deps.ledger.append({
      id: this.ex.requestId, ts: Date.now(), kind: 'request', workspace: this.ws.id, key_id: this.key.id, endpoint: this.ex.endpoint,
      requested_model: this.request.model, served: this.route.decision, router_bucket: this.router?.bucket ?? null, router_score: this.router?.score ?? null, cache: 'miss',
      stream: this.stream, prompt_tokens: u?.prompt_tokens ?? 0, cached_tokens: u?.cached_tokens ?? 0, cache_write_tokens: u?.cache_write_tokens ?? 0,
      completion_tokens: u?.completion_tokens ?? 0, usage_source: source, saved_tokens: this.savedTokens(u), savings_usd: this.savings(u),
      cost_usd: c?.cost_usd ?? 0, benchmark_usd: c?.benchmark_usd ?? 0, charge_usd: c?.charge_usd ?? 0, saved_usd: c?.saved_usd ?? 0,
      ttfb_ms: this.tFirstByte ? ms(this.t0, this.tFirstByte) : null, total_ms: ms(this.t0, tDone),
      overhead_ms: this.overheadMs(tDone), status, retries: this.retries, error,
      delta_nano: this.ws.metered ? -chargeNano : 0, balance_nano: null, note: null,
    }, this.ws);
  }
}

const EMPTY = Buffer.alloc(0);
const NO_SAVINGS: SavingsUsd = {};
