// An upload's bytes, kept while its request lasts so that each attempt (failover included)
// can send them again, and readable while they still arrive, so the first attempt streams
// the upload upstream as it comes instead of waiting for its end. The first MEMORY_BYTES
// stay in memory (most speech clips are smaller); the rest goes to a file that is unlinked
// as soon as it is opened, so nothing is left on disk by a crash and the space is freed
// when the descriptor closes. Every file operation is async (libuv's pool), positional
// writes one at a time; the writer is told to pause while too much waits to be written.
import { open, unlink, type FileHandle } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Errors, GatewayError } from '../errors.js';

/** Bytes held in memory before the rest spills to the spool file. */
export const MEMORY_BYTES = 1024 * 1024;
/** Bytes waiting for the disk beyond which the writer should pause. */
const PENDING_BYTES = 1024 * 1024;
/** How much a reader takes from the file at a time. */
const READ_BYTES = 256 * 1024;

export class Spool {
  /** Bytes appended so far. */
  size = 0;
  private readonly memory: Buffer[] = [];
  private memoryBytes = 0;
  /** Bytes of the spilled part already in the file (readable from it). */
  private written = 0;
  private pending = 0;
  private file: Promise<FileHandle> | null = null;
  private writes: Promise<unknown> = Promise.resolve();
  private done = false;
  private error: GatewayError | null = null;
  private closed = false;
  private waiters: Array<() => void> = [];
  /** append returned false: onDrain is owed. */
  private paused = false;
  /** Called when the writer may go on after `append` returned false. */
  onDrain: (() => void) | null = null;

  constructor(private readonly dir: string) {}

  /** Keeps `chunk` (the caller gives it up). False: pause until onDrain. */
  append(chunk: Buffer): boolean {
    if (this.done || this.closed || this.error || chunk.length === 0) return true;
    this.size += chunk.length;
    if (this.memoryBytes < MEMORY_BYTES && this.written === 0 && this.pending === 0) {
      this.memory.push(chunk);
      this.memoryBytes += chunk.length;
      this.wake();
      return true;
    }
    const at = this.memoryBytes + this.written + this.pending;
    this.pending += chunk.length;
    const file = this.file ??= this.openFile();
    this.writes = this.writes.then(() => file).then((fh) => (this.closed ? null : fh.write(chunk, 0, chunk.length, at - this.memoryBytes))).then(() => {
      this.pending -= chunk.length;
      this.written += chunk.length;
      this.wake();
      if (this.paused && this.pending <= PENDING_BYTES) {
        this.paused = false;
        this.onDrain?.();
      }
    }, (err: unknown) => this.fail(new GatewayError(Errors.internal, `The upload could not be kept: ${err instanceof Error ? err.message : String(err)}.`)));
    if (this.pending > PENDING_BYTES) this.paused = true;
    return !this.paused;
  }

  /** Every byte has come (readers end once they have read them all). */
  end(): void {
    this.done = true;
    this.wake();
  }

  /** The upload failed: every reader, now or later, throws `err`. */
  fail(err: GatewayError): void {
    if (this.error || this.closed) return;
    this.error = err;
    this.wake();
  }

  /** The request is over: memory and the file are let go; readers end. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.memory.length = 0;
    this.wake();
    const file = this.file;
    if (file) void this.writes.then(() => file).then((fh) => fh.close(), () => undefined).catch(() => undefined);
  }

  get complete(): boolean {
    return this.done && !this.error;
  }

  /** The first `n` bytes that have come (from memory). */
  head(n: number): Buffer {
    const parts: Buffer[] = [];
    let got = 0;
    for (const chunk of this.memory) {
      if (got >= n) break;
      parts.push(chunk.subarray(0, n - got));
      got += Math.min(chunk.length, n - got);
    }
    return Buffer.concat(parts, got);
  }

  /** Every byte from the first, following the upload as it grows; throws the upload's failure. */
  async *read(): AsyncGenerator<Buffer> {
    let index = 0;
    let at = 0;
    for (;;) {
      if (this.error) throw this.error;
      // (a reader still going when the request is over is an upstream call that no longer matters: it must not end its form as if whole)
      if (this.closed) throw new GatewayError(Errors.clientClosed, 'The request is over.');
      if (index < this.memory.length) {
        const chunk = this.memory[index++]!;
        at += chunk.length;
        yield chunk;
        continue;
      }
      if (at < this.memoryBytes + this.written) {
        const want = Math.min(READ_BYTES, this.memoryBytes + this.written - at);
        let got: Buffer;
        try {
          const fh = await this.file!;
          const buf = Buffer.allocUnsafe(want);
          const { bytesRead } = await fh.read(buf, 0, want, at - this.memoryBytes);
          got = buf.subarray(0, bytesRead);
        } catch (err) {
          if (this.closed) continue;
          throw new GatewayError(Errors.internal, `The upload could not be read back: ${err instanceof Error ? err.message : String(err)}.`);
        }
        if (this.closed) continue;
        if (got.length === 0) throw new GatewayError(Errors.internal, 'The upload could not be read back: its file is short.');
        at += got.length;
        yield got;
        continue;
      }
      if (this.done && at >= this.size) return;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  private openFile(): Promise<FileHandle> {
    const path = join(this.dir, `${Date.now().toString(36)}-${randomBytes(8).toString('hex')}`);
    return open(path, 'w+', 0o600).then(async (fh) => {
      await unlink(path);
      return fh;
    });
  }

  private wake(): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
