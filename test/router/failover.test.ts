// Failover between two routes of one model (two fake OpenAI upstreams): 500, 429, timeouts
// and refused connections move the request to the next route before any byte reaches the
// caller; the breaker opens and recovers; operators can disable and enable a deployment.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const a = await startFakeUpstream();
const b = await startFakeUpstream();
const gw = await startGateway({ SLUICE_SIM: 'off' }, tempDataDir(), {
  providers: {
    primary: { kind: 'openai', base_url: a.url, api_key: 'sk-fake-upstream', responses_api: true },
    backup: { kind: 'openai', base_url: b.url, api_key: 'sk-fake-upstream' },
  },
  models: [{ slug: 'primary/m1', upstream_id: 'm1', context_window: 128000, prices: { input: 1, output: 2 }, region: 'us',
    routes: [{ provider: 'backup', upstream_id: 'm1', prices: { input: 2, output: 4 }, region: 'eu', zdr: true }] },
  { slug: 'primary/blind', upstream_id: 'blind', context_window: 128000, capabilities: ['tools'], prices: { input: 0.1, output: 0.2 } },
  { slug: 'primary/sees', upstream_id: 'sees', context_window: 128000, capabilities: ['tools', 'vision', 'json'], prices: { input: 1, output: 2 } }],
  aliases: { pair: { models: ['primary/blind', 'primary/sees'] } },
  upstream: { max_retries: 2, breaker_failures: 3, breaker_cooldown_ms: 400, headers_timeout_ms: 300 },
});
t.teardown(async () => { await gw.stop(); await a.close(); await b.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const messages = [{ role: 'user' as const, content: 'Hi' }];
const ask = () => client.chat.completions.create({ model: 'primary/m1', messages }).withResponse();
const served = async () => {
  const { response } = await ask();
  return { decision: response.headers.get('x-gateway-decision'), retries: response.headers.get('x-gateway-retries') };
};
const { admin } = http(gw);

/** Waits until the route's rest (an open breaker's cooldown, or a Retry-After) is over, as the gateway reports it: no guessed sleep. */
async function restUntilOver(decision: string): Promise<void> {
  const dep = (await admin('/admin/deployments')).json.data.find((d: { decision: string }) => d.decision === decision);
  const until = dep?.resting_until ? Date.parse(dep.resting_until as string) : 0;
  if (until > Date.now()) await new Promise((r) => setTimeout(r, until - Date.now() + 5));
}

t.test('the Responses API passed through: an image goes to the alias member that sees, JSON output to one that has it', async (t) => {
  const decision = async (body: OpenAI.Responses.ResponseCreateParamsNonStreaming) => (await client.responses.create(body).withResponse()).response.headers.get('x-gateway-decision');
  t.equal(await decision({ model: 'pair', input: 'Hi' }), 'primary/blind', 'the cheapest, when it can');
  t.equal(await decision({ model: 'pair', input: [{ role: 'user', content: [{ type: 'input_text', text: 'what is it?' }, { type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'auto' }] }] }),
    'primary/sees', 'an input_image: the member with vision');
  t.equal(await decision({ model: 'pair', input: 'Hi', text: { format: { type: 'json_object' } } }), 'primary/sees', 'text.format json: the member with JSON output');
  const blind = await client.responses.create({ model: 'primary/blind', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'auto' }] }] }).catch((e: unknown) => e);
  t.ok(blind instanceof OpenAI.BadRequestError && /does not support image inputs/.test(blind.message), String(blind));
  t.equal((blind as InstanceType<typeof OpenAI.BadRequestError>).param, 'input', 'named as the caller sent it');
  t.equal(a.received.at(-1)?.url, '/v1/responses', 'these went through as Responses requests (passed through)');

});

t.test('count_tokens holds a key to its models list even for a model no enabled provider serves', async (t) => {
  const held = ((await admin('/admin/keys', { name: 'primary-only', limits: { models: ['primary/*'] } })).json as { key: string }).key;
  const count = (key: string) => fetch(`${gw.url}/v1/messages/count_tokens`, { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Hello' }] }) });
  t.equal((await count(held)).status, 403, 'outside its models: 403, though nothing serves the model here');
  t.equal((await count(gw.masterKey)).status, 200, 'the operator counts it');
});

t.test('the cheapest healthy route serves', async (t) => {
  t.same(await served(), { decision: 'primary/m1', retries: '0' });
});

for (const fault of ['500', '429', 'hang'] as const) {
  t.test(`first route ${fault === 'hang' ? 'times out' : `answers ${fault}`}: the caller gets 200 from the second`, async (t) => {
    a.setFault(fault);
    const { data, response } = await ask();
    t.ok(data.choices[0]?.message.content);
    t.equal(response.headers.get('x-gateway-decision'), 'backup/m1');
    t.equal(response.headers.get('x-gateway-retries'), '1');
    // streams fail over too: nothing had reached the caller yet
    let text = '';
    const stream = await client.chat.completions.create({ model: 'primary/m1', messages, stream: true }).withResponse();
    t.equal(stream.response.headers.get('x-gateway-retries'), '1');
    for await (const c of stream.data) text += c.choices[0]?.delta.content ?? '';
    t.ok(text.length > 0);
    a.setFault('none');
    t.same(await served(), { decision: 'primary/m1', retries: '0' }, 'back on the first route once it answers');
  });
}

t.test('the breaker opens after repeated failures and recovers through a probe', async (t) => {
  a.setFault('500');
  for (let i = 0; i < 3; i++) t.equal((await served()).retries, '1');
  const before = a.received.length;
  t.same(await served(), { decision: 'backup/m1', retries: '0' }, 'open breaker: straight to the backup');
  t.equal(a.received.length, before, 'the open route was not called');
  const dep = (await admin('/admin/deployments')).json.data.find((d: { decision: string }) => d.decision === 'primary/m1');
  t.equal(dep.state, 'open');
  t.ok(dep.error_rate > 0);
  a.setFault('none');
  await restUntilOver('primary/m1');
  t.same(await served(), { decision: 'primary/m1', retries: '0' }, 'half-open probe succeeds');
  const after = (await admin('/admin/deployments')).json.data.find((d: { decision: string }) => d.decision === 'primary/m1');
  t.equal(after.state, 'closed');
});

t.test('disable and enable a deployment', async (t) => {
  t.equal((await admin('/admin/deployments/disable', { decision: 'primary/m1' })).json.state, 'disabled');
  t.same(await served(), { decision: 'backup/m1', retries: '0' });
  t.equal((await admin('/admin/deployments/enable', { decision: 'primary/m1' })).status, 200);
  t.same(await served(), { decision: 'primary/m1', retries: '0' });
  t.equal((await admin('/admin/deployments/disable', { decision: 'nope/x' })).status, 404);
});

t.test('pin a provider by body field or header; list providers', async (t) => {
  const viaField = await client.chat.completions.create({ model: 'primary/m1', messages, provider: 'backup' } as OpenAI.ChatCompletionCreateParamsNonStreaming).withResponse();
  t.equal(viaField.response.headers.get('x-gateway-decision'), 'backup/m1', 'pinned to the pricier route');
  t.notOk('provider' in b.received.at(-1)!.body, 'the pin field is not sent upstream');
  const viaHeader = await client.chat.completions.create({ model: 'primary/m1', messages }, { headers: { 'x-gateway-provider': 'backup' } }).withResponse();
  t.equal(viaHeader.response.headers.get('x-gateway-decision'), 'backup/m1');
  const bad = await client.chat.completions.create({ model: 'primary/m1', messages, provider: 'nope' } as OpenAI.ChatCompletionCreateParamsNonStreaming).catch((e: unknown) => e);
  t.ok(bad instanceof OpenAI.NotFoundError && bad.param === 'provider' && /No route of 'primary\/m1' goes through provider 'nope'/.test(bad.message), `an unknown route is a 404: ${String(bad)}`);
  t.equal((await fetch(`${gw.baseURL}/providers`)).status, 401, '/v1/providers: a customer endpoint, not public');
  const tenant = (await admin('/admin/keys', { name: 'usage-only', scopes: ['usage:read'] })).json as { key: string };
  const providers = await (await fetch(`${gw.baseURL}/providers`, { headers: { authorization: `Bearer ${tenant.key}` } })).json() as { data: Array<{ id: string; kind: string; deployments: unknown[] }> };
  t.same(providers.data.map((p) => p.id).sort(), ['backup', 'primary']);
  t.ok(providers.data.every((p) => p.kind === 'openai'));
  t.same(providers.data.map((p) => p.deployments.length).sort(), [1, 3], 'backup: m1; primary: m1, blind, sees');
});

t.test('a key\'s region and zero-data-retention constraints choose among routes', async (t) => {
  const mint = async (limits: object) => ((await admin('/admin/keys', { name: 'constrained', limits })).json as { key: string }).key;
  const as = (key: string) => new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const eu = await as(await mint({ regions: ['eu'] })).chat.completions.create({ model: 'primary/m1', messages }).withResponse();
  t.equal(eu.response.headers.get('x-gateway-decision'), 'backup/m1', 'only the EU route');
  const zdr = await as(await mint({ zdr_only: true })).chat.completions.create({ model: 'primary/m1', messages }).withResponse();
  t.equal(zdr.response.headers.get('x-gateway-decision'), 'backup/m1', 'only the zero-data-retention route');
  const none = await as(await mint({ regions: ['ap'] })).chat.completions.create({ model: 'primary/m1', messages }).catch((e: unknown) => e);
  t.ok(none instanceof OpenAI.PermissionDeniedError && none.code === 'model_not_allowed');
  const model = await (await fetch(`${gw.baseURL}/models/primary/m1`)).json() as { routes: Array<{ region: string; zdr: boolean }> };
  t.same(model.routes.map((r) => [r.region, r.zdr]), [['us', false], ['eu', true]]);
});

t.test('a stream that breaks after its first bytes ends with an error event, never a silent truncation', async (t) => {
  a.setFault('cut');
  const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'primary/m1', messages, stream: true }) });
  const text = await res.text();
  t.equal(res.status, 200, 'the stream had started');
  t.match(text, /"content":"Hello"/, 'the first chunks arrived');
  t.match(text, /data: \{"error":\{"message":"[^"]+","type":"upstream_error"/, 'then an error event');
  t.notMatch(text, /\[DONE\]/, 'and no [DONE] pretending it finished');
  const sdk = await (async () => {
    try { for await (const _ of await client.chat.completions.create({ model: 'primary/m1', messages, stream: true })) { /* read */ } return null; } catch (e) { return e; }
  })();
  t.ok(sdk instanceof OpenAI.APIError, 'the SDK raises instead of returning a short answer');
  a.setFault('none');
  await served();
});

t.test('a retry that finds no route left answers with the failure, and counts the retry it made', async (t) => {
  t.equal((await admin('/admin/deployments/disable', { decision: 'backup/m1' })).json.state, 'disabled');
  a.setFault('500');
  const err = await ask().catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && err.status === 502, 'the first route\'s failure, as a 502');
  t.equal((err as InstanceType<typeof OpenAI.APIError>).headers?.get('x-gateway-retries'), '1', 'one retry was made (it found the backup disabled)');
  a.setFault('none');
  await admin('/admin/deployments/enable', { decision: 'backup/m1' });
  await restUntilOver('primary/m1');
});

t.test('all routes failing: an error in the envelope once max_retries is spent', async (t) => {
  a.setFault('500');
  b.setFault('500');
  const err = await ask().catch((e: unknown) => e);
  t.ok(err instanceof OpenAI.APIError && err.status === 502, 'a 502');
  t.equal((err as InstanceType<typeof OpenAI.APIError>).headers?.get('x-gateway-retries'), '2', 'after max_retries (2) more attempts, not a retry loop');
  a.setFault('none');
  b.setFault('none');
});

t.test('a 429 with Retry-After rests that route for as long as it asked', async (t) => {
  a.setFault('429-wait');
  t.same(await served(), { decision: 'backup/m1', retries: '1' });
  a.setFault('none');
  const before = a.received.length;
  t.same(await served(), { decision: 'backup/m1', retries: '0' }, 'the resting route is skipped');
  t.equal(a.received.length, before);
  t.ok((await admin('/admin/deployments')).json.data.find((d: { decision: string }) => d.decision === 'primary/m1').resting_until);
  await restUntilOver('primary/m1');
  t.same(await served(), { decision: 'primary/m1', retries: '0' }, 'back after the Retry-After');
});

t.test('a refused connection fails over too', async (t) => {
  await a.close();
  const { decision, retries } = await served();
  t.equal(decision, 'backup/m1');
  t.equal(retries, '1');
});
