// The data dir's disk fills while requests are in flight: another process (dd) takes every
// free block at full speed, as a runaway log or a backup on the same disk would. The store
// writes only into room it holds ahead of its file (store/headroom.ts), so no write of the
// store's ever meets a full disk: the gateway refuses what it cannot record, /health says
// so, it serves again once space is freed, and what it acknowledged is there after a kill -9.
//
// Before: lmdb-js 3.5.6 met the full disk in a page write, and its error path overran the
// heap (mdb_page_flush formats the error into malloc(100)): "malloc(): corrupted top size",
// the process aborted, most runs.
//
// Needs a small filesystem of its own: a tmpfs, mounted here (root; CI runs as root).
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { startGateway } from '../helpers/gateway.js';
import type { Answer } from '../helpers/http.js';
import { alive, checkAfterKill, gatewayOn, kill, mountTmpfs } from '../helpers/tmpfs.js';

const { mountPoint, mounted, free } = mountTmpfs('160m');

/** dd filling the disk from another process, as fast as it writes; resolves when it stops (the disk full). */
const fill = (file: string) => new Promise<void>((resolve) => {
  const dd = spawn('dd', ['if=/dev/zero', `of=${file}`, 'bs=256k'], { stdio: 'ignore' });
  dd.on('exit', () => resolve());
});

for (const fsync of [false, true]) t.test(`the disk fills under load${fsync ? ', commits fsynced' : ''}: the process lives, refuses what it cannot record, and serves again`, { skip: mounted ? false : 'mounting a tmpfs needs root' }, async (t) => {
  const { gw, env, dataDir, call, ws, key } = await gatewayOn(t, mountPoint, `data-${fsync}`, fsync);
  // Cacheable answers of ~120 KB (each stored in the exact cache) and small ones, six at a time.
  let n = 0;
  const ask = () => { const i = n++; return call('/v1/chat/completions', key, i % 2
    ? { model: 'openai/long-20000', temperature: 0, messages: [{ role: 'user', content: `question ${i}` }] }
    : { model: 'openai/m', stream: i % 4 === 0, messages: [{ role: 'user', content: `small ${i}` }] })
    .catch((err: unknown) => ({ status: 0, text: String(err) } as Answer)); };
  const answers: Answer[] = [];
  let filling = true;
  const clients = Array.from({ length: 6 }, async () => { while (filling && alive(gw)) answers.push(await ask()); });
  await new Promise((r) => setTimeout(r, 300));
  const filler = join(mountPoint, `filler-${fsync}`);
  await fill(filler);
  // Load goes on against the full disk until the room held for the store runs out and
  // requests are refused, and a while after.
  for (let i = 0; i < 600 && alive(gw) && !answers.some((a) => a.status >= 500); i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 500));
  filling = false;
  await Promise.all(clients);
  t.ok(alive(gw), alive(gw) ? "the process is alive" : `the process died (exit ${gw.proc.exitCode}, signal ${gw.proc.signalCode}):\n${gw.output().split("\n").filter((l) => !l.startsWith("{")).join("\n").slice(-2000)}`);
  if (!alive(gw)) return;
  t.equal(answers.filter((a) => a.status === 0).length, 0, 'every request got an answer');
  const refused = answers.filter((a) => a.status !== 200);
  t.ok(refused.length > 0, `requests that could not be recorded were refused (${refused.length} of ${answers.length})`);
  for (const a of refused.slice(0, 5)) t.ok(a.status >= 500 && a.json?.error?.message, `an error in OpenAI's envelope: ${a.status} ${a.text.slice(0, 200)}`);
  const health = await call('/health', '');
  t.equal(health.status, 503, '/health: 503 while the store has no room');
  t.match(gw.output(), /store: the disk is full/, 'the log says so');
  t.notMatch(gw.output(), /No space left on device/, 'and no write of the store\'s met the full disk');

  rmSync(filler);
  let again: Answer | null = null;
  for (let i = 0; i < 50 && again?.status !== 200; i++) {
    again = await call('/v1/chat/completions', key, { model: 'openai/m', messages: [{ role: 'user', content: `after ${i}` }] });
    if (again.status !== 200) await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(again?.status, 200, `space freed: it serves again (${again?.text.slice(0, 200)})`);

  // What it acknowledged is there after a kill -9, and only that was charged.
  const served = [...answers.filter((a) => a.status === 200 && !a.text.startsWith('data:')), again!];
  const streamed = answers.filter((a) => a.status === 200 && a.text.includes('[DONE]'));
  await checkAfterKill(t, gw, env, dataDir, ws, served, streamed);
});

t.test('a new store on a full disk: the start says so and exits, where it died of a bus error with no word', { skip: mounted ? false : 'mounting a tmpfs needs root' }, async (t) => {
  const dataDir = join(mountPoint, 'new');
  mkdirSync(dataDir, { mode: 0o700 });
  const filler = join(mountPoint, 'filler-new');
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }));
  // (filled again until nothing is free: the earlier gateways' files go when their processes have)
  for (let i = 0; i < 20 && (i === 0 || free() > 0); i++) { await fill(`${filler}-${i}`); await new Promise((r) => setTimeout(r, 100)); }
  t.teardown(() => { for (let i = 0; i < 20; i++) rmSync(`${filler}-${i}`, { force: true }); });
  t.equal(free(), 0, 'the disk is full');
  const err = await startGateway({ SLUICE_SIM: 'on', SLUICE_MASTER_KEY: 'sk-test-master-key-0000000000000' }, dataDir).then((g) => { kill(g); return 'started'; }, (e: unknown) => String(e));
  t.match(err, /gateway exited \(1\)/, 'exit code 1, not a signal');
  t.match(err, /No room on the disk for a new store/);
});
