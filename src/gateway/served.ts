// A response the savings engine serves without an upstream call of its own: an exact or
// semantic cache hit (replayed from the stored chat.completion), or a dedupe follower (the
// bytes of an identical request already in flight, from where it is, then live). Its
// figures and row are built like every answer's (figures.ts, settle.ts).
import { Errors, GatewayError } from '../errors.js';
import { isRecord } from '../json.js';
import type { Route } from '../router/catalog.js';
import type { CachedAnswer } from '../savings/cache.js';
import { replayAsSse, replayUsageEvent } from '../savings/replay.js';
import type { HeaderList } from '../wire/http.js';
import { DONE_FRAME } from '../wire/sse.js';
import { scanCompletion, spliceGateway, type CompletionScan } from '../wire/sse-usage.js';
import type { Costs } from '../accounts/pricing.js';
import type { Usage } from '../wire/usage.js';
import type { RequestContext } from './context.js';
import { Figures, figureHeaders, type ServedAs } from './figures.js';
import { ms } from './fmt.js';
import { errorEvent, notRecorded, record, whenSettled, type UsageSource } from './settle.js';

export class Served {
  private readonly figures: Figures;
  private tFirstByte = 0;
  private readonly stream: boolean;
  /**
   * Set for a follower by its leader: called when this client goes away; when it was the
   * last payer of a call the leader now cancels, it answers what this client owes.
   */
  onGone: (() => Promise<{ usage: Usage; source: UsageSource }> | null) | null = null;

  /** A dedupe follower: when it joined the call, and when that call's answer reached it (0: not yet). */
  private readonly joined: number;
  private answeredAt = 0;

  constructor(private readonly ctx: RequestContext, kind: Exclude<ServedAs, 'miss'>, similarity: number | null = null) {
    this.joined = kind === 'dedupe' ? performance.now() : 0;
    const route = ctx.routes[0]!;
    this.figures = new Figures(kind, route, ctx.benchmark, ctx.host.deps.markup, undefined, 0, null, similarity);
    this.stream = ctx.request.stream === true;
    ctx.client.onAbort(() => {
      const bill = this.onGone?.() ?? null;
      if (!bill) { this.record(499, 'client_closed_request', null); return; }
      bill.then((b) => this.record(499, 'client_closed_request', b.usage, b.source), () => this.record(499, 'client_closed_request', null));
    });
  }

  /** A dedupe follower is answered by its leader's route, whichever the leader ended on (failover included). */
  via(route: Route): void {
    this.figures.via(route);
  }

  get payer(): boolean {
    return this.figures.payer;
  }

  set payer(v: boolean) {
    this.figures.payer = v;
  }

  /**
   * Time spent in the gateway (total − upstream wait): a follower's wait for the shared call
   * (from joining it until its answer reached this response) is upstream wait, not overhead.
   */
  private overhead(now: number): number {
    if (!this.joined) return ms(this.ctx.t0, now);
    if (!this.answeredAt) this.answeredAt = now;
    return ms(this.ctx.t0, this.joined + (now - this.answeredAt));
  }

  private get client() {
    return this.ctx.client;
  }

  /** Records this response's row, then runs `done` once it is committed (where the client's last bytes go). */
  private finish(status: number, error: string | null, usage: Usage | null, done: (err: unknown) => void, source: UsageSource = 'upstream', known: Costs | null = null): void {
    this.record(status, error, usage, source, known);
    whenSettled(this.ctx.host.deps.ledger, this.ctx, done);
  }

  /** `usage`: what the answer represents (a served answer) or what the payer owes (billed by the leader's rule); `source`: as the leader knew it. */
  private record(status: number, error: string | null, usage: Usage | null, source: UsageSource = 'upstream', known: Costs | null = null): void {
    const tDone = performance.now();
    record(this.ctx.host.deps.ledger, this.ctx, this.figures, status, error, usage, source, known, { tFirstByte: this.tFirstByte, tDone, overheadMs: this.overhead(tDone) });
  }

  // ---- cache hits ----------------------------------------------------------------------

  /** Answers from a stored chat.completion: SSE when the caller streams, else the JSON body with the gateway object. */
  replay(hit: CachedAnswer): void {
    this.figures.via({ decision: hit.decision, prices: this.ctx.routes[0]!.prices });
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
    let usageEvent: string | null = null;
    try {
      const completion: unknown = JSON.parse(hit.body);
      if (!isRecord(completion)) { damaged(); return; }
      events = replayAsSse(completion, false);
      // The usage chunk, when asked for, goes last with the figures spliced in (as on a live stream).
      if (this.ctx.request.stream_options?.include_usage === true) usageEvent = replayUsageEvent(completion);
    } catch {
      damaged();
      return;
    }
    // Everything is known before the first byte: the figures go in the headers too, as on a JSON hit.
    const costs = this.figures.costs(hit.usage);
    this.startStream(figureHeaders(costs, this.overhead(performance.now())));
    this.client.corked(() => {
      this.client.write(Buffer.from(events));
      this.client.write(this.comment(hit.usage, usageEvent === null ? null : Buffer.from(usageEvent)));
    });
    this.end(hit.usage, DONE_FRAME, 'upstream', costs);
  }

  // ---- dedupe followers (driven by the leading UpstreamCall) ---------------------------

  private headers(): HeaderList {
    return this.figures.headers(this.ctx.ticket.limitHeaders);
  }

  /** `figures`: the figure headers, when they are known before the first byte (a cache hit's). */
  startStream(figures: HeaderList | null = null): void {
    if (!this.tFirstByte) this.tFirstByte = performance.now();
    this.client.startStream(200, 'text/event-stream; charset=utf-8', figures ? [...this.headers(), ...figures] : this.headers(), () => undefined);
  }

  write(chunk: Uint8Array): void {
    this.client.corked(() => this.client.write(chunk));
  }

  /** The stream's end, once the row is committed (`tail`: the replay's `[DONE]`; a follower got the leader's). */
  end(usage: Usage | null, tail?: Buffer, source: UsageSource = 'upstream', known: Costs | null = null): void {
    if (this.client.aborted) return;
    this.finish(200, null, usage, (err) => this.client.end(err ? errorEvent(notRecorded(), this.ctx.endpoint.api) : tail), source, known);
  }

  /** The SSE comment with this response's figures (the leader writes one per follower before `[DONE]`). */
  comment(usage: Usage | null, usageEvent: Buffer | null = null): Buffer {
    return this.figures.comment(this.client.requestId, usage, this.overhead(performance.now()), usageEvent);
  }

  /** A buffered chat.completion with this response's gateway object spliced in before the closing brace. */
  sendBuffered(body: Buffer, scan: CompletionScan, usage: Usage, source: UsageSource = 'upstream'): void {
    if (this.client.aborted) return;
    if (!this.tFirstByte) this.tFirstByte = performance.now();
    const costs = this.figures.costs(usage);
    const overhead = this.overhead(performance.now());
    const headers: HeaderList = [...this.headers(), ...figureHeaders(costs, overhead)];
    const out = spliceGateway(body, scan, this.figures.gatewayJson(this.client.requestId, usage, costs, overhead));
    this.finish(200, null, usage, (err) => (err ? this.client.sendError(notRecorded(), this.headers()) : this.client.send(200, 'application/json', out, headers)), source, costs); // priced once, for the figures and the row
  }

  /** The shared stream broke after its headers went out: the same error event ends this stream too (a payer owes `usage`, what streamed so far). */
  breakStream(event: Buffer, err: GatewayError, usage: Usage | null = null): void {
    if (this.client.aborted) return;
    this.finish(err.status, err.code, usage, () => this.client.end(event), 'estimate');
  }

  /** The leader's upstream error, before any byte was sent. */
  fail(err: GatewayError): void {
    if (this.client.aborted) return;
    this.finish(err.status, err.code, null, () => this.client.sendError(err, this.headers()));
  }
}
