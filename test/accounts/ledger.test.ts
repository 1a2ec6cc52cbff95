// Ledger rows: one per request, with the figures the headers showed, surviving a restart;
// minted keys survive it too, and revocation bites on the next request.
import { open } from 'lmdb';
import { join } from 'node:path';
import OpenAI from 'openai';
import t from 'tap';
import { LedgerRowSchema, type LedgerRow } from '../../src/accounts/ledger.js';
import { LEDGER_DB } from '../../src/store/lmdb.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';

const fake = await startFakeUpstream();
t.teardown(() => fake.close());
const dataDir = tempDataDir();
const env = { OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' };
const config = { models: [testModel('drip-100')] };
const messages = [{ role: 'user' as const, content: 'Count to three' }];

function readLedger(): LedgerRow[] {
  const root = open({ path: join(dataDir, 'sluice.mdb'), readOnly: true });
  const rows = [...root.openDB(LEDGER_DB).getRange()].map(({ value }) => LedgerRowSchema.parse(value));
  void root.close();
  return rows;
}

t.test('rows are written, match the headers, and survive restarts', async (t) => {
  let gw = await startGateway(env, dataDir, config);
  const admin = (path: string, init: RequestInit = {}) => fetch(`${gw.url}${path}`, { ...init, headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' } });
  const minted = await (await admin('/admin/keys', { method: 'POST', body: JSON.stringify({ name: 'app' }) })).json() as { id: string; key: string };
  t.match(minted.key, /^sk-sluice-/);
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: minted.key, maxRetries: 0 });
  const { data, response } = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages }).withResponse();
  const id = response.headers.get('x-request-id')!;
  let text = '';
  for await (const c of await client.chat.completions.create({ model: 'gpt-4o-mini', messages, stream: true })) text += c.choices[0]?.delta.content ?? '';
  t.ok(text.length > 0);
  // an aborted stream is still a row, with estimated tokens
  const ac = new AbortController();
  try {
    for await (const c of await client.chat.completions.create({ model: 'openai/drip-100', messages, stream: true }, { signal: ac.signal })) {
      if (c.choices[0]?.delta.content) ac.abort();
    }
  } catch { /* aborted */ }
  await new Promise((r) => setTimeout(r, 300));
  t.equal(await gw.stop(), 0, 'graceful shutdown exits 0');

  gw = await startGateway(env, dataDir, config);
  const again = new OpenAI({ baseURL: gw.baseURL, apiKey: minted.key, maxRetries: 0 });
  const r2 = await again.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages });
  t.ok(r2.choices[0]?.message.content, 'a minted key works after a restart');
  const revoke = await fetch(`${gw.url}/admin/keys/${minted.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${gw.masterKey}` } });
  t.equal(revoke.status, 200);
  const status = await again.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages }).then(() => 0, (e: unknown) => (e instanceof OpenAI.APIError ? e.status : -1));
  t.equal(status, 401, 'a revoked key is refused on the next request');
  t.equal(await gw.stop(), 0);

  const rows = readLedger();
  t.equal(rows.length, 4, 'one row per request (the 401 never reached the gateway path)');
  const first = rows.find((r) => r.id === id)!;
  t.ok(first, 'the row carries the x-request-id');
  t.equal(first.key_id, minted.id);
  t.equal(first.served, 'openai/gpt-4.1-mini');
  t.equal(first.prompt_tokens, data.usage!.prompt_tokens);
  t.equal(first.completion_tokens, data.usage!.completion_tokens);
  t.equal(first.cost_usd, Number(response.headers.get('x-gateway-cost-usd')));
  t.equal(first.charge_usd, Number(response.headers.get('x-btl-customer-charge')));
  t.equal(first.usage_source, 'upstream');
  const streamed = rows.find((r) => r.stream && r.status === 200)!;
  t.ok(streamed.completion_tokens > 0 && streamed.cost_usd > 0, 'streamed request billed from the usage frame');
  const aborted = rows.find((r) => r.status === 499)!;
  t.ok(aborted, 'the aborted stream has a row');
  t.equal(aborted.usage_source, 'estimate');
  t.ok(aborted.prompt_tokens > 0, 'prompt tokens counted by the tokenizer pool');
});

t.test('admin keys: list hides secrets, non-admin keys are refused', async (t) => {
  const gw = await startGateway(env, tempDataDir(), config);
  t.teardown(() => gw.stop());
  const headers = { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' };
  const made = await (await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers, body: JSON.stringify({ name: 'ci' }) })).json() as { id: string; key: string };
  const list = await (await fetch(`${gw.url}/admin/keys`, { headers })).json() as { data: Array<Record<string, unknown>> };
  t.equal(list.data.length, 1);
  t.equal(list.data[0]!.id, made.id);
  t.notOk('hash' in list.data[0]! || 'key' in list.data[0]!, 'no secret or hash in listings');
  t.notMatch(JSON.stringify(list), made.key);
  const asApp = await fetch(`${gw.url}/admin/keys`, { headers: { authorization: `Bearer ${made.key}` } });
  t.equal(asApp.status, 403);
  const bad = await fetch(`${gw.url}/admin/keys`, { method: 'POST', headers, body: JSON.stringify({ name: 'x', scopes: ['root'] }) });
  t.equal(bad.status, 400);
  t.match(((await bad.json()) as { error: { param: string } }).error.param, /^scopes/);
  t.notMatch(gw.output(), made.key, 'secrets never logged');
  t.notMatch(gw.output(), gw.masterKey, 'the master key is not printed, only where it is');
});
