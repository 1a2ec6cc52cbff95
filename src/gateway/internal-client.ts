// A request the gateway makes of itself (the router's judge, the semantic cache's verifier):
// the Client the pipeline writes to, holding the answer in memory (never a socket). Its
// `endpoint` names it in the ledger, where its cost is the operator's own row.
import type { KeyRecord } from '../accounts/keys.js';
import { DEFAULT_WORKSPACE } from '../accounts/workspaces.js';
import type { Client, HeaderList } from '../wire/http.js';

/**
 * The operator key an internal request runs under: never stored, never matched by a secret.
 * Its requests are never looked up by meaning (savings_off: semantic_cache): one answer's
 * grade, or one pair's verdict, is no other's; the exact cache still applies.
 */
export function internalKey(id: string, name: string): KeyRecord {
  return { id, name, kind: 'operator', workspace: DEFAULT_WORKSPACE, scopes: ['inference'],
    hash: '0'.repeat(64), prefix: '', created_at: 0, revoked_at: null, limits: { savings_off: ['semantic_cache'] }, created_by: null };
}

export class InternalClient implements Client {
  readonly aborted = false;
  constructor(readonly endpoint: string, readonly requestId: string, private readonly done: (status: number, body: string, costUsd: number) => void) {}
  onAbort(): void {}
  send(status: number, _type: string, body: Uint8Array | string, headers: HeaderList | null): void {
    const cost = Number(headers?.find(([k]) => k === 'x-gateway-cost-usd')?.[1] ?? 0);
    this.done(status, typeof body === 'string' ? body : Buffer.from(body).toString('utf8'), Number.isFinite(cost) ? cost : 0);
  }
  sendError(error: unknown): void {
    this.done(500, error instanceof Error ? error.message : String(error), 0);
  }
  startStream(_s: number, _t: string, _h: HeaderList, _w: () => void): void {
    this.done(500, 'an internal request asks for a JSON answer, not a stream', 0);
  }
  corked(fn: () => void): void { fn(); }
  write(): boolean { return true; }
  end(): void {}
  cut(): void {
    this.done(500, 'the answer was cut', 0);
  }
}

/** The message content of a chat.completion body ('' when there is none). */
export function replyContent(body: string): string {
  try {
    const parsed = JSON.parse(body) as { choices?: Array<{ message?: { content?: unknown } }> };
    const c = parsed.choices?.[0]?.message?.content;
    return typeof c === 'string' ? c : '';
  } catch {
    return '';
  }
}
