// Vertex AI's access to Gemini models: paths under a project and a location, and an OAuth
// access token from a service account (google-auth-library's JWT client signs the grant and
// caches the token). The token is kept here too, so a request whose token is fresh is sent
// without an await; one that is close to expiry is refreshed in the background before it
// lapses, and only a request that finds none waits for the exchange.
import { readFileSync } from 'node:fs';
import { JWT, gaxios } from 'google-auth-library';
import { z } from 'zod';
import type { GeminiAccess } from './gemini.js';

const GOOGLE_TOKEN_URL = 'https://oauth2.googleapis.com/token';
const SCOPE = 'https://www.googleapis.com/auth/cloud-platform';
/** A token this close to expiry is refreshed in the background; closer than `MUST_REFRESH_MS`, requests wait for the new one. */
const REFRESH_AHEAD_MS = 5 * 60_000;
const MUST_REFRESH_MS = 60_000;
/** How long an exchange may take before the requests waiting on it fail (a 502 naming the credentials). */
const TOKEN_TIMEOUT_MS = 10_000;

const ServiceAccountSchema = z.looseObject({
  type: z.literal('service_account', 'must be a service account key (type: service_account)'),
  client_email: z.string().min(1),
  private_key: z.string().min(1),
  project_id: z.string().min(1).optional(),
  token_uri: z.url().optional(),
});
export type ServiceAccount = z.infer<typeof ServiceAccountSchema>;

/** The service-account key file, read at start: a problem names the file and the field. */
export function readServiceAccount(path: string): ServiceAccount {
  let raw: unknown;
  try { raw = JSON.parse(readFileSync(path, 'utf8')); } catch (err) {
    throw new Error(`${path}: not a readable JSON key file (${err instanceof Error ? err.message : String(err)})`);
  }
  const parsed = ServiceAccountSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new Error(`${path}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
  }
  return parsed.data;
}

export interface VertexAccessOptions {
  account: ServiceAccount;
  project: string;
  location: string;
  /** The API's base path (`/v1`, or a proxy's prefix). */
  basePath: string;
  /** Where the grant is exchanged: Google's unless configured or named by the key file's token_uri. */
  tokenUrl?: string | undefined;
}

export function vertexBaseUrl(location: string): string {
  return location === 'global' ? 'https://aiplatform.googleapis.com' : `https://${location}-aiplatform.googleapis.com`;
}

export class VertexAccess implements GeminiAccess {
  private readonly client: JWT;
  private readonly prefix: string;
  /** `projects/{p}/locations/{l}`: resource names start here. */
  private readonly resource: string;
  private header: Record<string, string> | null = null;
  private expiresAt = 0;
  private refreshing: Promise<Record<string, string>> | null = null;

  constructor(opts: VertexAccessOptions) {
    const transporter = new gaxios.Gaxios({ timeout: TOKEN_TIMEOUT_MS }); // a default: gaxios reads its timeout before the interceptors run
    const tokenUrl = opts.tokenUrl ?? opts.account.token_uri;
    const moved = tokenUrl && tokenUrl !== GOOGLE_TOKEN_URL ? new URL(tokenUrl) : null;
    transporter.interceptors.request.add({
      // Every exchange is bounded and tried once: requests wait on it, and the next one tries again.
      // The library posts the grant to Google's fixed URL; a private endpoint or a test's fake takes it instead.
      resolved: async (o) => ({ ...o, retryConfig: { ...o.retryConfig, retry: 0 }, ...(moved && String(o.url) === GOOGLE_TOKEN_URL ? { url: moved } : {}) }),
    });
    this.client = new JWT({ email: opts.account.client_email, key: opts.account.private_key, scopes: [SCOPE], transporter });
    this.resource = `projects/${encodeURIComponent(opts.project)}/locations/${encodeURIComponent(opts.location)}`;
    this.prefix = `${opts.basePath}/${this.resource}`;
  }

  /** A Google model by id, or a full resource under the location (`publishers/…/models/…`, `endpoints/…`). */
  path(model: string, method: string): string {
    return model.includes('/') ? `${this.prefix}/${model}:${method}` : `${this.prefix}/publishers/google/models/${encodeURIComponent(model)}:${method}`;
  }

  get cachePath(): string {
    return `${this.prefix}/cachedContents`;
  }

  /** The model's resource name (the path's, without the API's base). */
  cacheModel(model: string): string {
    return this.path(model, '').slice(this.prefix.length - this.resource.length, -1);
  }

  auth(): Record<string, string> | Promise<Record<string, string>> {
    const left = this.expiresAt - Date.now();
    if (this.header && left > MUST_REFRESH_MS) {
      if (left < REFRESH_AHEAD_MS) this.refresh().catch(() => { /* the next request that must wait sees the failure */ });
      return this.header;
    }
    return this.refresh();
  }

  private refresh(): Promise<Record<string, string>> {
    this.refreshing ??= this.client.getAccessToken().then(({ token }) => {
      if (!token) throw new Error('the token endpoint answered without an access token');
      this.header = { authorization: `Bearer ${token}` };
      this.expiresAt = this.client.credentials.expiry_date ?? Date.now() + 3_000_000;
      return this.header;
    }, (err: unknown) => {
      const timedOut = err instanceof Error && (err.name === 'AbortError' || err.name === 'TimeoutError' || /aborted/i.test(err.message));
      const said = err instanceof Error ? err.message.replace(/\.+$/, '') : String(err);
      throw new Error(timedOut ? `the token endpoint did not answer within ${TOKEN_TIMEOUT_MS / 1000} s` : `the token exchange failed: ${said}`);
    }).finally(() => { this.refreshing = null; });
    return this.refreshing;
  }
}
