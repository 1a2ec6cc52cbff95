// POST /v1/audio/speech with the official openai SDK: the audio streamed back as it comes (the
// first bytes reach the client long before the last leave the upstream), billed per input
// character from the catalog; the sim speaks a real WAV; an abort stops the upstream.
import OpenAI from 'openai';
import t from 'tap';
import { startWithFakeOpenAI } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';
import { eventually } from '../helpers/streams.js';

const { fake, gw } = await startWithFakeOpenAI(t.teardown);
const api = http(gw);
const { key, ws } = await api.tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });

t.test('through OpenAI: streamed as it comes, billed per character', async (t) => {
  const input = 'Hello from the gateway. Ünïcödé counts as characters.';
  const t0 = performance.now();
  const res = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input });
  t.equal(res.headers.get('content-type'), 'audio/mpeg');
  t.equal(res.headers.get('x-gateway-decision'), 'openai/tts-1');
  t.equal(Number(res.headers.get('x-gateway-cost-usd')), [...input].length * 15 / 1e6, 'the cost is in the headers before the audio');
  const reader = res.body!.getReader();
  let bytes = 0;
  let first = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!first) first = performance.now() - t0;
    bytes += value.length;
  }
  const total = performance.now() - t0;
  t.equal(bytes, 20 * 4096, 'every byte, unchanged');
  t.ok(first < total - 300, `the first bytes at ${first.toFixed(0)} ms, the end at ${total.toFixed(0)} ms`);
  const row = (await api.call(`/v1/requests/${res.headers.get('x-request-id')}`, key)).json;
  t.match(row, { endpoint: 'audio.speech', status: 200, prompt_tokens: [...input].length, completion_tokens: 0 });
  const account = (await api.admin(`/admin/workspaces/${ws}`)).json;
  t.equal(account.reserved_usd, 0);
  t.ok(Math.abs(1 - row.charge_usd - account.balance_usd) < 1e-9, 'charged exactly the row');
});

t.test('an abort mid-audio closes the upstream and leaves nothing held', async (t) => {
  const controller = new AbortController();
  const before = fake.received.length;
  const res = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'abort me' }, { signal: controller.signal });
  const reader = res.body!.getReader();
  await reader.read();
  controller.abort();
  t.ok(await eventually(() => fake.received[before]!.aborted), 'the upstream connection closed');
  let reserved = -1;
  for (let i = 0; i < 40 && reserved !== 0; i++) { reserved = (await api.admin(`/admin/workspaces/${ws}`)).json.reserved_usd as number; if (reserved) await new Promise((r) => setTimeout(r, 50)); }
  t.equal(reserved, 0, 'no hold left');
  const row = (await api.call(`/v1/requests/${res.headers.get('x-request-id')}`, key)).json;
  t.match(row, { status: 499, prompt_tokens: 8 }, 'its row: the input was spent');
});

t.test('an upstream that breaks mid-audio: the body is cut, never a short file that looks whole', async (t) => {
  const res = await client.audio.speech.create({ model: 'tts-1', voice: 'alloy', input: 'break mid-audio' });
  t.equal(res.status, 200, 'the headers had gone out with the first bytes');
  const reader = res.body!.getReader();
  let bytes = 0;
  let ended = 'a clean end';
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      bytes += value.length;
    }
  } catch {
    ended = 'an error';
  }
  t.equal(ended, 'an error', `the body ends in an error, after ${bytes} bytes`);
  t.ok(bytes < 20 * 4096, 'short of the whole audio');
  const row = (await api.call(`/v1/requests/${res.headers.get('x-request-id')}`, key)).json;
  t.ok(row.status >= 500, `its row says it failed (${row.status} ${row.error})`);
  t.equal(row.prompt_tokens, [...'break mid-audio'].length, 'the input was spent');
  t.equal((await api.admin(`/admin/workspaces/${ws}`)).json.reserved_usd, 0, 'no hold left');
});

t.test('the sim speaks a WAV; bad bodies are 400s', async (t) => {
  const res = await client.audio.speech.create({ model: 'tts-1-hd', voice: 'nova', input: 'A short sentence to say.', response_format: 'wav' }, { headers: { 'x-gateway-provider': 'sim' } });
  const wav = Buffer.from(await res.arrayBuffer());
  t.equal(wav.toString('ascii', 0, 4), 'RIFF');
  t.equal(wav.toString('ascii', 8, 12), 'WAVE');
  t.equal(wav.readUInt32LE(40), wav.length - 44, 'its data size matches');
  for (const [body, param] of [[{ model: 'tts-1', voice: 'alloy' }, 'input'], [{ model: 'tts-1', voice: 'alloy', input: 'x'.repeat(4097) }, 'input'], [{ model: 'tts-1', voice: 'alloy', input: 'x', speed: 9 }, 'speed'], [{ model: 'tts-1', voice: 'alloy', input: 'x', stream_format: 'sse' }, 'stream_format'], [{ model: 'gpt-4.1-mini', voice: 'alloy', input: 'x' }, 'model']] as const) {
    const r = await api.admin('/v1/audio/speech', body);
    t.equal(r.status, 400, JSON.stringify(body).slice(0, 60));
    t.equal(r.json.error.param, param);
  }
});
