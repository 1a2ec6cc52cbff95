// A local fake of Anthropic's Messages API speaking its real wire format (checked by the
// official `@anthropic-ai/sdk` in anthropic-upstream.test.ts). It answers with text, or with
// a tool_use when tools are offered and no tool result came back yet; every request is recorded.
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeAnthropic {
  url: string;
  received: Array<{ headers: Record<string, unknown>; body: Record<string, any> }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  close(): Promise<void>;
}

export const ANTHROPIC_WORDS = ['Hello', ' from', ' the', ' fake', ' Anthropic', '.'];

function error(res: ServerResponse, status: number, type: string, message: string) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ type: 'error', error: { type, message } }));
}

/** A value that fits a (simple) JSON Schema: objects, arrays, enums, strings ('Paris'), numbers, booleans. */
function fitting(schema: unknown): unknown {
  const s = (schema && typeof schema === 'object' ? schema : {}) as Record<string, unknown>;
  if (Array.isArray(s.enum)) return s.enum[0];
  const type = Array.isArray(s.type) ? s.type.find((x) => x !== 'null') : s.type ?? (s.properties ? 'object' : 'string');
  if (type === 'object') {
    const props = Object.entries((s.properties ?? {}) as Record<string, unknown>);
    return props.length ? Object.fromEntries(props.map(([k, v]) => [k, fitting(v)])) : { location: 'Paris' }; // (any object will do)
  }
  if (type === 'array') return [fitting(s.items)];
  if (type === 'number' || type === 'integer') return 21;
  if (type === 'boolean') return true;
  return 'Paris';
}

export async function startFakeAnthropic(): Promise<FakeAnthropic> {
  const received: FakeAnthropic['received'] = [];
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      let body: Record<string, any> = {}; // eslint-disable-line @typescript-eslint/no-explicit-any
      try { body = JSON.parse(Buffer.concat(parts).toString()) as typeof body; } catch { return error(res, 400, 'invalid_request_error', 'Invalid JSON'); }
      received.push({ headers: req.headers, body });
      if (req.url !== '/v1/messages') return error(res, 404, 'not_found_error', 'Not found');
      // The API takes the key as x-api-key (what the gateway sends) or as a bearer token (newer SDKs).
      if (req.headers['x-api-key'] !== 'sk-ant-fake' && req.headers.authorization !== 'Bearer sk-ant-fake') return error(res, 401, 'authentication_error', 'invalid x-api-key');
      if (!req.headers['anthropic-version']) return error(res, 400, 'invalid_request_error', 'anthropic-version header is required');
      if (typeof body.max_tokens !== 'number') return error(res, 400, 'invalid_request_error', 'max_tokens: Field required');
      if (body.model === 'fail-529') return error(res, 529, 'overloaded_error', 'Overloaded');
      if (body.model === 'fail-400') return error(res, 400, 'invalid_request_error', 'messages: roles must alternate');
      if (!Array.isArray(body.messages) || body.messages.length === 0) return error(res, 400, 'invalid_request_error', 'messages: at least one message is required');
      const messages = body.messages as Array<{ role: string; content: string | Array<{ type: string }> }>;
      const last = messages.at(-1)!;
      const sawResult = Array.isArray(last.content) && last.content.some((b) => b.type === 'tool_result');
      const tool = Array.isArray(body.tools) && body.tools.length && !sawResult ? body.tools[0] as { name: string } : null;
      const words = sawResult ? ['It', ' is', ' sunny', '.'] : ANTHROPIC_WORDS;
      // As Anthropic does when cache_control marks a prefix: a first request writes it (the `cache-writer` model), later ones read it.
      const usage = { input_tokens: JSON.stringify([body.system ?? '', messages]).length >> 2, cache_read_input_tokens: 5, cache_creation_input_tokens: body.model === 'cache-writer' ? 100 : 0 };
      // As a model does: arguments that fit the tool's input_schema (a string is 'Paris').
      const input = tool ? fitting((tool as { input_schema?: unknown }).input_schema) as Record<string, unknown> : null;
      const content = tool ? [{ type: 'tool_use', id: 'toolu_fake1', name: tool.name, input }] : [{ type: 'text', text: words.join('') }];
      const stop = tool ? 'tool_use' : 'end_turn';
      const output = tool ? 12 : words.length;
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'msg_fake1', type: 'message', role: 'assistant', model: body.model, content, stop_reason: stop, stop_sequence: null, usage: { ...usage, output_tokens: output } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const send = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
      send('message_start', { message: { id: 'msg_fake1', type: 'message', role: 'assistant', model: body.model, content: [], stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } });
      send('ping', {});
      if (tool) {
        send('content_block_start', { index: 0, content_block: { type: 'tool_use', id: 'toolu_fake1', name: tool.name, input: {} } });
        const json = JSON.stringify(input);
        for (const piece of [json.slice(0, Math.ceil(json.length / 2)), json.slice(Math.ceil(json.length / 2))]) send('content_block_delta', { index: 0, delta: { type: 'input_json_delta', partial_json: piece } });
      } else {
        send('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
        for (const w of words) send('content_block_delta', { index: 0, delta: { type: 'text_delta', text: w } });
      }
      send('content_block_stop', { index: 0 });
      send('message_delta', { delta: { stop_reason: stop, stop_sequence: null }, usage: { output_tokens: output } });
      send('message_stop', {});
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}/v1`, received, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}
