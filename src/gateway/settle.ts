// A request's end, in one place for every way it ends: its one ledger row (built here, in
// one literal: it is on every request), the release of what its ticket holds (counting what
// it really used), and its last bytes sent only once that row is committed, so an
// acknowledged answer is never missing from the ledger after a crash.
import type { KeyRecord } from '../accounts/keys.js';
import type { LedgerRow, RowSink } from '../accounts/ledger.js';
import type { Costs } from '../accounts/pricing.js';
import { toNano, type Workspace } from '../accounts/workspaces.js';
import { Errors, GatewayError } from '../errors.js';
import type { Client } from '../wire/http.js';
import { anthropicError } from '../wire/messages.js';
import { dataFrame } from '../wire/sse.js';
import type { Usage } from '../wire/usage.js';
import type { Figures } from './figures.js';
import { ms } from './fmt.js';
import type { Ticket } from './ticket.js';

const NONE = Object.freeze({}); // shared by rows: frozen, never written

/** What a row needs of the request (the RequestContext has these). */
export interface Settling {
  readonly client: Client;
  readonly key: KeyRecord;
  readonly ticket: Ticket;
  readonly t0: number;
  /** When the request was admitted (0: it was not). */
  readonly tAdmitted: number;
  /** The requested model ('' when the body could not be read). */
  readonly model: string;
  /** null until the request's workspace is known. */
  readonly ws: Workspace | null;
  readonly request: { readonly stream?: boolean | undefined } | null;
}

export type UsageSource = LedgerRow['usage_source'];

/** When and how long (performance.now() readings; tFirstByte 0: no byte came). */
export interface Timing {
  tFirstByte: number;
  tDone: number;
  overheadMs: number;
  /** The last attempt's dispatch and the end of its answer (an upstream call's). */
  tDispatch?: number;
  tUpstreamEnd?: number;
}

/**
 * Records the request's row, once: `fig` says how it was served (null: refused before a
 * route or cache answered it), `usage` what the answer represents (billed when `fig.billed`),
 * `known` its costs when the caller already priced them. Releases the ticket's holds with
 * the tokens and charge billed. False when another part of the path recorded it already.
 */
export function record(ledger: RowSink, r: Settling, fig: Figures | null, status: number, error: string | null, usage: Usage | null,
  source: UsageSource, known: Costs | null, t: Timing, retries = 0): boolean {
  if (!r.ticket.claimRow()) return false;
  const billed = fig?.billed && usage ? usage : null;
  const c = fig && usage && (status === 200 || billed) ? known ?? fig.costs(usage) : null;
  const chargeNano = c ? toNano(c.charge_usd) : 0;
  r.ticket.release(billed ? billed.prompt_tokens + billed.completion_tokens : 0, chargeNano);
  const ws = r.ws;
  const pick = fig?.routerPick ?? null;
  const row: LedgerRow = {
    id: r.client.requestId, ts: Date.now(), kind: 'request', workspace: ws?.id ?? r.key.workspace, key_id: r.key.id, endpoint: r.client.endpoint, admitted: r.tAdmitted > 0,
    requested_model: r.model, served: fig?.decision ?? null, router_bucket: pick?.bucket ?? null, router_score: pick?.score ?? null,
    router_task: pick?.task ?? null, router_model: pick?.learned?.teaches ? pick.model : null, router_quality: pick?.learned?.quality ?? null, router_reason: pick?.learned?.reason ?? null, cache: fig?.cache ?? 'none',
    stream: fig !== null && r.request?.stream === true, prompt_tokens: billed?.prompt_tokens ?? 0, cached_tokens: billed?.cached_tokens ?? 0, cache_write_tokens: billed?.cache_write_tokens ?? 0,
    completion_tokens: billed?.completion_tokens ?? 0, usage_source: billed ? source : 'none',
    saved_tokens: fig && (fig.kind === 'miss' || status === 200) ? fig.savedTokens(usage) : NONE, savings_usd: c ? fig!.savings(usage) : NONE,
    cost_usd: c?.cost_usd ?? 0, benchmark_usd: c?.benchmark_usd ?? 0, charge_usd: c?.charge_usd ?? 0, saved_usd: c?.saved_usd ?? 0,
    ttfb_ms: t.tFirstByte ? ms(r.t0, t.tFirstByte) : null, total_ms: ms(r.t0, t.tDone), overhead_ms: t.overheadMs, status, retries, error,
    delta_nano: ws?.metered ? -chargeNano : 0, balance_nano: null, note: null,
  };
  ledger.append(row, ws ?? undefined);
  if (ledger.observer) ledger.observer(row, { t0: r.t0, tAdmitted: r.tAdmitted, tDispatch: t.tDispatch ?? 0, tFirstByte: t.tFirstByte, tUpstreamEnd: t.tUpstreamEnd ?? 0, tDone: t.tDone, parent: r.client.traceparent ?? '' });
  return true;
}

/**
 * Refused before anything went upstream (or abandoned before it could): the holds are
 * released, and the error is sent once its row is committed (a refusal is a request too,
 * and is never missing from the ledger after a crash). The row says `cache: none`.
 */
export function refuse(ledger: RowSink, r: Settling, err: GatewayError): void {
  const tDone = performance.now();
  if (!record(ledger, r, null, err.status, err.code, null, 'none', null, { tFirstByte: 0, tDone, overheadMs: 0 })) return; // another part of the path answered it
  whenSettled(ledger, r, () => r.client.sendError(err));
}

/** Runs `done` (the client's last bytes) once the request's row is committed and what it held is given back (Ticket.afterRelease). */
export function whenSettled(ledger: RowSink, r: Settling, done: (err: unknown) => void): void {
  ledger.whenCommitted((err) => r.ticket.afterRelease(() => done(err)));
}

/**
 * What a caller gets instead of its answer's end when the row could not be committed (a full
 * disk, an I/O error): its balance change is undone, so nothing of it is charged, and nothing
 * it was told is complete is missing from the ledger. A JSON answer is this error; a stream
 * ends with it as an error event in place of its terminal event; a binary body is cut.
 */
export function notRecorded(): GatewayError {
  return new GatewayError(Errors.internal, 'The ledger could not record this request; it was not charged. Retry shortly.');
}

/** A stream's end after its headers went out: the error as an SSE event of the endpoint's dialect. */
export function errorEvent(err: GatewayError, api: string): Buffer {
  // An Anthropic stream's clients read only named events: its error is one, in its envelope.
  if (api === 'messages') return Buffer.from(`event: error\ndata: ${JSON.stringify(anthropicError(err.status, err.message, err.code, err.toJSON().error))}\n\n`);
  return Buffer.from(dataFrame(err.toJSON()));
}
