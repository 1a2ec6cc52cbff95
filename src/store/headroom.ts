// Room held on the disk ahead of the store's file, so that no write of the store's ever
// meets a full disk.
//
// Why: lmdb-js 3.5.6, the newest on npm, overruns its heap when a page write fails
// (mdb_page_flush formats the error into malloc(100), with sizes it never set), and the
// process aborts ("malloc(): corrupted top size"): a disk filled by anyone while requests were
// in flight ended the gateway in most runs. Its binary cannot be rebuilt here (no install
// scripts), so the failing write must not happen.
//
// How: LMDB writes pages inside what it uses of its file or just past it, never elsewhere.
// Without a writable map, that is the file's end: blocks reserved past it with fallocate(2) in
// FALLOC_FL_KEEP_SIZE mode (the file's size and bytes unchanged) take the writes that grow the
// file, and another process filling the disk cannot take them. With a writable map (the
// store's default, lmdb.ts), the file is as long as the map from the start, sparse, and LMDB
// writes its pages into the map: a page of a hole written on a full disk is a SIGBUS. There the
// end is LMDB's last page (`usedEnd`), and the blocks after it are allocated inside the file
// (fallocate's default mode, the size unchanged), which the map's writes then fill. The reservation is renewed as the file grows into it;
// while it cannot be (the disk full) and less than `floor` of it is left, `room` is false and
// the store refuses writes before they reach LMDB (NoRoomError): a request whose row cannot
// be recorded is refused, as on a failed commit, and the process goes on. Once space is
// freed the reservation is renewed and writes resume.
//
// The writes that can be in flight between two checks (every 25 ms) must fit in `floor`:
// 16 MiB is some hundred times what this gateway writes in 25 ms at full load with 1 MiB
// cache entries, and LMDB reuses its freed pages before it grows the file.
//
// Node has no fallocate binding, so util-linux's fallocate(1) makes the call, run by one shell
// the store starts with (Fallocator: a spawn per call would stall the event loop), a few times
// per 32 MiB the file grows. Where it is missing or the filesystem does not support it (some
// network filesystems), the store goes unguarded, as before, with one line in the log. On a copy-on-write filesystem (btrfs,
// ZFS) a page overwritten inside the file needs new blocks too, which no reservation holds.
import { spawn, type ChildProcess } from 'node:child_process';
import { rm, stat, statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { diskFull } from '../errors.js';

const MiB = 2 ** 20;

/**
 * Refuses a change that must be stored, before anything of it is made in memory, while the
 * disk has no room for the store: a 503 the caller may retry, rather than a change in force
 * here that a restart would undo (a key, a workspace). `what`: the change, for the message.
 */
export function mustStore(headroom: Pick<Headroom, 'room'>, what: string): void {
  if (!headroom.room) throw diskFull(`cannot store ${what}: nothing was changed.`);
}

/** A store write refused because the disk has no room left for the store (see Headroom). */
export class NoRoomError extends Error {
  readonly code = 'ENOSPC';
  constructor() {
    super('No room left on the disk for the store: writes are refused until space is freed.');
    this.name = 'NoRoomError';
  }
}

/**
 * Reserves `length` bytes of disk past `offset` in `file`: 'ok', 'full' (no space), or
 * 'unsupported' (with why). `pastEnd`: the blocks are past the file's end, its size unchanged
 * (FALLOC_FL_KEEP_SIZE); else inside it (a range past the end would grow the file).
 */
export type Reserve = (file: string, offset: number, length: number, pastEnd: boolean) => Promise<{ result: 'ok' | 'full' | 'unsupported'; why?: string }>;

/**
 * fallocate(1), run by one shell spawned once (at start) and fed a line per reservation: a
 * child process spawned per reservation would fork this whole process each time, which stalls
 * the event loop while its page tables are copied (7 ms here, 26 ms with a 1 GiB heap). The
 * shell's own forks of fallocate are of a small process. One reservation at a time.
 */
export class Fallocator {
  private readonly shell: ChildProcess;
  private out = '';
  /** What fallocate said before its exit code's line. */
  private said = '';
  private waiting: Array<(code: number, said: string) => void> = [];
  private dead: string | null = null;
  private last: Promise<unknown> = Promise.resolve();

  /** `env`: the shell's environment (where it finds fallocate); this process's by default. */
  constructor(env: NodeJS.ProcessEnv = process.env) {
    // (a line in: k (past the end, --keep-size) or i (inside the file), offset, length, file; out: what fallocate said, if anything, then `=` and its exit code on a line of its own)
    const script = 'while read -r mode off len file; do keep=; [ "$mode" = k ] && keep=--keep-size; out=$(fallocate $keep --offset "$off" --length "$len" -- "$file" 2>&1); rc=$?; [ -n "$out" ] && printf "%s\\n" "$out"; printf "=%s\\n" "$rc"; done';
    // (LC_ALL=C: a full disk is told by fallocate's English message, whatever the locale)
    this.shell = spawn('/bin/sh', ['-c', script], { stdio: ['pipe', 'pipe', 'ignore'], env: { ...env, LC_ALL: 'C' } });
    this.shell.on('error', (err) => this.end(`sh: ${err.message}`));
    this.shell.on('exit', () => this.end('the shell running fallocate exited'));
    this.shell.stdin!.on('error', () => { /* (the shell gone: 'exit' says so) */ });
    this.shell.stdout!.setEncoding('utf8');
    this.shell.stdout!.on('data', (chunk: string) => {
      this.out += chunk;
      let nl: number;
      while ((nl = this.out.indexOf('\n')) >= 0) {
        const line = this.out.slice(0, nl);
        this.out = this.out.slice(nl + 1);
        const rc = /^=(\d+)$/.exec(line);
        if (!rc) { this.said += `${line} `; continue; }
        const said = this.said.trim();
        this.said = '';
        this.waiting.shift()?.(Number(rc[1]), said);
      }
      if (!this.waiting.length) this.hold(false);
    });
    // (it keeps the process alive only while a reservation is asked: the store's close ends it, and a killed gateway's shell reads the end of its input)
    this.shell.unref();
    (this.shell.stdin as unknown as { unref?: () => void }).unref?.();
    this.hold(false);
  }

  private hold(on: boolean): void {
    const out = this.shell.stdout as unknown as { ref?: () => void; unref?: () => void };
    if (on) out.ref?.();
    else out.unref?.();
  }

  readonly reserve: Reserve = (file, offset, length, pastEnd) => {
    const next = this.last.then(() => this.ask(file, offset, length, pastEnd));
    this.last = next;
    return next;
  };

  private ask(file: string, offset: number, length: number, pastEnd: boolean): Promise<Awaited<ReturnType<Reserve>>> {
    if (this.dead) return Promise.resolve({ result: 'unsupported', why: this.dead });
    if (/[\r\n]/.test(file)) return Promise.resolve({ result: 'unsupported', why: 'a line break in the store\'s path' });
    return new Promise((resolve) => {
      this.waiting.push((code, said) => {
        if (code === 0) resolve({ result: 'ok' });
        else if (/no space left/i.test(said)) resolve({ result: 'full' });
        else resolve({ result: 'unsupported', why: (said || `fallocate exited ${code}`).slice(0, 300) });
      });
      this.hold(true);
      this.shell.stdin!.write(`${pastEnd ? 'k' : 'i'} ${offset} ${length} ${file}\n`);
    });
  }

  private end(why: string): void {
    this.dead ??= why;
    for (const answer of this.waiting.splice(0)) answer(-1, why);
    this.hold(false);
  }

  /** The shell is gone (it could not start, or exited): a new Fallocator is needed. */
  get gone(): boolean {
    return this.dead !== null;
  }

  close(): void {
    this.dead ??= 'closed';
    this.shell.stdin!.end();
    this.shell.kill();
  }
}

/** The disk's space for unprivileged writers, and its size, in bytes. */
async function diskSpace(dir: string): Promise<{ free: number; total: number }> {
  const fs = await statfs(dir);
  return { free: Number(fs.bavail) * Number(fs.bsize), total: Number(fs.blocks) * Number(fs.bsize) };
}

export interface HeadroomOptions {
  /** Below this much reserved room, with none to be had, writes are refused (at most a 16th of the disk). */
  floor: number;
  /** How much room is kept reserved ahead of the file, renewed when half is used (at most a quarter of the disk). */
  ahead: number;
  /** How often the file's size is read. */
  everyMs: number;
  /** After a renewal found the disk full, how long until the next try. */
  retryMs: number;
}

export const HEADROOM_DEFAULTS: HeadroomOptions = { floor: 16 * MiB, ahead: 64 * MiB, everyMs: 25, retryMs: 500 };

export class Headroom {
  /** Writes may go to the store (the reservation holds at least `floor`, or the store is unguarded). */
  room = true;
  /** False where the room cannot be reserved (no fallocate(1), a filesystem without it): writes are never refused. */
  guarded = true;
  /** Set by the store at each write it lets through: the file is read only when something was written since (an idle gateway reads nothing). */
  wrote = true;
  /** Where the reservation ends (bytes from the file's start); 0 until the first one. */
  private end = 0;
  private size = 0;
  /** The file's allocated blocks, in bytes (those past its end: a reservation, maybe an earlier run's). */
  private allocated = 0;
  private checking = false;
  private stopped = false;
  private failedReserve = false;
  private failedCheck = false;
  private nextTry = 0;
  private timer: NodeJS.Timeout | null = null;
  /** `opts.floor` and `opts.ahead`, as shares of a small disk (start). */
  private floor: number;
  private ahead: number;

  constructor(readonly file: string, private readonly opts: HeadroomOptions = HEADROOM_DEFAULTS,
    private readonly given: Reserve | null = null, private readonly log: (line: string) => void = (l) => console.error(l),
    private readonly disk: (dir: string) => Promise<{ free: number; total: number }> = diskSpace) {
    this.floor = opts.floor;
    this.ahead = opts.ahead;
  }

  /** fallocate(1)'s shell, when no other way to reserve was given. */
  private fallocator: Fallocator | null = null;
  private reserve: Reserve = async () => ({ result: 'unsupported', why: 'not started' });

  /** LMDB's end in its file (a writable map: the file is as long as the map); null: the file's size. */
  private usedEnd: (() => number) | null = null;

  /** fallocate(1)'s shell (or the reservation given), started on first use. */
  private reserver(): Reserve {
    if (this.given) return this.given;
    this.fallocator ??= new Fallocator();
    return this.fallocator.reserve;
  }

  /**
   * Room can be reserved inside a file beside the store's (fallocate(1) is there, the
   * filesystem supports it, a block is free): only then does the store map its file writable,
   * as on a full disk an unguarded writable map ends the process with a SIGBUS.
   */
  async canReserveInside(): Promise<boolean> {
    const probe = `${this.file}-probe`;
    try {
      return (await this.reserver()(probe, 0, 4096, false)).result === 'ok';
    } finally {
      await rm(probe, { force: true });
    }
  }

  /**
   * The first reservation (before the store serves), then a check every `everyMs`.
   * `usedEnd`: where LMDB's pages end in the file, when it is mapped writable (see the top).
   */
  async start(usedEnd: (() => number) | null = null): Promise<void> {
    this.usedEnd = usedEnd;
    this.reserve = this.reserver();
    // (on a small disk, a share of it: 64 MiB held on a 100 MiB volume would be most of it)
    const { total } = await this.disk(dirname(this.file));
    // (never under 4 MiB, the opts' own floor permitting: one commit of large cache entries, or
    // one spill of LMDB's dirty pages, can be a few MiB, and must fit in what is left)
    this.floor = Math.min(this.opts.floor, Math.max(4 * MiB, Math.floor(total / 16 / MiB) * MiB));
    this.ahead = Math.max(2 * this.floor, Math.min(this.opts.ahead, Math.floor(total / 4 / MiB) * MiB));
    await this.check();
    this.timer = setInterval(() => void this.check(), this.opts.everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.fallocator?.close();
    this.fallocator = null;
    this.stopped = true;
  }

  /** Reads the file's size, renews the reservation when half of it is used, and sets `room`. */
  async check(now = Date.now()): Promise<void> {
    if (this.checking || !this.guarded || this.stopped) return;
    // (nothing written since the last read, and nothing to retry: the file has not grown)
    if (!this.wrote && this.room && this.end - this.size >= this.ahead / 2) return;
    this.wrote = false;
    this.checking = true;
    try {
      // A writable map's end is LMDB's (read in memory): the file is read only when a renewal
      // is due, for its allocated blocks. Under load this check runs 40 times a second, and a
      // stat per check (a promise and a trip to libuv's pool) was ~1% of the gateway's CPU.
      if (this.usedEnd) this.size = this.usedEnd();
      const renew = () => this.end - this.size < this.ahead / 2 && now >= this.nextTry;
      if (!this.usedEnd || renew()) {
        const st = await stat(this.file);
        // (the store closed meanwhile: LMDB's end can no longer be read, nor need be)
        if (this.stopped) return;
        this.size = this.usedEnd ? this.usedEnd() : st.size;
        this.allocated = st.blocks * 512;
      }
      if (renew()) await this.renew(now);
      // (a check that was under way when the store closed says nothing after)
      if (!this.stopped) this.set(!this.guarded || this.end - this.size >= this.floor);
    } catch (err) {
      // (the file gone: the store is closing; anything else is said once, and the room stays as it was)
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' && !this.failedCheck) this.log(`store: the room check failed: ${String(err)}`);
      this.failedCheck = true;
    } finally {
      this.checking = false;
    }
  }

  private async renew(now: number): Promise<void> {
    const from = this.size;
    /** Reserved up to here already: only an ask that reaches past it gains anything. */
    const held = Math.max(from, this.end);
    const disk = await this.disk(dirname(this.file));
    // What a reservation could reach: the disk's free space, less 1 MiB so as not to take the
    // last of it, plus blocks already allocated past what is held (an earlier run's
    // reservation: asking for those again needs no space). Only fallocate's answer says what
    // was reserved; this only sizes the ask.
    const free = disk.free + Math.max(0, this.allocated - held);
    let length = Math.min(this.ahead, Math.floor((held - from + free - MiB) / MiB) * MiB);
    // (an ask within what is held would succeed and gain nothing: on a full disk, asked again at every check)
    while (length >= MiB && from + length > held) {
      const { result, why } = await this.reserve(this.file, from, length, this.usedEnd === null);
      // (the store closed meanwhile, its shell with it: nothing to say, and no new shell)
      if (this.stopped) return;
      if (result === 'ok') { this.end = from + length; this.failedReserve = false; return; }
      if (result === 'unsupported') {
        if (/not supported|not found|ENOENT/i.test(why ?? '')) {
          this.guarded = false;
          this.log(`store: no room can be reserved for the store's file (${why ?? 'fallocate failed'}); it goes unguarded, and lmdb-js may abort the process if the disk fills (README: a full disk)`);
          return;
        }
        // Anything else may pass (too many open files, the shell killed): tried again after
        // retryMs, with a new shell if it is gone, the store still guarded meanwhile.
        if (!this.failedReserve) this.log(`store: reserving room for the store's file failed (${why ?? 'fallocate failed'}); trying again`);
        this.failedReserve = true;
        if (this.fallocator?.gone) {
          this.fallocator.close();
          this.fallocator = new Fallocator();
          this.reserve = this.fallocator.reserve;
        }
        break;
      }
      length = Math.floor(length / 2 / MiB) * MiB; // (another writer took some of what statfs saw)
    }
    this.nextTry = now + this.opts.retryMs;
  }

  private set(room: boolean): void {
    if (room === this.room) return;
    this.room = room;
    const left = Math.max(0, this.end - this.size);
    this.log(room
      ? `store: room again on the disk (${(left / MiB).toFixed(0)} MiB reserved ahead of the store's file): writes resume`
      : `store: the disk is full (${(left / MiB).toFixed(1)} MiB reserved ahead of the store's file, none to be had): writes are refused until space is freed`);
  }
}
