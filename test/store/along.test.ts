// Writes carried by the ledger's transaction (store/along.ts): a cache's entry, a request's
// cache ref and a stored Response's record commit with the ledger's next batch when the ledger
// commits on this thread (no second commit on lmdb-js's writer thread), never abort that
// batch, keep one key's writes in order, and without such a ledger go through lmdb-js's
// asynchronous batch as before.
import t, { type Test } from 'tap';
import { Ledger, ledgerRow } from '../../src/accounts/ledger.js';
import { Workspaces } from '../../src/accounts/workspaces.js';
import { CARRY_BATCH_MAX, CARRY_MAX, utf8Bound } from '../../src/store/along.js';
import { openStore, type Store } from '../../src/store/lmdb.js';
import { tempDataDir } from '../helpers/gateway.js';

/** Records, for each put of `db`, whether it ran inside a synchronous write transaction of `store.root`. */
function spyPuts(store: Store, db: Store['cache']): boolean[] {
  const inside: boolean[] = [];
  let depth = 0;
  const root = store.root as unknown as { transactionSync: (cb: () => unknown, flags?: unknown) => unknown };
  const transact = root.transactionSync.bind(store.root);
  root.transactionSync = (cb, flags) => transact(() => { depth++; try { return cb(); } finally { depth--; } }, flags);
  const methods = db as unknown as { put: (...args: unknown[]) => unknown };
  const put = methods.put.bind(db);
  methods.put = (...args: unknown[]) => { inside.push(depth > 0); return put(...args); };
  return inside;
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

/** A store whose ledger commits on this thread (the carrier), and a workspace for its rows; closed at the test's end. */
async function carrying(t: Test) {
  const store = await openStore(tempDataDir(), { fsync: false });
  t.teardown(() => store.close());
  const workspaces = new Workspaces(store);
  const ledger = new Ledger(store, workspaces, 0, true);
  return { store, ledger, ws: await workspaces.create('acme', null) };
}

t.test('with the ledger committing on this thread, a carried put goes in its transaction, with the batch\'s rows', async (t) => {
  const { store, ledger, ws } = await carrying(t);
  const inside = spyPuts(store, store.cache);

  store.along.put(store.cache, ['ws', 'h1'], { exp: 1, answer: 'a' });
  ledger.append(ledgerRow({ id: 'req_along_1', kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions' }), ws);
  t.equal(store.cache.get(['ws', 'h1']), undefined, 'not stored before the batch runs');
  await ledger.committed();
  t.same(inside, [true], 'put once, inside the ledger\'s synchronous transaction');
  t.same(store.cache.get(['ws', 'h1']), { exp: 1, answer: 'a' }, 'stored once the batch\'s waiters are told');
  t.ok(store.ledger.get('req_along_1'), 'with the row');

  // A large value is left to lmdb-js's writer thread (its copy into the file off the event loop).
  store.along.put(store.cache, ['ws', 'big'], { body: 'x'.repeat(CARRY_MAX + 1) }, CARRY_MAX + 1);
  t.same(inside, [true, false], 'a value over CARRY_MAX: put at once, outside any transaction');
  await store.root.committed;
  t.equal((store.cache.get(['ws', 'big']) as { body: string }).body.length, CARRY_MAX + 1, 'and committed by lmdb-js');

  // What one batch carries is bounded: a put past CARRY_BATCH_MAX queued goes the asynchronous way.
  const each = CARRY_MAX;
  const fit = Math.floor(CARRY_BATCH_MAX / each);
  for (let i = 0; i <= fit; i++) store.along.put(store.cache, ['ws', `part${i}`], { i }, each);
  t.same(inside.slice(2), [false], `${fit} carried, the one past ${CARRY_BATCH_MAX} bytes put at once`);
  await ledger.committed();
  t.same(inside.slice(2), [false, ...Array(fit).fill(true)], 'the others in the ledger\'s transaction');
  await store.root.committed;
  t.same([0, fit - 1, fit].map((i) => store.cache.get(['ws', `part${i}`])), [{ i: 0 }, { i: fit - 1 }, { i: fit }], 'all stored');
  inside.length = 2;

  // A carried put with no row appended still makes a batch run (this turn), and commits in it.
  store.along.put(store.cache, ['ws', 'h2'], { exp: 2 });
  await tick();
  t.same(store.cache.get(['ws', 'h2']), { exp: 2 }, 'committed one turn later, by a batch of its own');
  t.same(inside, [true, false, true]);
});

t.test('a carried put LMDB refuses is dropped with a log line; the batch\'s rows and the other puts commit', async (t) => {
  const { store, ledger, ws } = await carrying(t);
  const logged: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => { logged.push(args.map(String).join(' ')); };
  t.teardown(() => { console.error = error; });

  store.along.put(store.cache, ['ws', 'before'], { n: 1 });
  store.along.put(store.cache, ['ws', 'k'.repeat(3000)], { n: 2 }); // over LMDB's 1,978-byte key limit
  store.along.put(store.cache, ['ws', 'after'], { n: 3 });
  ledger.append(ledgerRow({ id: 'req_along_2', kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions', delta_nano: -700 }), ws);
  await ledger.committed();
  console.error = error;
  t.ok(store.ledger.get('req_along_2'), 'the row is stored');
  t.equal((store.workspaces.get(ws.id) as { balance_nano: number }).balance_nano, -700, 'and its balance change');
  t.same(store.cache.get(['ws', 'before']), { n: 1 });
  t.same(store.cache.get(['ws', 'after']), { n: 3 });
  t.equal(ledger.failing, false, 'the batch did not fail');
  t.ok(logged.some((l) => /carried with the ledger's batch was refused and dropped: .*key size/i.test(l)), `said so (${logged.join(' | ').slice(0, 200)})`);
});

t.test('a batch refused for want of room loses what it carried, and the ledger goes on', async (t) => {
  const { store, ledger, ws } = await carrying(t);
  const error = console.error;
  console.error = () => {};
  t.teardown(() => { console.error = error; });
  const headroom = store.headroom as unknown as { room: boolean };
  headroom.room = false;
  store.along.put(store.cache, ['ws', 'lost'], { n: 1 });
  const ordered = store.along.write(store.responses, ['ws', 'gone'], { tokens: 1, exp: 1 }, 0, null);
  ledger.append(ledgerRow({ id: 'req_along_3', kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions' }), ws);
  await t.rejects(ledger.committed(), 'the batch was refused');
  t.equal(await ordered.committed, false, 'an ordered write is told it was lost');
  headroom.room = true;
  const kept = store.along.write(store.responses, ['ws', 'kept'], { tokens: 2, exp: 2 }, 0, null);
  ledger.append(ledgerRow({ id: 'req_along_4', kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions' }), ws);
  await ledger.committed();
  console.error = error;
  t.ok(store.ledger.get('req_along_4'), 'the next batch commits');
  t.equal(await kept.committed, true, 'and its ordered write is told so');
  t.equal(store.cache.get(['ws', 'lost']), undefined, 'what the refused batch carried is not stored later, as with a failed asynchronous commit');
  t.equal(store.responses.get(['ws', 'gone']), undefined);
  t.same(store.responses.get(['ws', 'kept']), { tokens: 2, exp: 2 });
});

t.test('ordered writes: a remove after a put of the same key lands after it, whichever way the put went', async (t) => {
  const { store, ledger, ws } = await carrying(t);
  const inside = spyPuts(store, store.responses as unknown as Store['cache']);
  const told: unknown[] = [];

  // Carried: the put and the remove ride in one transaction, in order; each is told once it commits.
  const put = store.along.write(store.responses, ['ws', 'r1'], { tokens: 1, exp: 1 }, 0, null);
  t.equal(put.way, 'carried');
  void Promise.resolve(put.committed).then((v) => told.push(['put', v]));
  const removed = store.along.write(store.responses, ['ws', 'r1'], undefined, 0, put.way);
  void Promise.resolve(removed.committed).then((v) => told.push(['remove', v]));
  t.equal(removed.way, 'carried');
  ledger.append(ledgerRow({ id: 'req_ordered_1', kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'responses' }), ws);
  t.same(told, [], 'nothing told before the batch commits');
  await ledger.committed();
  await tick();
  t.same(told, [['put', true], ['remove', true]], 'both told: committed');
  t.equal(store.responses.get(['ws', 'r1']), undefined, 'the remove landed after the put');
  t.same(inside, [true], 'the put was inside the ledger\'s transaction');

  // A large put goes the asynchronous way; a remove that follows it goes that way too, though it is small.
  const big = store.along.write(store.responses, ['ws', 'r2'], { tokens: 2, exp: 2, response: { text: 'x'.repeat(CARRY_MAX) } }, Infinity, null);
  t.equal(big.way, 'async');
  const after = store.along.write(store.responses, ['ws', 'r2'], undefined, 0, big.way);
  t.equal(after.way, 'async', 'the remove follows the put\'s way');
  await after.committed;
  await ledger.committed();
  t.equal(store.responses.get(['ws', 'r2']), undefined, 'and landed after it');

  // A large write that follows a carried one is carried too (and fills the batch: the next small one goes async).
  const small = store.along.write(store.responses, ['ws', 'r3'], { tokens: 3, exp: 3 }, 0, null);
  const large = store.along.write(store.responses, ['ws', 'r3'], { tokens: 4, exp: 4, response: { text: 'y'.repeat(CARRY_MAX) } }, Infinity, small.way);
  t.equal(large.way, 'carried', 'follows the pending carried put');
  t.equal(store.along.write(store.responses, ['ws', 'r4'], { tokens: 5, exp: 5 }, 10, null).way, 'async', 'the batch is full after it');
  await ledger.committed();
  t.equal((store.responses.get(['ws', 'r3']) as { tokens: number }).tokens, 4, 'the later put won');
  await store.root.committed;
  t.equal((store.responses.get(['ws', 'r4']) as { tokens: number }).tokens, 5);
});

t.test('without a ledger committing on this thread, a carried put is lmdb-js\'s asynchronous put', async (t) => {
  for (const withLedger of [false, true]) {
    const store = await openStore(tempDataDir(), { fsync: false, writableMap: false });
    // (a writer-thread ledger: its batches are child transactions committed later, which carry nothing)
    if (withLedger) new Ledger(store, new Workspaces(store), 0, false);
    const inside = spyPuts(store, store.cache);
    store.along.put(store.cache, ['ws', 'h'], { v: 1 });
    t.same(inside, [false], `put at once, outside any transaction (${withLedger ? 'writer-thread ledger' : 'no ledger'})`);
    await store.root.committed;
    t.same(store.cache.get(['ws', 'h']), { v: 1 }, 'and committed by lmdb-js');
    await store.close();
  }
});

t.test('utf8Bound is never below a string\'s UTF-8 bytes', async (t) => {
  for (const text of ['', 'plain ascii', 'é'.repeat(100), '漢字'.repeat(1000), '😀'.repeat(500), '\ud800 lone', 'x'.repeat(70_000)]) {
    t.ok(utf8Bound(text) >= Buffer.byteLength(text), `${JSON.stringify(text.slice(0, 12))}: ${utf8Bound(text)} ≥ ${Buffer.byteLength(text)}`);
  }
});
