// The floor: a bare uWS → undici passthrough with no features (no auth, no parsing, no
// ledger). The bench runs it beside Sluice so the cost of Sluice's features is visible
// apart from the cost of being a proxy at all. JSON answers are relayed whole; SSE answers
// are relayed chunk by chunk as they arrive, as any streaming proxy must.
// Prints "listening <port>".
import uWS from 'uWebSockets.js';
import { Pool } from 'undici';
import { readBody } from './uws-body.js';

const upstream = process.env.UPSTREAM ?? '';
const pool = new Pool(upstream, { connections: 256 });

uWS.App().post('/v1/chat/completions', (res) => {
  const client = readBody(res, (body) => {
    const chunks: Buffer[] = [];
    let contentType = 'application/json';
    let streaming = false;
    pool.dispatch({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body }, {
      onRequestStart() {},
      onResponseStart(_c, _status, headers) {
        contentType = String(headers['content-type'] ?? contentType);
        streaming = contentType.startsWith('text/event-stream');
        if (streaming && !client.aborted) res.cork(() => { res.writeStatus('200 OK').writeHeader('content-type', contentType); });
      },
      onResponseData(controller, chunk) {
        if (!streaming) { chunks.push(chunk); return; }
        if (client.aborted) return;
        let ok = true;
        res.cork(() => { ok = res.write(chunk); });
        if (!ok) { controller.pause(); res.onWritable(() => { controller.resume(); return true; }); }
      },
      onResponseEnd() {
        if (client.aborted) return;
        if (streaming) res.cork(() => { res.end(); });
        else res.cork(() => { res.writeStatus('200 OK').writeHeader('content-type', contentType).end(Buffer.concat(chunks)); });
      },
      onResponseError() { if (!client.aborted) res.cork(() => { res.writeStatus('502 Bad Gateway').end('{}'); }); },
    });
  });
}).listen('127.0.0.1', 0, (socket) => {
  if (!socket) { console.error('bare passthrough: listen failed'); process.exit(1); }
  console.log(`listening ${uWS.us_socket_local_port(socket)}`);
});
