// OpenTelemetry: a trace per request, exported over OTLP/HTTP (JSON) to a collector, here a
// local one that keeps what it receives. The request's server span carries GenAI attributes
// (operation, models, provider, tokens) and the gateway's figures, with a child span for
// admission, savings, the upstream call and settling; a refusal is a trace too; sampling
// is honoured; a collector that is down costs the requests nothing.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import t from 'tap';
import { startGateway } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';
import { eventually } from '../helpers/streams.js';

type Value = { stringValue?: string; intValue?: number | string; doubleValue?: number; boolValue?: boolean };
interface OtlpSpan { traceId: string; spanId: string; parentSpanId?: string; name: string; kind: number; startTimeUnixNano: string; endTimeUnixNano: string; attributes: Array<{ key: string; value: Value }>; status?: { code?: number } }
const spans: Array<OtlpSpan & { resource: Record<string, unknown> }> = [];
const types: string[] = [];
const value = (v: Value) => v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.doubleValue ?? v.boolValue;
const attrs = (s: { attributes: Array<{ key: string; value: Value }> }) => Object.fromEntries(s.attributes.map((a) => [a.key, value(a.value)]));

const collector = createServer((req, res) => {
  const parts: Buffer[] = [];
  req.on('data', (c: Buffer) => parts.push(c));
  req.on('end', () => {
    types.push(String(req.headers['content-type']));
    const body = JSON.parse(Buffer.concat(parts).toString()) as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: Value }> }; scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
    for (const rs of body.resourceSpans) for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, resource: attrs(rs.resource) });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  });
});
await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
const endpoint = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
t.teardown(() => new Promise<void>((r) => { collector.closeAllConnections(); if (collector.listening) collector.close(() => r()); else r(); }));

// (OTEL_TRACES_SAMPLER is the SDK's own: Sluice samples once, so the SDK must not read it and sample again)
const gw = await startGateway({ SLUICE_SIM: 'on', OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_SAMPLER: 'always_off' }, undefined, { otel: { export_delay_ms: 50 } });
t.teardown(() => gw.stop());
const sampledOut = await startGateway({ SLUICE_SIM: 'on', OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_TRACES_SAMPLER_ARG: '0' }, undefined, { otel: { export_delay_ms: 50 } });
t.teardown(() => sampledOut.stop());
const api = http(gw);
const { key } = await api.tenant(gw.masterKey, 5, undefined, ['inference', 'usage:read']);
const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
const traceOf = async (id: string) => {
  await eventually(() => spans.some((s) => s.parentSpanId === undefined || s.parentSpanId === '' ? attrs(s)['sluice.request_id'] === id : false), 5000);
  const root = spans.find((s) => attrs(s)['sluice.request_id'] === id);
  return { root, children: root ? spans.filter((s) => s.traceId === root.traceId && s !== root) : [] };
};
const nanos = (s: string) => BigInt(s);

t.test('a served request: a server span with GenAI attributes and the gateway\'s figures, and one child per part of its path', async (t) => {
  const { data, response } = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'Trace me' }] }).withResponse();
  const id = response.headers.get('x-request-id')!;
  const { root, children } = await traceOf(id);
  t.ok(root, 'the trace reached the collector');
  const row = (await api.call(`/v1/requests/${id}`, key)).json;
  t.equal(root!.name, 'chat openai/gpt-4.1-mini');
  t.equal(root!.kind, 2, 'a server span');
  t.match(attrs(root!), {
    'gen_ai.operation.name': 'chat', 'gen_ai.request.model': 'openai/gpt-4.1-mini', 'gen_ai.response.model': row.served, 'gen_ai.provider.name': 'sim',
    'gen_ai.usage.input_tokens': data.usage!.prompt_tokens, 'gen_ai.usage.output_tokens': data.usage!.completion_tokens,
    'http.response.status_code': 200, 'sluice.charge_usd': row.charge_usd, 'sluice.cost_usd': row.cost_usd, 'sluice.cache': 'miss',
  });
  t.equal(root!.resource['service.name'], 'sluice');
  t.same(children.map((c) => c.name).sort(), ['admission', `chat ${row.served}`, 'savings', 'settle'].sort());
  for (const c of children) {
    t.equal(c.parentSpanId, root!.spanId, `${c.name}: a child of the request's span`);
    t.ok(nanos(c.startTimeUnixNano) >= nanos(root!.startTimeUnixNano) && nanos(c.endTimeUnixNano) <= nanos(root!.endTimeUnixNano), `${c.name}: within it`);
  }
  t.equal(children.find((c) => c.name.startsWith('chat '))!.kind, 3, 'the upstream call is a client span');
  t.ok(types.every((ct) => ct.startsWith('application/json')), 'OTLP/HTTP, JSON');
});

t.test('a stream and a refusal are traced; a 4xx is not an error of the span', async (t) => {
  const stream = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', stream: true, messages: [{ role: 'user', content: 'Stream and trace' }] }).withResponse();
  for await (const _ of stream.data) { /* drain */ }
  const streamed = await traceOf(stream.response.headers.get('x-request-id')!);
  t.equal(attrs(streamed.root!)['sluice.stream'], true);
  const refused = await api.call('/v1/chat/completions', key, { model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] });
  t.equal(refused.status, 404);
  const { root, children } = await traceOf(refused.headers.get('x-request-id')!);
  t.match(attrs(root!), { 'http.response.status_code': 404, 'gen_ai.request.model': 'no-such-model' });
  t.notOk(root!.status?.code === 2, 'not an error status');
  t.same(children.map((c) => c.name), ['settle'], 'refused before admission: no admission, savings or upstream span');
});

t.test('a caller\'s traceparent: the request joins its trace (sampled), or is not traced (not sampled)', async (t) => {
  const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
  const joined = await api.call('/v1/chat/completions', key, { model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'joined' }] }, 'POST',
    { traceparent: `00-${traceId}-00f067aa0ba902b7-01` });
  const { root, children } = await traceOf(joined.headers.get('x-request-id')!);
  t.equal(root!.traceId, traceId, 'the caller\'s trace');
  t.equal(root!.parentSpanId, '00f067aa0ba902b7', 'under the caller\'s span');
  t.ok(children.length >= 3);
  const declined = await api.call('/v1/chat/completions', key, { model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'declined' }] }, 'POST',
    { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00' });
  const marker = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'marker' }] }).withResponse();
  t.ok((await traceOf(marker.response.headers.get('x-request-id')!)).root);
  await new Promise((r) => setTimeout(r, 200));
  t.notOk(spans.some((s) => attrs(s)['sluice.request_id'] === declined.headers.get('x-request-id')), 'a caller that samples it out: no trace');
  const garbage = await api.call('/v1/chat/completions', key, { model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'garbage' }] }, 'POST', { traceparent: 'not-a-trace' });
  t.equal(garbage.status, 200);
  t.ok((await traceOf(garbage.headers.get('x-request-id')!)).root, 'an unreadable traceparent: a trace of its own');
});

t.test('sampling: a ratio of 0 traces nothing; a collector that is down costs the requests nothing', async (t) => {
  const other = http(sampledOut);
  const ids: string[] = [];
  for (let i = 0; i < 5; i++) ids.push((await other.call('/v1/chat/completions', sampledOut.masterKey, { model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: `n ${i}` }] })).headers.get('x-request-id')!);
  // One traced request from the first gateway after them: once it arrives, any of theirs would have too.
  const after = await client.chat.completions.create({ model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: 'after' }] }).withResponse();
  t.ok((await traceOf(after.response.headers.get('x-request-id')!)).root);
  await new Promise((r) => setTimeout(r, 200));
  t.notOk(spans.some((s) => ids.includes(String(attrs(s)['sluice.request_id']))), 'none of the sampled-out requests');
  await new Promise<void>((r) => { collector.closeAllConnections(); collector.close(() => r()); });
  for (let i = 0; i < 5; i++) {
    const res = await api.call('/v1/chat/completions', key, { model: 'openai/gpt-4.1-mini', messages: [{ role: 'user', content: `down ${i}` }] });
    t.equal(res.status, 200);
  }
  t.equal((await fetch(`${gw.url}/health`)).status, 200);
});
