// Large buffered answers through the gateway: embeddings of 512 inputs × 1,536 floats (~15 MB)
// from an upstream that declares its length and from one that sends chunked, read by the
// official openai SDK and byte for byte by a client that reads slowly (the gateway then sends
// as the socket drains: exchange.ts's endDrained). Gathering and the figures' splice in place
// (wire/answer-bytes.ts) must leave the upstream's bytes as they were.
import { request } from 'node:http';
import OpenAI from 'openai';
import t from 'tap';
import { fakeEmbeddings } from '../fakes/embeddings.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway } from '../helpers/gateway.js';

const fake = await startFakeUpstream();
t.teardown(() => fake.close());
const model = (id: string) => ({ slug: `openai/${id}`, upstream_id: id, type: 'embedding', dimensions: 1536, context_window: 1_000_000, tokenizer: 'cl100k_base', prices: { input: 0.02, output: 0 } });
const gw = await startGateway({ SLUICE_SIM: 'off' }, undefined, {
  providers: { openai: { kind: 'openai', base_url: fake.url, api_key: 'sk-fake-upstream' } },
  models: [model('embed-big'), model('embed-big-sized'), model('embed-big-nousage')],
});
t.teardown(() => gw.stop());
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey, maxRetries: 0 });
const input = Array.from({ length: 512 }, (_, i) => `passage ${i}: the gateway relays large answers without holding its loop`);

/** The upstream's answer as the fake writes it, parsed. */
const upstream = (id: string, body: Record<string, unknown>) => JSON.parse(JSON.stringify(fakeEmbeddings(body, id).payload)) as { data: Array<{ embedding: number[] | string }>; usage: object };

for (const id of ['embed-big', 'embed-big-sized']) {
  t.test(`${id}: the SDK reads every vector, the usage and the figures`, async (t) => {
    const r = await client.embeddings.create({ model: id, input, dimensions: 1536, encoding_format: 'float' });
    const want = upstream(id, { input, dimensions: 1536, encoding_format: 'float' });
    t.equal(r.data.length, 512);
    t.ok(r.data.every((d, i) => JSON.stringify(d.embedding) === JSON.stringify(want.data[i]!.embedding)), 'every vector as the upstream sent it');
    t.same(r.usage, want.usage);
    t.match((r as unknown as { gateway: object }).gateway, { usage: { prompt_tokens: r.usage.prompt_tokens } }, 'the figures spliced in');
    // base64, as the SDK asks by default: decoded to the upstream's float32 values
    const b = await client.embeddings.create({ model: id, input: input.slice(0, 300), dimensions: 1536 });
    const b64 = upstream(id, { input: input.slice(0, 300), dimensions: 1536, encoding_format: 'base64' });
    t.ok(b.data.every((d, i) => Buffer.from(Float32Array.from(d.embedding).buffer).toString('base64') === b64.data[i]!.embedding), 'every base64 vector');
  });

  t.test(`${id}: a client that reads slowly gets the whole answer, its declared length and nothing more`, async (t) => {
    const body = JSON.stringify({ model: id, input, dimensions: 1536, encoding_format: 'float' });
    const url = new URL(`${gw.baseURL}/embeddings`);
    const { raw, length } = await new Promise<{ raw: Buffer; length: string | undefined }>((resolve, reject) => {
      const req = request({ host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' } }, (res) => {
        res.pause();
        const got: Buffer[] = [];
        // (nothing read for a while: the gateway's writes meet a full socket, and go on as it drains)
        setTimeout(() => { res.on('data', (c: Buffer) => got.push(c)); res.on('end', () => resolve({ raw: Buffer.concat(got), length: res.headers['content-length'] })); res.resume(); }, 300);
      });
      req.on('error', reject);
      req.end(body);
    });
    t.equal(Number(length), raw.length, 'Content-Length is the bytes sent');
    t.ok(raw.length > 10_000_000, `a large answer (${raw.length} bytes)`);
    const { gateway, ...rest } = JSON.parse(raw.toString()) as { gateway?: object };
    const want = upstream(id, { input, dimensions: 1536, encoding_format: 'float' });
    t.same(rest, want, 'the upstream\'s answer, member for member');
    t.ok(gateway, 'and the figures');
    // The bytes before the figures are the upstream's own (no re-encoding), then the member, then the brace.
    const exact = JSON.stringify(want);
    t.ok(raw.subarray(0, exact.length - 1).equals(Buffer.from(exact.slice(0, -1))), 'byte for byte');
    t.equal(raw.subarray(exact.length - 1).toString(), `,"gateway":${JSON.stringify(gateway)}}`);
  });
}

t.test('an upstream that reports no usage: its answer whole, the prompt counted and billed, no output', async (t) => {
  const { data, response } = await client.embeddings.create({ model: 'embed-big-nousage', input, dimensions: 1536, encoding_format: 'float' }).withResponse();
  t.equal(data.data.length, 512);
  const want = upstream('embed-big-nousage', { input, dimensions: 1536, encoding_format: 'float' });
  t.ok(data.data.every((d, i) => JSON.stringify(d.embedding) === JSON.stringify(want.data[i]!.embedding)), 'every vector');
  const row = (await fetch(`${gw.baseURL.replace(/\/v1$/, '')}/v1/requests/${response.headers.get('x-request-id')}`, { headers: { authorization: `Bearer ${gw.masterKey}` } }).then((r) => r.json())) as { usage_source: string; prompt_tokens: number; completion_tokens: number; charge_usd: number };
  t.match(row, { usage_source: 'estimate', completion_tokens: 0 });
  t.ok(row.prompt_tokens > 512 * 5 && row.charge_usd > 0, `the prompt counted (${row.prompt_tokens} tokens) and billed`);
});
