// The uWebSockets.js front end: routes, auth, and the hand-off to the gateway. Everything
// the handlers need from the request (headers, params) is read synchronously, as uWS
// invalidates `req` when the handler returns.
import uWS, { type TemplatedApp } from 'uWebSockets.js';
import type { KeyRing } from '../accounts/keys.js';
import type { RequestIds } from '../accounts/ledger.js';
import { Errors, GatewayError } from '../errors.js';
import type { ChatGateway } from '../gateway/chat.js';
import { ResponsesBridge, readResponsesRequest, toChatBody } from '../gateway/responses.js';
import type { Catalog } from '../router/catalog.js';
import { registerAccount, type AccountDeps } from './account.js';
import { registerAdmin, type AdminDeps } from './admin.js';
import { registerPricing, type PricingDeps } from './pricing.js';
import { registerUsage, type UsageDeps } from './usage.js';
import { Exchange } from './exchange.js';
import { makeHandlers } from './handlers.js';
import { deploymentViews } from '../router/health.js';
import { NO_SWITCHES, readSwitches } from '../savings/mechanisms.js';
import { modelListBody, modelView } from './models.js';

export interface ServerDeps extends AdminDeps, AccountDeps, UsageDeps, PricingDeps {
  keys: KeyRing;
  ids: RequestIds;
  catalog: Catalog;
  chat: ChatGateway;
  maxBodyBytes: number;
  providers: string[];
}

export interface Server {
  readonly port: number;
  /** Stop accepting connections; in-flight requests go on. */
  stopListening(): void;
  draining: boolean;
}

export function startServer(deps: ServerDeps, host: string, port: number): Promise<Server> {
  const app: TemplatedApp = uWS.App();
  const started = Date.now();
  const modelList = modelListBody(deps.catalog, deps.chat.deps.router);
  const state = { draining: false };

  const handlers = makeHandlers(deps, state);
  const { withBody, noBody } = handlers;

  app.get('/health', noBody(null, (ex) => ex.sendJson(200, {
    status: state.draining ? 'draining' : 'ok', uptime_s: Math.round((Date.now() - started) / 1000),
    providers: deps.providers, in_flight: deps.chat.inFlight,
  })));

  app.get('/v1/models', noBody(null, (ex) => ex.send(200, 'application/json', modelList, null)));
  app.get('/v1/models/:provider/:model', noBody(null, (ex, _k, [provider, model]) => {
    const entry = deps.catalog.find(`${provider}/${model}`);
    if (!entry) throw new GatewayError(Errors.modelNotFound, `The model '${provider}/${model}' does not exist.`, 'model');
    ex.sendJson(200, modelView(entry));
  }));

  app.post('/v1/chat/completions', withBody('inference', (ex, key, body, t0, _p, [pin, savings, cache]) => deps.chat.handle(ex, key, body, t0, pin ?? '', 'chat',
    savings || cache ? readSwitches(savings ?? '', cache ?? '') : NO_SWITCHES), 0, ['x-gateway-provider', 'x-gateway-savings', 'x-gateway-cache']));

  // Responses API: an OpenAI-kind route takes the caller's bytes as they are; other routes are
  // bridged onto the chat path. Routing, limits, credits, ledger and failover apply either way.
  app.post('/v1/responses', withBody('inference', (ex, key, body, t0, _p, [pin]) => {
    const bridge = ex as ResponsesBridge;
    const request = readResponsesRequest(body);
    bridge.model = request.model;
    const routes = deps.catalog.find(request.model)?.routes ?? [];
    const pinned = (typeof request.provider === 'string' ? request.provider : '') || pin;
    if (routes.some((r) => r.provider.kind === 'openai' && (!pinned || r.provider.name === pinned))) {
      bridge.passthrough = true;
      deps.chat.handle(bridge, key, body, t0, pin ?? '', 'responses');
      return;
    }
    deps.chat.handle(bridge, key, toChatBody(request), t0, pin ?? '');
  }, 0, ['x-gateway-provider'], (res, id) => new ResponsesBridge(res, id)));

  app.get('/v1/providers', noBody(null, (ex) => {
    const byProvider = new Map<string, ReturnType<typeof deploymentViews>>();
    for (const d of deploymentViews(deps.catalog.routes(), deps.health)) byProvider.set(d.provider, [...(byProvider.get(d.provider) ?? []), d]);
    ex.sendJson(200, { object: 'list', data: [...byProvider].map(([name, deployments]) => ({ id: name, object: 'provider', kind: deployments[0]!.kind,
      models: new Set(deployments.flatMap((d) => d.models)).size, healthy: deployments.filter((d) => d.state === 'closed').length, deployments })) });
  }));

  registerAdmin(app, handlers, deps);
  registerAccount(app, handlers, deps);
  registerUsage(app, handlers, deps);
  registerPricing(app, handlers, deps);

  app.any('/*', (res, req) => {
    const ex = new Exchange(res, deps.ids.next());
    const known = ['/v1/chat/completions', '/v1/responses', '/v1/models', '/v1/providers', '/v1/api-keys', '/v1/register', '/v1/requests', '/v1/usage/summary', '/v1/usage/timeseries', '/v1/account/pricing', '/v1/account/quote',
      '/admin/keys', '/admin/workspaces', '/admin/spend', '/admin/deployments', '/health'].includes(req.getUrl());
    ex.sendError(known
      ? new GatewayError(Errors.methodNotAllowed, `${req.getMethod().toUpperCase()} is not allowed on ${req.getUrl()}.`)
      : new GatewayError(Errors.notFound, `No route for ${req.getMethod().toUpperCase()} ${req.getUrl()}.`));
  });

  // uWS binds with SO_REUSEPORT unless told otherwise: a second gateway on the same port
  // would silently take half the connections. Bind exclusively so it fails instead. (The
  // host + options overload exists at run time; the bundled typings lack it.)
  const listen = app.listen.bind(app) as unknown as (host: string, port: number, options: number, cb: (socket: uWS.us_listen_socket | false) => void) => void;
  return new Promise((resolve, reject) => {
    listen(host, port, 1 /* LIBUS_LISTEN_EXCLUSIVE_PORT */, (socket) => {
      if (!socket) { reject(new Error(`could not listen on ${host}:${port} (is another process using the port?)`)); return; }
      resolve({
        port: uWS.us_socket_local_port(socket),
        stopListening: () => uWS.us_listen_socket_close(socket),
        get draining() { return state.draining; },
        set draining(v: boolean) { state.draining = v; },
      });
    });
  });
}
