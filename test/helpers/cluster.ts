// Cluster mode's servers for a test: Debian's redis-server, and a throwaway Postgres cluster
// (initdb into a temp dir, run as the unprivileged `postgres` user when the test runs as
// root, since Postgres refuses to run as root). Both on 127.0.0.1, on free ports, stopped
// by PID and removed when the test ends.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const PG_BIN = ['/usr/lib/postgresql/15/bin', '/usr/lib/postgresql/16/bin', '/usr/lib/postgresql/17/bin'].find((d) => existsSync(join(d, 'initdb')));
const REDIS = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((p) => existsSync(p));

/** Why the cluster tests cannot run here (null: they can). */
export function clusterUnavailable(): string | null {
  if (!REDIS) return 'redis-server is not installed (apt-get install redis-server)';
  if (!PG_BIN) return 'postgresql is not installed (apt-get install postgresql)';
  return null;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface RedisServer {
  url: string;
  port: number;
  /** The server's process id (the bench reads its CPU time). */
  pid(): number;
  stop(): Promise<void>;
  /** Starts it again on the same port: empty, or with the last snapshot the test asked for (SAVE). */
  restart(): Promise<void>;
}

async function waitFor(what: string, ready: () => boolean, proc: ChildProcess, out: () => string, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ready()) {
    if (proc.exitCode !== null) throw new Error(`${what} exited (${proc.exitCode}):\n${out()}`);
    if (Date.now() > end) throw new Error(`${what} did not start:\n${out()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'sluice-redis-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  let proc: ChildProcess;
  const start = async () => {
    let out = '';
    // (no automatic snapshots; one the test asks for, SAVE, goes to its own dir and is loaded by a restart)
    proc = spawn(REDIS!, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--loglevel', 'warning', '--dir', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    let up = false;
    const probe = setInterval(() => {
      const c = connect(port, '127.0.0.1', () => { up = true; c.destroy(); });
      c.on('error', () => c.destroy());
    }, 50);
    try { await waitFor('redis-server', () => up, proc, () => out); } finally { clearInterval(probe); }
  };
  const stop = () => new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) { resolve(); return; }
    proc.once('exit', () => resolve());
    proc.kill('SIGKILL');
  });
  await start();
  return { url: `redis://127.0.0.1:${port}`, port, stop, restart: start, pid: () => proc.pid! };
}

export interface PostgresServer {
  url: string;
  /** Stops it (a fast shutdown: what is committed stays) without removing its data. */
  pause(): Promise<void>;
  /** Starts it again on its data and port. */
  resume(): Promise<void>;
  /** The postmaster and its backends (the bench reads their CPU time). */
  pids(): number[];
  stop(): Promise<void>;
}

/** A fresh Postgres cluster in a temp dir, trust auth on 127.0.0.1 only. */
export async function startPostgres(): Promise<PostgresServer> {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-pg-'));
  const data = join(dir, 'data');
  const asRoot = process.getuid?.() === 0;
  let uid = 0;
  let gid = 0;
  if (asRoot) {
    uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chmodSync(dir, 0o755);
    chownSync(dir, uid, gid);
  }
  const opts = asRoot ? { uid, gid } : {};
  execFileSync(join(PG_BIN!, 'initdb'), ['-D', data, '-U', 'sluice', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C'], { ...opts, stdio: 'pipe' });
  const port = await freePort();
  let proc: ChildProcess;
  const start = async () => {
    let out = '';
    proc = spawn(join(PG_BIN!, 'postgres'), ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`,
      '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200'], { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    proc.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
    await waitFor('postgres', () => /ready to accept connections/.test(out), proc, () => out, 30_000);
  };
  const halt = (signal: NodeJS.Signals) => new Promise<void>((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) { resolve(); return; }
    proc.once('exit', () => resolve());
    proc.kill(signal);
  });
  await start();
  execFileSync(join(PG_BIN!, 'createdb'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'sluice', 'sluice'], { stdio: 'pipe' });
  const pids = () => {
    const out = [proc.pid!];
    const parent = proc.pid;
    for (const name of readdirSync('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      try {
        const ppid = Number(readFileSync(`/proc/${name}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]);
        if (ppid === parent) out.push(Number(name));
      } catch { /* gone */ }
    }
    return out;
  };
  return {
    url: `postgres://sluice@127.0.0.1:${port}/sluice`, pids,
    stop: async () => {
      await halt('SIGQUIT');
      rmSync(dir, { recursive: true, force: true });
    },
    // A fast shutdown (what a restart or a failover looks like to clients), then the same cluster again.
    pause: () => halt('SIGINT'),
    resume: start,
  };
}
