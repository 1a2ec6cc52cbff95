// Server-sent events as OpenAI-format streams use them: `data: <json>` frames separated by
// a blank line, ending with `data: [DONE]`. One reader and one writer for every layer.

export const DONE_FRAME = Buffer.from('data: [DONE]\n\n');

/** The payload of an event's `data:` line (trimmed), or null when it has none. */
export function dataOf(event: string): string | null {
  const at = event.startsWith('data:') ? 0 : event.indexOf('\ndata:') + 1;
  if (at === 0 && !event.startsWith('data:')) return null;
  const end = event.indexOf('\n', at);
  return event.slice(at + 5, end === -1 ? undefined : end).trim();
}

/**
 * Each `data:` payload of a run of events, up to `[DONE]`; `visit` returns false to stop.
 * A payload is handed over as text: the caller parses what it needs.
 */
export function eachData(sse: string, visit: (data: string) => boolean | void): void {
  for (const line of sse.split('\n')) {
    if (!line.startsWith('data:')) continue;
    const data = line.slice(5).trim();
    if (data === '[DONE]' || visit(data) === false) return;
  }
}

/** One `data:` frame of a JSON value. */
export function dataFrame(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}
