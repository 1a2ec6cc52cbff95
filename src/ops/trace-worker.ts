// The tracing worker (a thread of its own, started by tracing.ts): it turns each request's
// ledger row and timings into its trace (a server span with a child for admission, savings,
// the upstream call and settling, with GenAI's attributes and the gateway's figures), and
// OpenTelemetry's batch processor exports them over OTLP/HTTP (JSON). Building and
// serialising spans costs tens of µs a request; here it costs the event loop nothing.
import { parentPort, workerData } from 'node:worker_threads';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Tracer } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AlwaysOnSampler, BasicTracerProvider, BatchSpanProcessor, type ReadableSpan, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { LedgerRow, RequestTiming } from '../accounts/ledger.js';
import { parseTraceparent, type TraceBatch, type TracingConfig } from './tracing.js';

/** GenAI's operation names for the endpoints that have one; the others are named by their endpoint. */
const OPERATION: Record<string, string> = {
  'chat.completions': 'chat', responses: 'chat', messages: 'chat', completions: 'text_completion', embeddings: 'embeddings',
};

function traceRequest(tracer: Tracer, origin: number, row: LedgerRow, t: RequestTiming): void {
  const at = (perf: number) => origin + perf; // epoch ms, as OpenTelemetry takes them (the readings are the main thread's)
  const operation = OPERATION[row.endpoint] ?? row.endpoint;
  const provider = row.served ? row.served.slice(0, row.served.indexOf('/')) : null;
  const attributes: Attributes = {
    'gen_ai.operation.name': operation,
    'gen_ai.request.model': row.requested_model,
    'http.response.status_code': row.status,
    'sluice.request_id': row.id,
    'sluice.endpoint': row.endpoint,
    'sluice.workspace': row.workspace,
    'sluice.key_id': row.key_id,
    'sluice.cache': row.cache,
    'sluice.retries': row.retries,
    'sluice.stream': row.stream,
    'sluice.cost_usd': row.cost_usd,
    'sluice.charge_usd': row.charge_usd,
    'sluice.benchmark_usd': row.benchmark_usd,
    'sluice.saved_usd': row.saved_usd,
    'sluice.usage_source': row.usage_source,
  };
  if (row.served) attributes['gen_ai.response.model'] = row.served;
  if (provider) attributes['gen_ai.provider.name'] = provider;
  if (row.usage_source !== 'none' && OPERATION[row.endpoint]) {
    attributes['gen_ai.usage.input_tokens'] = row.prompt_tokens;
    attributes['gen_ai.usage.output_tokens'] = row.completion_tokens;
    if (row.cached_tokens) attributes['gen_ai.usage.cache_read.input_tokens'] = row.cached_tokens;
    if (row.cache_write_tokens) attributes['gen_ai.usage.cache_creation.input_tokens'] = row.cache_write_tokens;
  } else if (row.usage_source !== 'none') {
    // Images, speech and transcriptions are billed in the catalog's own units (images, characters, seconds or audio tokens), not tokens.
    attributes['sluice.usage.input_units'] = row.prompt_tokens;
    attributes['sluice.usage.output_units'] = row.completion_tokens;
  }
  if (row.router_task) attributes['sluice.router.task'] = row.router_task;
  if (row.error) attributes['error.type'] = row.error;
  const caller = t.parent ? parseTraceparent(t.parent) : null;
  const root = tracer.startSpan(`${operation} ${row.requested_model}`.trim(), { kind: SpanKind.SERVER, startTime: at(t.t0), attributes },
    caller ? trace.setSpanContext(ROOT_CONTEXT, caller) : ROOT_CONTEXT);
  // A 5xx is the gateway's (or its upstream's) failure; a 4xx is the caller's, not an error of this span.
  if (row.status >= 500) root.setStatus({ code: SpanStatusCode.ERROR, message: row.error ?? undefined });
  const parent = trace.setSpan(ROOT_CONTEXT, root);
  const child = (name: string, from: number, to: number, kind = SpanKind.INTERNAL, attrs?: Attributes): void => {
    if (!from || !to || to < from) return;
    tracer.startSpan(name, { kind, startTime: at(from), attributes: attrs }, parent).end(at(to));
  };
  const end = t.tDone;
  if (t.tAdmitted) {
    child('admission', t.t0, t.tAdmitted);
    // Savings: the lookups between admission and the upstream call, or until a cache or dedupe answered.
    child('savings', t.tAdmitted, t.tDispatch || end, SpanKind.INTERNAL, { 'sluice.cache': row.cache });
  }
  if (t.tDispatch) {
    const upstream: Attributes = { 'gen_ai.operation.name': operation, 'gen_ai.request.model': row.requested_model };
    if (row.served) upstream['gen_ai.response.model'] = row.served;
    if (provider) upstream['gen_ai.provider.name'] = provider;
    if (t.tFirstByte) upstream['sluice.time_to_first_byte_ms'] = Math.round((t.tFirstByte - t.tDispatch) * 1000) / 1000;
    child(`${operation} ${row.served ?? row.requested_model}`, t.tDispatch, t.tUpstreamEnd || end, SpanKind.CLIENT, upstream);
  }
  child('settle', t.tUpstreamEnd || t.tAdmitted || t.t0, end);
  root.end(at(end));
}

/**
 * The OTLP exporter, with its failures said: a collector that refuses or does not answer is
 * logged (at most once a minute, with how many spans were lost since), never silent.
 */
class LoudExporter implements SpanExporter {
  private failed = 0;
  private lastLog = 0;

  constructor(private readonly inner: SpanExporter, private readonly endpoint: string) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    this.inner.export(spans, (result) => {
      if (result.code !== ExportResultCode.SUCCESS) {
        this.failed += spans.length;
        const now = Date.now();
        if (now - this.lastLog >= 60_000) {
          console.error(`tracing: ${this.failed} span(s) could not be exported to ${this.endpoint} (${result.error?.message ?? 'refused'}); retrying with the next batches`);
          this.lastLog = now;
          this.failed = 0;
        }
      }
      done(result);
    });
  }

  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }

  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

const { cfg, version } = workerData as { cfg: TracingConfig; version: string };
const exporter = new LoudExporter(new OTLPTraceExporter({ url: cfg.endpoint, headers: cfg.headers, timeoutMillis: 10_000 }), cfg.endpoint);
const provider = new BasicTracerProvider({
  // Sampled already (tracing.ts): the SDK's own sampler must not read OTEL_TRACES_SAMPLER and sample again.
  sampler: new AlwaysOnSampler(),
  resource: resourceFromAttributes({ 'service.name': cfg.service_name, 'service.version': version }),
  spanProcessors: [new BatchSpanProcessor(exporter, { maxQueueSize: cfg.max_queue, maxExportBatchSize: 512, scheduledDelayMillis: cfg.export_delay_ms })],
});
const tracer = provider.getTracer('sluice', version);

parentPort!.on('message', (message: TraceBatch | 'shutdown') => {
  if (message === 'shutdown') {
    provider.shutdown().finally(() => parentPort!.postMessage('stopped'));
    return;
  }
  for (const [row, timing] of message.requests) {
    try {
      traceRequest(tracer, message.origin, row, timing);
    } catch (err) {
      console.error(`tracing: a request could not be traced: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
});
