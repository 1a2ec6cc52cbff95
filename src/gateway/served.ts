// A response the savings engine serves without an upstream call of its own: an exact or
// semantic cache hit (replayed from the stored chat.completion), or a dedupe follower (the
// bytes of an identical request already in flight, from where it is, then live). It
// writes its own headers and `gateway` figures and records its own ledger row.
import { ledgerRow } from '../accounts/ledger.js';
import { priceRequest, roundUsd, savingsOf, upstreamCost, type Costs, type SavingsUsd, type Usage } from '../accounts/pricing.js';
import { toNano, type Workspace } from '../accounts/workspaces.js';
import type { Prices } from '../config/schema.js';
import { Errors, GatewayError } from '../errors.js';
import { isRecord } from '../json.js';
import type { ChatRequest } from '../providers/provider.js';
import type { Client as Exchange, HeaderList } from '../wire/http.js';
import type { CachedAnswer } from '../savings/cache.js';
import type { SavedTokens } from '../wire/savings.js';
import { replayAsSse } from '../savings/replay.js';
import { scanCompletion, spliceGateway, type CompletionScan } from '../wire/sse-usage.js';
import type { ChatDeps } from './chat.js';
import { figureHeaders, ms } from './fmt.js';
import type { Ticket } from './ticket.js';

export type CacheKind = 'exact' | 'semantic' | 'dedupe';
type Source = 'upstream' | 'estimate';

const DONE = Buffer.from('data: [DONE]\n\n');

export class Served {
  /** A dedupe follower whose leader's client went away pays for the shared call. */
  payer = false;
  private tFirstByte = 0;
  private readonly stream: boolean;
  /**
   * Set for a follower by its leader: called when this client goes away; when it was the
   * last payer of a call the leader now cancels, it answers what this client owes.
   */
  onGone: (() => Promise<{ usage: Usage; source: Source }> | null) | null = null;

  constructor(
    private readonly deps: ChatDeps,
    readonly ex: Exchange,
    private readonly ticket: Ticket,
    private readonly ws: Workspace,
    private readonly request: ChatRequest,
    private readonly t0: number,
    readonly kind: CacheKind,
    private decision: string,
    /** Prices of the route that answers (what a payer follower is billed at; a leader says which, see via). */
    private prices: Prices,
    /** What the naive direct call would cost (the request's benchmark prices). */
    private readonly benchmark: Prices,
    private readonly similarity: number | null = null,
  ) {
    this.stream = request.stream === true;
    ex.onAbort(() => {
      const bill = this.onGone?.() ?? null;
      if (!bill) { this.record(499, 'client_closed_request', null); return; }
      bill.then((b) => this.record(499, 'client_closed_request', b.usage, undefined, b.source), () => this.record(499, 'client_closed_request', null));
    });
  }

  /** A dedupe follower is answered by its leader's route, whichever the leader ended on (failover included). */
  via(route: { decision: string; prices: Prices }): void {
    this.decision = route.decision;
    this.prices = route.prices;
  }

  /** Records this response's row, then runs `done` once it is committed (where the client's last bytes go). */
  private finish(status: number, error: string | null, usage: Usage | null, done: () => void, known?: Costs, source: Source = 'upstream'): void {
    this.record(status, error, usage, known, source);
    this.deps.ledger.whenCommitted(done);
  }

  get includeUsage(): boolean {
    return this.request.stream_options?.include_usage === true;
  }

  // ---- cache hits ----------------------------------------------------------------------

  /** Answers from a stored chat.completion: SSE when the caller streams, else the JSON body with the gateway object. */
  replay(hit: CachedAnswer): void {
    this.decision = hit.decision;
    this.tFirstByte = performance.now();
    const damaged = () => this.fail(new GatewayError(Errors.internal, 'A cached answer could not be read; retry with x-gateway-cache: off.'));
    if (!this.stream) {
      // Stored only after the upstream's body scanned as a JSON object; spliced, not parsed.
      const body = Buffer.from(hit.body);
      const scan = scanCompletion(body);
      if (!scan.isObject) { damaged(); return; }
      this.sendBuffered(body, { ...scan, usage: hit.usage }, hit.usage);
      return;
    }
    let events: string;
    try {
      const completion: unknown = JSON.parse(hit.body);
      if (!isRecord(completion)) { damaged(); return; }
      events = replayAsSse(completion, this.includeUsage);
    } catch {
      damaged();
      return;
    }
    this.startStream();
    this.ex.corked(() => {
      this.ex.write(Buffer.from(events));
      this.ex.write(this.comment(hit.usage));
    });
    this.end(hit.usage, DONE);
  }

  // ---- dedupe followers (driven by the leading ChatExchange) ---------------------------

  headers(): HeaderList {
    const h: Array<readonly [string, string]> = [['x-gateway-decision', this.decision], ['x-gateway-retries', '0'], ['x-gateway-cache', this.payer ? 'miss' : this.kind]];
    if (this.similarity !== null) h.push(['x-gateway-cache-similarity', this.similarity.toFixed(4)]);
    const limit = this.ticket.limitHeaders;
    return limit.length ? [...h, ...limit] : h;
  }

  startStream(): void {
    if (!this.tFirstByte) this.tFirstByte = performance.now();
    this.ex.startStream(200, 'text/event-stream; charset=utf-8', this.headers(), () => undefined);
  }

  write(chunk: Uint8Array): void {
    this.ex.corked(() => this.ex.write(chunk));
  }

  /** The stream's end, once the row is committed (`tail`: the replay's `[DONE]`; a follower got the leader's). */
  end(usage: Usage | null, tail?: Buffer, source: Source = 'upstream'): void {
    if (this.ex.aborted) return;
    this.finish(200, null, usage, () => this.ex.end(tail), undefined, source);
  }

  /** The SSE comment with this response's figures (the leader writes one per follower before `[DONE]`). */
  comment(usage: Usage | null): Buffer {
    return Buffer.from(`: gateway ${this.gatewayJson(usage, usage ? this.costs(usage) : null)}\n\n`);
  }

  /** A buffered chat.completion with this response's gateway object spliced in before the closing brace. */
  sendBuffered(body: Buffer, scan: CompletionScan, usage: Usage, source: Source = 'upstream'): void {
    if (this.ex.aborted) return;
    if (!this.tFirstByte) this.tFirstByte = performance.now();
    const costs = this.costs(usage);
    const headers: HeaderList = [...this.headers(), ...figureHeaders(costs, ms(this.t0, performance.now()))];
    const out = spliceGateway(body, scan, this.gatewayJson(usage, costs));
    this.finish(200, null, usage, () => this.ex.send(200, 'application/json', out, headers), costs, source);
  }

  /** The shared stream broke after its headers went out: the same error event ends this stream too (a payer owes `usage`, what streamed so far). */
  breakStream(event: Buffer, err: GatewayError, usage: Usage | null = null): void {
    if (this.ex.aborted) return;
    this.finish(err.status, err.code, usage, () => this.ex.end(event), undefined, 'estimate');
  }

  /** The leader's upstream error, before any byte was sent. */
  fail(err: GatewayError): void {
    if (this.ex.aborted) return;
    this.finish(err.status, err.code, null, () => this.ex.sendError(err, this.headers()));
  }

  // ---- figures -------------------------------------------------------------------------

  /** A served answer costs nothing upstream and is not charged; the payer (see above) pays as a miss. */
  private costs(usage: Usage): Costs {
    if (this.payer) return priceRequest(this.prices, this.benchmark, usage, this.deps.markup);
    const b = roundUsd(upstreamCost(this.benchmark, { ...usage, cached_tokens: 0 }));
    return { cost_usd: 0, benchmark_usd: b, charge_usd: 0, saved_usd: b };
  }

  /** A served answer saved its whole benchmark; a payer follower saved what a miss does. */
  private savings(usage: Usage | null, costs: Costs | null): SavingsUsd {
    if (!usage || !costs) return {};
    if (this.payer) return savingsOf(this.prices, this.benchmark, usage, {});
    return costs.saved_usd ? { [this.savingKey()]: costs.saved_usd } : {};
  }

  private savingKey(): 'exact_cache' | 'semantic_cache' | 'dedupe' {
    return this.kind === 'exact' ? 'exact_cache' : this.kind === 'semantic' ? 'semantic_cache' : 'dedupe';
  }

  private savedTokens(usage: Usage | null): SavedTokens {
    if (!usage || this.payer) return {};
    return { [this.savingKey()]: usage.prompt_tokens + usage.completion_tokens };
  }

  private gatewayJson(usage: Usage | null, costs: Costs | null): string {
    return JSON.stringify({
      request_id: this.ex.requestId, served: this.decision, cache: this.payer ? 'miss' : this.kind, retries: 0,
      ...(this.similarity !== null ? { similarity: Math.round(this.similarity * 1e4) / 1e4 } : {}),
      usage, saved_tokens: this.savedTokens(usage), savings_usd: this.savings(usage, costs), ...(costs ?? {}), overhead_ms: ms(this.t0, performance.now()),
    });
  }

  /** `usage`: what the answer represents (a served answer) or what the payer owes (billed by the leader's rule); `source`: as the leader knew it. */
  private record(status: number, error: string | null, usage: Usage | null, known?: Costs, source: Source = 'upstream'): void {
    if (!this.ticket.claimRow()) return;
    const billed = this.payer && usage ? usage : null;
    const c = usage && (status === 200 || billed) ? known ?? this.costs(usage) : null;
    const chargeNano = c ? toNano(c.charge_usd) : 0;
    this.ticket.release(billed ? billed.prompt_tokens + billed.completion_tokens : 0, chargeNano);
    const tDone = performance.now();
    this.deps.ledger.append(ledgerRow({
      id: this.ex.requestId, kind: 'request', workspace: this.ws.id, key_id: this.ticket.key.id, endpoint: this.ex.endpoint,
      requested_model: this.request.model, served: this.decision, cache: this.payer ? 'miss' : this.kind, stream: this.stream,
      // Tokens are what the upstream billed for this request: none for a served answer.
      prompt_tokens: billed?.prompt_tokens ?? 0, cached_tokens: billed?.cached_tokens ?? 0, completion_tokens: billed?.completion_tokens ?? 0,
      usage_source: billed ? source : 'none', saved_tokens: status === 200 ? this.savedTokens(usage) : {}, savings_usd: this.savings(usage, c),
      cost_usd: c?.cost_usd ?? 0, benchmark_usd: c?.benchmark_usd ?? 0, charge_usd: c?.charge_usd ?? 0, saved_usd: c?.saved_usd ?? 0,
      ttfb_ms: this.tFirstByte ? ms(this.t0, this.tFirstByte) : null, total_ms: ms(this.t0, tDone), overhead_ms: ms(this.t0, tDone),
      status, error, delta_nano: this.ws.metered ? -chargeNano : 0,
    }), this.ws);
  }
}
