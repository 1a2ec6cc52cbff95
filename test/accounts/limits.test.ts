// Key limits (accounts/limits.ts) with the clock passed in: rpm and tpm buckets, rolling
// windows, budgets, concurrency, reservations settled at finish, and a parent's limits
// applying to the keys it minted.
import t from 'tap';
import { Limits } from '../../src/accounts/limits.js';
import type { KeyLimits, KeyRecord } from '../../src/accounts/keys.js';
import { LimitError } from '../../src/errors.js';

/** Counters that start empty (the store's persistence is covered by the restart tests). */
function limits(): Limits {
  const store = { limits: { getKeys: () => [], put: () => Promise.resolve(true) } } as unknown as ConstructorParameters<typeof Limits>[0];
  return new Limits(store);
}
const key = (id: string, l: KeyLimits): KeyRecord => ({ id, name: id, kind: 'minted', workspace: 'ws_t', scopes: ['inference'], hash: '0'.repeat(64), prefix: 'sk', created_at: 0, revoked_at: null, limits: l, created_by: null });
const refused = (run: () => unknown): LimitError | null => { try { run(); return null; } catch (e) { return e instanceof LimitError ? e : null; } };
const NOTHING = { tokens: 0, nano: 0 };
const T0 = Date.UTC(2026, 5, 10, 12);

t.test('rpm: N per minute, refilling continuously', async (t) => {
  const l = limits();
  const k = key('key_rpm', { rpm: 3 });
  for (let i = 0; i < 3; i++) l.finish(k, l.admit([k], NOTHING, T0)!, 0, 0, T0);
  const e = refused(() => l.admit([k], NOTHING, T0));
  t.equal(e?.kind, 'rpm');
  t.ok(refused(() => l.admit([k], NOTHING, T0 + 19_000)), 'a third of a token is not enough');
  t.notOk(refused(() => l.admit([k], NOTHING, T0 + 20_000)), 'one request back after 20 s');
});

t.test('tpm: a request is admitted while the bucket has room; its reservation holds everyone else off until its finish returns the unused part', async (t) => {
  const l = limits();
  const k = key('key_tpm', { tpm: 1000 });
  const a = l.admit([k], { tokens: 800, nano: 0 }, T0)!;
  const b = l.admit([k], { tokens: 800, nano: 0 }, T0)!; // 200 left: admitted in good faith, the bucket goes into debt
  t.equal(refused(() => l.admit([k], { tokens: 1, nano: 0 }, T0))?.kind, 'tpm', 'in debt: nothing more');
  l.finish(k, a, 100, 0, T0);
  l.finish(k, b, 100, 0, T0);
  t.notOk(refused(() => l.admit([k], { tokens: 300, nano: 0 }, T0)), 'both used 100: 800 are back');
});

t.test('a rolling window counts requests over its whole span', async (t) => {
  const l = limits();
  const k = key('key_win', { windows: [{ requests: 2, seconds: 600 }] });
  l.admit([k], NOTHING, T0);
  l.admit([k], NOTHING, T0 + 300_000);
  const e = refused(() => l.admit([k], NOTHING, T0 + 400_000));
  t.equal(e?.kind, 'window');
  t.ok(refused(() => l.admit([k], NOTHING, T0 + 590_000)), 'the first still counts just before its slice expires');
  t.notOk(refused(() => l.admit([k], NOTHING, T0 + 610_000)), 'after 600 s the first has left the window');
});

t.test('budgets hold reservations in flight and charge what was used', async (t) => {
  const l = limits();
  const k = key('key_bud', { budget_usd_day: 1 });
  const a = l.admit([k], { tokens: 0, nano: 1e9 }, T0)!;
  t.equal(refused(() => l.admit([k], { tokens: 0, nano: 0.3e9 }, T0))?.kind, 'budget', 'the whole $1 held by a request in flight');
  l.finish(k, a, 0, 0.5e9, T0);
  t.notOk(refused(() => l.admit([k], { tokens: 0, nano: 0.3e9 }, T0)), 'charged 0.5: 0.3 fits');
  t.equal(l.view(k.id, T0).spent_today_usd, 0.5);
  t.equal(l.view(k.id, T0 + 86_400_000).spent_today_usd, 0, 'a new UTC day starts from zero');
});

t.test('concurrency: a slot is held from admission to finish', async (t) => {
  const l = limits();
  const k = key('key_conc', { max_concurrency: 1 });
  const a = l.admit([k], NOTHING, T0)!;
  t.equal(refused(() => l.admit([k], NOTHING, T0))?.kind, 'concurrency');
  l.finish(k, a, 0, 0, T0);
  t.notOk(refused(() => l.admit([k], NOTHING, T0)));
});

t.test("a minted key is held to its parent's limits, and moves its parent's counters", async (t) => {
  const l = limits();
  const parent = key('key_parent', { rpm: 2 });
  const child = { ...key('key_child', { rpm: 100 }), created_by: parent.id };
  l.admit([child, parent], NOTHING, T0);
  l.admit([parent], NOTHING, T0);
  t.equal(refused(() => l.admit([child, parent], NOTHING, T0))?.kind, 'rpm', "the parent's rpm is spent by both");
  t.notOk(refused(() => l.admit([key('key_other', { rpm: 1 })], NOTHING, T0)), 'other keys are apart');
});

t.test('precheck refuses what admit would, counting nothing', async (t) => {
  const l = limits();
  const k = key('key_pre', { rpm: 1 });
  l.precheck([k], T0);
  l.precheck([k], T0);
  l.admit([k], NOTHING, T0);
  t.equal(refused(() => l.precheck([k], T0))?.kind, 'rpm');
});
