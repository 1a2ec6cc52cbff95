// The clients of identical requests that joined a call in flight (in-flight dedupe), as
// the leading call sees them: each gets what the leader's client got so far and then the
// live bytes, with its own figures wherever the leader's stand (the mark), and its own end.
// Who pays is decided here: the leader, until its client leaves; then the first follower,
// then the next as each leaves.
import type { GatewayError } from '../errors.js';
import type { Route } from '../router/catalog.js';
import type { CompletionScan } from '../wire/sse-usage.js';
import type { Usage } from '../wire/usage.js';
import type { Served } from './served.js';
import type { UsageSource } from './settle.js';

/** Stands for "each client's own gateway comment" in a stream (the leader writes its own; each follower its own). */
export const GATEWAY_MARK = Buffer.alloc(0);

export class Followers {
  private readonly list: Served[] = [];
  /** The stream's held usage chunk (the leader's tap): each follower gets it at the mark with its own figures. */
  usageEvent: Buffer | null = null;
  /** What the leader's client was sent so far (a stream's bytes, marks included), for followers that join late; dropped once no more may join. */
  private log: Buffer[] | null = [];
  /** The leader's own client went away while followers still wait: the call goes on for them. */
  leaderGone = false;

  /** No one may join any more: the log is not needed. */
  closed(): void {
    this.log = null;
  }

  /** Keeps a chunk the leader's client was sent (while followers may join). */
  record(chunk: Buffer): void {
    this.log?.push(chunk);
  }

  /** `streaming`: the call's stream already started (the follower gets its headers and the bytes so far). */
  join(f: Served, route: Route, streaming: boolean, usage: Usage | null): void {
    this.list.push(f);
    f.via(route);
    if (!streaming) return;
    f.startStream();
    for (const chunk of this.log ?? []) f.write(chunk === GATEWAY_MARK ? f.comment(usage, this.usageEvent) : chunk);
  }

  /** A chunk to every follower; at the mark, each one's own figures. */
  write(chunk: Buffer, usage: Usage | null): void {
    for (const f of this.list) f.write(chunk === GATEWAY_MARK ? f.comment(usage, this.usageEvent) : chunk);
  }

  startStream(route: Route): void {
    for (const f of this.list) { f.via(route); f.startStream(); }
  }

  end(usage: Usage, source: UsageSource): void {
    for (const f of this.list) f.end(usage, undefined, source);
  }

  sendBuffered(route: Route, body: Buffer, scan: CompletionScan, usage: Usage, source: UsageSource): void {
    for (const f of this.list) { f.via(route); f.sendBuffered(body, scan, usage, source); }
  }

  fail(route: Route, err: GatewayError): void {
    for (const f of this.list) { f.via(route); f.fail(err); }
  }

  /** The shared stream broke after its headers went out: each ends with the same event; a payer owes what streamed so far (`owed`). */
  breakStream(event: Buffer, err: GatewayError, owed: () => Promise<Usage>): void {
    const payer = this.leaderGone ? this.list.find((f) => f.payer) : undefined;
    for (const f of this.list) if (f !== payer) f.breakStream(event, err);
    if (payer) owed().then((u) => payer.breakStream(event, err, u), () => payer.breakStream(event, err));
  }

  /** The leader's client left: true when followers wait (the first of them pays from now on). */
  handOver(): boolean {
    if (!this.list.length) return false;
    this.leaderGone = true;
    this.list[0]!.payer = true;
    return true;
  }

  /**
   * A follower's client went away. While the leader's client is there, nothing changes for
   * the call. Once it is gone, the payer's leaving hands the bill to the next follower.
   * 'cancel': it was the last one, so the call stops; `payer` says whether it owes for it.
   */
  leave(f: Served): { cancel: boolean; payer: boolean } {
    const i = this.list.indexOf(f);
    if (i !== -1) this.list.splice(i, 1);
    if (!this.leaderGone) return NOTHING;
    if (f.payer && this.list[0]) { this.list[0].payer = true; return NOTHING; }
    if (this.list.length) return NOTHING;
    return { cancel: true, payer: f.payer };
  }
}

const NOTHING = { cancel: false, payer: false };
