// The chat request read once for every translating adapter: a Gemini call's thought
// signature, carried in its OpenAI id, goes back to Gemini and to no one else.
import t from 'tap';
import { toMessagesRequest } from '../../src/providers/anthropic.js';
import { toConverseRequest } from '../../src/providers/bedrock.js';
import { toGenerateContentRequest } from '../../src/providers/gemini.js';
import { callId, chatTurns } from '../../src/providers/turns.js';
import type { ChatRequest } from '../../src/wire/chat.js';

const id = callId('call_0', 'CiQBjz1r+/sig==');
const request: ChatRequest = { model: 'm', messages: [
  { role: 'user', content: 'Weather?' },
  { role: 'assistant', content: null, tool_calls: [{ id, type: 'function', function: { name: 'get_weather', arguments: '{"location":"Paris"}' } }] },
  { role: 'tool', tool_call_id: id, content: 'sunny' },
] };

t.test('the id splits into the upstream\'s id and the signature', (t) => {
  const { turns } = chatTurns(request);
  t.same(turns[1]!.blocks, [{ type: 'tool_call', id: 'call_0', name: 'get_weather', input: { location: 'Paris' }, signature: 'CiQBjz1r+/sig==' }]);
  t.same(turns[2]!.blocks, [{ type: 'tool_result', id: 'call_0', name: 'get_weather', text: 'sunny' }]);
  t.equal(callId('call_1', null), 'call_1', 'no signature, the id as it was');
  t.end();
});

t.test('Gemini gets the signature back; Anthropic and Bedrock get a clean id', (t) => {
  const gemini = toGenerateContentRequest(request, 10) as { contents: Array<{ parts: unknown[] }> };
  t.same(gemini.contents[1]!.parts, [{ functionCall: { name: 'get_weather', args: { location: 'Paris' } }, thoughtSignature: 'CiQBjz1r+/sig==' }]);
  const anthropic = toMessagesRequest(request, 'claude', 10, false) as { messages: Array<{ content: Array<Record<string, unknown>> }> };
  t.equal(anthropic.messages[1]!.content[0]!.id, 'call_0');
  t.equal(anthropic.messages[2]!.content[0]!.tool_use_id, 'call_0');
  const bedrock = toConverseRequest(request, 'anthropic.claude', 10, false).body as { messages: Array<{ content: Array<Record<string, { toolUseId: string }>> }> };
  t.equal(bedrock.messages[1]!.content[0]!.toolUse!.toolUseId, 'call_0');
  t.equal(bedrock.messages[2]!.content[0]!.toolResult!.toolUseId, 'call_0');
  t.end();
});
