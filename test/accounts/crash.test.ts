// kill -9 under load, then reconcile: no request whose response completed is missing from
// the ledger, and every stored balance equals the sum of its stored rows.
import { open } from 'lmdb';
import { join } from 'node:path';
import t from 'tap';
import { LedgerRowSchema } from '../../src/accounts/ledger.js';
import { WorkspaceSchema } from '../../src/accounts/workspaces.js';
import { LEDGER_DB } from '../../src/store/lmdb.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';

const fake = await startFakeUpstream();
t.teardown(() => fake.close());
const env = { OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' };

// Both ways a batch commits: on the event loop's thread (no-sync, the default) and on lmdb-js's writer thread (ledger.fsync).
for (const fsync of [false, true]) t.test(`kill -9 mid-load loses no completed request and no credit (ledger.fsync: ${fsync})`, async (t) => {
  const dataDir = tempDataDir();
  const config = { models: [testModel('paid-model')], ledger: { fsync } };
  const gw = await startGateway(env, dataDir, config);
  const post = (path: string, body: unknown, key = gw.masterKey) => fetch(`${gw.url}${path}`, {
    method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const ws = await (await post('/admin/workspaces', { name: 'crash', credits_usd: 10 })).json() as { id: string };
  const { key } = await (await post('/admin/keys', { name: 'load', workspace: ws.id })).json() as { key: string };

  const completed: string[] = [];
  let stop = false;
  const worker = async (n: number) => {
    for (let i = 0; !stop; i++) {
      const stream = (n + i) % 2 === 0;
      try {
        const res = await post('/v1/chat/completions', { model: 'openai/paid-model', stream, messages: [{ role: 'user', content: `request ${n}.${i}` }] }, key);
        await res.text(); // the response completed: its body ended
        if (res.status === 200) completed.push(res.headers.get('x-request-id')!);
      } catch {
        return; // the gateway is gone
      }
    }
  };
  const workers = Array.from({ length: 24 }, (_, n) => worker(n));
  // Killed mid-load: once at least 1.5 s and 100 completed requests in (a busy machine takes longer to get there; bounded).
  const t0 = Date.now();
  while (Date.now() - t0 < 1500 || (completed.length <= 100 && Date.now() - t0 < 30_000)) await new Promise((r) => setTimeout(r, 50));
  const atKill = completed.length;
  gw.proc.kill('SIGKILL');
  stop = true;
  await Promise.all(workers);
  await new Promise((r) => gw.proc.exitCode !== null || gw.proc.signalCode !== null ? r(null) : gw.proc.once('exit', r));
  t.ok(atKill > 100, `load was running (${atKill} completed before the kill)`);

  const root = open({ path: join(dataDir, 'sluice.mdb'), readOnly: true });
  const rows = [...root.openDB(LEDGER_DB).getRange()].map(({ value }) => LedgerRowSchema.parse(value));
  const stored = WorkspaceSchema.parse(root.openDB({ name: 'workspaces', encoding: 'msgpack' }).get(ws.id));
  await root.close();

  const ids = new Set(rows.map((r) => r.id));
  const missing = completed.filter((id) => !ids.has(id));
  t.same(missing, [], `every completed request has its row (${completed.length} completed, ${rows.length} rows)`);
  const mine = rows.filter((r) => r.workspace === ws.id);
  t.equal(stored.balance_nano, mine.reduce((a, r) => a + r.delta_nano, 0), 'balance = sum of its rows');
  t.ok(stored.balance_nano < 10e9, 'and requests were charged');

  // and the gateway starts again on the same data
  const again = await startGateway(env, dataDir, config);
  const view = await (await fetch(`${again.url}/admin/workspaces/${ws.id}`, { headers: { authorization: `Bearer ${again.masterKey}` } })).json() as { balance_usd: number };
  t.equal(Math.round(view.balance_usd * 1e9), stored.balance_nano, 'the restarted gateway sees the same balance');
  // usage rollups add up to the stored rows (rows not yet in the stored buckets are folded again at start)
  const { key: masterOfWs } = await (await fetch(`${again.url}/admin/keys`, { method: 'POST', headers: { authorization: `Bearer ${again.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name: 'reader', workspace: ws.id, scopes: ['usage:read'] }) })).json() as { key: string };
  const summary = await (await fetch(`${again.url}/v1/usage/summary`, { headers: { authorization: `Bearer ${masterOfWs}` } })).json() as { requests: number; charge_usd: number };
  const requestRows = mine.filter((r) => r.kind === 'request');
  t.equal(summary.requests, requestRows.length, 'rollups count every stored request row');
  t.equal(Math.round(summary.charge_usd * 1e9), requestRows.reduce((a, r) => a + Math.round(r.charge_usd * 1e9), 0), 'and their charges, to the nano-dollar');
  t.equal(await again.stop(), 0);
});
