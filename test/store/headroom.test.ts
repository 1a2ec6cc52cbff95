// The room reserved on the disk ahead of the store's file (store/headroom.ts): renewed as the
// file grows into it; with none to be had and too little left, writes are refused before
// they reach LMDB, and resume once there is room again. The real fallocate(1) on a full
// tmpfs is test/hostile/disk-full*.test.ts; here the reservation is a stand-in that says
// what it is told to, so each case is exact.
import { appendFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { Ledger, ledgerRow } from '../../src/accounts/ledger.js';
import { Workspaces } from '../../src/accounts/workspaces.js';
import { Headroom, NoRoomError, type Reserve } from '../../src/store/headroom.js';
import { openStore } from '../../src/store/lmdb.js';
import { tempDataDir } from '../helpers/gateway.js';

const MiB = 2 ** 20;
const opts = { floor: MiB, ahead: 4 * MiB, everyMs: 1_000_000, retryMs: 500 };

function standIn() {
  const calls: Array<{ offset: number; length: number }> = [];
  let answer: 'ok' | 'full' | 'unsupported' = 'ok';
  const reserve: Reserve = async (_file, offset, length) => { calls.push({ offset, length }); return { result: answer, why: 'Operation not supported' }; };
  return { calls, reserve, answer: (a: typeof answer) => { answer = a; } };
}

t.test('renewed when half is used; refused below the floor with none to be had; room again once it can be had', async (t) => {
  const file = join(tempDataDir(), 'f');
  writeFileSync(file, Buffer.alloc(4096));
  const lines: string[] = [];
  const r = standIn();
  const room = new Headroom(file, opts, r.reserve, (l) => lines.push(l));
  await room.start();
  t.teardown(() => room.stop());
  t.same(r.calls, [{ offset: 4096, length: 4 * MiB }], 'the first reservation: `ahead` past the end');
  t.equal(room.room, true);

  // (the store says it wrote: the file is read at the next check only then)
  const write = (bytes: number) => { appendFileSync(file, Buffer.alloc(bytes)); room.wrote = true; };
  await room.check(500);
  write(MiB); // (3 MiB of the 4 left: more than half)
  await room.check(1_000);
  t.equal(r.calls.length, 1, 'not renewed while more than half is left');

  write(MiB + 4096); // (under 2 MiB left)
  r.answer('full');
  await room.check(2_000);
  t.ok(r.calls.length > 1, 'renewal asked for');
  t.equal(room.room, true, 'the disk full, but more than the floor is still reserved: writes go on');

  write(MiB); // (under the floor)
  const asked = r.calls.length;
  await room.check(2_100);
  t.equal(r.calls.length, asked, 'a full disk is not asked again before retryMs');
  t.equal(room.room, false, 'below the floor, none to be had: writes refused');
  t.match(lines.join('\n'), /store: the disk is full/);

  r.answer('ok');
  await room.check(3_000);
  t.equal(room.room, true, 'the room reserved again: writes resume');
  const reads = r.calls.length;
  appendFileSync(file, Buffer.alloc(3 * MiB)); // (not through the store)
  await room.check(10_000);
  t.equal(r.calls.length, reads, 'nothing written through the store since: the file is not even read');
  t.match(lines.at(-1), /store: room again/);
  t.equal(r.calls.at(-1)!.offset, 4096 + 3 * MiB + 4096, 'from the file\'s end as it is now');
});

t.test('a filesystem that cannot reserve: unguarded, writes never refused, said once', async (t) => {
  const file = join(tempDataDir(), 'f');
  writeFileSync(file, Buffer.alloc(4096));
  const lines: string[] = [];
  const r = standIn();
  r.answer('unsupported');
  const room = new Headroom(file, opts, r.reserve, (l) => lines.push(l));
  await room.start();
  t.teardown(() => room.stop());
  appendFileSync(file, Buffer.alloc(8 * MiB));
  await room.check(10_000);
  t.equal(room.guarded, false);
  t.equal(room.room, true);
  t.equal(r.calls.length, 1, 'not asked again');
  t.equal(lines.length, 1);
  t.match(lines[0], /Operation not supported.*goes unguarded/);
});

t.test('with no room, the store refuses writes before LMDB; a transaction let in runs whole; the ledger refuses its batch', async (t) => {
  // (not mapped writable: the writer thread's child transactions are among what is refused)
  const store = await openStore(tempDataDir(), { fsync: false, writableMap: false });
  t.teardown(() => store.close());
  await store.keys.put('before', 1);
  store.headroom.stop(); // (its checks would set the room back from what the disk says)
  store.headroom.room = false;
  await t.rejects(store.keys.put('a', 1), NoRoomError, 'an asynchronous put: rejected');
  await t.rejects(store.keys.remove('before'), NoRoomError, 'a remove: rejected');
  t.throws(() => store.root.transactionSync(() => store.keys.put('b', 1)), NoRoomError, 'a synchronous transaction: thrown');
  await t.rejects(store.root.childTransaction(() => { void store.keys.put('c', 1); }), NoRoomError, 'an asynchronous one: rejected');
  t.equal(store.keys.get('a'), undefined);
  t.equal(store.keys.get('b'), undefined);
  t.equal(store.keys.get('before'), 1, 'nothing removed');

  // A transaction that began with room runs whole, though the room goes while it runs.
  store.headroom.room = true;
  store.root.transactionSync(() => {
    void store.keys.put('d', 1);
    store.headroom.room = false;
    void store.keys.put('e', 1);
  });
  t.equal(store.keys.get('d'), 1);
  t.equal(store.keys.get('e'), 1);

  // The ledger: the batch refused, its balance change undone, /health failing; room again, it commits.
  store.headroom.room = true;
  const workspaces = new Workspaces(store);
  const ws = await workspaces.create('acme', null);
  for (const mainThreadCommit of [true, false]) {
    const ledger = new Ledger(store, workspaces, 0, mainThreadCommit);
    const row = (id: string) => ledgerRow({ id, kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions', delta_nano: -1000 });
    store.headroom.room = false;
    const balance = ws.balance_nano;
    ledger.append(row(`req_refused_${mainThreadCommit}`), ws);
    await t.rejects(ledger.committed(), NoRoomError, `the batch refused (${mainThreadCommit ? 'main-thread' : 'writer-thread'} commit)`);
    t.equal(ws.balance_nano, balance, 'its balance change undone');
    t.equal(ledger.failing, true, '/health says failing');
    t.equal(store.ledger.get(`req_refused_${mainThreadCommit}`), undefined);
    store.headroom.room = true;
    ledger.append(row(`req_stored_${mainThreadCommit}`), ws);
    await ledger.committed();
    t.equal(ws.balance_nano, balance - 1000);
    t.ok(store.ledger.get(`req_stored_${mainThreadCommit}`), 'room again: stored');
  }
});

t.test('fallocate(1) through its shell: room reserved past the end, the size unchanged; a failure says why; no fallocate: unsupported', async (t) => {
  const { Fallocator } = await import('../../src/store/headroom.js');
  const { mkdirSync, statSync, symlinkSync, truncateSync } = await import('node:fs');
  const dir = tempDataDir();
  const file = join(dir, 'a file');
  writeFileSync(file, Buffer.alloc(4096));
  const fa = new Fallocator();
  t.teardown(() => fa.close());
  const answers = await Promise.all([fa.reserve(file, 4096, 4 * MiB, true), fa.reserve(file, 4096 + 4 * MiB, 4 * MiB, true)]);
  t.same(answers, [{ result: 'ok' }, { result: 'ok' }], 'two asked at once: both answered, in turn');
  t.equal(statSync(file).size, 4096, 'the size unchanged');
  t.ok(statSync(file).blocks * 512 >= 8 * MiB + 4096, `the blocks reserved (${statSync(file).blocks * 512})`);
  const missing = await fa.reserve(join(dir, 'none', 'x'), 0, MiB, true);
  t.equal(missing.result, 'unsupported');
  t.match(missing.why, /No such file/);

  // Inside a sparse file (a writable map's): its holes' blocks allocated, the size unchanged.
  const sparse = join(dir, 'sparse');
  writeFileSync(sparse, '');
  truncateSync(sparse, 64 * MiB);
  const before = statSync(sparse).blocks * 512;
  t.same(await fa.reserve(sparse, 8 * MiB, 4 * MiB, false), { result: 'ok' });
  t.equal(statSync(sparse).size, 64 * MiB, 'the size unchanged');
  t.ok(statSync(sparse).blocks * 512 >= before + 4 * MiB, `the holes' blocks allocated (${before} → ${statSync(sparse).blocks * 512})`);

  // A shell that finds no fallocate (PATH without it): unsupported, saying so.
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  symlinkSync('/bin/sh', join(bin, 'sh'));
  const none = new Fallocator({ PATH: bin });
  t.teardown(() => none.close());
  const answer = await none.reserve(file, 0, MiB, true);
  t.equal(answer.result, 'unsupported');
  t.match(answer.why, /fallocate.*not found/);

  fa.close();
  t.same(await fa.reserve(file, 0, MiB, true), { result: 'unsupported', why: 'closed' }, 'closed: unsupported');
});

t.test('a full disk while some of the room is still held: not asked again at every check (found spawning 40 fallocates a second)', async (t) => {
  const { Fallocator } = await import('../../src/store/headroom.js');
  const file = join(tempDataDir(), 'f');
  writeFileSync(file, Buffer.alloc(4096));
  const fa = new Fallocator();
  t.teardown(() => fa.close());
  let asks = 0;
  const reserve: Reserve = (f, o, l, p) => { asks++; return fa.reserve(f, o, l, p); };
  let free = 1024 * MiB;
  const room = new Headroom(file, { floor: 4 * MiB, ahead: 8 * MiB, everyMs: 1_000_000, retryMs: 500 }, reserve, () => {}, async () => ({ free, total: 1024 * MiB }));
  await room.start();
  t.teardown(() => room.stop());
  t.equal(asks, 1, 'the first reservation (real blocks, 8 MiB)');
  free = 0; // (the disk full now: what fallocate reserved before is all there is)
  appendFileSync(file, Buffer.alloc(5 * MiB)); // (3 MiB left: under the floor)
  room.wrote = true;
  await room.check(1_000);
  t.equal(room.room, false, 'under the floor, none to be had: refused');
  for (let at = 1_025; at < 1_500; at += 25) { room.wrote = true; await room.check(at); }
  t.equal(asks, 1, 'nothing asked that could only land within what is held, at this check or the next ones');
  free = 1024 * MiB;
  await room.check(1_500);
  t.equal(room.room, true, 'room on the disk again: reserved, writes resume');
  t.equal(asks, 2);
});

t.test('a key revoked while the disk is full: the 500 is retried, and the retry\'s 200 means it is stored (it was answered 200 unstored, and came back after a restart)', async (t) => {
  const { KeyRing } = await import('../../src/accounts/keys.js');
  const dataDir = tempDataDir();
  let store = await openStore(dataDir);
  const { ring } = await KeyRing.open(store, { dataDir, masterKey: 'sk-test-master-key-0000000000000', operatorKeys: [] });
  const minted = await ring.mint({ name: 'k' });
  const child = await ring.mint({ name: 'child', createdBy: minted.record.id });
  store.headroom.stop();
  store.headroom.room = false;
  await t.rejects(ring.revoke(minted.record.id), NoRoomError, 'the write refused: a 500');
  t.not(ring.get(minted.record.id)!.revoked_at, null, 'revoked in memory all the same: it stops working now');
  store.headroom.room = true;
  await ring.revoke(minted.record.id);
  await store.close();
  store = await openStore(dataDir);
  t.teardown(() => store.close());
  const { ring: again } = await KeyRing.open(store, { dataDir, masterKey: 'sk-test-master-key-0000000000000', operatorKeys: [] });
  t.not(again.get(minted.record.id)?.revoked_at ?? null, null, 'after a restart: revoked');
  t.not(again.get(child.record.id)?.revoked_at ?? null, null, 'and the key it minted too');
});

t.test('with no room, a new key, a key\'s change and a new workspace are refused (503) before anything changes in memory; a write refused later is a 503 too', async (t) => {
  const { KeyRing } = await import('../../src/accounts/keys.js');
  const { asGatewayError, GatewayError } = await import('../../src/errors.js');
  const dataDir = tempDataDir();
  let store = await openStore(dataDir);
  const { ring } = await KeyRing.open(store, { dataDir, masterKey: 'sk-test-master-key-0000000000000', operatorKeys: [] });
  const workspaces = new Workspaces(store);
  const minted = await ring.mint({ name: 'before' });
  const keysBefore = ring.list().length;
  store.headroom.stop();
  store.headroom.room = false;
  const refused = async (p: Promise<unknown>, what: string) => {
    const err = await p.then(() => null, (e: unknown) => e);
    t.ok(err instanceof GatewayError && err.status === 503 && err.code === 'store_unavailable' && /disk is full/.test(err.message), `${what}: 503 store_unavailable (${String(err)})`);
  };
  await refused(ring.mint({ name: 'during' }), 'a new key');
  await refused(ring.update(minted.record.id, { name: 'renamed' }), 'a key renamed');
  await refused(workspaces.create('acme', 'ops@acme.test'), 'a new workspace');
  t.equal(ring.get(minted.record.id)!.name, 'before', 'the key\'s name unchanged in memory');
  t.equal(ring.list().length, keysBefore, 'no new key in memory');
  t.notOk(workspaces.list().some((w) => w.name === 'acme'), 'no workspace in memory');
  const mapped = asGatewayError(new NoRoomError());
  t.equal(mapped.status, 503, 'a store write refused for want of room, answered: 503');
  t.equal(mapped.code, 'store_unavailable');

  store.headroom.room = true;
  await ring.update(minted.record.id, { name: 'renamed' });
  const ws = await workspaces.create('acme', 'ops@acme.test');
  await store.close();
  store = await openStore(dataDir);
  t.teardown(() => store.close());
  const { ring: again } = await KeyRing.open(store, { dataDir, masterKey: 'sk-test-master-key-0000000000000', operatorKeys: [] });
  t.equal(again.get(minted.record.id)!.name, 'renamed', 'with room again: stored');
  t.ok(workspaces.list().some((w) => w.id === ws.id), 'and the workspace made');
});

t.test('a renewal still under way when the store closes says nothing after, and asks for no more', async (t) => {
  const file = join(tempDataDir(), 'f');
  writeFileSync(file, Buffer.alloc(4096));
  const lines: string[] = [];
  const calls: number[] = [];
  let answer: ((a: { result: 'unsupported'; why: string }) => void) | null = null;
  const reserve: Reserve = (_file, offset) => {
    calls.push(offset);
    if (calls.length === 1) return Promise.resolve({ result: 'ok' as const });
    return new Promise((resolve) => { answer = resolve; });
  };
  const room = new Headroom(file, opts, reserve, (l) => lines.push(l));
  await room.start();
  appendFileSync(file, Buffer.alloc(3 * MiB)); // (past half of the 4 MiB ahead: a renewal)
  room.wrote = true;
  const checking = room.check(1_000);
  for (let i = 0; i < 200 && calls.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 5));
  t.equal(calls.length, 2, 'the renewal is asked for');
  room.stop();
  // What fallocate's shell says when the close has ended it.
  answer!({ result: 'unsupported', why: 'the shell running fallocate exited' });
  await checking;
  t.same(lines, [], `no "reserving room failed, trying again" after the close (${lines.join(' | ')})`);
  t.equal(calls.length, 2, 'and no smaller ask after it');
});

t.test('a check still reading the file when the store closes says nothing after (LMDB\'s end is not read from a closed store)', async (t) => {
  const file = join(tempDataDir(), 'f');
  writeFileSync(file, Buffer.alloc(4096));
  const lines: string[] = [];
  let closed = false;
  let end = 4096;
  const usedEnd = () => { if (closed) throw new Error('The environment is already closed.'); return end; };
  const room = new Headroom(file, opts, standIn().reserve, (l) => lines.push(l));
  await room.start(usedEnd);
  end += 3 * MiB; // (past half of the 4 MiB ahead: a renewal is due, so the check reads the file)
  room.wrote = true;
  const checking = room.check(1_000);
  room.stop();
  closed = true; // (what the store's close does next)
  await checking;
  t.same(lines, [], `no "the room check failed" after the close (${lines.join(' | ')})`);
});

t.test('a mapped store\'s check reads LMDB\'s end, and the file only when a renewal is due', async (t) => {
  const dir = tempDataDir();
  const file = join(dir, 'f');
  writeFileSync(file, Buffer.alloc(4096));
  const lines: string[] = [];
  const r = standIn();
  let end = 4096;
  const room = new Headroom(file, opts, r.reserve, (l) => lines.push(l));
  await room.start(() => end);
  t.equal(r.calls.length, 1, 'the first reservation');
  // The file cannot be read (its directory is now a file: ENOTDIR); a check with no renewal due does not notice.
  rmSync(dir, { recursive: true });
  writeFileSync(dir, '');
  end += MiB;
  room.wrote = true;
  await room.check(1_000);
  t.same(lines, [], 'the file was not read');
  t.equal(room.room, true);
  // LMDB's end past half of what is held: the renewal is asked from that end, the file read for it.
  rmSync(dir);
  mkdirSync(dir);
  writeFileSync(file, Buffer.alloc(4096));
  end += 2 * MiB;
  room.wrote = true;
  await room.check(2_000);
  t.equal(r.calls.length, 2, 'renewed');
  t.equal(r.calls[1]!.offset, end, 'from LMDB\'s end, not the file\'s size');
  t.same(lines, []);
  room.stop();
});
