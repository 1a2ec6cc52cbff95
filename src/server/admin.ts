// Operator endpoints (master key): workspaces, their credits, and keys in any workspace.
// Credits change only through ledger rows: a top-up is a row, committed together with the
// new balance before the response is sent.
import type { TemplatedApp } from 'uWebSockets.js';
import { viewOf, type KeyRing } from '../accounts/keys.js';
import type { Ledger, RequestIds } from '../accounts/ledger.js';
import type { Catalog } from '../router/catalog.js';
import { deploymentViews, type RouteHealth } from '../router/health.js';
import { fromNano, toNano, workspaceView, type Workspace, type Workspaces } from '../accounts/workspaces.js';
import { Errors, GatewayError } from '../errors.js';
import { CreateWorkspaceSchema, DeploymentToggleSchema, MintKeySchema, PatchKeySchema, RefundSchema, TopupSchema, checkId } from './schemas.js';
import { parseBody, parseJsonOrEmpty } from '../wire/body.js';
import { ledgerRow, type LedgerRow } from '../accounts/ledger.js';
import type { Handlers } from './handlers.js';
import type { Limits } from '../accounts/limits.js';
import { unavailable, type RefundClaim, type SharedLimits } from '../accounts/shared-limits.js';

/** One node: a refund needs no claim beyond its row (its id is the request's: a second finds the first). */
const NO_CLAIM: RefundClaim = { made: () => undefined, release: () => undefined };

export interface AdminDeps {
  limits: Limits;
  /** Cluster mode's limits and credits in Redis (null on one node). */
  shared: SharedLimits | null;
  catalog: Catalog;
  health: RouteHealth;
  keys: KeyRing;
  workspaces: Workspaces;
  ledger: Ledger;
  ids: RequestIds;
}

/** A credit row (top-up or refund): applied to the balance, resolved once committed. */
function creditRow(id: string, kind: 'topup' | 'refund', ws: Workspace, amountUsd: number, note: string | null, keyId: string, endpoint: string): LedgerRow {
  return ledgerRow({ id, kind, workspace: ws.id, key_id: keyId, endpoint, status: 201, delta_nano: toNano(amountUsd), note });
}

/** Appends a top-up row (applying it to the balance) and resolves once it is committed. */
export function topUp(deps: { ledger: Ledger; ids: RequestIds }, ws: Workspace, amountUsd: number, note: string | null, keyId: string): Promise<string> {
  const id = deps.ids.next();
  deps.ledger.append(creditRow(id, 'topup', ws, amountUsd, note, keyId, 'admin.topups'), ws);
  return deps.ledger.committed().then(() => id);
}

export function registerAdmin(app: TemplatedApp, on: Handlers, deps: AdminDeps): void {
  const view = (ws: Workspace) => workspaceView(ws, deps.workspaces.reservedNano(ws.id));

  app.post('/admin/workspaces', on.withBody('admin', (ex, key, body) => {
    const input = parseBody(CreateWorkspaceSchema, parseJsonOrEmpty(body));
    // (cluster mode: in the shared record before its credits, so any replica can seed its balance)
    deps.workspaces.create(input.name, input.email ?? null)
      .then((ws) => (input.credits_usd > 0 ? topUp(deps, ws, input.credits_usd, 'initial credits', key.id) : deps.ledger.committed()).then(() => ws))
      .then((ws) => ex.sendJson(201, view(ws)), (err: unknown) => ex.sendError(err));
  }));

  // (cluster mode: the balances every replica moves, read from the shared store first)
  app.get('/admin/workspaces', on.noBody('admin', (ex) => {
    const all = deps.workspaces.list();
    void deps.workspaces.refreshed(all.map((ws) => ws.id)).then(() => ex.sendJson(200, { object: 'list', data: all.map(view) }));
  }));

  app.get('/admin/workspaces/:id', on.noBody('admin', (ex, _k, [id]) => {
    deps.workspaces.find(checkId(id ?? '', 'ws_')).then((ws) => deps.workspaces.refreshed([ws.id]).then(() => ex.sendJson(200, view(ws))), (err: unknown) => ex.sendError(err));
  }));

  app.post('/admin/workspaces/:id/topups', on.withBody('admin', (ex, key, body, _t0, [id]) => {
    const input = parseBody(TopupSchema, parseJsonOrEmpty(body));
    deps.workspaces.find(checkId(id ?? '', 'ws_')).then((ws) => {
      if (!ws.metered) throw new GatewayError(Errors.invalidRequest, `Workspace ${ws.id} is unmetered; it has no credits to top up.`, 'id');
      // (cluster mode: the balance every replica moved, with this credit in it, as GET shows it)
      return topUp(deps, ws, input.amount_usd, input.note ?? null, key.id)
        .then((rowId) => deps.workspaces.refreshed([ws.id]).then(() => ex.sendJson(201, { object: 'topup', id: rowId, amount_usd: input.amount_usd, workspace: view(ws) })));
    }).catch((err: unknown) => ex.sendError(err));
  }, 1));

  // A refund credits back (part of) one request's charge, at most once per request: the
  // refund row's id is derived from the request's, so a second refund finds the first.
  app.post('/admin/workspaces/:id/refunds', on.withBody('admin', (ex, key, body, _t0, [id]) => {
    const input = parseBody(RefundSchema, parseJsonOrEmpty(body));
    const refundId = `ref_${input.request_id}`;
    // (cluster mode: a request another replica served, and a refund made through another, are read from Postgres)
    Promise.all([deps.workspaces.find(checkId(id ?? '', 'ws_')), deps.ledger.find(input.request_id), deps.ledger.has(refundId) ? Promise.resolve(true) : deps.ledger.find(refundId).then((r) => r !== null)]).then(([ws, original, refunded]) => {
      if (!original || original.workspace !== ws.id || original.kind !== 'request') {
        throw new GatewayError(Errors.notFound, `No request ${input.request_id} in workspace ${ws.id}.`, 'request_id');
      }
      if (refunded) throw new GatewayError(Errors.conflict, `Request ${input.request_id} was already refunded.`, 'request_id');
      const charged = fromNano(-original.delta_nano);
      const amount = input.amount_usd ?? charged;
      if (amount <= 0 || amount > charged + 1e-12) {
        throw new GatewayError(Errors.invalidRequest, `A refund must be more than 0 and at most the request's charge of $${charged}.`, 'amount_usd');
      }
      // Cluster mode: claimed in Redis first, so two replicas asked at once refund once (the second gets the 409).
      // (the claim is made once the row is committed; released if it fails to commit: a retry may make it)
      return (deps.shared ? deps.shared.claimRefund(input.request_id) : Promise.resolve(NO_CLAIM)).then((claim) => {
        if (!claim) throw new GatewayError(Errors.conflict, `Request ${input.request_id} was already refunded.`, 'request_id');
        deps.ledger.append(creditRow(refundId, 'refund', ws, amount, input.note ?? `refund of ${input.request_id}`, key.id, 'admin.refunds'), ws);
        return deps.ledger.committed().then(() => claim.made(), (err: unknown) => { claim.release(); throw err; });
      }).then(() => deps.workspaces.refreshed([ws.id])).then(() => ex.sendJson(201, { object: 'refund', id: refundId, request_id: input.request_id, amount_usd: amount, workspace: view(ws) }));
    }).catch((err: unknown) => ex.sendError(err));
  }, 1));

  // Deployments = routes: breaker state, error rate and latency; disable/enable applies to the next request.
  const deployments = () => deploymentViews(deps.catalog.routes(), deps.health);
  app.get('/admin/deployments', on.noBody('admin', (ex) => ex.sendJson(200, { object: 'list', data: deployments() })));

  for (const action of ['disable', 'enable'] as const) {
    app.post(`/admin/deployments/${action}`, on.withBody('admin', (ex, _key, body) => {
      const { decision } = parseBody(DeploymentToggleSchema, parseJsonOrEmpty(body));
      if (!deployments().some((d) => d.decision === decision)) throw new GatewayError(Errors.notFound, `No deployment ${decision}; GET /admin/deployments lists them.`, 'decision');
      deps.health.setDisabled(decision, action === 'disable');
      // (event-loop threads: answered once every thread has the switch, so the next request finds it thrown)
      const view = deployments().find((d) => d.decision === decision);
      void (deps.health.propagated?.() ?? Promise.resolve()).then(() => ex.sendJson(200, view));
    }));
  }

  app.post('/admin/keys', on.withBody('admin', (ex, _key, body) => {
    const input = parseBody(MintKeySchema, parseJsonOrEmpty(body));
    (input.workspace ? deps.workspaces.find(input.workspace).then((ws) => ws.id) : Promise.resolve(undefined)).then((workspace) =>
      deps.keys.mint({ name: input.name, ...(input.scopes ? { scopes: input.scopes } : {}), ...(workspace ? { workspace } : {}), limits: input.limits ?? null })).then(
      ({ record, secret }) => ex.sendJson(201, { ...viewOf(record), key: secret }),
      (err: unknown) => ex.sendError(err),
    );
  }));
  app.get('/admin/keys', on.noBody('admin', (ex) => ex.sendJson(200, { object: 'list', data: deps.keys.list().map(viewOf) })));
  /** Cluster mode: a key minted through another replica a moment ago is read from the shared record first. */
  const keyHere = (id: string): Promise<string> => (deps.keys.get(id) || !deps.workspaces.catchUp ? Promise.resolve(id) : deps.workspaces.catchUp().then(() => id));
  app.get('/admin/keys/:id', on.noBody('admin', (ex, _k, [id]) => {
    keyHere(checkId(id ?? '', 'key_')).then((keyId) => {
      const record = deps.keys.get(keyId);
      if (!record) throw new GatewayError(Errors.notFound, `No key with id ${id}.`, 'id');
      // With its live counters: requests in flight, dollars reserved by them, spent today and this month
      // (cluster mode: the shared store's, which every replica's requests move).
      if (!deps.shared) { ex.sendJson(200, { ...viewOf(record), state: deps.limits.view(record.id) }); return; }
      return deps.shared.keyView(record.id).then((state) => ex.sendJson(200, { ...viewOf(record), state }), (err: unknown) => ex.sendError(unavailable(String(err))));
    }).catch((err: unknown) => ex.sendError(err));
  }));
  app.patch('/admin/keys/:id', on.withBody('admin', (ex, _key, body, _t0, [id]) => {
    const input = parseBody(PatchKeySchema, parseJsonOrEmpty(body));
    keyHere(checkId(id ?? '', 'key_')).then((keyId) => deps.keys.update(keyId, input)).then((record) => ex.sendJson(200, viewOf(record)), (err: unknown) => ex.sendError(err));
  }, 1));
  app.del('/admin/keys/:id', on.noBody('admin', (ex, _k, [id]) => {
    keyHere(checkId(id ?? '', 'key_')).then((keyId) => deps.keys.revoke(keyId)).then((record) => ex.sendJson(200, viewOf(record)), (err: unknown) => ex.sendError(err));
  }));
}
