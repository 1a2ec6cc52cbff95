// An OpenAI-kind upstream that misbehaves in its stream or its answer's size, passed through
// (no translation): the same protections the translating providers have. An event that never
// ends is refused at 16 MiB, in time linear in its size (it froze the event loop: each chunk
// copied the whole event again); an answer whose [DONE] came ends for the caller at once, the
// lingering upstream cut loose; a stream cut before [DONE], or not SSE at all, ends with an
// error event and a row saying so; a buffered answer over 64 MiB is refused.
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import t from 'tap';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';

const chunk = (content: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}\n\n`;
const usage = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } })}\n\n`;
const stop = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`;

const top = Array.from({ length: 120 }, (_, i) => ({ token: `t${i}`, logprob: -1.5, bytes: [116, 48 + (i % 10)] }));
/** A chunk of one word and many kilobytes of logprobs. */
const META = `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: ' word' }, logprobs: { content: [{ token: ' word', logprob: -0.1, bytes: [32, 119, 111, 114, 100], top_logprobs: top }] }, finish_reason: null }] })}\n\n`;

/** Far beyond what the gateway keeps of a stream (16 MiB): the count must scale by all of it. */
const META_BYTES = 40e6;

/** The head of a JSON answer and `mib` MiB of its content, written as the socket drains; then `then`. */
function bigAnswer(res: ServerResponse, mib: number, then: () => void): void {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.write('{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"');
  const piece = Buffer.alloc(1024 * 1024, 120);
  let sent = 0;
  const more = () => {
    while (sent < mib) {
      sent++;
      if (!res.write(piece)) { res.once('drain', more); return; }
    }
    then();
  };
  res.on('error', () => undefined);
  more();
}

let lingerClosed = 0;
const behaviours: Record<string, (res: ServerResponse) => void> = {
  /** An event that never ends: `data: xxxx…` with no blank line, 17 MiB in 64 KiB writes. */
  endless: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(chunk('Hi'));
    res.write('data: ');
    const piece = Buffer.alloc(64 * 1024, 120);
    let sent = 0;
    const more = () => {
      while (sent < 17 * 1024 * 1024) {
        sent += piece.length;
        if (!res.write(piece)) { res.once('drain', more); return; }
      }
      res.end();
    };
    res.on('error', () => undefined);
    more();
  },
  /** The whole answer and [DONE], then the connection held open. */
  linger: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(chunk('Hello') + stop + usage + 'data: [DONE]\n\n');
    res.on('close', () => { lingerClosed++; });
  },
  /** Two chunks, then the end: no finish reason, no [DONE]. */
  cut: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(chunk('Hello') + chunk(' there'));
  },
  /** Not SSE, though it says it is. */
  junk: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end('<html><body>Bad gateway</body></html>');
  },
  /** 4 MB of text in 2,000 chunks and no usage, however small max_tokens was. */
  flood: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const words = chunk('lorem ipsum dolor sit amet '.repeat(74));
    res.end(words.repeat(2000) + stop + 'data: [DONE]\n\n');
  },
  /** 18 MB of text, then usage and [DONE]: more than the gateway keeps of a stream. */
  big: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const words = chunk('lorem ipsum dolor sit amet '.repeat(370));
    res.end(words.repeat(1800) + stop + usage + 'data: [DONE]\n\n');
  },
  /** A Responses stream whose response.completed carries `"usage": null` (as some servers send it), with `event:` lines. */
  'responses-null': (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    res.end(ev('response.created', { response: { id: 'resp_1', status: 'in_progress', usage: null } }) + ev('response.output_text.delta', { delta: 'Hello' })
      + ev('response.completed', { response: { id: 'resp_1', status: 'completed', usage: null } }));
  },
  /** The same without `event:` lines, and no usage member at all. */
  'responses-bare': (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (type: string, data: object) => `data: ${JSON.stringify({ type, ...data })}\n\n`;
    res.end(ev('response.created', { response: { id: 'resp_2', status: 'in_progress' } }) + ev('response.output_text.delta', { delta: 'Hello' })
      + ev('response.completed', { response: { id: 'resp_2', status: 'completed' } }));
  },
  /** [DONE] on a line of its own, and the end without the blank line after it. */
  'done-unclosed': (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(chunk('Hello') + stop + 'data: [DONE]\n');
  },
  /** 18 MB that is mostly metadata (logprobs): one short word per 9 KB chunk, no usage. */
  meta: (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(META.repeat(Math.ceil(META_BYTES / META.length)) + stop + 'data: [DONE]\n\n');
  },
  /** Two chunks and half of a third, then the end. */
  'cut-mid': (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.end(chunk('Hello') + chunk(' there') + 'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hel');
  },
  /** 40 MB of a JSON answer, then the connection reset. */
  'half-reset': (res) => bigAnswer(res, 40, () => res.socket?.destroy()),
  /** A valid JSON answer of 30 MB. */
  thirty: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(`{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"${'y'.repeat(30e6)}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12}}`);
  },
  /** A plain JSON answer. */
  ok: (res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'c', object: 'chat.completion', created: 1, model: 'ok', choices: [{ index: 0, message: { role: 'assistant', content: 'fine' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 1, total_tokens: 4 } }));
  },
  /** A JSON answer of 65 MiB. */
  huge: (res) => bigAnswer(res, 65, () => res.end('"},"finish_reason":"stop"}]}')),
  /** Not JSON at all. */
  'not-json': (res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('<html><body>oops</body></html>'); },
  /** Cut short after its usage: the last brace is the usage object's (an upstream that declared too few bytes sends this). */
  'cut-after-usage': (res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}'); },
  /** Cut short inside its choices, before any usage: its last byte is a brace all the same. */
  'cut-no-usage': (res) => { res.writeHead(200, { 'content-type': 'application/json' }); res.end('{"id":"c","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}'); },
  /** One that says it is 70 MiB, sends its first bytes, and nothing more. */
  'huge-declared': (res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(70 * 1024 * 1024) });
    res.write('{"id":"c","object":"chat.completion"');
  },
};

const upstream = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { model: string };
    (behaviours[body.model] ?? behaviours.cut!)(res);
  });
});
await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;

const gw = await startGateway({ OPENAI_API_KEY: 'sk-up', OPENAI_BASE_URL: upstreamUrl, SLUICE_SIM: 'off' }, tempDataDir(), {
  providers: { other: { kind: 'openai', base_url: upstreamUrl, api_key: 'sk-up' } },
  models: [...Object.keys(behaviours).map(testModel),
    // too big on its cheaper route; a second route answers
    { ...testModel('huge'), slug: 'openai/huge-then-ok', routes: [{ provider: 'other', upstream_id: 'ok', prices: { input: 2, output: 4 } }] },
    // 40 MB then a reset on its cheaper route; a 30 MB answer on the next
    { ...testModel('half-reset'), slug: 'openai/half-then-thirty', routes: [{ provider: 'other', upstream_id: 'thirty', prices: { input: 2, output: 4 } }] }],
  upstream: { max_retries: 1 },
});
t.teardown(async () => { await gw.stop(); upstream.closeAllConnections(); await new Promise((r) => upstream.close(r)); });
const { call } = http(gw);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const rowOf = async (id: string | null) => (await call(`/v1/requests/${id}`, gw.masterKey)).json as Json;

/** A streamed request, read to its end: the events' data, and the response's request id. */
async function stream(model: string): Promise<{ data: string[]; id: string | null; ms: number }> {
  const t0 = Date.now();
  const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: `openai/${model}`, stream: true, messages: [{ role: 'user', content: 'hi' }] }) });
  const text = await res.text();
  return { data: text.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()), id: res.headers.get('x-request-id'), ms: Date.now() - t0 };
}

t.test('an event that never ends is refused at 16 MiB, in time linear in its size; the gateway serves meanwhile', async (t) => {
  let served = 0;
  let busy = true;
  const beside = (async () => { while (busy) { const r = await call('/health', ''); if (r.status === 200) served++; await new Promise((r) => setTimeout(r, 50)); } })();
  const r = await stream('endless');
  busy = false;
  await beside;
  t.ok(r.ms < 10_000, `refused in ${r.ms} ms`);
  const last = JSON.parse(r.data.at(-1)!) as Json;
  t.match(last, { error: { code: 'upstream_bad_answer', message: /an SSE event larger than 16 MiB/ } }, 'the stream ends with an error event');
  t.notOk(r.data.includes('[DONE]'), 'never a [DONE]');
  t.ok(served >= 1, `the gateway answered /health ${served} times meanwhile`);
  const row = await rowOf(r.id);
  t.match(row, { status: 502, error: 'upstream_bad_answer' });
});

t.test('an upstream that keeps its connection open after [DONE]: the caller has the answer at once, the upstream is cut loose', async (t) => {
  const r = await stream('linger');
  t.ok(r.ms < 900, `ended after ${r.ms} ms, not when the upstream closed`);
  t.equal(r.data.at(-1), '[DONE]');
  const row = await rowOf(r.id);
  t.match(row, { status: 200, usage_source: 'upstream', completion_tokens: 2 }, 'a complete answer, billed as the upstream said');
  const closedBefore = lingerClosed;
  await new Promise((r) => setTimeout(r, 1500));
  t.equal(lingerClosed, closedBefore + 1, 'the lingering connection was closed by the gateway');
  const again = await client.chat.completions.create({ model: 'openai/linger', messages: [{ role: 'user', content: 'hi' }], stream: true });
  let text = '';
  for await (const c of again) text += c.choices[0]?.delta.content ?? '';
  t.equal(text, 'Hello', 'the SDK reads it whole');
  const deployment = (await call('/admin/deployments', gw.masterKey)).json.data.find((d: Json) => d.decision === 'openai/linger');
  t.equal(deployment.errors, 0, 'not a failure of the route');
});

t.test('a stream cut before [DONE], or not SSE at all: an error event and a row that says so, never a silent end', async (t) => {
  for (const model of ['cut', 'junk', 'cut-mid']) {
    const r = await stream(model);
    const last = JSON.parse(r.data.at(-1) ?? 'null') as Json;
    t.match(last, { error: { code: 'upstream_error', message: /ended before the answer did/ } }, `${model}: an error event ends it`);
    t.notOk(r.data.includes('[DONE]'), `${model}: no [DONE]`);
    t.ok(r.data.every((d) => { try { JSON.parse(d); return true; } catch { return false; } }), `${model}: every event the caller got is whole JSON (a half event is not sent)`);
    t.match(await rowOf(r.id), { status: 502, error: 'upstream_error' }, `${model}: the row`);
  }
  const sdk = await (async () => { for await (const _ of await client.chat.completions.create({ model: 'openai/cut', messages: [{ role: 'user', content: 'hi' }], stream: true })) { /* drain */ } })().catch((e: unknown) => e);
  t.ok(sdk instanceof OpenAI.APIError && /ended before the answer did/.test(sdk.message), `the SDK raises it: ${String(sdk)}`);
});

t.test('an answer without usage is counted only up to what the request let the upstream generate', async (t) => {
  const t0 = Date.now();
  const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/flood', stream: true, max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] }) });
  t.ok((await res.text()).endsWith('data: [DONE]\n\n'));
  const row = await rowOf(res.headers.get('x-request-id'));
  t.match(row, { status: 200, usage_source: 'estimate', completion_tokens: 50 }, 'billed at its max_tokens, not the 4 MB the upstream sent beyond it');
  t.ok(Date.now() - t0 < 5000, `counted in ${Date.now() - t0} ms`);
});

t.test('a stream beyond what the gateway keeps (16 MiB) still flows whole, is billed from its usage, and is not cached', async (t) => {
  const ask = () => fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/big', stream: true, temperature: 0, messages: [{ role: 'user', content: 'the same question' }] }) });
  const first = await ask();
  const text = await first.text();
  t.ok(text.length > 18_000_000 && text.endsWith('data: [DONE]\n\n'), `all ${text.length} bytes reached the caller`);
  t.match(await rowOf(first.headers.get('x-request-id')), { status: 200, usage_source: 'upstream', completion_tokens: 2 });
  const second = await ask();
  await second.arrayBuffer();
  t.equal(second.headers.get('x-gateway-cache'), 'miss', 'not kept in the cache: the repeat went upstream');
});

t.test('terminal events however an upstream writes them: a Responses completion with no usage, a last [DONE] not closed by a blank line', async (t) => {
  for (const model of ['responses-null', 'responses-bare']) {
    const res = await fetch(`${gw.baseURL}/responses`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: `openai/${model}`, stream: true, input: 'hi' }) });
    const text = await res.text();
    t.match(text, /response\.completed/, `${model}: the completion reached the caller`);
    t.notMatch(text, /"error"/, `${model}: no error event after it`);
    t.match(await rowOf(res.headers.get('x-request-id')), { status: 200, usage_source: 'estimate' }, `${model}: a complete answer, counted`);
  }
  const r = await stream('done-unclosed');
  t.equal(r.data.at(-1), '[DONE]', 'the unclosed [DONE] still ends it');
  t.match(await rowOf(r.id), { status: 200 });
});

t.test('a stream beyond what is kept, without usage: the rest counted at the kept part\'s tokens per byte, not billed at the cap', async (t) => {
  const res = await fetch(`${gw.baseURL}/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'openai/meta', stream: true, max_tokens: 100_000, messages: [{ role: 'user', content: 'hi' }] }) });
  const bytes = (await res.arrayBuffer()).byteLength;
  const words = Math.ceil(META_BYTES / META.length);
  t.ok(bytes > META_BYTES, `${bytes} bytes streamed`);
  const row = await rowOf(res.headers.get('x-request-id'));
  t.equal(row.usage_source, 'estimate');
  t.ok(row.completion_tokens > 0.8 * words && row.completion_tokens < 1.3 * words, `${row.completion_tokens} tokens billed for about ${words} words sent, not the cap of 100000`);
});

t.test('a body that is not a JSON object, or one cut short that ends in a brace all the same: a 502, never a 200 with it', async (t) => {
  for (const model of ['not-json', 'cut-after-usage', 'cut-no-usage']) {
    const r = await call('/v1/chat/completions', gw.masterKey, { model: `openai/${model}`, messages: [{ role: 'user', content: 'hi' }] });
    t.equal(r.status, 502, `${model}: ${r.status}`);
    t.match(r.json, { error: { message: /sent a body that is not a JSON object/ } }, `${model}: says why`);
    t.match(await rowOf(r.headers.get('x-request-id')), { status: 502, usage_source: 'estimate' }, `${model}: its row, the prompt it sent billed as for any failed answer`);
  }
  const ok = await call('/v1/chat/completions', gw.masterKey, { model: 'openai/ok', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(ok.status, 200, 'and the next answer is served');
});

t.test('a buffered answer over 64 MiB is refused as unreadable (502), and nothing is held', async (t) => {
  const r = await call('/v1/chat/completions', gw.masterKey, { model: 'openai/huge', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(r.status, 502);
  t.match(r.json, { error: { code: 'upstream_bad_answer', message: /an answer larger than 64 MiB/ } });
  const health = await call('/health', '');
  t.equal(health.json.in_flight, 0, 'nothing in flight');
  // One that declares more than that is refused at its head: the rest never comes here, so waiting for it would never end.
  const declared = await call('/v1/chat/completions', gw.masterKey, { model: 'openai/huge-declared', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(declared.status, 502);
  t.match(declared.json, { error: { code: 'upstream_bad_answer', message: /an answer larger than 64 MiB \(73400320 bytes, it said\)/ } });
  t.equal((await call('/health', '')).json.in_flight, 0, 'nothing in flight after it either');
  const next = await call('/v1/chat/completions', gw.masterKey, { model: 'openai/huge-then-ok', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(next.status, 200, 'another route serves it');
  t.equal(next.headers.get('x-gateway-decision'), 'other/ok');
  t.equal(next.json.choices[0].message.content, 'fine', 'its answer whole, nothing of the refused one in it');
  const retried = await call('/v1/chat/completions', gw.masterKey, { model: 'openai/half-then-thirty', messages: [{ role: 'user', content: 'hi' }] });
  t.equal(retried.status, 200, 'a 30 MB answer after a 40 MB one that broke: the limit counts this answer alone');
  t.equal(retried.headers.get('x-gateway-decision'), 'other/thirty');
});
