// HTTP body schemas. Known fields are checked (errors name the field); unknown fields are
// carried through to the upstream untouched, as OpenAI adds parameters all the time.
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { MAX_JSON_DEPTH, nestsDeeper } from '../json.js';
import { KeyLimitsSchema, Scope } from '../accounts/keys.js';
import { roundUsd } from '../accounts/pricing.js';

const ContentPart = z.looseObject({ type: z.string() });
const Message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(ContentPart), z.null()]).optional(),
  name: z.string().optional(),
});

/**
 * A model name: what catalogs, aliases and upstream ids look like, bounded (it reaches the
 * ledger, the rollups' keys and log lines) and without control characters.
 */
export const ModelName = z.string().min(1, 'model is required').max(256, 'at most 256 characters')
  .regex(/^[^\u0000-\u001f\u007f]+$/, 'control characters are not allowed');

export const ChatRequestSchema = z.looseObject({
  model: ModelName,
  messages: z.array(Message).min(1, 'messages must contain at least one message'),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().positive().nullish(),
  max_completion_tokens: z.number().int().positive().nullish(),
  n: z.number().int().min(1).max(128).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  tools: z.array(z.looseObject({ type: z.string() })).nullish(),
  /** Sluice's own: pin a provider (also the x-gateway-provider header); never sent upstream. */
  provider: z.string().min(1).max(64).optional(),
});

const KeyScopes = z.array(Scope.exclude(['admin'])).min(1);

export const MintKeySchema = z.object({
  name: z.string().min(1).max(200).default('unnamed'),
  scopes: KeyScopes.optional(),
  workspace: z.string().min(1).max(64).optional(),
  limits: KeyLimitsSchema.nullable().optional(),
}).strict();

/** Self-serve minting: always in the caller's own workspace. */
export const SelfMintKeySchema = MintKeySchema.omit({ workspace: true });

export const PatchKeySchema = z.object({
  name: z.string().min(1).max(200).optional(),
  scopes: KeyScopes.optional(),
  limits: KeyLimitsSchema.nullable().optional(),
}).strict();

export const RegisterSchema = z.object({
  email: z.email().max(320),
  name: z.string().min(1).max(200).optional(),
}).strict();

/** A request id as a schema (bodies and queries). */
export const RequestId = z.string().max(80).regex(/^req_[0-9a-z]+$/, 'must be a request id (req_…)');

const Usd = z.number().finite().positive().max(1_000_000, 'at most 1,000,000 USD at a time')
  .refine((n) => Math.abs(roundUsd(n) - n) < 1e-12, 'at most 9 decimal places');

export const CreateWorkspaceSchema = z.object({
  name: z.string().min(1).max(200),
  email: z.email().max(320).optional(),
  credits_usd: z.number().finite().min(0).max(1_000_000).default(0),
}).strict();

export const RefundSchema = z.object({
  request_id: RequestId,
  /** Defaults to the request's whole charge; never more than it. */
  amount_usd: Usd.optional(),
  note: z.string().max(500).optional(),
}).strict();

export const TopupSchema = z.object({
  amount_usd: Usd,
  note: z.string().max(500).optional(),
}).strict();

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

/** Every JSON body Sluice reads goes through here: valid JSON, nested at most MAX_JSON_DEPTH levels. */
export function parseJson(body: Buffer): unknown {
  if (body.length === 0) throw new GatewayError(Errors.invalidJson, 'Request body is empty; expected a JSON object.');
  let value: unknown;
  try {
    value = JSON.parse(body.toString('utf8'));
  } catch {
    throw new GatewayError(Errors.invalidJson, 'Request body is not valid JSON.');
  }
  if (nestsDeeper(value)) throw new GatewayError(Errors.jsonTooDeep, `Request body nests objects or arrays more than ${MAX_JSON_DEPTH} levels deep.`);
  return value;
}

/**
 * The ids Sluice issues (`req_…`, `key_…`, `ws_…`, `ref_req_…`) are short lowercase
 * alphanumerics; anything else in their place is a 400 before it reaches a lookup (LMDB
 * refuses keys over 1,978 bytes, and nothing longer can exist).
 */
export function checkId(value: string, prefix: 'req_' | 'key_' | 'ws_', param = 'id'): string {
  if (prefix === 'ws_' && value === 'default') return value; // the operator's own workspace
  if (value.length > 80 || !value.startsWith(prefix) || !/^[a-z]+_[0-9a-z_]+$/.test(value)) {
    throw new GatewayError(Errors.invalidId, `Invalid '${param}': not a ${prefix}… id.`, param);
  }
  return value;
}


/** POST /admin/deployments/disable|enable */
export const DeploymentToggleSchema = z.object({ decision: z.string().min(1) }).strict();
