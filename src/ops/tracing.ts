// OpenTelemetry traces, one per request (trace-worker.ts builds and exports them). Nothing
// is traced on the response path: the ledger's observer hands over each request's row and
// timings; a sampled one is queued, and once per event-loop turn the queue goes to the
// tracing worker in one message. Sampling is parent-based: a caller's W3C `traceparent`
// decides (and its trace holds the request's spans), else `sample_ratio` does. A request
// sampled out costs one random number; one traced, its share of one structured clone.
import { Worker } from 'node:worker_threads';
import { TraceFlags, type SpanContext } from '@opentelemetry/api';
import type { LedgerRow, RequestTiming } from '../accounts/ledger.js';

export interface TracingConfig {
  endpoint: string;
  headers: Record<string, string>;
  sample_ratio: number;
  service_name: string;
  export_delay_ms: number;
  max_queue: number;
}

/** What the worker is sent: requests, and the clock their timings were read on. */
export interface TraceBatch {
  /** performance.timeOrigin of the thread that read the timings (epoch ms). */
  origin: number;
  requests: Array<[LedgerRow, RequestTiming]>;
}

/** Requests waiting for the worker at most (beyond, they are dropped: tracing never grows without bound). */
const MAX_WAITING = 10_000;

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

/** A W3C traceparent header's span context (version 00), or null when it is not one (all-zero ids are invalid). */
export function parseTraceparent(header: string): SpanContext | null {
  const m = TRACEPARENT.exec(header.trim());
  if (!m || /^0+$/.test(m[1]!) || /^0+$/.test(m[2]!)) return null;
  return { traceId: m[1]!, spanId: m[2]!, traceFlags: parseInt(m[3]!, 16) & 1, isRemote: true };
}

export class Tracing {
  private readonly worker: Worker;
  private waiting: Array<[LedgerRow, RequestTiming]> = [];
  private scheduled = false;
  /** Requests not traced because too many waited. */
  dropped = 0;

  constructor(private readonly cfg: TracingConfig, version: string) {
    this.worker = new Worker(new URL('./trace-worker.js', import.meta.url), { workerData: { cfg, version } });
    this.worker.on('error', (err) => console.error(`tracing: the worker failed: ${err.message}`));
    this.worker.unref();
  }

  /** The ledger's observer: a sampled request is queued for the worker. */
  readonly observe = (row: LedgerRow, timing: RequestTiming): void => {
    const parent = timing.parent ? parseTraceparent(timing.parent) : null;
    if (parent ? (parent.traceFlags & TraceFlags.SAMPLED) === 0 : this.cfg.sample_ratio < 1 && Math.random() >= this.cfg.sample_ratio) return;
    if (this.waiting.length >= MAX_WAITING) {
      if (this.dropped++ % 10_000 === 0) console.error(`tracing: the tracing thread is behind; ${this.dropped} request(s) not traced so far`);
      return;
    }
    this.waiting.push([row, timing]);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.send);
    }
  };

  private readonly send = (): void => {
    this.scheduled = false;
    if (this.waiting.length === 0) return;
    const batch: TraceBatch = { origin: performance.timeOrigin, requests: this.waiting };
    this.waiting = [];
    this.worker.postMessage(batch);
  };

  /** Sends what is queued and lets the worker export it (a graceful stop), waiting at most `waitMs` for a collector that may be down. */
  async shutdown(waitMs = 2000): Promise<void> {
    this.send();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => { this.worker.once('message', () => resolve()); this.worker.postMessage('shutdown'); }),
      new Promise<void>((resolve) => { timer = setTimeout(resolve, waitMs); }),
    ]);
    clearTimeout(timer);
    await this.worker.terminate();
  }
}
