// The Responses bridge (gateway/responses.ts) as a translator around a client: chat SSE in,
// Responses events out, whatever the chunking (a character split between chunks included).
import t from 'tap';
import { ResponsesBridge } from '../../src/gateway/responses.js';
import type { Client, HeaderList } from '../../src/wire/http.js';

function client() {
  let out = '';
  const c: Client = {
    requestId: 'req_abc123', endpoint: 'responses', aborted: false,
    onAbort: () => undefined, send: (_s: number, _t: string, body: Uint8Array | string, _h: HeaderList | null) => { out += Buffer.from(body).toString(); },
    sendError: () => undefined, startStream: () => undefined, corked: (fn) => fn(),
    write: (chunk) => { out += Buffer.from(chunk).toString(); return true; }, end: (chunk) => { if (chunk) out += Buffer.from(chunk).toString(); }, cut: () => undefined,
  };
  return { c, text: () => out };
}

const frame = (content: string) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`;

t.test('stream: deltas and the completed response survive any chunking', async (t) => {
  const sse = Buffer.from(frame('Hé🙂') + frame(' there') + `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2 } })}\n\n: gateway {"x":1}\n\ndata: [DONE]\n\n`);
  for (const size of [1, 3, 7, sse.length]) {
    const { c, text } = client();
    const bridge = new ResponsesBridge(c, 'm');
    for (let i = 0; i < sse.length; i += size) {
      const part = sse.subarray(i, i + size);
      if (i + size >= sse.length) bridge.end(part); else bridge.write(part);
    }
    const events = text().split('\n\n').filter((e) => e.startsWith('event:')).map((e) => JSON.parse(e.slice(e.indexOf('data: ') + 6)) as { type: string; delta?: string; text?: string; response?: { usage: { input_tokens: number } } });
    t.equal(events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join(''), 'Hé🙂 there', `deltas, chunks of ${size}`);
    t.equal(events.find((e) => e.type === 'response.output_text.done')?.text, 'Hé🙂 there');
    t.equal(events.at(-1)?.type, 'response.completed');
    t.equal(events.at(-1)?.response?.usage.input_tokens, 3);
    t.match(text(), /^: gateway \{"x":1\}$/m, "the gateway's figures comment passes through");
  }
});

t.test('passthrough hands the bytes on untouched', async (t) => {
  const { c, text } = client();
  const bridge = new ResponsesBridge(c, 'm');
  bridge.passthrough = true;
  bridge.write(Buffer.from('event: response.created\ndata: {}\n\n'));
  bridge.end(Buffer.from('data: [DONE]\n\n'));
  t.equal(text(), 'event: response.created\ndata: {}\n\ndata: [DONE]\n\n');
});

t.test('stream: tool calls become function_call items, their arguments streamed, whatever the chunking', async (t) => {
  const call = (delta: object) => `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta }] })}\n\n`;
  const sse = Buffer.from(call({ role: 'assistant', content: '' }) + call({ tool_calls: [{ index: 0, id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '' } }] })
    + call({ tool_calls: [{ index: 0, function: { arguments: '{"location":' } }] }) + call({ tool_calls: [{ index: 0, function: { arguments: ' "Paris"}' } }] })
    + call({ tool_calls: [{ index: 1, id: 'call_2', type: 'function', function: { name: 'get_time', arguments: '{}' } }] })
    + `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 9 } })}\n\ndata: [DONE]\n\n`);
  for (const size of [1, 5, sse.length]) {
    const { c, text } = client();
    const bridge = new ResponsesBridge(c, 'm');
    for (let i = 0; i < sse.length; i += size) {
      const part = sse.subarray(i, i + size);
      if (i + size >= sse.length) bridge.end(part); else bridge.write(part);
    }
    const events = text().split('\n\n').filter((e) => e.startsWith('event:')).map((e) => JSON.parse(e.slice(e.indexOf('data: ') + 6)) as { type: string; output_index?: number; delta?: string; item?: { type: string; name?: string; arguments?: string }; response?: { output: Array<{ type: string; call_id?: string; name?: string; arguments?: string }> } });
    t.same(events.filter((e) => e.type === 'response.output_item.added').map((e) => [e.output_index, e.item?.type, e.item?.name]), [[0, 'message', undefined], [1, 'function_call', 'get_weather'], [2, 'function_call', 'get_time']], `items, chunks of ${size}`);
    t.equal(events.filter((e) => e.type === 'response.function_call_arguments.delta' && e.output_index === 1).map((e) => e.delta).join(''), '{"location": "Paris"}');
    const done = events.at(-1)!;
    t.equal(done.type, 'response.completed');
    t.same(done.response?.output.filter((o) => o.type === 'function_call').map((o) => [o.call_id, o.name, o.arguments]), [['call_1', 'get_weather', '{"location": "Paris"}'], ['call_2', 'get_time', '{}']]);
  }
});
