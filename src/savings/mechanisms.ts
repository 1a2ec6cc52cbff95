// The savings engine's mechanisms, as bits: a request carries one number saying which are
// on for it (config, minus the key's `savings_off`, minus the request's headers).
import { Errors, GatewayError } from '../errors.js';
import { MECHANISMS, type Mechanism } from '../wire/savings.js';

export const M = {
  output_cap: 1, exact_cache: 2, dedupe: 4, semantic_cache: 8, prompt_cache: 16, compression: 32, chunk_dedupe: 64,
} as const satisfies Record<Mechanism, number>;

export const ALL = 127;
/** What `x-gateway-cache: off` turns off. */
export const CACHES = M.exact_cache | M.dedupe | M.semantic_cache;


/** Bits from a `savings_off` list. */
export function maskOf(names: readonly string[] | undefined): number {
  if (!names) return 0;
  let bits = 0;
  for (const n of names) bits |= n === 'all' ? ALL : (M as Record<string, number>)[n] ?? 0;
  return bits;
}

/**
 * The request's own switches. `x-gateway-savings: off` turns everything off, and a list of
 * mechanisms (`compression, output_cap`, named as in a key's `savings_off`) turns those off;
 * `x-gateway-cache: off` the caches and dedupe; `x-gateway-cache: on` opts a sampled
 * (temperature > 0) request into the caches.
 */
export interface RequestSwitches {
  off: number;
  forceCache: boolean;
  /** `x-gateway-router: static`: model `auto` goes by the classifier's buckets, not the adaptive policy. */
  staticRouter: boolean;
}

export const NO_SWITCHES: RequestSwitches = { off: 0, forceCache: false, staticRouter: false };

/** A request's x-gateway-savings, -cache and -router headers (absent or empty: the shared NO_SWITCHES, nothing allocated). */
export function readSwitches(savings = '', cache = '', router = ''): RequestSwitches {
  if (!savings && !cache && !router) return NO_SWITCHES;
  let off = 0;
  const s = savings.trim().toLowerCase();
  if (s === 'off' || s === 'all') off = ALL;
  else if (s !== '' && s !== 'on') {
    for (const name of s.split(',')) {
      const m = name.trim();
      const bit = Object.hasOwn(M, m) ? (M as Record<string, number>)[m] : undefined;
      if (bit === undefined) {
        throw new GatewayError(Errors.invalidRequest, `x-gateway-savings: '${m.slice(0, 40)}' is not a savings mechanism. Send 'off' for all of them, or a comma-separated list of those to turn off: ${MECHANISMS.join(', ')}.`);
      }
      off |= bit;
    }
  }
  const c = cache.toLowerCase();
  if (c === 'off') off |= CACHES;
  return { off, forceCache: c === 'on', staticRouter: router.toLowerCase() === 'static' };
}


/** The mechanisms the config turns on. */
export function enabledSavings(cfg: Record<Mechanism, { enabled: boolean }>): number {
  let bits = 0;
  for (const m of MECHANISMS) if (cfg[m].enabled) bits |= M[m];
  return bits;
}
