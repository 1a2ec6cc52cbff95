// A response the client saw complete is in the ledger even if the gateway is killed the
// moment it completed: on every path (no-usage streams and bodies, cache hits, dedupe,
// bridged Responses, refusals). (Stored Responses across kill -9: durability-responses.)
import { open } from 'lmdb';
import { join } from 'node:path';
import t from 'tap';
import { LedgerRowSchema } from '../../src/accounts/ledger.js';
import { LEDGER_DB } from '../../src/store/lmdb.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const fake = await startFakeUpstream();
t.teardown(() => fake.close());
const env = { OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' };
// (no semantic cache: none of these paths is its hit, and loading its model at each of the ~30 starts took ~0.7 s apiece)
const config = { models: ['m', 'nousage', 'nousage-drip-15', 'seq-m', 'fail-500', 'long-300'].map(testModel), savings: { semantic_cache: { enabled: false } } };

t.test('kill -9 the moment a response completes: its row is there, on every path', async (t) => {
  const dataDir = tempDataDir();
  const user = (content: string) => [{ role: 'user', content }];
  type Call = ReturnType<typeof http>['call'];
  const kinds: Array<[string, (call: Call, key: string) => Promise<{ status: number; headers: Headers }>]> = [
    ['no-usage stream', (call, key) => call('/v1/chat/completions', key, { model: 'openai/nousage', stream: true, messages: user(`s ${Math.random()}`) })],
    ['no-usage stream again', (call, key) => call('/v1/chat/completions', key, { model: 'openai/nousage', stream: true, messages: user(`s ${Math.random()}`) })],
    ['no-usage slow stream', (call, key) => call('/v1/chat/completions', key, { model: 'openai/nousage-drip-15', stream: true, messages: user(`d ${Math.random()}`) })],
    ['no-usage body', (call, key) => call('/v1/chat/completions', key, { model: 'openai/nousage', messages: user(`b ${Math.random()}`) })],
    ['exact-cache hit', (call, key) => call('/v1/chat/completions', key, { model: 'openai/seq-m', temperature: 0, messages: user('cached question') })],
    ['exact-cache hit, streamed', (call, key) => call('/v1/chat/completions', key, { model: 'openai/seq-m', temperature: 0, stream: true, messages: user('cached question') })],
    ['bridged Responses', (call, key) => call('/v1/responses', key, { model: 'openai/m', input: `r ${Math.random()}` })],
    ['404 refusal', (call, key) => call('/v1/chat/completions', key, { model: 'openai/nope', messages: user('x') })],
    ['400 refusal', (call, key) => call('/v1/chat/completions', key, '{"model":')],
    ['upstream failure', (call, key) => call('/v1/chat/completions', key, { model: 'openai/fail-500', messages: user('x') })],
    // A client has the whole answer at [DONE] (or a Responses stream's response.completed), before the body's end.
    ['stream read to [DONE]', (_call, key) => readUntil('/v1/chat/completions', key, { model: 'openai/long-300', stream: true, messages: user(`r ${Math.random()}`) }, 'data: [DONE]')],
    ['Responses stream read to response.completed', (_call, key) => readUntil('/v1/responses', key, { model: 'openai/m', stream: true, input: `q ${Math.random()}` }, 'response.completed')],
  ];
  let key = '';
  let base = '';
  /** Reads a stream until `marker` arrives, and returns at once (the body need not have ended). */
  const readUntil = async (path: string, k: string, body: object, marker: string) => {
    const res = await fetch(`${base}${path}`, { method: 'POST', headers: { authorization: `Bearer ${k}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const reader = res.body!.getReader();
    let seen = '';
    while (!seen.includes(marker)) { const { value, done } = await reader.read(); if (done) break; seen += new TextDecoder().decode(value); }
    return { status: res.status, headers: res.headers };
  };
  for (const [kind, run] of kinds) {
    const gw = await startGateway(env, dataDir, config);
    base = gw.url;
    const { call, tenant } = http(gw);
    if (!key) {
      key = (await tenant(gw.masterKey, 10)).key;
      await call('/v1/chat/completions', key, { model: 'openai/seq-m', temperature: 0, messages: user('cached question') }); // warms the exact cache
      await new Promise((r) => setTimeout(r, 100));
    }
    const answer = await run(call, key);
    gw.proc.kill('SIGKILL'); // the moment the response completed
    await new Promise((r) => gw.proc.exitCode !== null || gw.proc.signalCode !== null ? r(null) : gw.proc.once('exit', r));
    const root = open({ path: join(dataDir, 'sluice.mdb'), readOnly: true });
    const stored = root.openDB(LEDGER_DB).get(answer.headers.get('x-request-id')!);
    await root.close();
    const row = LedgerRowSchema.safeParse(stored);
    t.ok(row.success, `${kind} (${answer.status}): its row survived kill -9`);
    if (kind.startsWith('no-usage') && row.success) {
      t.ok(row.data.usage_source === 'estimate' && row.data.prompt_tokens > 0 && row.data.completion_tokens > 0 && row.data.charge_usd > 0,
        `${kind}: billed by counting its prompt and its text`);
    }
  }
});

t.test('the billing rule without upstream usage', async (t) => {
  const gw = await startGateway(env, tempDataDir(), config);
  t.teardown(() => gw.stop());
  const { call, tenant } = http(gw);
  const { key } = await tenant(gw.masterKey, 10, undefined, ['inference', 'usage:read']);
  const row = async (id: string) => {
    for (let i = 0; i < 50; i++) {
      const r = await call(`/v1/requests/${id}`, key);
      if (r.status === 200) return r.json;
      await new Promise((res) => setTimeout(res, 20));
    }
    throw new Error(`no row for ${id}`);
  };

  // A completed stream without usage: the figures at its end carry the count.
  const s = await call('/v1/chat/completions', key, { model: 'openai/nousage', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: 'Say hello' }] });
  const comment = /^: gateway (.*)$/m.exec(s.text);
  t.ok(comment, 'the stream ends with the gateway figures');
  const figures = JSON.parse(comment![1]!);
  t.equal(figures.usage.completion_tokens, 6, '"Hello from the fake upstream." counted: 6 tokens');
  t.ok(figures.usage.prompt_tokens > 0 && figures.cost_usd > 0, 'and the prompt, and a cost');
  t.ok(s.text.indexOf(': gateway') < s.text.indexOf('data: [DONE]'), 'the figures come before [DONE]');
  const sRow = await row(s.headers.get('x-request-id')!);
  t.equal(sRow.usage_source, 'estimate');
  t.equal(sRow.completion_tokens, 6);

  // A body without usage: counted before it is answered.
  const b = await call('/v1/chat/completions', key, { model: 'openai/nousage', messages: [{ role: 'user', content: 'Say hello' }] });
  t.equal(b.json.gateway.usage.completion_tokens, 6);
  t.equal((await row(b.headers.get('x-request-id')!)).usage_source, 'estimate');

  // A stream the client leaves half way: the prompt and the text it got so far.
  const controller = new AbortController();
  const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', signal: controller.signal,
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/nousage-drip-15', stream: true, messages: [{ role: 'user', content: 'Say hello slowly' }] }) });
  const reader = res.body!.getReader();
  let seen = '';
  while (!seen.includes(' fake')) seen += new TextDecoder().decode((await reader.read()).value);
  controller.abort();
  const aRow = await row(res.headers.get('x-request-id')!);
  t.equal(aRow.status, 499);
  t.equal(aRow.usage_source, 'estimate');
  t.ok(aRow.completion_tokens >= 2 && aRow.completion_tokens < 6, `the tokens streamed so far (${aRow.completion_tokens})`);
  t.ok(aRow.prompt_tokens > 0);

  // The upstream failed before answering: nothing is billed.
  const f = await call('/v1/chat/completions', key, { model: 'openai/fail-500', messages: [{ role: 'user', content: 'x' }] });
  t.equal(f.status, 502);
  const fRow = await row(f.headers.get('x-request-id')!);
  t.equal(fRow.usage_source, 'none');
  t.equal(fRow.charge_usd, 0, 'an upstream failure costs the caller nothing');
});
