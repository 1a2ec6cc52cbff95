// Audio uploads are read as they arrive: with the model before the file the request goes
// upstream as the file starts and the audio streams behind it; with the file first (the Node
// SDK) it is spooled, then sent with its length. Either way a failover attempt sends the
// same bytes again, and an upload that fails on the way (a late duplicate field, the client
// leaving, too many bytes) ends its request cleanly, upstream call included, nothing held.
import { request } from 'node:http';
import { createHash } from 'node:crypto';
import { constants as zlib, createBrotliCompress, gzipSync } from 'node:zlib';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import OpenAI, { toFile } from 'openai';
import t from 'tap';
import { startFakeUpstream, type Received } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';
import { eventually } from '../helpers/streams.js';

const a = await startFakeUpstream();
const b = await startFakeUpstream();
const MAX = 6 * 1024 * 1024;
const gw = await startGateway({ SLUICE_SIM: 'off' }, tempDataDir(), {
  providers: {
    primary: { kind: 'openai', base_url: a.url, api_key: 'sk-fake-upstream' },
    backup: { kind: 'openai', base_url: b.url, api_key: 'sk-fake-upstream' },
  },
  models: [{ slug: 'primary/whisper-1', upstream_id: 'whisper-1', type: 'transcription', audio_units_per_second: 1, context_window: 100_000_000, prices: { input: 100, output: 0 },
    routes: [{ provider: 'backup', upstream_id: 'whisper-1', prices: { input: 100, output: 0 } }] }],
  upstream: { max_retries: 2, breaker_failures: 100 },
  http: { max_audio_bytes: MAX },
});
t.teardown(async () => { await gw.stop(); await a.close(); await b.close(); });
const api = http(gw);
const { key, ws } = await api.tenant(gw.masterKey, 5, undefined, ['inference', 'usage:read']);
const port = Number(new URL(gw.url).port);

const audio = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + seed + (i >> 11)) & 0xff));
const digest = (b: Buffer | ArrayBuffer) => createHash('sha256').update(Buffer.from(b as ArrayBuffer)).digest('hex');
const BOUNDARY = 'test-boundary-7e3a';
const field = (name: string, value: string) => Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`);
const fileHead = (name = 'clip.mp3') => Buffer.from(`--${BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: audio/mpeg\r\n\r\n`);
const closing = Buffer.from(`\r\n--${BOUNDARY}--\r\n`);

/** A form sent by hand, piece by piece (`pieces` between writes: the test decides when the next goes). */
function send(path: string, total: number | null, extra: Record<string, string> = {}) {
  const req = request({ host: '127.0.0.1', port, path, method: 'POST', headers: {
    authorization: `Bearer ${key}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, ...(total === null ? {} : { 'content-length': String(total) }), ...extra } });
  const answer = new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: Record<string, any> }>((resolve, reject) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => { const text = Buffer.concat(parts).toString(); let json = {}; try { json = JSON.parse(text) as object; } catch { json = { text }; } resolve({ status: res.statusCode!, headers: res.headers, json }); });
    });
    req.on('error', reject);
  });
  answer.catch(() => undefined);
  return { req, answer };
}

/** The file as the upstream received it, from its recorded form. */
async function fileOf(rec: Received): Promise<{ name: string; digest: string; size: number }> {
  const form = await new Response(rec.bytes, { headers: { 'content-type': String(rec.headers['content-type']) } }).formData();
  const file = form.get('file') as File;
  return { name: file.name, digest: digest(await file.arrayBuffer()), size: file.size };
}

/** CPU time (user + system) of a process so far, in seconds. */
const cpuSeconds = (pid: number) => { const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' '); return (Number(f[11]) + Number(f[12])) / 100; };
const held = async () => (await api.admin(`/admin/workspaces/${ws}`)).json.reserved_usd as number;
/** The workspace's holds released, within 3 s. */
async function settled(): Promise<boolean> {
  for (let i = 0; i < 150; i++) { if ((await held()) === 0) return true; await new Promise((r) => setTimeout(r, 20)); }
  return false;
}

t.test('the model before the file: the audio streams upstream while the client still sends it', async (t) => {
  const body = audio(3 * 1024 * 1024, 1);
  const head = Buffer.concat([field('model', 'primary/whisper-1'), field('language', 'en'), fileHead()]);
  const tail = Buffer.concat([closing]);
  const { req, answer } = send('/v1/audio/transcriptions', head.length + body.length + tail.length);
  const before = a.bodyBytes;
  req.write(head);
  req.write(body.subarray(0, 1024 * 1024));
  t.ok(await eventually(() => a.bodyBytes - before > 512 * 1024, 5000), 'the upstream has most of the first MiB before the client sent the rest');
  req.write(body.subarray(1024 * 1024));
  req.end(tail);
  const res = await answer;
  t.equal(res.status, 200, JSON.stringify(res.json));
  t.equal(res.headers['x-gateway-decision'], 'primary/whisper-1');
  const rec = a.received.at(-1)!;
  t.equal(rec.headers['transfer-encoding'], 'chunked', 'its length unknown while it streamed');
  t.same(await fileOf(rec), { name: 'clip.mp3', digest: digest(body), size: body.length }, 'every byte, in order');
  t.match(rec.body, { model: 'whisper-1', fields: { language: 'en' } });
  t.equal(await held(), 0, 'nothing held');
});

t.test('the file first (the Node SDK): spooled to its end, then sent with its length; a field after the file goes too', async (t) => {
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const body = audio(2 * 1024 * 1024 + 77, 2);
  const { response } = await client.audio.transcriptions.create({ file: await toFile(body, 'talk.wav', { type: 'audio/wav' }), model: 'primary/whisper-1', prompt: 'names' }).withResponse();
  t.equal(response.status, 200);
  const rec = a.received.at(-1)!;
  t.equal(rec.headers['transfer-encoding'], undefined);
  t.equal(Number(rec.headers['content-length']), rec.bytes.length, 'sent with its length');
  t.same(await fileOf(rec), { name: 'talk.wav', digest: digest(body), size: body.length });
  t.match(rec.body, { model: 'whisper-1', fields: { prompt: 'names' } });
  // Streaming, a field that comes after the file still reaches the upstream (after the file).
  const late = audio(200_000, 3);
  const head = Buffer.concat([field('model', 'primary/whisper-1'), fileHead('late.mp3')]);
  const tail = Buffer.concat([Buffer.from('\r\n'), field('response_format', 'text').subarray(0, -2), closing]);
  const { req, answer } = send('/v1/audio/transcriptions', head.length + late.length + tail.length);
  req.end(Buffer.concat([head, late, tail]));
  const res = await answer;
  t.equal(res.status, 200);
  t.match(res.json.text, /^Fake transcript of late\.mp3 \(200000 bytes\)\n$/, 'the text format asked for after the file');
});

t.test('gzip-compressed forms are inflated as they come', async (t) => {
  const body = audio(700_000, 4);
  const form = gzipSync(Buffer.concat([fileHead('z.mp3'), body, Buffer.from('\r\n'), field('model', 'primary/whisper-1').subarray(0, -2), closing]));
  const { req, answer } = send('/v1/audio/translations', form.length, { 'content-encoding': 'gzip' });
  req.end(form);
  const res = await answer;
  t.equal(res.status, 200, JSON.stringify(res.json));
  t.same(await fileOf(a.received.at(-1)!), { name: 'z.mp3', digest: digest(body), size: body.length });
  const bomb = gzipSync(Buffer.concat([field('model', 'primary/whisper-1'), fileHead(), Buffer.alloc(MAX + 1024), closing]));
  const boom = send('/v1/audio/translations', bomb.length, { 'content-encoding': 'gzip' });
  boom.req.end(bomb);
  t.equal((await boom.answer).status, 413, 'what inflates past the limit: 413');
  // A brotli body of 1.6 KB that inflates to 1 GiB: refused, and the inflating stops with it (left running, it takes seconds of CPU).
  const zeros = await new Promise<Buffer>((resolve) => {
    const c = createBrotliCompress({ params: { [zlib.BROTLI_PARAM_QUALITY]: 5 } });
    const parts: Buffer[] = [];
    c.on('data', (d: Buffer) => parts.push(d));
    c.on('end', () => resolve(Buffer.concat(parts)));
    c.write(Buffer.concat([field('model', 'primary/whisper-1'), fileHead()]));
    const mib = Buffer.alloc(1 << 20);
    let n = 0;
    const more = (): void => { while (n < 1024) { n++; if (!c.write(mib)) { c.once('drain', more); return; } } c.end(closing); };
    more();
  });
  const brotli = send('/v1/audio/translations', zeros.length, { 'content-encoding': 'br' });
  brotli.req.end(zeros);
  t.equal((await brotli.answer).status, 413);
  const cpu0 = cpuSeconds(gw.proc.pid!);
  await new Promise((r) => setTimeout(r, 2000));
  t.ok(cpuSeconds(gw.proc.pid!) - cpu0 < 0.4, 'the gateway is not still inflating the refused body');
});

t.test('an upload that goes wrong after the request went upstream ends it with the caller\'s error; the upstream call is cut', async (t) => {
  const body = audio(1024 * 1024, 5);
  const head = Buffer.concat([field('model', 'primary/whisper-1'), fileHead()]);
  const tail = Buffer.concat([Buffer.from('\r\n'), field('provider', 'backup').subarray(0, -2), closing]);
  const cut = a.cutBodies;
  const { req, answer } = send('/v1/audio/transcriptions', head.length + body.length + tail.length);
  req.write(head);
  req.write(body);
  req.end(tail);
  const res = await answer;
  t.equal(res.status, 400);
  t.match(res.json, { error: { param: 'provider', message: /came after the file/ } }, 'what routed the request may not change after it');
  t.ok(await eventually(() => a.cutBodies > cut, 3000), 'the upstream saw its request cut, not a whole form');
  t.ok(await settled(), 'nothing held');
  // The client leaving halfway: its upstream call goes too.
  const balance = (await api.admin(`/admin/workspaces/${ws}`)).json.balance_usd as number;
  const gone = send('/v1/audio/transcriptions', head.length + body.length + 10);
  const before = a.bodyBytes;
  const cutBefore = a.cutBodies;
  gone.req.write(head);
  gone.req.write(body.subarray(0, 600_000));
  t.ok(await eventually(() => a.bodyBytes - before > 100_000, 3000), 'streaming');
  gone.req.destroy();
  t.ok(await eventually(() => a.cutBodies > cutBefore, 3000), 'the upstream call ends with the client');
  t.ok(await settled(), 'nothing held');
  t.equal((await api.admin(`/admin/workspaces/${ws}`)).json.balance_usd, balance, 'and nothing billed: the upstream never had the whole audio');
  t.equal((await fetch(`${gw.url}/health`)).status, 200);
});

t.test('a field name past 100 characters is refused (busboy bounds values, not names)', async (t) => {
  const body = Buffer.concat([field('x'.repeat(5000), 'v'), field('model', 'primary/whisper-1'), fileHead(), Buffer.alloc(100), closing]);
  const { req, answer } = send('/v1/audio/transcriptions', body.length);
  req.end(body);
  const res = await answer;
  t.equal(res.status, 400);
  t.match(res.json, { error: { message: /too long/ } });
  t.equal(await held(), 0);
});

t.test('too large: refused from its Content-Length at once, or when a chunked body passes the limit', async (t) => {
  const declared = send('/v1/audio/transcriptions', MAX + 1);
  declared.req.write(field('model', 'primary/whisper-1'));
  const early = await declared.answer;
  t.equal(early.status, 413, 'before the body');
  declared.req.destroy();
  const chunked = send('/v1/audio/transcriptions', null);
  chunked.req.write(Buffer.concat([field('model', 'primary/whisper-1'), fileHead()]));
  for (let i = 0; i < 8 && !chunked.req.destroyed; i++) chunked.req.write(Buffer.alloc(1024 * 1024));
  chunked.req.end(closing);
  t.equal((await chunked.answer).status, 413);
  t.equal(await held(), 0);
});

t.test('failover while the audio still arrives: the next route gets every byte from the first', async (t) => {
  a.setFault('503-early');
  t.teardown(() => a.setFault('none'));
  const body = audio(2 * 1024 * 1024, 6);
  const head = Buffer.concat([field('model', 'primary/whisper-1'), fileHead('retry.mp3')]);
  const { req, answer } = send('/v1/audio/transcriptions', head.length + body.length + closing.length);
  const before = b.bodyBytes;
  req.write(head);
  req.write(body.subarray(0, 1024 * 1024));
  t.ok(await eventually(() => b.bodyBytes - before > 512 * 1024, 5000), 'the backup streams the audio from its first byte');
  req.end(Buffer.concat([body.subarray(1024 * 1024), closing]));
  const res = await answer;
  t.equal(res.status, 200, JSON.stringify(res.json));
  t.equal(res.headers['x-gateway-decision'], 'backup/whisper-1');
  t.equal(res.headers['x-gateway-retries'], '1');
  t.same(await fileOf(b.received.at(-1)!), { name: 'retry.mp3', digest: digest(body), size: body.length });
  t.equal(await held(), 0);
});

t.test('a workspace with no credit left, the file before the model: refused before any of the audio is spooled', async (t) => {
  const broke = await api.tenant(gw.masterKey, 0, undefined, ['inference']);
  const spool = join(gw.dataDir, 'spool');
  const size = 5 * 1024 * 1024; // (under the test's max_audio_bytes)
  const head = fileHead('first.mp3');
  const req = request({ host: '127.0.0.1', port, path: '/v1/audio/transcriptions', method: 'POST', headers: {
    authorization: `Bearer ${broke.key}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': String(head.length + size + closing.length) } });
  const answer = new Promise<{ status: number; body: string }>((resolve) => req.on('response', (res) => {
    let body = '';
    res.on('data', (d: Buffer) => { body += d.toString(); });
    res.on('end', () => resolve({ status: res.statusCode!, body }));
  }));
  req.on('error', () => undefined);
  const sent = a.received.length + b.received.length;
  req.write(head);
  req.write(Buffer.alloc(1024 * 1024));
  const res = await answer;
  t.equal(res.status, 402, res.body);
  t.equal((JSON.parse(res.body) as { error: { code: string } }).error.code, 'insufficient_credits');
  t.same(readdirSync(spool), [], 'nothing spooled');
  req.destroy();
  t.equal(a.received.length + b.received.length, sent, 'no upstream call');
});

t.test('refused at admission while the audio still arrives: the answer comes at once, nothing held, nothing sent upstream', async (t) => {
  const poor = await api.tenant(gw.masterKey, 0.01, undefined, ['inference']);
  const head = Buffer.concat([field('model', 'primary/whisper-1'), fileHead()]);
  const size = 5 * 1024 * 1024; // reserved at 8 kbit/s: ~5,200 s at $0.006 a minute is more than $0.01
  const req = request({ host: '127.0.0.1', port, path: '/v1/audio/transcriptions', method: 'POST', headers: {
    authorization: `Bearer ${poor.key}`, 'content-type': `multipart/form-data; boundary=${BOUNDARY}`, 'content-length': String(head.length + size + closing.length) } });
  const status = new Promise<number>((resolve) => req.on('response', (res) => { res.resume(); resolve(res.statusCode!); }));
  req.on('error', () => undefined);
  const sent = a.received.length + b.received.length;
  req.write(head);
  req.write(Buffer.alloc(256 * 1024));
  t.equal(await status, 402, 'before the rest of the upload was sent');
  req.destroy();
  t.equal(a.received.length + b.received.length, sent, 'no upstream call');
  t.equal((await api.admin(`/admin/workspaces/${poor.ws}`)).json.reserved_usd, 0);
});
