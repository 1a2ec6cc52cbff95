// The floor: a bare uWS → undici passthrough with no features (no auth, no parsing, no
// ledger). The bench runs it beside Sluice so the cost of Sluice's features is visible
// apart from the cost of being a proxy at all. Prints "listening <port>".
import uWS from 'uWebSockets.js';
import { Pool } from 'undici';
import { readBody } from './uws-body.js';

const upstream = process.env.UPSTREAM ?? '';
const pool = new Pool(upstream, { connections: 256 });

uWS.App().post('/v1/chat/completions', (res) => {
  const client = readBody(res, (body) => {
    const chunks: Buffer[] = [];
    let contentType = 'application/json';
    pool.dispatch({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body }, {
      onRequestStart() {},
      onResponseStart(_c, _status, headers) { contentType = String(headers['content-type'] ?? contentType); },
      onResponseData(_c, chunk) { chunks.push(chunk); },
      onResponseEnd() { if (!client.aborted) res.cork(() => { res.writeStatus('200 OK').writeHeader('content-type', contentType).end(Buffer.concat(chunks)); }); },
      onResponseError() { if (!client.aborted) res.cork(() => { res.writeStatus('502 Bad Gateway').end('{}'); }); },
    });
  });
}).listen('127.0.0.1', 0, (socket) => {
  if (!socket) { console.error('bare passthrough: listen failed'); process.exit(1); }
  console.log(`listening ${uWS.us_socket_local_port(socket)}`);
});
