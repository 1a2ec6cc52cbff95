// Stored responses, per workspace. A response passed through to an OpenAI-kind upstream
// keeps the upstream's id, and the upstream continues any id it knows, whoever asks: so
// each id is recorded under the workspace whose request made it (with the provider that
// holds it, for GET and DELETE), and a previous_response_id is accepted only from that
// workspace (another's does not exist for it); the tokens the response carried also bound the
// next request's prompt, since the upstream adds that conversation to it. A bridged response
// (a route that does not speak the Responses API) is kept here whole: the Response object for
// GET, and its conversation as chat turns, which a later request's previous_response_id puts
// before its own input. `store: false` keeps nothing.
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import type { Way } from '../store/along.js';
import { mustStore } from '../store/headroom.js';
import { ExpirySweep, keyPart, type Store } from '../store/lmdb.js';

const RecordSchema = z.object({
  tokens: z.number().int().nonnegative(),
  exp: z.number(),
  /** Passthrough: the provider entry that holds the response. */
  provider: z.string().nullish(),
  /** Bridged: the chat turns so far (the answer's included) and the Response object. */
  conversation: z.array(z.record(z.string(), z.unknown())).nullish(),
  response: z.record(z.string(), z.unknown()).nullish(),
});
export type StoredResponse = z.infer<typeof RecordSchema>;

/** OpenAI keeps a stored response 30 days. */
const TTL_MS = 30 * 86_400_000;

export class ResponseIds {
  private readonly sweeper: ExpirySweep;
  /**
   * Writes not committed yet, by key: a response kept or forgotten is what the next request
   * sees at once (a retrieve right after the answer, a retrieve right after a delete), not what
   * the store still holds. `way`: how the last of them went (store/along.ts), which the next
   * write of the key follows, so that a DELETE's remove never lands before the put it undoes.
   */
  private readonly pending = new Map<string, { record: StoredResponse | null; way: Way }>();

  /**
   * Cluster mode: where every replica's stored responses are (Postgres), written as they are
   * here and read when a request names one this replica does not have (see `fetched`).
   */
  shared: { save(ws: string, id: string, record: StoredResponse | null): void; load(ws: string, id: string): Promise<unknown> } | null = null;

  constructor(private readonly store: Store) {
    this.sweeper = new ExpirySweep(store.responses);
  }

  /**
   * Cluster mode: makes `id` findable here when another replica stored it (a request that
   * continues it, or GETs or DELETEs it, may come through any replica). Resolves once known
   * here or known to be nowhere; a lookup Postgres cannot answer is left as a miss.
   */
  async fetched(ws: string, id: string): Promise<void> {
    if (!this.shared || id.length > 256 || this.find(ws, id)) return;
    const found = RecordSchema.safeParse(await this.shared.load(ws, id).catch(() => null)); // (a boundary: validated)
    if (!found.success || found.data.exp <= Date.now() || this.find(ws, id)) return;
    void this.keepHere(ws, id, found.data);
  }

  /** A passthrough response completed in `ws`: its id, the tokens of its conversation so far, and who holds it. */
  remember(ws: string, id: string, tokens: number, provider: string | null = null): void {
    void this.write(ws, id, { tokens, exp: Date.now() + TTL_MS, provider });
  }

  /**
   * A bridged response completed in `ws`: kept whole, so GET returns it and a later request can
   * continue it. Resolves once it is committed (true), or lost to a failed commit (false): its
   * answer goes then, so an answer told `store` never outlives its record in a crash.
   */
  keep(ws: string, id: string, tokens: number, conversation: Array<Record<string, unknown>>, response: Record<string, unknown>): Promise<boolean> {
    return this.write(ws, id, { tokens, exp: Date.now() + TTL_MS, provider: null, conversation, response });
  }

  /** A put (or, with null, a remove), seen by find() from now on, and by the store once committed (then the promise resolves: true, or false if lost). */
  private write(ws: string, id: string, record: StoredResponse | null): Promise<boolean> {
    this.shared?.save(ws, id, record);
    return this.keepHere(ws, id, record);
  }

  /** In this replica's store only: a put (or, with null, a remove), seen by find() at once. */
  private keepHere(ws: string, id: string, record: StoredResponse | null): Promise<boolean> {
    const key = [ws, keyPart(id)];
    const pendingKey = `${ws}\u0000${id}`;
    // A passthrough's record (a few numbers) is carried by the ledger's next transaction, with
    // the row of the request that made it: the response no longer waits for a second commit on
    // lmdb-js's writer thread (~140 µs per stored response at concurrency 1, measured). A bridged
    // one holds the conversation, of any size (its copy into the file stays off the event loop):
    // the asynchronous batch, whose commit its answer waits for (`keep`), unless it follows a
    // carried write of its key.
    const bytes = record?.conversation || record?.response ? Infinity : 0;
    const write = this.store.along.write(this.store.responses, key, record ?? undefined, bytes, this.pending.get(pendingKey)?.way ?? null);
    const entry = { record, way: write.way };
    this.pending.set(pendingKey, entry);
    const settled = (committed: boolean) => {
      if (this.pending.get(pendingKey) === entry) this.pending.delete(pendingKey);
      return committed;
    };
    // (lmdb-js's asynchronous put resolves true, or rejects on a failed commit: that is logged where the store is opened)
    return Promise.resolve(write.committed).then((v) => settled(v !== false), () => settled(false));
  }

  /** `id` as `ws` stored it, or null (unknown, expired, or another workspace's). */
  find(ws: string, id: string, now = Date.now()): StoredResponse | null {
    if (id.length > 256) return null;
    const pendingKey = `${ws}\u0000${id}`;
    const pending = this.pending.get(pendingKey);
    if (pending) return pending.record && pending.record.exp > now ? pending.record : null;
    const found = RecordSchema.safeParse(this.store.responses.get([ws, keyPart(id)]));
    return found.success && found.data.exp > now ? found.data : null;
  }

  /** Cluster mode: another replica forgot `id` (DELETE): this one's copy goes too (without writing the shared record again). */
  dropped(ws: string, id: string): void {
    void this.keepHere(ws, id, null);
  }

  /** Throws the 503 a DELETE gets while the store has no room: refused before anything is deleted, here or upstream. */
  mustForget(): void {
    mustStore(this.store.headroom, 'a deletion');
  }

  /**
   * Forgets `id` (DELETE): null when `ws` did not have it; else resolves once the remove is
   * committed (true) or lost to a failed commit (false), which is when the DELETE is answered.
   */
  forget(ws: string, id: string): Promise<boolean> | null {
    if (!this.find(ws, id)) return null;
    return this.write(ws, id, null);
  }

  /** The stored response a request continues, or the 400 OpenAI gives for an unknown id. */
  previous(ws: string, id: string): StoredResponse {
    const found = this.find(ws, id);
    if (!found) throw new GatewayError(Errors.previousResponseNotFound, `Previous response with id '${id.slice(0, 80)}' not found.`, 'previous_response_id');
    return found;
  }

  /** The tokens `id` carries, if `ws` made it; else the 400 for an unknown id. */
  tokensOf(ws: string, id: string): number {
    return this.previous(ws, id).tokens;
  }

  sweep(budget: number): number {
    return this.sweeper.run(budget);
  }
}
