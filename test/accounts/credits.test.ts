// Credits: a metered workspace pays for its requests out of top-ups; a request it cannot
// cover is refused with 402 before anything goes upstream; every balance change is a
// ledger row, and the stored balance equals the sum of the stored rows.
import { open } from 'lmdb';
import { join } from 'node:path';
import OpenAI from 'openai';
import t from 'tap';
import { LedgerRowSchema } from '../../src/accounts/ledger.js';
import { WorkspaceSchema } from '../../src/accounts/workspaces.js';
import { LEDGER_DB } from '../../src/store/lmdb.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const fake = await startFakeUpstream();
const dataDir = tempDataDir();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, dataDir,
  { models: [testModel('paid-model')], billing: { markup: 0.1 } });
t.teardown(async () => { await gw.stop(); await fake.close(); });

const { admin } = http(gw);
const messages = [{ role: 'user' as const, content: 'Hi' }];
const statusOf = (p: Promise<unknown>) => p.then(() => 200, (e: unknown) => (e instanceof OpenAI.APIError ? e.status : -1));

t.test('admin validation', async (t) => {
  t.equal((await admin('/admin/workspaces', {})).status, 400, 'name is required');
  t.equal((await admin('/admin/workspaces', { name: 'x', email: 'not-an-email' })).status, 400);
  t.equal((await admin('/admin/workspaces/ws_nope')).status, 404);
  t.equal((await admin('/admin/workspaces/ws_nope/topups', { amount_usd: 1 })).status, 404);
  t.equal((await admin('/admin/keys', { name: 'k', workspace: 'ws_nope' })).status, 404, 'keys only in workspaces that exist');
  const a = await admin('/admin/workspaces', { name: 'dup', email: 'Dup@Example.com' });
  t.equal(a.status, 201);
  const b = await admin('/admin/workspaces', { name: 'dup2', email: 'dup@example.com' });
  t.equal(b.status, 409, 'one workspace per email');
  for (const amount of [0, -5, 'ten', 2_000_000]) {
    const r = await admin(`/admin/workspaces/${a.json.id}/topups`, { amount_usd: amount });
    t.equal(r.status, 400, `top-up of ${JSON.stringify(amount)} refused`);
    t.equal(r.json.error.param, 'amount_usd');
  }
  t.equal((await admin('/admin/workspaces/default/topups', { amount_usd: 1 })).status, 400, 'the unmetered workspace has no credits');
});

t.test('402 before upstream, top-up, exact charges', async (t) => {
  const ws = await admin('/admin/workspaces', { name: 'acme' });
  t.equal(ws.status, 201);
  t.equal(ws.json.balance_usd, 0);
  const minted = await admin('/admin/keys', { name: 'acme-app', workspace: ws.json.id });
  t.equal(minted.json.workspace, ws.json.id);
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: minted.json.key, maxRetries: 0 });

  const before = fake.received.length;
  const refused = await client.chat.completions.create({ model: 'openai/paid-model', messages }).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.APIError && refused.status === 402, 'no credits: 402');
  t.equal((refused as InstanceType<typeof OpenAI.APIError>).code, 'insufficient_credits');
  t.equal(fake.received.length, before, 'nothing was sent upstream');

  const topup = await admin(`/admin/workspaces/${ws.json.id}/topups`, { amount_usd: 1, note: 'card payment' });
  t.equal(topup.status, 201);
  t.equal(topup.json.workspace.balance_usd, 1);

  const { data, response } = await client.chat.completions.create({ model: 'openai/paid-model', messages }).withResponse();
  t.ok(data.choices[0]?.message.content);
  const charge = Number(response.headers.get('x-btl-customer-charge'));
  const cost = Number(response.headers.get('x-gateway-cost-usd'));
  t.ok(charge > 0 && Math.abs(charge - Math.min(cost * 1.1, Number(response.headers.get('x-btl-benchmark-cost')))) < 1e-9, 'charge = cost × (1 + markup), capped');
  let text = '';
  for await (const c of await client.chat.completions.create({ model: 'openai/paid-model', messages, stream: true })) text += c.choices[0]?.delta.content ?? '';
  t.ok(text.length > 0, 'streams are charged too');
  const after = await admin(`/admin/workspaces/${ws.json.id}`);
  t.ok(after.json.balance_usd < 1 - charge + 1e-12, 'the balance went down by the charges');
  t.equal(after.json.reserved_usd, 0, 'nothing held once requests are done');

  // refunds: at most the charge, at most once
  const requestId = response.headers.get('x-request-id')!;
  const path = `/admin/workspaces/${ws.json.id}/refunds`;
  t.equal((await admin(path, { request_id: requestId, amount_usd: charge * 2 })).status, 400, 'not more than was charged');
  t.equal((await admin(path, { request_id: 'req_000nope' })).status, 404);
  const refund = await admin(path, { request_id: requestId });
  t.equal(refund.status, 201);
  t.ok(Math.abs(refund.json.amount_usd - charge) < 1e-12, 'the whole charge by default');
  t.ok(Math.abs(refund.json.workspace.balance_usd - (after.json.balance_usd + charge)) < 1e-9);
  t.equal((await admin(path, { request_id: requestId })).status, 409, 'only once');
});

t.test('a tight balance is checked against the exact prompt count', async (t) => {
  // prices: $1 / 1M input, $2 / 1M output. Balance $0.00005 = 50 input-token-equivalents.
  const ws = await admin('/admin/workspaces', { name: 'tight', credits_usd: 0.00005 });
  t.equal(ws.json.balance_usd, 0.00005, 'initial credits arrive as a top-up');
  const minted = await admin('/admin/keys', { name: 'tight-app', workspace: ws.json.id });
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: minted.json.key, maxRetries: 0 });
  // ~1 prompt token + 10 output tokens ≈ $0.000024 with markup: fits, though the body is ~90 bytes (byte bound ≈ $0.00012)
  t.equal(await statusOf(client.chat.completions.create({ model: 'openai/paid-model', messages, max_tokens: 10 })), 200);
  // 100 output tokens could cost $0.00022: refused up front
  const before = fake.received.length;
  t.equal(await statusOf(client.chat.completions.create({ model: 'openai/paid-model', messages, max_tokens: 100 })), 402);
  t.equal(fake.received.length, before, 'nothing was sent upstream');
});

t.test('stored balances equal the sum of their ledger rows', async (t) => {
  t.equal(await gw.stop(), 0);
  const root = open({ path: join(dataDir, 'sluice.mdb'), readOnly: true });
  const rows = [...root.openDB(LEDGER_DB).getRange()].map(({ value }) => LedgerRowSchema.parse(value));
  const workspaces = [...root.openDB({ name: 'workspaces', encoding: 'msgpack' }).getRange()].map(({ value }) => WorkspaceSchema.parse(value));
  await root.close();
  const metered = workspaces.filter((w) => w.metered);
  t.ok(metered.length >= 3);
  for (const ws of metered) {
    const sum = rows.filter((r) => r.workspace === ws.id).reduce((a, r) => a + r.delta_nano, 0);
    t.equal(ws.balance_nano, sum, `${ws.name}: balance = sum of its rows`);
  }
  t.ok(rows.some((r) => r.kind === 'topup' && r.note === 'card payment'), 'top-ups are rows');
  t.ok(rows.some((r) => r.kind === 'refund' && r.delta_nano > 0), 'refunds are rows');
  t.ok(rows.some((r) => r.status === 402 && r.delta_nano === 0), 'refusals are rows, without a charge');
  const charges = rows.filter((r) => r.kind === 'request' && r.delta_nano < 0);
  t.ok(charges.length >= 3);
  for (const r of charges) t.equal(r.delta_nano, -Math.round(r.charge_usd * 1e9), 'each charge row debits its charge');
});
