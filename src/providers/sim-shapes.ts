// What the sim needs to answer like a model that follows the request's shape: which tool
// a request makes it call, and a value that fits a JSON Schema (tool arguments, structured
// output), so SDK helpers (a tool loop, `chat.completions.parse`, `generateObject`,
// `withStructuredOutput`) work against `npm start` alone. Deterministic: the same schema and
// prompt give the same value.
import { isRecord } from '../json.js';

type Schema = Record<string, unknown>;

/** Nesting the example follows at most (a recursive `$ref` or a deep schema ends in null). */
const MAX_DEPTH = 12;
/**
 * Values an example holds at most, and a string's length: a schema of a few hundred bytes can
 * ask for 16^8 array items or a billion-character string; past the budget, what is left is
 * the smallest value of its type (the answer may then miss a minItems, as a capped model's would).
 */
const MAX_NODES = 4096;
const MAX_STRING = 1024;

interface Budget { left: number }

/**
 * The tool the answer calls, or null: tools offered, tool_choice not `none`, and no tool
 * result since the last user turn (after one, the model answers in words). tool_choice naming
 * a function picks it; otherwise the first.
 */
export function toolToCall(req: Record<string, unknown>, messages: ReadonlyArray<Record<string, unknown>>): { name: string; parameters: Schema } | null {
  const tools = Array.isArray(req.tools) ? req.tools.filter((t): t is Schema => isRecord(t) && t.type === 'function' && isRecord(t.function) && typeof t.function.name === 'string') : [];
  if (!tools.length || req.tool_choice === 'none') return null;
  for (let i = messages.length - 1; i >= 0; i--) {
    const role = messages[i]?.role;
    if (role === 'tool' || role === 'function') return null;
    if (role === 'user') break;
  }
  const choice = req.tool_choice;
  const named = isRecord(choice) && isRecord(choice.function) && typeof choice.function.name === 'string' ? choice.function.name : null;
  const tool = (named ? tools.find((t) => (t.function as Schema).name === named) : undefined) ?? tools[0]!;
  const fn = tool.function as Schema;
  return { name: String(fn.name), parameters: isRecord(fn.parameters) ? fn.parameters : { type: 'object', properties: {} } };
}

/** The schema a response_format asks the text to fit, or null for plain text. */
export function jsonFormat(format: unknown): Schema | null {
  if (!isRecord(format)) return null;
  if (format.type === 'json_object') return { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] };
  if (format.type === 'json_schema' && isRecord(format.json_schema)) return isRecord(format.json_schema.schema) ? format.json_schema.schema : { type: 'object' };
  return null;
}

/** A value that fits `schema` (the subset models are given: types, enums, const, objects, arrays, anyOf, local $refs). */
export function exampleOf(schema: unknown, text: string): unknown {
  const words = text.slice(0, 10_000).toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [];
  return example(schema, isRecord(schema) ? schema : {}, words, 0, { left: MAX_NODES });
}

function example(s: unknown, root: Schema, words: string[], depth: number, budget: Budget): unknown {
  if (!isRecord(s) || depth > MAX_DEPTH || budget.left-- <= 0) return null;
  if (typeof s.$ref === 'string') return example(resolveRef(root, s.$ref), root, words, depth + 1, budget);
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
  if ('default' in s && s.default !== undefined) return s.default;
  const alternatives = Array.isArray(s.anyOf) ? s.anyOf : Array.isArray(s.oneOf) ? s.oneOf : null;
  if (alternatives?.length) return example(alternatives.find((a) => !(isRecord(a) && a.type === 'null')) ?? alternatives[0], root, words, depth + 1, budget);
  if (Array.isArray(s.allOf) && s.allOf.length) return example(s.allOf[0], root, words, depth + 1, budget);
  const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') ?? 'null' : s.type ?? (isRecord(s.properties) ? 'object' : 'string');
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      const props = isRecord(s.properties) ? s.properties : {};
      for (const [k, v] of Object.entries(props)) out[k] = example(v, root, words, depth + 1, budget);
      return out;
    }
    case 'array': {
      const count = typeof s.minItems === 'number' ? Math.max(0, Math.min(s.minItems, 16, budget.left)) : 1;
      return Array.from({ length: count }, () => example(s.items, root, words, depth + 1, budget));
    }
    case 'integer': return typeof s.minimum === 'number' ? Math.ceil(s.minimum) : 1;
    case 'number': return typeof s.minimum === 'number' ? s.minimum : 1;
    case 'boolean': return true;
    case 'null': return null;
    default: {
      if (s.format === 'date-time') return '2025-01-01T00:00:00Z';
      if (s.format === 'date') return '2025-01-01';
      if (s.format === 'email') return 'user@example.com';
      if (s.format === 'uri' || s.format === 'url') return 'https://example.com';
      const word = words.length ? words[(depth * 7 + words.length) % words.length]! : 'example';
      return typeof s.minLength === 'number' && word.length < s.minLength ? word.padEnd(Math.min(s.minLength, MAX_STRING), 'x') : word;
    }
  }
}

/** A local `#/…` reference within the root schema (JSON Pointer, with `~1` and `~0`). */
function resolveRef(root: Schema, ref: string): unknown {
  if (!ref.startsWith('#')) return null;
  let at: unknown = root;
  for (const part of ref.slice(1).split('/').filter(Boolean)) {
    if (!isRecord(at)) return null;
    at = at[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return at;
}
