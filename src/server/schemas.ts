// The admin and account routes' body schemas, and request ids as the routes read them.
import { z } from 'zod';
import { Errors, GatewayError } from '../errors.js';
import { KeyLimitsSchema, Scope } from '../accounts/keys.js';
import { roundUsd } from '../accounts/pricing.js';
import { ModelName } from '../wire/chat.js';
import { FreeText, Name } from '../wire/text.js';

const KeyScopes = z.array(Scope.exclude(['admin'])).min(1);

/**
 * A key's limits as a request may set them: the stored shape (KeyLimitsSchema, which reads
 * what is stored as it is), with its lists bounded and their entries text every copy can
 * hold (unbounded, 200,000 model patterns were taken, and every refusal quoted them all).
 */
const KeyLimitsInput = KeyLimitsSchema.extend({
  models: z.array(ModelName).min(1).max(256).optional(),
  providers: z.array(Name).min(1).max(64).optional(),
  regions: z.array(Name).min(1).max(64).optional(),
});

export const MintKeySchema = z.object({
  name: Name.default('unnamed'),
  scopes: KeyScopes.optional(),
  workspace: z.string().min(1).max(64).optional(),
  limits: KeyLimitsInput.nullable().optional(),
}).strict();

/** Self-serve minting: always in the caller's own workspace. */
export const SelfMintKeySchema = MintKeySchema.omit({ workspace: true });

export const PatchKeySchema = z.object({
  name: Name.optional(),
  scopes: KeyScopes.optional(),
  limits: KeyLimitsInput.nullable().optional(),
}).strict();

export const RegisterSchema = z.object({
  email: z.email().max(320),
  name: Name.optional(),
}).strict();

/** A request id as a schema (bodies and queries). */
export const RequestId = z.string().max(80).regex(/^req_[0-9a-z]+$/, 'must be a request id (req_…)');

const Usd = z.number().finite().positive().max(1_000_000, 'at most 1,000,000 USD at a time')
  .refine((n) => Math.abs(roundUsd(n) - n) < 1e-12, 'at most 9 decimal places');

export const CreateWorkspaceSchema = z.object({
  name: Name,
  email: z.email().max(320).optional(),
  credits_usd: z.number().finite().min(0).max(1_000_000).default(0),
}).strict();

export const RefundSchema = z.object({
  request_id: RequestId,
  /** Defaults to the request's whole charge; never more than it. */
  amount_usd: Usd.optional(),
  note: FreeText(500).optional(),
}).strict();

export const TopupSchema = z.object({
  amount_usd: Usd,
  note: FreeText(500).optional(),
}).strict();

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
