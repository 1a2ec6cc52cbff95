// What one request holds while it is answered: its admission (a concurrency slot, rate
// and budget reservations), a credit hold on its workspace, and a place in the in-flight
// count; and the right to write its one ledger row. Whoever ends the request (an answer,
// a refusal, an upstream failure, a client that left) releases the holds through here, so
// they are released exactly once on every path, and a request never gets two rows.
import type { Admission, HeldAdmission, Limits } from '../accounts/limits.js';
import type { Workspace, Workspaces } from '../accounts/workspaces.js';
import type { KeyRecord } from '../accounts/keys.js';

export interface TicketServices {
  readonly workspaces: Workspaces;
  readonly limits: Limits;
  /** The gateway's count of admitted requests not yet settled (what a graceful stop waits for). */
  inFlight: number;
}

/** An answer waits at most this long for the shared store to take its finish (cluster mode). */
const RELEASE_WAIT_MS = 200;

/** Runs `done` once `released` settles (the shared store took the finishes), or after RELEASE_WAIT_MS: their leases free them then. */
export function whenReleased(released: Promise<unknown>, done: () => void): void {
  let ran = false;
  const once = () => { if (!ran) { ran = true; clearTimeout(timer); done(); } };
  const timer = setTimeout(once, RELEASE_WAIT_MS);
  void released.then(once);
}

export class Ticket {
  private ws: Workspace | null = null;
  private admission: Admission | null = null;
  /** Cluster mode: the holds are in the shared store (limits, credits); released through it. */
  private shared: HeldAdmission | null = null;
  private holdNano = 0;
  private holding = false;
  private recordedRow = false;

  constructor(private readonly s: TicketServices, readonly key: KeyRecord) {}

  /** Takes the holds at admission (the credit check that sized `holdNano` ran in the same turn). */
  hold(ws: Workspace, admission: Admission | null, holdNano: number): void {
    if (this.holding || this.recordedRow) return;
    this.holding = true;
    this.ws = ws;
    this.admission = admission;
    this.holdNano = holdNano;
    if (holdNano) this.s.workspaces.reserve(ws, holdNano);
    this.s.inFlight++;
  }

  /** Takes the holds the shared store granted (cluster mode): released through it, with the balance change. */
  holdShared(ws: Workspace, shared: HeldAdmission): void {
    if (this.holding || this.recordedRow) { shared.finish(0, 0, 0); return; }
    this.holding = true;
    this.ws = ws;
    this.shared = shared;
    this.s.inFlight++;
  }

  /**
   * Runs `done` (the answer's last bytes) once what the request held is given back
   * everywhere. Cluster mode: once Redis has taken the finish, so the client's next request,
   * through any replica, finds its concurrency slot, budget reserve and credit hold free (a
   * Redis round trip; at most RELEASE_WAIT_MS if Redis does not answer: the lease frees them
   * then). One node: at once (released in memory already).
   */
  afterRelease(done: () => void): void {
    const released = this.shared?.released;
    if (released) whenReleased(released, done);
    else done();
  }

  /** The admission's rate-limit headers, for the answer. */
  get limitHeaders(): ReadonlyArray<readonly [string, string]> {
    return this.admission?.headers ?? this.shared?.headers ?? [];
  }

  get admitted(): boolean {
    return this.holding;
  }

  /** Releases what is held, counting what the request really used; later calls do nothing. */
  release(tokens: number, chargeNano: number): void {
    if (!this.holding) return;
    this.holding = false;
    if (this.holdNano) this.s.workspaces.release(this.ws!, this.holdNano);
    if (this.admission) this.s.limits.finish(this.key, this.admission, tokens, chargeNano);
    // (the same change as the row's delta_nano: settle.ts charges metered workspaces only)
    if (this.shared) this.shared.finish(tokens, chargeNano, this.ws!.metered ? -chargeNano : 0);
    this.s.inFlight--;
  }

  /** The request's row is written (or being written). */
  get recorded(): boolean {
    return this.recordedRow;
  }

  /** True the first time only: the caller writes the request's one ledger row. */
  claimRow(): boolean {
    if (this.recordedRow) return false;
    this.recordedRow = true;
    return true;
  }
}
