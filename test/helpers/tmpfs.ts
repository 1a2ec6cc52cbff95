// A small filesystem of a test's own, to fill: a tmpfs mounted for the test file (root; CI
// runs as root), and a gateway with its data dir on it, a fake upstream and a tenant key.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Test } from 'tap';
import tap from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, testModel, type Gateway } from './gateway.js';
import { http, type Answer } from './http.js';

/** Mounts a tmpfs of `size` (`32m`) for this test file, unmounted at its end; `mounted` false where that needs root and this is not CI. */
export function mountTmpfs(size: string): { mountPoint: string; mounted: boolean; free: () => number } {
  const mountPoint = mkdtempSync(join(tmpdir(), 'sluice-tmpfs-'));
  let mounted = false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mountPoint], { stdio: 'ignore' });
    mounted = true;
  } catch (err) {
    if (process.env.CI) throw new Error(`this test mounts a tmpfs, which needs root (CI runs as root): ${String(err)}`);
  }
  tap.teardown(() => {
    if (mounted) execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
    rmSync(mountPoint, { recursive: true, force: true });
  });
  const free = () => { const s = statfsSync(mountPoint); return Number(s.bavail) * Number(s.bsize); };
  return { mountPoint, mounted, free };
}

export const alive = (g: Gateway) => g.proc.exitCode === null && g.proc.signalCode === null;
export const kill = (g: Gateway) => { if (alive(g)) g.proc.kill('SIGKILL'); };
export const gone = (g: Gateway) => new Promise((r) => (!alive(g) ? r(null) : g.proc.once('exit', r)));

/** A gateway with its data dir `name` on the tmpfs (models `openai/m` and `openai/long-20000`), and a tenant key in a workspace of $1000. */
export async function gatewayOn(t: Test, mountPoint: string, name: string, fsync: boolean) {
  const fake = await startFakeUpstream();
  t.teardown(() => fake.close());
  const dataDir = join(mountPoint, name);
  mkdirSync(dataDir, { mode: 0o700 });
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  const env = { OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' };
  // (drip-2500: a stream of six words 2.5 s apart, admitted before the disk fills and ending after)
  const gw = await startGateway(env, dataDir, { models: [testModel('m'), testModel('long-20000'), testModel('drip-2500')], ledger: { fsync } });
  // (waited for: a process's deleted files free their space only when it is gone, and the next test counts the disk's free space)
  t.teardown(async () => { kill(gw); await gone(gw); });
  const { call, tenant } = http(gw);
  const { ws, key } = await tenant(gw.masterKey, 1000, undefined, ['inference', 'usage:read']);
  return { gw, env, dataDir, call, ws, key, fake };
}

/**
 * After a kill -9 of `gw` and a start on the same data dir: every answer the client saw
 * complete (`served` JSON answers, `streamed` streams with their closing figures) has its row,
 * and the workspace's balance is its $1000 less what they were charged, to the nano. Returns
 * the new gateway and the charge.
 */
export async function checkAfterKill(t: Test, gw: Gateway, env: Record<string, string>, dataDir: string, ws: string, served: Answer[], streamed: Answer[]) {
  const streamCharge = (a: Answer) => (JSON.parse(/^: gateway (.*)$/m.exec(a.text)![1]!) as { charge_usd: number }).charge_usd;
  const acknowledged = [...served, ...streamed].map((a) => a.headers.get('x-request-id')!);
  const charged = served.reduce((sum, a) => sum + Number(a.headers.get('x-btl-customer-charge')), 0) + streamed.reduce((sum, a) => sum + streamCharge(a), 0);
  t.ok(charged > 0, 'the acknowledged requests were charged');
  kill(gw);
  await gone(gw);
  const next = await startGateway(env, dataDir);
  t.teardown(async () => { kill(next); await gone(next); });
  let found = 0;
  for (const id of acknowledged) if ((await http(next).call(`/v1/requests/${id}`, next.masterKey)).status === 200) found++;
  t.equal(found, acknowledged.length, `every acknowledged request's row is there (${found} of ${acknowledged.length})`);
  const balance = (await http(next).call(`/admin/workspaces/${ws}`, next.masterKey)).json.balance_usd as number;
  t.ok(Math.abs(balance - (1000 - charged)) < 1e-6, `the balance is the credits less what the acknowledged requests were charged (${balance} against ${1000 - charged})`);
  return { next, charged, acknowledged: acknowledged.length };
}
