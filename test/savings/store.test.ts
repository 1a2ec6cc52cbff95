// The cache store and the stream/JSON conversions, without a gateway: expiry, the sweeper,
// the entry cap, damaged records, LSH probing, and a tool-call answer surviving the trip
// from SSE to the stored JSON and back.
import t from 'tap';
import { openStore } from '../../src/store/lmdb.js';
import { ResponseCache } from '../../src/savings/cache.js';
import { assembleStream, replayAsSse } from '../../src/savings/replay.js';
import { canonicalJson, requestHash } from '../../src/savings/canonical.js';
import { tempDataDir } from '../helpers/gateway.js';

const store = await openStore(tempDataDir());
t.teardown(() => store.close());
const usage = { prompt_tokens: 10, completion_tokens: 5, cached_tokens: 0 };
const answer = { decision: 'openai/gpt-4.1-mini', body: '{"id":"x","choices":[]}', usage };

t.test('exact entries expire, are swept, and are capped', async (t) => {
  const cache = new ResponseCache(store, { cache: 3, semantic: 10 });
  cache.putExact('ws', 'h1', answer, 60_000);
  cache.putExact('ws', 'h2', answer, 1);
  await store.root.flushed;
  t.match(cache.getExact('ws', 'h1'), answer);
  t.equal(cache.getExact('other', 'h1'), null, 'scoped by workspace');
  await new Promise((r) => setTimeout(r, 5));
  t.equal(cache.getExact('ws', 'h2'), null, 'expired');
  cache.putExact('ws', 'h3', answer, 60_000);
  cache.putExact('ws', 'h4', answer, 60_000); // over the cap of 3: not stored
  await store.root.flushed;
  t.equal(cache.getExact('ws', 'h4'), null, 'the cap holds');
  t.equal(cache.sweep(), 1, 'the sweeper removes the expired entry');
  await store.root.flushed;
  cache.putExact('ws', 'h4', answer, 60_000); // room again
  await store.root.flushed;
  t.ok(cache.getExact('ws', 'h4'));
  await store.cache.put(['ws', 'bad'], { exp: Date.now() + 1000, body: 42 });
  t.equal(cache.getExact('ws', 'bad'), null, 'a damaged record reads as a miss');
});

t.test('semantic lookups probe nearby buckets only within workspace and context', async (t) => {
  const cache = new ResponseCache(store);
  const vec = (angle: number) => { const v = new Float32Array(512); v[0] = Math.cos(angle); v[1] = Math.sin(angle); for (let i = 2; i < 512; i++) v[i] = 0.01 * ((i * 7919) % 13 - 6); return v; };
  cache.putSimilar('ws', 'ctx', 'req_1', vec(0), 'What is the capital of France?', answer, 60_000);
  await store.root.flushed;
  const hit = cache.findSimilar('ws', 'ctx', vec(0.05), 'What is the capital of France, please?', 0.9);
  t.ok(hit && hit.similarity > 0.99);
  t.equal(cache.findSimilar('ws', 'other-ctx', vec(0.05), 'What is the capital of France, please?', 0.9), null);
  t.equal(cache.findSimilar('ws2', 'ctx', vec(0.05), 'What is the capital of France, please?', 0.9), null);
  t.equal(cache.findSimilar('ws', 'ctx', vec(0.05), 'What is the capital of Germany?', 0.9), null, 'guarded');
  t.equal(cache.findSimilar('ws', 'ctx', vec(1.2), 'What is the capital of France, please?', 0.9), null, 'too far');
});

t.test('a streamed answer with tool calls assembles to a completion and replays to the same deltas', async (t) => {
  const base = { id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm' };
  const ev = (choices: unknown[], extra = {}) => `data: ${JSON.stringify({ ...base, choices, ...extra })}\n\n`;
  const sse = [
    ev([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]),
    ev([{ index: 0, delta: { content: 'Let me ' }, finish_reason: null }]),
    ev([{ index: 0, delta: { content: 'check.' }, finish_reason: null }]),
    ev([{ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":' } }] }, finish_reason: null }]),
    ev([{ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }, finish_reason: null }]),
    ev([{ index: 0, delta: {}, finish_reason: 'tool_calls' }]),
    ev([], { usage: { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 } }),
    'data: [DONE]\n\n',
  ].join('');
  const json = assembleStream(sse);
  t.ok(json);
  const completion = JSON.parse(json!) as Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  t.equal(completion.object, 'chat.completion');
  t.equal(completion.choices[0].message.content, 'Let me check.');
  t.same(completion.choices[0].message.tool_calls, [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);
  t.equal(completion.choices[0].finish_reason, 'tool_calls');
  t.same(completion.usage, { prompt_tokens: 9, completion_tokens: 7, total_tokens: 16 });
  const again = assembleStream(`${replayAsSse(completion, true)}data: [DONE]\n\n`);
  t.same(JSON.parse(again!), completion, 'replayed and assembled again: the same answer');
  t.notOk(replayAsSse(completion, false).includes('"usage"'), 'the usage event only when asked');
  t.equal(assembleStream('data: {"error":{"message":"boom"}}\n\n'), null, 'an error stream is not an answer');
  t.equal(assembleStream(ev([{ index: 0, delta: { content: 'cut' }, finish_reason: null }])), null, 'nor is a stream cut before its finish');
});

t.test('the cache key ignores key order and delivery fields, not what changes the answer', async (t) => {
  const a = { model: 'm', messages: [{ role: 'user', content: 'hi' }], temperature: 0 };
  t.equal(canonicalJson({ b: 1, a: [{ y: 2, x: 1 }] }), '{"a":[{"x":1,"y":2}],"b":1}');
  t.equal(requestHash({ ...a, stream: true, user: 'u', stream_options: { include_usage: true } }), requestHash(a));
  t.not(requestHash({ ...a, temperature: 0.5 }), requestHash(a));
  t.not(requestHash({ ...a, messages: [{ role: 'user', content: 'hi!' }] }), requestHash(a));
  t.not(requestHash({ ...a, tools: [{ type: 'function' }] }), requestHash(a));
});
