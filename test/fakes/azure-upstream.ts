// A local fake of Azure OpenAI speaking its real wire format: deployments in the path
// (`/openai/deployments/{name}/chat/completions?api-version=…`), the key in `api-key`, the
// Responses API at `/openai/responses`, and Azure's additions to OpenAI's bodies: the
// prompt's and each choice's content-filter results (a first stream chunk with no choices
// that carries the prompt's), and a filtered prompt refused as a 400 `content_filter` with
// its innererror. Checked by the official `openai` SDK's AzureOpenAI client in
// azure-upstream.test.ts. Behaviour is chosen by the deployment name.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fakeEmbeddings } from './embeddings.js';

export const AZURE_KEY = 'azure-fake-key-0123456789';
export const AZURE_WORDS = ['Hello', ' from', ' the', ' fake', ' Azure', '.'];

export interface AzureReceived {
  path: string;
  deployment: string | null;
  apiVersion: string | null;
  headers: IncomingMessage['headers'];
  body: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  aborted: boolean;
}

export interface FakeAzure {
  url: string;
  received: AzureReceived[];
  close(): Promise<void>;
}

const SAFE = { hate: { filtered: false, severity: 'safe' }, self_harm: { filtered: false, severity: 'safe' }, sexual: { filtered: false, severity: 'safe' }, violence: { filtered: false, severity: 'safe' } };
const PROMPT_FILTER = [{ prompt_index: 0, content_filter_results: SAFE }];

function error(res: ServerResponse, status: number, body: object, headers: Record<string, string> = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

export async function startFakeAzure(): Promise<FakeAzure> {
  const received: AzureReceived[] = [];
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://fake');
      const apiVersion = url.searchParams.get('api-version');
      const chat = /^\/openai\/deployments\/([^/]+)\/chat\/completions$/.exec(url.pathname);
      const responses = url.pathname === '/openai/responses';
      const embeddings = /^\/openai\/deployments\/([^/]+)\/embeddings$/.exec(url.pathname);
      if (req.headers['api-key'] !== AZURE_KEY) return error(res, 401, { error: { code: '401', message: 'Access denied due to invalid subscription key or wrong API endpoint.' } });
      if (!apiVersion) return error(res, 404, { error: { code: '404', message: 'Resource not found' } });
      if (!chat && !responses && !embeddings) return error(res, 404, { error: { code: '404', message: 'Resource not found' } });
      let body: AzureReceived['body'] = {};
      try { body = JSON.parse(Buffer.concat(parts).toString('utf8')) as typeof body; } catch { return error(res, 400, { error: { code: 'invalid_json', message: 'Invalid JSON' } }); }
      const deployment = chat ? decodeURIComponent(chat[1]!) : embeddings ? decodeURIComponent(embeddings[1]!) : String(body.model);
      const rec: AzureReceived = { path: url.pathname + url.search, deployment, apiVersion, headers: req.headers, body, aborted: false };
      received.push(rec);
      res.on('close', () => { if (!res.writableFinished) rec.aborted = true; });
      if (embeddings && deployment !== 'missing') {
        const { status, payload } = fakeEmbeddings(body, 'text-embedding-3-small');
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(payload));
        return;
      }
      if (deployment === 'missing') return error(res, 404, { error: { code: 'DeploymentNotFound', message: 'The API deployment for this resource does not exist.' } });
      if (deployment === 'fail-429') return error(res, 429, { error: { code: '429', message: 'Requests to the ChatCompletions_Create Operation have exceeded token rate limit.' } }, { 'retry-after': '1' });
      if (deployment === 'filtered') {
        return error(res, 400, { error: { message: 'The response was filtered due to the prompt triggering Azure OpenAI\'s content management policy.', type: null, param: 'prompt', code: 'content_filter', status: 400,
          innererror: { code: 'ResponsibleAIPolicyViolation', content_filter_result: { ...SAFE, violence: { filtered: true, severity: 'high' } } } } });
      }
      const prompt = JSON.stringify(body.messages ?? body.input ?? '').length >> 2;
      const usage = { prompt_tokens: prompt, completion_tokens: AZURE_WORDS.length, total_tokens: prompt + AZURE_WORDS.length, prompt_tokens_details: { cached_tokens: 0 } };
      if (responses) {
        const item = { type: 'message', id: 'msg_az1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: AZURE_WORDS.join(''), annotations: [] }] };
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'resp_az1', object: 'response', created_at: 1_700_000_000, status: 'completed', model: deployment, output: [item],
          usage: { input_tokens: prompt, input_tokens_details: { cached_tokens: 0 }, output_tokens: AZURE_WORDS.length, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: prompt + AZURE_WORDS.length } }));
        return;
      }
      const model = 'gpt-4.1-mini-2025-04-14';
      // As the model would: a tool call when tools are offered and no result came back yet; JSON when asked for it.
      const messages = (body.messages ?? []) as Array<{ role: string }>;
      const tool = Array.isArray(body.tools) && body.tools.length && messages.at(-1)?.role !== 'tool' ? String(body.tools[0].function.name) : null;
      const call = tool ? { id: 'call_az1', type: 'function', function: { name: tool, arguments: '{"location":"Paris"}' } } : null;
      const text = body.response_format ? '{"city":"Paris"}' : messages.at(-1)?.role === 'tool' ? 'It is sunny.' : AZURE_WORDS.join('');
      if (!body.stream) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'chatcmpl-az1', object: 'chat.completion', created: 1_700_000_000, model, system_fingerprint: 'fp_az',
          prompt_filter_results: PROMPT_FILTER,
          choices: [{ index: 0, finish_reason: call ? 'tool_calls' : 'stop', logprobs: null,
            message: { role: 'assistant', content: call ? null : text, refusal: null, ...(call ? { tool_calls: [call] } : {}) }, content_filter_results: SAFE }],
          usage }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      if (deployment === 'slow-stream') { // a long answer, a chunk every 50 ms: aborting mid-way must close this connection
        let i = 0;
        const timer = setInterval(() => {
          if (res.destroyed || i >= 200) { clearInterval(timer); if (!res.destroyed) res.end(); return; }
          res.write(`data: ${JSON.stringify({ id: 'chatcmpl-az1', object: 'chat.completion.chunk', created: 1_700_000_000, model, choices: [{ index: 0, delta: { content: ` word${i++}` }, finish_reason: null }] })}\n\n`);
        }, 50);
        return;
      }
      const send = (o: object) => res.write(`data: ${JSON.stringify({ id: 'chatcmpl-az1', object: 'chat.completion.chunk', created: 1_700_000_000, model, system_fingerprint: 'fp_az', ...o })}\n\n`);
      res.write(`data: ${JSON.stringify({ id: '', object: '', created: 0, model: '', choices: [], prompt_filter_results: PROMPT_FILTER })}\n\n`);
      send({ choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null, content_filter_results: {} }] });
      if (call) send({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, ...call }] }, finish_reason: null, content_filter_results: {} }] });
      else for (const w of text === AZURE_WORDS.join('') ? AZURE_WORDS : [text]) send({ choices: [{ index: 0, delta: { content: w }, finish_reason: null, content_filter_results: SAFE }] });
      send({ choices: [{ index: 0, delta: {}, finish_reason: call ? 'tool_calls' : 'stop', content_filter_results: {} }] });
      if (body.stream_options?.include_usage) send({ choices: [], usage });
      res.end('data: [DONE]\n\n');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, received, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}
