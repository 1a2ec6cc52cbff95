// What every route gets from HTTP itself, around the route's own handler: CORS for the
// origins the operator allows (preflights answered, Access-Control-* on every answer), HEAD
// on every GET route, request bodies sent compressed (gzip, deflate, br), and large answers
// compressed for a client that accepts gzip. A request reads the extra headers once, in the
// wrapper (uWS invalidates `req` when the handler returns); a per-request state object is
// made only when one of them applies, so a plain request costs one or two header reads.
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';

export interface EdgeConfig {
  /** Origins allowed to call from a browser (`*`: any); empty: CORS off (no Access-Control-* headers). */
  corsOrigins: readonly string[];
  /** Answers at least this large are gzipped for a client that accepts it (0: never). */
  compressMinBytes: number;
  /** The largest audio upload (speech to text) a request may carry. */
  maxAudioBytes: number;
}

/** What a request's answer must do beyond the route's own work. */
export interface EdgeState {
  /** The caller's Origin, when CORS allows it: echoed in Access-Control-Allow-Origin. */
  origin: string | null;
  /** The client accepts gzip. */
  gzip: boolean;
  /** The body's Content-Encoding ('' for none). */
  encoding: string;
  /** A HEAD request: the GET route's status and headers, no body. */
  head: boolean;
}

const STATE = Symbol('sluice.edge');
type Handler = (res: HttpResponse, req: HttpRequest) => void;

/** The edge state of a request's response, if any applies. */
export function edgeOf(res: HttpResponse): EdgeState | undefined {
  return (res as unknown as { [STATE]?: EdgeState })[STATE];
}

/** Headers a browser may send on a cross-origin call (preflight), and those its script may read. */
const ALLOW_HEADERS = 'authorization, content-type, content-encoding, x-api-key, anthropic-version, anthropic-beta, openai-organization, openai-project, x-stainless-arch, x-stainless-lang, x-stainless-os, x-stainless-package-version, x-stainless-retry-count, x-stainless-runtime, x-stainless-runtime-version, x-stainless-timeout, x-gateway-provider, x-gateway-savings, x-gateway-cache, x-gateway-router';
const EXPOSE_HEADERS = ['x-request-id', 'retry-after', 'retry-after-ms',
  ...['decision', 'retries', 'cache', 'cache-similarity', 'output-cap', 'cost-usd', 'overhead-ms', 'limit-kind',
    'route-bucket', 'route-score', 'route-task', 'route-model', 'route-quality', 'route-reason'].map((h) => `x-gateway-${h}`),
  'x-btl-benchmark-cost', 'x-btl-customer-charge', 'x-btl-saved',
  ...['limit', 'remaining', 'reset'].flatMap((h) => [`x-ratelimit-${h}-requests`, `x-ratelimit-${h}-tokens`])].join(', ');

export class Edge {
  private readonly anyOrigin: boolean;
  private readonly origins: ReadonlySet<string>;
  readonly cors: boolean;

  constructor(readonly config: EdgeConfig) {
    this.anyOrigin = config.corsOrigins.includes('*');
    this.origins = new Set(config.corsOrigins.map((o) => o.replace(/\/+$/, '').toLowerCase()));
    this.cors = config.corsOrigins.length > 0;
  }

  /** The CORS headers of an answer to `state` (none when CORS is off or the origin is not allowed). */
  corsHeaders(state: EdgeState | undefined): ReadonlyArray<readonly [string, string]> {
    if (!state?.origin) return NONE;
    return [['access-control-allow-origin', state.origin], ['vary', 'origin'], ['access-control-expose-headers', EXPOSE_HEADERS]];
  }

  private allowed(origin: string): boolean {
    return origin !== '' && (this.anyOrigin || this.origins.has(origin.toLowerCase()));
  }

  /** A route's handler with the edge's reads in front. `body`: the method carries a body (its Content-Encoding is read). */
  private wrap(handler: Handler, body: boolean, head = false): Handler {
    const cors = this.cors;
    const compress = this.config.compressMinBytes > 0;
    return (res, req) => {
      const origin = cors ? req.getHeader('origin') : '';
      const gzip = compress && acceptsGzip(req.getHeader('accept-encoding'));
      const encoding = body ? req.getHeader('content-encoding') : '';
      if (gzip || encoding || head || (origin && this.allowed(origin))) {
        (res as unknown as { [STATE]: EdgeState })[STATE] = { origin: origin && this.allowed(origin) ? origin : null, gzip, encoding: encoding.trim().toLowerCase(), head };
      }
      handler(res, req);
    };
  }

  /** Wraps the app's route registration: every route gets the edge's reads, every GET a HEAD twin; with CORS on, preflights are answered. */
  install(app: TemplatedApp): TemplatedApp {
    const table = app as unknown as Record<string, (path: string, handler: Handler) => TemplatedApp>;
    const head = table.head!.bind(app);
    for (const name of ['get', 'post', 'patch', 'put', 'del', 'any']) {
      const original = table[name]!.bind(app);
      const body = name === 'post' || name === 'patch' || name === 'put';
      table[name] = (path, handler) => {
        const result = original(path, this.wrap(handler, body));
        if (name === 'get') head(path, this.wrap(handler, false, true));
        return result;
      };
    }
    if (this.cors) table.options!.call(app, '/*', (res: HttpResponse, req: HttpRequest) => this.preflight(res, req));
    return app;
  }

  /** OPTIONS: an allowed origin gets the methods and headers it may use (cached 10 minutes); any other, no CORS headers. */
  private preflight(res: HttpResponse, req: HttpRequest): void {
    const origin = req.getHeader('origin');
    const asked = req.getHeader('access-control-request-headers');
    res.cork(() => {
      res.writeStatus('204 No Content').writeHeader('vary', 'origin');
      if (this.allowed(origin)) {
        res.writeHeader('access-control-allow-origin', origin)
          .writeHeader('access-control-allow-methods', 'GET, HEAD, POST, PATCH, PUT, DELETE, OPTIONS')
          .writeHeader('access-control-allow-headers', asked || ALLOW_HEADERS)
          .writeHeader('access-control-max-age', '600');
      }
      res.end();
    });
  }
}

const NONE: ReadonlyArray<readonly [string, string]> = [];

/** Accept-Encoding names gzip (any case) without refusing it (`q=0`), or `*` does. */
export function acceptsGzip(header: string): boolean {
  if (!header) return false;
  const h = header.toLowerCase();
  if (!h.includes('gzip') && !h.includes('*')) return false;
  if (!h.includes('q=')) return true; // the usual 'gzip, deflate, br': no split
  for (const part of header.toLowerCase().split(',')) {
    const [name, ...params] = part.split(';').map((x) => x.trim());
    if (name !== 'gzip' && name !== '*') continue;
    const q = params.find((p) => p.startsWith('q='));
    if (!q || Number(q.slice(2)) > 0) return true;
  }
  return false;
}
