// The uWebSockets.js front end: routes, auth, and the hand-off to the gateway. Everything
// the handlers need from the request (headers, params) is read synchronously, as uWS
// invalidates `req` when the handler returns.
import { timingSafeEqual } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { sha256 } from '../digest.js';
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp } from 'uWebSockets.js';
import { Scope, type KeyRecord, type KeyRing } from '../accounts/keys.js';
import type { RequestIds } from '../accounts/ledger.js';
import { Errors, GatewayError } from '../errors.js';
import type { ChatGateway } from '../gateway/chat.js';
import { CHAT, COMPLETIONS, EMBEDDINGS, IMAGES, MESSAGES, MODERATIONS, RESPONSES, SPEECH, TRANSCRIPTIONS, TRANSLATIONS, withoutMessages } from '../gateway/endpoints.js';
import { ResponsesBridge, readResponsesRequest, toChatBody } from '../gateway/responses.js';
import { CompletionsBridge, completionsToChat } from '../gateway/completions.js';
import { MessagesBridge, messagesToChat } from '../gateway/messages.js';
import { ANTHROPIC_BETA } from '../providers/anthropic.js';
import { RouteSelector, constraintsOf, modelAllowed, passesThrough } from '../router/select.js';
import { speaksResponses } from '../providers/provider.js';
import type { ChatRequest } from '../wire/chat.js';
import { CountTokensRequestSchema, MessagesRequestSchema } from '../wire/messages.js';
import { ENDPOINT_OF } from '../gateway/stages/route.js';
import { parseBody, parseJson } from '../wire/body.js';
import { CompletionsRequestSchema } from '../wire/completions.js';
import { OpenAIProvider } from '../providers/openai.js';
import { upstreamError } from '../providers/upstream-error.js';
import type { Catalog } from '../router/catalog.js';
import { registerAccount, type AccountDeps } from './account.js';
import { registerAdmin, type AdminDeps } from './admin.js';
import { registerPricing, type PricingDeps } from './pricing.js';
import { registerUsage, type UsageDeps } from './usage.js';
import { registerRouter, type RouterDeps } from './router.js';
import { Exchange, useEdge } from './exchange.js';
import { Edge, type EdgeConfig } from './edge.js';
import { makeHandlers, requireScope, type Handlers } from './handlers.js';
import { audioUpload } from './audio-upload.js';
import { deploymentViews } from '../router/health.js';
import { readSwitches, type RequestSwitches } from '../savings/mechanisms.js';
import { ALL_WORKSPACES } from '../accounts/usage.js';
import type { Metrics } from '../ops/metrics.js';
import { openApiDocument, recordRoutes, type RecordedRoute } from './openapi.js';
import type { Asset } from '../ops/web.js';
import { modelListBody, modelView } from './models.js';

export interface ServerDeps extends AdminDeps, AccountDeps, UsageDeps, PricingDeps, RouterDeps {
  /** Cluster mode: Redis's connection state and the ledger rows not yet shipped to Postgres (null on one node). */
  cluster?: (() => { redis: string; outbox: number }) | null;
  /** null when metrics are turned off. */
  metrics: Metrics | null;
  /** Requests being answered now (every event-loop thread's: /health). */
  inFlight: () => number;
  web: Map<string, Asset>;
  version: string;
  keys: KeyRing;
  ids: RequestIds;
  catalog: Catalog;
  chat: ChatGateway;
  maxBodyBytes: number;
  /** Who may read /metrics and /v1/stats (see config `metrics`, `stats`). */
  exposure: { metricsToken: string | null; metricsPublic: boolean; metricsHost: string; metricsPort: number | null; publicStats: boolean };
  /** Proxies in front that append to X-Forwarded-For (0: the socket's peer is the client). */
  trustProxyHops: number;
  /** CORS origins and response compression (edge.ts). */
  edge: EdgeConfig;
  providers: string[];
  /** Where uploads spill to disk (emptied at start). */
  spoolDir: string;
  /** Traces are exported: the caller's `traceparent` is read, for its trace to hold the request's. */
  traced: boolean;
}

export interface Server {
  readonly port: number;
  /** The metrics listener's port, when metrics have one of their own. */
  readonly metricsPort: number | null;
  /** Stop accepting connections; in-flight requests go on. */
  stopListening(): void;
  /** Stop taking what the event-loop threads hand over (once they are drained). */
  closeHandover(): void;
  /** Leave the port to the event-loop threads (threads_main_http: false); what they hand over still comes in. */
  leavePort(): void;
  draining: boolean;
}

/** POST /v1/chat/completions (every event-loop thread serves it: thread-app.ts). */
export function chatRoute(handlers: Handlers, chat: ChatGateway): (res: HttpResponse, req: HttpRequest) => void {
  return handlers.inference((ex, key, body, t0, _p, [pin, savings, cache, router]) => chat.handle(ex, key, body, t0, pin ?? '', CHAT,
    readSwitches(savings, cache, router)), (ex, key, t0, err) => chat.reject(ex, key, t0, err), ['x-gateway-provider', 'x-gateway-savings', 'x-gateway-cache', 'x-gateway-router']);
}

/**
 * `threads` (SLUICE_THREADS > 1): the port is bound shared with the event-loop threads, and
 * the app also listens on the private socket they hand requests over on.
 */
export function startServer(deps: ServerDeps, host: string, port: number, threads: { socketPath: string } | null = null): Promise<Server> {
  const routes: RecordedRoute[] = [];
  const edge = new Edge(deps.edge);
  useEdge(edge);
  const app: TemplatedApp = recordRoutes(edge.install(uWS.App()), routes);
  const started = Date.now();
  const modelList = modelListBody(deps.catalog, deps.chat.deps.router);
  const state = { draining: false };

  const handlers = makeHandlers(deps, state);
  const refuseChat = (ex: Exchange, key: KeyRecord, t0: number, err: unknown) => deps.chat.reject(ex, key, t0, err);
  const { noBody } = handlers;

  // 503 while the ledger's commits fail (a full disk): requests would be answered with errors.
  app.get('/health', noBody(null, (ex) => { const failing = deps.ledger.failing; ex.sendJson(failing ? 503 : 200, {
    status: state.draining ? 'draining' : failing ? 'failing' : 'ok', uptime_s: Math.round((Date.now() - started) / 1000),
    providers: deps.providers, in_flight: deps.inFlight(),
    ledger: failing ? 'failing' : 'ok',
    // The embedding model loads in the workers at start; until then semantic lookups are skipped.
    semantic_cache: deps.chat.deps.pool.embeddings,
    ...(deps.cluster ? { cluster: deps.cluster() } : {}),
  }); }));

  app.get('/v1/models', noBody(null, (ex) => ex.send(200, 'application/json', modelList, null)));
  app.get('/v1/models/:provider/:model', noBody(null, (ex, _k, [provider, model]) => {
    const entry = deps.catalog.find(`${provider}/${model}`);
    if (!entry) throw new GatewayError(Errors.modelNotFound, `The model '${provider}/${model}' does not exist.`, 'model');
    ex.sendJson(200, modelView(entry));
  }));
  // The SDKs' models.retrieve sends the slug percent-encoded as one segment (`openai%2Fgpt-4.1-mini`);
  // bare ids, aliases and `auto` are found as chat finds them, and answered as the list shows them.
  const listed = new Map((JSON.parse(modelList.toString('utf8')) as { data: Array<{ id: string }> }).data.map((m) => [m.id, m]));
  app.get('/v1/models/:model', noBody(null, (ex, _k, [raw]) => {
    let id: string;
    try { id = decodeURIComponent(raw ?? ''); } catch { throw new GatewayError(Errors.invalidRequest, 'The model id is not a valid percent-encoded string.', 'model'); }
    const entry = listed.get(id) ?? (id.length <= 256 ? deps.catalog.find(id) : undefined);
    if (!entry) throw new GatewayError(Errors.modelNotFound, `The model '${id.slice(0, 256)}' does not exist. GET /v1/models lists the models.`, 'model');
    if ('routes' in entry && 'model' in entry) ex.sendJson(200, modelView(entry as Parameters<typeof modelView>[0]));
    else ex.sendJson(200, entry);
  }));

  app.post('/v1/chat/completions', chatRoute(handlers, deps.chat));

  // Responses API: an OpenAI-kind route takes the caller's bytes as they are; other routes are
  // bridged onto the chat path. Routing, limits, credits, ledger and failover apply either way.
  app.post('/v1/responses', handlers.inference((ex, key, body, t0, _p, [pin, savings, cache, router]) => {
    const request = readResponsesRequest(body);
    const sw = readSwitches(savings, cache, router);
    const ids = deps.chat.deps.responseIds;
    const prev = request.previous_response_id;
    if (typeof prev === 'string' && ids.shared && !ids.find(key.workspace, prev)) {
      // Cluster mode: a conversation another replica stored, read from Postgres first.
      ids.fetched(key.workspace, prev).then(() => responses(ex, key, body, t0, pin, sw, request)).catch((err: unknown) => refuseChat(ex, key, t0, err));
      return;
    }
    responses(ex, key, body, t0, pin, sw, request);
  }, refuseChat, ['x-gateway-provider', 'x-gateway-savings', 'x-gateway-cache', 'x-gateway-router'], 'responses'));

  function responses(ex: Exchange, key: KeyRecord, body: Buffer, t0: number, pin: string | undefined, sw: RequestSwitches, request: ReturnType<typeof readResponsesRequest>): void {
    const bridge = new ResponsesBridge(ex, request.model, { previous_response_id: request.previous_response_id ?? null, store: request.store !== false, instructions: request.instructions ?? null });
    const routes = deps.catalog.find(request.model)?.routes ?? [];
    const pinned = request.provider ?? pin ?? '';
    if (passesThrough(routes, deps.keys.chain(key), pinned, speaksResponses)) {
      bridge.passthrough = true;
      // Read once: the pipeline takes the request as parsed here.
      deps.chat.handle(bridge, key, body, t0, pin ?? '', RESPONSES, sw, withoutMessages(request));
      return;
    }
    // Bridged: the gateway keeps the conversation (unless store: false), so a later request can continue it on any route.
    let previous: Array<Record<string, unknown>> = [];
    if (request.previous_response_id != null) {
      const prev = deps.chat.deps.responseIds.previous(key.workspace, request.previous_response_id);
      if (!prev.conversation) {
        throw new GatewayError(Errors.invalidRequest, `Previous response '${request.previous_response_id.slice(0, 80)}' is kept by the upstream that made it (${prev.provider ?? 'an OpenAI-kind route'}), which alone can continue it; '${request.model}' has no route there.`, 'previous_response_id');
      }
      previous = prev.conversation;
    }
    const { body: chatBody, turns } = toChatBody(request, previous);
    if (request.store !== false) {
      bridge.onComplete = (response, assistant) => {
        const usage = response.usage as { total_tokens?: number } | null;
        return deps.chat.deps.responseIds.keep(key.workspace, String(response.id), usage?.total_tokens ?? 0, [...previous, ...turns, assistant], response);
      };
    }
    // The chat body carries no pin field: the pin (the body's, else the header's) goes along as the header's would.
    deps.chat.handle(bridge, key, chatBody, t0, pinned, CHAT, sw);
  }

  app.post('/v1/embeddings', handlers.inference((ex, key, body, t0, _p, [pin, savings, cache]) => deps.chat.handle(ex, key, body, t0, pin ?? '', EMBEDDINGS,
    readSwitches(savings, cache)), refuseChat, ['x-gateway-provider', 'x-gateway-savings', 'x-gateway-cache'], 'embeddings'));

  app.post('/v1/images/generations', handlers.inference((ex, key, body, t0, _p, [pin]) => deps.chat.handle(ex, key, body, t0, pin ?? '', IMAGES),
    refuseChat, ['x-gateway-provider'], 'images'));
  app.post('/v1/audio/speech', handlers.inference((ex, key, body, t0, _p, [pin]) => deps.chat.handle(ex, key, body, t0, pin ?? '', SPEECH),
    refuseChat, ['x-gateway-provider'], 'audio.speech'));
  // Speech to text: the upload is read as it arrives (audio-upload.ts), up to http.max_audio_bytes.
  const uploads = { chat: deps.chat, maxBytes: deps.edge.maxAudioBytes, spoolDir: deps.spoolDir, refuse: refuseChat };
  app.post('/v1/audio/transcriptions', handlers.upload(audioUpload(uploads, TRANSCRIPTIONS), refuseChat, ['x-gateway-provider', 'content-type'], 'audio.transcriptions'));
  app.post('/v1/audio/translations', handlers.upload(audioUpload(uploads, TRANSLATIONS), refuseChat, ['x-gateway-provider', 'content-type'], 'audio.translations'));
  app.post('/v1/moderations', handlers.inference((ex, key, body, t0, _p, [pin, savings, cache]) => deps.chat.handle(ex, key, body, t0, pin ?? '', MODERATIONS,
    readSwitches(savings, cache)), refuseChat, ['x-gateway-provider', 'x-gateway-savings', 'x-gateway-cache'], 'moderations'));

  // A stored response: the gateway's own (bridged), or the upstream's that made it (passthrough), relayed.
  const storedResponse = (method: 'GET' | 'DELETE') => noBody('inference', (ex, key, [id]) => {
    const ids = deps.chat.deps.responseIds;
    // (cluster mode: one another replica stored, read from Postgres first)
    if (ids.shared && !ids.find(key!.workspace, id ?? '')) {
      ids.fetched(key!.workspace, id ?? '').then(() => stored(ex, key!, id, method)).catch((err: unknown) => ex.sendError(err));
      return;
    }
    stored(ex, key!, id, method);
  });
  function stored(ex: Exchange, key: KeyRecord, id: string | undefined, method: 'GET' | 'DELETE'): void {
    const ws = key.workspace;
    const found = deps.chat.deps.responseIds.find(ws, id ?? '');
    if (!found) throw new GatewayError(Errors.notFound, `Response with id '${(id ?? '').slice(0, 80)}' not found.`);
    if (method === 'DELETE') deps.chat.deps.responseIds.mustForget();
    if (found.response) {
      if (method === 'DELETE') deleted(ex, deps.chat.deps.responseIds.forget(ws, id!), () => ex.sendJson(200, { id, object: 'response', deleted: true }), false);
      else ex.sendJson(200, found.response);
      return;
    }
    const provider = found.provider ? deps.catalog.provider(found.provider) : undefined;
    if (!(provider instanceof OpenAIProvider)) throw new GatewayError(Errors.notFound, `Response with id '${id!.slice(0, 80)}' is held by provider '${found.provider ?? 'unknown'}', which this gateway no longer serves.`);
    relayStored(ex, provider, method, id!, (answer) => { if (method === 'DELETE') deleted(ex, deps.chat.deps.responseIds.forget(ws, id!), answer, true); else answer(); });
  }
  app.get('/v1/responses/:id', storedResponse('GET'));
  app.del('/v1/responses/:id', storedResponse('DELETE'));

  // Legacy completions: a completion model takes the request as it is; a chat model (or `auto`)
  // gets it bridged onto the chat path, its answer turned back into text_completion objects.
  app.post('/v1/completions', handlers.inference((ex, key, body, t0, _p, [pin, savings, cache]) => {
    const request = parseBody(CompletionsRequestSchema, parseJson(body));
    const sw = readSwitches(savings, cache);
    const type = deps.catalog.find(request.model)?.model.type ?? 'chat';
    if (type === 'completion') { deps.chat.handle(ex, key, body, t0, pin ?? '', COMPLETIONS, sw, withoutMessages(request)); return; }
    if (type !== 'chat') throw new GatewayError(Errors.invalidRequest, `'${request.model}' is ${/^[aeiou]/.test(type) ? 'an' : 'a'} ${type} model: it is served on ${ENDPOINT_OF[type]}, not on /v1/completions.`, 'model');
    deps.chat.handle(new CompletionsBridge(ex), key, completionsToChat(request), t0, pin ?? '', CHAT, sw);
  }, refuseChat, ['x-gateway-provider', 'x-gateway-savings', 'x-gateway-cache'], 'completions'));

  // Anthropic's Messages API (errors in its envelope; `x-api-key` is read like Authorization):
  // onto the chat path, so any route serves it; the answer goes back as Anthropic's.
  app.post('/v1/messages', handlers.inference((ex, key, body, t0, _p, [pin, savings, cache, betas]) => {
    const request = parseBody(MessagesRequestSchema, parseJson(body));
    const sw = readSwitches(savings, cache);
    // An Anthropic route takes the caller's bytes as they are (thinking, cache_control, documents…);
    // a model with none the key may use is bridged onto the chat path.
    const routes = deps.catalog.find(request.model)?.routes ?? [];
    const pinned = request.provider ?? pin ?? '';
    if (passesThrough(routes, deps.keys.chain(key), pinned, (p) => p.kind === 'anthropic')) {
      // The caller's anthropic-beta features go along (not a member of the body: nothing hashes or counts it).
      if (betas) Object.defineProperty(request, ANTHROPIC_BETA, { value: betas.slice(0, 1024), enumerable: false });
      deps.chat.handle(ex, key, body, t0, pin ?? '', MESSAGES, sw, request as unknown as ChatRequest);
      return;
    }
    deps.chat.handle(new MessagesBridge(ex, request.model), key, messagesToChat(request), t0, pin ?? '', CHAT, sw);
  }, refuseChat, ['x-gateway-provider', 'x-gateway-savings', 'x-gateway-cache', 'anthropic-beta'], 'messages', true));
  const countSelector = new RouteSelector(deps.catalog, deps.health);
  app.post('/v1/messages/count_tokens', handlers.withBody('inference', (ex, key, body) => {
    const request = parseBody(CountTokensRequestSchema, parseJson(body));
    const entry = deps.catalog.resolve(request.model);
    // The key's model constraints hold here too (a 403, as on /v1/messages), though nothing goes upstream; a model no provider serves can still be counted.
    const chain = deps.keys.chain(key);
    try {
      countSelector.select({ requested: request.model, model: request.model, pin: '', nativeKind: null, chain, caller: key });
    } catch (err) {
      if (!(err instanceof GatewayError && err.code === Errors.noRoute.code)) throw err;
      // No route to hold the key to: its models list still holds.
      for (const k of chain) {
        const l = constraintsOf(k);
        if (l && !modelAllowed(l, entry.model.slug)) throw new GatewayError(Errors.modelNotAllowed, `${k === key ? 'This key' : `The key that minted this one (${k.id})`} may not use '${request.model}'.`, 'model');
      }
    }
    const chatBody = messagesToChat({ ...request, max_tokens: request.max_tokens ?? 1, stream: false });
    // Counted in the pool, within the workspace's share, like a request's prompt.
    const { pool } = deps.chat.deps;
    const release = pool.shareFor(key.workspace, chatBody.length);
    pool.countPrompt(entry.model.tokenizer, chatBody).finally(release).then((n) => ex.sendJson(200, { input_tokens: n }), (err: unknown) => ex.sendError(err));
  }, 0, [], true));

  // A customer endpoint (SPEC): any key of the gateway, whatever its scopes; not public (route counts and health are the operator's).
  app.get('/v1/providers', noBody(Scope.options, (ex) => {
    const byProvider = new Map<string, ReturnType<typeof deploymentViews>>();
    for (const d of deploymentViews(deps.catalog.routes(), deps.health)) byProvider.set(d.provider, [...(byProvider.get(d.provider) ?? []), d]);
    ex.sendJson(200, { object: 'list', data: [...byProvider].map(([name, deployments]) => ({ id: name, object: 'provider', kind: deployments[0]!.kind,
      models: new Set(deployments.flatMap((d) => d.models)).size, healthy: deployments.filter((d) => d.state === 'closed').length, deployments })) });
  }));

  registerAdmin(app, handlers, deps);
  registerAccount(app, handlers, deps);
  registerUsage(app, handlers, deps);
  registerPricing(app, handlers, deps);
  registerRouter(app, handlers, deps);

  // Ops: metrics, the API description, and the pages. /metrics and /v1/stats show figures
  // across tenants: who may read them is the operator's choice (config `metrics`, `stats`).
  const renderMetrics = (ex: Exchange) => {
    if (!deps.metrics) throw new GatewayError(Errors.notFound, 'Metrics are turned off on this gateway (metrics.enabled / SLUICE_METRICS).');
    deps.metrics.render().then((text) => ex.send(200, 'text/plain; version=0.0.4; charset=utf-8', text, null), (err: unknown) => ex.sendError(err));
  };
  const { exposure } = deps;
  const metricsToken = exposure.metricsToken ? sha256(exposure.metricsToken) : null;
  app.get('/metrics', (res, req) => {
    const ex = new Exchange(res, deps.ids.next());
    try {
      if (exposure.metricsPort !== null) throw new GatewayError(Errors.notFound, 'Metrics are served on their own port on this gateway.');
      if (!exposure.metricsPublic) {
        const authorization = req.getHeader('authorization');
        const bearer = authorization.toLowerCase().startsWith('bearer ') ? authorization.slice(7).trim() : '';
        const byToken = metricsToken !== null && bearer !== '' && timingSafeEqual(sha256(bearer), metricsToken);
        if (!byToken) requireScope(deps.keys.authenticate(authorization), 'admin');
      }
      renderMetrics(ex);
    } catch (err) {
      ex.sendError(err);
    }
  });
  app.get('/v1/stats', noBody(null, (ex) => {
    if (!exposure.publicStats) throw new GatewayError(Errors.notFound, 'Public totals are turned off on this gateway (stats.public / SLUICE_PUBLIC_STATS).');
    const now = Math.ceil(Date.now() / 1000);
    const { totals } = deps.usage.range(ALL_WORKSPACES, now - 30 * 86400, now, 'all', 'day');
    ex.sendJson(200, { object: 'stats', window_days: 30, requests: totals.requests, benchmark_usd: totals.benchmark_usd, charge_usd: totals.charge_usd, saved_usd: totals.saved_usd });
  }));
  const page = (name: string) => noBody(null, (ex) => {
    const asset = deps.web.get(name);
    if (!asset) throw new GatewayError(Errors.notFound, `The web assets are not built (${name}); run npm run build.`);
    ex.send(200, asset.type, asset.body, [['cache-control', 'no-cache']]);
  });
  app.get('/', page('index.html'));
  app.get('/app', page('app.html'));
  app.get('/docs', page('docs.html'));
  app.get('/app/*', (res, req) => {
    const ex = new Exchange(res, deps.ids.next());
    const asset = deps.web.get(req.getUrl().slice('/app/'.length));
    if (!asset) { ex.sendError(new GatewayError(Errors.notFound, `No asset ${req.getUrl()}.`)); return; }
    ex.send(200, asset.type, asset.body, [['cache-control', 'max-age=300']]);
  });
  let openapi: Buffer | null = null; // generated once, after every route is registered
  app.get('/openapi.json', noBody(null, (ex) => {
    openapi ??= Buffer.from(JSON.stringify(openApiDocument(routes, deps.version)));
    ex.send(200, 'application/json', openapi, null);
  }));
  const knownPaths = new Set(routes.map((r) => r.path));

  app.any('/*', (res, req) => {
    const ex = new Exchange(res, deps.ids.next());
    ex.anthropicErrors = req.getUrl().startsWith('/v1/messages'); // Anthropic clients read their own envelope
    const known = knownPaths.has(req.getUrl());
    ex.sendError(known
      ? new GatewayError(Errors.methodNotAllowed, `${req.getMethod().toUpperCase()} is not allowed on ${req.getUrl()}.`)
      : new GatewayError(Errors.notFound, `No route for ${req.getMethod().toUpperCase()} ${req.getUrl()}.`));
  });

  // uWS binds with SO_REUSEPORT unless told otherwise: a second gateway on the same port
  // would silently take half the connections. Bind exclusively so it fails instead. (The
  // host + options overload exists at run time; the bundled typings lack it.)
  const bind = (on: TemplatedApp, h: string, p: number): Promise<uWS.us_listen_socket> => new Promise((resolve, reject) => {
    const listen = on.listen.bind(on) as unknown as (host: string, port: number, options: number, cb: (socket: uWS.us_listen_socket | false) => void) => void;
    listen(h, p, 1 /* LIBUS_LISTEN_EXCLUSIVE_PORT */, (socket) => {
      if (!socket) reject(new Error(`could not listen on ${h}:${p} (is another process using the port?)`));
      else resolve(socket);
    });
  });
  return (async () => {
    let socket: uWS.us_listen_socket;
    let handover: uWS.us_listen_socket | null = null;
    if (threads) {
      // Shared with the event-loop threads (SO_REUSEPORT): an exclusive bind first, so a port
      // another process holds still fails here as on one thread (and port 0 gets the kernel's choice).
      const shared = await exclusivePort(host, port);
      const listen = app.listen.bind(app) as unknown as (host: string, port: number, options: number, cb: (socket: uWS.us_listen_socket | false) => void) => void;
      socket = await new Promise((resolve, reject) => listen(host, shared, 0, (s) => (s ? resolve(s) : reject(new Error(`could not listen on ${host}:${shared}`)))));
      // What the threads hand over comes in on a socket only this process's user can open.
      handover = await new Promise((resolve, reject) => app.listen_unix((s) => (s ? resolve(s) : reject(new Error(`could not listen on ${threads.socketPath}`))), threads.socketPath));
    } else {
      socket = await bind(app, host, port);
    }
    let metricsSocket: uWS.us_listen_socket | null = null;
    if (exposure.metricsPort !== null) {
      // Metrics on a listener of their own (an internal interface, a scraper-only port): no token there.
      const ops = uWS.App();
      ops.get('/metrics', (res) => { const ex = new Exchange(res, deps.ids.next()); try { renderMetrics(ex); } catch (err) { ex.sendError(err); } });
      ops.any('/*', (res) => new Exchange(res, deps.ids.next()).sendError(new GatewayError(Errors.notFound, 'Only /metrics is served here.')));
      metricsSocket = await bind(ops, exposure.metricsHost, exposure.metricsPort);
    }
    // (each listener closed once: a second close of a uWS listen socket is not safe)
    let listening = true;
    const leave = () => { if (listening) { listening = false; uWS.us_listen_socket_close(socket); } };
    return {
      port: uWS.us_socket_local_port(socket),
      metricsPort: metricsSocket ? uWS.us_socket_local_port(metricsSocket) : null,
      stopListening: () => { leave(); if (metricsSocket) uWS.us_listen_socket_close(metricsSocket); metricsSocket = null; },
      closeHandover: () => { if (handover) uWS.us_listen_socket_close(handover); handover = null; },
      leavePort: leave,
      get draining() { return state.draining; },
      set draining(v: boolean) { state.draining = v; },
    };
  })();
}

/** A port no other socket holds (bound and let go at once); 0: one the kernel chooses. */
function exclusivePort(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err) => reject(new Error(`could not listen on ${host}:${port} (is another process using the port?): ${err.message}`)));
    probe.listen({ host, port, exclusive: true }, () => {
      const got = (probe.address() as AddressInfo).port;
      probe.close(() => resolve(got));
    });
  });
}

/**
 * A DELETE of a stored response is answered once its remove is committed (`removed`: see
 * ResponseIds.forget; null, nothing was stored here), so a deletion told done is never undone
 * by a crash. A remove lost to a failed commit is an error to retry, unless the upstream that
 * holds the response (`upstreamHeld`) has deleted it already: that is done, and its answer goes
 * (what is left here only points at it, and the upstream answers 404 for it from now on).
 */
function deleted(ex: Exchange, removed: Promise<boolean> | null, answer: () => void, upstreamHeld: boolean): void {
  if (!removed) { answer(); return; }
  void removed.then((committed) => {
    if (committed || upstreamHeld) answer();
    else ex.sendError(new GatewayError(Errors.internal, 'The gateway could not record the deletion; retry shortly.'));
  });
}

/**
 * A stored response's GET or DELETE, relayed to the OpenAI-kind upstream that holds it: its
 * answer as it is, an error in OpenAI's envelope; on a 200, `ok` is given the answer to send.
 */
function relayStored(ex: Exchange, provider: OpenAIProvider, method: 'GET' | 'DELETE', id: string, ok: (answer: () => void) => void): void {
  let status = 0;
  let type = 'application/json';
  let retryAfter: number | null = null;
  const parts: Buffer[] = [];
  const handle = provider.storedResponse(method, id, {
    onStart: (s, contentType, retryAfterMs) => { status = s; type = contentType || type; retryAfter = retryAfterMs ?? null; },
    onData: (chunk) => { parts.push(chunk); return true; },
    onEnd: () => {
      const body = Buffer.concat(parts);
      if (status === 200) ok(() => ex.send(200, type, body, null));
      else ex.sendError(upstreamError(status, body, provider.name, retryAfter));
    },
    onError: (err) => ex.sendError(err),
  });
  ex.onAbort(() => handle.abort());
}

