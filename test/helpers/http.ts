// Plain HTTP calls against a gateway, for tests that look at statuses, headers and raw bodies.
import type { Gateway } from './gateway.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = Record<string, any>;

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or null when it is not JSON. */
  json: Json;
}

/** Calls against a gateway: `call` with any key; `admin` and `adminJson` with the gateway's master key. */
export function http(gw: Pick<Gateway, 'url'> & Partial<Pick<Gateway, 'masterKey'>>) {
  const call = async (path: string, key: string, body?: unknown, method = body === undefined ? 'GET' : 'POST', headers: Record<string, string> = {}): Promise<Answer> => {
    const res = await fetch(`${gw.url}${path}`, {
      method,
      headers: { ...(key ? { authorization: `Bearer ${key}` } : {}), 'content-type': 'application/json', ...headers },
      ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
    const text = await res.text();
    let json: Json = null as unknown as Json;
    try { json = JSON.parse(text) as Json; } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, text, json };
  };
  const admin = (path: string, body?: unknown, method?: string) => call(path, gw.masterKey ?? '', body, method);
  return {
    call,
    admin,
    /** An admin call's JSON body. */
    adminJson: async (path: string, body?: unknown, method?: string): Promise<Json> => (await admin(path, body, method)).json,
    /** A metered workspace with `credits` and a key in it with `limits` (and `scopes`). */
    async tenant(master: string, credits: number, limits?: object, scopes?: string[]): Promise<{ ws: string; key: string; id: string }> {
      const ws = (await call('/admin/workspaces', master, { name: 'tenant', credits_usd: credits })).json.id as string;
      const made = (await call('/admin/keys', master, { name: 'tenant-key', workspace: ws, ...(limits ? { limits } : {}), ...(scopes ? { scopes } : {}) })).json;
      return { ws, key: made.key as string, id: made.id as string };
    },
  };
}
