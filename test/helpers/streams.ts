// Stream behaviour every provider's tests check the same way.
import type OpenAI from 'openai';

/** Waits (bounded) until `done()` holds; returns whether it did. */
export async function eventually(done: () => boolean, ms = 2000): Promise<boolean> {
  for (let waited = 0; !done() && waited < ms; waited += 20) await new Promise((r) => setTimeout(r, 20));
  return done();
}

/**
 * Streams `model` and aborts the request on its first content, then waits for `upstreamSawAbort()`
 * (the fake's record of its client going away before the answer finished). True when it did.
 */
export async function abortMidStream(client: OpenAI, model: string, upstreamSawAbort: () => boolean): Promise<boolean> {
  const ac = new AbortController();
  try {
    const stream = await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hi' }], stream: true }, { signal: ac.signal });
    for await (const c of stream) if (c.choices[0]?.delta.content) ac.abort();
  } catch { /* aborted */ }
  return eventually(upstreamSawAbort);
}

/** The answer's text, streamed or not (the same request both ways). */
export async function answerText(client: OpenAI, body: OpenAI.ChatCompletionCreateParamsNonStreaming, stream: boolean): Promise<string> {
  if (!stream) return (await client.chat.completions.create(body)).choices[0]?.message.content ?? '';
  let text = '';
  for await (const c of await client.chat.completions.create({ ...body, stream: true })) text += c.choices[0]?.delta.content ?? '';
  return text;
}
