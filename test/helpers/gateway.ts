// Starts a real Sluice process (dist/src/main.js) for a test, on a free port, with its own
// data dir, and stops it by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFakeUpstream, type FakeUpstream } from '../fakes/openai-upstream.js';

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));

export interface Gateway {
  url: string;
  baseURL: string;
  masterKey: string;
  dataDir: string;
  proc: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Data dirs this test file made: removed when it exits (a dir outlives one gateway: restart tests reopen it). */
const made: string[] = [];
process.once('exit', () => { for (const dir of made) rmSync(dir, { recursive: true, force: true }); });

export function tempDataDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
  made.push(dir);
  return dir;
}

/** A catalog entry for a test model served by the `openai` provider (the fake picks behaviour by name). */
export function testModel(id: string) {
  return { slug: `openai/${id}`, upstream_id: id, context_window: 128000, tokenizer: 'o200k_base',
    prices: { input: 1, cached_input: 0.5, output: 2 } };
}

export async function startGateway(env: Record<string, string> = {}, dataDir = tempDataDir(), config?: object): Promise<Gateway> {
  if (config) {
    const path = join(dataDir, 'sluice.json');
    writeFileSync(path, JSON.stringify(config));
    env = { SLUICE_CONFIG: path, ...env };
  }
  const proc = spawn(process.execPath, [MAIN], {
    // (one event-loop thread whatever the machine's cores, or SLUICE_TEST_THREADS: the test runner's
    // second pass serves the same files from that many)
    env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', PORT: '0', SLUICE_DATA_DIR: dataDir, SLUICE_WORKERS: '1',
      SLUICE_THREADS: process.env.SLUICE_TEST_THREADS || '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${out}`)), 15_000);
    const check = () => {
      const m = /listening on (http:\/\/[\d.]+:\d+)/.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]!); }
    };
    proc.stdout!.on('data', check);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`gateway exited (${code}):\n${out}`)); });
  });
  const masterKey = env.SLUICE_MASTER_KEY ?? readFileSync(join(dataDir, 'master.key'), 'utf8').trim();
  // Ready as a load balancer would see it: the embedding model loaded (semantic lookups are skipped until then).
  for (let i = 0; i < 300; i++) {
    const health = await fetch(`${url}/health`).then((r) => r.json() as Promise<{ semantic_cache?: string }>, () => null);
    if (health && health.semantic_cache !== 'warming') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url, baseURL: `${url}/v1`, masterKey, dataDir, proc, output: () => out,
    stop: (signal = 'SIGTERM') => new Promise((resolve) => {
      if (proc.exitCode !== null) { resolve(proc.exitCode); return; }
      proc.once('exit', (code) => resolve(code));
      proc.kill(signal);
    }),
  };
}

/**
 * The sim, and an `openai` provider in front of a fake OpenAI upstream (test/fakes): what the
 * endpoint tests drive. `teardown` is the test's (tap's t.teardown): the fake closes after
 * the gateway stops. `config` adds to the gateway's config.
 */
export async function startWithFakeOpenAI(teardown: (fn: () => unknown) => void, config: object = {}): Promise<{ fake: FakeUpstream; gw: Gateway }> {
  const fake = await startFakeUpstream();
  teardown(() => fake.close());
  const gw = await startGateway({ SLUICE_SIM: 'on' }, undefined, { providers: { openai: { kind: 'openai', base_url: fake.url, api_key: 'sk-fake-upstream' } }, ...config });
  teardown(() => gw.stop());
  return { fake, gw };
}
