// The reverse-proxy configs the deploy docs ship (deploy/nginx.conf, deploy/haproxy.cfg),
// run with Debian's nginx and HAProxy in front of a gateway: chat through the official SDK, a
// stream whose first chunk arrives before its last is written (nothing buffered), a CORS
// preflight, an HTTP/1.0 client, and a request with more headers than uWebSockets takes.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import t, { type Test } from 'tap';
import { startGateway } from '../helpers/gateway.js';

const DEPLOY = new URL('../../../deploy/', import.meta.url);
const has = (bin: string) => spawnSync('sh', ['-c', `command -v ${bin} || test -x /usr/sbin/${bin}`]).status === 0;
const bin = (name: string) => (spawnSync('sh', ['-c', `command -v ${name}`]).stdout.toString().trim() || `/usr/sbin/${name}`);

const gw = await startGateway({ SLUICE_SIM: 'on', SLUICE_CORS_ORIGINS: 'https://app.example.com' }, undefined, { sim: { ttft_ms: 50, tokens_per_second: 40 } });
t.teardown(() => gw.stop());
const gwPort = new URL(gw.url).port;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => { const { port } = s.address() as { port: number }; s.close(() => resolve(port)); });
  });
}

/** Waits until the proxy answers on `port`. */
async function ready(port: number, proc: ChildProcess, log: () => string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (proc.exitCode !== null) throw new Error(`the proxy exited:\n${log()}`);
    const ok = await fetch(`http://127.0.0.1:${port}/health`).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`the proxy did not answer:\n${log()}`);
}

/** A raw HTTP exchange: the status line of the answer (or what happened). */
function statusLine(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    const timer = setTimeout(() => { s.destroy(); resolve('no answer'); }, 5000);
    s.on('data', (d) => { out += d.toString(); });
    s.on('close', () => { clearTimeout(timer); resolve(out.split('\r\n')[0] || 'closed'); });
    s.on('error', () => undefined);
    s.write(request);
  });
}

function manyHeaders(count: number): string {
  let h = '';
  for (let i = 0; i < count; i++) h += `x-forwarded-extra-${i}: value-${i}\r\n`;
  return h;
}

/** Each proxy's shared checks. */
async function checks(t: Test, port: number): Promise<void> {
  const base = `http://127.0.0.1:${port}`;
  const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: gw.masterKey, maxRetries: 0 });
  const { data, response } = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Through the proxy' }], max_tokens: 8 }).withResponse();
  t.equal(data.object, 'chat.completion');
  t.equal(response.headers.get('x-gateway-decision'), 'sim/gpt-4.1-mini', "the gateway's headers come through");
  // 30 tokens at 40/s: about 750 ms from the first to the last. Unbuffered, the first arrives long before the end.
  const t0 = performance.now();
  let first = 0;
  let chunks = 0;
  for await (const c of await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Stream through the proxy' }], max_tokens: 30, stream: true })) {
    if (c.choices[0]?.delta.content && !first) first = performance.now() - t0;
    chunks++;
  }
  const total = performance.now() - t0;
  t.ok(chunks > 20, `${chunks} chunks`);
  t.ok(first > 0 && first < total - 300, `the first chunk came at ${first.toFixed(0)} ms, the stream ended at ${total.toFixed(0)} ms`);
  const pre = await fetch(`${base}/v1/chat/completions`, { method: 'OPTIONS', headers: { origin: 'https://app.example.com', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
  t.equal(pre.status, 204, 'a CORS preflight');
  t.equal(pre.headers.get('access-control-allow-origin'), 'https://app.example.com');
}

t.test('nginx with deploy/nginx.conf', { skip: has('nginx') ? false : 'Debian\'s nginx is not installed (.ci/run installs it)' }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-nginx-'));
  const port = await freePort();
  const site = readFileSync(new URL('nginx.conf', DEPLOY), 'utf8')
    .replace('server 127.0.0.1:8080;', `server 127.0.0.1:${gwPort};`)
    .replace('listen 80;', `listen 127.0.0.1:${port};`);
  t.not(site.indexOf(`127.0.0.1:${gwPort}`), -1, 'the shipped config, with the two addresses set');
  writeFileSync(join(dir, 'sluice.conf'), site);
  for (const d of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, d));
  writeFileSync(join(dir, 'nginx.conf'), `${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  include ${dir}/sluice.conf;
}
`);
  let log = '';
  const nginx = spawn(bin('nginx'), ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
  nginx.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  t.teardown(() => { nginx.kill('SIGTERM'); });
  await ready(port, nginx, () => log);
  await checks(t, port);
  t.equal(await statusLine(port, 'GET /health HTTP/1.0\r\nHost: a\r\n\r\n'), 'HTTP/1.1 200 OK', 'an HTTP/1.0 client is served (nginx speaks HTTP/1.1 to the gateway)');
  t.equal(await statusLine(port, `GET /health HTTP/1.1\r\nHost: a\r\n${manyHeaders(80)}Connection: close\r\n\r\n`), 'HTTP/1.1 200 OK', '80 request headers: only those the gateway reads are forwarded');
});

/** Debian's HAProxy running deploy/<file>, edited by `edit`, listening on a free local port; stopped when the test ends. */
async function haproxyWith(t: Test, file: string, edit: (cfg: string) => string): Promise<{ port: number; log: () => string }> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-haproxy-'));
  const port = await freePort();
  writeFileSync(join(dir, 'haproxy.cfg'), edit(readFileSync(new URL(file, DEPLOY), 'utf8')).replace('bind :80', `bind 127.0.0.1:${port}`));
  let log = '';
  const haproxy = spawn(bin('haproxy'), ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
  haproxy.stderr!.on('data', (d: Buffer) => { log += d.toString(); });
  haproxy.stdout!.on('data', (d: Buffer) => { log += d.toString(); });
  t.teardown(() => { haproxy.kill('SIGTERM'); });
  await ready(port, haproxy, () => log);
  return { port, log: () => log };
}

t.test('HAProxy with deploy/haproxy.cfg', { skip: has('haproxy') ? false : 'Debian\'s haproxy is not installed (.ci/run installs it)' }, async (t) => {
  const { port } = await haproxyWith(t, 'haproxy.cfg', (cfg) => cfg.replace('server sluice1 127.0.0.1:8080', `server sluice1 127.0.0.1:${gwPort}`));
  await checks(t, port);
  t.match(await statusLine(port, 'GET /health HTTP/1.0\r\nHost: a\r\n\r\n'), /^HTTP\/1\.1 505 /, 'an HTTP/1.0 client gets a clear 505, not silence');
  t.match(await statusLine(port, `GET /health HTTP/1.1\r\nHost: a\r\n${manyHeaders(60)}Connection: close\r\n\r\n`), /^HTTP\/1\.1 400 /, 'more headers than the gateway takes: HAProxy\'s 400, not silence');
  t.equal(await statusLine(port, `GET /health HTTP/1.1\r\nHost: a\r\n${manyHeaders(40)}Connection: close\r\n\r\n`), 'HTTP/1.1 200 OK');
});

t.test('HAProxy with deploy/haproxy-cluster.cfg: its health checks keep the replicas up', { skip: has('haproxy') ? false : 'Debian\'s haproxy is not installed (.ci/run installs it)' }, async (t) => {
  // The compose file's three replicas, here one gateway three times.
  const { port, log } = await haproxyWith(t, 'haproxy-cluster.cfg', (cfg) => cfg
    .replace(/server (sluice\d) sluice\d:8080/g, `server $1 127.0.0.1:${gwPort}`)
    .replace(/check inter 2s/g, 'check inter 200ms'));
  // Several check intervals (and their timeouts) later, every replica is still up.
  await new Promise((r) => setTimeout(r, 2500));
  t.notMatch(log(), /is DOWN|no server available/, 'no replica marked down by its health check');
  await checks(t, port);
});
