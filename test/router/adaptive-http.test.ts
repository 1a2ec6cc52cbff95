// The adaptive router through the HTTP surface, driven with the official `openai` SDK: what
// a response and its row say about the choice; /v1/feedback moving a task type off a model,
// and refusing bad feedback clearly; /v1/simulate-price moving traffic; /v1/reset; the state
// surviving kill -9; and the judge, against a fake OpenAI-kind judge model, billed and
// ledgered as the operator's own request.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const NANO = 'openai/gpt-4.1-nano';
const BEST = 'openai/gpt-4.1';
const simConfig = {
  sim: { ttft_ms: 0, tokens_per_second: 5000 },
  logs: { access: 'off' },
  router: { adaptive: { candidates: [NANO, BEST], seed: 7, judge: { model: null } } },
};

const dir = tempDataDir();
let gw = await startGateway({ SLUICE_SIM: 'on' }, dir, simConfig);
t.teardown(() => gw.stop());
let api = http(gw);
const client = () => new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

/** One `auto` request (caches off: every answer is the chosen model's own), and what the gateway said about its choice. */
async function ask(content: string, headers: Record<string, string> = {}) {
  const { data, response } = await client().chat.completions.create({ model: 'auto', max_tokens: 30, messages: [{ role: 'user', content }] },
    { headers: { 'x-gateway-cache': 'off', ...headers } }).withResponse();
  return {
    id: response.headers.get('x-request-id')!, task: response.headers.get('x-gateway-route-task'), model: response.headers.get('x-gateway-route-model'),
    quality: response.headers.get('x-gateway-route-quality'), reason: response.headers.get('x-gateway-route-reason'),
    decision: response.headers.get('x-gateway-decision'), gateway: (data as unknown as { gateway: Json }).gateway,
  };
}
const feedback = (id: string, score: number, key = gw.masterKey) => api.call('/v1/feedback', key, { request_id: id, score });
const taskState = async (task: string): Promise<Json> => ((await api.adminJson('/v1/router')).task_types as Json[]).find((x) => x.task_type === task) ?? {};

t.test('a routed answer says its task type, model, estimated quality and why; so does its row', async (t) => {
  const r = await ask('Calculate 17 * 23.');
  t.equal(r.task, 'arithmetic');
  t.ok(r.model === NANO || r.model === BEST, `the model is a candidate (${r.model})`);
  t.equal(r.decision, `sim/${r.model!.slice('openai/'.length)}`, 'x-gateway-decision is the chosen model\'s route');
  t.ok(Number(r.quality) > 0 && Number(r.quality) < 1);
  t.match(r.reason, /^(cheapest_within_margin|exploring)$/);
  t.match(r.gateway.router, { task_type: 'arithmetic', model: r.model, learned: true, reason: r.reason, quality: Number(r.quality) });
  t.ok(['simple', 'medium', 'complex'].includes(r.gateway.router.bucket), 'the bucket and score stay');
  const row = (await api.admin(`/v1/requests/${r.id}`)).json;
  t.match(row, { router_task: 'arithmetic', router_model: r.model, router_quality: Number(r.quality), router_reason: r.reason, requested_model: 'auto' });
  const fixed = await ask('Calculate 17 * 24.', { 'x-gateway-router': 'static' });
  t.equal(fixed.reason, null, 'x-gateway-router: static: the buckets choose');
  t.equal(fixed.gateway.router.learned, false);
  t.equal(fixed.task, 'arithmetic', 'the task type is still classified');
});

t.test('low feedback moves a task type off a model, good feedback keeps the cheap one', async (t) => {
  // open chat: the cheap model's answers are reported bad; summaries: both are reported good.
  const chat: string[] = [];
  for (let i = 0; i < 40; i++) {
    const r = await ask(`Hey, how is your day going? Tell me something nice, number ${i}.`);
    t.equal(r.task, 'open_chat');
    chat.push(r.model!);
    const fb = await feedback(r.id, r.model === NANO ? 0 : 1);
    t.equal(fb.status, 200);
    t.same(fb.json.applied_to, { task_type: 'open_chat', model: r.model });
    const s = await ask(`Summarise this note in one sentence: the meeting ${i} moved to Friday.`);
    t.equal(s.task, 'summarisation');
    await feedback(s.id, 1);
  }
  t.equal((await taskState('open_chat')).choice, BEST, 'open chat: the cheap model is reported bad, so the choice is the better one');
  t.ok(chat.slice(-10).filter((m) => m === BEST).length >= 8, `and the last requests went there (${chat.slice(-10).join(', ')})`);
  t.equal((await taskState('summarisation')).choice, NANO, 'summaries: as good, the cheap one stays');
});

t.test('simulate-price: the cheap model made expensive loses the traffic (operator only)', async (t) => {
  const tenant = await api.tenant(gw.masterKey, 5);
  t.equal((await api.call('/v1/simulate-price', tenant.key, { model: NANO, prices: { input: 50, output: 200 } })).status, 403, 'a tenant key may not');
  t.equal((await api.call('/v1/simulate-price', gw.masterKey, { model: 'openai/nope', prices: { input: 1, output: 1 } })).status, 400, 'an unknown candidate is a 400');
  t.equal((await api.call('/v1/simulate-price', gw.masterKey, { model: NANO, prices: { input: -1, output: 1 } })).status, 400, 'a negative price is a 400');
  t.equal((await api.call('/v1/simulate-price', gw.masterKey, { model: NANO, prices: { input: 1e308, output: 1 } })).status, 400, 'an absurd price is a 400');
  const bare = await api.call('/v1/simulate-price', gw.masterKey, { model: 'gpt-4.1-nano', prices: null });
  t.same([bare.status, bare.json.model], [200, NANO], 'a bare id names its candidate');
  const set = await api.call('/v1/simulate-price', gw.masterKey, { model: NANO, prices: { input: 50, output: 200 } });
  t.equal(set.status, 200);
  t.same(set.json, { model: NANO, prices: { input: 50, output: 200 }, simulated: true });
  t.equal((await taskState('summarisation')).choice, BEST, 'at 25× the better model\'s price, the cheap one is no longer the cheapest');
  const picks: string[] = [];
  for (let i = 0; i < 10; i++) picks.push((await ask(`Summarise this note in one sentence: the invoice ${i} is paid.`)).model!);
  t.ok(picks.filter((m) => m === BEST).length >= 9, `traffic moved (${picks.join(', ')})`);
  const view = await api.adminJson('/v1/router');
  t.same(view.simulated_prices, { [NANO]: { input: 50, output: 200 } });
  t.equal(view.candidates.find((c: Json) => c.model === NANO).list_prices.input, 0.1, 'list prices are unchanged (billing is too)');
  t.equal((await api.call('/v1/simulate-price', gw.masterKey, { model: NANO, prices: null })).json.simulated, false);
  t.equal((await taskState('summarisation')).choice, NANO, 'restored, it is the choice again');
});

t.test('bad feedback gets a clear 4xx', async (t) => {
  const r = await ask('Calculate 5 * 6.');
  const other = await api.tenant(gw.masterKey, 5, undefined, ['inference', 'feedback']);
  const theirs = await new OpenAI({ baseURL: gw.baseURL, apiKey: other.key, maxRetries: 0 }).chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Calculate 2 * 2.' }] }).withResponse();
  const theirId = theirs.response.headers.get('x-request-id')!;
  const cases: Array<[string, Json, number, RegExp, string?]> = [
    ['unknown id', { request_id: 'req_0000000000nope', score: 1 }, 404, /No request/],
    ['another workspace\'s id', { request_id: r.id, score: 1 }, 404, /No request/, other.key],
    ['score above 1', { request_id: r.id, score: 1.5 }, 400, /score/],
    ['score below 0', { request_id: r.id, score: -0.1 }, 400, /score/],
    ['score not a number', { request_id: r.id, score: 'great' }, 400, /score/],
    ['no score', { request_id: r.id }, 400, /score/],
    ['not a request id', { request_id: 'x'.repeat(5000), score: 1 }, 400, /request_id/],
    ['an unknown field', { request_id: r.id, score: 1, stars: 5 }, 400, /stars/],
    ['a comment too long', { request_id: r.id, score: 1, comment: 'x'.repeat(3000) }, 400, /comment/],
  ];
  for (const [what, body, status, message, key] of cases) {
    const res = await api.call('/v1/feedback', key ?? gw.masterKey, body);
    t.equal(res.status, status, what);
    t.match(res.json?.error?.message, message, `${what}: ${res.json?.error?.message}`);
  }
  t.equal((await api.call('/v1/feedback', gw.masterKey, '{"request_id": ')).status, 400, 'malformed JSON');
  t.equal((await feedback(theirId, 0.1)).status, 404, 'not even the master key scores another workspace\'s request (it would use up their one signal)');
  t.equal((await feedback(theirId, 0.8, other.key)).status, 200, 'a key with the feedback scope scores its own workspace\'s request');
  const first = await api.call('/v1/feedback', gw.masterKey, { request_id: r.id, score: 0.5, comment: 'half right' });
  t.equal(first.status, 200);
  t.match((await api.admin(`/v1/requests/${r.id}`)).json.feedback, { app: { score: 0.5, comment: 'half right' }, judge: null }, 'the drill-down shows the feedback');
  const again = await feedback(r.id, 0.5);
  t.equal(again.status, 409, 'twice: a conflict');
  t.match(again.json.error.message, /already/);
  const twice = await Promise.all([1, 2, 3].map(async () => (await ask('Calculate 9 * 9.')).id));
  const racing = await Promise.all(twice.flatMap((id) => [feedback(id, 1), feedback(id, 0)]));
  t.same(racing.map((x) => x.status).sort(), [200, 200, 200, 409, 409, 409], 'concurrent feedback for a request: exactly one lands');
  // a refused request has a row but no answer to score
  const refused = await api.call('/v1/chat/completions', gw.masterKey, { model: 'auto', messages: 'nope' });
  t.equal(refused.status, 400);
  const onRefused = await feedback(refused.headers.get('x-request-id')!, 1);
  t.equal(onRefused.status, 400);
  t.match(onRefused.json.error.message, /not answered/);
  const readOnly = await api.tenant(gw.masterKey, 1, undefined, ['usage:read']);
  t.equal((await api.call('/v1/feedback', readOnly.key, { request_id: theirId, score: 1 })).status, 403, 'a key with neither inference nor feedback scope');
  t.equal((await api.call('/v1/feedback', '', { request_id: r.id, score: 1 })).status, 401);
  t.equal((await api.call('/v1/reset', other.key, {})).status, 403, 'reset is for operators');
  for (const bad of ['hello', '[]', 'null', '{"a": 1}', '{"a":']) t.equal((await api.call('/v1/reset', gw.masterKey, bad)).status, 400, `reset with ${bad}: 400`);
  const tenantView = (await api.call('/v1/router', other.key)).json;
  t.notOk('judge' in tenantView || 'simulated_prices' in tenantView, 'a tenant sees no operator figures');
  const arithmetic = (tenantView.task_types as Json[]).find((x) => x.task_type === 'arithmetic')!;
  t.same(Object.keys(arithmetic).sort(), ['candidates', 'choice', 'task_type'], 'only what the policy chooses and how good it thinks each is');
  t.same(Object.keys(arithmetic.candidates[0]).sort(), ['model', 'quality', 'quality_interval']);
});

t.test('the learned state survives kill -9; reset clears it', async (t) => {
  const before = await taskState('open_chat');
  const r = await ask('Hey, what is new with you today, friend?');
  t.equal((await feedback(r.id, 0)).status, 200, 'acknowledged');
  t.equal(await gw.stop('SIGKILL'), null);
  gw = await startGateway({ SLUICE_SIM: 'on' }, dir, simConfig);
  api = http(gw);
  const after = await taskState('open_chat');
  t.equal(after.signals, before.signals + 1, 'every acknowledged signal is there after kill -9');
  t.ok(after.requests >= before.requests, 'and the pulls up to the last batch');
  t.equal((await feedback(r.id, 1)).status, 409, 'and it still counts once');
  const reset = await api.call('/v1/reset', gw.masterKey, {});
  t.same([reset.status, reset.json], [200, { reset: true }]);
  t.same((await api.adminJson('/v1/router')).task_types, [], 'nothing learned is left');
});

t.test('the judge: a fake OpenAI-kind judge model scores answers off the response path, billed as the operator\'s', async (t) => {
  const fake = await startFakeUpstream();
  t.teardown(() => fake.close());
  const judged = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
    logs: { access: 'off' },
    models: [{ ...testModel('cand-cheap'), prices: { input: 0.1, output: 0.4 } }, testModel('cand-best'), testModel('judge-3')],
    router: { simple: 'openai/cand-cheap', medium: 'openai/cand-best', complex: 'openai/cand-best',
      adaptive: { seed: 2, judge: { model: 'openai/judge-3', sample_rate: 1 } } },
  });
  t.teardown(() => judged.stop());
  const j = http(judged);
  const tenant = await j.tenant(judged.masterKey, 5, undefined, ['inference', 'usage:read']);
  const { response } = await new OpenAI({ baseURL: judged.baseURL, apiKey: tenant.key, maxRetries: 0 })
    .chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Extract the email from: write to ana@example.org' }] }).withResponse();
  const id = response.headers.get('x-request-id')!;
  const model = response.headers.get('x-gateway-route-model')!;
  let state: Json = {};
  for (let i = 0; i < 100 && !(state.judge?.judged >= 1); i++) {
    await new Promise((r) => setTimeout(r, 20));
    state = await j.adminJson('/v1/router');
  }
  t.equal(state.judge.judged, 1, 'the answer was judged');
  t.equal(fake.received.length, 2, 'one answer and one judge call (the judge\'s own answer is not judged)');
  const asked = fake.received[1]!.body as Json;
  t.equal(asked.model, 'judge-3');
  t.match(asked.messages[0].content, /Grade the answer/);
  t.match(asked.messages[1].content, /\[QUESTION\]\nExtract the email from: write to ana@example.org\n\[\/QUESTION\]\n\[ANSWER\]\nHello from the fake upstream\.\n\[\/ANSWER\]/);
  const arm = (state.task_types as Json[]).find((x) => x.task_type === 'extraction')!.candidates.find((c: Json) => c.model === model);
  t.equal(arm.signals, 1, 'the score is a signal for the model that answered');
  t.ok(arm.quality < (model === 'openai/cand-cheap' ? 0.6 : 0.9), `a 3/10 pulled its estimate down (${arm.quality})`);
  // the judge's request: a row of its own, in the operator's workspace, with its cost
  const rows = (await j.admin('/v1/requests?limit=10')).json.data as Json[];
  const judgeRow = rows.find((r) => r.endpoint === 'router.judge') ?? {};
  t.ok(judgeRow.id, 'the judge call is in the ledger');
  t.match(judgeRow, { key_id: 'key_router_judge', workspace: 'default', requested_model: 'openai/judge-3', status: 200, cache: 'miss' });
  t.ok(judgeRow.cost_usd > 0, `it cost the operator ${judgeRow.cost_usd}`);
  t.equal(state.judge.cost_usd, judgeRow.cost_usd, '/v1/router says what the judge cost');
  const tenantRow = (await j.call(`/v1/requests/${id}`, tenant.key)).json;
  t.equal(tenantRow.cost_usd > 0, true);
  t.equal((await j.call('/v1/requests?limit=10', tenant.key)).json.data.length, 1, 'the tenant sees its own request only, not the judge\'s');
  t.equal((await j.call('/v1/feedback', tenant.key, { request_id: id, score: 1 })).status, 200, 'the app may still give its own feedback');
  t.same(Object.keys((await j.call(`/v1/requests/${id}`, tenant.key)).json.feedback), ['app'], 'the tenant does not see the judge\'s score (it could echo it where the judge looked)');
  t.match((await j.admin(`/v1/requests/${id}`)).json.feedback, { judge: { score: 0.3 } }, 'the operator does');

  // A streamed answer is judged from its SSE.
  const judgedBefore = (await j.adminJson('/v1/router')).judge.judged as number;
  const streamed = await new OpenAI({ baseURL: judged.baseURL, apiKey: tenant.key, maxRetries: 0 }).chat.completions
    .create({ model: 'auto', stream: true, messages: [{ role: 'user', content: 'Summarise this in one sentence: the parcel left on Monday.' }] });
  for await (const _ of streamed) { /* drained */ }
  let afterStream = judgedBefore;
  for (let i = 0; i < 100 && afterStream === judgedBefore; i++) {
    await new Promise((r) => setTimeout(r, 20));
    afterStream = (await j.adminJson('/v1/router')).judge.judged as number;
  }
  t.equal(afterStream, judgedBefore + 1, 'the streamed answer was judged too');
  t.match((fake.received.at(-1)!.body as Json).messages[1].content, /\[ANSWER\]\nHello from the fake upstream\.\n\[\/ANSWER\]/, 'from the text its chunks carried');

  // A key that may not reach the judge's model: its prompts and answers never go there.
  const fenced = await j.tenant(judged.masterKey, 5, { models: ['openai/cand-cheap', 'openai/cand-best'] });
  const before = fake.received.length;
  await new OpenAI({ baseURL: judged.baseURL, apiKey: fenced.key, maxRetries: 0 }).chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Extract the date from: due 2026-05-01' }] });
  for (let i = 0; i < 20; i++) await new Promise((r) => setTimeout(r, 10));
  t.equal(fake.received.length, before + 1, 'the answer, and no judge call');
  t.equal((await j.adminJson('/v1/router')).judge.not_allowed, 1, 'counted as not allowed');

  // A key that allows only some candidates is routed among them, and teaches nothing.
  const single = await j.tenant(judged.masterKey, 5, { models: ['openai/cand-cheap'] }, ['inference', 'usage:read']);
  const one = await new OpenAI({ baseURL: judged.baseURL, apiKey: single.key, maxRetries: 0 }).chat.completions.create({ model: 'auto', messages: [{ role: 'user', content: 'Calculate 6 * 7.' }] }).withResponse();
  t.equal(one.response.headers.get('x-gateway-route-reason'), 'only_candidate');
  const oneId = one.response.headers.get('x-request-id')!;
  t.match((await j.call(`/v1/requests/${oneId}`, single.key)).json, { router_task: 'arithmetic', router_model: null }, 'its row names no policy choice');
  const fb = await j.call('/v1/feedback', single.key, { request_id: oneId, score: 1 });
  t.same([fb.status, fb.json.applied_to], [200, null], 'its feedback is stored but moves nothing');
  // So does a request that pins a provider (it chose where answers can succeed).
  const pinned = await new OpenAI({ baseURL: judged.baseURL, apiKey: tenant.key, maxRetries: 0 }).chat.completions
    .create({ model: 'auto', messages: [{ role: 'user', content: 'Calculate 8 * 9.' }] }, { headers: { 'x-gateway-provider': 'openai' } }).withResponse();
  t.match((await j.call(`/v1/requests/${pinned.response.headers.get('x-request-id')}`, tenant.key)).json, { router_task: 'arithmetic', router_model: null }, 'a pinned request teaches nothing');
});

t.test('a task-type pattern that backtracks catastrophically cannot hold the worker pool; one that could is refused at start', async (t) => {
  const evil = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir(), { ...simConfig, router: { adaptive: { judge: { model: null }, task_types: { math: { patterns: ['^(a+)+$', '(a*)*0|b'] } } } } });
  t.teardown(() => evil.stop());
  const c = new OpenAI({ baseURL: evil.baseURL, apiKey: evil.masterKey, maxRetries: 0, timeout: 10_000 });
  const t0 = Date.now();
  const hostile = await c.chat.completions.create({ model: 'auto', max_tokens: 5, messages: [{ role: 'user', content: `${'a'.repeat(3900)}c` }] }).withResponse();
  t.equal(hostile.response.headers.get('x-gateway-route-task'), 'open_chat', 'classified (no match), not stuck');
  const huge = await c.chat.completions.create({ model: 'auto', max_tokens: 5, messages: [{ role: 'user', content: 'a'.repeat(3_000_000) }] }).withResponse();
  t.equal(huge.response.status, 200, 'a 3 MB turn of a\'s is classified too');
  const after = await c.chat.completions.create({ model: 'auto', max_tokens: 5, messages: [{ role: 'user', content: 'aaaa' }] }).withResponse();
  t.equal(after.response.headers.get('x-gateway-route-task'), 'math', 'the pattern still works, and the pool still serves');
  // Not a timing assertion (CI machines are noisy): a pool held by backtracking would fail the client's 10 s timeout above.
  t.comment(`answered in ${Date.now() - t0} ms`);
  for (const [pattern, why] of [['(?<!a)b', /linear time/], ['.{0,40}x', /linear time/], ['SELECT', /lowercase/], ['(', /not a valid regular expression/]] as const) {
    const err = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir(), { router: { adaptive: { task_types: { x: { patterns: [pattern] } } } } }).then(() => '', (e: unknown) => String(e));
    t.match(err, why, `${pattern}: the start stops and says why`);
    t.match(err, /router\.adaptive\.task_types/);
  }
  const badName = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir(), { router: { adaptive: { task_types: { 'Bad Name': { patterns: ['x'] } } } } }).then(() => '', (e: unknown) => String(e));
  t.match(badName, /task type names are lowercase words/);
});
