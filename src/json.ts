// Narrowing for JSON values read without a schema (translations between wire formats,
// where every field is optional and checked where it is used).
export type Json = Record<string, unknown>;

export function isRecord(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
