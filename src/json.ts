// JSON read without a schema (translations between wire formats, where every field is
// optional and checked where it is used), and the nesting bound every body is held to.
export type Json = Record<string, unknown>;

export function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * A JSON value as text, for fields a translation expects to be strings. `String(v)` is not
 * safe on parsed input: `{"toString": 1}` makes it throw. Objects become their JSON.
 */
export function text(v: unknown): string {
  if (typeof v === 'string') return v;
  if (v === null || v === undefined) return '';
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

/**
 * Objects and arrays may nest this deep in a request body. JSON.parse accepts any depth,
 * but everything after it that walks the value recursively (JSON.stringify in the
 * adapters, canonical hashing, zod, structured clone to the worker pool) overflows the
 * stack somewhere between ~2,000 and ~10,000 levels. No real chat request comes near 64
 * (OpenAI's structured outputs allow 10 levels of schema nesting).
 */
export const MAX_JSON_DEPTH = 64;

/**
 * True when `value` nests containers deeper than `max`. Walked with an explicit stack (a
 * recursive walk would overflow on exactly the values it is meant to refuse); it stops at
 * the first container past the bound, so a hostile 10,000-level body costs 65 steps.
 */
export function nestsDeeper(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const stack: object[] = [value];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const v = stack.pop()!;
    const d = depths.pop()!;
    if (d > max) return true;
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const c: unknown = v[i];
        if (typeof c === 'object' && c !== null) { stack.push(c); depths.push(d + 1); }
      }
    } else {
      for (const k in v) {
        const c: unknown = (v as Json)[k];
        if (typeof c === 'object' && c !== null) { stack.push(c); depths.push(d + 1); }
      }
    }
  }
  return false;
}

/**
 * True when JSON text nests containers deeper than `max`, read from the bytes before
 * JSON.parse: the parse builds every level first, and a 4 MB body nested 2,000,000 deep held
 * the event loop ~1.5 s before `nestsDeeper` could refuse it. A hostile body is refused after
 * `max` brackets. Strings are skipped with indexOf (native), so the bytes looked at one by
 * one are those between strings. The text need not be valid: JSON.parse still decides that.
 */
export function textNestsDeeper(text: Buffer, max: number = MAX_JSON_DEPTH): boolean {
  let depth = 0;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text[i];
    if (c === 0x22) {
      // (to the closing quote: the next one not escaped, i.e. not after an odd run of backslashes)
      let j = i;
      for (;;) {
        j = text.indexOf(0x22, j + 1);
        if (j < 0) return false;
        let slashes = 0;
        while (text[j - 1 - slashes] === 0x5c) slashes++;
        if ((slashes & 1) === 0) break;
      }
      i = j;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return false;
}
