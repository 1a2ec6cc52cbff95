// Processes for the benches: the fake upstream, the bare passthrough and Sluice itself,
// each its own process on 127.0.0.1, started and stopped by PID.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MASTER = 'sk-bench-master-key-0000000000';
export const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

export function startProcess(file: string, env: Record<string, string>, ready: RegExp, args: string[] = []): Promise<{ proc: ChildProcess; match: RegExpExecArray }> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, [file, ...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${file} did not start: ${out}`)), 20_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = ready.exec(out);
      if (!m) return;
      clearTimeout(timer);
      // Keep draining the pipes (access logs go to stdout) without keeping what they say.
      proc.stdout!.off('data', onData);
      proc.stderr!.off('data', onData);
      proc.stdout!.resume();
      proc.stderr!.resume();
      resolve({ proc, match: m });
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('exit', (code) => { clearTimeout(timer); reject(new Error(`${file} exited ${code}: ${out}`)); });
  });
}

export function stop(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      const dir = dataDirs.get(proc);
      if (dir) rmSync(dir, { recursive: true, force: true }); // a bench gateway's ledger grows to hundreds of MB
      resolve();
    };
    if (proc.exitCode !== null || proc.signalCode !== null) { done(); return; }
    proc.removeAllListeners('exit');
    proc.once('exit', done);
    proc.kill('SIGTERM');
  });
}

/** Each bench gateway's data dir, removed when `stop` sees it exit. */
const dataDirs = new WeakMap<ChildProcess, string>();

/** `main`: the gateway's entry (another build's dist/src/main.js for an A/B; this build's by default). */
export async function startGateway(upstreamPort: number, extraEnv: Record<string, string> = {}, config?: object, main = here('../src/main.js')) {
  const dataDir = mkdtempSync(join(tmpdir(), 'sluice-bench-'));
  const env: Record<string, string> = { HOST: '127.0.0.1', PORT: '0', SLUICE_DATA_DIR: dataDir, SLUICE_MASTER_KEY: MASTER,
    // (one event-loop thread whatever the machine's cores, as the bare floor has: the thread rows set their own)
    OPENAI_API_KEY: 'sk-upstream', OPENAI_BASE_URL: `http://127.0.0.1:${upstreamPort}/v1`, SLUICE_SIM: 'off', SLUICE_THREADS: '1', ...extraEnv };
  if (config) { env.SLUICE_CONFIG = join(dataDir, 'sluice.json'); writeFileSync(env.SLUICE_CONFIG, JSON.stringify(config)); }
  const { proc, match } = await startProcess(main, env, /listening on http:\/\/[\d.]+:(\d+)/);
  dataDirs.set(proc, dataDir);
  return { proc, port: Number(match[1]) };
}

export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}


/** CPU time (user + system, all threads) of a process so far, in seconds. */
export function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * Pins the proxies under measurement (every thread of each) to the last core, and this
 * process (the load generator) and the fake upstream to the others, with taskset(1). A
 * proxy's CPU per request then depends on its own work alone: sharing all cores with the
 * load generator, it varied ±15% between rounds here, as the generator's share decided how
 * many requests each of the proxy's event-loop turns took. False (nothing pinned) with one
 * core or without taskset.
 */
export function pinProxies(proxies: readonly number[], others: readonly number[]): boolean {
  const cores = availableParallelism();
  if (cores < 2) return false;
  try {
    const rest = `0-${cores - 2}`;
    for (const pid of [process.pid, ...others]) execFileSync('taskset', ['-a', '-p', '-c', rest, String(pid)], { stdio: 'ignore' });
    for (const pid of proxies) execFileSync('taskset', ['-a', '-p', '-c', String(cores - 1), String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
