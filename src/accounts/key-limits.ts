// A minted key's limits are never looser than its parent's, on any dimension. At mint (and
// when an operator patches a minted key) what was asked is merged with the parent's
// limits: a dimension left out is inherited, one asked stricter is kept, one asked looser
// is refused, naming it. When a parent's limits tighten, its descendants' are clamped to
// them. (Enforcement does not depend on this alone: a request is checked against every
// ancestor's limits too; see Limits.admit. This keeps what a key shows truthful.)
import { Errors, GatewayError } from '../errors.js';
import type { KeyLimits } from './keys.js';

type Mode = 'refuse' | 'clamp';

const NUMERIC = ['rpm', 'tpm', 'max_concurrency', 'budget_usd_day', 'budget_usd_month'] as const;

function looser(field: string, detail: string): GatewayError {
  return new GatewayError(Errors.forbidden, `A minted key's limits cannot be looser than its parent key's: ${field} ${detail}.`, `limits.${field}`);
}

/** Does the parent's model list allow everything `pattern` (a slug, `provider/*` or `*`) names? */
function modelCovered(parent: readonly string[], pattern: string): boolean {
  return parent.some((p) => p === '*' || p === pattern || (p.endsWith('/*') && pattern.startsWith(p.slice(0, -1))));
}

/**
 * The limits of a key minted by a key whose limits are `parent`, when `asked` was asked for
 * (undefined: nothing asked, inherit; null: no limits). `refuse` throws a 403 for a looser
 * dimension; `clamp` takes the parent's instead.
 */
export function childLimits(parent: KeyLimits | null, asked: KeyLimits | null | undefined, mode: Mode = 'refuse'): KeyLimits | null {
  if (!parent) return asked ?? null;
  if (asked === undefined) return { ...parent };
  if (asked === null) {
    if (mode === 'refuse') throw new GatewayError(Errors.forbidden, "A key with limits cannot mint a key without them; leave 'limits' out to inherit its parent's.", 'limits');
    return { ...parent };
  }
  const out: KeyLimits = { ...asked };
  for (const f of NUMERIC) {
    const p = parent[f];
    const a = asked[f];
    if (p === undefined) continue;
    if (a !== undefined && a > p) {
      if (mode === 'refuse') throw looser(f, `${a} is more than ${p}`);
      out[f] = p;
    } else out[f] = a ?? p;
  }
  // Every parent window applies; an asked window of the same length may only be stricter.
  if (parent.windows?.length) {
    const windows = [...parent.windows];
    for (const w of asked.windows ?? []) {
      const same = windows.findIndex((p) => p.seconds === w.seconds);
      if (same === -1) { windows.push(w); continue; }
      if (w.requests > windows[same]!.requests) {
        if (mode === 'refuse') throw looser('windows', `${w.requests} requests per ${w.seconds}s is more than ${windows[same]!.requests}`);
        continue;
      }
      windows[same] = w;
    }
    if (windows.length > 8) throw new GatewayError(Errors.invalidRequest, 'A key has at most 8 windows (its own and its parent\'s together).', 'limits.windows');
    out.windows = windows;
  }
  for (const f of ['providers', 'regions'] as const) {
    const p = parent[f];
    if (!p) continue;
    const a = asked[f];
    const extra = a?.filter((x) => !p.includes(x)) ?? [];
    if (extra.length && mode === 'refuse') throw looser(f, `allows ${extra.join(', ')}, which the parent does not`);
    const kept = a?.filter((x) => p.includes(x));
    out[f] = kept?.length ? kept : [...p];
  }
  if (parent.models) {
    const extra = asked.models?.filter((m) => !modelCovered(parent.models!, m)) ?? [];
    if (extra.length && mode === 'refuse') throw looser('models', `allows ${extra.join(', ')}, which the parent does not`);
    const kept = asked.models?.filter((m) => modelCovered(parent.models!, m));
    out.models = kept?.length ? kept : [...parent.models];
  }
  if (parent.zdr_only) {
    if (asked.zdr_only === false && mode === 'refuse') throw looser('zdr_only', 'is off where the parent requires it');
    out.zdr_only = true;
  }
  // What a parent turns off (an operator keeping answers out of the caches, say) its children may not turn back on.
  if (parent.savings_off) {
    const kept = parent.savings_off.includes('all') ? ['all' as const] : parent.savings_off;
    const dropped = asked.savings_off?.includes('all') ? [] : kept.filter((m) => !asked.savings_off?.includes(m));
    if (asked.savings_off !== undefined && dropped.length && mode === 'refuse') throw looser('savings_off', `turns ${dropped.join(', ')} back on`);
    out.savings_off = [...new Set([...(asked.savings_off ?? []), ...kept])];
  }
  return out;
}
