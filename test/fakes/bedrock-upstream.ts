// A local fake of Bedrock Runtime's Converse and ConverseStream APIs speaking the real wire
// format: JSON in, JSON or AWS event-stream binary frames out (@smithy/core's codec, the
// AWS SDK's own), errors as Bedrock sends them (status, x-amzn-ErrorType, {"message"}).
// It recomputes every request's SigV4 signature from the headers the request says it
// signed, and refuses a mismatch with 403 as AWS does. Checked by the official
// @aws-sdk/client-bedrock-runtime in bedrock-upstream.test.ts. Behaviour is chosen by the
// model id; every request is recorded.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventStreamCodec } from '@smithy/core/event-streams';
import { Hash, fromUtf8, toUtf8 } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';
import type { MessageHeaders, SourceData } from '@smithy/types';

export const AWS_CREDENTIALS = { accessKeyId: 'AKIAFAKEFAKEFAKE', secretAccessKey: 'fake/secret/key/0123456789abcdefghijkl' };
export const BEDROCK_WORDS = ['Hello', ' from', ' the', ' fake', ' Bedrock', '.'];

export interface BedrockReceived {
  path: string;
  model: string;
  stream: boolean;
  headers: IncomingMessage['headers'];
  body: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /** The SigV4 signature matched the one recomputed here. */
  signed: boolean;
  /** Set when the client went away before the answer finished. */
  aborted: boolean;
}

export interface FakeBedrock {
  url: string;
  region: string;
  received: BedrockReceived[];
  close(): Promise<void>;
}

class Sha256 extends Hash {
  constructor(secret?: SourceData) { super('sha256', secret); }
}

const codec = new EventStreamCodec(toUtf8, fromUtf8);

/** One event-stream message as Bedrock frames it (with its `p` padding field). */
export function eventFrame(type: string, payload: object, messageType: 'event' | 'exception' = 'event'): Uint8Array {
  const headers: MessageHeaders = messageType === 'event'
    ? { ':event-type': { type: 'string' as const, value: type }, ':content-type': { type: 'string' as const, value: 'application/json' }, ':message-type': { type: 'string' as const, value: 'event' } }
    : { ':exception-type': { type: 'string' as const, value: type }, ':content-type': { type: 'string' as const, value: 'application/json' }, ':message-type': { type: 'string' as const, value: 'exception' } };
  return codec.encode({ headers, body: fromUtf8(JSON.stringify({ ...payload, p: 'abcdefghij' })) });
}

/** Recomputes the request's signature over the headers it names as signed. */
async function verify(req: IncomingMessage, body: string, region: string): Promise<boolean> {
  const auth = String(req.headers.authorization ?? '');
  const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/bedrock\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(auth);
  if (!m || m[1] !== AWS_CREDENTIALS.accessKeyId || m[3] !== region) return false;
  const amzDate = String(req.headers['x-amz-date'] ?? '');
  const d = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(amzDate);
  if (!d) return false;
  const headers: Record<string, string> = {};
  for (const name of m[4]!.split(';')) headers[name] = String(req.headers[name] ?? '');
  const [path, query] = (req.url ?? '').split('?');
  const signer = new SignatureV4({ service: 'bedrock', region, credentials: AWS_CREDENTIALS, sha256: Sha256 });
  const signed = await signer.sign({ method: req.method ?? 'POST', protocol: 'http:', hostname: String(req.headers.host), path: path!, body, headers,
    query: Object.fromEntries(new URLSearchParams(query ?? '')) },
  { signingDate: new Date(Date.UTC(+d[1]!, +d[2]! - 1, +d[3]!, +d[4]!, +d[5]!, +d[6]!)), unsignableHeaders: new Set(), signableHeaders: new Set(Object.keys(headers)) });
  return String(signed.headers.authorization).endsWith(`Signature=${m[5]}`);
}

/** Bedrock's error answer: the exception name in x-amzn-ErrorType, the words in the body. */
const ERRORS: Record<string, [number, string, string]> = {
  'fail-throttle': [429, 'ThrottlingException', 'Too many requests, please wait before trying again.'],
  'fail-not-ready': [429, 'ModelNotReadyException', 'Model is not ready to serve inference requests.'],
  'fail-validation': [400, 'ValidationException', 'The provided model identifier is invalid.'],
  'fail-unavailable': [503, 'ServiceUnavailableException', 'Bedrock is unable to process your request.'],
};

export async function startFakeBedrock(region = 'us-east-1'): Promise<FakeBedrock> {
  const received: BedrockReceived[] = [];
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => void (async () => {
      const raw = Buffer.concat(parts).toString('utf8');
      const fail = (status: number, type: string, message: string) => {
        res.writeHead(status, { 'content-type': 'application/json', 'x-amzn-errortype': `${type}:http://internal.amazon.com/coral/com.amazon.bedrock/` });
        res.end(JSON.stringify({ message }));
      };
      // InvokeModel on Titan Text Embeddings: one input text, a vector and its token count back.
      const invoke = /^\/model\/([^/]+)\/invoke$/.exec(req.url ?? '');
      if (req.method === 'POST' && invoke) {
        let spec: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
        try { spec = JSON.parse(raw) as typeof spec; } catch { return fail(400, 'SerializationException', 'Malformed JSON'); }
        const rec: BedrockReceived = { path: req.url!, model: decodeURIComponent(invoke[1]!), stream: false, headers: req.headers, body: spec, signed: await verify(req, raw, region), aborted: false };
        received.push(rec);
        if (!rec.signed) return fail(403, 'InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.');
        if (typeof spec.inputText !== 'string' || !spec.inputText) return fail(400, 'ValidationException', 'Malformed input request: #: required key [inputText] not found');
        if (spec.inputText === 'throttle me') return fail(429, 'ThrottlingException', 'Too many requests, please wait before trying again.');
        const dims = typeof spec.dimensions === 'number' ? spec.dimensions : 1024;
        res.writeHead(200, { 'content-type': 'application/json', 'x-amzn-bedrock-input-token-count': String(spec.inputText.length >> 2) });
        res.end(JSON.stringify({ embedding: Array.from({ length: dims }, (_, i) => ((spec.inputText.charCodeAt(i % spec.inputText.length) + i) % 11) / 11 - 0.5), inputTextTokenCount: Math.max(1, spec.inputText.length >> 2) }));
        return;
      }
      const m = /^\/model\/([^/]+)\/(converse|converse-stream)$/.exec(req.url ?? '');
      if (req.method !== 'POST' || !m) return fail(404, 'UnknownOperationException', 'Unknown operation');
      const model = decodeURIComponent(m[1]!);
      const stream = m[2] === 'converse-stream';
      let body: BedrockReceived['body'] = {};
      try { body = JSON.parse(raw) as typeof body; } catch { return fail(400, 'SerializationException', 'Malformed JSON'); }
      const rec: BedrockReceived = { path: req.url!, model, stream, headers: req.headers, body, signed: await verify(req, raw, region), aborted: false };
      received.push(rec);
      res.on('close', () => { if (!res.writableFinished) rec.aborted = true; });
      if (!rec.signed) return fail(403, 'InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.');
      const error = ERRORS[model];
      if (error) return fail(...error);
      if (!Array.isArray(body.messages) || body.messages.length === 0) return fail(400, 'ValidationException', 'messages: at least one message is required');
      if (!(body.inferenceConfig?.maxTokens > 0)) return fail(400, 'ValidationException', 'inferenceConfig.maxTokens is required');
      const last = body.messages.at(-1) as { content: Array<Record<string, unknown>> };
      const sawResult = last.content.some((b) => 'toolResult' in b);
      const tools = (body.toolConfig?.tools ?? []).filter((t: Record<string, unknown>) => 'toolSpec' in t) as Array<{ toolSpec: { name: string } }>;
      const forced = body.toolConfig?.toolChoice?.tool?.name as string | undefined;
      const tool = tools.length && !sawResult ? (tools.find((t) => t.toolSpec.name === forced) ?? tools[0]!).toolSpec.name : null;
      const input = forced ? { city: 'Paris', temperature_c: 21 } : { location: 'Paris' };
      const words = sawResult ? ['It', ' is', ' sunny', '.'] : BEDROCK_WORDS;
      const cached = JSON.stringify(body).includes('cachePoint');
      const usage = { inputTokens: raw.length >> 2, outputTokens: tool ? 12 : words.length, cacheReadInputTokens: cached ? 7 : 0, cacheWriteInputTokens: 0 };
      const stop = tool ? 'tool_use' : 'end_turn';
      if (!stream) {
        res.writeHead(200, { 'content-type': 'application/json', 'x-amzn-requestid': 'fake-request-id' });
        const content = tool ? [{ toolUse: { toolUseId: 'tooluse_fake1', name: tool, input } }] : [{ text: words.join('') }];
        res.end(JSON.stringify({ output: { message: { role: 'assistant', content } }, stopReason: stop,
          usage: { ...usage, totalTokens: usage.inputTokens + usage.outputTokens + usage.cacheReadInputTokens }, metrics: { latencyMs: 42 } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'application/vnd.amazon.eventstream', 'x-amzn-requestid': 'fake-request-id' });
      const frames: Uint8Array[] = [eventFrame('messageStart', { role: 'assistant' })];
      if (tool) {
        frames.push(eventFrame('contentBlockStart', { contentBlockIndex: 0, start: { toolUse: { toolUseId: 'tooluse_fake1', name: tool } } }));
        const json = JSON.stringify(input);
        for (const piece of [json.slice(0, 9), json.slice(9)]) frames.push(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { toolUse: { input: piece } } }));
      } else {
        for (const w of words) frames.push(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: w } }));
      }
      frames.push(eventFrame('contentBlockStop', { contentBlockIndex: 0 }));
      if (model === 'throttle-first') { // Bedrock's 200 whose first frame is an exception: nothing said yet
        res.end(Buffer.from(eventFrame('throttlingException', { message: 'Too many requests, please wait before trying again.' }, 'exception')));
        return;
      }
      if (model === 'cut') { // content, then the connection ends: no stop, no metadata
        res.end(Buffer.concat(frames.slice(0, 3)));
        return;
      }
      if (model === 'big-text') { // one 1 MiB text delta, in 1 KiB pieces
        const big = Buffer.from(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'x'.repeat(1 << 20) } }));
        res.write(frames[0]);
        for (let at = 0; at < big.length; at += 1024) res.write(big.subarray(at, at + 1024));
        res.end(Buffer.concat([eventFrame('messageStop', { stopReason: 'end_turn' }), eventFrame('metadata', { usage: { inputTokens: 10, outputTokens: 262_144, totalTokens: 262_154 } })]));
        return;
      }
      if (model === 'stream-throttled') {
        frames.push(eventFrame('throttlingException', { message: 'Too many tokens, please wait before trying again.' }, 'exception'));
        res.end(Buffer.concat(frames));
        return;
      }
      frames.push(eventFrame('messageStop', { stopReason: stop }));
      // 'no-usage': a metadata frame without usage; 'huge-usage': usage no answer can have
      const reported = model === 'no-usage' ? {} : model === 'huge-usage' ? { inputTokens: 1e12, outputTokens: 1e12, totalTokens: 2e12 }
        : model === 'zero-usage' ? { inputTokens: 0, outputTokens: 0, totalTokens: 0 } : { ...usage, totalTokens: usage.inputTokens + usage.outputTokens };
      frames.push(eventFrame('metadata', { usage: reported, metrics: { latencyMs: 42 } }));
      if (model === 'linger') { // the answer is complete, and the connection stays open
        res.write(Buffer.concat(frames));
        return;
      }
      if (model === 'slow-stream') { // a long answer, a frame every 50 ms: aborting mid-way must close this connection
        let i = 0;
        const timer = setInterval(() => {
          if (res.destroyed || i >= 200) { clearInterval(timer); if (!res.destroyed) res.end(); return; }
          res.write(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: ` word${i++}` } }));
        }, 50);
        res.write(frames[0]);
        return;
      }
      // Frames cut at odd places, as TCP may deliver them: the decoder must join them.
      const all = Buffer.concat(frames);
      for (let at = 0; at < all.length; at += 37) res.write(all.subarray(at, at + 37));
      res.end();
    })());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, region, received, close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); }) };
}
