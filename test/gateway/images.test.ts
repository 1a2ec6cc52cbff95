// POST /v1/images/generations with the official openai SDK: the sim draws real PNGs of the
// requested size; OpenAI gets the caller's bytes; DALL·E is billed per image by size and
// quality from the catalog (the reservation is the charge), gpt-image-1 by the tokens it reports.
import { inflateSync } from 'node:zlib';
import OpenAI from 'openai';
import t from 'tap';
import { startWithFakeOpenAI } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const { fake, gw } = await startWithFakeOpenAI(t.teardown);
const api = http(gw);
const { key, ws } = await api.tenant(gw.masterKey, 1, undefined, ['inference', 'usage:read']);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });

/** A PNG's width and height, and its pixel rows inflated (checks it is a real one). */
function readPng(png: Buffer): { w: number; h: number; rows: number } {
  t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const w = png.readUInt32BE(16);
  const h = png.readUInt32BE(20);
  const idat = png.indexOf('IDAT');
  const raw = inflateSync(png.subarray(idat + 4, idat + 4 + png.readUInt32BE(idat - 4)));
  return { w, h, rows: raw.length / (1 + w * 3) };
}

t.test('the sim draws PNGs of the requested size; the row bills the catalog\'s units', async (t) => {
  const { data, response } = await client.images.generate({ model: 'dall-e-3', prompt: 'a lighthouse at dusk', size: '1792x1024', quality: 'hd', n: 2, response_format: 'b64_json' }, { headers: { 'x-gateway-provider': 'sim' } }).withResponse();
  t.equal(response.headers.get('x-gateway-decision'), 'sim/dall-e-3');
  t.equal(data.data!.length, 2);
  const png = readPng(Buffer.from(data.data![0]!.b64_json!, 'base64'));
  t.same(png, { w: 1792, h: 1024, rows: 1024 });
  t.equal(Number(response.headers.get('x-gateway-cost-usd')), 0.24, 'two HD 1792x1024 images at $0.12');
  const link = await client.images.generate({ model: 'dall-e-2', prompt: 'x', size: '256x256' }, { headers: { 'x-gateway-provider': 'sim' } });
  t.match(link.data![0]!.url, /^data:image\/png;base64,/);
  const odd = await client.images.generate({ model: 'dall-e-2', prompt: 'x', size: '4000x4000' }, { headers: { 'x-gateway-provider': 'sim' } }).catch((e: unknown) => e);
  t.ok(odd instanceof OpenAI.BadRequestError && odd.param === 'size');
});

t.test('through OpenAI: the bytes go on; DALL·E per image, gpt-image-1 per reported token; ledger and balance agree', async (t) => {
  const before = fake.received.length;
  const dalle = await client.images.generate({ model: 'dall-e-3', prompt: 'a red fox', size: '1024x1024' }).withResponse();
  t.equal(dalle.response.headers.get('x-gateway-decision'), 'openai/dall-e-3');
  t.equal(fake.received[before]!.url, '/v1/images/generations');
  t.equal(fake.received[before]!.raw, JSON.stringify({ model: 'dall-e-3', prompt: 'a red fox', size: '1024x1024' }), 'the caller\'s bytes');
  t.equal(dalle.data.data![0]!.url, 'https://fake.openai.local/img-0.png');
  t.equal(Number(dalle.response.headers.get('x-gateway-cost-usd')), 0.04);
  const gpt = await client.images.generate({ model: 'gpt-image-1', prompt: 'a red fox', quality: 'medium', size: '1024x1024' }).withResponse();
  t.equal(Number(gpt.response.headers.get('x-gateway-cost-usd')), (20 * 5 + 1056 * 40) / 1e6, 'the tokens it reported');
  const rows = (await api.call('/v1/requests?limit=10', key)).json.data as Array<{ endpoint: string; completion_tokens: number; charge_usd: number; usage_source: string }>;
  t.ok(rows.every((r) => r.endpoint === 'images'));
  const account = (await api.admin(`/admin/workspaces/${ws}`)).json;
  t.equal(account.reserved_usd, 0, 'nothing held');
  t.ok(Math.abs(1 - rows.reduce((s, r) => s + r.charge_usd, 0) - account.balance_usd) < 1e-9, 'the balance is the credits less the rows');
  const poor = await api.tenant(gw.masterKey, 0.05);
  const refused = await new OpenAI({ baseURL: gw.baseURL, apiKey: poor.key, maxRetries: 0 }).images.generate({ model: 'dall-e-3', prompt: 'x', quality: 'hd', size: '1024x1792', n: 1 }).catch((e: unknown) => e);
  t.ok(refused instanceof OpenAI.APIError && refused.status === 402 && /up to \$0\.12 at openai\/dall-e-3's catalog prices/.test(refused.message), `an image dearer than the credits is refused at admission: ${String(refused)}`);
  for (const [body, param] of [[{ prompt: '' }, 'prompt'], [{ prompt: 'x', n: 11 }, 'n'], [{ prompt: 'x', size: 'big' }, 'size'], [{ model: 'gpt-4.1-mini', prompt: 'x' }, 'model'], [{ prompt: 'x', stream: true }, 'stream']] as const) {
    const r = await api.admin('/v1/images/generations', body);
    t.equal(r.status, 400, JSON.stringify(body));
    t.equal(r.json.error.param, param);
  }
});
