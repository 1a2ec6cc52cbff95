// The narrow, typed protocol between the main thread and its event-loop threads
// (SLUICE_THREADS; server/threads.ts is the main thread's side, thread.ts a thread's), and
// the thread's side of it. What must be exact across threads stays with the main thread, and
// a thread asks for it: admission (limits, credit holds, in-flight counts) and its release,
// the ledger row and its commit, worker-pool tasks. The main thread tells every thread of
// each key and workspace it puts in force. Messages are batched: each side sends what one
// event-loop turn produced in one postMessage (a thread hop costs ~10 µs of CPU; a batch of
// many costs a few per message). Both ends are this codebase, so messages are typed, not
// parsed with zod; what crosses from outside (HTTP) was validated where it came in.
import type { MessagePort } from 'node:worker_threads';
import type { KeyRecord } from '../accounts/keys.js';
import { asToldUncommitted, type LedgerRow, type RowSink } from '../accounts/ledger.js';
import { isOperatorKey } from '../accounts/keys.js';
import type { AdmissionStore, Header, HeldAdmission, Reservation } from '../accounts/limits.js';
import type { Workspace } from '../accounts/workspaces.js';
import type { HealthEvent, RouteState } from '../router/health.js';
import { GatewayError } from '../errors.js';
import type { WorkerResult, WorkerTask } from '../workers/protocol.js';

/** A thread to the main thread. `id`: the call its reply answers. */
export type Up =
  /** `rid`: the request's id (cluster mode: its holds' record in Redis). */
  | { t: 'admit'; id: number; rid: string; chain: string[]; tokens: number; nano: number; ws: string; hold: number }
  | { t: 'finish'; aid: number; tokens: number; charge: number }
  | { t: 'row'; row: LedgerRow }
  | { t: 'commit'; id: number }
  | { t: 'pool'; id: number; task: WorkerTask }
  | { t: 'health'; e: HealthEvent }
  /** What the thread is serving now, and the successes it counted since it last said (RouteHealth.counted), by route. */
  | { t: 'load'; inFlight: number; served: Array<[string, number[]]> }
  /** A sync, drain or close request (`id`) is done. */
  | { t: 'done'; id: number }
  | { t: 'ready' }
  | { t: 'failed'; message: string };

/** The main thread to a thread. */
export type Down =
  | { t: 'reply'; id: number; value: unknown }
  | { t: 'fail'; id: number; error: ErrorWire }
  | { t: 'key'; record: KeyRecord }
  | { t: 'workspace'; record: Workspace }
  | { t: 'route'; decision: string; s: RouteState }
  | { t: 'sync'; id: number }
  | { t: 'drain'; id: number; deadline: number }
  | { t: 'close'; id: number };

/** An admission's answer: granted (`aid` names its holds), or the credits available when too few. */
export type AdmitReply = { aid: number; headers: Header[] } | { credits: number };

/** A GatewayError as it crosses (an Error keeps only its message). */
export interface ErrorWire { status: number; type: string; code: string; message: string; param: string | null; headers: Header[]; extra: Record<string, unknown> | null }

export function toWire(err: unknown): ErrorWire {
  if (err instanceof GatewayError) {
    // (the members a subclass adds to its envelope, a LimitError's kind and wait among them, travel as `extra`)
    const more: Record<string, unknown> = { ...err.toJSON().error };
    for (const base of ['message', 'type', 'code', 'param']) delete more[base];
    return { status: err.status, type: err.type, code: err.code, message: err.message, param: err.param, headers: [...err.headers], extra: Object.keys(more).length ? more : null };
  }
  return { status: 500, type: 'server_error', code: 'internal_error', message: err instanceof Error ? err.message : String(err), param: null, headers: [], extra: null };
}

export function fromWire(w: ErrorWire): GatewayError {
  const err = new GatewayError({ status: w.status, type: w.type, code: w.code }, w.message, w.param);
  err.headers = w.headers;
  err.extra = w.extra;
  return err;
}

/** Messages queued during a turn and posted together at its end. */
export class Batch<M> {
  private queue: M[] = [];
  private scheduled = false;
  /** Runs just before a batch is posted (to put the commit request last). */
  beforeFlush: (() => void) | null = null;

  constructor(private readonly post: (batch: M[]) => void) {}

  send(message: M): void {
    this.queue.push(message);
    this.schedule();
  }

  /** A flush at the end of this turn (beforeFlush may have something to add). */
  schedule(): void {
    if (!this.scheduled) { this.scheduled = true; setImmediate(this.flush); }
  }

  readonly flush = (): void => {
    this.beforeFlush?.(); // (what it sends joins this batch: still scheduled, it schedules no other flush)
    this.scheduled = false;
    if (this.queue.length === 0) return;
    const batch = this.queue;
    this.queue = [];
    this.post(batch);
  };
}

/**
 * A thread's end of the link: calls to the main thread and their replies, and what the
 * main thread tells it. Implements the gateway's admission store and row sink.
 */
export class MainLink implements AdmissionStore, RowSink {
  private readonly out: Batch<Up>;
  private nextId = 1;
  private readonly calls = new Map<number, { resolve: (value: unknown) => void; reject: (err: GatewayError) => void }>();
  /** Commit waiters of this turn: one commit request, after the turn's rows, answers them all. */
  private committing: Array<(err: unknown) => void> = [];
  /** Rows sent since the last commit request. */
  private rows: LedgerRow[] = [];
  /** Sees the rows a commit request covered once their waiters were told: as committed, or as told when the commit failed (the thread's access log). */
  onCommitted: ((rows: readonly LedgerRow[]) => void) | null = null;
  readonly localWhenDown = false;
  /** Tracing stays on the main thread: a traced gateway hands every request over. */
  observer = null;

  /** The thread's requests being answered now (the gateway's count), for /health and /metrics. */
  inFlight: () => number = () => 0;
  private saidInFlight = 0;
  private served = new Map<string, number[]>();

  constructor(port: MessagePort, private readonly told: (message: Down) => void) {
    this.out = new Batch((batch) => port.postMessage(batch));
    this.out.beforeFlush = () => {
      this.report();
      if (this.committing.length === 0) return;
      const waiters = this.committing;
      const rows = this.rows;
      this.committing = [];
      this.rows = [];
      this.call({ t: 'commit', id: 0 }).then(() => {
        for (const w of waiters) w(null);
        this.onCommitted?.(rows); // (after the responses: the log's formatting need not delay them)
      }, (err: unknown) => {
        for (const w of waiters) w(err);
        // Not committed: logged as their clients were told (an answer became a 500 not recorded), as the main thread's log does.
        this.onCommitted?.(rows.map(asToldUncommitted));
      });
    };
    port.on('message', (batch: Down[]) => { for (const m of batch) this.receive(m); });
  }

  /** A success a route had that changed nothing: told with the next batch. */
  succeeded(decision: string, latencyMs: number): void {
    let list = this.served.get(decision);
    if (!list) this.served.set(decision, list = []);
    list.push(latencyMs);
  }

  /**
   * Tells the main thread the load and the successes, when there is something new: with every
   * batch, and on a timer (a request that needs nothing of the main thread until it ends, an
   * operator key's, changes the count without a batch).
   */
  report(): void {
    const inFlight = this.inFlight();
    if (this.served.size === 0 && inFlight === this.saidInFlight) return;
    this.saidInFlight = inFlight;
    this.out.send({ t: 'load', inFlight, served: [...this.served] });
    this.served = new Map();
  }

  /** Calls waiting for a reply (a graceful stop waits for none to be left). */
  get pending(): number {
    return this.calls.size;
  }

  send(message: Up): void {
    this.out.send(message);
  }

  /** Posts what is queued now (at a stop). */
  flush(): void {
    this.out.flush();
  }

  private call(message: Up & { id: number }): Promise<unknown> {
    const id = this.nextId++;
    message.id = id;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.out.send(message);
    });
  }

  private receive(m: Down): void {
    if (m.t === 'reply' || m.t === 'fail') {
      const call = this.calls.get(m.id);
      if (!call) return;
      this.calls.delete(m.id);
      if (m.t === 'reply') call.resolve(m.value);
      else call.reject(fromWire(m.error));
      return;
    }
    this.told(m);
  }

  // -- the admission store: every request of a stored key, or of a metered workspace, is admitted by the main thread

  /** Operator keys (config's, never revoked, without limits) in an unmetered workspace need no one; any other key is checked where revocations and counts are exact. */
  needed(chain: readonly KeyRecord[], ws: Workspace): boolean {
    return ws.metered || chain.some((k) => !isOperatorKey(k));
  }

  admit(rid: string, chain: readonly KeyRecord[], reserve: Reservation, ws: Workspace, holdNano: number,
    insufficient: (availableNano: number) => GatewayError): Promise<HeldAdmission> {
    return this.call({ t: 'admit', id: 0, rid, chain: chain.map((k) => k.id), tokens: reserve.tokens, nano: reserve.nano, ws: ws.id, hold: holdNano }).then((value) => {
      const reply = value as AdmitReply;
      if ('credits' in reply) throw insufficient(reply.credits);
      return new HeldByMain(this, reply.aid, reply.headers);
    });
  }

  /**
   * Releases an admission's holds (the balance change travels with the row). Settles with
   * the turn's commit request, which the main thread answers after everything sent before it.
   */
  release(aid: number, tokens: number, chargeNano: number): Promise<void> {
    this.out.send({ t: 'finish', aid, tokens, charge: chargeNano });
    return new Promise((done) => this.committing.push(() => done()));
  }

  // -- the row sink

  append(row: LedgerRow): void {
    if (this.onCommitted) this.rows.push(row);
    this.out.send({ t: 'row', row });
  }

  whenCommitted(done: (err: unknown) => void): void {
    this.committing.push(done);
    this.out.schedule();
  }

  // -- the worker pool

  run(task: WorkerTask): Promise<WorkerResult> {
    return this.call({ t: 'pool', id: 0, task }) as Promise<WorkerResult>;
  }
}

/** Holds the main thread granted, released through it once. */
class HeldByMain implements HeldAdmission {
  released: Promise<void> | null = null;
  constructor(private readonly link: MainLink, private readonly aid: number, readonly headers: readonly Header[]) {}

  finish(tokens: number, chargeNano: number): void {
    if (this.released) return;
    this.released = this.link.release(this.aid, tokens, chargeNano);
  }
}
