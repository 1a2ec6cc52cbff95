// The core path through the public surface: the official openai SDK against Sluice in
// front of a local fake OpenAI upstream.
import { request, type IncomingMessage } from 'node:http';
import OpenAI from 'openai';
import t from 'tap';
import { FAKE_WORDS, startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(),
  { models: ['drip-150', 'drip-100', 'fail-500', 'fail-400', 'long-200000', 'afterdone', 'nousage'].map(testModel) });
t.teardown(async () => { await gw.stop(); await fake.close(); });
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const messages = [{ role: 'user' as const, content: 'Say hello' }];

/** The HTTP status an SDK call failed with (or 0 if it did not fail). */
async function statusOf(call: Promise<unknown>): Promise<number> {
  try { await call; return 0; } catch (err) { return err instanceof OpenAI.APIError ? err.status ?? -1 : -1; }
}

function num(h: Headers, name: string): number {
  const v = h.get(name);
  if (v === null || !/^\d+(\.\d+)?$/.test(v)) throw new Error(`${name} is not a plain number: ${v}`);
  return Number(v);
}

t.test('non-stream: content, usage and every gateway header, consistent', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages }).withResponse();
  t.equal(data.choices[0]?.message.content, FAKE_WORDS.join(''));
  t.equal(data.usage?.completion_tokens, FAKE_WORDS.length);
  const h = response.headers;
  t.match(h.get('x-request-id'), /^req_[0-9a-z]+$/);
  t.equal(h.get('x-gateway-decision'), 'openai/gpt-4.1-mini');
  t.equal(h.get('x-gateway-cache'), 'miss');
  t.equal(h.get('x-gateway-retries'), '0');
  const cost = num(h, 'x-gateway-cost-usd');
  const bench = num(h, 'x-btl-benchmark-cost');
  const charge = num(h, 'x-btl-customer-charge');
  const saved = num(h, 'x-btl-saved');
  num(h, 'x-gateway-overhead-ms');
  // gpt-4.1-mini list price: $0.40 in, $1.60 out per 1M tokens
  const expected = (data.usage!.prompt_tokens * 0.4 + data.usage!.completion_tokens * 1.6) / 1e6;
  t.ok(Math.abs(cost - expected) < 1e-9, `cost ${cost} = ${expected}`);
  t.ok(Math.abs(saved - (bench - charge)) < 1e-9, 'saved = benchmark - charge');
  const gateway = (data as unknown as { gateway: { served: string; cost_usd: number } }).gateway;
  t.equal(gateway.served, 'openai/gpt-4.1-mini');
  t.equal(gateway.cost_usd, cost);
  const sent = fake.received.at(-1)!;
  t.equal(sent.body.model, 'gpt-4.1-mini', 'slug mapped to the upstream model id');
  t.equal(sent.headers.authorization, 'Bearer sk-fake-upstream', 'upstream key, never the caller key');
});

t.test('bare model ids work as with OpenAI itself', async (t) => {
  const r = await client.chat.completions.create({ model: 'gpt-4.1-mini', messages });
  t.equal(r.choices[0]?.message.content, FAKE_WORDS.join(''));
});

t.test('stream with include_usage: text, usage chunk, gateway figures', async (t) => {
  const before = fake.received.length;
  const { data: stream, response } = await client.chat.completions.create({
    model: 'openai/gpt-4.1-mini', messages, stream: true, stream_options: { include_usage: true } }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'openai/gpt-4.1-mini');
  let text = '';
  let usage: OpenAI.CompletionUsage | null | undefined = null;
  for await (const c of stream) { text += c.choices[0]?.delta.content ?? ''; if (c.usage) usage = c.usage; }
  t.equal(text, FAKE_WORDS.join(''));
  t.equal(usage?.completion_tokens, FAKE_WORDS.length);
  t.equal(fake.received.length, before + 1);
});

t.test('stream without include_usage: usage asked upstream, stripped for the caller, billed', async (t) => {
  const res = await fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/gpt-4.1-mini', messages, stream: true }),
  });
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /text\/event-stream/);
  const raw = await res.text();
  t.notMatch(raw, /"choices":\[\],"usage"/, 'no usage-only chunk for a caller that did not ask');
  const sent = fake.received.at(-1)!;
  t.same(sent.body.stream_options, { include_usage: true }, 'usage requested from the upstream');
  const comment = /^: gateway (.+)$/m.exec(raw);
  t.ok(comment, 'final figures arrive as an SSE comment');
  const figures = JSON.parse(comment![1]!) as { usage: { completion_tokens: number }; cost_usd: number; saved_usd: number; benchmark_usd: number; charge_usd: number };
  t.equal(figures.usage.completion_tokens, FAKE_WORDS.length);
  t.ok(figures.cost_usd > 0);
  t.ok(Math.abs(figures.saved_usd - (figures.benchmark_usd - figures.charge_usd)) < 1e-9);
  t.ok(raw.trimEnd().endsWith('data: [DONE]'), 'the stream still ends with [DONE]');
  // and the SDK reads the same stream happily
  let text = '';
  for await (const c of await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages, stream: true })) {
    t.equal(c.usage ?? null, null);
    text += c.choices[0]?.delta.content ?? '';
  }
  t.equal(text, FAKE_WORDS.join(''));
});

t.test('what an upstream sends after [DONE] in the same write is not the answer\'s: the client gets one [DONE], last', async (t) => {
  for (const include of [false, true]) {
    const res = await fetch(`${gw.baseURL}/chat/completions`, {
      method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'openai/afterdone', messages, stream: true, ...(include ? { stream_options: { include_usage: true } } : {}) }),
    });
    const raw = await res.text();
    t.notMatch(raw, /AFTER-DONE/, `nothing after [DONE] reaches the client (include_usage ${include})`);
    t.equal(raw.match(/data: \[DONE\]/g)?.length, 1, 'one [DONE]');
    t.ok(raw.endsWith('data: [DONE]\n\n'), 'and it is last');
  }
});

t.test('include_usage against an upstream that reports no usage: the usage chunk, with the gateway\'s count, last before [DONE]', async (t) => {
  const chunks: Array<{ id: string; model: string; choices: unknown[]; usage?: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null; gateway?: { usage: { prompt_tokens: number; completion_tokens: number } } }> = [];
  for await (const c of await client.chat.completions.create({ model: 'openai/nousage', messages, stream: true, stream_options: { include_usage: true } })) chunks.push(c as unknown as typeof chunks[number]);
  const last = chunks.at(-1)!;
  t.same(last.choices, [], 'the last chunk is the usage chunk');
  t.ok(last.usage && last.usage.prompt_tokens > 0 && last.usage.completion_tokens > 0, `with the counted usage (${JSON.stringify(last.usage)})`);
  t.equal(last.usage!.total_tokens, last.usage!.prompt_tokens + last.usage!.completion_tokens);
  t.same(last.gateway?.usage && [last.gateway.usage.prompt_tokens, last.gateway.usage.completion_tokens], [last.usage!.prompt_tokens, last.usage!.completion_tokens], 'the figures in it say the same count');
  t.equal(last.id, chunks[0]!.id, 'the stream\'s own id');
  t.equal(last.model, chunks[0]!.model, 'and model');
  t.equal(chunks.filter((c) => c.usage).length, 1, 'one usage chunk');
  // Not asked: none.
  const raw = await (await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/nousage', messages, stream: true }) })).text();
  t.notMatch(raw, /"choices":\[\],"usage"/, 'no usage chunk for a caller that did not ask');
});

t.test('stream usage request: spliced into the caller\'s bytes, or amended in place when stream_options is present', async (t) => {
  const post = (body: string) => fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' }, body,
  }).then((r) => r.text());
  // the bare upstream id needs no model swap: the rest of the caller's bytes go through as sent
  const original = `{ "model": "gpt-4.1-mini", "x_vendor": {"keep": [1, 2]}, "messages": ${JSON.stringify(messages)}, "stream": true }`;
  await post(original);
  // (the output cap, which the savings engine adds when max_tokens is absent, is spliced as the last member, so it wins over any the body names)
  t.equal(fake.received.at(-1)!.raw, `{"stream_options":{"include_usage":true},${original.slice(1, -1)},"max_tokens":4096}`);
  for (const streamOptions of [null, {}]) {
    const raw = await post(JSON.stringify({ model: 'gpt-4.1-mini', messages, stream: true, stream_options: streamOptions }));
    t.same(fake.received.at(-1)!.body.stream_options, { include_usage: true }, `stream_options ${JSON.stringify(streamOptions)} amended`);
    t.match(raw, /^: gateway .*"completion_tokens":\d+/m, 'and billed from the usage frame');
  }
});

t.test('a key the body names twice reaches the upstream once, as the gateway read (validated and priced) it', async (t) => {
  const body = `{"model":"evil-upstream-model","model":"openai/gpt-4.1-mini","n":128,"n":1,"max_tokens":32768,"max_tokens":5,"messages":${JSON.stringify(messages)}}`;
  const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json', 'x-gateway-cache': 'off' }, body });
  t.equal(res.status, 200);
  await res.text();
  const raw = fake.received.at(-1)!.raw;
  t.equal(raw.match(/"model"/g)?.length, 1);
  t.equal(raw.match(/"n"/g)?.length, 1);
  t.equal(raw.match(/"max_tokens"/g)?.length, 1);
  t.same(JSON.parse(raw), { model: 'gpt-4.1-mini', n: 1, max_tokens: 5, messages });
});

t.test('streamed tokens reach the client as the upstream writes them, not once it has finished', async (t) => {
  // Observed by order, not by time: when the first token reaches the client, the dripping
  // upstream has written only part of its answer.
  const writtenAtFirst: number[] = [];
  let tokens = 0;
  for await (const c of await client.chat.completions.create({ model: 'openai/drip-150', messages, stream: true })) {
    if (!c.choices[0]?.delta.content) continue;
    if (tokens++ === 0) writtenAtFirst.push(fake.received.at(-1)!.written);
  }
  t.equal(tokens, FAKE_WORDS.length);
  t.ok(writtenAtFirst[0]! < FAKE_WORDS.length, `the upstream had written ${writtenAtFirst[0]} of ${FAKE_WORDS.length} chunks when the first reached the client`);
});

t.test('a client that disconnects cancels the upstream call', async (t) => {
  const ac = new AbortController();
  const before = fake.received.length;
  const stream = await client.chat.completions.create({ model: 'openai/drip-100', messages, stream: true }, { signal: ac.signal });
  let got = 0;
  try {
    for await (const c of stream) { if (c.choices[0]?.delta.content) { got++; ac.abort(); } }
  } catch { /* aborted */ }
  t.equal(got, 1);
  const rec = fake.received[before]!;
  for (let i = 0; i < 50 && !rec.aborted; i++) await new Promise((r) => setTimeout(r, 20));
  t.ok(rec.aborted, 'upstream connection closed before the upstream finished');
});

t.test('error envelopes', async (t) => {
  const post = (body: string | Uint8Array, headers: Record<string, string> = {}) => fetch(`${gw.baseURL}/chat/completions`, {
    method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json', ...headers }, body });
  const envelope = async (res: Response) => (await res.json() as { error: { type: string; code: string; message: string; param: string | null } }).error;

  t.equal(await statusOf(new OpenAI({ baseURL: gw.baseURL, apiKey: 'sk-wrong', maxRetries: 0 }).chat.completions.create({ model: 'gpt-4.1-mini', messages })), 401);
  let res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', body: '{}' });
  t.equal(res.status, 401);
  t.equal((await envelope(res)).code, 'missing_api_key');

  res = await post('{"model": "gpt-4.1-mini", "messages": [');
  t.equal(res.status, 400);
  t.equal((await envelope(res)).code, 'invalid_json');

  // Bytes that are not UTF-8 inside a string: refused, not decoded into U+FFFD and sent upstream as they came.
  const text = Buffer.from(JSON.stringify({ model: 'gpt-4.1-mini', messages: [{ role: 'user', content: 'hi XX there' }] }));
  const at = text.indexOf('XX');
  text[at] = 0xff;
  text[at + 1] = 0xc3; // (a lead byte followed by a space)
  res = await post(text);
  t.equal(res.status, 400);
  const bad = await envelope(res);
  t.equal(bad.code, 'invalid_json');
  t.match(bad.message, /UTF-8/);
  const overlong = Buffer.concat([Buffer.from('{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}]}')]);
  t.equal((await post(overlong)).status, 400, 'an overlong encoding too');

  res = await post(JSON.stringify({ model: 'gpt-4.1-mini', messages: [{ role: 'wizard', content: 'x' }] }));
  t.equal(res.status, 400);
  const e = await envelope(res);
  t.equal(e.param, 'messages[0].role', 'the error names the field');
  t.match(e.message, /messages\[0\]\.role/);

  t.equal(await statusOf(client.chat.completions.create({ model: 'openai/no-such-model', messages })), 404);
  res = await post(JSON.stringify({ model: 'nope/nope', messages }));
  t.equal((await envelope(res)).code, 'model_not_found');

  res = await post(Buffer.alloc(5 * 1024 * 1024, 32));
  t.equal(res.status, 413);
  t.equal((await envelope(res)).code, 'request_too_large');

  res = await fetch(`${gw.url}/v1/nowhere`);
  t.equal(res.status, 404);
  t.equal((await envelope(res)).type, 'invalid_request_error');
});

t.test('upstream failures: 5xx becomes 502, a 4xx is relayed, a dead upstream is 502', async (t) => {
  t.equal(await statusOf(client.chat.completions.create({ model: 'openai/fail-500', messages })), 502);
  t.equal(await statusOf(client.chat.completions.create({ model: 'openai/fail-400', messages })), 400);
  await t.rejects(client.chat.completions.create({ model: 'openai/fail-400', messages }), /temperature/);
});

t.test('malformed or hostile JSON never crashes the process', async (t) => {
  const nasty = [
    '', 'null', '[]', '"str"', '12', '{"model": 5}', '{"model":"gpt-4.1-mini"}', '{"model":"gpt-4.1-mini","messages":"hi"}',
    '{"model":"gpt-4.1-mini","messages":[null]}', '{"model":"gpt-4.1-mini","messages":[{"role":"user","content":{"a":1}}]}',
    '{"__proto__":{"admin":true},"model":"gpt-4.1-mini","messages":[]}', '{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"x"}],"temperature":1e999}',
    `{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"x","deep":${'['.repeat(100000)}${']'.repeat(100000)}}]}`,
    // the same nesting in a cacheable request (hashed for the caches) and in the system prompt (prompt-cache key)
    `{"model":"gpt-4.1-mini","temperature":0,"messages":[{"role":"user","content":"x","deep":${'['.repeat(100000)}${']'.repeat(100000)}}]}`,
    `{"model":"gpt-4.1-mini","temperature":0,"messages":[{"role":"system","content":[{"type":"text","text":"s","deep":${'['.repeat(100000)}${']'.repeat(100000)}}]},{"role":"user","content":"x"}]}`,
    '\u0000\u0001\u0002', '{"model":"gpt-4.1-mini","messages":[{"role":"user","content":"\ud800"}],"stream":"yes"}',
  ];
  for (const body of nasty) {
    const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}` }, body });
    t.ok(res.status >= 400 && res.status < 500, `${JSON.stringify(body.slice(0, 60))} → ${res.status}`);
    const json = await res.json() as { error?: { message?: string } };
    t.type(json.error?.message, 'string');
  }
  const health = await fetch(`${gw.url}/health`);
  t.equal(health.status, 200);
});

t.test('backpressure: a client that stops reading stalls the upstream; nothing is lost when it resumes', async (t) => {
  const words = 200_000; // ~30 MB of SSE, far more than the socket buffers between the three
  const url = new URL(`${gw.baseURL}/chat/completions`);
  const body = JSON.stringify({ model: `openai/long-${words}`, messages, stream: true });
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(url, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' } }, resolve);
    req.on('error', reject);
    req.end(body);
  });
  res.pause();
  t.equal(res.statusCode, 200);
  await new Promise((r) => setTimeout(r, 1500));
  const rec = fake.received.at(-1)!;
  const stalled = rec.written;
  t.ok(stalled < words / 2, `upstream stalled while the client did not read (${stalled} of ${words} chunks written)`);
  let text = '';
  res.setEncoding('utf8');
  for await (const part of res) text += part as string;
  t.equal(rec.written, words, 'the upstream finished once the client read again');
  t.equal(text.match(/"content":" w\d+"/g)?.length, words, 'every chunk arrived');
  t.ok(text.trimEnd().endsWith('data: [DONE]'));
});

t.test('a client that leaves while still sending its body gets a row (499), and holds nothing', async (t) => {
  const { connect } = await import('node:net');
  const url = new URL(gw.baseURL);
  const listed = async () => (await (await fetch(`${gw.baseURL}/requests?limit=100`, { headers: { authorization: `Bearer ${gw.masterKey}` } })).json() as { data: Array<{ status: number; error: string | null }> }).data;
  const before = (await listed()).filter((r) => r.status === 499 && r.error === 'client_closed_request').length;
  await new Promise<void>((resolve, reject) => {
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${gw.masterKey}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"model":"openai/gpt-4.1-mini",`);
      setImmediate(() => { socket.destroy(); resolve(); });
    });
    socket.on('error', reject);
  });
  let after = before;
  for (let i = 0; i < 100 && after === before; i++) {
    await new Promise((r) => setTimeout(r, 20));
    after = (await listed()).filter((r) => r.status === 499 && r.error === 'client_closed_request').length;
  }
  t.equal(after, before + 1, 'one 499 row for the request whose body never arrived');
  const health = await (await fetch(`${gw.url}/health`)).json() as { in_flight: number };
  t.equal(health.in_flight, 0);
});
