// Strings that reach LMDB keys are bounded, ids longer than any Sluice issues are a 400,
// and no stored record can stop the next start: what cannot be used is quarantined.
import { asBinary, open } from 'lmdb';
import { join } from 'node:path';
import t from 'tap';
import { LEDGER_DB } from '../../src/store/lmdb.js';
import { ledgerRow } from '../../src/accounts/ledger.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel, type Gateway } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const fake = await startFakeUpstream();
const dataDir = tempDataDir();
const env = { OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' };
const config = { models: [testModel('m')] };
let gw: Gateway = await startGateway(env, dataDir, config);
t.teardown(async () => { await gw.stop(); await fake.close(); });
const api = () => http(gw);

t.test('a 4 KB model name: a 4xx, and the next start on the same data works', async (t) => {
  const { key } = await api().tenant(gw.masterKey, 5);
  for (const model of ['x'.repeat(4096), `openai/${'é'.repeat(1500)}`, 'openai/m\u0000evil']) {
    const r = await api().call('/v1/chat/completions', key, { model, messages: [{ role: 'user', content: 'hi' }] });
    t.equal(r.status, 400, `model of ${model.length} chars: 400`);
    t.equal(r.json.error.param, 'model');
  }
  const long = await api().call('/v1/responses', key, { model: 'y'.repeat(3000), input: 'hi' });
  t.equal(long.status, 400, 'the Responses API too');
  const unknown = await api().call('/v1/chat/completions', key, { model: 'z'.repeat(200), messages: [{ role: 'user', content: 'hi' }] });
  t.equal(unknown.status, 404, 'a long (but bounded) unknown model is a 404');
  t.equal((await api().call('/v1/chat/completions', key, { model: 'openai/m', messages: [{ role: 'user', content: 'still here' }] })).status, 200);
  t.equal(await gw.stop(), 0, 'stops cleanly');
  gw = await startGateway(env, dataDir, config);
  t.equal((await api().call('/v1/chat/completions', key, { model: 'openai/m', messages: [{ role: 'user', content: 'after restart' }] })).status, 200, 'and starts again');
  const summary = await api().call('/v1/usage/summary', gw.masterKey);
  t.equal(summary.status, 200);
});

t.test('ids longer than any Sluice issues: 400, not 500', async (t) => {
  const { key } = await api().tenant(gw.masterKey, 5, undefined, ['inference', 'usage:read', 'keys:write']);
  const long = `req_${'a'.repeat(2048)}`;
  const cases: Array<[string, string, string?]> = [
    [`/v1/requests/${long}`, key],
    [`/v1/requests?cursor=${long}`, key],
    [`/v1/requests/${'%E2%82%AC'.repeat(700)}`, key],
    [`/admin/keys/key_${'b'.repeat(2048)}`, gw.masterKey],
    [`/admin/workspaces/ws_${'c'.repeat(2048)}`, gw.masterKey],
    [`/v1/api-keys/key_${'d'.repeat(2048)}`, key, 'DELETE'],
    [`/admin/keys/key_${'e'.repeat(2048)}`, gw.masterKey, 'DELETE'],
  ];
  for (const [path, k, method] of cases) {
    const r = await api().call(path, k, undefined, method ?? 'GET');
    t.equal(r.status, 400, `${method ?? 'GET'} ${path.slice(0, 40)}…: 400`);
    t.ok(r.json?.error?.type, 'in the error envelope');
  }
  const refund = await api().call('/admin/workspaces/default/refunds', gw.masterKey, { request_id: long });
  t.equal(refund.status, 400, 'a refund of a 2 KB request id: 400');
  t.equal((await api().call('/v1/requests/req_nosuchrequest', key)).status, 404, 'a well-formed unknown id is still a 404');
});

t.test('stored records a start cannot use are quarantined, never fatal', async (t) => {
  t.equal(await gw.stop(), 0);
  // What an older gateway (or a damaged disk) could have left: a committed row whose model
  // makes a rollup key LMDB refuses, markers for rows that do not validate or do not exist,
  // and records of every kind that do not validate.
  const root = open({ path: join(dataDir, 'sluice.mdb') });
  const ledger = root.openDB(LEDGER_DB);
  const db = (name: string) => root.openDB({ name, encoding: 'msgpack' });
  const poison = ledgerRow({ id: 'req_0poisonrow0000000000', kind: 'request', workspace: 'default', key_id: 'key_x', endpoint: 'chat.completions',
    requested_model: 'p'.repeat(4000), status: 404, cache: 'miss' });
  await ledger.put(poison.id, poison);
  await ledger.put('req_0badrow0000000000000', { id: 'req_0badrow0000000000000', nonsense: true });
  // Bytes msgpackr cannot read (as a row written with a record structure the store lacks reads):
  // the read throws; a start used to end there.
  await ledger.put('req_0undecodable00000000', asBinary(Buffer.from([0x01, 0x02])));
  await db('rollup_pending').put('req_0undecodable00000000', 1);
  // The same bytes in every database a start reads whole (each stopped every start before).
  const unreadable = asBinary(Buffer.from([0x01, 0x02]));
  for (const [name, key] of [['keys', 'key_unreadable'], ['workspaces', 'ws_unreadable'], ['limits', 'key_unreadable'], ['rollup_pending', 'batch:unreadable'],
    ['router', ['arm', 'open_chat', 'openai/m']], ['rollups', ['default', 'minute', 0, 'all', '']]] as const) await db(name).put(key as never, unreadable);
  // A damaged bucket the next requests fold into (today's, every workspace): it counts again from zero.
  const today = Math.floor(Date.now() / 86_400_000) * 86_400;
  await db('rollups').put(['*', 'day', today, 'all', ''] as never, unreadable);
  await db('rollup_pending').put(poison.id, 1);
  await db('rollup_pending').put('req_0badrow0000000000000', 1);
  await db('rollup_pending').put('req_0missing000000000000', 1);
  await db('workspaces').put('ws_broken', { id: 'ws_broken', balance_nano: 'lots' });
  await db('keys').put('key_broken', { id: 'key_broken', hash: 'not-a-hash' });
  await db('limits').put('key_broken', { req: [Number.NaN, 0], windows: [{ seconds: 0, head: 0, counts: [] }] });
  await db('cache').put(['default', 'h'], { exp: 'never' });
  await root.close();

  gw = await startGateway(env, dataDir, config);
  t.match(gw.output(), /quarantined/, 'a log line says what was set aside');
  for (const line of [/keys: skipping the stored key key_unreadable, which does not read/, /keys: skipping the stored key key_broken, which does not validate/,
    /workspaces: skipping the stored workspace ws_unreadable, which does not read/, /workspaces: skipping the stored workspace ws_broken, which does not validate/,
    /limits: skipping the stored counters of key_unreadable, which do not read/]) t.match(gw.output(), line, `logged: ${line.source.slice(0, 60)}`);
  const r = await api().call('/v1/chat/completions', gw.masterKey, { model: 'openai/m', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(r.status, 200, 'the gateway serves');
  const served = r.headers.get('x-request-id')!;
  t.equal((await api().call('/v1/requests/req_0undecodable00000000', gw.masterKey)).status, 404, 'an unreadable row reads as none');
  await new Promise((resolve) => setTimeout(resolve, 400)); // rollups persist at most every 250 ms
  t.equal((await api().call('/v1/chat/completions', gw.masterKey, { model: 'openai/m', messages: [{ role: 'user', content: 'again' }] })).status, 200, 'and goes on writing');
  const summary = await api().call('/admin/spend?by=model', gw.masterKey);
  t.equal(summary.status, 200);
  t.ok(summary.json.data.every((d: { model: string }) => d.model.length <= 100), 'rollup keys stay bounded');
  t.equal(await gw.stop(), 0);

  const after = open({ path: join(dataDir, 'sluice.mdb'), readOnly: true });
  const quarantined = [...after.openDB({ name: 'quarantine', encoding: 'msgpack' }).getRange()].map(({ key }) => String(key));
  const pending = [...after.openDB({ name: 'rollup_pending', encoding: 'msgpack' }).getRange()].map(({ key }) => String(key));
  await after.close();
  t.ok(quarantined.includes('req_0badrow0000000000000') && quarantined.includes('req_0missing000000000000') && quarantined.includes('req_0undecodable00000000'), 'rows that do not validate or do not read are quarantined');
  t.notOk(pending.includes('req_0badrow0000000000000'), 'and no longer retried at every start');
  t.notOk(pending.includes(poison.id), 'the long-model row was folded (its key bounded)');
  t.notOk(quarantined.includes(served), 'a request folded into the damaged bucket is not quarantined');
  t.match(gw.output(), /the stored bucket .* does not read; counting it again from zero/, 'the damaged bucket is logged');
  gw = await startGateway(env, dataDir, config);
  t.equal((await api().call('/health', '')).status, 200, 'and the start after that is clean too');
});

t.test('the expiry sweep survives keys of any shape', async (t) => {
  const { ExpirySweep } = await import('../../src/store/lmdb.js');
  const dir = tempDataDir();
  const root = open({ path: join(dir, 'sweep.mdb') });
  const db = root.openDB({ name: 'responses', encoding: 'msgpack' });
  for (let i = 0; i < 30; i++) await db.put(i as never, { exp: 0 });
  for (let i = 0; i < 30; i++) await db.put(['ws', `r${i}`] as never, { exp: i % 2 ? Date.now() + 60_000 : 0 });
  await db.put('plain' as never, { no: 'exp' });
  const sweep = new ExpirySweep(db as never);
  let removed = 0;
  for (let i = 0; i < 10; i++) removed += sweep.run(7); // small budgets: resumes across key types
  await root.committed;
  t.equal(removed, 46, 'numeric, array and string keys swept, the unexpired kept');
  t.equal([...db.getRange()].length, 15);
  await root.close();
});
