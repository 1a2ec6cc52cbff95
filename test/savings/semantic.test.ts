// Semantic cache with the embedded sentence encoder (in the worker pool): paraphrases hit,
// near neighbours that ask something else miss (the guards), and nothing crosses a
// workspace or a different conversation context.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';
import { sameQuestion, signature } from '../../src/savings/guard.js';


t.test('guards (pure): numbers, names, languages and negation must agree', async (t) => {
  const same = (a: string, b: string) => sameQuestion(signature(a), signature(b));
  t.ok(same('What is the capital of France?', "What's the capital city of France?"));
  t.ok(same('How do I reverse a string in Python?', 'How can I reverse a string in Python?'));
  t.notOk(same('What is the capital of France?', 'What is the capital of Germany?'), 'names differ');
  t.notOk(same('How do I reverse a string in Python?', 'How do I reverse a string in JavaScript?'), 'languages differ');
  t.notOk(same('Delete the temporary files', 'Do not delete the temporary files'), 'negation differs');
  t.notOk(same('Delete the temporary files', "Don't delete the temporary files"), 'contracted negation');
  t.notOk(same('What is 2+2?', 'What is 3+5?'), 'numbers differ');
  t.notOk(same('Write it in C', 'Write it in R'), 'one-letter languages when capitalized');
  t.ok(same('Go to the park and write a poem', 'go to the park and write a poem'), '"go" as a verb at a sentence start is not a language');
  t.notOk(same('How does pricing work at ACME?', 'How does discounts work at ACME?'), 'a content word swapped for another (cosine 0.90)');
  t.notOk(same('List three benefits of exercise', 'List three drawbacks of exercise'), 'benefits vs drawbacks');
  t.ok(same('What is the capital of France?', 'What is the capital city of France?'), 'a word added');
  t.ok(same('Explain how refunds work at ACME.', 'How do refunds work at ACME?'), 'function words changed');
});

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(),
  { models: ['seq-sem'].map(testModel), savings: { semantic_cache: { enabled: true } } });
t.teardown(async () => { await gw.stop(); await fake.close(); });
const { adminJson: admin } = http(gw);
const wsA = await admin('/admin/workspaces', { name: 'a', credits_usd: 5 });
const wsB = await admin('/admin/workspaces', { name: 'b', credits_usd: 5 });
const keyA = (await admin('/admin/keys', { name: 'a', workspace: wsA.id })).key as string;
const keyB = (await admin('/admin/keys', { name: 'b', workspace: wsB.id })).key as string;

async function ask(q: string, key = keyA, system = 'You are concise.', stream = false) {
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const body = { model: 'openai/seq-sem', temperature: 0, messages: [{ role: 'system' as const, content: system }, { role: 'user' as const, content: q }] };
  if (stream) {
    const { data, response } = await client.chat.completions.create({ ...body, stream: true }).withResponse();
    let text = '';
    for await (const chunk of data) text += chunk.choices[0]?.delta?.content ?? '';
    return { text, cache: response.headers.get('x-gateway-cache'), similarity: response.headers.get('x-gateway-cache-similarity') };
  }
  const { data, response } = await client.chat.completions.create(body).withResponse();
  return { text: data.choices[0]!.message.content, cache: response.headers.get('x-gateway-cache'), similarity: response.headers.get('x-gateway-cache-similarity'), gateway: (data as unknown as Json).gateway };
}

t.test('paraphrases hit; different questions miss', async (t) => {
  const france = await ask('What is the capital of France?');
  t.equal(france.cache, 'miss');
  const calls = () => fake.received.length;
  const before = calls();
  const para = await ask("What's the capital city of France?");
  t.equal(para.cache, 'semantic', `paraphrase hit (similarity ${para.similarity})`);
  t.equal(para.text, france.text, 'the cached answer');
  t.equal(calls(), before, 'no upstream call');
  t.ok(para.gateway.saved_tokens.semantic_cache > 0);
  t.equal(para.gateway.charge_usd, 0);
  const streamed = await ask('What is the capital city of France?', keyA, 'You are concise.', true);
  t.equal(streamed.cache, 'semantic', 'a streaming paraphrase is replayed as a stream');
  t.equal(streamed.text, france.text);

  t.equal((await ask('What is the capital of Germany?')).cache, 'miss', 'France vs Germany');
  const py = await ask('How do I reverse a string in Python?');
  t.equal(py.cache, 'miss');
  const py2 = await ask('How can I reverse a string in Python?');
  t.equal(py2.cache, 'semantic');
  t.equal(py2.text, py.text);
  t.equal((await ask('How do I reverse a string in JavaScript?')).cache, 'miss', 'Python vs JavaScript');
  t.equal((await ask('Delete the temporary files in the build folder.')).cache, 'miss');
  t.equal((await ask('Do not delete the temporary files in the build folder.')).cache, 'miss', 'do X vs do not X');
});

t.test('never across workspaces or conversation contexts', async (t) => {
  t.equal((await ask("What's the capital city of France?", keyB)).cache, 'miss', 'another workspace');
  t.equal((await ask("What's the capital city of France?", keyA, 'You answer in French.')).cache, 'miss', 'another system prompt');
});
