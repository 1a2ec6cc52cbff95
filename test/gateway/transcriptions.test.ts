// POST /v1/audio/transcriptions and /translations with the official openai SDK and a real
// multipart file: the form goes to OpenAI with the route's model, whisper-1 is billed per
// second (what OpenAI reports, or the audio's length when a text answer reports nothing),
// gpt-4o-transcribe per token; the sim transcribes a WAV, reading its length from its header.
import OpenAI, { toFile } from 'openai';
import t from 'tap';
import { startWithFakeOpenAI } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';
import { wavSeconds } from '../../src/wire/transcriptions.js';

const { fake, gw } = await startWithFakeOpenAI(t.teardown, { http: { max_audio_bytes: 1024 * 1024 } });
const api = http(gw);
const { key, ws } = await api.tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });

/** A PCM WAV of `seconds` (16 kHz mono 16-bit): its header says how long it is. */
function wav(seconds: number): Buffer {
  const data = Buffer.alloc(seconds * 32000, 1);
  const head = Buffer.alloc(44);
  head.write('RIFF', 0, 'ascii'); head.writeUInt32LE(36 + data.length, 4); head.write('WAVEfmt ', 8, 'ascii');
  head.writeUInt32LE(16, 16); head.writeUInt16LE(1, 20); head.writeUInt16LE(1, 22); head.writeUInt32LE(16000, 24); head.writeUInt32LE(32000, 28);
  head.writeUInt16LE(2, 32); head.writeUInt16LE(16, 34); head.write('data', 36, 'ascii'); head.writeUInt32LE(data.length, 40);
  return Buffer.concat([head, data]);
}
const rowOf = async (id: string) => (await api.call(`/v1/requests/${id}`, key)).json;

t.test('through OpenAI: the file and fields go on with the route\'s model; billed as OpenAI reports', async (t) => {
  const file = await toFile(wav(3), 'hello.wav', { type: 'audio/wav' });
  const { data, response } = await client.audio.transcriptions.create({ model: 'openai/whisper-1', file, language: 'en' }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'openai/whisper-1');
  t.equal(data.text, `Fake transcript of hello.wav (${44 + 3 * 32000} bytes)`);
  t.match(fake.received.at(-1)!.body, { model: 'whisper-1', fields: { language: 'en' }, file: { name: 'hello.wav', size: 44 + 3 * 32000, type: 'audio/wav' } }, 'the form, with the upstream id');
  t.match(await rowOf(response.headers.get('x-request-id')!), { endpoint: 'audio.transcriptions', prompt_tokens: 7, usage_source: 'upstream', charge_usd: 7 * 100 / 1e6 }, 'the 7 seconds OpenAI reported, at $0.006 a minute');
  const plain = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav(5), 'five.wav'), response_format: 'text' }).withResponse();
  t.equal(plain.data as unknown as string, `Fake transcript of five.wav (${44 + 5 * 32000} bytes)\n`);
  t.match(await rowOf(plain.response.headers.get('x-request-id')!), { prompt_tokens: 5, usage_source: 'estimate' }, 'a text answer reports nothing: the WAV\'s own 5 seconds');
  const tokens = await client.audio.transcriptions.create({ model: 'gpt-4o-transcribe', file: await toFile(wav(1), 'one.wav') }).withResponse();
  t.match(await rowOf(tokens.response.headers.get('x-request-id')!), { prompt_tokens: 120, completion_tokens: 12, usage_source: 'upstream' }, 'gpt-4o-transcribe: its tokens');
  // Arrays go as `name[]` once per value, as the SDK sends them and OpenAI reads them.
  await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav(1), 'w.wav'), response_format: 'verbose_json', timestamp_granularities: ['word', 'segment'] });
  t.equal(fake.received.at(-1)!.raw.match(/name="timestamp_granularities\[\]"\r\n\r\n(word|segment)\r\n/g)?.length, 2, 'both granularities went on');
  const translated = await client.audio.translations.create({ model: 'whisper-1', file: await toFile(wav(2), 'bonjour.wav') }).withResponse();
  t.equal(fake.received.at(-1)!.url, '/v1/audio/translations');
  t.match(await rowOf(translated.response.headers.get('x-request-id')!), { endpoint: 'audio.translations' });
  const account = (await api.admin(`/admin/workspaces/${ws}`)).json;
  t.equal(account.reserved_usd, 0, 'nothing held');
});

t.test('the audio\'s length for billing: WAV chunks walked (an ffmpeg LIST chunk before data), a lying header not trusted; one file per form', async (t) => {
  const pcm = wav(10);
  const list = Buffer.concat([Buffer.from('LIST'), Buffer.from([26, 0, 0, 0]), Buffer.from('INFOISFT\x0e\x00\x00\x00Lavf60.16.100\x00', 'latin1')]);
  const ffmpeg = Buffer.concat([pcm.subarray(0, 36), list, pcm.subarray(36)]);
  ffmpeg.writeUInt32LE(ffmpeg.length - 8, 4);
  t.equal(wavSeconds(ffmpeg.subarray(0, 4096), ffmpeg.length), 10, 'ffmpeg\'s layout: 10 s');
  const liar = Buffer.from(pcm);
  liar.writeUInt32LE(0xffffffff, 28); // a byte rate that does not match sample rate × block align
  t.equal(wavSeconds(liar.subarray(0, 4096), liar.length), null, 'a header that does not add up is no WAV');
  const billed = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(ffmpeg, 'ffmpeg.wav'), response_format: 'text' }).withResponse();
  t.match(await rowOf(billed.response.headers.get('x-request-id')!), { prompt_tokens: 10, usage_source: 'estimate' });
  const lied = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(liar, 'liar.wav'), response_format: 'text' }).withResponse();
  t.match(await rowOf(lied.response.headers.get('x-request-id')!), { prompt_tokens: Math.ceil(liar.length / 16000) }, 'the size at 128 kbit/s instead');
  const form = new FormData();
  form.append('model', 'whisper-1');
  form.append('model', 'gpt-4o-transcribe');
  form.append('file', new Blob([pcm]), 'a.wav');
  const twice = await fetch(`${gw.baseURL}/audio/transcriptions`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: form });
  t.equal(twice.status, 400);
  t.match(await twice.json(), { error: { param: 'model', message: /more than once/ } });
});

t.test('the sim transcribes in every format; bad forms and oversized files are refused', async (t) => {
  const sim = { headers: { 'x-gateway-provider': 'sim' } };
  const json = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav(4), 'a.wav') }, sim);
  t.match(json.text, /^Simulated transcript of a\.wav: /);
  const verbose = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav(4), 'a.wav'), response_format: 'verbose_json' }, sim);
  t.equal(verbose.duration, 4);
  const srt = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(wav(4), 'a.wav'), response_format: 'srt' }, sim);
  t.match(srt as unknown as string, /^1\n00:00:00,000 --> 00:00:04,000\n/);
  const vtt = await client.audio.translations.create({ model: 'whisper-1', file: await toFile(wav(4), 'a.wav'), response_format: 'vtt' }, sim);
  t.match(vtt as unknown as string, /^WEBVTT\n\n00:00:00\.000 --> 00:00:04\.000\nSimulated translation/);
  const big = await client.audio.transcriptions.create({ model: 'whisper-1', file: await toFile(Buffer.alloc(2 * 1024 * 1024), 'big.mp3') }).catch((e: unknown) => e);
  t.ok(big instanceof OpenAI.APIError && big.status === 413, 'beyond http.max_audio_bytes: 413');
  const noFile = await fetch(`${gw.baseURL}/audio/transcriptions`, { method: 'POST', headers: { authorization: `Bearer ${key}` }, body: (() => { const f = new FormData(); f.append('model', 'whisper-1'); return f; })() });
  t.match(await noFile.json(), { error: { param: 'file' } });
  const json400 = await api.call('/v1/audio/transcriptions', key, { model: 'whisper-1' });
  t.match(json400.json, { error: { param: 'file', message: /multipart/ } });
  const wrongModel = await client.audio.transcriptions.create({ model: 'gpt-4.1-mini', file: await toFile(wav(1), 'a.wav') }).catch((e: unknown) => e);
  t.ok(wrongModel instanceof OpenAI.BadRequestError && wrongModel.param === 'model');
  t.equal((await fetch(`${gw.url}/health`)).status, 200);
});

t.test('gpt-4o-transcribe streams: text deltas, then the text with its tokens, billed from them (OpenAI and the sim)', async (t) => {
  for (const headers of [{}, { 'x-gateway-provider': 'sim' }]) {
    const { data: stream, response } = await client.audio.transcriptions.create({ model: 'gpt-4o-transcribe', file: await toFile(wav(2), 's.wav'), stream: true }, { headers }).withResponse();
    let deltas = '';
    type Done = { text: string; usage?: { input_tokens: number; output_tokens: number } };
    let done = null as Done | null;
    for await (const event of stream) {
      if (event.type === 'transcript.text.delta') deltas += event.delta;
      else if (event.type === 'transcript.text.done') done = event as unknown as Done;
    }
    t.ok(done && deltas === done.text && deltas.length > 0, 'the deltas make the text');
    t.match(await rowOf(response.headers.get('x-request-id')!), { endpoint: 'audio.transcriptions', prompt_tokens: done!.usage!.input_tokens, completion_tokens: done!.usage!.output_tokens, usage_source: 'upstream', status: 200 },
      `billed from transcript.text.done's tokens (${JSON.stringify(headers)})`);
  }
  t.equal((await api.admin(`/admin/workspaces/${ws}`)).json.reserved_usd, 0, 'nothing held');
});
