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

t.test('a sweep that finds much expired says it is behind (the next comes sooner), until it has caught up', async (t) => {
  const own = await openStore(tempDataDir());
  const cache = new ResponseCache(own, { cache: 10, semantic: 10 });
  const past = Date.now() - 1000;
  for (let i = 0; i < 100; i++) void own.cacheRefs.put([`req_${String(i).padStart(3, '0')}`, 'exact'], { exp: past });
  await own.root.flushed;
  cache.sweep(40);
  t.ok(cache.behind, '40 read, 40 expired: behind');
  await own.root.flushed;
  cache.sweep(40);
  await own.root.flushed;
  cache.sweep(40);
  await own.root.flushed;
  t.equal(own.cacheRefs.getCount(), 0, 'all swept');
  cache.sweep(40);
  t.notOk(cache.behind, 'nothing left to remove: not behind');
  await own.close();
});

t.test('exact entries expire, are swept, and are capped', async (t) => {
  const cache = new ResponseCache(store, { cache: 3, semantic: 10 });
  cache.putExact('ws', 'h1', answer, 60_000, 'req_h1');
  cache.putExact('ws', 'h2', answer, 1, 'req_h2');
  await store.root.flushed;
  t.match(cache.getExact('ws', 'h1'), answer);
  t.equal(cache.getExact('other', 'h1'), null, 'scoped by workspace');
  await new Promise((r) => setTimeout(r, 5));
  t.equal(cache.getExact('ws', 'h2'), null, 'expired');
  cache.putExact('ws', 'h3', answer, 60_000, 'req_h3');
  cache.putExact('ws', 'h4', answer, 60_000, 'req_h4'); // over the cap of 3: not stored
  await store.root.flushed;
  t.equal(cache.getExact('ws', 'h4'), null, 'the cap holds');
  t.equal(cache.sweep(), 1, 'the sweeper removes the expired entry');
  await store.root.flushed;
  cache.putExact('ws', 'h4', answer, 60_000, 'req_h4'); // room again
  await store.root.flushed;
  t.ok(cache.getExact('ws', 'h4'));
  await store.cache.put(['ws', 'bad'], { exp: Date.now() + 1000, body: 42 });
  t.equal(cache.getExact('ws', 'bad'), null, 'a damaged record reads as a miss');
});

t.test('semantic lookups probe nearby buckets only within workspace and context', async (t) => {
  const cache = new ResponseCache(store);
  const vec = (angle: number) => { const v = new Float32Array(512); v[0] = Math.cos(angle); v[1] = Math.sin(angle); for (let i = 2; i < 512; i++) v[i] = 0.01 * ((i * 7919) % 13 - 6); return v; };
  cache.putSimilar('ws', 'ctx', 'req_1', vec(0), 'What is the capital of France?', answer, 60_000, 0.9);
  await store.root.flushed;
  const hit = cache.findSimilar('ws', 'ctx', vec(0.05), 'What is the capital of France, please?', 0.9);
  t.ok(hit && hit.similarity > 0.99);
  t.equal(cache.findSimilar('ws', 'other-ctx', vec(0.05), 'What is the capital of France, please?', 0.9), null);
  t.equal(cache.findSimilar('ws2', 'ctx', vec(0.05), 'What is the capital of France, please?', 0.9), null);
  t.equal(cache.findSimilar('ws', 'ctx', vec(0.05), 'What is the capital of Germany?', 0.9), null, 'guarded');
  t.equal(cache.findSimilar('ws', 'ctx', vec(1.2), 'What is the capital of France, please?', 0.9), null, 'too far');
});

t.test('a wrong semantic hit is evicted, leaves a scar, and tightens its neighbourhood', async (t) => {
  const cache = new ResponseCache(store);
  const vec = (angle: number, axis = 1) => { const v = new Float32Array(512); v[0] = Math.cos(angle); v[axis] = Math.sin(angle); return v; };
  const text = 'How do I reset my password?';
  cache.putSimilar('ws_e', 'ctx', 'req_e1', vec(0), text, answer, 60_000, 0.9);
  cache.putSimilar('ws_e', 'ctx', 'req_e2', vec(0.2, 2), text, answer, 60_000, 0.9); // a neighbour (cos with the query ≈ 0.97)
  await store.root.flushed;
  const query = vec(0.05);
  const hit = cache.findSimilar('ws_e', 'ctx', query, text, 0.9);
  t.equal(hit?.id, 'req_e1', 'the nearest entry answers');
  cache.refSemanticHit('req_q', 'ws_e', 'ctx', query, hit!);
  await store.root.flushed;
  const evicted = await cache.evict('req_q', 0.9, 60_000);
  t.same(evicted, { exact: false, semantic: true, tightened: 1 }, 'the entry goes, its neighbour is tightened');
  t.equal(cache.findSimilar('ws_e', 'ctx', query, text, 0.9), null, 'the query is not answered again, not by the neighbour either');
  t.ok(cache.findSimilar('ws_e', 'ctx', vec(0.2, 2), text, 0.9), 'the neighbour still answers what is nearer to it than the wrong query was');
  cache.putSimilar('ws_e', 'ctx', 'req_e3', vec(0), text, answer, 60_000, 0.9); // the evicted prompt asked and stored again
  await store.root.flushed;
  t.equal(cache.findSimilar('ws_e', 'ctx', query, text, 0.9), null, 'a new entry near the scar starts above it');
  t.ok(cache.findSimilar('ws_e', 'ctx', vec(0.001), text, 0.9), '…and still answers its own paraphrases nearer than the scar');
  t.equal(await cache.evict('req_q', 0.9, 60_000), null, 'a second eviction finds no ref');
  t.equal(await cache.evict('req_unknown', 0.9, 60_000), null);
  // A miss's own stored answers (exact and semantic) are evicted by its id.
  cache.putExact('ws_e', 'hash_e3', answer, 60_000, 'req_e3');
  await store.root.flushed;
  t.same(await cache.evict('req_e3', 0.9, 60_000), { exact: true, semantic: true, tightened: 0 });
  t.equal(cache.getExact('ws_e', 'hash_e3'), null);
  // A workspace purge removes everything of that workspace only.
  cache.putExact('ws_p', 'h', answer, 60_000, 'req_p1');
  cache.putSimilar('ws_p', 'ctx', 'req_p2', vec(0), text, answer, 60_000, 0.9);
  cache.putExact('ws_keep', 'h', answer, 60_000, 'req_k1');
  await store.root.flushed;
  t.same(await cache.purgeWorkspace('ws_p', 1), { exact: 1, semantic: 1 });
  t.equal(cache.getExact('ws_p', 'h'), null);
  t.ok(cache.getExact('ws_keep', 'h'), 'another workspace keeps its entries');
  // Damaged refs and entries are skipped, not thrown on.
  await store.cacheRefs.put(['req_bad', 'semantic'], { exp: Date.now() + 1000, ws: 'ws_e', context: 'ctx', bucket: 'x' });
  t.equal(await cache.evict('req_bad', 0.9, 60_000), null);
});

t.test('damaged semantic records are misses, never throws: undecodable bytes, NaN vectors, odd keys, bodies that are not answers', async (t) => {
  const cache = new ResponseCache(store);
  const vec = (angle: number) => { const v = new Float32Array(512); v[0] = Math.cos(angle); v[1] = Math.sin(angle); return v; };
  const text = 'How do I reset my password?';
  const raw = (name: string) => store.root.openDB<Buffer, Array<string | number>>({ name, encoding: 'binary' });
  cache.putSimilar('ws_d', 'probe', 'req_probe', vec(0), text, answer, 60_000, 0.9);
  await store.root.flushed;
  const probeKey = [...store.semantic.getKeys({ start: ['ws_d', 'probe'], end: ['ws_d', 'probe\u0000'] })][0] as Array<string | number>;
  const b = probeKey[2] as number;
  await raw('semantic').put(['ws_d', 'ctx', b, 'req_undecodable'], Buffer.from([0xc1, 0xc1, 0xff, 0x00]));
  await raw('semantic_scars').put(['ws_d', 'ctx', b, 'req_badscar'], Buffer.from([0xc1, 0xc1, 0xff, 0x00]));
  const nan = new Float32Array(512).fill(Number.NaN);
  await store.semantic.put(['ws_d', 'ctx', b, 'req_nan'], { exp: Date.now() + 60_000, decision: 'd', body: answer.body, usage, text, vec: Buffer.from(nan.buffer) });
  await store.semantic.put(['ws_d', 'ctx', b + 0.5, 'req_oddkey'], { exp: Date.now() + 60_000, decision: 'd', body: answer.body, usage, text, vec: Buffer.from(vec(0).buffer) });
  await store.semantic.put(['ws_d', 'ctx', b, 'req_notjson'], { exp: Date.now() + 60_000, decision: 'd', body: 'not an answer', usage, text, vec: Buffer.from(vec(0).buffer) });
  t.equal(cache.findSimilar('ws_d', 'ctx', vec(0), text, 0.9), null, 'no lookup throws, and none of them is served');
  t.doesNotThrow(() => cache.putSimilar('ws_d', 'ctx', 'req_ok', vec(0), text, answer, 60_000, 0.9), 'a store near an undecodable scar');
  await store.root.flushed;
  t.equal(cache.findSimilar('ws_d', 'ctx', vec(0.01), text, 0.9)?.id, 'req_ok', 'a good entry beside them still answers');
  await raw('cache_refs').put(['req_badref', 'semantic'], Buffer.from([0xc1, 0xc1]));
  await store.cacheRefs.put(['req_longhash', 'exact'], { exp: Date.now() + 60_000, ws: 'ws_d', hash: 'h'.repeat(5000) });
  t.equal(await cache.evict('req_badref', 0.9, 60_000), null);
  t.equal(await cache.evict('req_longhash', 0.9, 60_000), null);
  // The sweeper removes what it cannot read, and goes on past it.
  await raw('cache').put(['ws_d', 'undecodable'], Buffer.from([0xc1, 0xc1, 0xff]));
  t.doesNotThrow(() => { for (let i = 0; i < 5; i++) cache.sweep(2000); });
  await store.root.flushed;
  t.equal([...store.cache.getKeys({ start: ['ws_d', 'undecodable'], end: ['ws_d', 'undecodable\u0000'] })].length, 0, 'the undecodable record is gone');
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
