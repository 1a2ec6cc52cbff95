// Reads a whole request body in the bench's standalone uWS processes (the fake upstream
// and the bare passthrough). uWS allows one onAborted handler per response, so this owns
// it and returns the state: check `aborted` before writing a response later.
import type { HttpResponse } from 'uWebSockets.js';

export function readBody(res: HttpResponse, done: (body: Buffer) => void): { aborted: boolean } {
  const state = { aborted: false };
  res.onAborted(() => { state.aborted = true; });
  const parts: Buffer[] = [];
  res.onData((ab, last) => {
    parts.push(Buffer.from(ab.slice(0)));
    if (last && !state.aborted) done(Buffer.concat(parts));
  });
  return state;
}
