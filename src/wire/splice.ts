// Edits to a JSON object's top-level members made in its bytes, without parsing and
// re-encoding the rest: replace a member's value, drop a member, add members. The gateway
// forwards the caller's body this way (the upstream's model id for the requested slug, the
// gateway's own `provider` pin removed, usage asked for on streams), so a request's
// messages, however large, are copied as bytes rather than JSON.stringify'd (measured: the
// re-encode was the largest single cost of an `openai/…` request in the adapter).
//
// The body has been parsed as an object already (this only finds where its members are).
// Keys are compared decoded (a key written with escapes is the key it spells), and when
// a key occurs twice, the last occurrence is the one replaced, as JSON parsers keep the last.

/** A top-level member: its bytes [start, end) including the key, and the value's [valueStart, end). */
interface Member { key: string; start: number; valueStart: number; end: number }

const WS = (b: number | undefined) => b === 32 || b === 10 || b === 13 || b === 9;

/** The index just past the JSON string that opens at `i` (a `"`). */
function skipString(buf: Buffer, i: number): number {
  // Short strings (keys, small values) byte by byte; past 32 bytes, a native search for the
  // next quote (a message's content is most of a body: this keeps the scan ~free of it).
  const near = Math.min(buf.length, i + 32);
  for (i++; i < near; i++) {
    const b = buf[i];
    if (b === 92) i++; // a backslash escapes the next byte
    else if (b === 34) return i + 1;
  }
  if (i >= buf.length) return buf.length;
  // (i is the first byte the loop did not read: an escape it met took its next byte along)
  for (;;) {
    const q = buf.indexOf(34, i);
    if (q === -1) return buf.length;
    let slashes = 0;
    for (let k = q - 1; buf[k] === 92; k--) slashes++;
    if (slashes % 2 === 0) return q + 1; // not escaped
    i = q + 1;
  }
}

/** The index just past the JSON value that starts at `i`. */
function skipValue(buf: Buffer, i: number): number {
  const first = buf[i];
  if (first === 34) return skipString(buf, i);
  if (first === 123 || first === 91) {
    let depth = 0;
    for (; i < buf.length; i++) {
      const b = buf[i];
      if (b === 34) { i = skipString(buf, i) - 1; continue; }
      if (b === 123 || b === 91) depth++;
      else if ((b === 125 || b === 93) && --depth === 0) return i + 1;
    }
    return buf.length;
  }
  // a number, true, false or null: up to the next delimiter
  while (i < buf.length && buf[i] !== 44 && buf[i] !== 125 && !WS(buf[i])) i++;
  return i;
}

/** The top-level members of the object in `buf`, in order; null when `buf` is not an object. */
export function members(buf: Buffer): Member[] | null {
  let i = 0;
  while (WS(buf[i])) i++;
  if (buf[i] !== 123) return null;
  i++;
  const out: Member[] = [];
  for (;;) {
    while (WS(buf[i]) || buf[i] === 44) i++;
    if (i >= buf.length) return null;
    if (buf[i] === 125) return out;
    if (buf[i] !== 34) return null;
    const start = i;
    const keyEnd = skipString(buf, i);
    const raw = buf.toString('utf8', start + 1, keyEnd - 1);
    const key = raw.includes('\\') ? JSON.parse(`"${raw}"`) as string : raw;
    i = keyEnd;
    while (WS(buf[i])) i++;
    if (buf[i] !== 58) return null; // ':'
    i++;
    while (WS(buf[i])) i++;
    const valueStart = i;
    i = skipValue(buf, i);
    out.push({ key, start, valueStart, end: i });
  }
}

/**
 * How many top-level members the object in `buf` has (-1: not an object), without reading
 * their keys: fewer keys in the parsed value than members in the bytes means a key is named
 * twice. The cheap check before a body goes on untouched.
 */
export function memberCount(buf: Buffer): number {
  let i = 0;
  while (WS(buf[i])) i++;
  if (buf[i] !== 123) return -1;
  i++;
  let n = 0;
  for (;;) {
    while (WS(buf[i]) || buf[i] === 44) i++;
    if (i >= buf.length) return -1;
    if (buf[i] === 125) return n;
    if (buf[i] !== 34) return -1;
    i = skipString(buf, i);
    while (WS(buf[i])) i++;
    if (buf[i] !== 58) return -1;
    i++;
    while (WS(buf[i])) i++;
    i = skipValue(buf, i);
    n++;
  }
}

/** Members added after the opening brace of an object with `count` members (memberCount), nothing else touched. */
export function insertMembers(body: Buffer, count: number, add: ReadonlyArray<readonly [key: string, json: string]>): Buffer {
  const open = body.indexOf(123) + 1;
  const text = add.map(([k, json]) => `${JSON.stringify(k)}:${json}`).join(',');
  return Buffer.concat([body.subarray(0, open), Buffer.from(count ? `${text},` : text), body.subarray(open)]);
}

export interface MemberEdits {
  /** New values (JSON text) for members: the last occurrence of each key is replaced; a key the body lacks is added. */
  set?: ReadonlyArray<readonly [key: string, json: string]>;
  /** Members to drop (every occurrence). */
  drop?: readonly string[];
  /** Members to add after the opening brace (`"key":value` pairs, JSON text). */
  add?: ReadonlyArray<readonly [key: string, json: string]>;
}

/**
 * The body with the edits applied; null when it is not a JSON object (the caller re-encodes).
 * A key the body names more than once keeps only its last occurrence, the one JSON.parse
 * kept and the gateway validated and priced: an upstream whose parser keeps the first (or
 * refuses duplicates) sees the same request. Bytes outside the edited members are kept as
 * they are: a replaced value is cut out and the new one put in its place; a dropped member
 * goes with the separator that joined it. With nothing to change, the body itself is returned.
 */
export function editMembers(body: Buffer, edits: MemberEdits): Buffer | null {
  const list = members(body);
  if (!list) return null;
  const drop = edits.drop ?? [];
  const lastOf = new Map<string, number>();
  for (let i = 0; i < list.length; i++) lastOf.set(list[i]!.key, i);
  const dropped = list.map((m, i) => lastOf.get(m.key) !== i || drop.includes(m.key));
  /** [from, to) of the body replaced by `with` (empty: removed), in order. */
  const cuts: Array<{ from: number; to: number; with: Buffer | null }> = [];
  const open = body.indexOf(123) + 1;
  const kept = dropped.filter((d) => !d).length;
  const missing = edits.set?.filter(([k]) => !lastOf.has(k)) ?? [];
  const add = missing.length ? [...(edits.add ?? []), ...missing] : edits.add ?? [];
  if (add.length) {
    const text = add.map(([k, json]) => `${JSON.stringify(k)}:${json}`).join(',');
    cuts.push({ from: open, to: open, with: Buffer.from(kept ? `${text},` : text) });
  }
  for (let i = 0; i < list.length; i++) {
    if (dropped[i]) {
      // A run of dropped members goes with the separators around it: up to the next kept
      // member's key, or (at the end) from the previous kept member's end.
      let j = i;
      while (j + 1 < list.length && dropped[j + 1]) j++;
      if (j + 1 < list.length) cuts.push({ from: list[i]!.start, to: list[j + 1]!.start, with: null });
      else if (i > 0) cuts.push({ from: list[i - 1]!.end, to: list[j]!.end, with: null });
      else cuts.push({ from: list[i]!.start, to: list[j]!.end, with: null });
      i = j;
      continue;
    }
    const m = list[i]!;
    const json = edits.set?.find(([k]) => k === m.key)?.[1];
    if (json !== undefined) cuts.push({ from: m.valueStart, to: m.end, with: Buffer.from(json) });
  }
  if (!cuts.length) return body;
  const parts: Buffer[] = [];
  let at = 0;
  for (const c of cuts) {
    parts.push(body.subarray(at, c.from));
    if (c.with) parts.push(c.with);
    at = c.to;
  }
  parts.push(body.subarray(at));
  return Buffer.concat(parts);
}
