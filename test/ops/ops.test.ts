// /openapi.json is valid OpenAPI 3.1 and lists routes that exist; /metrics parses as the
// Prometheus text format and its counters move with traffic; access logs are JSON lines
// with no secrets or prompt text.
import { Validator } from '@seriousme/openapi-schema-validator';
import OpenAI from 'openai';
import parsePrometheus from 'parse-prometheus-text-format';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { ROUTE_DOCS } from '../../src/server/openapi.js';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), { models: ['ops-a', 'fail-500'].map(testModel) });
t.teardown(async () => { await gw.stop(); await fake.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

t.test('/openapi.json is valid OpenAPI 3.1, documents every route, and every route it lists exists', async (t) => {
  const res = await fetch(`${gw.url}/openapi.json`);
  t.equal(res.status, 200);
  const spec = await res.json() as Json;
  const result = await new Validator().validate(spec);
  t.ok(result.valid, `valid OpenAPI ${spec.openapi}${result.valid ? '' : `: ${JSON.stringify(result.errors).slice(0, 500)}`}`);
  t.equal(spec.openapi, '3.1.0');
  const listed = Object.entries(spec.paths as Record<string, Json>).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
  const documented = Object.keys(ROUTE_DOCS).map((id) => id.replace(/:([a-z_]+)/g, '{$1}').replace(/\/\*$/, '/{asset}'));
  t.same([...listed].sort(), [...documented].sort(), 'every documented route was registered, and every registered route is documented');
  const chat = spec.paths['/v1/chat/completions'].post;
  t.ok(chat.requestBody.content['application/json'].schema.properties.messages, 'the chat body schema comes from the zod schema');
  t.same(spec.paths['/v1/requests'].get.parameters.map((p: Json) => p.name).sort(), ['cache', 'cursor', 'end', 'key', 'limit', 'model', 'start', 'status']);
  for (const id of listed) {
    const [method, path] = id.split(' ') as [string, string];
    const url = `${gw.url}${path.replace(/\{[a-z_]+\}/g, 'x')}`;
    const r = await fetch(url, { method, headers: { authorization: 'Bearer sk-wrong-key-for-probing' } });
    const text = await r.text();
    t.notMatch(text, /No route for/, `${id} is served (${r.status})`);
  }
  const docs = await fetch(`${gw.url}/docs`);
  t.equal(docs.status, 200);
  t.match(docs.headers.get('content-type'), /text\/html/);
});

const metrics = async () => {
  const text = await (await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).text();
  const families = parsePrometheus(text);
  const sum = (name: string, filter: (l: Record<string, string>) => boolean = () => true) =>
    families.find((f) => f.name === name)?.metrics.filter((m) => filter(m.labels ?? {})).reduce((a, m) => a + Number(m.value ?? m.count ?? 0), 0) ?? 0;
  return { text, families, sum };
};

t.test('/metrics parses and moves with traffic', async (t) => {
  const before = await metrics();
  t.ok(before.families.length >= 20, `${before.families.length} metric families`);
  for (const name of ['sluice_requests_total', 'sluice_errors_total', 'sluice_request_duration_seconds', 'sluice_overhead_seconds', 'sluice_upstream_duration_seconds',
    'sluice_tokens_total', 'sluice_cost_usd_total', 'sluice_saved_usd_total', 'sluice_cache_hit_ratio', 'sluice_route_breaker_state', 'sluice_worker_pool_queue_depth',
    'sluice_worker_pool_utilization', 'sluice_event_loop_lag_seconds', 'sluice_lmdb_size_bytes']) {
    t.ok(before.text.includes(`# TYPE ${name} `), `${name} is exposed`);
  }
  const ask = { model: 'openai/ops-a', temperature: 0, messages: [{ role: 'user' as const, content: 'count me' }] };
  for (let i = 0; i < 3; i++) await client.chat.completions.create(ask); // one miss, then two exact hits
  await client.chat.completions.create({ model: 'openai/fail-500', messages: [{ role: 'user', content: 'x' }] }).catch(() => undefined);
  await new Promise((r) => setTimeout(r, 100));
  const after = await metrics();
  t.equal(after.sum('sluice_requests_total') - before.sum('sluice_requests_total'), 4, 'four more requests');
  t.equal(after.sum('sluice_requests_total', (l) => l.cache === 'exact') - before.sum('sluice_requests_total', (l) => l.cache === 'exact'), 2, 'two of them cache hits');
  t.ok(after.sum('sluice_errors_total') > before.sum('sluice_errors_total'), 'the failure counted by kind');
  t.ok(after.sum('sluice_tokens_total', (l) => l.type === 'prompt') > before.sum('sluice_tokens_total', (l) => l.type === 'prompt'));
  t.ok(after.sum('sluice_saved_tokens_total', (l) => l.mechanism === 'exact_cache') > 0);
  t.ok(after.sum('sluice_saved_usd_total') > before.sum('sluice_saved_usd_total'));
  t.equal(after.sum('sluice_request_duration_seconds') - before.sum('sluice_request_duration_seconds'), 4, 'histogram count moved');
  // (the parser drops the labels of labelled histograms, so this one is read from the text)
  t.ok(Number(/^sluice_upstream_duration_seconds_count\{route="openai\/ops-a"\} (\d+)$/m.exec(after.text)?.[1]) >= 1, 'upstream latency per route');
  t.ok(after.sum('sluice_cache_hit_ratio') > 0);
  t.ok(after.sum('sluice_lmdb_size_bytes') > 0);
  t.equal(after.sum('sluice_route_breaker_state', (l) => l.route === 'openai/ops-a' && l.state === 'closed'), 1);
});

t.test('access logs: one JSON line per request, with no key or prompt text', async (t) => {
  const { response } = await client.chat.completions.create({ model: 'openai/ops-a', messages: [{ role: 'user', content: 'a secret prompt 12345' }] }).withResponse();
  const id = response.headers.get('x-request-id')!;
  let line: Json | undefined;
  for (let i = 0; i < 40 && !line; i++) {
    await new Promise((r) => setTimeout(r, 50));
    line = gw.output().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Json).find((l) => l.request_id === id);
  }
  t.ok(line, 'logged');
  t.equal(line?.msg, 'request');
  t.equal(line?.status, 200);
  t.equal(line?.served, 'openai/ops-a');
  t.type(line?.total_ms, 'number');
  for (const field of ['total_ms', 'overhead_ms']) {
    const v = line?.[field];
    t.ok(typeof v === 'number' && Math.abs(v * 1000 - Math.round(v * 1000)) < 1e-6, `${field} to the microsecond (${String(v)})`);
  }
  t.notMatch(gw.output(), /a secret prompt 12345/, 'no prompt text');
  t.notMatch(gw.output(), new RegExp(gw.masterKey), 'no key');
});
