// Any OpenAI-compatible upstream (OpenAI, vLLM, Ollama, Groq, Together, OpenRouter, …):
// the caller's body goes on as bytes (edited in place where it must change), and the
// answer comes back through the shared HTTP relay untouched.
import type { Pool } from 'undici';
import { editMembers, insertMembers, memberCount, type MemberEdits } from '../wire/splice.js';
import { Relay, openPool, type HttpUpstreamOptions } from './http-relay.js';
import { Readable } from 'node:stream';
import { audioForm, type AudioRequest } from '../wire/transcriptions.js';
import type { Api, ChatCall, Provider, ResponseSink, UpstreamHandle } from './provider.js';

export interface OpenAIProviderOptions extends HttpUpstreamOptions {
  /** Send OpenAI's `prompt_cache_key` (provider prompt caching). */
  promptCacheKey?: boolean;
  /** The upstream serves the Responses API itself (default true); otherwise Responses requests are bridged onto chat. */
  responsesApi?: boolean;
  /**
   * Azure OpenAI: a route's upstream id is a deployment name, in the path
   * (`/openai/deployments/{name}/chat/completions?api-version=…`), and the key goes in `api-key`.
   */
  azure?: { apiVersion: string };
}

const INCLUDE_USAGE = '{"include_usage":true}';
/** Each API's path: under the base URL, or on Azure under the deployment (Anthropic's Messages never reaches this adapter). */
const OPERATION: Record<Api, string> = { chat: 'chat/completions', completions: 'completions', embeddings: 'embeddings', moderations: 'moderations', responses: 'responses', messages: 'chat/completions', images: 'images/generations', speech: 'audio/speech', transcriptions: 'audio/transcriptions', translations: 'audio/translations' };
const PIN = ['provider'];

/** Own enumerable keys, counted without building their array. */
function countKeys(o: object): number {
  let n = 0;
  for (const k in o) if (Object.hasOwn(o, k)) n++;
  return n;
}

export class OpenAIProvider implements Provider {
  readonly kind: 'openai' | 'azure';
  readonly name: string;
  readonly responsesApi: boolean;
  private readonly pool: Pool;
  /** Each API's path (Azure's Responses API sits beside the deployments, with the api-version). */
  private readonly paths: Record<Api, string>;
  private readonly headers: Record<string, string>;
  private readonly headersTimeout: number;
  private readonly bodyTimeout: number;
  private readonly sendsCacheKey: boolean;
  private readonly basePath: string;
  private readonly azureVersion: string | null;
  /** Azure: each deployment's path for each API, built once. */
  private readonly deploymentPaths = new Map<string, string>();

  constructor(opts: OpenAIProviderOptions) {
    this.name = opts.name;
    this.kind = opts.azure ? 'azure' : 'openai';
    this.sendsCacheKey = opts.promptCacheKey ?? false;
    this.responsesApi = opts.responsesApi ?? true;
    const { pool, basePath } = openPool(opts);
    this.pool = pool;
    this.basePath = basePath;
    this.azureVersion = opts.azure ? encodeURIComponent(opts.azure.apiVersion) : null;
    this.paths = Object.fromEntries(Object.entries(OPERATION).map(([api, op]) => [api, `${basePath}/${op}`])) as Record<Api, string>;
    if (this.azureVersion) this.paths.responses = `${basePath}/openai/responses?api-version=${this.azureVersion}`;
    this.headers = { 'content-type': 'application/json', ...opts.headers };
    if (opts.apiKey) {
      if (opts.azure) this.headers['api-key'] = opts.apiKey;
      else this.headers.authorization = `Bearer ${opts.apiKey}`;
    }
    this.headersTimeout = opts.headersTimeoutMs;
    this.bodyTimeout = opts.bodyTimeoutMs;
  }

  chat(call: ChatCall, sink: ResponseSink): UpstreamHandle {
    if (call.api === 'transcriptions' || call.api === 'translations') return this.sendForm(call, sink, call.api);
    const relay = new Relay(sink);
    this.pool.dispatch({
      path: this.pathFor(call.api ?? 'chat', call.upstreamModel),
      method: 'POST',
      headers: this.headers,
      body: this.encode(call),
      headersTimeout: this.headersTimeout,
      bodyTimeout: this.bodyTimeout,
      blocking: true,
    }, relay);
    return relay;
  }

  /** The Responses API's retrieve (GET) or delete (DELETE) of a response this upstream stored, relayed. */
  storedResponse(method: 'GET' | 'DELETE', id: string, sink: ResponseSink): UpstreamHandle {
    const relay = new Relay(sink);
    const at = encodeURIComponent(id);
    this.pool.dispatch({
      path: this.azureVersion ? `${this.basePath}/openai/responses/${at}?api-version=${this.azureVersion}` : `${this.basePath}/responses/${at}`,
      method, headers: this.headers, headersTimeout: this.headersTimeout, bodyTimeout: this.bodyTimeout,
    }, relay);
    return relay;
  }

  /**
   * Speech to text: the caller's form again, with the route's model in it, its audio read from
   * the upload's spool as it arrives (chunked while the upload lasts; with its length once the
   * upload is whole, as on a failover attempt). A failed upload ends the call with its 4xx.
   */
  private sendForm(call: ChatCall, sink: ResponseSink, api: 'transcriptions' | 'translations'): UpstreamHandle {
    const relay = new Relay(sink);
    const form = audioForm(call.params as unknown as AudioRequest, call.upstreamModel);
    const headers: Record<string, string> = { ...this.headers, 'content-type': form.contentType };
    if (form.length !== null) headers['content-length'] = String(form.length);
    this.pool.dispatch({ path: this.pathFor(api, call.upstreamModel), method: 'POST', headers, body: Readable.from(form.body, { objectMode: false }), headersTimeout: this.headersTimeout, bodyTimeout: this.bodyTimeout }, relay);
    return relay;
  }

  /** Where an API's request goes: its path, or on Azure (but for the Responses API) the deployment's, built once. */
  private pathFor(api: Api, deployment: string): string {
    if (!this.azureVersion || api === 'responses') return this.paths[api];
    const key = `${api} ${deployment}`;
    let path = this.deploymentPaths.get(key);
    if (!path) {
      path = `${this.basePath}/openai/deployments/${encodeURIComponent(deployment)}/${OPERATION[api]}?api-version=${this.azureVersion}`;
      this.deploymentPaths.set(key, path);
    }
    return path;
  }

  /**
   * The client's bytes, untouched when nothing must change, else edited in place
   * (wire/splice.ts): the upstream's model id for the requested slug, the gateway's own
   * `provider` pin dropped (upstreams would reject it), and on a chat stream the usage
   * chunk asked for (billing reads it; the gateway strips it again if the caller did not
   * ask) and the prompt-cache key added. The output cap is in the bytes already (the
   * pipeline's shape stage spliced it).
   */
  private encode(call: ChatCall): Buffer {
    const request = call.params; // the bytes carry the messages
    const set: Array<[string, string]> = [];
    const add: Array<[string, string]> = [];
    if (request.model !== call.upstreamModel) set.push(['model', JSON.stringify(call.upstreamModel)]);
    if (call.api === 'chat' || call.api === 'completions' || call.api === undefined) { // the Responses API reports usage by itself; embeddings have no stream
      if (call.stream && request.stream_options?.include_usage !== true) {
        if ('stream_options' in request) set.push(['stream_options', JSON.stringify({ ...(request.stream_options ?? {}), include_usage: true })]);
        else add.push(['stream_options', INCLUDE_USAGE]);
      }
      if (this.sendsCacheKey && call.api !== 'completions' && call.promptCacheKey && request.prompt_cache_key === undefined) add.push(['prompt_cache_key', JSON.stringify(call.promptCacheKey)]);
    }
    const pinned = 'provider' in request;
    // Untouched only when nothing changes and no key is named twice (the parsed request, which
    // kept the last of each, has as many keys as the bytes have members; the `messages`
    // placeholder of a body without them is not enumerable, so not counted).
    if (!set.length && !pinned) {
      const count = memberCount(call.body);
      if (count === countKeys(request)) return add.length ? insertMembers(call.body, count, add) : call.body;
    }
    // The splice also drops the earlier copies of a key the body names twice (the gateway read the last),
    // and names the model where the body named none (the endpoint's default, as moderations have one).
    if (!set.length) set.push(['model', JSON.stringify(call.upstreamModel)]);
    const edits: MemberEdits = { set, add, drop: pinned ? PIN : [] };
    return editMembers(call.body, edits) ?? call.body;
  }

  async close(): Promise<void> {
    await this.pool.close();
  }
}
