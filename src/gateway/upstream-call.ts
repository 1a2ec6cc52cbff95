// One request's call upstream, and every client of it: the request's own, and with
// in-flight dedupe the followers that joined it (Served), which receive the bytes written
// so far and then the live ones. It is the sink the provider adapter answers into.
//
//   dispatch → (failover.ts picks each attempt's route) → provider.chat(call, this)
//   onStart / onData / onEnd / onError ← the adapter
//   respond: a buffered body with the gateway object spliced in, or the SSE passed through
//            (sse-usage.ts's tap reads usage and holds the terminal event)
//   settle:  the row (settle.ts), and the client's last bytes once it is committed
import { upstreamError } from '../providers/upstream-error.js';
import type { ChatCall, ResponseSink, UpstreamHandle } from '../providers/provider.js';
import type { Route } from '../router/catalog.js';
import type { CachedAnswer } from '../savings/cache.js';
import type { OutgoingCall } from '../savings/stage.js';
import { Errors, GatewayError, asGatewayError } from '../errors.js';
import type { HeaderList } from '../wire/http.js';
import { LINGER_MS, MAX_ANSWER_BYTES } from '../providers/translator.js';
import { AnswerBytes } from '../wire/answer-bytes.js';
import { generatesNoText } from '../wire/api.js';
import { MAX_EVENT_BYTES, SseUsageTap, countedUsageEvent, responseIdOf, scanCompletion, spliceGateway, type CompletionScan } from '../wire/sse-usage.js';
import type { Usage } from '../wire/usage.js';
import type { RequestContext } from './context.js';
import { Attempts } from './failover.js';
import { Figures, figureHeaders } from './figures.js';
import { Followers, GATEWAY_MARK } from './followers.js';
import { ms } from './fmt.js';
import type { Served } from './served.js';
import { errorEvent, notRecorded, record, whenSettled, type UsageSource } from './settle.js';

const EMPTY = Buffer.alloc(0);
/**
 * A stream's bytes are kept (for its cache entry, the count when no usage comes, the judge)
 * up to this much; beyond, the stream still flows, but the gateway no longer holds it all
 * (20 slow streams of 26 MB held 627 MB): it is not cached or judged, and without usage its
 * output is counted from the part kept, at that part's tokens per byte, up to the request's cap.
 */
const MAX_KEPT_STREAM_BYTES = 16 * 1024 * 1024;

/** Failures the same route would only repeat: another route may take the request, this one not again. */
const NOT_AGAIN = new Set<string>([Errors.upstreamTimeout.code, Errors.upstreamBadAnswer.code, Errors.upstreamAuth.code]);

/**
 * Its end always goes the same way: the row is recorded (the ticket's holds released with
 * what the request really used), and the last bytes reach the client only once that row is
 * committed, so an acknowledged answer is never missing from the ledger after a crash.
 */
export class UpstreamCall implements ResponseSink, OutgoingCall {
  private readonly stream: boolean;
  /** Every route this request may go to (failover included). */
  readonly routes: readonly Route[];
  private readonly figures: Figures;
  private readonly attempts: Attempts;
  promptCacheKey: string | null = null;
  onLand: (() => void) | null = null;
  private handle: UpstreamHandle | null = null;
  private tap: SseUsageTap | null = null;
  /** A buffered answer's bytes so far (wire/answer-bytes.ts). */
  private readonly answer = new AnswerBytes(MAX_ANSWER_BYTES);
  private status = 0;
  private tDispatch = 0;
  private tFirstByte = 0;
  private tUpstreamEnd = 0;
  /** Set once the request's end is decided (its row may still be counted in the pool). */
  private settling = false;
  /** Set once the call's outcome (an answer, a failure) has gone to every client of it, followers included. */
  private over = false;
  /** The stream's terminal event came and the answer was ended then: what the upstream does after is not the answer's. */
  private ended = false;
  private linger: NodeJS.Timeout | null = null;
  /** The route of the current attempt. */
  private route: Route;
  private lastError: GatewayError | null = null;
  private retryAfterMs: number | null = null;
  /** Set while identical requests may join this one. */
  private landed = true;
  /** Set when this call leads a flight (dedupe): the identical requests that joined it. */
  private followers: Followers | null = null;
  /** The upstream's SSE bytes: the cache assembles the answer from them, and billing counts them when no usage comes. */
  private sse: Buffer[] | null = null;
  private sseBytes = 0;
  /** The stream outgrew MAX_KEPT_STREAM_BYTES: `sse` holds only its first part. */
  private sseOverflow = false;
  /** Usage counted here (no usage frame came): the stream's closing figures carry it. */
  private counted: Usage | null = null;
  /** A passthrough Responses answer's id (a buffered body's; a stream's is the tap's). */
  private responseId: string | null = null;
  /** The upstream's Content-Type (a plain-text answer goes on with it). */
  private contentType = '';
  /** A binary answer (speech) being streamed to the client as it comes: its usage is what the request implies. */
  private raw: { usage: Usage } | null = null;

  constructor(private readonly ctx: RequestContext) {
    const deps = ctx.host.deps;
    this.routes = ctx.routes;
    this.route = ctx.routes[0]!;
    this.stream = ctx.request.stream === true; // (the rewrites change only messages)
    this.figures = new Figures('miss', this.route, ctx.benchmark, deps.markup, ctx.saved, ctx.outputCap, ctx.router);
    this.attempts = new Attempts(ctx.routes, deps.health, deps);
    ctx.client.onAbort(() => this.clientAborted());
  }

  private get client() {
    return this.ctx.client;
  }

  private get deps() {
    return this.ctx.host.deps;
  }

  // ---- in-flight dedupe ------------------------------------------------------------------

  /** Identical requests may join from now until the upstream's answer ends (dedupe's dispatch hook set onLand). */
  lead(): void {
    if (this.onLand === null) return;
    this.landed = false;
    this.followers = new Followers();
  }

  joinable(): boolean {
    return !this.landed && !this.tUpstreamEnd;
  }

  join(f: Served): void {
    f.onGone = () => this.followerGone(f);
    this.followers!.join(f, this.route, this.tap !== null, this.finalUsage());
  }

  /** The leader's client went away while followers wait: the call goes on for them (followers.ts decides who pays). */
  private get leaderGone(): boolean {
    return this.followers?.leaderGone ?? false;
  }

  /** A follower's client went away; the last one leaving cancels the call and owes what the upstream did so far (the billing rule), which this returns for it to record. */
  private followerGone(f: Served): Promise<{ usage: Usage; source: 'estimate' }> | null {
    const left = this.followers!.leave(f);
    if (!left.cancel) return null;
    const answered = this.status === 200 && this.tFirstByte > 0;
    this.cancelUpstream();
    return left.payer ? this.countAnswer(answered).then((usage) => ({ usage, source: 'estimate' as const })) : null;
  }

  /** A shared stream broke after its headers went out: each follower ends with the same error event. */
  private breakFollowers(event: Buffer, err: GatewayError): void {
    this.followers?.breakStream(event, err, () => this.countAnswer(true));
  }

  /** Leaves the flight: later identical requests start their own call (or hit the cache). */
  private land(): void {
    if (this.landed) return;
    this.landed = true;
    this.followers?.closed();
    this.onLand?.();
  }

  /** Every client of this call gets the same failure (each with its own row, each sent once that row is committed). */
  private fail(err: GatewayError, code: string): void {
    this.over = true;
    this.land();
    this.settle(err.status, code, null, () => this.client.sendError(err, this.headers()));
    this.followers?.fail(this.route, err);
  }

  /** No route may take the request now: the last attempt's error (or 503), with Retry-After for when one may. */
  private noRoute(): void {
    const err = this.lastError ?? new GatewayError(Errors.noRoute, `Every route for '${this.ctx.model}' is unavailable (disabled or failing); retry shortly.`);
    if (!err.headers.some(([k]) => k === 'retry-after')) err.retryAfter(this.attempts.waitMs() ?? this.deps.health.cooldownMs);
    this.fail(err, this.lastError ? `upstream_${this.lastError.code}` : err.code);
  }

  // ---- dispatch ----------------------------------------------------------------------

  /** Sends the request to the first untried route whose breaker admits it. Bound once: failover's timer calls it. */
  readonly dispatch = (): void => {
    if (this.client.aborted && !this.leaderGone) return;
    const next = this.attempts.next();
    this.figures.retries = this.attempts.retries;
    if (!next) { this.noRoute(); return; }
    this.route = next;
    this.figures.via(next);
    this.status = 0;
    this.retryAfterMs = null;
    this.answer.reset();
    this.tFirstByte = 0;
    this.tUpstreamEnd = 0;
    const call = new Outgoing(this.ctx, next, this.stream, this.promptCacheKey);
    this.tDispatch = performance.now();
    try {
      this.handle = next.provider.chat(call, this);
    } catch (err) {
      // An adapter that throws before anything went upstream: the gateway's own failure with this
      // request, not the route's; it ends the request (a 500) and counts nothing against the
      // route's breaker, so one caller's odd request cannot close a route for everyone.
      this.handle = null;
      this.deps.health.release(next.decision);
      this.fail(asGatewayError(err), 'adapter_error');
    }
  };

  /** A failure before any byte reached the client: failover.ts decides whether another attempt follows. */
  private failover(err: GatewayError, reason: string, sameRoute: boolean): boolean {
    this.lastError = err;
    const retried = this.attempts.failed(this.route, reason, this.retryAfterMs, sameRoute, !(this.client.aborted && !this.leaderGone), this.dispatch);
    if (retried) this.handle = null;
    return retried;
  }

  // ---- respond -------------------------------------------------------------------------
  // The provider calls these; a throw in any of them (a bug) ends the request like an
  // upstream failure instead of escaping into the adapter.

  onStart(status: number, contentType: string, retryAfterMs?: number | null, length?: number | null): void {
    try {
      this.tFirstByte = performance.now();
      this.status = status;
      this.contentType = contentType;
      this.retryAfterMs = retryAfterMs ?? null;
      // (a large answer to be buffered is gathered into one buffer of its declared length as it comes: answer-bytes.ts)
      const declared = status === 200 && !this.ctx.endpoint.binary && !contentType.includes('event-stream') ? length ?? null : null;
      // One that says it is larger than any answer may be is refused now, not once all of it came.
      if (declared !== null && declared > MAX_ANSWER_BYTES) { this.unreadable(`${TOO_LARGE} (${declared} bytes, it said)`); return; }
      this.answer.reset(declared);
      const implied = status === 200 && this.ctx.endpoint.binary ? this.ctx.endpoint.impliedUsage(this.ctx.request, this.route.model) : null;
      if (implied) {
        // Audio bytes, passed on as they come (backpressure as for SSE); what it costs is known already.
        this.deps.health.success(this.route.decision, this.tFirstByte - this.tDispatch);
        this.raw = { usage: implied };
        this.land();
        this.client.startStream(200, contentType || 'application/octet-stream', [...this.headers(), ...figureHeaders(this.figures.costs(implied), this.overheadMs(this.tFirstByte))], () => {
          this.writable = true;
          this.handle?.resume();
        });
        return;
      }
      // (read again here: an audio form may say `stream` after the request left, with the audio behind it)
      if ((this.stream || this.ctx.request.stream === true) && status === 200 && contentType.includes('event-stream')) {
        this.deps.health.success(this.route.decision, this.tFirstByte - this.tDispatch);
        this.tap = new SseUsageTap(this.ctx.request.stream_options?.include_usage === true, this.emit, () => GATEWAY_MARK, true);
        this.sse = [];
        this.client.startStream(200, 'text/event-stream; charset=utf-8', this.headers(), () => {
          this.writable = true;
          this.handle?.resume();
        });
        this.followers?.startStream(this.route);
      }
    } catch (err) {
      this.fault(err);
    }
  }

  /** The tap's writer: each client's own comment at the mark; while others may join, the bytes are logged for them. */
  private readonly emit = (chunk: Buffer): boolean => {
    const followers = this.followers;
    if (followers) { followers.record(chunk); followers.write(chunk, this.finalUsage()); }
    return this.client.write(chunk === GATEWAY_MARK ? this.gatewayComment() : chunk);
  };

  onData(chunk: Buffer): boolean {
    try {
      if (this.raw) {
        this.pending = chunk;
        this.client.corked(this.pushRaw);
        return this.writable;
      }
      if (this.ended) return true;
      if (!this.tap) {
        this.answer.push(chunk);
        if (this.answer.size > MAX_ANSWER_BYTES) this.unreadable(TOO_LARGE);
        return true;
      }
      this.sseBytes += chunk.length;
      if (!this.sseOverflow) {
        if (this.sseBytes <= MAX_KEPT_STREAM_BYTES) this.sse!.push(chunk);
        else {
          // Past what is kept: nor may followers join any more, since they would need all of it from the start.
          this.sseOverflow = true;
          this.land();
        }
      }
      // Written at once, one corked write per upstream chunk. When uWS reports backpressure
      // the adapter pauses; nothing more is written until onWritable resumes it (writing on
      // into a backpressured uWS response can lose bytes, so the rule is strict).
      this.pending = chunk;
      this.toClient(this.pushPending);
      if (this.tap.oversized) { this.unreadable(`an SSE event larger than ${MAX_EVENT_BYTES >> 20} MiB`); return true; }
      if (this.tap.terminal) {
        // The answer is complete: it ends for the caller now, whether or not the upstream closes.
        // It normally does, at once (its connection then serves the next call); one that lingers is cut loose.
        this.ended = true;
        this.finishUpstream();
        this.linger = setTimeout(this.abandonUpstream, LINGER_MS);
        this.linger.unref();
        return true;
      }
      return this.writable || this.leaderGone;
    } catch (err) {
      this.fault(err);
      return true;
    }
  }

  // Bound once, not a closure per chunk.
  private pending: Buffer | null = null;
  private readonly pushRaw = (): void => {
    this.writable = this.client.write(this.pending!);
    this.pending = null;
  };
  private writable = true;
  private readonly pushPending = (): void => {
    this.writable = this.tap!.push(this.pending!);
    this.pending = null;
  };

  onEnd(): void {
    if (this.ended) { this.stopLinger(); return; }
    this.finishUpstream();
  }

  /** Runs `write` in one corked write to the leader's client, or at once when that client left (followers still take the bytes). */
  private toClient(write: () => void): void {
    if (this.leaderGone) write();
    else this.client.corked(write);
  }

  private readonly endTap = (): void => {
    this.tap!.end();
  };

  private readonly abandonUpstream = (): void => {
    this.linger = null;
    this.handle?.abort();
  };

  private stopLinger(): void {
    if (this.linger) { clearTimeout(this.linger); this.linger = null; }
  }

  /**
   * The upstream sent what it has that is not the answer's, and cannot be read: the call stops
   * (`what` says why), and the request ends as the upstream's unreadable answer (502): another
   * route may serve when nothing reached the caller yet, never this one again.
   */
  private unreadable(what: string): void {
    this.handle?.abort();
    this.answer.reset(); // (another route's answer, if one follows, starts afresh)
    this.onError(new GatewayError(Errors.upstreamBadAnswer, `Upstream ${this.route.decision} sent ${what}.`));
  }

  /** The upstream's answer is over (it ended, or its stream's terminal event came). */
  private finishUpstream(): void {
    try {
      this.tUpstreamEnd = performance.now();
      if (this.raw) {
        // The last bytes go once the row is committed, like a stream's terminal event.
        this.over = true;
        this.settle(200, null, this.raw.usage, (err) => (err ? this.client.cut() : this.client.end()), 'estimate');
        return;
      }
      // (a buffered answer lands once it is known not to fail over: identical requests may still join the retry)
      if (!this.tap) { this.finishBuffered(); return; }
      // (a last terminal event the upstream did not close with a blank line is read as closed)
      if (!this.tap.terminal && !this.tap.oversized) this.toClient(this.endTap);
      if (!this.tap.terminal) {
        // Ended before its terminal event (`[DONE]`, message_stop, response.completed): cut, or
        // not SSE at all. An error event says so, never a silent end; the route's breaker counts it.
        this.onError(new GatewayError(Errors.upstreamError, `The stream from ${this.route.decision} ended before the answer did (no terminal event).`));
        return;
      }
      this.land();
      const usage = this.tap.usage;
      if (usage) { this.endStream(usage, 'upstream'); return; }
      // No usage frame: the answer is counted before the stream's closing figures are written.
      this.countAnswer(true).then((u) => this.endStream(u, 'estimate'), (err: unknown) => this.fault(err));
    } catch (err) {
      this.fault(err);
    }
  }

  private endStream(usage: Usage, source: UsageSource): void {
    this.over = true;
    if (source === 'estimate') {
      this.counted = usage;
      // The caller asked for the usage chunk and the upstream sent no usage (it reports none,
      // or none an answer can have): the chunk OpenAI would send, with the gateway's count, in
      // its place (last before [DONE], the figures in it as in an upstream's).
      const api = this.ctx.endpoint.api;
      if ((api === 'chat' || api === 'completions') && this.ctx.request.stream_options?.include_usage === true && !this.tap!.usageEvent) {
        const fallback = api === 'chat' ? { id: `chatcmpl-${this.client.requestId}`, object: 'chat.completion.chunk' as const } : { id: `cmpl-${this.client.requestId}`, object: 'text_completion' as const };
        this.tap!.usageEvent = countedUsageEvent(this.sseOverflow ? null : this.sse?.[0] ?? null, usage, fallback, this.ctx.request.model);
      }
    }
    // The terminal event (held by the tap) and the figures go out once the row is committed:
    // a client that has them has the whole answer.
    // A leader whose client left is settled already (handed over): the tail still goes to its followers, once their rows are.
    const finish = () => {
      if (this.settling) whenSettled(this.deps.ledger, this.ctx, this.finishStream);
      else this.settle(200, null, usage, this.finishStream, source);
      this.followers?.end(usage, source);
    };
    const sse = this.sseOverflow ? null : this.sse;
    this.sse = null;
    if (sse && this.ctx.hash && source === 'upstream') {
      // A cacheable answer is kept before its row is written, as a buffered one is: its cache
      // entry then commits with the row's turn, and a repeat right after the last byte finds it.
      this.deps.pool.assemble(Buffer.concat(sse)).then((json) => { if (json) this.keep(json, usage); }, () => undefined).then(finish, finish);
    } else {
      finish();
    }
    // (the parts as they came: the judge joins them only for an answer it samples)
    if (sse && this.ctx.router?.learned?.teaches && !this.client.aborted) this.ctx.host.answered(this.ctx, sse, true);
  }

  /**
   * The stream's last bytes: the figures and the held terminal event (or an unterminated
   * tail), to every follower, and to the leader's client in the same write as the end of
   * the response (one corked syscall). Bound once, not a closure per request.
   */
  private readonly finishStream = (err: unknown): void => {
    const tap = this.tap!;
    if (this.followers) this.followers.usageEvent = tap.usageEvent;
    const lead = tap.takeLead();
    const tail = tap.flushTail();
    const own: Buffer[] = [];
    const out = (chunk: Buffer) => {
      this.followers?.write(chunk, this.finalUsage());
      own.push(chunk === GATEWAY_MARK ? this.gatewayComment() : chunk);
    };
    if (lead) out(lead); // (the answer's last events, which came with its terminal one)
    if (tap.sawDone) out(GATEWAY_MARK); // the figures go before the held [DONE]
    if (tail) out(tail);
    if (!tap.sawDone) out(GATEWAY_MARK);
    // (the leader's row could not be committed: its client gets an error event, not the end; followers' rows are their own)
    if (err) {
      const event = errorEvent(notRecorded(), this.ctx.endpoint.api);
      this.client.end(lead ? Buffer.concat([lead, event]) : event);
    } else this.client.end(own.length === 1 ? own[0]! : Buffer.concat(own));
  };

  /** A completed answer goes to the savings stages that keep answers (the caches). */
  private keep(json: string, usage: Usage): void {
    const answer: CachedAnswer = { decision: this.route.decision, body: json, usage };
    const { bits } = this.ctx;
    for (const s of this.ctx.host.savings) {
      if (!s.after || !(bits & s.bits)) continue;
      // Keeping an answer is a saving for later, never a reason this request's reply does not go out.
      try { s.after(this.ctx, answer); } catch (err) { console.error('a savings stage could not keep an answer:', err instanceof Error ? err.message : String(err)); }
    }
  }

  onError(err: GatewayError): void {
    if (this.ended) { this.stopLinger(); return; }
    try {
      this.tUpstreamEnd = performance.now();
      // (`settling` is not enough: a leader whose client left is settled early, and its followers still wait for this outcome.)
      if (this.over || (this.client.aborted && !this.leaderGone)) return;
      if (this.raw) {
        // Binary bytes went out: the answer ends cut, the connection closed without its end (a
        // proper end would make a short file look whole), with its row; the input was spent.
        this.over = true;
        this.deps.health.failure(this.route.decision, `stream_broken_${err.code}`);
        this.settle(err.status, err.code, this.raw.usage, () => this.client.cut(), 'estimate');
        return;
      }
      if (this.tap) {
        // Headers are gone: the stream ends with an error event, never a silent truncation.
        this.over = true;
        this.land();
        this.deps.health.failure(this.route.decision, `stream_broken_${err.code}`);
        const event = errorEvent(err, this.ctx.endpoint.api);
        this.settle(err.status, err.code, this.tap.usage, () => this.client.end(event));
        this.breakFollowers(event, err);
        return;
      }
      // A 4xx is the caller's, on any route; a timeout, an unreadable answer or refused credentials are not tried again on the same route.
      if (err.status >= 500 && this.failover(err, err.code, !NOT_AGAIN.has(err.code))) return;
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
    if (this.raw) { this.settle(e.status, e.code, this.raw.usage, () => this.client.cut(), 'estimate'); return; }
    if (this.tap) {
      const event = errorEvent(e, this.ctx.endpoint.api);
      // (the answer's events held with its terminal one went out as they came, before the error)
      const lead = this.tap.takeLead();
      if (lead) this.toClient(() => this.emit(lead));
      this.settle(e.status, e.code, null, () => this.client.end(event));
      this.breakFollowers(event, e);
      return;
    }
    this.fail(e, e.code);
  }

  private clientAborted(): void {
    if (this.followers?.handOver()) {
      // Others wait for this answer: the call goes on for them, and the first of them pays for it.
      this.settleHandedOver();
      return;
    }
    // (an upload the client left before its end never reached the upstream whole: nothing to bill)
    const dispatched = this.handle !== null && this.handle.sent !== false && this.ctx.endpoint.arrived(this.ctx.request);
    this.over = true;
    this.cancelUpstream();
    if (!this.tUpstreamEnd) this.tUpstreamEnd = performance.now();
    this.settle(499, 'client_closed_request', this.tap?.usage ?? this.raw?.usage ?? null, undefined, this.raw ? 'estimate' : 'upstream', null, dispatched);
  }

  private cancelUpstream(): void {
    this.attempts.cancel();
    if (!this.tFirstByte) this.deps.health.release(this.route.decision);
    this.handle?.abort();
    this.land();
  }

  private finishBuffered(): void {
    const { body, room } = this.answer.take();
    if (this.status !== 200) {
      // Every upstream error reaches the caller in OpenAI's envelope (upstream-error.ts), a
      // 429 or 5xx only once no retry is left; a 4xx about the request is the caller's, from any route.
      const err = upstreamError(this.status, body, this.route.decision, this.retryAfterMs);
      const retryable = this.status >= 500 || this.status === 429;
      // The upstream refusing the gateway's own credentials or naming no such deployment (a 4xx
      // made a 502) is the route's fault, not the request's: another route may serve, never this one again.
      const misrouted = !retryable && err.status >= 500;
      if ((retryable || misrouted) && this.failover(err, `http_${this.status}`, retryable)) return;
      if (!retryable && !misrouted) this.deps.health.success(this.route.decision, this.tUpstreamEnd - this.tDispatch);
      this.fail(err, `upstream_${this.status}`);
      return;
    }
    this.deps.health.success(this.route.decision, this.tUpstreamEnd - this.tDispatch);
    this.land();
    const scan = scanCompletion(body);
    if (!scan.isObject) {
      // A transcript as text, SRT or VTT is an answer as it is; anything else should have been JSON.
      const implied = this.ctx.endpoint.plainAnswers ? this.ctx.endpoint.impliedUsage(this.ctx.request, this.route.model) : null;
      if (implied) { this.respondBuffered(body, null, implied, 'estimate'); return; }
      this.fail(notAnObject(this.route.decision), 'upstream_bad_body');
      return;
    }
    if (scan.usage) { this.respondBuffered(body, scan, scan.usage, 'upstream', room); return; }
    // What the request alone says it costs (an image priced per image), when the upstream says nothing.
    const implied = this.ctx.endpoint.impliedUsage(this.ctx.request, this.route.model);
    if (implied) { this.respondBuffered(body, scan, implied, 'estimate', room); return; }
    // Rare: an upstream without usage. The prompt and the answer are counted in the pool before answering.
    // (the count parses the answer in the pool: one that is not a JSON object after all, cut short, is refused as above)
    this.countRead(true, [body]).then(({ usage, whole }) => {
      if (!whole) this.fail(notAnObject(this.route.decision), 'upstream_bad_body');
      else this.respondBuffered(body, scan, usage, 'estimate', room);
    }, (err: unknown) => this.fault(err));
  }

  /**
   * What the upstream will bill when it did not say: the prompt as sent, counted, and (when
   * `answered`) the text it generated as far as it reached the gateway, counted.
   */
  private countAnswer(answered: boolean, parts = this.tap ? this.sse ?? [] : this.answer.parts()): Promise<Usage> {
    return this.countRead(answered, parts).then((read) => read.usage);
  }

  /** `countAnswer`, and whether an answer that is not a stream was a JSON object at all (`whole` false: it did not parse). */
  private countRead(answered: boolean, parts: readonly Buffer[]): Promise<{ usage: Usage; whole: boolean }> {
    // An audio form is no text to count: what the request implies (its audio's length) is what was spent.
    if (this.ctx.endpoint.promptBound) {
      const implied = this.ctx.endpoint.impliedUsage(this.ctx.request, this.route.model);
      if (implied) return Promise.resolve({ usage: implied, whole: true });
    }
    // (an answer with no text to count is not sent to the pool: copying 60 MB of vectors into the message held the loop)
    const answer = answered && !generatesNoText(this.ctx.endpoint.api) ? (parts.length === 1 ? parts[0]! : Buffer.concat(parts)) : EMPTY;
    // (the output counted up to what the request let the upstream generate: its cap, else the model's max output)
    const cap = this.ctx.endpoint.askedCap(this.ctx.request, this.route.model) ?? this.route.model.max_output_tokens ?? null;
    const most = cap === null ? null : cap * this.ctx.endpoint.choices(this.ctx.request);
    // A stream beyond what is kept generated more than the part counted: the rest is counted at
    // the kept part's rate of tokens per byte (up to the cap), not billed at the cap outright
    // (a stream heavy with metadata, logprobs, has few tokens for its bytes).
    const scale = answered && this.tap !== null && this.sseOverflow && answer.length > 0 ? this.sseBytes / answer.length : 1;
    return this.deps.pool.countAnswer(this.route.model.tokenizer, this.ctx.body, answer, this.tap !== null, this.ctx.endpoint.api, most === null ? null : Math.ceil(most / scale))
      .then((c) => {
        const completion = scale === 1 ? c.completion : Math.ceil(c.completion * scale);
        return { usage: { prompt_tokens: c.prompt, completion_tokens: most === null ? completion : Math.min(most, completion), cached_tokens: 0 }, whole: c.whole !== false };
      });
  }

  /**
   * `scan` null: a plain-text answer (a transcript), sent as the upstream typed it, its figures in the headers only.
   * `room`: the buffer the body starts, with room after it for the figures (answer-bytes.ts).
   */
  private respondBuffered(body: Buffer, scan: CompletionScan | null, usage: Usage, source: UsageSource = 'upstream', room: Buffer | null = null): void {
    this.over = true;
    if (this.ctx.endpoint.conversation) this.responseId = responseIdOf(body);
    if (scan) this.followers?.sendBuffered(this.route, body, scan, usage, source);
    // (an answer larger than any cache keeps is not decoded for them: 60 MB of embeddings held the loop ~0.1 s doing so)
    if (this.ctx.hash && (source === 'upstream' || this.ctx.endpoint.countedUsage) && body.length <= this.deps.savings.config.exact_cache.max_entry_bytes) this.keep(body.toString('utf8'), usage);
    const costs = this.figures.costs(usage);
    const overhead = this.overheadMs(performance.now());
    const headers = [...this.headers(), ...figureHeaders(costs, overhead)];
    // (in the body's room when it has one: the followers' copies are made by now, and what reads the answer later reads `out`)
    const out = scan ? spliceGateway(body, scan, this.figures.gatewayJson(this.client.requestId, usage, costs, overhead), room) : body;
    const type = scan ? 'application/json' : this.contentType || 'text/plain; charset=utf-8';
    // The response completes only once its ledger row (and charge) is committed.
    this.settle(200, null, usage, (err) => {
      if (err) this.client.sendError(notRecorded(), this.headers());
      else {
        this.client.send(200, type, out, headers);
        if (this.ctx.router?.learned?.teaches) this.ctx.host.answered(this.ctx, [out], false);
      }
    }, source, costs);
  }

  // ---- figures ---------------------------------------------------------------------------

  private headers(): HeaderList {
    return this.figures.headers(this.ctx.ticket.limitHeaders);
  }

  private overheadMs(now: number): number {
    // Rounded to the microsecond like every timing in the row (not float noise such as 1.5195079999996).
    const upstream = (this.tUpstreamEnd || now) - this.tDispatch;
    return Math.max(0, ms(this.ctx.t0 + upstream, now));
  }

  /** Usage as far as it is known: the upstream's frame, or what was counted without one. */
  private finalUsage(): Usage | null {
    return this.tap?.usage ?? this.counted;
  }

  private gatewayComment(): Buffer {
    return this.figures.comment(this.client.requestId, this.finalUsage(), this.overheadMs(performance.now()), this.tap?.usageEvent ?? null);
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
  private settle(status: number, error: string | null, usage: Usage | null, done?: (err: unknown) => void, source: UsageSource = 'upstream', known: Costs | null = null, processed = false): void {
    if (this.settling) return;
    this.settling = true;
    const tDone = performance.now();
    const after = () => { if (done) whenSettled(this.deps.ledger, this.ctx, done); };
    if (usage) { this.record(status, error, tDone, usage, source, known); after(); return; }
    const answered = this.status === 200 && this.tFirstByte > 0;
    if (!answered && !processed) { this.record(status, error, tDone, null, 'none', null); after(); return; }
    this.countAnswer(answered).then(
      (u) => this.record(status, error, tDone, u, 'estimate', null),
      () => this.record(status, error, tDone, null, 'none', null),
    ).then(after, after);
  }

  private record(status: number, error: string | null, tDone: number, u: Usage | null, source: UsageSource, known: Costs | null): void {
    const responseId = this.responseId ?? this.tap?.responseId ?? null;
    // (`store: false`: the upstream keeps nothing, nor does the gateway: a later previous_response_id naming it is the 400 OpenAI gives)
    if (responseId && status === 200 && !this.ctx.ticket.recorded && (this.ctx.request as { store?: unknown }).store !== false) this.deps.responseIds.remember(this.ctx.ws.id, responseId, u ? u.prompt_tokens + u.completion_tokens : 0, this.route.provider.name);
    record(this.deps.ledger, this.ctx, this.figures, status, error, u, source, known,
      { tFirstByte: this.tFirstByte, tDone, overheadMs: this.overheadMs(tDone), tDispatch: this.tDispatch, tUpstreamEnd: this.tUpstreamEnd }, this.attempts.retries);
  }
}

type Costs = import('../accounts/pricing.js').Costs;

/** One attempt's request, as the adapter sees it: the parsed request only when it asks (see RequestContext.sent). */
class Outgoing implements ChatCall {
  readonly upstreamModel: string;
  readonly encoding: ChatCall['encoding'];
  readonly body: Buffer;
  readonly api: ChatCall['api'];
  readonly dimensions: number | null;

  constructor(private readonly ctx: RequestContext, route: Route, readonly stream: boolean, readonly promptCacheKey: string | null) {
    this.upstreamModel = route.upstreamModel;
    this.dimensions = route.model.dimensions ?? null;
    this.encoding = route.model.tokenizer;
    this.body = ctx.body;
    this.api = ctx.endpoint.api;
  }

  get params(): ChatCall['params'] {
    return this.ctx.request;
  }

  get request(): ChatCall['request'] {
    return this.ctx.sent;
  }
}

/** Why a buffered answer over MAX_ANSWER_BYTES is refused (as it comes, or as its head declares it). */
const TOO_LARGE = `an answer larger than ${MAX_ANSWER_BYTES >> 20} MiB`;

/** An answer that should have been a JSON object and is not (or is cut short). */
function notAnObject(decision: string): GatewayError {
  return new GatewayError(Errors.upstreamError, `Upstream ${decision} sent a body that is not a JSON object.`);
}
