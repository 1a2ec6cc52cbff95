// The worker pool is shared fairly: one workspace's large bodies cannot queue every other
// tenant behind them (a share of the pool per workspace), and a request its key or its
// credits would refuse anyway is refused before any worker time is spent on it.
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  models: [{ ...testModel('m'), context_window: 1_000_000 }], router: { simple: 'openai/m', medium: 'openai/m', complex: 'openai/m' },
  worker_bytes_per_workspace: 2 * 1024 * 1024, max_body_bytes: 2 * 1024 * 1024,
});
t.teardown(async () => { await gw.stop(); await fake.close(); });
const { call, tenant } = http(gw);
// ~1.8 MB of text (the share is 2 MB): the classifier (model auto) reads it in the pool for most of a second.
const big = (n: number) => ({ model: 'auto', messages: [{ role: 'user', content: `${n} ` + 'the quick brown fox jumps over the lazy dog '.repeat(40_000) }] });

t.test('one workspace\'s share of the pool', async (t) => {
  const a = await tenant(gw.masterKey, 100);
  const b = await tenant(gw.masterKey, 100);
  const [first, second, other] = await Promise.all([
    call('/v1/chat/completions', a.key, big(1)),
    new Promise((r) => setTimeout(r, 30)).then(() => call('/v1/chat/completions', a.key, big(2))),
    new Promise((r) => setTimeout(r, 30)).then(() => call('/v1/chat/completions', b.key, big(3))),
  ]);
  t.equal(first.status, 200, 'the first large body is read');
  t.equal(second.status, 429, 'a second one of the same workspace while the first is in the pool: 429');
  t.equal(second.json.error.kind, 'concurrency');
  t.equal(second.headers.get('retry-after'), '1');
  t.equal(other.status, 200, 'another workspace has its own share');
  t.equal((await call('/v1/chat/completions', a.key, big(4))).status, 200, 'and the share is back once the first is done');
});

t.test('refused before the pool when the key or the credits would refuse anyway', async (t) => {
  const broke = await tenant(gw.masterKey, 0.0000001);
  const r = await call('/v1/chat/completions', broke.key, big(5));
  t.equal(r.status, 402, 'a workspace without credits');
  const limited = await tenant(gw.masterKey, 100, { windows: [{ requests: 1, seconds: 3600 }] });
  t.equal((await call('/v1/chat/completions', limited.key, { model: 'openai/m', messages: [{ role: 'user', content: 'one' }] })).status, 200);
  const w = await call('/v1/chat/completions', limited.key, big(6));
  t.equal(w.status, 429);
  t.equal(w.json.error.kind, 'window', 'its spent window');
  t.equal((await call('/health', '')).json.in_flight, 0);
});
