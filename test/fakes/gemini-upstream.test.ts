// The fake Gemini speaks the real wire format: the official @google/genai SDK reads its
// answers, streams and errors on both AI Studio's and Vertex AI's paths, and google-auth-
// library's service-account client gets its tokens from the fake's token endpoint.
import { ApiError, GoogleGenAI } from '@google/genai';
import { JWT, gaxios } from 'google-auth-library';
import t from 'tap';
import { GEMINI_KEY, GEMINI_WORDS, startFakeGemini } from './gemini-upstream.js';

const fake = await startFakeGemini();
t.teardown(() => fake.close());

t.test('AI Studio: generateContent, stream, function calls, errors', async (t) => {
  const ai = new GoogleGenAI({ apiKey: GEMINI_KEY, httpOptions: { baseUrl: fake.url } });
  const r = await ai.models.generateContent({ model: 'gemini-x', contents: 'Hi', config: { systemInstruction: 'Be brief.' } });
  t.equal(r.text, GEMINI_WORDS.join(''), 'the thought part is not text');
  t.equal(r.usageMetadata?.cachedContentTokenCount, 4);
  t.equal(fake.received.at(-1)!.api, 'gemini');
  let text = '';
  for await (const c of await ai.models.generateContentStream({ model: 'gemini-x', contents: 'Hi' })) text += c.text ?? '';
  t.equal(text, GEMINI_WORDS.join(''), 'SSE events with \\r\\n line ends');
  const call = await ai.models.generateContent({ model: 'gemini-x', contents: 'Weather?', config: { tools: [{ functionDeclarations: [{ name: 'get_weather', parametersJsonSchema: { type: 'object' } }] }] } });
  t.same(call.functionCalls?.[0], { name: 'get_weather', args: { location: 'Paris' } });
  const cache = await ai.caches.create({ model: 'gemini-x', config: { systemInstruction: 'A long and stable instruction. '.repeat(200), ttl: '300s' } });
  t.match(cache.name, /^cachedContents\//, 'the SDK creates a context cache');
  const cached = await ai.models.generateContent({ model: 'gemini-x', contents: 'Hi', config: { cachedContent: cache.name } });
  t.equal(cached.usageMetadata?.cachedContentTokenCount, fake.caches.get(cache.name!)!.tokens, 'and reads it by name');
  const both = await ai.models.generateContent({ model: 'gemini-x', contents: 'Hi', config: { cachedContent: cache.name, systemInstruction: 'x' } }).catch((e: unknown) => e);
  t.ok(both instanceof ApiError && both.status === 400, 'a cache and a system instruction together are refused, as Gemini does');
  const err = await ai.models.generateContent({ model: 'fail-429', contents: 'x' }).catch((e: unknown) => e);
  t.ok(err instanceof ApiError && err.status === 429);
  const bad = await new GoogleGenAI({ apiKey: 'wrong', httpOptions: { baseUrl: fake.url } }).models.generateContent({ model: 'gemini-x', contents: 'x' }).catch((e: unknown) => e);
  t.ok(bad instanceof ApiError && bad.status === 400, 'a wrong key is refused');
});

t.test('AI Studio embeddings: batchEmbedContents, read by the SDK', async (t) => {
  const ai = new GoogleGenAI({ apiKey: GEMINI_KEY, httpOptions: { baseUrl: fake.url } });
  const r = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: ['one', 'two'], config: { outputDimensionality: 5 } });
  t.equal(r.embeddings?.length, 2);
  t.equal(r.embeddings?.[1]?.values?.length, 5);
  t.match(fake.received.at(-1)!, { api: 'gemini', path: '/v1beta/models/gemini-embedding-001:batchEmbedContents' });
});

t.test('Vertex AI: a service account\'s token from the fake endpoint, then the Vertex paths', async (t) => {
  const transporter = new gaxios.Gaxios();
  transporter.interceptors.request.add({ resolved: async (o) => (String(o.url) === 'https://oauth2.googleapis.com/token' ? { ...o, url: new URL(fake.serviceAccount.token_uri!) } : o) });
  const authClient = new JWT({ email: fake.serviceAccount.client_email, key: fake.serviceAccount.private_key, scopes: ['https://www.googleapis.com/auth/cloud-platform'], transporter });
  const ai = new GoogleGenAI({ vertexai: true, project: 'fake-project', location: 'us-central1', httpOptions: { baseUrl: fake.url }, googleAuthOptions: { authClient } });
  const r = await ai.models.generateContent({ model: 'gemini-x', contents: 'Hi' });
  t.equal(r.text, GEMINI_WORDS.join(''));
  t.equal(fake.grants.accepted, 1, 'the library\'s signed grant was accepted');
  t.match(fake.received.at(-1)!, { api: 'vertex', path: '/v1beta1/projects/fake-project/locations/us-central1/publishers/google/models/gemini-x:generateContent' });
  let text = '';
  for await (const c of await ai.models.generateContentStream({ model: 'gemini-x', contents: 'Hi' })) text += c.text ?? '';
  t.equal(text, GEMINI_WORDS.join(''));
  const vectors = await ai.models.embedContent({ model: 'gemini-embedding-001', contents: ['one text'], config: { outputDimensionality: 4 } });
  t.equal(vectors.embeddings?.[0]?.values?.length, 4, 'predict, read by the SDK');
  t.ok((vectors.embeddings?.[0]?.statistics?.tokenCount ?? 0) > 0, 'with its token count');
  t.match(fake.received.at(-1)!.path, /publishers\/google\/models\/gemini-embedding-001:predict$/);
  const other = new JWT({ email: fake.serviceAccount.client_email, key: (await import('node:crypto')).generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), scopes: ['https://www.googleapis.com/auth/cloud-platform'], transporter });
  const refused = await other.getAccessToken().catch((e: unknown) => e);
  t.ok(refused instanceof Error, 'a grant signed with another key is refused');
});
