// Free space on the data dir's filesystem, polled, so the gateway stops writing before the
// disk is full rather than at it.
//
// Why it matters more than an error would: the store maps its file writable (useWritemap,
// lmdb.ts), so a commit writes its pages straight into the mapping with no system call, and
// the file is sparse. Were the disk full when a page of it first gets written, the kernel
// could not give that page a block and would kill the process (SIGBUS), where a write(2)
// would have returned ENOSPC. So while free space is below the reserve, every request that
// would write is refused (503 storage_full, before its key is even read) and /health says
// so; it lifts by itself once space is freed.
import { statfs, statfsSync, type StatsFs } from 'node:fs';

/** How often free space is read (a statfs(2) in libuv's pool: nothing on the event loop). */
export const SPACE_POLL_MS = 250;

export class DiskSpace {
  /** Free space is below the reserve: nothing new may be written. */
  low = false;
  /** Bytes available to this process, at the last reading (Infinity before one, or where statfs fails). */
  free = Number.POSITIVE_INFINITY;
  private timer: NodeJS.Timeout | null = null;
  /** How much the last interval used: the reserve grows to cover a few intervals at that pace. */
  private lastDrop = 0;

  /**
   * `minFreeBytes` 0 turns the guard off. `read` is statfs (a test may give its own).
   * The first reading is taken here, synchronously (once, at start), so a gateway started on
   * a full disk refuses from its first request.
   */
  constructor(
    private readonly dir: string,
    private readonly minFreeBytes: number,
    private readonly read: (dir: string, done: (err: Error | null, stats: Pick<StatsFs, 'bavail' | 'bsize'> | null) => void) => void = (d, done) => statfs(d, done),
    readSync: ((dir: string) => Pick<StatsFs, 'bavail' | 'bsize'>) | null = statfsSync,
  ) {
    if (minFreeBytes <= 0) return;
    if (readSync) {
      try { this.update(readSync(dir)); } catch { /* an unreadable filesystem: the guard stays open */ }
    }
    this.timer = setInterval(() => this.poll(), SPACE_POLL_MS);
    this.timer.unref();
  }

  /** Takes one reading now (the timer's work; tests call it to step). */
  poll(done?: () => void): void {
    this.read(this.dir, (err, stats) => {
      if (!err && stats) this.update(stats);
      done?.();
    });
  }

  private update(stats: Pick<StatsFs, 'bavail' | 'bsize'>): void {
    const free = Number(stats.bavail) * Number(stats.bsize);
    if (Number.isFinite(this.free)) this.lastDrop = Math.max(0, this.free - free);
    this.free = free;
    // The reserve, or four intervals at the pace the last one used space, whichever is more:
    // a burst that would eat the reserve between two readings is refused a reading earlier.
    this.low = free < Math.max(this.minFreeBytes, 4 * this.lastDrop);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
