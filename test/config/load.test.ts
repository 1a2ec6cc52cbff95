import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { autoThreads, mainHttp, usableCores } from '../../src/config/schema.js';
import { startGateway, tempDataDir } from '../helpers/gateway.js';

t.test('defaults with no file', (t) => {
  const c = loadConfig({});
  t.equal(c.port, 8080);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.max_body_bytes, 4 * 1024 * 1024);
  t.same(c.providers, {});
  t.end();
});

t.test('event-loop threads: one per core from 4 cores (at most 6), the main thread off the port from 6, SLUICE_THREADS over both', (t) => {
  t.same([1, 2, 3, 4, 5, 6, 8, 64].map((cores) => autoThreads(cores)), [1, 1, 1, 4, 5, 6, 6, 6]);
  // The cores: those the process may run on, within the CPU quota of its cgroup and those above it (v2), or v1's.
  const files = (f: Record<string, string>) => (path: string) => f[path] ?? null;
  const self = { '/proc/self/cgroup': '0::/system.slice/sluice.service\n' };
  t.equal(usableCores(16, files({})), 16, 'no cgroup files: every core');
  t.equal(usableCores(16, files({ ...self, '/sys/fs/cgroup/cpu.max': 'max 100000\n', '/sys/fs/cgroup/system.slice/sluice.service/cpu.max': 'max 100000\n' })), 16, 'v2, no quota');
  t.equal(usableCores(16, files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '200000 100000\n' })), 2, 'v2, in a container (its cgroup is the root): 2 CPUs');
  t.equal(usableCores(16, files({ ...self, '/sys/fs/cgroup/system.slice/sluice.service/cpu.max': '400000 100000' })), 4, "v2, the service's own quota");
  t.equal(usableCores(16, files({ ...self, '/sys/fs/cgroup/system.slice/cpu.max': '300000 100000', '/sys/fs/cgroup/system.slice/sluice.service/cpu.max': 'max 100000' })), 3, "v2, a parent's quota");
  t.equal(usableCores(16, files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '350000 100000' })), 3, 'v2, 3.5 CPUs: 3 (threads pay from whole cores)');
  t.equal(usableCores(16, files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '50000 100000' })), 1, 'half a CPU: 1');
  t.equal(usableCores(2, files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': '800000 100000' })), 2, 'never more than the cores');
  t.equal(usableCores(16, files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '400000\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), 4, 'v1, 4 CPUs');
  t.equal(usableCores(16, files({ '/sys/fs/cgroup/cpu/cpu.cfs_quota_us': '-1\n', '/sys/fs/cgroup/cpu/cpu.cfs_period_us': '100000\n' })), 16, 'v1, no quota');
  t.equal(usableCores(16, files({ '/proc/self/cgroup': '0::/\n', '/sys/fs/cgroup/cpu.max': 'garbage' })), 16, 'unreadable: every core');
  t.equal(loadConfig({}).threads, autoThreads(), "unset: the machine's");
  t.equal(loadConfig({ SLUICE_THREADS: 'auto' }).threads, autoThreads());
  t.equal(loadConfig({ SLUICE_THREADS: '3' }).threads, 3);
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }).threads, 1, 'traced (every request handed to the main thread): one, whatever the cores');
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', SLUICE_THREADS: '3' }).threads, 3, 'unless set');
  t.throws(() => loadConfig({ SLUICE_THREADS: '0' }), /threads \(from SLUICE_THREADS\): /, 'a range error names the variable');
  t.throws(() => loadConfig({ PORT: '70000' }), /port \(from PORT\): /);
  t.throws(() => loadConfig({ SLUICE_THREADS: 'many' }), /SLUICE_THREADS=many: must be a whole number/);
  for (const odd of ['0x2', '1e1', '2.0', '+', '']) if (odd) t.throws(() => loadConfig({ SLUICE_THREADS: odd }), /must be a whole number/, `${odd}: digits only`);
  t.equal(loadConfig({ SLUICE_THREADS: ' 2 ' }).threads, 2);
  t.equal(loadConfig({ SLUICE_THREADS: 'AUTO ' }).threads, autoThreads(), 'auto in any case');
  const dir = tempDataDir();
  writeFileSync(join(dir, 'sluice.json'), JSON.stringify({ threads: 4 }));
  t.equal(loadConfig({ SLUICE_CONFIG: join(dir, 'sluice.json') }).threads, 4, "the file's");
  t.equal(loadConfig({ SLUICE_CONFIG: join(dir, 'sluice.json'), SLUICE_THREADS: 'auto' }).threads, autoThreads(), 'SLUICE_THREADS=auto over the file');
  t.same([1, 4, 5, 6, 8].map((threads) => mainHttp({ threads, threads_main_http: undefined })), [true, true, true, false, false]);
  t.equal(mainHttp(loadConfig({ SLUICE_THREADS: '8', SLUICE_THREADS_MAIN_HTTP: 'on' })), true, 'SLUICE_THREADS_MAIN_HTTP over the default');
  t.equal(mainHttp(loadConfig({ SLUICE_THREADS: '2', SLUICE_THREADS_MAIN_HTTP: 'off' })), false);
  t.end();
});

t.test('env overrides and provider keys enable providers', (t) => {
  const c = loadConfig({ PORT: '9999', OPENAI_API_KEY: 'sk-x', OPENAI_BASE_URL: 'http://127.0.0.1:1/v1', SLUICE_API_KEYS: 'sk-operator-key-0001, sk-operator-key-0002' });
  t.equal(c.port, 9999);
  t.equal(c.providers.openai?.api_key, 'sk-x');
  t.equal(c.api_keys.length, 2);
  t.end();
});

t.test('errors name the field', (t) => {
  const dir = tempDataDir();
  const path = join(dir, 'sluice.yaml');
  writeFileSync(path, 'port: "eighty"\nproviders:\n  groq:\n    kind: openai\n    base_url: not-a-url\nbilling:\n  markup: -1\n  typo: 1\n');
  try {
    loadConfig({ SLUICE_CONFIG: path });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    const msg = (err as Error).message;
    t.match(msg, /port:/);
    t.match(msg, /providers\.groq\.base_url/);
    t.match(msg, /billing\.markup/);
    t.match(msg, /billing.*typo|typo/);
  }
  t.throws(() => loadConfig({ PORT: 'abc' }), /PORT=abc/);
  t.throws(() => loadConfig({ SLUICE_CONFIG: join(dir, 'missing.yaml') }), /does not exist/);
  t.end();
});

t.test('the clouds from their standard env vars, each endpoint overridable', (t) => {
  const c = loadConfig({
    AWS_ACCESS_KEY_ID: 'AKIAX', AWS_SECRET_ACCESS_KEY: 'secret', AWS_SESSION_TOKEN: 'session', AWS_REGION: 'eu-west-1', BEDROCK_BASE_URL: 'http://127.0.0.1:1',
    GEMINI_API_KEY: 'AIzaX', GEMINI_BASE_URL: 'http://127.0.0.1:2/v1beta',
    GOOGLE_APPLICATION_CREDENTIALS: '/keys/sa.json', GOOGLE_CLOUD_PROJECT: 'my-project-1', GOOGLE_CLOUD_LOCATION: 'europe-west4', VERTEX_BASE_URL: 'http://127.0.0.1:3/v1',
    AZURE_OPENAI_API_KEY: 'azkey', AZURE_OPENAI_ENDPOINT: 'https://res.openai.azure.com', AZURE_OPENAI_DEPLOYMENTS: 'openai/gpt-4.1-mini=prod-mini, openai/gpt-4o=big',
  });
  t.match(c.providers.bedrock, { kind: 'bedrock', access_key_id: 'AKIAX', secret_access_key: 'secret', session_token: 'session', region: 'eu-west-1', base_url: 'http://127.0.0.1:1' });
  t.match(c.providers.gemini, { kind: 'gemini', api_key: 'AIzaX', base_url: 'http://127.0.0.1:2/v1beta' });
  t.match(c.providers.vertex, { kind: 'vertex', credentials_file: '/keys/sa.json', project: 'my-project-1', location: 'europe-west4', base_url: 'http://127.0.0.1:3/v1' });
  t.match(c.providers.azure, { kind: 'azure', api_key: 'azkey', base_url: 'https://res.openai.azure.com', deployments: { 'openai/gpt-4.1-mini': 'prod-mini', 'openai/gpt-4o': 'big' } });
  t.throws(() => loadConfig({ AZURE_OPENAI_API_KEY: 'k', AZURE_OPENAI_ENDPOINT: 'https://r.openai.azure.com', AZURE_OPENAI_DEPLOYMENTS: 'openai/gpt-4o' }), /AZURE_OPENAI_DEPLOYMENTS: 'openai\/gpt-4o' is not slug=deployment/);
  t.end();
});

t.test('provider entries: what each kind needs, and fields of another kind, are named', (t) => {
  const dir = tempDataDir();
  const path = join(dir, 'sluice.json');
  writeFileSync(path, JSON.stringify({ providers: {
    aws: { kind: 'bedrock', region: 'moon-1' },
    az: { kind: 'azure', api_key: 'k' },
    gcp: { kind: 'vertex', project: 'p' },
    oa: { kind: 'openai', api_key: 'k', region: 'us-east-1' },
  } }));
  try {
    loadConfig({ SLUICE_CONFIG: path });
    t.fail('should throw');
  } catch (err) {
    const msg = (err as Error).message;
    t.match(msg, /providers\.aws\.region: an AWS region/);
    t.match(msg, /providers\.aws\.access_key_id: required for kind bedrock: AWS_ACCESS_KEY_ID/);
    t.match(msg, /providers\.aws\.secret_access_key: required/);
    t.match(msg, /providers\.az\.base_url: required for kind azure/);
    t.match(msg, /providers\.gcp\.credentials_file: required for kind vertex/);
    t.match(msg, /providers\.gcp\.project: a Google Cloud project id/);
    t.match(msg, /providers\.oa\.region: only for kind bedrock \(this entry is kind openai\)/);
  }
  t.end();
});

t.test('start-up refuses a Vertex key file it cannot use and deployments of unknown models, naming the field', async (t) => {
  const dir = tempDataDir();
  const notAccount = join(dir, 'user.json');
  writeFileSync(notAccount, JSON.stringify({ type: 'authorized_user', client_id: 'x', refresh_token: 'y' }));
  const start = (env: Record<string, string>, config?: object) => startGateway({ SLUICE_SIM: 'off', ...env }, tempDataDir(), config).then(
    async (gw) => { await gw.stop(); return 'started'; }, (err: Error) => err.message);
  t.match(await start({ GOOGLE_APPLICATION_CREDENTIALS: join(dir, 'nope.json'), VERTEX_PROJECT: 'my-project-1' }), /providers\.vertex\.credentials_file: .*nope\.json: not a readable JSON key file/);
  t.match(await start({ GOOGLE_APPLICATION_CREDENTIALS: notAccount, VERTEX_PROJECT: 'my-project-1' }), /providers\.vertex\.credentials_file: .*user\.json: type: must be a service account key/);
  t.match(await start({ AZURE_OPENAI_API_KEY: 'k', AZURE_OPENAI_ENDPOINT: 'http://127.0.0.1:9', AZURE_OPENAI_DEPLOYMENTS: 'openai/gpt-9=x' }), /providers\.azure\.deployments: 'openai\/gpt-9' is not a model slug/);
  const gw = await startGateway({ SLUICE_SIM: 'off', AZURE_OPENAI_API_KEY: 'k', AZURE_OPENAI_ENDPOINT: 'http://127.0.0.1:9' });
  t.match(gw.output(), /warning: provider 'azure' serves no model.*AZURE_OPENAI_DEPLOYMENTS/, 'an Azure resource with no deployments is named at start');
  await gw.stop();
});

t.test('OpenTelemetry\'s variables: the endpoint, a ratio from 0 to 1 (named when it is not), OTEL_SDK_DISABLED', async (t) => {
  const base = loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318/' });
  t.equal(base.otel.endpoint, 'http://127.0.0.1:4318/v1/traces', 'the OTLP base gets /v1/traces');
  t.equal(base.otel.sample_ratio, 1);
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom', OTEL_TRACES_SAMPLER_ARG: ' 0.25 ' }).otel.sample_ratio, 0.25);
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_SAMPLER_ARG: '  ' }).otel.sample_ratio, 1, 'a blank ratio is no ratio (not 0)');
  for (const bad of ['abc', '2', '-0.5']) t.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_SAMPLER_ARG: bad }), /OTEL_TRACES_SAMPLER_ARG/, `${bad}: refused, naming the variable`);
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).otel.endpoint, undefined, 'OTEL_SDK_DISABLED=true: off');
});

t.test('cluster mode: both URLs from the environment, or neither; a URL of the wrong kind is refused', async (t) => {
  const c = loadConfig({ SLUICE_REDIS_URL: 'redis://127.0.0.1:6379', SLUICE_POSTGRES_URL: 'postgres://u@127.0.0.1:5432/db', SLUICE_TRUST_PROXY_HOPS: '1' });
  t.equal(c.cluster.redis_url, 'redis://127.0.0.1:6379');
  t.equal(c.cluster.postgres_url, 'postgres://u@127.0.0.1:5432/db');
  t.equal(c.cluster.redis_prefix, 'sluice:');
  t.equal(c.trust_proxy_hops, 1);
  t.equal(loadConfig({}).cluster.redis_url, undefined, 'off by default');
  t.throws(() => loadConfig({ SLUICE_REDIS_URL: 'redis://127.0.0.1:6379' }), /needs both redis_url/, 'one without the other');
  t.throws(() => loadConfig({ SLUICE_REDIS_URL: 'http://127.0.0.1:6379', SLUICE_POSTGRES_URL: 'postgres://u@h/db' }), /redis_url/, 'not a redis URL');
  t.throws(() => loadConfig({ SLUICE_REDIS_URL: 'redis://h:1', SLUICE_POSTGRES_URL: 'mysql://u@h/db' }), /postgres_url/, 'not a postgres URL');
});
