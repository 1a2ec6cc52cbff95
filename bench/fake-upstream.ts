// A fast fake OpenAI upstream for benches (uWS, precomputed bodies), run as its own
// process so that it does not share an event loop with the gateway or the load generator.
// Prints "listening <port>" once ready.
import uWS from 'uWebSockets.js';
import { readBody } from './uws-body.js';

const completion = Buffer.from(JSON.stringify({
  id: 'chatcmpl-bench', object: 'chat.completion', created: 1_700_000_000, model: 'gpt-4.1-mini',
  choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the bench upstream. '.repeat(4), refusal: null }, logprobs: null, finish_reason: 'stop' }],
  usage: { prompt_tokens: 24, completion_tokens: 28, total_tokens: 52, prompt_tokens_details: { cached_tokens: 0 } },
}));
const chunk = (delta: object, finish: string | null) =>
  `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4.1-mini', choices: [{ index: 0, delta, finish_reason: finish }], usage: null })}\n\n`;
const words = ['Hello', ' from', ' the', ' bench', ' upstream', '.', ' Fast', ' and', ' steady', '.'];
const usageFrame = `data: ${JSON.stringify({ id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'gpt-4.1-mini', choices: [], usage: { prompt_tokens: 24, completion_tokens: 10, total_tokens: 34 } })}\n\n`;
const frames = chunk({ role: 'assistant', content: '' }, null) + words.map((w) => chunk({ content: w }, null)).join('') + chunk({}, 'stop');
const streamWithUsage = Buffer.from(`${frames}${usageFrame}data: [DONE]\n\n`);
const streamPlain = Buffer.from(`${frames}data: [DONE]\n\n`);

const STREAM = Buffer.from('"stream":true');
/** FAULT_RATE=0.3: that share of requests gets a 500 (for the failover bench). */
const faultRate = Number(process.env.FAULT_RATE ?? 0);
const failure = Buffer.from(JSON.stringify({ error: { message: 'injected fault', type: 'server_error', code: null, param: null } }));
const USAGE = Buffer.from('"include_usage":true');

/** Models named `slow-…` answer after 50 ms, like a real provider's time to a short answer (for the cache-hit comparison). */
const SLOW = Buffer.from('"model":"slow-');
const SLOW_MS = 50;

/**
 * Models named `paced-…` stream as a provider does: 60 frames (and the usage frame, when asked
 * for), each its own write, 1 ms apart, so that the proxy reads them one at a time (the other
 * streams come in one write, which measures a stream's fixed costs, not its per-chunk ones).
 */
const PACED = Buffer.from('"model":"paced-');
const pacedFrames = [chunk({ role: 'assistant', content: '' }, null), ...Array.from({ length: 58 }, (_, i) => chunk({ content: words[i % words.length]! }, null)), chunk({}, 'stop')].map((f) => Buffer.from(f));
const pacedUsage = Buffer.from(usageFrame.replace('"completion_tokens":10,"total_tokens":34', '"completion_tokens":58,"total_tokens":82'));
const DONE = Buffer.from('data: [DONE]\n\n');

function paced(res: uWS.HttpResponse, state: { aborted: boolean }, withUsage: boolean): void {
  res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', 'text/event-stream'));
  let i = 0;
  const next = () => {
    if (state.aborted) return;
    if (i < pacedFrames.length) { const frame = pacedFrames[i++]!; res.cork(() => res.write(frame)); setTimeout(next, 1); return; }
    res.cork(() => { if (withUsage) res.write(pacedUsage); res.end(DONE); });
  };
  setTimeout(next, 1);
}

/** A Response object (POST /v1/responses, not streamed), its id fresh per answer as OpenAI's are: split around the id. */
const responseHead = Buffer.from('{"id":"resp_bench');
const responseTail = Buffer.from(`",${JSON.stringify({
  object: 'response', created_at: 1_700_000_000, status: 'completed', model: 'gpt-4.1-mini',
  output: [{ type: 'message', id: 'msg_bench', status: 'completed', role: 'assistant', content: [{ type: 'output_text', text: 'Hello from the bench upstream. '.repeat(4), annotations: [] }] }],
  usage: { input_tokens: 24, input_tokens_details: { cached_tokens: 0 }, output_tokens: 28, output_tokens_details: { reasoning_tokens: 0 }, total_tokens: 52 },
}).slice(1)}`);
let responses = 0;

uWS.App().post('/v1/responses', (res) => {
  const state = readBody(res, () => {
    if (!state.aborted) res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', 'application/json').end(Buffer.concat([responseHead, Buffer.from((++responses).toString(36)), responseTail])));
  });
}).post('/v1/chat/completions', (res) => {
  const state = readBody(res, (body) => {
    if (body.includes(PACED)) { paced(res, state, body.includes(USAGE)); return; }
    if (body.includes(SLOW)) {
      setTimeout(() => { if (!state.aborted) res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', 'application/json').end(completion)); }, SLOW_MS);
      return;
    }
    res.cork(() => {
      if (faultRate > 0 && Math.random() < faultRate) {
        res.writeStatus('500 Internal Server Error').writeHeader('content-type', 'application/json').end(failure);
      } else if (body.includes(STREAM)) {
        res.writeStatus('200 OK').writeHeader('content-type', 'text/event-stream').end(body.includes(USAGE) ? streamWithUsage : streamPlain);
      } else {
        res.writeStatus('200 OK').writeHeader('content-type', 'application/json').end(completion);
      }
    });
  });
}).listen('127.0.0.1', 0, (socket) => {
  if (!socket) { console.error('fake upstream: listen failed'); process.exit(1); }
  console.log(`listening ${uWS.us_socket_local_port(socket)}`);
});
