// A buffered answer's bytes, gathered as they arrive. Most answers are one chunk, kept as it
// is. A large one (embeddings of 2,048 inputs: 17 MB as base64, 60 MB as float lists) is
// copied into one buffer as its chunks come, so no single step allocates and fills tens of MB
// at once on the event loop (on this VM a fresh 60 MB buffer costs ~170 ms of page faults,
// however it is filled; Buffer.concat at the end paid all of it in one go). The buffer is the
// declared length's (Content-Length), or, without one, grows fourfold (the largest single copy
// a quarter of the answer's size). Either way with room after it for the gateway member
// (sse-usage.ts's spliceGateway), so the answer with its figures is not copied again.
/** From this size on, an answer is gathered with room after it (below, a copy costs less than the room). */
export const GATHER_FROM = 64 * 1024;
/** Room for the gateway member (its figures are ~1 KB; a larger one is spliced by copying). */
export const GATEWAY_ROOM = 8 * 1024;

export class AnswerBytes {
  private chunks: Buffer[] = [];
  /** The buffer chunks are copied into once the answer is large (null: not yet, or it outgrew a declared length). */
  private whole: Buffer | null = null;
  private filled = 0;
  private declared: number | null = null;
  /** Bytes so far. */
  size = 0;

  /** `most`: the most an answer may be (one over it is refused by the caller: no buffer grows past it). */
  constructor(private readonly most: number) {}

  /** A new answer: `declared`, its Content-Length when it said one. */
  reset(declared: number | null = null): void {
    if (this.chunks.length) this.chunks = []; // (a new array only when the old one was used: this runs for every answer)
    this.size = 0;
    this.filled = 0;
    this.declared = declared !== null && declared >= GATHER_FROM && declared <= this.most ? declared : null;
    // (allocUnsafe: pages are only touched as chunks are copied in, so a length declared and never sent costs no memory)
    this.whole = this.declared === null ? null : Buffer.allocUnsafe(this.declared + GATEWAY_ROOM);
  }

  push(chunk: Buffer): void {
    this.size += chunk.length;
    if (this.whole && !this.fits(chunk.length)) {
      // More than it declared (or than it may be): what was filled goes first, and the rest is joined at the end.
      this.chunks.push(this.whole.subarray(0, this.filled));
      this.whole = null;
      this.declared = -1; // (no buffer again for this answer)
    }
    if (this.whole) {
      this.filled += chunk.copy(this.whole, this.filled);
      return;
    }
    this.chunks.push(chunk);
    if (this.declared === null && this.size >= GATHER_FROM && this.size <= this.most) {
      this.whole = Buffer.allocUnsafe(Math.min(this.most, Math.max(4 * this.size, 1024 * 1024)) + GATEWAY_ROOM);
      for (const c of this.chunks) this.filled += c.copy(this.whole, this.filled);
      this.chunks = [];
    }
  }

  /** Whether `n` more bytes fit in the buffer, grown fourfold when no length was declared. */
  private fits(n: number): boolean {
    const whole = this.whole!;
    const need = this.filled + n;
    if (need <= whole.length - GATEWAY_ROOM) return true;
    if (this.declared !== null || need > this.most) return false;
    const grown = Buffer.allocUnsafe(Math.min(this.most, Math.max(need, 4 * (whole.length - GATEWAY_ROOM))) + GATEWAY_ROOM);
    whole.copy(grown, 0, 0, this.filled);
    this.whole = grown;
    return true;
  }

  /** The bytes so far, in order (not copied). */
  parts(): Buffer[] {
    return this.whole ? [this.whole.subarray(0, this.filled), ...this.chunks] : this.chunks;
  }

  /** The answer as one buffer, and the room it starts (null: none after it); the gathered bytes are let go. */
  take(): { body: Buffer; room: Buffer | null } {
    const { whole, chunks, size, filled } = this;
    this.reset();
    if (whole) return { body: whole.subarray(0, filled), room: whole };
    if (chunks.length === 1) return { body: chunks[0]!, room: null };
    if (size < GATHER_FROM) return { body: Buffer.concat(chunks, size), room: null };
    // (an answer that outgrew its declared length)
    const room = Buffer.allocUnsafe(size + GATEWAY_ROOM);
    let at = 0;
    for (const c of chunks) at += c.copy(room, at);
    return { body: room.subarray(0, size), room };
  }
}
