// Canonical hashing (savings/canonical.ts): what the exact cache, the semantic cache's
// context and the provider prompt-cache key are keyed on.
import t from 'tap';
import { canonicalJson, isDeterministic, prefixHash, requestHash, splitLastTurn } from '../../src/savings/canonical.js';
import type { ChatRequest } from '../../src/wire/chat.js';

const req = (extra: Record<string, unknown> = {}): ChatRequest => ({ model: 'm', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }], temperature: 0, ...extra });

t.test('canonical JSON sorts keys at every level and drops undefined', async (t) => {
  t.equal(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: null }, u: undefined }), '{"a":{"c":null,"d":[2,{"e":0,"f":1}]},"b":1}');
  t.equal(canonicalJson('x'), '"x"');
  t.equal(canonicalJson([undefined]), '[null]');
});

t.test('the request hash ignores key order and delivery, and sees everything that changes the answer', async (t) => {
  const h = requestHash(req());
  t.equal(requestHash({ temperature: 0, messages: req().messages, model: 'm' }), h, 'key order');
  t.equal(requestHash(req({ stream: true, stream_options: { include_usage: true }, user: 'u1', metadata: { a: 1 }, prompt_cache_key: 'k' })), h, 'delivery fields');
  for (const change of [{ model: 'n' }, { temperature: 0.5 }, { max_tokens: 10 }, { tools: [] }, { messages: [{ role: 'user', content: 'hi!' }] }]) {
    t.not(requestHash(req(change)), h, `changed by ${Object.keys(change)[0]}`);
  }
});

t.test('a body nested too deeply to walk is not hashed (null), rather than crashing', async (t) => {
  let deep: unknown = 'x';
  for (let i = 0; i < 20_000; i++) deep = [deep];
  t.equal(requestHash(req({ messages: [{ role: 'user', content: deep }] })), null);
});

t.test('only temperature 0 is deterministic', async (t) => {
  t.ok(isDeterministic(req()));
  t.notOk(isDeterministic(req({ temperature: 0.7 })));
  t.notOk(isDeterministic(req({ temperature: undefined })));
});

t.test('the last user turn splits from its context; the context hash is the request without it', async (t) => {
  const a = splitLastTurn(req())!;
  t.equal(a.text, 'hi');
  const b = splitLastTurn(req({ messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hello there' }] }))!;
  t.equal(b.context, a.context, 'same context, different question');
  t.not(splitLastTurn(req({ messages: [{ role: 'system', content: 'be long' }, { role: 'user', content: 'hi' }] }))!.context, a.context);
  t.equal(splitLastTurn(req({ messages: [{ role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'text', text: 'b' }] }] }))!.text, 'a\nb');
  t.equal(splitLastTurn(req({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'x' } }] }] })), null, 'images are not compared by meaning');
  t.equal(splitLastTurn(req({ messages: [{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a' }] })), null, 'the last turn must be the user\'s');
});

t.test('the prefix hash covers workspace, model, tools and leading system messages only', async (t) => {
  const p = prefixHash('ws_a', req());
  t.equal(prefixHash('ws_a', req({ messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'other question' }] })), p, 'the conversation after the head');
  t.not(prefixHash('ws_b', req()), p, 'another workspace');
  t.not(prefixHash('ws_a', req({ tools: [{ type: 'function' }] })), p, 'tools');
  t.not(prefixHash('ws_a', req({ messages: [{ role: 'system', content: 'be long' }] })), p, 'the system prompt');
  t.equal(p!.length, 32);
});
