// Reading a JSON body: every body Sluice reads goes through parseJson (UTF-8, valid JSON,
// nested at most MAX_JSON_DEPTH levels), then a zod schema whose first issue becomes a 400
// naming the parameter the way OpenAI does.
import { isUtf8 } from 'node:buffer';
import type { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { MAX_JSON_DEPTH, nestsDeeper, textNestsDeeper } from '../json.js';

/** Bodies larger than this have their depth read from their bytes before JSON.parse (parseJson). */
const DEEP_SCAN_BYTES = 16 * 1024;

const tooDeep = () => new GatewayError(Errors.jsonTooDeep, `Request body nests objects or arrays more than ${MAX_JSON_DEPTH} levels deep.`);

/** `messages.0.role` → `messages[0].role`, the way OpenAI names params. */
function paramName(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : (out ? `.${String(p)}` : String(p));
  return out;
}

export function parseBody<T>(schema: z.ZodType<T>, value: unknown): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  const param = issue.path.length ? paramName(issue.path) : null;
  const message = param ? `Invalid '${param}': ${issue.message}.` : `Invalid request body: ${issue.message}.`;
  throw new GatewayError(Errors.invalidRequest, message, param);
}

/** Admin and account bodies may be empty: that is `{}`. */
export function parseJsonOrEmpty(body: Buffer): unknown {
  return body.length ? parseJson(body) : {};
}

export function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw new GatewayError(Errors.invalidJson, 'Request body is empty; expected a JSON object.');
  // JSON travels as UTF-8 (RFC 8259). Decoding would quietly turn bad bytes into U+FFFD, and
  // the body goes upstream as its bytes, bad ones and all: refused here instead. (isUtf8 is
  // simdutf's check: well under a microsecond for a chat body.)
  if (!isUtf8(body)) throw new GatewayError(Errors.invalidJson, 'Request body is not valid UTF-8 (JSON must be UTF-8).');
  // A large body's depth is read from its bytes first: JSON.parse of a deep one holds the event
  // loop for as long as it builds its levels (~0.4 µs a byte). A small one (at most a few ms of
  // that) is parsed and walked, which costs a chat request nothing more.
  if (body.length > DEEP_SCAN_BYTES && textNestsDeeper(body)) throw tooDeep();
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new GatewayError(Errors.invalidJson, 'Request body is not valid JSON.');
  }
  if (nestsDeeper(value)) throw tooDeep();
  return value;
}
