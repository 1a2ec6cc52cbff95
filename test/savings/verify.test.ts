// The semantic cache's verifier: a reworded candidate (the guards find only a content word
// changed) is a hit when the configured model says one answer serves both, a miss when it
// says not (and the neighbourhood is tightened); a candidate the guards find different is
// never sent to it, nor is any prompt of a key that may not use the verifier's route. Its
// calls are the operator's ledger rows.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  models: ['seq-v', 'verify-switch'].map(testModel),
  savings: { semantic_cache: { verify: { model: 'openai/verify-switch' } } },
});
t.teardown(async () => { await gw.stop(); await fake.close(); });
const { adminJson: admin } = http(gw);
const ws = await admin('/admin/workspaces', { name: 'v', credits_usd: 5 });
const key = (await admin('/admin/keys', { name: 'v', workspace: ws.id })).key as string;
const pinned = (await admin('/admin/keys', { name: 'pinned', workspace: ws.id, limits: { models: ['openai/seq-v'] } })).key as string;

async function ask(q: string, k = key) {
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: k, maxRetries: 0 });
  const { data, response } = await client.chat.completions.create({ model: 'openai/seq-v', temperature: 0, messages: [{ role: 'user', content: q }] }).withResponse();
  return { text: data.choices[0]!.message.content, cache: response.headers.get('x-gateway-cache') };
}
const verifyCalls = () => fake.received.filter((r) => (r.body as Json).model === 'verify-switch');

t.test('a reworded prompt is a hit when the verifier says so, a miss when it does not', async (t) => {
  const first = await ask('How do I enable dark mode?');
  t.equal(first.cache, 'miss');
  t.equal(verifyCalls().length, 0, 'nothing to verify against yet');
  const yes = await ask('How do I activate dark mode?');
  t.equal(yes.cache, 'semantic', 'verified: the same question');
  t.equal(yes.text, first.text);
  t.equal(verifyCalls().length, 1);
  const sent = verifyCalls()[0]!.body as Json;
  t.match(sent.messages[1].content, /\[FIRST\]\nHow do I enable dark mode\?\n\[\/FIRST\]\n\[SECOND\]\nHow do I activate dark mode\?\n\[\/SECOND\]/, 'both prompts, marked');
  const no = await ask('How do I switch on dark mode?');
  t.equal(no.cache, 'miss', 'the verifier told them apart');
  t.not(no.text, first.text);
  t.equal(verifyCalls().length, 2);
  t.equal((await ask('How do I enable dark mode on iOS?')).cache, 'miss', 'the guards find a qualifier added…');
  t.equal(verifyCalls().length, 2, '…and a candidate they find different is not sent');
  t.equal((await ask('How do I turn on dark mode?', pinned)).cache, 'miss', 'a key that may not use the verifier\'s model…');
  t.equal(verifyCalls().length, 2, '…has no prompt sent to it');
  const rows = (await http(gw).admin('/v1/requests?limit=50')).json.data as Json[];
  const verified = rows.filter((r) => r.endpoint === 'cache.verify');
  t.equal(verified.length, 2, 'each verification is a ledger row');
  t.match(verified[0], { key_id: 'key_cache_verify', workspace: 'default', requested_model: 'openai/verify-switch', status: 200 });
  // What the semantic cache did, by outcome, in /metrics.
  const metrics = await (await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).text();
  const count = (outcome: string) => Number(new RegExp(`sluice_semantic_cache_total\\{outcome="${outcome}"\\} (\\d+)`).exec(metrics)?.[1] ?? -1);
  t.equal(count('verified_hit'), 1);
  t.equal(count('verified_miss'), 1);
  t.ok(count('miss') >= 2, `misses ${count('miss')}`);
  t.equal(count('hit') + count('miss') + count('verified_hit') + count('verified_miss'), 5, 'the user\'s five asks were looked up; the verifier\'s own two were not');
});
