// The expiry sweep's timer (the caches' entries, stored Responses): every `everyMs`, or every
// `behindMs` while records expire faster than a pass takes away, one pass of `slices` slices of
// `budget` records each, `gapMs` apart. A slice reads each record's first page, and 5,000
// large entries read in one go held the event loop ~80 ms on this VM; 500 at a time, 10–15 ms.

/** What schedules the slices: Node's timers (unref'd: a sweep never keeps the process up), or a test's. */
export interface SweepTimers {
  set(run: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const NODE_TIMERS: SweepTimers = {
  set: (run, ms) => setTimeout(run, ms).unref(),
  clear: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface SweepPace {
  /** Records each slice may read, per database. */
  budget: number;
  /** Slices in a pass. */
  slices: number;
  /** Between two slices of a pass. */
  gapMs: number;
  /** Between passes. */
  everyMs: number;
  /** Between passes while some slice of the last one said it was behind. */
  behindMs: number;
}

export const SWEEP_PACE: SweepPace = { budget: 500, slices: 10, gapMs: 1, everyMs: 10_000, behindMs: 1000 };

export class PeriodicSweep {
  private handle: unknown = null;
  private slice = 0;
  private behind = false;
  private stopped = false;

  /** `step(budget)`: one slice; true when what expires comes faster than the sweep takes it away. */
  constructor(private readonly step: (budget: number) => boolean, private readonly pace: SweepPace = SWEEP_PACE, private readonly timers: SweepTimers = NODE_TIMERS) {}

  start(): void {
    this.schedule(this.pace.everyMs);
  }

  /** No slice runs after this (one in progress finishes, and schedules nothing). */
  stop(): void {
    this.stopped = true;
    if (this.handle !== null) this.timers.clear(this.handle);
    this.handle = null;
  }

  private schedule(ms: number): void {
    if (!this.stopped) this.handle = this.timers.set(this.run, ms);
  }

  private readonly run = (): void => {
    this.handle = null;
    // A slice that fails (a record it cannot handle) is logged and the pass goes on; never fatal.
    try {
      if (this.step(this.pace.budget)) this.behind = true;
    } catch (err) {
      console.error('sweep failed:', err instanceof Error ? err.message : String(err));
    }
    if (++this.slice < this.pace.slices) {
      this.schedule(this.pace.gapMs);
      return;
    }
    const wait = this.behind ? this.pace.behindMs : this.pace.everyMs;
    this.slice = 0;
    this.behind = false;
    this.schedule(wait);
  };
}
