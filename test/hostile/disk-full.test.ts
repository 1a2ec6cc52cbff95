// A data dir whose disk fills up: the gateway stops taking what would write before the last
// block is gone, keeps serving reads, and takes requests again once space is freed. Its store
// file is mapped writable (store/lmdb.ts), and a page written into a full disk would kill the
// process with SIGBUS, so this is the guard that keeps it alive (store/space.ts).
//
// Needs a small filesystem of its own: a tmpfs, mounted here (root; CI runs as root).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { DiskSpace } from '../../src/store/space.js';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const MiB = 2 ** 20;

t.test('the guard reads free space and lifts by itself', async (t) => {
  let avail = 1000; // blocks of 1 MiB
  const read = (_d: string, done: (err: Error | null, s: { bavail: number; bsize: number }) => void) => done(null, { bavail: avail, bsize: MiB });
  const space = new DiskSpace('/nowhere', 100 * MiB, read, () => ({ bavail: avail, bsize: MiB }));
  t.teardown(() => space.stop());
  t.equal(space.low, false, 'plenty at start');
  const step = async (blocks: number) => { avail = blocks; await new Promise<void>((r) => space.poll(r)); return space.low; };
  t.equal(await step(150), true, 'a drop of 850 MiB in one interval: four more like it would not fit, so it is low before the reserve is reached');
  t.equal(await step(140), false, 'a slow pace and 140 MiB free, over a 100 MiB reserve: not low');
  t.equal(await step(99), true, 'below the reserve');
  t.equal(await step(500), false, 'space freed: it lifts');
  const off = new DiskSpace('/nowhere', 0, read, () => ({ bavail: 0, bsize: MiB }));
  t.equal(off.low, false, 'min_free 0: the guard is off');
  const failing = new DiskSpace('/nowhere', 100 * MiB, (_d, done) => done(new Error('EIO'), null), () => { throw new Error('EIO'); });
  t.teardown(() => failing.stop());
  t.equal(failing.low, false, 'a filesystem statfs cannot read: the guard stays open');
});

const mountPoint = mkdtempSync(join(tmpdir(), 'sluice-tmpfs-'));
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=48m', 'tmpfs', mountPoint], { stdio: 'ignore' });
  mounted = true;
} catch (err) {
  if (process.env.CI) throw new Error(`the disk-full test mounts a tmpfs, which needs root (CI runs as root): ${String(err)}`);
}
t.teardown(() => {
  if (mounted) execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
  rmSync(mountPoint, { recursive: true, force: true });
});

t.test('a disk filling up: refused before it is full, reads still served, taken again once space is freed', { skip: mounted ? false : 'mounting a tmpfs needs root' }, async (t) => {
  const fake = await startFakeUpstream();
  t.teardown(() => fake.close());
  const dataDir = join(mountPoint, 'data');
  mkdirSync(dataDir, { mode: 0o700 });
  const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, dataDir,
    { models: [testModel('m')], ledger: { min_free_mb: 8 }, savings: { exact_cache: { enabled: false }, semantic_cache: { enabled: false } } });
  const kill = (g: typeof gw) => { if (g.proc.exitCode === null && g.proc.signalCode === null) g.proc.kill('SIGKILL'); };
  t.teardown(() => kill(gw));
  const { call, tenant } = http(gw);
  const { key } = await tenant(gw.masterKey, 1000);
  const ask = (i: number) => call('/v1/chat/completions', key, { model: 'openai/m', messages: [{ role: 'user', content: `question ${i} ${'x'.repeat(2000)}` }] });
  t.equal((await ask(0)).status, 200);

  // Leave 9 MiB free: 1 above the reserve, which the requests below then use up.
  const free = () => { const s = statfsSync(mountPoint); return Number(s.bavail) * Number(s.bsize); };
  const filler = join(mountPoint, 'filler');
  writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 9 * MiB)));
  t.ok(free() < 10 * MiB && free() > 8 * MiB, `9 MiB left (${(free() / MiB).toFixed(1)})`);
  // (the filler's own drop, 30-odd MiB in one interval, reads as a pace that would fill the
  // disk within a second, and closes it for a reading or two: the requests begin after)
  await new Promise((r) => setTimeout(r, 1000));

  let refused: Awaited<ReturnType<typeof ask>> | null = null;
  let served = 0;
  const deadline = Date.now() + 60_000;
  for (let i = 1; !refused && Date.now() < deadline && i < 200_000; i += 8) {
    const answers = await Promise.all(Array.from({ length: 8 }, (_, j) => ask(i + j)));
    for (const a of answers) {
      if (a.status === 200) served++;
      else if (!refused) refused = a;
    }
  }
  t.ok(refused, `refused once the reserve was reached (after ${served} requests served)`);
  t.equal(refused?.status, 503);
  t.equal(refused?.json?.error?.code, 'storage_full', refused?.text ?? '');
  t.equal(gw.proc.exitCode, null, 'the process is alive');
  t.equal(gw.proc.signalCode, null, 'no signal ended it (a page written into a full disk would be a SIGBUS)');
  t.ok(free() > 2 * MiB, `it stopped with room to spare (${(free() / MiB).toFixed(1)} MiB free)`);

  const health = (await call('/health', '')).json;
  t.equal(health.storage, 'low', '/health says so');
  const models = await call('/v1/models', key);
  t.equal(models.status, 200, 'reads are served');
  const made = await call(`/admin/workspaces`, gw.masterKey, { name: "another" });
  t.equal(made.status, 503, 'a management write is refused too');

  rmSync(filler);
  let again = 0;
  for (let i = 0; i < 100 && again !== 200; i++) {
    await new Promise((r) => setTimeout(r, 100));
    again = (await ask(1_000_000 + i)).status;
  }
  t.equal(again, 200, 'space freed: requests are taken again');
  t.equal((await call('/health', '')).json.storage, 'ok');

  // What was acknowledged is there after a kill -9 and a start on the same dir.
  const last = await ask(2_000_000);
  t.equal(last.status, 200);
  kill(gw);
  await new Promise((r) => gw.proc.signalCode !== null ? r(null) : gw.proc.once('exit', r));
  const next = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, dataDir);
  t.teardown(() => kill(next));
  const row = await http(next).call(`/v1/requests/${last.headers.get('x-request-id')}`, next.masterKey);
  t.equal(row.status, 200, row.text);
});
