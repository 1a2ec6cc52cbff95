// The fake Bedrock speaks the real wire format: the official AWS SDK signs its requests (the
// fake recomputes the signature) and reads its JSON, its event streams and its errors.
import { BedrockRuntimeClient, ConverseCommand, ConverseStreamCommand, ThrottlingException, ValidationException, InvokeModelCommand } from '@aws-sdk/client-bedrock-runtime';
import { NodeHttpHandler } from '@smithy/node-http-handler';
import t from 'tap';
import { AWS_CREDENTIALS, BEDROCK_WORDS, startFakeBedrock } from './bedrock-upstream.js';

const fake = await startFakeBedrock('us-west-2');
t.teardown(() => fake.close());
// HTTP/1.1 (the client's default handler speaks HTTP/2 for bidirectional streams, which Converse does not use).
const client = new BedrockRuntimeClient({ region: 'us-west-2', endpoint: fake.url, credentials: AWS_CREDENTIALS, maxAttempts: 1, requestHandler: new NodeHttpHandler() });
const model = 'anthropic.claude-3-5-sonnet-20240620-v1:0';

t.test('Converse: text, usage, the SDK\'s signature accepted', async (t) => {
  const out = await client.send(new ConverseCommand({ modelId: model, system: [{ text: 'Be brief.' }], messages: [{ role: 'user', content: [{ text: 'Hi' }] }], inferenceConfig: { maxTokens: 50 } }));
  t.equal(out.output?.message?.content?.[0]?.text, BEDROCK_WORDS.join(''));
  t.equal(out.stopReason, 'end_turn');
  t.ok((out.usage?.inputTokens ?? 0) > 0);
  const rec = fake.received.at(-1)!;
  t.ok(rec.signed, 'the SDK\'s SigV4 signature is the one the fake recomputes');
  t.equal(rec.model, model, 'the model id with its colon, percent-encoded in the path');
});

t.test('ConverseStream: binary event-stream frames, text and tool use', async (t) => {
  const out = await client.send(new ConverseStreamCommand({ modelId: model, messages: [{ role: 'user', content: [{ text: 'Hi' }] }], inferenceConfig: { maxTokens: 50 } }));
  let text = '';
  let stop = '';
  let usage = 0;
  for await (const e of out.stream!) {
    text += e.contentBlockDelta?.delta?.text ?? '';
    stop = e.messageStop?.stopReason ?? stop;
    usage = e.metadata?.usage?.outputTokens ?? usage;
  }
  t.equal(text, BEDROCK_WORDS.join(''));
  t.equal(stop, 'end_turn');
  t.equal(usage, BEDROCK_WORDS.length);

  const tools = await client.send(new ConverseStreamCommand({ modelId: model, messages: [{ role: 'user', content: [{ text: 'Weather?' }] }], inferenceConfig: { maxTokens: 50 },
    toolConfig: { tools: [{ toolSpec: { name: 'get_weather', inputSchema: { json: { type: 'object' } } } }] } }));
  let input = '';
  let name = '';
  for await (const e of tools.stream!) {
    name = e.contentBlockStart?.start?.toolUse?.name ?? name;
    input += e.contentBlockDelta?.delta?.toolUse?.input ?? '';
  }
  t.equal(name, 'get_weather');
  t.same(JSON.parse(input), { location: 'Paris' });
});

t.test('errors and stream exceptions as the SDK reads them', async (t) => {
  const throttled = await client.send(new ConverseCommand({ modelId: 'fail-throttle', messages: [{ role: 'user', content: [{ text: 'x' }] }], inferenceConfig: { maxTokens: 5 } })).catch((e: unknown) => e);
  t.ok(throttled instanceof ThrottlingException, 'x-amzn-ErrorType read as ThrottlingException');
  const invalid = await client.send(new ConverseCommand({ modelId: 'fail-validation', messages: [{ role: 'user', content: [{ text: 'x' }] }], inferenceConfig: { maxTokens: 5 } })).catch((e: unknown) => e);
  t.ok(invalid instanceof ValidationException);
  const mid = await client.send(new ConverseStreamCommand({ modelId: 'stream-throttled', messages: [{ role: 'user', content: [{ text: 'x' }] }], inferenceConfig: { maxTokens: 5 } }));
  const err = await (async () => { for await (const _ of mid.stream!) { /* drain */ } })().catch((e: unknown) => e);
  t.ok(err instanceof ThrottlingException, 'an exception frame mid-stream is the SDK\'s ThrottlingException');
  const forged = new BedrockRuntimeClient({ region: 'us-west-2', endpoint: fake.url, credentials: { ...AWS_CREDENTIALS, secretAccessKey: 'wrong' }, maxAttempts: 1, requestHandler: new NodeHttpHandler() });
  const refused = await forged.send(new ConverseCommand({ modelId: model, messages: [{ role: 'user', content: [{ text: 'x' }] }], inferenceConfig: { maxTokens: 5 } })).catch((e: unknown) => e);
  t.match(refused, { name: 'InvalidSignatureException', $metadata: { httpStatusCode: 403 } }, 'a wrong secret fails the fake\'s signature check');
});

t.test('InvokeModel on Titan embeddings, as the SDK sends and reads it', async (t) => {
  const r = await client.send(new InvokeModelCommand({ modelId: 'amazon.titan-embed-text-v2:0', contentType: 'application/json', accept: 'application/json', body: JSON.stringify({ inputText: 'hello world', dimensions: 256, normalize: true }) }));
  const answer = JSON.parse(Buffer.from(r.body).toString('utf8')) as { embedding: number[]; inputTextTokenCount: number };
  t.equal(answer.embedding.length, 256);
  t.ok(answer.inputTextTokenCount > 0);
  t.equal(fake.received.at(-1)!.signed, true, 'the SDK\'s signature verified');
});
