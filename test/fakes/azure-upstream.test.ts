// The fake Azure OpenAI speaks the real wire format: the official `openai` SDK's AzureOpenAI
// client (deployments, api-version, api-key) reads its answers, streams and errors.
import { AzureOpenAI, BadRequestError } from 'openai';
import t from 'tap';
import { AZURE_KEY, AZURE_WORDS, startFakeAzure } from './azure-upstream.js';

const fake = await startFakeAzure();
t.teardown(() => fake.close());
const client = new AzureOpenAI({ endpoint: fake.url, apiKey: AZURE_KEY, apiVersion: '2024-10-21', deployment: 'prod-mini', maxRetries: 0 });

t.test('chat, stream and a filtered prompt through AzureOpenAI', async (t) => {
  const r = await client.chat.completions.create({ model: 'gpt-4.1-mini', messages: [{ role: 'user', content: 'Hi' }] });
  t.equal(r.choices[0]?.message.content, AZURE_WORDS.join(''));
  t.match(fake.received.at(-1)!, { deployment: 'prod-mini', apiVersion: '2024-10-21', path: '/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21' });
  let text = '';
  for await (const c of await client.chat.completions.create({ model: 'gpt-4.1-mini', stream: true, messages: [{ role: 'user', content: 'Hi' }] })) text += c.choices[0]?.delta.content ?? '';
  t.equal(text, AZURE_WORDS.join(''), 'the first chunk (no choices, the prompt\'s filter results) is read as Azure sends it');
  const filtered = new AzureOpenAI({ endpoint: fake.url, apiKey: AZURE_KEY, apiVersion: '2024-10-21', deployment: 'filtered', maxRetries: 0 });
  const err = await filtered.chat.completions.create({ model: 'x', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e);
  t.ok(err instanceof BadRequestError && err.code === 'content_filter');
});
