// A local fake of Google's Gemini API as AI Studio serves it (`/v1beta/models/{m}:method`,
// an x-goog-api-key) and as Vertex AI serves it (`/v1/projects/{p}/locations/{l}/publishers/
// google/models/{m}:method` under v1 or v1beta1, a bearer token), with Google's OAuth token endpoint for service
// accounts: it checks the signed JWT grant (RS256 with the account's public key, issuer,
// audience, scope) before it hands out a token. generateContent answers JSON;
// streamGenerateContent?alt=sse answers SSE with \r\n line ends, as Google's servers do.
// Checked by the official @google/genai SDK in gemini-upstream.test.ts. Behaviour is chosen
// by the model id; every request is recorded.
import { createVerify, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export const GEMINI_KEY = 'AIza-fake-gemini-key';
export const GEMINI_WORDS = ['Hello', ' from', ' the', ' fake', ' Gemini', '.'];
/** The signature every function call of this fake carries, and must carry when it is sent back. */
export const THOUGHT_SIGNATURE = 'CiQBjz1rX2Zha2UtdGhvdWdodC1zaWduYXR1cmU=';
export const SERVICE_ACCOUNT_EMAIL = 'sluice-test@fake-project.iam.gserviceaccount.com';

export interface GeminiReceived {
  api: 'gemini' | 'vertex';
  path: string;
  model: string;
  stream: boolean;
  headers: IncomingMessage['headers'];
  body: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  aborted: boolean;
}

export interface FakeGemini {
  url: string;
  received: GeminiReceived[];
  /** Token grants the endpoint accepted (and refused). */
  grants: { accepted: number; refused: number };
  /** A service-account key file's contents whose grants this fake accepts (token_uri: this fake). */
  serviceAccount: Record<string, string>;
  /** Seconds each issued token lives (default 3600). */
  tokenLifetime: number;
  /** Tokens issued so far: a request with any of them is authorised. */
  tokens: Set<string>;
  /** The token endpoint takes grants and never answers. */
  tokenHang: boolean;
  /** Context caches created, by name. */
  caches: Map<string, { model: string; head: string; tokens: number; expires: number }>;
  close(): Promise<void>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' });
  res.end(JSON.stringify(body));
}

/** Google's error envelope. */
function error(res: ServerResponse, code: number, status: string, message: string): void {
  json(res, code, { error: { code, message, status } });
}

function b64url(s: string): Buffer {
  return Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/** A JWT grant as Google's token endpoint checks it. */
function grantValid(assertion: string, key: KeyObject): boolean {
  const [h, p, sig] = assertion.split('.');
  if (!h || !p || !sig) return false;
  const verifier = createVerify('RSA-SHA256');
  verifier.update(`${h}.${p}`);
  if (!verifier.verify(key, b64url(sig))) return false;
  const claims = JSON.parse(b64url(p).toString()) as Record<string, unknown>;
  const now = Date.now() / 1000;
  return claims.iss === SERVICE_ACCOUNT_EMAIL && claims.aud === 'https://oauth2.googleapis.com/token'
    && String(claims.scope).includes('https://www.googleapis.com/auth/cloud-platform') && Number(claims.exp) > now && Number(claims.iat) <= now + 60;
}

export async function startFakeGemini(): Promise<FakeGemini> {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const received: GeminiReceived[] = [];
  let issued = 0;
  const fake: FakeGemini = {
    url: '', received, grants: { accepted: 0, refused: 0 }, serviceAccount: {}, tokenLifetime: 3600, tokens: new Set(), caches: new Map(), tokenHang: false,
    close: async () => {},
  };
  const server: Server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(parts).toString('utf8');
      const url = req.url ?? '';
      if (url === '/token') {
        if (fake.tokenHang) return; // accepts the grant and never answers
        const form = new URLSearchParams(raw);
        if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer' || !grantValid(form.get('assertion') ?? '', publicKey)) {
          fake.grants.refused++;
          return json(res, 400, { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' });
        }
        fake.grants.accepted++;
        const token = `ya29.fake-token-${++issued}`;
        fake.tokens.add(token);
        return json(res, 200, { access_token: token, expires_in: fake.tokenLifetime, token_type: 'Bearer' });
      }
      // Context caches: created with a model, a head and a ttl; named later instead of the head.
      const cacheCreate = url === '/v1beta/cachedContents' ? 'gemini' : /^\/v1(?:beta1)?\/projects\/[^/]+\/locations\/[^/]+\/cachedContents$/.test(url) ? 'vertex' : null;
      if (cacheCreate) {
        if (cacheCreate === 'gemini' ? req.headers['x-goog-api-key'] !== GEMINI_KEY : !fake.tokens.has(String(req.headers.authorization ?? '').replace(/^Bearer /, ''))) {
          return error(res, 401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.');
        }
        let spec: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
        try { spec = JSON.parse(raw) as typeof spec; } catch { return error(res, 400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.'); }
        const tokens = JSON.stringify([spec.systemInstruction ?? null, spec.tools ?? null, spec.toolConfig ?? null]).length >> 2;
        if (typeof spec.model !== 'string' || !/^(models\/|projects\/[^/]+\/locations\/[^/]+\/publishers\/google\/models\/)[^/]+$/.test(spec.model)) return error(res, 400, 'INVALID_ARGUMENT', 'model: must be a model resource name');
        if (tokens < 1024 || spec.model.endsWith('/uncacheable')) return error(res, 400, 'INVALID_ARGUMENT', `Cached content is too small. total_token_count=${tokens}, min_total_token_count=1024`);
        if (!/^\d+s$/.test(String(spec.ttl))) return error(res, 400, 'INVALID_ARGUMENT', 'ttl: a duration such as 300s');
        const name = `${cacheCreate === 'vertex' ? url.slice(url.indexOf('projects/'), url.lastIndexOf('/')) + '/' : ''}cachedContents/fake${fake.caches.size + 1}`;
        const expireTime = new Date(Date.now() + parseInt(String(spec.ttl), 10) * 1000).toISOString();
        fake.caches.set(name, { model: spec.model, head: JSON.stringify([spec.systemInstruction ?? null, spec.tools ?? null, spec.toolConfig ?? null]), tokens, expires: Date.parse(expireTime) });
        return json(res, 200, { name, model: spec.model, createTime: new Date().toISOString(), updateTime: new Date().toISOString(), expireTime, usageMetadata: { totalTokenCount: tokens } });
      }
      // Embeddings: AI Studio's batchEmbedContents (no token counts), Vertex's predict (a count per instance).
      const studioEmbed = /^\/v1beta\/models\/([^/:]+):batchEmbedContents$/.exec(url);
      const vertexEmbed = /^\/v1(?:beta1)?\/projects\/[^/]+\/locations\/[^/]+\/publishers\/google\/models\/([^/:]+):predict$/.exec(url);
      if (req.method === 'POST' && (studioEmbed || vertexEmbed)) {
        if (studioEmbed ? req.headers['x-goog-api-key'] !== GEMINI_KEY : !fake.tokens.has(String(req.headers.authorization ?? '').replace(/^Bearer /, ''))) {
          return error(res, 401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.');
        }
        let spec: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
        try { spec = JSON.parse(raw) as typeof spec; } catch { return error(res, 400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.'); }
        const model = decodeURIComponent((studioEmbed ?? vertexEmbed)![1]!);
        received.push({ api: studioEmbed ? 'gemini' : 'vertex', path: url, model, stream: false, headers: req.headers, body: spec, aborted: false });
        const vector = (text: string, dims: number) => Array.from({ length: dims }, (_, i) => ((text.charCodeAt(i % Math.max(1, text.length)) || 0) % 13) / 13 - 0.5);
        if (studioEmbed) {
          const requests = Array.isArray(spec.requests) ? spec.requests as Array<Record<string, any>> : []; // eslint-disable-line @typescript-eslint/no-explicit-any
          if (!requests.length) return error(res, 400, 'INVALID_ARGUMENT', '* BatchEmbedContentsRequest.requests: must not be empty');
          if (requests.some((r) => r.model !== `models/${model}`)) return error(res, 400, 'INVALID_ARGUMENT', '* BatchEmbedContentsRequest.requests[0].model: must match the request model');
          return json(res, 200, { embeddings: requests.map((r) => ({ values: vector(String(r.content?.parts?.[0]?.text ?? ''), r.outputDimensionality ?? 8) })) });
        }
        const instances = Array.isArray(spec.instances) ? spec.instances as Array<{ content?: string }> : [];
        if (!instances.length) return error(res, 400, 'INVALID_ARGUMENT', 'instances: must not be empty');
        const dims = typeof spec.parameters?.outputDimensionality === 'number' ? spec.parameters.outputDimensionality : 8;
        return json(res, 200, { predictions: instances.map((i) => ({ embeddings: { values: vector(String(i.content ?? ''), dims), statistics: { token_count: Math.max(1, String(i.content ?? '').length >> 2), truncated: false } } })) });
      }
      const studio = /^\/v1beta\/models\/([^/:]+):(generateContent|streamGenerateContent)(\?alt=sse)?$/.exec(url);
      const vertex = /^\/v1(?:beta1)?\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/google\/models\/([^/:]+):(generateContent|streamGenerateContent)(\?alt=sse)?$/.exec(url);
      if (req.method !== 'POST' || (!studio && !vertex)) return error(res, 404, 'NOT_FOUND', `Unknown path ${url.slice(0, 100)}`);
      const api = studio ? 'gemini' : 'vertex';
      if (api === 'gemini' && req.headers['x-goog-api-key'] !== GEMINI_KEY) return error(res, 400, 'INVALID_ARGUMENT', 'API key not valid. Please pass a valid API key.');
      if (api === 'vertex' && !fake.tokens.has(String(req.headers.authorization ?? '').replace(/^Bearer /, ''))) {
        return error(res, 401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.');
      }
      const model = decodeURIComponent(studio ? studio[1]! : vertex![3]!);
      const method = studio ? studio[2]! : vertex![4]!;
      const stream = method === 'streamGenerateContent';
      if (stream && !(studio ? studio[3] : vertex![5])) return error(res, 400, 'INVALID_ARGUMENT', 'this fake streams only as SSE (alt=sse)');
      let body: GeminiReceived['body'] = {};
      try { body = JSON.parse(raw) as typeof body; } catch { return error(res, 400, 'INVALID_ARGUMENT', 'Invalid JSON payload received.'); }
      const rec: GeminiReceived = { api, path: url, model, stream, headers: req.headers, body, aborted: false };
      received.push(rec);
      res.on('close', () => { if (!res.writableFinished) rec.aborted = true; });
      if (model === 'fail-429') return error(res, 429, 'RESOURCE_EXHAUSTED', 'Resource has been exhausted (e.g. check quota).');
      if (model === 'fail-400') return error(res, 400, 'INVALID_ARGUMENT', '* GenerateContentRequest.contents: contents is not specified');
      if (!Array.isArray(body.contents) || body.contents.length === 0) return error(res, 400, 'INVALID_ARGUMENT', '* GenerateContentRequest.contents: contents is not specified');
      let cachedTokens = 4; // Gemini's implicit cache, on every request
      if (body.cachedContent !== undefined) {
        const cache = fake.caches.get(String(body.cachedContent));
        if (!cache || cache.expires < Date.now()) return error(res, 403, 'PERMISSION_DENIED', `CachedContent not found (or permission denied): ${String(body.cachedContent).slice(0, 80)}`);
        if (!cache.model.endsWith(`/${model}`)) return error(res, 400, 'INVALID_ARGUMENT', 'Model used by GenerateContent request and CachedContent has to be the same.');
        if (body.systemInstruction || body.tools || body.toolConfig) return error(res, 400, 'INVALID_ARGUMENT', 'CachedContent can not be used with GenerateContent request setting system_instruction, tools or tool_config.');
        cachedTokens = cache.tokens;
        const head = JSON.parse(cache.head) as [unknown, unknown, unknown];
        body = { ...body, systemInstruction: head[0] ?? undefined, tools: head[1] ?? undefined, toolConfig: head[2] ?? undefined }; // answer as if the head were sent
      }
      const usage = { promptTokenCount: (raw.length >> 2) + (body.cachedContent ? cachedTokens : 0), candidatesTokenCount: 0, totalTokenCount: 0, cachedContentTokenCount: cachedTokens, thoughtsTokenCount: 3 };
      if (model === 'blocked') {
        const answer = { promptFeedback: { blockReason: 'SAFETY', safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH' }] }, usageMetadata: usage, modelVersion: model };
        if (!stream) return json(res, 200, answer);
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: ${JSON.stringify(answer)}\r\n\r\n`);
        return;
      }
      const contents = body.contents as Array<{ role: string; parts: Array<Record<string, unknown>> }>;
      // As Gemini 3 does: a function call sent back without the thought signature it came with is refused.
      if (contents.some((c) => c.parts.some((p) => 'functionCall' in p && p.thoughtSignature !== THOUGHT_SIGNATURE))) {
        return error(res, 400, 'INVALID_ARGUMENT', 'Function call is missing a thought_signature in functionCall parts.');
      }
      const sawResult = contents.at(-1)!.parts.some((p) => 'functionResponse' in p);
      const declared = (body.tools?.[0]?.functionDeclarations ?? []) as Array<{ name: string }>;
      const mode = body.toolConfig?.functionCallingConfig?.mode;
      const call = declared.length && !sawResult && mode !== 'NONE' ? declared[0]!.name : null;
      const jsonOut = body.generationConfig?.responseMimeType === 'application/json';
      const words = sawResult ? ['It', ' is', ' sunny', '.'] : jsonOut ? ['{"city":', ' "Paris"}'] : GEMINI_WORDS;
      const n = Number(body.generationConfig?.candidateCount ?? 1);
      usage.candidatesTokenCount = (call ? 5 : words.length) * n;
      usage.totalTokenCount = usage.promptTokenCount + usage.candidatesTokenCount + usage.thoughtsTokenCount;
      const finishReason = model === 'unsafe' ? 'SAFETY' : 'STOP';
      const candidate = (index: number, parts: object[], finish?: string) => ({ index, content: { role: 'model', parts }, ...(finish ? { finishReason: finish } : {}) });
      if (!stream) {
        const parts = call ? [{ functionCall: { name: call, args: { location: 'Paris' } }, thoughtSignature: THOUGHT_SIGNATURE }] : [{ text: 'Let me think.', thought: true }, { text: words.join('') }];
        if (model === 'no-usage') return json(res, 200, { candidates: [candidate(0, parts, finishReason)], modelVersion: model });
        return json(res, 200, { candidates: Array.from({ length: n }, (_, i) => candidate(i, parts, finishReason)), usageMetadata: usage, modelVersion: model, responseId: 'fake-response-1' });
      }
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const send = (event: object) => res.write(`data: ${JSON.stringify({ ...event, modelVersion: model, responseId: 'fake-response-1' })}\r\n\r\n`);
      if (model === 'slow-stream') { // a long answer, an event every 50 ms: aborting mid-way must close this connection
        let i = 0;
        const timer = setInterval(() => {
          if (res.destroyed || i >= 200) { clearInterval(timer); if (!res.destroyed) res.end(); return; }
          send({ candidates: [candidate(0, [{ text: ` word${i++}` }])] });
        }, 50);
        return;
      }
      if (model === 'huge-event') { // one event that never closes: 17 Mi characters and no blank line
        res.write('data: {"candidates":[{"content":{"parts":[{"text":"');
        const mib = 'x'.repeat(1 << 20);
        for (let i = 0; i < 17; i++) res.write(mib);
        res.end();
        return;
      }
      if (model === 'finish-linger') { // the whole answer, its finish and its usage, and the connection stays open
        send({ candidates: [candidate(0, [{ text: GEMINI_WORDS.join('') }], 'STOP')], usageMetadata: { ...usage, candidatesTokenCount: GEMINI_WORDS.length } });
        return;
      }
      if (model === 'cached-over') { // a cached count over the whole prompt: usage no answer can have
        send({ candidates: [candidate(0, [{ text: 'Hi.' }], 'STOP')], usageMetadata: { ...usage, cachedContentTokenCount: 90_000_000, promptTokenCount: 10, candidatesTokenCount: 2 } });
        res.end();
        return;
      }
      if (model === 'error-first') { // a 200 whose first event is an error: nothing said yet
        send({ error: { code: 429, message: 'Resource has been exhausted (e.g. check quota).', status: 'RESOURCE_EXHAUSTED' } });
      } else if (model === 'cut-stream') { // half an answer, then the connection ends: no finishReason
        send({ candidates: [candidate(0, [{ text: 'Half an ans' }])] });
      } else if (model === 'bad-part') { // a part that does not fit the schema beside one that does
        send({ candidates: [candidate(0, [{ text: 5 }, { text: 'Kept.' }], 'STOP')], usageMetadata: usage });
      } else if (call && model === 'parallel-calls') { // two calls, one an event, neither with an id
        send({ candidates: [candidate(0, [{ functionCall: { name: 'get_weather', args: { location: 'Paris' } }, thoughtSignature: THOUGHT_SIGNATURE }])] });
        send({ candidates: [candidate(0, [{ functionCall: { name: 'get_time', args: { zone: 'CET' } }, thoughtSignature: THOUGHT_SIGNATURE }], 'STOP')], usageMetadata: usage });
      } else if (call) {
        send({ candidates: [candidate(0, [{ functionCall: { name: call, args: { location: 'Paris' } }, thoughtSignature: THOUGHT_SIGNATURE }], 'STOP')], usageMetadata: usage });
      } else {
        for (const [i, w] of words.entries()) {
          const last = i === words.length - 1;
          send({ candidates: Array.from({ length: n }, (_, c) => candidate(c, [{ text: w }], last ? finishReason : undefined)),
            usageMetadata: last ? usage : { promptTokenCount: usage.promptTokenCount } });
        }
      }
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  fake.url = `http://127.0.0.1:${port}`;
  fake.serviceAccount = { type: 'service_account', project_id: 'fake-project', private_key_id: 'k1', private_key: pem, client_email: SERVICE_ACCOUNT_EMAIL,
    client_id: '1', token_uri: `${fake.url}/token` };
  fake.close = () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()); });
  return fake;
}
