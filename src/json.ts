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
