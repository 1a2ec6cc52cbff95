// The SDK helpers a new user reaches for, on routes that are not OpenAI's: LangChain's
// withStructuredOutput on a Claude route (JSON output through Anthropic's wire format), and
// the AI SDK's streamText with a tool on a bridged Responses route (its function_call items
// make the SDK run the tool and go on with its result).
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import { stepCountIs, streamText, tool } from 'ai';
import t from 'tap';
import { z } from 'zod';
import { startFakeAnthropic } from '../fakes/anthropic-upstream.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';

const anthropic = await startFakeAnthropic();
const gw = await startGateway({ ANTHROPIC_API_KEY: 'sk-ant-fake', ANTHROPIC_BASE_URL: anthropic.url, SLUICE_SIM: 'off' }, tempDataDir(), {
  models: [{ slug: 'anthropic/claude-test', upstream_id: 'claude-test', context_window: 200000, capabilities: ['tools', 'json'], prices: { input: 3, output: 15 } }],
});
t.teardown(async () => { await gw.stop(); await anthropic.close(); });

t.test('LangChain withStructuredOutput on a Claude route', async (t) => {
  const llm = new ChatOpenAI({ model: 'anthropic/claude-test', apiKey: gw.masterKey, configuration: { baseURL: gw.baseURL }, maxRetries: 0 });
  const City = z.object({ city: z.string(), population: z.number(), capital: z.boolean() });
  for (const method of ['jsonSchema', 'functionCalling'] as const) {
    const structured = llm.withStructuredOutput(City, { name: 'city', method });
    const out = await structured.invoke('Tell me about Paris');
    t.same(out, { city: 'Paris', population: 21, capital: true }, `method ${method}`);
  }
  const sent = anthropic.received.at(-1)!.body;
  t.equal(sent.tools?.[0]?.name, 'city', 'Anthropic got a tool for the schema');
});

t.test('AI SDK streamText with a tool on a bridged Responses route', async (t) => {
  const provider = createOpenAI({ baseURL: gw.baseURL, apiKey: gw.masterKey });
  const calls: string[] = [];
  const result = streamText({
    model: provider.responses('anthropic/claude-test'),
    prompt: 'What is the weather in Paris?',
    tools: { weather: tool({ description: 'Weather for a city', inputSchema: z.object({ location: z.string() }), execute: async ({ location }) => { calls.push(location); return { location, sky: 'sunny' }; } }) },
    stopWhen: stepCountIs(3),
  });
  let text = '';
  for await (const delta of result.textStream) text += delta;
  t.same(calls, ['Paris'], 'the SDK ran the tool with the streamed arguments');
  t.equal(text, 'It is sunny.', 'and went on with its result');
  const steps = await result.steps;
  t.equal(steps.length, 2);
  const resultTurn = anthropic.received.at(-1)!.body.messages.at(-1) as { content: Array<{ type: string; content?: unknown }> };
  t.equal(resultTurn.content[0]!.type, 'tool_result', 'the tool result reached Anthropic as one');
});
