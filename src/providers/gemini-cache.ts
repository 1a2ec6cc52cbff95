// Gemini's explicit context caching as the provider prompt cache: a large stable head (system
// instruction, tools, tool config) that a workspace sends again within five minutes is stored
// upstream as a cachedContents resource, and later requests name it instead of sending it, so
// its tokens are billed at the cached price. The request that creates a cache waits for the
// creation and pays its write (`cache_write` in the catalog: the cached read plus the five
// minutes of storage Google bills), so the storage cost lands on a ledger row like any other;
// requests that come while another creates go as they are (Gemini's implicit cache may still
// serve them). A creation that fails (a head below the model's minimum, say) leaves the head
// uncached for the rest of the window and never fails the request.
import type { Pool } from 'undici';
import type { Json } from '../json.js';

/** How long a created cache lives: `cache_write` prices in the catalog include this much storage. */
export const CACHE_TTL_SECONDS = 300;
/** A cache this close to its expiry is no longer named (the request could reach Gemini after it expired). */
const EXPIRY_MARGIN_MS = 30_000;
/** How long the creating request waits for the creation before it goes without a cache. */
const CREATE_TIMEOUT_MS = 5000;
/** Heads tracked at once; the oldest is forgotten beyond this. */
const MAX_HEADS = 10_000;

interface Head {
  /** When the window of sightings began, and how many requests sent this head in it. */
  since: number;
  seen: number;
  /** The live cache, when there is one. */
  name: string | null;
  expiresAt: number;
  /** A creation is under way (one at a time per head), or failed in this window. */
  creating: boolean;
  failed: boolean;
}

export type CachePlan = { use: string } | 'create' | null;

export class ContextCaches {
  private readonly heads = new Map<string, Head>();

  constructor(readonly minHeadBytes: number) {}

  /** What a request with this head (`key`: model + workspace + head hash; `bytes`: the head's JSON size) does. */
  plan(key: string, bytes: number, now = Date.now()): CachePlan {
    if (bytes < this.minHeadBytes) return null;
    let head = this.heads.get(key);
    if (!head) {
      if (this.heads.size >= MAX_HEADS) this.heads.delete(this.heads.keys().next().value!);
      head = { since: now, seen: 0, name: null, expiresAt: 0, creating: false, failed: false };
      this.heads.set(key, head);
    }
    if (head.name && head.expiresAt - now > EXPIRY_MARGIN_MS) return { use: head.name };
    if (now - head.since > CACHE_TTL_SECONDS * 1000) Object.assign(head, { since: now, seen: 0, name: null, failed: false });
    head.seen++;
    if (head.seen < 2 || head.creating || head.failed) return null; // once is no pattern; a second sighting in the window pays
    head.creating = true;
    return 'create';
  }

  created(key: string, name: string, expiresAt: number): void {
    const head = this.heads.get(key);
    if (head) Object.assign(head, { name, expiresAt, creating: false });
  }

  /** The cache is gone upstream before its time: the next request with the head goes without it. */
  forget(key: string): void {
    const head = this.heads.get(key);
    if (head) Object.assign(head, { name: null, expiresAt: 0 });
  }

  failed(key: string): void {
    const head = this.heads.get(key);
    if (head) Object.assign(head, { creating: false, failed: true });
  }
}

/** The head a cache holds, taken out of a generateContent request (which then names the cache instead). */
export function splitHead(request: Json): { head: Json; rest: Json } {
  const { systemInstruction, tools, toolConfig, ...rest } = request;
  const head: Json = {};
  if (systemInstruction !== undefined) head.systemInstruction = systemInstruction;
  if (tools !== undefined) head.tools = tools;
  if (toolConfig !== undefined) head.toolConfig = toolConfig;
  return { head, rest };
}

/** Creates the cache; resolves to its name and expiry, or rejects (any non-2xx, any unreadable answer). */
export async function createCache(pool: Pool, path: string, headers: Record<string, string>, model: string, head: Json): Promise<{ name: string; expiresAt: number }> {
  const started = Date.now();
  // Bounded apart from the model's own timeouts: the request waits for this, and it only saves money.
  const res = await pool.request({ path, method: 'POST', headers, body: JSON.stringify({ model, ...head, ttl: `${CACHE_TTL_SECONDS}s` }),
    signal: AbortSignal.timeout(CREATE_TIMEOUT_MS) });
  const text = await res.body.text();
  if (res.statusCode !== 200) throw new Error(`cachedContents answered ${res.statusCode}`);
  const made = JSON.parse(text) as { name?: unknown; expireTime?: unknown };
  if (typeof made.name !== 'string' || !made.name.startsWith('cachedContents/') && !made.name.includes('/cachedContents/')) throw new Error('cachedContents answered without a name');
  const expires = typeof made.expireTime === 'string' ? Date.parse(made.expireTime) : NaN;
  return { name: made.name, expiresAt: Number.isFinite(expires) ? Math.min(expires, started + CACHE_TTL_SECONDS * 1000) : started + CACHE_TTL_SECONDS * 1000 };
}
