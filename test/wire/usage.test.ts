// readUsage: each upstream shape of usage to the gateway's, whatever order its schemas are
// tried in (the shape an object's fields name goes first: see usage.ts), and a malformed one
// to null (the gateway estimates instead).
import t from 'tap';
import { readUsage } from '../../src/wire/usage.js';

const cases: Array<[string, unknown, unknown]> = [
  ['chat', { prompt_tokens: 24, completion_tokens: 28, total_tokens: 52, prompt_tokens_details: { cached_tokens: 2 } }, { prompt_tokens: 24, completion_tokens: 28, cached_tokens: 2 }],
  ['chat with a cache write', { prompt_tokens: 24, completion_tokens: 1, prompt_tokens_details: { cache_write_tokens: 20 } }, { prompt_tokens: 24, completion_tokens: 1, cached_tokens: 0, cache_write_tokens: 20 }],
  ['Responses', { input_tokens: 24, input_tokens_details: { cached_tokens: 3 }, output_tokens: 28, total_tokens: 52 }, { prompt_tokens: 24, completion_tokens: 28, cached_tokens: 3 }],
  ['Anthropic', { input_tokens: 3, output_tokens: 4, cache_read_input_tokens: 2, cache_creation_input_tokens: 5 }, { prompt_tokens: 10, completion_tokens: 4, cached_tokens: 2, cache_write_tokens: 5 }],
  ['embeddings', { prompt_tokens: 5, total_tokens: 5 }, { prompt_tokens: 5, completion_tokens: 0, cached_tokens: 0 }],
  ['duration', { type: 'duration', seconds: 6.2 }, { prompt_tokens: 7, completion_tokens: 0, cached_tokens: 0 }],
  ['both chat and Responses fields: chat wins', { input_tokens: 3, output_tokens: 4, prompt_tokens: 9, completion_tokens: 1 }, { prompt_tokens: 9, completion_tokens: 1, cached_tokens: 0 }],
  ['embeddings fields beside Responses ones: Responses wins', { prompt_tokens: 5, total_tokens: 5, input_tokens: 2, output_tokens: 3 }, { prompt_tokens: 2, completion_tokens: 3, cached_tokens: 0 }],
  ['Responses with a stray completion_tokens', { input_tokens: 3, output_tokens: 4, completion_tokens: 2 }, { prompt_tokens: 3, completion_tokens: 4, cached_tokens: 0 }],
  ['a negative count', { input_tokens: -1, output_tokens: 2 }, null],
  ['a count past the bound', { prompt_tokens: 1e9, completion_tokens: 1 }, null],
  ['half a Responses usage', { input_tokens: 1 }, null],
  ['prompt tokens alone', { prompt_tokens: 5 }, null],
  ['a string count', { prompt_tokens: '5', completion_tokens: 1 }, null],
  ['empty', {}, null],
  ['null', null, null],
  ['a string', 'usage', null],
];
for (const [name, value, expected] of cases) t.same(readUsage(value), expected, name);
