// model `auto`: the classifier (in the worker pool) scores the prompt, the bucket picks the
// model, and the response and the ledger say which and why.
import OpenAI from 'openai';
import t from 'tap';
import { startGateway, tempDataDir } from '../helpers/gateway.js';

const gw = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir(), {
  sim: { ttft_ms: 0, tokens_per_second: 5000 },
  aliases: { cheap: { models: ['openai/gpt-4.1-nano', 'openai/gpt-4o-mini'] } },
  // The buckets alone (the adaptive router is tested in adaptive*.test.ts).
  router: { simple: 'cheap', medium: 'openai/gpt-4.1-mini', complex: 'openai/gpt-4.1', adaptive: { enabled: false } },
});
t.teardown(() => gw.stop());
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });

const pick = async (content: string) => {
  const { response } = await client.chat.completions.create({ model: 'auto', max_tokens: 5, messages: [{ role: 'user', content }] }).withResponse();
  return { bucket: response.headers.get('x-gateway-route-bucket'), score: Number(response.headers.get('x-gateway-route-score')),
    decision: response.headers.get('x-gateway-decision'), id: response.headers.get('x-request-id')! };
};

t.test('simple, medium and complex prompts land in their buckets', async (t) => {
  const simple = await pick('Hi, thanks!');
  t.equal(simple.bucket, 'simple');
  t.equal(simple.decision, 'sim/gpt-4.1-nano', 'a bucket can name an alias (cheapest route)');
  const medium = await pick('Can you explain why the sky looks blue during the day and red at sunset, in a short paragraph for a curious teenager?');
  t.equal(medium.bucket, 'medium');
  t.equal(medium.decision, 'sim/gpt-4.1-mini');
  const complex = await pick(`Design an algorithm to schedule jobs across a cluster, analyze its complexity, prove it is optimal step by step, and implement it:
\`\`\`python
def schedule(jobs, machines):
    return sorted(jobs)
\`\`\`
Compare the trade-offs with a greedy strategy and debug the code above.`);
  t.equal(complex.bucket, 'complex');
  t.equal(complex.decision, 'sim/gpt-4.1');
  t.ok(simple.score < medium.score && medium.score < complex.score, `scores rise with difficulty (${simple.score}, ${medium.score}, ${complex.score})`);
  const row = await (await fetch(`${gw.baseURL}/requests/${complex.id}`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as { router_bucket: string; router_score: number; requested_model: string };
  t.equal(row.router_bucket, 'complex');
  t.equal(row.router_score, complex.score);
  t.equal(row.requested_model, 'auto');
});

t.test('with the adaptive router off, /v1/feedback still keeps one signal per request and evicts a bad cached answer', async (t) => {
  const ask = () => client.chat.completions.create({ model: 'openai/gpt-4.1-mini', temperature: 0, messages: [{ role: 'user', content: 'Name a prime number.' }] }).withResponse();
  const { response } = await ask();
  const id = response.headers.get('x-request-id')!;
  t.equal((await ask()).response.headers.get('x-gateway-cache'), 'exact');
  const post = (score: number) => fetch(`${gw.baseURL}/feedback`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ request_id: id, score }) });
  const first = await post(0);
  t.equal(first.status, 200);
  t.match(await first.json(), { applied_to: null, evicted: { exact: true } });
  t.equal((await post(1)).status, 409, 'a second signal for the request');
  t.equal((await ask()).response.headers.get('x-gateway-cache'), 'miss', 'the bad answer is not replayed');
});

t.test('GET /v1/models lists the aliases and auto', async (t) => {
  const ids = (await client.models.list()).data.map((m) => m.id);
  t.ok(ids.includes('cheap') && ids.includes('auto') && ids.includes('openai/gpt-4.1'));
});

t.test('a router bucket naming an unknown model stops the start', async (t) => {
  const err = await startGateway({ SLUICE_SIM: 'on' }, tempDataDir(), { router: { complex: 'openai/nope' } }).then(() => '', (e: unknown) => String(e));
  t.match(err, /router\.complex: 'openai\/nope' is not a model or alias/);
});
