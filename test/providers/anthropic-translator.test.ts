// The Anthropic adapter's two translations, as pure functions of their input: a chat
// request into a Messages request (toMessagesRequest), and the Messages answer, buffered or
// streamed, into OpenAI's format (Translator, driven like undici drives it).
import t from 'tap';
import { Translator, toMessagesRequest } from '../../src/providers/anthropic.js';
import type { ResponseSink } from '../../src/providers/provider.js';
import type { GatewayError } from '../../src/errors.js';
import type { ChatRequest } from '../../src/wire/chat.js';

type Json = Record<string, unknown>;

t.test('system, tools, tool results and images become their Messages forms; turns alternate', async (t) => {
  const request: ChatRequest = {
    model: 'anthropic/claude', temperature: 1.7, stop: 'END', user: 'u1', metadata: {},
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'developer', content: [{ type: 'text', text: 'No lists.' }] },
      { role: 'user', content: [{ type: 'text', text: 'Look' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] },
      { role: 'user', content: 'and this' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{"x":1}' } }] },
      { role: 'tool', tool_call_id: 'c1', content: '42' },
    ],
    tools: [{ type: 'function', function: { name: 'f', description: 'does f', parameters: { type: 'object', properties: { x: { type: 'number' } } } } }],
    tool_choice: 'required',
  };
  const out = toMessagesRequest(request, 'claude-x', 100, true) as Json;
  t.equal(out.model, 'claude-x');
  t.equal(out.max_tokens, 100);
  t.equal(out.stream, true);
  t.equal(out.system, 'Be brief.\n\nNo lists.');
  t.equal(out.temperature, 1, "clamped to Anthropic's range");
  t.same(out.stop_sequences, ['END']);
  t.same(out.tool_choice, { type: 'any' });
  t.same(out.metadata, { user_id: 'u1' });
  t.same(out.tools, [{ name: 'f', description: 'does f', input_schema: { type: 'object', properties: { x: { type: 'number' } } } }]);
  t.same(out.messages, [
    { role: 'user', content: [{ type: 'text', text: 'Look' }, { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }, { type: 'text', text: 'and this' }] },
    { role: 'assistant', content: [{ type: 'tool_use', id: 'c1', name: 'f', input: { x: 1 } }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'c1', content: '42' }] },
  ]);
});

t.test('cache breakpoints mark the system prompt, the last tool and the turn before the latest', async (t) => {
  const out = toMessagesRequest({ model: 'm', messages: [{ role: 'system', content: 'S' }, { role: 'user', content: 'a' }, { role: 'assistant', content: 'b' }, { role: 'user', content: 'c' }],
    tools: [{ type: 'function', function: { name: 'f' } }] }, 'm', 10, false, true) as { system: Json[]; tools: Json[]; messages: Array<{ content: Json[] }> };
  t.same(out.system, [{ type: 'text', text: 'S', cache_control: { type: 'ephemeral' } }]);
  t.same(out.tools.at(-1)!.cache_control, { type: 'ephemeral' });
  t.same(out.messages[1]!.content.at(-1)!.cache_control, { type: 'ephemeral' }, 'the assistant turn before the latest user turn');
  t.notOk(out.messages[2]!.content.at(-1)!.cache_control, 'not the latest turn');
});

/** A sink that records what the translator hands the gateway. */
function recorder() {
  const got = { status: 0, type: '', data: '', ended: false, error: null as GatewayError | null };
  const sink: ResponseSink = {
    onStart: (status, type) => { got.status = status; got.type = type; },
    onData: (chunk) => { got.data += chunk.toString(); return true; },
    onEnd: () => { got.ended = true; },
    onError: (err) => { got.error = err; },
  };
  return { got, sink };
}

const sse = (type: string, data: Json) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;

t.test('a Messages stream becomes chat.completion.chunk events with usage and [DONE], across split chunks', async (t) => {
  const { got, sink } = recorder();
  const tr = new Translator(sink, 'claude-x');
  const stream = sse('message_start', { message: { id: 'msg_1', model: 'claude-x-1', usage: { input_tokens: 12, output_tokens: 1, cache_read_input_tokens: 4 } } })
    + sse('content_block_start', { index: 0, content_block: { type: 'text', text: '' } })
    + sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hé🙂l' } })
    + sse('ping', {})
    + sse('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'lo' } })
    + sse('content_block_stop', { index: 0 })
    + sse('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } })
    + sse('message_stop', {});
  tr.onStart(200, 'text/event-stream');
  const bytes = Buffer.from(stream);
  for (let i = 0; i < bytes.length; i += 7) tr.onData(bytes.subarray(i, i + 7)); // split anywhere, mid-event and mid-character
  tr.onEnd();
  t.equal(got.status, 200);
  t.ok(got.ended);
  const events = got.data.split('\n\n').filter(Boolean).map((e) => e.slice('data: '.length));
  t.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { id: string; choices: Array<{ delta: Json; finish_reason: string | null }>; usage?: Json });
  t.equal(chunks.map((c) => c.choices[0]?.delta.content ?? '').join(''), 'Hé🙂llo');
  t.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason, 'stop');
  t.ok(chunks.every((c) => c.id === 'chatcmpl-msg_1'));
  t.same(chunks.at(-1)!.usage, { prompt_tokens: 16, completion_tokens: 2, total_tokens: 18, prompt_tokens_details: { cached_tokens: 4, cache_write_tokens: 0 } });
});

t.test('a buffered Message becomes a chat.completion, tool calls included', async (t) => {
  const { got, sink } = recorder();
  const tr = new Translator(sink, 'claude-x');
  tr.onStart(200, 'application/json');
  tr.onData(Buffer.from(JSON.stringify({ id: 'msg_2', type: 'message', role: 'assistant', model: 'claude-x-1', stop_reason: 'tool_use',
    content: [{ type: 'text', text: 'Calling.' }, { type: 'tool_use', id: 't1', name: 'f', input: { x: 1 } }], usage: { input_tokens: 5, output_tokens: 3 } })));
  tr.onEnd();
  const body = JSON.parse(got.data) as { choices: Array<{ message: Json; finish_reason: string }>; usage: Json };
  t.equal(got.status, 200);
  t.equal(body.choices[0]!.finish_reason, 'tool_calls');
  t.equal(body.choices[0]!.message.content, 'Calling.');
  t.same(body.choices[0]!.message.tool_calls, [{ id: 't1', type: 'function', function: { name: 'f', arguments: '{"x":1}' } }]);
  t.equal(body.usage.prompt_tokens, 5);
});

t.test('errors: 529 overloaded is a 503 with the body passed on; an unreadable message is an upstream error', async (t) => {
  const a = recorder();
  const tr = new Translator(a.sink, 'm');
  tr.onStart(529, 'application/json', 2000);
  tr.onData(Buffer.from('{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'));
  tr.onEnd();
  t.equal(a.got.status, 503);
  t.match(a.got.data, /overloaded_error/);
  const b = recorder();
  const tr2 = new Translator(b.sink, 'm');
  tr2.onStart(200, 'application/json');
  tr2.onData(Buffer.from('{"not":"a message"}'));
  tr2.onEnd();
  t.equal(b.got.error?.code, 'upstream_bad_answer', 'a 200 it cannot read: another route may do better, the same one again would bill again');
});
