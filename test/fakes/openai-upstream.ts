// A local fake of OpenAI's chat-completions API speaking the real wire format (checked by
// the official `openai` SDK in test/fakes/openai-upstream.test.ts). Behaviour is chosen by
// the model name, so one fake serves many scenarios; every request it receives is recorded.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fakeEmbeddings } from './embeddings.js';

export interface Received {
  /** The request's path. */
  url: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown>;
  /** The body's bytes exactly as they arrived. */
  raw: string;
  bytes: Buffer;
  /** Content chunks written so far (streams), to observe backpressure. */
  written: number;
  /** Set when the client went away before the response finished. */
  aborted: boolean;
  /** 1 for the first request this fake received, 2 for the next, … */
  seq: number;
}

/** A fault the whole fake answers with, whatever the model (for failover tests). */
export type FakeFault = 'none' | '500' | '429' | '429-wait' | 'hang' | 'cut' | '503-early';

export interface FakeUpstream {
  url: string;
  received: Received[];
  /** Every request from now on gets this fault ('none' restores normal answers). */
  setFault(fault: FakeFault): void;
  /** Body bytes received so far, over every request (also those still arriving). */
  readonly bodyBytes: number;
  /** Requests whose body stopped arriving before its end (the sender went away). */
  readonly cutBodies: number;
  close(): Promise<void>;
}

export const FAKE_WORDS = ['Hello', ' from', ' the', ' fake', ' upstream', '.'];

/** Responses this fake was asked to delete. */
const deletedResponses = new Set<string>();

/** prompt_cache_key values seen: like OpenAI, a repeated long prefix is then partly served from cache. */
const cacheKeys = new Set<string>();

/**
 * `obey` models bill as OpenAI does where a gateway's byte bound would not see it: every
 * image part at 765 tokens (high detail), and an output as long as the cap allows (100,000
 * without one: a runaway generation).
 */
const obeys = (body: Record<string, unknown>) => String(body.model).includes('obey');
const imageParts = (v: unknown): number => (Array.isArray(v) ? v.reduce((n: number, x) => n + imageParts(x), 0)
  : v && typeof v === 'object' ? (['image_url', 'input_image'].includes(String((v as { type?: unknown }).type)) ? 1 : 0) + imageParts(Object.values(v)) : 0);
const obeyedOutput = (cap: unknown) => (typeof cap === 'number' ? cap : 100_000);

function usageFor(body: Record<string, unknown>, completion = FAKE_WORDS.length) {
  const prompt = (JSON.stringify(body.messages ?? '').length >> 2) + (obeys(body) ? imageParts(body.messages) * 765 : 0);
  if (obeys(body)) completion = obeyedOutput(body.max_completion_tokens ?? body.max_tokens);
  const key = typeof body.prompt_cache_key === 'string' ? body.prompt_cache_key : null;
  // OpenAI caches in 128-token steps from 1,024 tokens on; here 3/4 of a repeated prompt.
  const cached = key && cacheKeys.has(key) && prompt >= 1024 ? Math.floor((prompt * 0.75) / 128) * 128 : 0;
  if (key) cacheKeys.add(key);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion,
    prompt_tokens_details: { cached_tokens: cached, audio_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } };
}

function chunk(model: string, delta: Record<string, unknown>, finish: string | null, withUsage: boolean): string {
  return `data: ${JSON.stringify({ id: 'chatcmpl-fake1', object: 'chat.completion.chunk', created: 1_700_000_000, model,
    system_fingerprint: 'fp_fake', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
    ...(withUsage ? { usage: null } : {}) })}\n\n`;
}

function sendError(res: ServerResponse, status: number, message: string, type: string, param: string | null = null, code: string | null = null) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type, param, code } }));
}



/**
 * Models: `drip-<ms>` streams one word every <ms>; `long-<n>` streams n words quickly; `afterdone` goes on after [DONE];
 * `fail-500` / `fail-400` answer with those errors; `html-502` with an HTML error page;
 * `slow-down` with a 429 and Retry-After: 7; `flaky-<n>` fails its first n calls with 503;
 * `hang` never answers; `nousage` in the name never reports usage; anything else answers at once.
 */
/** POST /v1/responses: a Response object, or its stream events, as OpenAI sends them. */
function handleResponses(res: ServerResponse, body: Record<string, unknown>, call: number) {
  const model = String(body.model);
  const usage = { input_tokens: (JSON.stringify(body.input ?? '').length >> 2) + (obeys(body) ? imageParts(body.input) * 765 : 0), input_tokens_details: { cached_tokens: 0 },
    output_tokens: obeys(body) ? obeyedOutput(body.max_output_tokens) : FAKE_WORDS.length, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 0 };
  usage.total_tokens = usage.input_tokens + usage.output_tokens;
  const item = { type: 'message', id: 'msg_fake1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: FAKE_WORDS.join(''), annotations: [] }] };
  const response = (status: string, output: object[], u: object | null) => ({ id: `resp_fake${call}`, object: 'response', created_at: 1_700_000_000, status, model, output, usage: u });
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(response('completed', [item], usage)));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  let seq = 0;
  const send = (type: string, data: object) => res.write(`event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`);
  send('response.created', { response: response('in_progress', [], null) });
  for (const w of FAKE_WORDS) send('response.output_text.delta', { item_id: 'msg_fake1', output_index: 0, content_index: 0, delta: w });
  send('response.output_item.done', { output_index: 0, item });
  send('response.completed', { response: response('completed', [item], usage) });
  res.end();
}

/** POST /v1/completions (gpt-3.5-turbo-instruct): text_completion objects, or their chunks; usage on a stream only when asked (never for a `nousage` model). */
function handleLegacy(res: ServerResponse, body: Record<string, unknown>) {
  const model = String(body.model);
  const prompts = typeof body.prompt === 'string' ? [body.prompt] : Array.isArray(body.prompt) ? body.prompt as unknown[] : [];
  const cap = typeof body.max_tokens === 'number' ? body.max_tokens : 16;
  const words = FAKE_WORDS.slice(0, cap);
  const finish = words.length < FAKE_WORDS.length ? 'length' : 'stop';
  const prompt = prompts.reduce((n: number, p) => n + (JSON.stringify(p).length >> 2), 0);
  const usage = { prompt_tokens: prompt, completion_tokens: words.length * prompts.length, total_tokens: prompt + words.length * prompts.length };
  const base = { id: 'cmpl-fake1', object: 'text_completion', created: 1_700_000_000, model: `${model}` };
  if (!body.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ ...base, choices: prompts.map((_, index) => ({ text: words.join(''), index, logprobs: null, finish_reason: finish })), usage }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  for (const w of words) res.write(`data: ${JSON.stringify({ ...base, choices: [{ text: w, index: 0, logprobs: null, finish_reason: null }] })}\n\n`);
  res.write(`data: ${JSON.stringify({ ...base, choices: [{ text: '', index: 0, logprobs: null, finish_reason: finish }] })}\n\n`);
  if ((body.stream_options as { include_usage?: boolean } | undefined)?.include_usage && !model.includes('nousage')) res.write(`data: ${JSON.stringify({ ...base, choices: [], usage })}\n\n`);
  res.end('data: [DONE]\n\n');
}

/** `calls`: this fake's calls so far per model (for `flaky-<n>`). */
async function handle(req: IncomingMessage, res: ServerResponse, rec: Received, fault: FakeFault, callsByModel: Map<string, number>) {
  const body = rec.body;
  const stored = /^\/v1\/responses\/([^/?]+)$/.exec(req.url ?? '');
  if (stored && (req.method === 'GET' || req.method === 'DELETE')) {
    // Retrieve and delete, as OpenAI answers them: an id this fake made (resp_fake<n>) exists until deleted.
    const id = decodeURIComponent(stored[1]!);
    if (!/^resp_fake\d+$/.test(id) || deletedResponses.has(id)) return sendError(res, 404, `Response with id '${id}' not found.`, 'invalid_request_error');
    res.writeHead(200, { 'content-type': 'application/json' });
    if (req.method === 'DELETE') { deletedResponses.add(id); res.end(JSON.stringify({ id, object: 'response', deleted: true })); return; }
    res.end(JSON.stringify({ id, object: 'response', created_at: 1_700_000_000, status: 'completed', model: 'gpt-4.1-mini', output: [{ type: 'message', id: 'msg_fake1', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: FAKE_WORDS.join(''), annotations: [] }] }], usage: null }));
    return;
  }
  if (req.url === '/v1/responses' && req.headers.authorization === 'Bearer sk-fake-upstream' && fault === 'none') return handleResponses(res, body, rec.seq);
  if (fault === '500') return sendError(res, 500, 'The server had an error.', 'server_error');
  if (fault === '429' || fault === '429-wait') {
    res.setHeader('retry-after', fault === '429' ? '0' : '1');
    return sendError(res, 429, 'Rate limit reached for requests.', 'requests');
  }
  if (fault === 'hang') return;
  const model = String(body.model);
  if (req.headers.authorization !== 'Bearer sk-fake-upstream') return sendError(res, 401, 'Incorrect API key provided.', 'invalid_request_error');
  if (req.url === '/v1/completions') return handleLegacy(res, body);
  if (req.url === '/v1/audio/transcriptions' || req.url === '/v1/audio/translations') {
    // As OpenAI answers: the form read, json with whisper's duration usage (or gpt-4o-transcribe's tokens), or plain text.
    let form: FormData;
    try { form = await new Response(rec.bytes, { headers: { 'content-type': String(req.headers['content-type']) } }).formData(); } catch { return sendError(res, 400, 'Could not parse multipart form', 'invalid_request_error'); }
    const file = form.get('file');
    const formModel = String(form.get('model'));
    if (!(file instanceof File)) return sendError(res, 400, "[{'type': 'missing', 'loc': ('body', 'file'), 'msg': 'Field required'}]", 'invalid_request_error');
    rec.body = { model: formModel, fields: Object.fromEntries([...form].filter(([, v]) => typeof v === 'string')), file: { name: file.name, size: file.size, type: file.type } };
    const text = `Fake transcript of ${file.name} (${file.size} bytes)`;
    if (form.get('stream') === 'true' && formModel.startsWith('gpt-4o')) {
      // gpt-4o-transcribe's stream: text deltas, then the whole text with the usage (data-only events, no [DONE]).
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const delta of text.split(/(?<= )/)) res.write(`data: ${JSON.stringify({ type: 'transcript.text.delta', delta, logprobs: null })}\n\n`);
      res.end(`data: ${JSON.stringify({ type: 'transcript.text.done', text, usage: { type: 'tokens', input_tokens: 120, input_token_details: { text_tokens: 0, audio_tokens: 120 }, output_tokens: 12, total_tokens: 132 } })}\n\n`);
      return;
    }
    const format = String(form.get('response_format') ?? 'json');
    if (format === 'text') { res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }); res.end(`${text}\n`); return; }
    const usage = formModel.startsWith('gpt-4o') ? { type: 'tokens', input_tokens: 120, output_tokens: 12, total_tokens: 132, input_token_details: { audio_tokens: 120, text_tokens: 0 } } : { type: 'duration', seconds: 7 };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ text, usage }));
    return;
  }
  if (req.url === '/v1/audio/speech') {
    // As OpenAI streams it: audio bytes in pieces (here 20 of 4 KiB, 30 ms apart), chunked, no usage.
    if (typeof body.input !== 'string' || !body.input) return sendError(res, 400, "[{'type': 'missing', 'loc': ('body', 'input'), 'msg': 'Field required'}]", 'invalid_request_error');
    res.writeHead(200, { 'content-type': body.response_format === 'wav' ? 'audio/wav' : 'audio/mpeg', 'transfer-encoding': 'chunked' });
    for (let i = 0; i < 20; i++) {
      if (rec.aborted) return;
      // (input 'break mid-audio': the connection drops after 5 pieces, as a provider's can)
      if (i === 5 && body.input === 'break mid-audio') { res.destroy(); return; }
      rec.written++;
      if (!res.write(Buffer.alloc(4096, i))) await new Promise((r) => res.once('drain', r));
      await new Promise((r) => setTimeout(r, 30));
    }
    res.end();
    return;
  }
  if (req.url === '/v1/images/generations') {
    // As OpenAI answers: a 1x1 PNG per image (b64_json, or a link), gpt-image-1 with token usage, DALL·E with none.
    const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
    const n = typeof body.n === 'number' ? body.n : 1;
    const data = Array.from({ length: n }, (_, i) => (body.response_format === 'b64_json' || model === 'gpt-image-1' ? { b64_json: png } : { url: `https://fake.openai.local/img-${i}.png` }));
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ created: 1_700_000_000, data, ...(model === 'gpt-image-1' ? { usage: { total_tokens: 20 + 1056 * n, input_tokens: 20, output_tokens: 1056 * n, input_tokens_details: { text_tokens: 20, image_tokens: 0 } } } : {}) }));
    return;
  }
  if (req.url === '/v1/moderations') {
    // OpenAI's moderation answer: one result per string (or one for a list of parts), no usage.
    const input = body.input;
    const texts = typeof input === 'string' ? [input] : Array.isArray(input) && input.every((x) => typeof x === 'string') ? input as string[] : [JSON.stringify(input)];
    const results = texts.map((text) => {
      const violent = /attack/i.test(text);
      return { flagged: violent, categories: { violence: violent, harassment: false }, category_scores: { violence: violent ? 0.97 : 0.0001, harassment: 0.0002 },
        category_applied_input_types: { violence: ['text'], harassment: ['text'] } };
    });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'modr-fake1', model: `${String(body.model ?? 'omni-moderation-latest')}-2024-09-26`, results }));
    return;
  }
  if (req.url === '/v1/embeddings') {
    if (model === 'fail-500') return sendError(res, 500, 'The server had an error.', 'server_error');
    const { status, payload } = fakeEmbeddings(body, model);
    if (model.includes('nousage')) delete (payload as { usage?: unknown }).usage; // (as servers that report none)
    const json = JSON.stringify(payload);
    // (`sized` models declare the length; the others send chunked, as Node does after writeHead)
    res.writeHead(status, { 'content-type': 'application/json', ...(model.includes('sized') ? { 'content-length': String(Buffer.byteLength(json)) } : {}) });
    res.end(json);
    return;
  }
  if (model === 'fail-500') return sendError(res, 500, 'The server had an error.', 'server_error');
  if (model.endsWith('slow500')) { await new Promise((r) => setTimeout(r, 100)); return sendError(res, 500, 'The server had an error.', 'server_error'); }
  if (model === 'fail-400') return sendError(res, 400, "Invalid value for 'temperature'.", 'invalid_request_error', 'temperature', 'invalid_value');
  if (model === 'html-502') { res.writeHead(502, { 'content-type': 'text/html' }); res.end('<html><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>'); return; }
  if (model === 'slow-down') { res.setHeader('retry-after', '7'); return sendError(res, 429, 'slow down', 'requests'); }
  const seen = (callsByModel.get(model) ?? 0) + 1;
  callsByModel.set(model, seen);
  const flaky = /^flaky-(\d+)/.exec(model);
  if (flaky && seen <= Number(flaky[1])) return sendError(res, 503, 'The server is overloaded.', 'server_error');
  if (model === 'hang') return;
  const dripMatch = /drip-(\d+)/.exec(model);
  const drip = dripMatch ? Number(dripMatch[1]) : 0;
  // `seq` models answer with the number of the call, so a second upstream call is told apart from a replay.
  // `judge-<n>` models grade like a judge model told to answer JSON: {"score": n, "reason": …}.
  const judge = /^judge-(\d+)/.exec(model);
  // `verify-<word>` models answer like the semantic cache's verifier: {"same": false} when the second request contains <word>, else true.
  const verify = /^verify-(\w+)/.exec(model);
  const second = /\[SECOND\]([\s\S]*)\[\/SECOND\]/.exec(JSON.stringify(body.messages ?? ''))?.[1] ?? '';
  const words = judge ? [`{"score": ${judge[1]}, "reason": "graded by the fake judge"}`]
    : verify ? [`{"same": ${!second.toLowerCase().includes(verify[1]!)}}`]
    : model.includes('seq') ? ['Answer', ' number', ` ${rec.seq}`, '.']
    : model.startsWith('long-') ? Array.from({ length: Number(model.slice(5)) }, (_, i) => ` w${i}`) : FAKE_WORDS;
  // `nousage` models behave like OpenAI-compatible servers that never report usage (even when asked).
  const noUsage = model.includes('nousage');
  if (!body.stream) {
    if (drip) await new Promise((r) => setTimeout(r, drip * words.length));
    if (rec.aborted) return;
    const payload = JSON.stringify({ id: 'chatcmpl-fake1', object: 'chat.completion', created: 1_700_000_000, model,
      choices: [{ index: 0, message: { role: 'assistant', content: words.join(''), refusal: null, annotations: [] },
        logprobs: null, finish_reason: 'stop' }], ...(noUsage ? {} : { usage: usageFor(body, words.length) }), service_tier: 'default', system_fingerprint: 'fp_fake' });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(payload);
    return;
  }
  const includeUsage = !noUsage && (body.stream_options as { include_usage?: boolean } | undefined)?.include_usage === true;
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.write(chunk(model, { role: 'assistant', content: '', refusal: null }, null, includeUsage));
  for (const word of words) {
    if (rec.aborted) return;
    if (drip) await new Promise((r) => setTimeout(r, drip));
    if (rec.aborted) return;
    if (fault === 'cut' && rec.written === 2) { await new Promise((r) => setTimeout(r, 20)); res.destroy(); return; } // the connection dies mid-stream
    rec.written++;
    if (!res.write(chunk(model, { content: word }, null, includeUsage))) await new Promise((r) => res.once('drain', r));
  }
  // (the last events in one write, as a server sends what it has at the end: the gateway reads them together)
  const usage = includeUsage ? `data: ${JSON.stringify({ id: 'chatcmpl-fake1', object: 'chat.completion.chunk', created: 1_700_000_000, model,
    system_fingerprint: 'fp_fake', choices: [], usage: { ...usageFor(body), completion_tokens: words.length } })}\n\n` : '';
  // (`afterdone` models go on after [DONE], in the same write: an event and a second [DONE], which are not the answer's)
  const after = model.includes('afterdone') ? `${chunk(model, { content: ' AFTER-DONE' }, null, includeUsage)}data: [DONE]\n\n` : '';
  res.end(`${chunk(model, {}, 'stop', includeUsage)}${usage}data: [DONE]\n\n${after}`);
}

export async function startFakeUpstream(): Promise<FakeUpstream> {
  const received: Received[] = [];
  const callsByModel = new Map<string, number>();
  let fault: FakeFault = 'none';
  let bodyBytes = 0;
  let cutBodies = 0;
  const server: Server = createServer((req, res) => {
    if (fault === '503-early') {
      // As an upstream that refuses a request at its door (overloaded) without waiting for the body.
      req.on('error', () => undefined);
      res.setHeader('connection', 'close');
      sendError(res, 503, 'The engine is currently overloaded, please try again later.', 'server_error');
      return;
    }
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => { bodyBytes += c.length; parts.push(c); });
    req.on('aborted', () => { cutBodies++; });
    req.on('end', () => {
      const bytes = Buffer.concat(parts);
      const raw = bytes.toString();
      let body: Record<string, unknown> = {};
      try { body = JSON.parse(raw) as Record<string, unknown>; } catch { /* recorded as {} */ }
      const rec: Received = { url: req.url ?? '', headers: req.headers, body, raw, bytes, written: 0, aborted: false, seq: received.length + 1 };
      received.push(rec);
      res.on('close', () => { if (!res.writableFinished) rec.aborted = true; });
      handle(req, res, rec, fault, callsByModel).catch(() => sendError(res, 400, 'Could not parse the JSON body of your request.', 'invalid_request_error'));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    received,
    setFault: (f) => { fault = f; },
    get bodyBytes() { return bodyBytes; },
    get cutBodies() { return cutBodies; },
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
