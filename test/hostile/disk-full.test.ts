// The data dir's disk fills up under load: writes fail, and the gateway goes on serving.
// A request whose ledger row cannot be committed is answered with an error (nothing is
// acknowledged that is not stored), and while the store has no room at all a request is
// refused with a 503 before anything is spent on it (its provider is not called); once space
// is freed it serves as before, and what it acknowledged is there after a kill -9.
//
// Needs a small filesystem of its own: a tmpfs, mounted here (root; CI runs as root).
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, testModel } from '../helpers/gateway.js';
import { http, type Answer } from '../helpers/http.js';
import { alive, checkAfterKill, gatewayOn, gone, kill, mountTmpfs } from '../helpers/tmpfs.js';

const MiB = 2 ** 20;
const { mountPoint, mounted, free } = mountTmpfs('32m');

// Without fsync (the default) each batch commits in a synchronous transaction on the event
// loop; with ledger.fsync, in a child transaction of lmdb-js's writer thread, one at a time,
// sharing its commit with the caches' entries.
for (const fsync of [false, true]) t.test(`a full disk${fsync ? ', commits fsynced' : ''}: writes fail, the gateway answers and goes on; space freed, it serves again`, { skip: mounted ? false : 'mounting a tmpfs needs root' }, async (t) => {
  const { gw, env, dataDir, call, ws, key, fake } = await gatewayOn(t, mountPoint, `data-${fsync}`, fsync);
  // Cacheable (temperature 0) with ~120 KB answers: each stored in the exact cache, through
  // lmdb-js's asynchronous commits, besides its ledger row in the synchronous ones.
  const ask = (i: number) => call('/v1/chat/completions', key, { model: 'openai/long-20000', temperature: 0, messages: [{ role: 'user', content: `question ${i}` }] });
  const answers: Answer[] = [await ask(0)];
  t.equal(answers[0]!.status, 200);
  // A stored response (passed through: the upstream holds it), to be deleted once the disk is full.
  const made = await call('/v1/responses', key, { model: 'openai/m', input: 'keep me' });
  t.equal(made.status, 200);
  const storedId = (made.json as { id: string }).id;

  const filler = join(mountPoint, 'filler');
  writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 2 * MiB)));
  // Two streams admitted now, while the store still has its reserved room, whose rows come due
  // ~15 s later, once the load below has used that room up.
  const stream = (model: string, i: number) => call('/v1/chat/completions', key, { model, temperature: 0, stream: true, messages: [{ role: 'user', content: `stream ${i}` }] })
    .catch((err: unknown) => ({ status: 0, text: String(err) } as Answer));
  const drips = [stream('openai/drip-2500', 0), stream('openai/drip-2500', 1)];

  for (let i = 1; i <= 160 && gw.proc.exitCode === null && gw.proc.signalCode === null; i += 4) {
    answers.push(...await Promise.all([0, 1, 2, 3].map((j) => ask(i + j).catch((err: unknown) => ({ status: 0, text: String(err) } as Answer)))));
  }
  // (the store leaves the disk's last MiB to others when it reserves room: store/headroom.ts)
  t.ok(free() < 2 * MiB, `the disk filled (${free()} bytes free)`);
  t.equal(gw.proc.exitCode, null, `the process is alive (exit ${gw.proc.exitCode}, signal ${gw.proc.signalCode}):\n${gw.output().split("\n").filter((l) => !l.startsWith("{")).join("\n").slice(-3000)}`);
  t.equal(gw.proc.signalCode, null);
  // The ledger's rows go on committing for a while in pages the file has free (their
  // transaction is apart from the caches'); with new rows only, those run out too.
  const small = (i: number) => call('/v1/chat/completions', key, { model: 'openai/m', messages: [{ role: 'user', content: `small ${i}` }] })
    .catch((err: unknown) => ({ status: 0, text: String(err) } as Answer));
  for (let i = 0; i < 6000 && !answers.some((a) => a.status >= 500) && gw.proc.exitCode === null; i += 8) {
    answers.push(...await Promise.all(Array.from({ length: 8 }, (_, j) => small(i + j))));
  }
  t.equal(gw.proc.exitCode, null, 'still alive');
  t.equal(answers.filter((a) => a.status === 0).length, 0, 'every request got an answer');
  const failed = answers.filter((a) => a.status !== 200);
  t.ok(failed.length > 0, `requests whose rows could not be committed were refused (${failed.length} of ${answers.length})`);
  for (const a of failed.slice(0, 5)) t.ok(a.status >= 500 && a.json?.error?.message, `an error in OpenAI's envelope: ${a.status} ${a.text.slice(0, 200)}`);
  // Admitted before the store ran out of room and refused at its commit (a 500), or refused at
  // once with nothing spent on it (a 503: the store has no room to record it).
  const refusedNow = (a: Answer) => a.status === 503 && a.json?.error?.code === 'store_unavailable' && /disk is full/.test(a.text);
  t.ok(failed.every((a) => refusedNow(a) || (a.status === 500 && /could not record/.test(a.text))), `each one a 503 store_unavailable or a 500 not recorded (${[...new Set(failed.map((a) => a.status))].join(', ')})`);
  t.ok(failed.some(refusedNow), 'once the store has no room, requests are refused at once');
  // A DELETE then is refused before anything is deleted, upstream or here: its remove could not
  // be recorded (were it relayed, the upstream's copy would be gone and the client told to retry).
  const asked = fake.received.length;
  const del = await call(`/v1/responses/${storedId}`, key, undefined, 'DELETE');
  t.ok(refusedNow(del), `a DELETE on a full disk: ${del.status} ${del.text.slice(0, 160)}`);
  t.equal(fake.received.length, asked, 'and not relayed upstream');
  // While commits fail, /health says so with a 503 (a load balancer takes the replica out).
  // (with fsync, the rows share the writer's commit with the caches' entries, and fail with them)
  const probe = fsync ? ask : small;
  let health = await call('/health', '');
  for (let i = 0; i < 200 && health.status !== 503; i++) {
    answers.push(await probe(100_000 + i));
    health = await call('/health', '');
  }
  t.equal(health.status, 503, '/health: 503 while the ledger cannot commit');
  t.equal(health.json?.ledger, 'failing');

  // The streams admitted before: their rows cannot be committed, and they are not told they
  // are complete either: each ends with an error event in place of its [DONE] (its headers are gone).
  const cut = await Promise.all(drips);
  for (const a of cut) {
    t.equal(a.status, 200, 'its headers had gone out');
    t.match(a.text, /data: \{"error":\{"message":"The ledger could not record this request; it was not charged/, 'it ends with the error event');
    t.notMatch(a.text, /\[DONE\]/, 'not with [DONE]');
    // (the last events came with the terminal one and were held with it: they go out before the error, as they came)
    t.match(a.text, /"finish_reason":"stop"[^\n]*\n\ndata: \{"error":/, 'the answer\'s last event, then the error event');
    t.notMatch(a.text, /^: gateway /m, 'and without the closing figures');
  }
  // The access log says what the client saw: a 500 not recorded, and no charge (it logged a 200 with its charge).
  await new Promise((r) => setTimeout(r, 200));
  for (const a of cut) {
    const line = gw.output().split('\n').find((l) => l.includes(`"request_id":"${a.headers.get('x-request-id')}"`)) ?? '';
    t.match(line, /"status":500,"error":"ledger_not_recorded"/, `its access-log line: a 500 not recorded (${line.slice(0, 240)})`);
    t.match(line, /"charge_usd":0[,}]/, 'and no charge');
  }
  // A stream and a cache hit now: refused before anything is spent on them (the stream's
  // provider is not called, the hit is not looked up), with a 503 that says why.
  const upstreamCalls = fake.received.length;
  const late = [await stream('openai/long-20000', 2), await ask(0)];
  for (const a of late) t.ok(refusedNow(a), `refused at once: ${a.status} ${a.text.slice(0, 160)}`);
  t.equal(late[0]!.headers.get('content-type'), 'application/json', 'the stream before its headers: a JSON error');
  t.equal(fake.received.length, upstreamCalls, 'nothing was sent upstream for them');
  answers.push(...late);

  rmSync(filler);
  // (the store takes up to half a second to see the room and reserve it again: the requests before are refused)
  let again: Answer | null = null;
  const before: Answer[] = [];
  for (let i = 0; i < 50 && again?.status !== 200; i++) {
    again = await call('/v1/chat/completions', key, { model: 'openai/m', messages: [{ role: 'user', content: `after ${i}` }] });
    if (again.status !== 200) { before.push(again); await new Promise((r) => setTimeout(r, 100)); }
  }
  t.equal(again?.status, 200, `space freed: it serves again (${again?.text.slice(0, 200)})`);
  health = await call('/health', '');
  t.equal(health.status, 200, 'and /health is 200 again');
  t.equal(health.json?.ledger, 'ok');

  // What it acknowledged is there after a kill -9 and a start on the same dir, and only that
  // was charged: a request refused because its row could not be stored was not.
  // The metrics count what the clients were told: requests whose rows were not committed are
  // 500s of kind ledger_not_recorded, not served answers (they counted as 200s before).
  const metrics = (await call('/metrics', gw.masterKey)).text;
  const count = (re: RegExp) => [...metrics.matchAll(re)].reduce((sum, m) => sum + Number(m[1]), 0);
  const notRecorded = [...answers, ...before].filter((a) => a.status === 500 && /could not record/.test(a.text)).length + cut.length;
  t.equal(count(/^sluice_errors_total\{kind="ledger_not_recorded"\} (\d+)$/gm), notRecorded, `metrics: ${notRecorded} not recorded`);
  // (a refusal's row cannot be stored either: it counts as what the caller was told)
  const refusals = [...answers, ...before].filter(refusedNow).length;
  t.equal(count(/^sluice_errors_total\{kind="store_unavailable"\} (\d+)$/gm), refusals, `metrics: ${refusals} refused for want of room`);
  const okAnswers = answers.filter((a) => a.status === 200).length + 1; // (+1: the first request after space was freed)
  t.equal(count(/^sluice_requests_total\{endpoint="chat.completions",status="200",cache="[a-z]+"\} (\d+)$/gm), okAnswers, `metrics: ${okAnswers} answered 200`);

  const served = [...answers.filter((a) => a.status === 200), again!, made]; // (made: the stored response, a request charged like the others)
  const { next, charged, acknowledged } = await checkAfterKill(t, gw, env, dataDir, ws, served, []);
  const summary = (await http(next).call('/v1/usage/summary', key)).json;
  t.equal(summary.requests, acknowledged, 'the usage rollups count the stored rows, not the refused ones');
  t.ok(Math.abs(summary.charge_usd - charged) < 1e-6, `and their charges (${summary.charge_usd} against ${charged})`);
});

// Where no room can be reserved (no fallocate(1) here), a full disk fails LMDB's commits
// themselves, and lmdb-js's flush promise rejects: the store's close threw, and a SIGTERM
// then stopped half way, hung or ended with exit 0 without closing the store or saying so.
t.test('an unguarded store whose commits failed on a full disk: SIGTERM still stops it cleanly', { skip: mounted ? false : 'mounting a tmpfs needs root' }, async (t) => {
  const bin = mkdtempSync(join(tmpdir(), 'sluice-bin-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  for (const b of ['sh', 'node']) symlinkSync(execFileSync('which', [b]).toString().trim(), join(bin, b)); // (a PATH without fallocate)
  // The lmdb-js fault this store is not guarded against (README: a full disk) can end the
  // process first, as a page write meets the full disk ("malloc(): …", SIGABRT): such a run
  // says nothing of the shutdown, so the scenario is set up again, three times at most.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const fault = await unguardedRun(t, bin, attempt);
    if (fault === null) return;
    t.comment(`attempt ${attempt}: lmdb-js's own fault ended the process before the signal (${fault})`);
  }
  t.fail('lmdb-js aborted the process in each of 3 attempts');
});

/** One run of the scenario: null when it ran to its end, else the lmdb-js fault that ended the process first. */
async function unguardedRun(t: Test, bin: string, attempt: number): Promise<string | null> {
  const fake = await startFakeUpstream();
  const dataDir = join(mountPoint, `unguarded-${attempt}`);
  mkdirSync(dataDir, { mode: 0o700 });
  const filler = join(mountPoint, `filler-unguarded-${attempt}`);
  const gw = await startGateway({ PATH: bin, OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, dataDir, { models: [testModel('m'), testModel('long-20000')] });
  try {
    const faulted = () => (alive(gw) ? null : /malloc\(\)[^\n]*|corrupted[^\n]*|double free[^\n]*/.exec(gw.output())?.[0] ?? null);
    t.match(gw.output(), /it goes unguarded/, 'the store says it is unguarded');
    const { call } = http(gw);
    writeFileSync(filler, Buffer.alloc(Math.max(0, free() - 2 * MiB)));
    const ask = (i: number, model: string) => call('/v1/chat/completions', gw.masterKey, { model, temperature: 0, messages: [{ role: 'user', content: `q ${i}` }] })
      .catch((err: unknown) => ({ status: 0, text: String(err) } as Answer));
    const statuses: number[] = [];
    for (let i = 0; i < 200 && !statuses.some((s) => s >= 500) && alive(gw); i += 4) statuses.push(...(await Promise.all([0, 1, 2, 3].map((j) => ask(i + j, 'openai/long-20000')))).map((a) => a.status));
    for (let i = 0; i < 400 && !statuses.some((s) => s >= 500) && alive(gw); i++) statuses.push((await ask(i, 'openai/m')).status);
    // (the last writes before the signal: cache entries whose asynchronous commits fail)
    if (alive(gw)) for (let i = 0; i < 4; i++) statuses.push((await ask(1000 + i, 'openai/long-20000')).status);
    await new Promise((r) => setTimeout(r, 100));
    const fault = faulted();
    if (fault) return fault;
    t.ok(statuses.includes(500), `commits failed (${[...new Set(statuses)].join(', ')})`);
    t.match(gw.output(), /failed to commit/, 'and the log says so');
    t.ok(alive(gw), 'the process is alive');
    const t0 = Date.now();
    gw.proc.kill('SIGTERM');
    const exit = await Promise.race([new Promise<number | null>((r) => gw.proc.once('exit', (code) => r(code))), new Promise<'hung'>((r) => setTimeout(() => r('hung'), 20_000))]);
    t.equal(exit, 0, `SIGTERM: exit 0 (${exit}, after ${Date.now() - t0} ms)`);
    t.match(gw.output(), /sluice stopped/, 'having gone through its whole shutdown');
    t.notMatch(gw.output(), /shutdown failed/);
    return null;
  } finally {
    kill(gw);
    await gone(gw);
    await fake.close();
    rmSync(filler, { force: true });
    rmSync(dataDir, { recursive: true, force: true });
  }
}
