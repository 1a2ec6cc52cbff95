// One provider entry of the config as its adapter: each kind's public endpoint unless the
// entry names another, its credentials, and the shared HTTP settings. Start-up only (reads
// a Vertex key file synchronously); a problem throws an Error that names the entry's field.
import type { ProviderConfig } from '../config/schema.js';
import { AnthropicProvider } from './anthropic.js';
import { BedrockProvider } from './bedrock.js';
import { GeminiProvider, geminiAccess, type GeminiAccess } from './gemini.js';
import type { HttpUpstreamOptions } from './http-relay.js';
import { OpenAIProvider } from './openai.js';
import type { Provider } from './provider.js';
import { VertexAccess, readServiceAccount, vertexBaseUrl } from './vertex.js';

export type HttpSettings = Omit<HttpUpstreamOptions, 'name' | 'baseUrl' | 'apiKey' | 'headers'>;

const AZURE_API_VERSION = '2025-04-01-preview'; // takes chat completions and the Responses API alike

/** The adapter for a configured provider, or null when the entry has nothing to reach (no key and no endpoint). */
export function openProvider(name: string, p: ProviderConfig, http: HttpSettings, defaultMaxTokens: number): Provider | null {
  const common = { ...http, name, apiKey: p.api_key, headers: p.headers };
  switch (p.kind) {
    case 'sim':
      return null;
    case 'openai':
      if (!p.api_key && !p.base_url) return null;
      return new OpenAIProvider({ ...common, baseUrl: p.base_url ?? 'https://api.openai.com/v1', promptCacheKey: p.prompt_cache_key ?? name === 'openai', responsesApi: p.responses_api ?? name === 'openai' });
    case 'azure':
      return new OpenAIProvider({ ...common, baseUrl: p.base_url!, promptCacheKey: p.prompt_cache_key ?? false, responsesApi: p.responses_api ?? true, azure: { apiVersion: p.api_version ?? AZURE_API_VERSION } });
    case 'anthropic':
      if (!p.api_key && !p.base_url) return null;
      return new AnthropicProvider({ ...common, baseUrl: p.base_url ?? 'https://api.anthropic.com/v1', defaultMaxTokens });
    case 'gemini':
      if (!p.api_key && !p.base_url) return null;
      return geminiProvider(name, 'gemini', p, common, withApiPath(p.base_url ?? 'https://generativelanguage.googleapis.com', '/v1beta'), (base) => geminiAccess(base, p.api_key));
    case 'bedrock': {
      const region = p.region ?? 'us-east-1';
      return new BedrockProvider({ ...common, apiKey: undefined, baseUrl: p.base_url ?? `https://bedrock-runtime.${region}.amazonaws.com`, region, defaultMaxTokens,
        credentials: { accessKeyId: p.access_key_id!, secretAccessKey: p.secret_access_key!, sessionToken: p.session_token } });
    }
    case 'vertex': {
      let account;
      try { account = readServiceAccount(p.credentials_file!); } catch (err) {
        throw new Error(`providers.${name}.credentials_file: ${err instanceof Error ? err.message : String(err)}`);
      }
      const project = p.project ?? account.project_id;
      if (!project) throw new Error(`providers.${name}.project: required (VERTEX_PROJECT or GOOGLE_CLOUD_PROJECT), as the key file names none`);
      const location = p.location ?? 'us-central1';
      return geminiProvider(name, 'vertex', p, { ...common, apiKey: undefined, region: location === 'global' ? null : location }, withApiPath(p.base_url ?? vertexBaseUrl(location), '/v1'),
        (base) => new VertexAccess({ account, project, location, basePath: new URL(base).pathname.replace(/\/+$/, ''), tokenUrl: p.token_url }));
    }
  }
}

/** An endpoint given as a bare origin (`https://proxy.internal`) gets the API's version path; one with a path is taken as it is. */
function withApiPath(baseUrl: string, path: string): string {
  const url = new URL(baseUrl);
  return url.pathname === '/' || url.pathname === '' ? `${url.origin}${path}` : baseUrl;
}

function geminiProvider(name: string, kind: 'gemini' | 'vertex', p: ProviderConfig, common: Omit<HttpUpstreamOptions, 'baseUrl'> & { region?: string | null }, baseUrl: string, access: (base: string) => GeminiAccess): Provider {
  const cache = p.context_cache ?? { enabled: true, min_head_bytes: 16_384 };
  return new GeminiProvider({ ...common, name, baseUrl, kind, access: access(baseUrl), contextCacheMinBytes: cache.enabled ? cache.min_head_bytes : null });
}
