// OpenAI's embeddings answer as its API writes it, for the OpenAI and Azure fakes: a vector
// per input (float lists, or base64 of little-endian float32 when asked), usage with
// prompt_tokens and total_tokens only. The vectors are small and depend on the input, so a
// test can tell a replay from a fresh call and one input's vector from another's.
export const FAKE_DIMENSIONS = 8;

export function fakeEmbeddings(body: Record<string, unknown>, model: string): { status: number; payload: object } {
  const input = body.input;
  const list = typeof input === 'string' ? [input] : Array.isArray(input) && typeof input[0] === 'number' ? [input] : Array.isArray(input) ? input : [];
  if (!list.length) return { status: 400, payload: { error: { message: "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.", type: 'invalid_request_error', param: null, code: null } } };
  const dims = typeof body.dimensions === 'number' ? body.dimensions : FAKE_DIMENSIONS;
  let tokens = 0;
  const data = list.map((item: unknown, index) => {
    const text = typeof item === 'string' ? item : JSON.stringify(item);
    tokens += typeof item === 'string' ? Math.max(1, text.length >> 2) : (item as unknown[]).length;
    const vector = Array.from({ length: dims }, (_, i) => ((text.charCodeAt(i % text.length) + i) % 17) / 17 - 0.5);
    const embedding = body.encoding_format === 'base64' ? Buffer.from(Float32Array.from(vector).buffer).toString('base64') : vector;
    return { object: 'embedding', index, embedding };
  });
  return { status: 200, payload: { object: 'list', data, model, usage: { prompt_tokens: tokens, total_tokens: tokens } } };
}
