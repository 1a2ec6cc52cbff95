// The uWebSockets.js front end: routes, auth, and the hand-off to the gateway. Everything
// the handlers need from the request (headers, params) is read synchronously, as uWS
// invalidates `req` when the handler returns.
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp } from 'uWebSockets.js';
import type { KeyRecord, KeyRing, Scope } from '../accounts/keys.js';
import { viewOf } from '../accounts/keys.js';
import type { RequestIds } from '../accounts/ledger.js';
import { Errors, GatewayError } from '../errors.js';
import type { ChatGateway } from '../gateway/chat.js';
import { MintKeySchema, parseBody, parseJson } from '../gateway/schemas.js';
import type { Catalog } from '../router/catalog.js';
import { Exchange } from './exchange.js';
import { modelListBody, modelView } from './models.js';

export interface ServerDeps {
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

function requireScope(key: KeyRecord, scope: Scope): void {
  if (!key.scopes.includes(scope)) throw new GatewayError(Errors.forbidden, `This key lacks the '${scope}' scope.`);
}

export function startServer(deps: ServerDeps, host: string, port: number): Promise<Server> {
  const app: TemplatedApp = uWS.App();
  const started = Date.now();
  const modelList = modelListBody(deps.catalog);
  const state = { draining: false };

  /** Authenticated route with a JSON body: auth happens before a byte of body is read. */
  const withBody = (scope: Scope, handler: (ex: Exchange, key: KeyRecord, body: Buffer, t0: number) => void) =>
    (res: HttpResponse, req: HttpRequest) => {
      const t0 = performance.now();
      const ex = new Exchange(res, deps.ids.next());
      const authorization = req.getHeader('authorization');
      const length = req.getHeader('content-length');
      let key: KeyRecord;
      try {
        if (state.draining) throw new GatewayError(Errors.shuttingDown, 'The gateway is shutting down; retry shortly.');
        key = deps.keys.authenticate(authorization);
        requireScope(key, scope);
      } catch (err) {
        ex.sendError(err);
        return;
      }
      ex.readBody(deps.maxBodyBytes, length, (err, body) => {
        if (err) { ex.sendError(err); return; }
        try {
          handler(ex, key, body, t0);
        } catch (e) {
          ex.sendError(e);
        }
      });
    };

  /** Authenticated (or public) route without a body. */
  const noBody = (scope: Scope | null, handler: (ex: Exchange, key: KeyRecord | null, params: string[]) => void) =>
    (res: HttpResponse, req: HttpRequest) => {
      const ex = new Exchange(res, deps.ids.next());
      try {
        const key = scope ? deps.keys.authenticate(req.getHeader('authorization')) : null;
        if (key && scope) requireScope(key, scope);
        handler(ex, key, [req.getParameter(0) ?? '', req.getParameter(1) ?? '']);
      } catch (err) {
        ex.sendError(err);
      }
    };

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

  app.post('/v1/chat/completions', withBody('inference', (ex, key, body, t0) => deps.chat.handle(ex, key, body, t0)));

  app.post('/admin/keys', withBody('admin', (ex, _key, body) => {
    const input = parseBody(MintKeySchema, body.length ? parseJson(body) : {});
    deps.keys.mint({ name: input.name, ...(input.scopes ? { scopes: input.scopes } : {}) }).then(
      ({ record, secret }) => ex.sendJson(201, { ...viewOf(record), key: secret }),
      (err: unknown) => ex.sendError(err),
    );
  }));
  app.get('/admin/keys', noBody('admin', (ex) => ex.sendJson(200, { object: 'list', data: deps.keys.list().map(viewOf) })));
  app.get('/admin/keys/:id', noBody('admin', (ex, _k, [id]) => {
    const record = deps.keys.get(id ?? '');
    if (!record) throw new GatewayError(Errors.notFound, `No key with id ${id}.`, 'id');
    ex.sendJson(200, viewOf(record));
  }));
  app.del('/admin/keys/:id', noBody('admin', (ex, _k, [id]) => {
    deps.keys.revoke(id ?? '').then((record) => ex.sendJson(200, viewOf(record)), (err: unknown) => ex.sendError(err));
  }));

  app.any('/*', (res, req) => {
    const ex = new Exchange(res, deps.ids.next());
    const known = ['/v1/chat/completions', '/v1/models', '/admin/keys', '/health'].includes(req.getUrl());
    ex.sendError(known
      ? new GatewayError(Errors.methodNotAllowed, `${req.getMethod().toUpperCase()} is not allowed on ${req.getUrl()}.`)
      : new GatewayError(Errors.notFound, `No route for ${req.getMethod().toUpperCase()} ${req.getUrl()}.`));
  });

  return new Promise((resolve, reject) => {
    app.listen(host, port, (socket) => {
      if (!socket) { reject(new Error(`could not listen on ${host}:${port}`)); return; }
      resolve({
        port: uWS.us_socket_local_port(socket),
        stopListening: () => uWS.us_listen_socket_close(socket),
        get draining() { return state.draining; },
        set draining(v: boolean) { state.draining = v; },
      });
    });
  });
}
