// SLUICE_THREADS: the main thread's side. It starts threads-1 event-loop threads (thread.ts),
// each a uWS app on the same port (the kernel spreads connections over them and the main
// thread's own app), and serves what they ask of it (thread-link.ts): admissions against its
// limits and credits, their release, ledger rows and their commit, worker-pool tasks. So
// limits, credit holds and balances are exact across threads: one thread keeps them. It
// tells every thread of each key and workspace it puts in force. A thread that dies has its
// holds released and is started again; a graceful stop drains every thread first. In
// cluster mode the main thread admits its threads' requests through the shared store
// (Redis), as its own: the replica's threads are one client of it.
import { Worker } from 'node:worker_threads';
import type { KeyRecord, KeyRing } from '../accounts/keys.js';
import type { Ledger } from '../accounts/ledger.js';
import { localWhenUnavailable, type Admission, type AdmissionStore, type HeldAdmission, type Limits } from '../accounts/limits.js';
import type { Workspace, Workspaces } from '../accounts/workspaces.js';
import type { RouteHealth } from '../router/health.js';
import { Errors, GatewayError } from '../errors.js';
import { whenReleased } from '../gateway/ticket.js';
import type { WorkerPool } from '../workers/pool.js';
import { Batch, toWire, type AdmitReply, type Down, type Up } from './thread-link.js';

/** The shared store's answer to a credit check too short: the reply says what is available. */
const SHORT = new GatewayError(Errors.insufficientCredits, 'Insufficient credits.');

/** What a thread is started with (its config comes from the same environment and file). */
export interface ThreadData {
  host: string;
  port: number;
  /** The main thread's private socket, for what a thread hands over (handover.ts). */
  socketPath: string;
  index: number;
}

export interface HostDeps {
  health: RouteHealth;
  keys: KeyRing;
  workspaces: Workspaces;
  limits: Limits;
  ledger: Ledger;
  pool: WorkerPool;
  /** Cluster mode: where limits and credits are kept (Redis); null on one node. */
  shared: AdmissionStore | null;
}

/** What an admission holds: in this thread's memory (`admission`, `hold`), or in the shared store (`shared`). */
interface Held { key: KeyRecord; admission: Admission | null; ws: Workspace; hold: number; shared: HeldAdmission | null }

class Slot {
  worker: Worker | null = null;
  out: Batch<Down> | null = null;
  /** Its admissions not yet released, by id: released at once if the thread dies. */
  readonly held = new Map<number, Held>();
  nextAid = 1;
  /** Sync, drain and close requests waiting for the thread's answer, by id. */
  readonly asked = new Map<number, () => void>();
  nextAsk = 1;
  ready = false;
  /** Its requests being answered now, as it last said. */
  inFlight = 0;
  /** Cluster mode: the shared store taking the finishes since its last commit request (that request's reply waits for them). */
  releasing: Array<Promise<void>> = [];
  constructor(readonly index: number) {}
}

export class ThreadHost {
  private readonly slots: Slot[] = [];
  private stopping = false;

  constructor(private readonly d: HostDeps, private readonly count: number, private readonly base: Omit<ThreadData, 'index'>) {
    // Every key and workspace put in force here, to every thread (in the order they happened).
    d.keys.onChange = (record) => this.tell({ t: 'key', record });
    d.health.onState = (decision, s) => this.tell({ t: 'route', decision, s });
    d.workspaces.onChange = (ws) => this.tell({ t: 'workspace', record: { ...ws } });
    // A change answers once every thread has it: the caller's next request, through any thread, finds it in force.
    d.keys.propagated = d.workspaces.propagated = d.health.propagated = () => this.synced();
  }

  /** Settles once every running thread has applied what it was told so far (a thread that does not answer in a second is not waited for). */
  private synced(): Promise<void> {
    return this.ask((id) => ({ t: 'sync', id }), 1000);
  }

  /** Asks every running thread, and waits (at most `waitMs`) for each to say it is done, or to end. */
  private ask(message: (id: number) => Down, waitMs: number): Promise<void> {
    return Promise.all(this.slots.filter((s) => s.out).map((s) => new Promise<void>((done) => {
      const id = s.nextAsk++;
      const timer = setTimeout(() => { s.asked.delete(id); done(); }, waitMs);
      s.asked.set(id, () => { clearTimeout(timer); done(); });
      s.out!.send(message(id));
    }))).then(() => undefined);
  }

  /** The threads' requests being answered now (as each last said: within a quarter second). */
  inFlight(): number {
    let n = 0;
    for (const s of this.slots) n += s.inFlight;
    return n;
  }

  /** Starts the threads; resolves once each listens (rejects with the first one's failure). */
  async start(): Promise<void> {
    for (let i = 1; i < this.count; i++) this.slots.push(new Slot(i));
    await Promise.all(this.slots.map((s) => this.spawn(s)));
  }

  private tell(message: Down): void {
    for (const s of this.slots) s.out?.send(message);
  }

  private spawn(slot: Slot): Promise<void> {
    return new Promise((resolve, reject) => {
      const data: ThreadData = { ...this.base, index: slot.index };
      const worker = new Worker(new URL('../thread.js', import.meta.url), { workerData: data });
      slot.worker = worker;
      slot.out = new Batch((batch) => worker.postMessage(batch));
      slot.ready = false;
      for (const [decision, s] of this.d.health.states()) slot.out.send({ t: 'route', decision, s });
      worker.on('message', (batch: Up[]) => {
        for (const m of batch) {
          if (m.t === 'ready') { slot.ready = true; resolve(); continue; }
          if (m.t === 'failed') { reject(new Error(m.message)); continue; }
          this.receive(slot, m);
        }
      });
      worker.on('error', (err) => console.error(`thread ${slot.index}: ${err instanceof Error ? err.stack ?? err.message : String(err)}`));
      worker.on('exit', (code) => {
        const wasReady = slot.ready;
        slot.worker = null;
        slot.out = null;
        slot.ready = false;
        slot.inFlight = 0;
        this.releaseAll(slot);
        slot.releasing = []; // (no commit of that thread's is left to wait for them)
        for (const done of slot.asked.values()) done();
        slot.asked.clear();
        if (!wasReady) { reject(new Error(`thread ${slot.index} exited (${code}) before it listened`)); return; }
        if (this.stopping) return;
        // Its connections are gone with it; what it held is back. Another takes its place.
        console.error(`thread ${slot.index} exited (${code}); starting another`);
        setTimeout(() => { if (!this.stopping) this.spawn(slot).catch((err: unknown) => console.error(`thread ${slot.index} could not start again: ${String(err)}`)); }, 1000).unref();
      });
    });
  }

  private receive(slot: Slot, m: Up): void {
    const out = slot.out;
    if (!out) return;
    const fail = (id: number, err: unknown) => out.send({ t: 'fail', id, error: toWire(err) });
    switch (m.t) {
      case 'admit':
        try {
          const value = this.admit(slot, m);
          if (value instanceof Promise) value.then((v) => out.send({ t: 'reply', id: m.id, value: v }), (err: unknown) => fail(m.id, err));
          else out.send({ t: 'reply', id: m.id, value });
        } catch (err) {
          fail(m.id, err);
        }
        return;
      case 'finish': // (answered by the commit request that follows it)
        this.release(slot, m.aid, m.tokens, m.charge);
        return;
      case 'row': {
        // (its workspace's balance changes here, by the row's delta, as on one thread)
        const ws = this.d.workspaces.get(m.row.workspace);
        this.d.ledger.append(m.row, ws, true);
        return;
      }
      case 'commit': {
        // Cluster mode: the answers wait, as the main thread's own do (Ticket.afterRelease), until
        // the shared store has their holds back, so the client's next request finds them free.
        const releasing = slot.releasing;
        slot.releasing = [];
        this.d.ledger.whenCommitted((err) => {
          if (err) { fail(m.id, err); return; }
          if (releasing.length === 0) { slot.out?.send({ t: 'reply', id: m.id, value: null }); return; }
          whenReleased(Promise.all(releasing), () => slot.out?.send({ t: 'reply', id: m.id, value: null }));
        });
        return;
      }
      case 'pool':
        this.d.pool.runTask(m.task).then((value) => slot.out?.send({ t: 'reply', id: m.id, value }), (err: unknown) => { if (slot.out) fail(m.id, err); });
        return;
      case 'health':
        this.d.health.heard(m.e);
        return;
      case 'load':
        slot.inFlight = m.inFlight;
        for (const [decision, latencies] of m.served) this.d.health.tally(decision, latencies);
        return;
      case 'done': {
        const done = slot.asked.get(m.id);
        slot.asked.delete(m.id);
        done?.();
        return;
      }
      default:
        return;
    }
  }

  /**
   * The checks one thread makes in admit.ts, with this thread's records: revocation, then
   * (cluster mode, when the request needs them) the shared store's limits and credits, else
   * this thread's credits and limits; then the holds.
   */
  private admit(slot: Slot, m: Extract<Up, { t: 'admit' }>): AdmitReply | Promise<AdmitReply> {
    const chain = [];
    for (const id of m.chain) {
      const key = this.d.keys.get(id);
      if (!key || key.revoked_at !== null) throw new GatewayError(Errors.invalidKey, 'Invalid API key (it was revoked).');
      chain.push(key);
    }
    const ws = this.d.workspaces.get(m.ws);
    if (!ws) throw new GatewayError(Errors.notFound, `No workspace with id ${m.ws}.`);
    const shared = this.d.shared;
    if (shared?.needed(chain, ws)) return this.admitShared(slot, shared, m, chain, ws);
    return this.admitHere(slot, m, chain, ws);
  }

  /** Cluster mode: one script in Redis checks, counts and holds, as for the main thread's own requests (stages/admit.ts). */
  private admitShared(slot: Slot, shared: AdmissionStore, m: Extract<Up, { t: 'admit' }>, chain: KeyRecord[], ws: Workspace): Promise<AdmitReply> {
    const out = slot.out;
    let credits = 0;
    const short = (available: number) => { credits = available; return SHORT; };
    return shared.admit(m.rid, chain, { tokens: m.tokens, nano: m.nano }, ws, m.hold, short).then((a): AdmitReply => {
      // A thread that ended meanwhile had its holds released (releaseAll): this one's go back at once.
      if (slot.out !== out || !out) { a.finish(0, 0, 0); throw new GatewayError(Errors.clientClosed, 'The thread serving the request ended.'); }
      const aid = slot.nextAid++;
      slot.held.set(aid, { key: chain[0]!, admission: null, ws, hold: 0, shared: a });
      return { aid, headers: [...a.headers] };
    }, (err: unknown): AdmitReply => {
      if (err === SHORT) return { credits };
      if (localWhenUnavailable(shared, ws, err)) return this.admitHere(slot, m, chain, ws);
      throw err;
    });
  }

  /** One node's admission: this thread's records. */
  private admitHere(slot: Slot, m: Extract<Up, { t: 'admit' }>, chain: KeyRecord[], ws: Workspace): AdmitReply {
    if (ws.metered) {
      const available = this.d.workspaces.availableNano(ws);
      if (available < m.hold) return { credits: available };
    }
    const admission = this.d.limits.admit(chain, { tokens: m.tokens, nano: m.nano });
    if (m.hold) this.d.workspaces.reserve(ws, m.hold);
    const aid = slot.nextAid++;
    slot.held.set(aid, { key: chain[0]!, admission, ws, hold: m.hold, shared: null });
    return { aid, headers: admission ? [...admission.headers] : [] };
  }

  private release(slot: Slot, aid: number, tokens: number, charge: number): void {
    const h = slot.held.get(aid);
    if (!h) return;
    slot.held.delete(aid);
    if (h.hold) this.d.workspaces.release(h.ws, h.hold);
    if (h.admission) this.d.limits.finish(h.key, h.admission, tokens, charge);
    if (h.shared) {
      // (the same change as the row's delta_nano, as Ticket.release gives it)
      h.shared.finish(tokens, charge, h.ws.metered ? -charge : 0);
      if (h.shared.released) slot.releasing.push(h.shared.released);
    }
  }

  private releaseAll(slot: Slot): void {
    for (const aid of [...slot.held.keys()]) this.release(slot, aid, 0, 0);
  }

  /**
   * A graceful stop: each thread stops listening, finishes what it serves (by `deadline`) and
   * sends its last rows; a request that comes meanwhile on a connection it has open is
   * answered 503, as on the main thread, until `close`.
   */
  async drain(deadline: number): Promise<void> {
    this.stopping = true;
    await this.ask((id) => ({ t: 'drain', id, deadline }), Math.max(0, deadline - Date.now()) + 1000);
  }

  /** The end of a stop: each thread closes its connections, and is ended. */
  async close(): Promise<void> {
    this.stopping = true;
    await this.ask((id) => ({ t: 'close', id }), 1000);
    await Promise.all(this.slots.map((s) => s.worker?.terminate()));
  }
}
