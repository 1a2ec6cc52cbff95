// The caller-facing account API: self-serve keys (scope `keys:write`, inside the caller's
// own workspace, never with more scopes than the caller has) and self-registration.
import type { TemplatedApp } from 'uWebSockets.js';
import { capMessage, REGISTERED_LIMITS, viewOf, type KeyRecord, type KeyRing, type Scope } from '../accounts/keys.js';
import type { Ledger, LedgerRow, RequestIds } from '../accounts/ledger.js';
import { fromNano, workspaceView, type Workspaces } from '../accounts/workspaces.js';
import { Errors, GatewayError } from '../errors.js';
import { RegisterSchema, SelfMintKeySchema, checkId } from './schemas.js';
import { parseBody, parseJsonOrEmpty } from '../wire/body.js';
import { topUp } from './admin.js';
import type { Handlers } from './handlers.js';
import { AddressThrottle, addressUnit } from '../accounts/registration.js';
import type { SharedLimits } from '../accounts/shared-limits.js';

export interface AccountDeps {
  keys: KeyRing;
  workspaces: Workspaces;
  ledger: Ledger;
  ids: RequestIds;
  registration: { enabled: boolean; starterCredits: number; perAddressPerHour: number };
  /** Self-serve minting stops at this many live keys in a workspace. */
  maxKeysPerWorkspace: number;
  /** Cluster mode: registrations counted once for every replica (null on one node). */
  shared: SharedLimits | null;
}

/**
 * A key the caller may revoke, or 404 (another workspace's keys do not exist for it): in
 * its own workspace, and never one of the keys above it. A key minted by another key
 * manages only itself and what it minted; a workspace's root keys (operator-minted or
 * registered) manage every key of it.
 */
function ownKey(deps: AccountDeps, caller: KeyRecord, id: string): KeyRecord {
  const record = deps.keys.get(id);
  if (!record || record.workspace !== caller.workspace || (record.kind !== 'minted' && record.kind !== 'registered')) {
    throw new GatewayError(Errors.notFound, `No key with id ${id} in this workspace.`, 'id');
  }
  if (deps.keys.chain(caller).includes(record) && record !== caller) {
    throw new GatewayError(Errors.forbidden, 'A key cannot revoke a key above it (the key that minted it, or that one\'s parent).', 'id');
  }
  if (caller.created_by && record !== caller && !deps.keys.chain(record).includes(caller)) {
    throw new GatewayError(Errors.forbidden, 'A minted key can revoke only itself and the keys it minted.', 'id');
  }
  return record;
}

export function registerAccount(app: TemplatedApp, on: Handlers, deps: AccountDeps): void {
  // The caller's workspace: balance, and its credit history (top-ups and refunds, newest first).
  app.get('/v1/account', on.noBody('usage:read', (ex, caller) => {
    const ws = deps.workspaces.get(caller!.workspace);
    if (!ws) throw new GatewayError(Errors.notFound, `Workspace ${caller!.workspace} no longer exists.`);
    const view = (row: LedgerRow) => ({ id: row.id, kind: row.kind, amount_usd: fromNano(row.delta_nano), balance_after_usd: row.balance_nano === null ? null : fromNano(row.balance_nano), note: row.note, created_at: new Date(row.ts).toISOString() });
    // (cluster mode: every replica's credit rows, from Postgres; with its own not yet shipped)
    const rows = deps.ledger.creditsEverywhere ? deps.ledger.creditsEverywhere(ws.id, 100).catch(() => [...deps.ledger.credits(ws.id, 100)]) : Promise.resolve([...deps.ledger.credits(ws.id, 100)]);
    void Promise.all([rows, deps.workspaces.refreshed([ws.id])]).then(([credits]) =>
      ex.sendJson(200, { ...workspaceView(ws, deps.workspaces.reservedNano(ws.id)), key: viewOf(caller!), credits: credits.map(view) }));
  }));

  app.post('/v1/api-keys', on.withBody('keys:write', (ex, caller, body) => {
    const input = parseBody(SelfMintKeySchema, parseJsonOrEmpty(body));
    const scopes: Scope[] = input.scopes ?? ['inference'];
    const extra = scopes.filter((s) => !caller.scopes.includes(s));
    if (extra.length) throw new GatewayError(Errors.forbidden, `A key can only mint keys with its own scopes; it lacks ${extra.map((s) => `'${s}'`).join(', ')}.`, 'scopes');
    if (deps.keys.liveKeys(caller.workspace) >= deps.maxKeysPerWorkspace) throw new GatewayError(Errors.forbidden, capMessage(deps.maxKeysPerWorkspace));
    deps.keys.mint({ name: input.name, workspace: caller.workspace, scopes, limits: input.limits, createdBy: caller.id, cap: deps.maxKeysPerWorkspace }).then(
      ({ record, secret }) => ex.sendJson(201, { ...viewOf(record), key: secret }),
      (err: unknown) => ex.sendError(err),
    );
  }));

  app.get('/v1/api-keys', on.noBody('keys:write', (ex, caller) => {
    ex.sendJson(200, { object: 'list', data: deps.keys.list(caller!.workspace).map(viewOf) });
  }));

  app.del('/v1/api-keys/:id', on.noBody('keys:write', (ex, caller, [id]) => {
    const record = ownKey(deps, caller!, checkId(id ?? '', 'key_'));
    deps.keys.revoke(record.id).then((r) => ex.sendJson(200, viewOf(r)), (err: unknown) => ex.sendError(err));
  }));

  const throttle = new AddressThrottle(deps.registration.perAddressPerHour);
  /** One registration from `client`, counted: null when allowed, else the wait. Cluster mode: for every replica at once (Redis not answering: this replica's own count). */
  const take = (client: string): Promise<number | null> => deps.shared
    ? deps.shared.register(addressUnit(client), deps.registration.perAddressPerHour).catch(() => throttle.take(client))
    : Promise.resolve(throttle.take(client));
  app.post('/v1/register', on.publicBody((ex, body, client) => {
    if (!deps.registration.enabled) throw new GatewayError(Errors.forbidden, 'Self-registration is turned off on this gateway.');
    const input = parseBody(RegisterSchema, parseJsonOrEmpty(body));
    // Counted once the body is valid (a typo does not use up an address's registrations), and
    // before the mailbox is looked up: whether an email has a workspace is not free to probe.
    take(client).then((waitMs) => {
      if (waitMs !== null) {
        // A 429 says which kind of limit it is, as a key's do: this one is a rolling window per address.
        const err = new GatewayError(Errors.registrationThrottled, `Too many registrations from this address; retry in ${Math.ceil(waitMs / 60_000)} min.`).retryAfter(waitMs);
        err.headers = [...err.headers, ['x-gateway-limit-kind', 'window']];
        err.extra = { kind: 'window', retry_after_seconds: Math.max(1, Math.ceil(waitMs / 1000)) };
        throw err;
      }
      if (deps.workspaces.byEmailAddress(input.email)) throw new GatewayError(Errors.conflict, 'A workspace with this email already exists.', 'email');
      return deps.workspaces.create(input.name ?? input.email, input.email);
    }).then(async (ws) => {
      await (deps.registration.starterCredits > 0 ? topUp(deps, ws, deps.registration.starterCredits, 'starter credits', 'register') : deps.ledger.committed());
      const { record, secret } = await deps.keys.mint({ name: 'registered', workspace: ws.id, kind: 'registered',
        scopes: ['inference', 'usage:read', 'keys:write'], limits: REGISTERED_LIMITS });
      ex.sendJson(201, { workspace: workspaceView(ws, 0), key: { ...viewOf(record), key: secret } });
    }).catch((err: unknown) => ex.sendError(err));
  }));
}
