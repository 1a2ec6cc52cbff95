// Config = file (SLUICE_CONFIG or ./sluice.yaml|json if present) + env overrides, validated
// once by zod. Errors name the field and the fix. Sync file reads are fine here: start-up only.
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigSchema, type Config } from './schema.js';

export class ConfigError extends Error {
  override name = 'ConfigError';
}

type Env = Record<string, string | undefined>;

function readConfigFile(env: Env): { path: string | null; data: Record<string, unknown> } {
  const explicit = env.SLUICE_CONFIG;
  const candidates = explicit ? [explicit] : ['./sluice.yaml', './sluice.yml', './sluice.json'];
  for (const path of candidates) {
    if (!existsSync(path)) {
      if (explicit) throw new ConfigError(`SLUICE_CONFIG points at ${path}, which does not exist`);
      continue;
    }
    const text = readFileSync(path, 'utf8');
    let data: unknown;
    try {
      data = path.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
    } catch (err) {
      throw new ConfigError(`${path}: not valid ${path.endsWith('.json') ? 'JSON' : 'YAML'}: ${(err as Error).message}`);
    }
    if (data === null || data === undefined) data = {};
    if (typeof data !== 'object' || Array.isArray(data)) throw new ConfigError(`${path}: the top level must be a mapping`);
    return { path, data: data as Record<string, unknown> };
  }
  return { path: null, data: {} };
}

function intFromEnv(env: Env, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  // Digits only (Number() would also take 0x10, 1e1 and ' 2' as whole numbers).
  const n = /^\s*-?\d{1,15}\s*$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(n)) throw new ConfigError(`${name}=${raw.slice(0, 40)}: must be a whole number`);
  return n;
}

/** Env wins over the file for the common knobs SPEC names. */
function applyEnv(data: Record<string, unknown>, env: Env): Record<string, unknown> {
  const out: Record<string, unknown> = { ...data };
  const set = (key: string, value: unknown) => { if (value !== undefined && value !== '') out[key] = value; };
  set('host', env.HOST);
  set('port', intFromEnv(env, 'PORT'));
  set('data_dir', env.SLUICE_DATA_DIR);
  if (env.SLUICE_TRUST_PROXY_HOPS) out.trust_proxy_hops = intFromEnv(env, 'SLUICE_TRUST_PROXY_HOPS');
  set('workers', intFromEnv(env, 'SLUICE_WORKERS'));
  // `auto` (any case): the default, over a config file's number too (the env wins).
  if (env.SLUICE_THREADS?.trim().toLowerCase() === 'auto') delete out.threads;
  else set('threads', intFromEnv(env, 'SLUICE_THREADS'));
  const mainHttp = env.SLUICE_THREADS_MAIN_HTTP;
  if (mainHttp !== undefined && mainHttp !== '') {
    if (mainHttp !== 'on' && mainHttp !== 'off') throw new ConfigError(`SLUICE_THREADS_MAIN_HTTP=${mainHttp.slice(0, 40)}: must be on or off`);
    out.threads_main_http = mainHttp === 'on';
  }
  set('master_key', env.SLUICE_MASTER_KEY);
  set('baseline_model', env.BASELINE_MODEL);
  set('max_body_bytes', intFromEnv(env, 'SLUICE_MAX_BODY_BYTES'));
  if (env.SLUICE_CORS_ORIGINS !== undefined) out.http = { ...((out.http as Record<string, unknown> | undefined) ?? {}), cors_origins: env.SLUICE_CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean) };
  const metrics = { ...((out.metrics as Record<string, unknown> | undefined) ?? {}) };
  if (env.SLUICE_METRICS === 'on' || env.SLUICE_METRICS === 'off') metrics.enabled = env.SLUICE_METRICS === 'on';
  if (env.SLUICE_METRICS_TOKEN) metrics.token = env.SLUICE_METRICS_TOKEN;
  if (env.SLUICE_METRICS_PORT) metrics.port = intFromEnv(env, 'SLUICE_METRICS_PORT');
  out.metrics = metrics;
  if (env.SLUICE_PUBLIC_STATS === 'on' || env.SLUICE_PUBLIC_STATS === 'off') out.stats = { public: env.SLUICE_PUBLIC_STATS === 'on' };
  if (env.SLUICE_ACCESS_LOG) out.logs = { ...((out.logs as Record<string, unknown> | undefined) ?? {}), access: env.SLUICE_ACCESS_LOG };
  // OpenTelemetry's own variables: the traces endpoint (or the OTLP base, + /v1/traces), the sampler's ratio, the service name.
  // OTEL_SDK_DISABLED=true turns tracing off, whatever else says.
  const otlp = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || (env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.trim().replace(/\/+$/, '')}/v1/traces` : '');
  const samplerArg = env.OTEL_TRACES_SAMPLER_ARG?.trim();
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') out.otel = { ...((out.otel as Record<string, unknown> | undefined) ?? {}), endpoint: undefined };
  else if (otlp || samplerArg || env.OTEL_SERVICE_NAME) {
    const otel: Record<string, unknown> = { ...((out.otel as Record<string, unknown> | undefined) ?? {}) };
    if (otlp) otel.endpoint = otlp;
    if (samplerArg) {
      const ratio = Number(samplerArg);
      if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) throw new ConfigError(`OTEL_TRACES_SAMPLER_ARG=${samplerArg.slice(0, 40)}: must be a number from 0 to 1`);
      otel.sample_ratio = ratio;
    }
    if (env.OTEL_SERVICE_NAME) otel.service_name = env.OTEL_SERVICE_NAME;
    out.otel = otel;
  }
  if (env.SLUICE_REDIS_URL || env.SLUICE_POSTGRES_URL) {
    const cluster = { ...((out.cluster as Record<string, unknown> | undefined) ?? {}) };
    if (env.SLUICE_REDIS_URL) cluster.redis_url = env.SLUICE_REDIS_URL.trim();
    if (env.SLUICE_POSTGRES_URL) cluster.postgres_url = env.SLUICE_POSTGRES_URL.trim();
    out.cluster = cluster;
  }
  if (env.SLUICE_API_KEYS) out.api_keys = env.SLUICE_API_KEYS.split(',').map((k) => k.trim()).filter(Boolean);

  const providers = { ...((out.providers as Record<string, Record<string, unknown>> | undefined) ?? {}) };
  const fromEnv = (name: string, kind: string, keyVar: string, urlVar: string) => {
    const key = env[keyVar];
    const url = env[urlVar];
    if (!key && !url) return;
    const current: Record<string, unknown> = { kind, ...(providers[name] ?? {}) };
    if (key) current.api_key = key;
    if (url) current.base_url = url;
    providers[name] = current;
  };
  fromEnv('openai', 'openai', 'OPENAI_API_KEY', 'OPENAI_BASE_URL');
  fromEnv('anthropic', 'anthropic', 'ANTHROPIC_API_KEY', 'ANTHROPIC_BASE_URL');
  fromEnv('gemini', 'gemini', 'GEMINI_API_KEY', 'GEMINI_BASE_URL');
  // The clouds: each provider from its SDK's standard variables, the endpoint overridable beside them.
  const cloud = (name: string, kind: string, trigger: string | undefined, fields: Record<string, string | undefined>) => {
    if (!trigger) return;
    const current: Record<string, unknown> = { kind, ...(providers[name] ?? {}) };
    for (const [field, value] of Object.entries(fields)) if (value) current[field] = value;
    providers[name] = current;
  };
  cloud('bedrock', 'bedrock', env.AWS_ACCESS_KEY_ID, {
    access_key_id: env.AWS_ACCESS_KEY_ID, secret_access_key: env.AWS_SECRET_ACCESS_KEY, session_token: env.AWS_SESSION_TOKEN,
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION, base_url: env.BEDROCK_BASE_URL,
  });
  cloud('vertex', 'vertex', env.GOOGLE_APPLICATION_CREDENTIALS, {
    credentials_file: env.GOOGLE_APPLICATION_CREDENTIALS, project: env.VERTEX_PROJECT ?? env.GOOGLE_CLOUD_PROJECT,
    location: env.VERTEX_LOCATION ?? env.GOOGLE_CLOUD_LOCATION, base_url: env.VERTEX_BASE_URL, token_url: env.VERTEX_TOKEN_URL,
  });
  cloud('azure', 'azure', env.AZURE_OPENAI_API_KEY ?? env.AZURE_OPENAI_ENDPOINT, {
    api_key: env.AZURE_OPENAI_API_KEY, base_url: env.AZURE_OPENAI_ENDPOINT, api_version: env.AZURE_OPENAI_API_VERSION ?? env.OPENAI_API_VERSION,
  });
  // AZURE_OPENAI_DEPLOYMENTS: `slug=deployment` pairs, comma-separated (e.g. openai/gpt-4.1-mini=prod-mini).
  if (env.AZURE_OPENAI_DEPLOYMENTS && providers.azure) {
    const deployments: Record<string, string> = { ...((providers.azure.deployments as Record<string, string> | undefined) ?? {}) };
    for (const pair of env.AZURE_OPENAI_DEPLOYMENTS.split(',')) {
      const [slug, deployment] = pair.split('=').map((x) => x.trim());
      if (!slug || !deployment) throw new ConfigError(`AZURE_OPENAI_DEPLOYMENTS: '${pair.trim()}' is not slug=deployment`);
      deployments[slug] = deployment;
    }
    providers.azure.deployments = deployments;
  }
  if (env.SLUICE_SIM === 'on' || env.SLUICE_SIM === 'off') {
    providers.sim = { kind: 'sim', ...(providers.sim ?? {}), enabled: env.SLUICE_SIM === 'on' };
  }
  out.providers = providers;
  return out;
}

/** The env variables that set a top-level field whole (applyEnv): an error in one names the variable too. */
const FROM_ENV: Record<string, string> = {
  host: 'HOST', port: 'PORT', data_dir: 'SLUICE_DATA_DIR', trust_proxy_hops: 'SLUICE_TRUST_PROXY_HOPS', workers: 'SLUICE_WORKERS',
  threads: 'SLUICE_THREADS', master_key: 'SLUICE_MASTER_KEY', baseline_model: 'BASELINE_MODEL', max_body_bytes: 'SLUICE_MAX_BODY_BYTES',
};

function describeIssues(error: z.ZodError, where: string, env: Env): string {
  const lines = error.issues.map((issue) => {
    const field = issue.path.length ? issue.path.join('.') : '(top level)';
    let hint = '';
    if (issue.code === 'unrecognized_keys') hint = ` (remove it; known fields are in src/config/schema.ts)`;
    const variable = issue.path.length === 1 ? FROM_ENV[String(issue.path[0])] : undefined;
    const from = variable && env[variable] ? ` (from ${variable})` : '';
    return `  - ${field}${from}: ${issue.message}${hint}`;
  });
  return `invalid configuration (${where}):\n${lines.join('\n')}`;
}

export function loadConfig(env: Env = process.env): Config {
  const { path, data } = readConfigFile(env);
  const merged = applyEnv(data, env);
  const parsed = ConfigSchema.safeParse(merged);
  if (!parsed.success) throw new ConfigError(describeIssues(parsed.error, path ? `${path} + env` : 'env', env));
  // Threads left to the default: one when traces are exported (a traced request is handed to
  // the main thread whole, so other threads would only add a hop to every request).
  if (merged.threads === undefined && parsed.data.otel.endpoint !== undefined) parsed.data.threads = 1;
  return parsed.data;
}
