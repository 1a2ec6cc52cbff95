// The rollups' fold sums rows of one group together before touching buckets. Rows of many
// groups interleaved in one fold (as a busy batch has them) must land exactly where each
// row alone would: per key, model, provider, cache, outcome and minute.
import t from 'tap';
import { ledgerRow, type LedgerRow } from '../../src/accounts/ledger.js';
import { UsageRollups, type Dim } from '../../src/accounts/usage.js';
import { openStore } from '../../src/store/lmdb.js';
import { tempDataDir } from '../helpers/gateway.js';

const store = await openStore(tempDataDir());
t.teardown(() => store.root.close());
const rollups = new UsageRollups(store);

const base = Math.floor(Date.now() / 3_600_000) * 3_600_000; // an hour's start: three minutes inside it
const rows: LedgerRow[] = [];
let n = 0;
// Mostly runs of one group (the fast path), broken by rows of others, the same ones again later.
const kinds = [
  { workspace: 'ws_a', key_id: 'k1', requested_model: 'm1', served: 'openai/m1', cache: 'miss', status: 200 },
  { workspace: 'ws_a', key_id: 'k2', requested_model: 'm1', served: 'openai/m1', cache: 'miss', status: 200 },
  { workspace: 'ws_a', key_id: 'k1', requested_model: 'm2', served: 'anthropic/m2', cache: 'exact', status: 200 },
  { workspace: 'ws_b', key_id: 'k3', requested_model: 'm1', served: null, cache: 'none', status: 429 },
  { workspace: 'ws_a', key_id: 'k1', requested_model: 'm1', served: 'openai/m1', cache: 'miss', status: 502 },
] as const;
const pattern = [0, 0, 0, 1, 0, 2, 2, 0, 3, 4, 4, 0, 1, 1, 3, 0];
for (let round = 0; round < 3; round++) {
  for (const k of pattern) {
    n++;
    rows.push(ledgerRow({ id: `req_${String(n).padStart(6, '0')}`, kind: 'request', endpoint: '/v1/chat/completions', ...kinds[k]!,
      ts: base + round * 60_000 + n, prompt_tokens: n, completion_tokens: 2 * n, cost_usd: n / 1e6, charge_usd: n / 1e6 }));
  }
}
for (const row of rows) rollups.add(row);
rollups.persistDirty(0);
await store.root.committed; // (the buckets are written in an lmdb-js batch, read back from LMDB)

const sum = (pick: (r: LedgerRow) => boolean) => rows.filter(pick).reduce((a, r) => ({ requests: a.requests + 1, prompt: a.prompt + r.prompt_tokens }), { requests: 0, prompt: 0 });
const start = base / 1000, end = start + 3600;

t.test('each dimension sums what its rows say', (t) => {
  const dims: Array<[Dim, (r: LedgerRow) => string | null]> = [
    ['key', (r) => r.key_id], ['model', (r) => r.requested_model], ['provider', (r) => (r.served ? r.served.split('/')[0]! : null)],
    ['cache', (r) => (r.cache === 'none' ? null : r.cache)], ['outcome', (r) => (r.cache === 'none' ? 'refused' : r.status < 400 ? 'served' : 'failed')],
  ];
  for (const ws of ['ws_a', 'ws_b']) {
    for (const [dim, of] of dims) {
      const got = rollups.range(ws, start, end, dim, 'minute');
      const values = new Set(rows.filter((r) => r.workspace === ws).map(of).filter((v): v is string => v !== null));
      t.equal(got.by.length, values.size, `${ws} by ${dim}: one entry per value`);
      for (const v of values) {
        const want = sum((r) => r.workspace === ws && of(r) === v);
        const entry = got.by.find((b) => b.value === v);
        t.same(entry && { requests: entry.requests, prompt: entry.prompt_tokens }, want, `${ws} by ${dim} = ${v}`);
      }
    }
    const got = rollups.range(ws, start, end, 'all', 'minute');
    t.same(got.points.map((p) => p.requests), [0, 1, 2].map((round) => sum((r) => r.workspace === ws && Math.floor((r.ts - base) / 60_000) === round).requests), `${ws}: per minute`);
  }
  t.end();
});
