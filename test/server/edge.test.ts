// HTTP that browsers, SDKs and proxies speak: CORS (off by default; preflights and
// Access-Control-* for allowed origins), HEAD on GET routes, compressed request bodies (and
// a 415 for an encoding the gateway does not read), gzipped answers for clients that accept
// them, and the request-header count uWebSockets takes.
import { connect } from 'node:net';
import { request } from 'node:http';
import { gunzipSync, gzipSync, deflateSync } from 'node:zlib';
import t from 'tap';
import { startGateway } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';
import { acceptsGzip } from '../../src/server/edge.js';

t.test('Accept-Encoding as RFC 9110 reads it', async (t) => {
  for (const [h, yes] of [['gzip, deflate, br', true], ['GZIP', true], ['gzip;q=0', false], ['br, gzip; q=0.5', true], ['*', true], ['*;q=0', false], ['identity', false], ['', false], ['deflate, gzip;q=0.0', false]] as const) {
    t.equal(acceptsGzip(h), yes, JSON.stringify(h));
  }
});

const gw = await startGateway({ SLUICE_SIM: 'on', SLUICE_CORS_ORIGINS: 'https://app.example.com' });
const plain = await startGateway({ SLUICE_SIM: 'on' });
t.teardown(async () => { await gw.stop(); await plain.stop(); });
const chat = JSON.stringify({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5 });

/** A raw request (node:http: nothing decompressed or added). */
function raw(url: string, method: string, headers: Record<string, string>, body?: Buffer): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

t.test('CORS: every header the gateway sends a browser may read (figures, route, limits, decision), on answers, streams and refusals', async (t) => {
  const { tenant } = http(gw);
  const { key } = await tenant(gw.masterKey, 5, { rpm: 2, tpm: 100_000 });
  const origin = { origin: 'https://app.example.com', authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const answers = [
    await raw(`${gw.baseURL}/chat/completions`, 'POST', origin, Buffer.from(chat)),
    await raw(`${gw.baseURL}/chat/completions`, 'POST', origin, Buffer.from(JSON.stringify({ ...JSON.parse(chat), model: 'auto', stream: true }))),
    await raw(`${gw.baseURL}/chat/completions`, 'POST', origin, Buffer.from(chat)),
  ];
  t.same(answers.map((a) => a.status), [200, 200, 429], 'served, streamed through the router, then refused by rpm');
  const seen = new Set<string>();
  for (const a of answers) {
    const exposed = new Set(String(a.headers['access-control-expose-headers']).split(/,\s*/));
    for (const name of Object.keys(a.headers)) {
      if (!/^(x-gateway-|x-btl-|x-ratelimit-|x-request-id$|retry-after(-ms)?$)/.test(name)) continue;
      seen.add(name);
      t.ok(exposed.has(name), `${name} (answer ${a.status}) is exposed`);
    }
  }
  for (const name of ['x-btl-customer-charge', 'x-btl-saved', 'x-gateway-route-bucket', 'x-ratelimit-remaining-requests', 'x-ratelimit-reset-requests', 'x-gateway-limit-kind', 'retry-after', 'retry-after-ms']) t.ok(seen.has(name), `${name} was among them`);
});

t.test('CORS: preflights for allowed origins, Access-Control-* on answers and streams; nothing for others, nothing when off', async (t) => {
  const pre = await raw(`${gw.baseURL}/chat/completions`, 'OPTIONS', { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' });
  t.equal(pre.status, 204);
  t.equal(pre.headers['access-control-allow-origin'], 'https://app.example.com');
  t.match(String(pre.headers['access-control-allow-methods']), /POST/);
  t.match(String(pre.headers['access-control-allow-headers']), /authorization/);
  const other = await raw(`${gw.baseURL}/chat/completions`, 'OPTIONS', { origin: 'https://evil.example', 'access-control-request-method': 'POST' });
  t.notOk(other.headers['access-control-allow-origin'], 'an origin not allowed gets no grant');
  const answer = await raw(`${gw.baseURL}/chat/completions`, 'POST', { origin: 'https://app.example.com', authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' }, Buffer.from(chat));
  t.equal(answer.status, 200);
  t.equal(answer.headers['access-control-allow-origin'], 'https://app.example.com');
  t.match(String(answer.headers['access-control-expose-headers']), /x-gateway-cost-usd/);
  const stream = await raw(`${gw.baseURL}/chat/completions`, 'POST', { origin: 'https://app.example.com', authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json' },
    Buffer.from(JSON.stringify({ ...JSON.parse(chat), stream: true })));
  t.equal(stream.headers['access-control-allow-origin'], 'https://app.example.com', 'on a stream too');
  const refused = await raw(`${gw.baseURL}/chat/completions`, 'POST', { origin: 'https://app.example.com', authorization: 'Bearer sk-wrong', 'content-type': 'application/json' }, Buffer.from(chat));
  t.equal(refused.status, 401);
  t.equal(refused.headers['access-control-allow-origin'], 'https://app.example.com', 'and on errors (a browser can read why)');
  const off = await raw(`${plain.baseURL}/chat/completions`, 'POST', { origin: 'https://app.example.com', authorization: `Bearer ${plain.masterKey}`, 'content-type': 'application/json' }, Buffer.from(chat));
  t.notOk(off.headers['access-control-allow-origin'], 'off by default');
});

t.test('HEAD on GET routes: the status and headers, no body', async (t) => {
  const get = await raw(`${gw.url}/health`, 'GET', {});
  const head = await raw(`${gw.url}/health`, 'HEAD', {});
  t.equal(head.status, 200);
  t.equal(head.body.length, 0);
  t.equal(head.headers['content-type'], get.headers['content-type']);
  t.equal((await raw(`${gw.baseURL}/models`, 'HEAD', {})).status, 200);
  t.equal((await raw(`${gw.baseURL}/models/openai%2Fnope`, 'HEAD', {})).status, 404);
});

t.test('compressed request bodies are read (gzip, deflate); another encoding is a 415; a bomb a 413; garbage a 400', async (t) => {
  const post = (body: Buffer, encoding: string) => raw(`${gw.baseURL}/chat/completions`, 'POST', { authorization: `Bearer ${gw.masterKey}`, 'content-type': 'application/json', 'content-encoding': encoding }, body);
  t.equal((await post(gzipSync(chat), 'gzip')).status, 200);
  t.equal((await post(deflateSync(chat), 'deflate')).status, 200);
  const unknown = await post(Buffer.from(chat), 'compress');
  t.equal(unknown.status, 415);
  t.match(JSON.parse(unknown.body.toString()).error, { code: 'unsupported_content_encoding' });
  const bomb = await post(gzipSync(Buffer.alloc(64 * 1024 * 1024, 32)), 'gzip');
  t.equal(bomb.status, 413, 'inflated only up to the body limit');
  const garbage = await post(Buffer.from('not gzip at all'), 'gzip');
  t.equal(garbage.status, 400);
  t.equal((await fetch(`${gw.url}/health`)).status, 200, 'still serving');
});

t.test('large answers are gzipped for clients that accept it', async (t) => {
  const zipped = await raw(`${gw.baseURL}/models`, 'GET', { 'accept-encoding': 'gzip, deflate' });
  t.equal(zipped.headers['content-encoding'], 'gzip');
  const models = JSON.parse(gunzipSync(zipped.body).toString()) as { data: unknown[] };
  t.ok(models.data.length > 10);
  const identity = await raw(`${gw.baseURL}/models`, 'GET', {});
  t.notOk(identity.headers['content-encoding']);
  t.same(JSON.parse(identity.body.toString()), models);
  t.notOk((await raw(`${gw.baseURL}/models`, 'GET', { 'accept-encoding': 'gzip;q=0, identity' })).headers['content-encoding'], 'gzip;q=0 refuses it');
  t.equal((await raw(`${gw.baseURL}/models`, 'GET', { 'accept-encoding': 'GZIP' })).headers['content-encoding'], 'gzip', 'in any case');
  const small = await raw(`${gw.url}/health`, 'GET', { 'accept-encoding': 'gzip' });
  t.notOk(small.headers['content-encoding'], 'small ones are not worth it');
});

t.test('45 request headers always work (uWebSockets takes at most 48, Host included)', async (t) => {
  const port = Number(new URL(gw.url).port);
  const statusWith = (count: number) => new Promise<string>((resolve) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => { s.destroy(); resolve('no answer'); }, 2000);
    s.on('data', (d) => { out += d.toString(); });
    s.on('close', () => { clearTimeout(timer); resolve(out.split('\r\n')[0] ?? ''); });
    let headers = '';
    for (let i = 0; i < count - 2; i++) headers += `x-extra-${i}: v\r\n`;
    s.write(`GET /health HTTP/1.1\r\nHost: a\r\n${headers}Connection: close\r\n\r\n`);
  });
  t.equal(await statusWith(45), 'HTTP/1.1 200 OK');
  t.equal(await statusWith(48), 'HTTP/1.1 200 OK');
});
