// A ledger batch that cannot be stored whole is stored not at all: none of its rows, and none
// of the balance changes they made (the balances in memory are set back, and stored with the
// next batch). Driven here by a row LMDB refuses (a key over its 1,978-byte limit: the commit fails),
// which no request id Sluice makes can be; a full disk is test/hostile/disk-full.test.ts.
import t from 'tap';
import { Ledger, ledgerRow, LedgerRowSchema } from '../../src/accounts/ledger.js';
import { Workspaces } from '../../src/accounts/workspaces.js';
import { openStore } from '../../src/store/lmdb.js';
import { tempDataDir } from '../helpers/gateway.js';

t.test('a batch with a row LMDB refuses: nothing of it is stored, its balance changes are undone, the next batch is whole', async (t) => {
  const store = await openStore(tempDataDir(), { fsync: false, writableMap: false });
  t.teardown(() => store.close());
  const workspaces = new Workspaces(store);
  const ledger = new Ledger(store, workspaces, 0);
  const ws = await workspaces.create('acme', null);
  const row = (id: string, delta: number) => ledgerRow({ id, kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions', delta_nano: delta });

  ledger.append(row('req_good_1', -1000), ws);
  ledger.append(row(`req_${'x'.repeat(3000)}`, -2000), ws);
  t.equal(ws.balance_nano, -3000, 'applied in memory as appended');
  await t.rejects(ledger.committed(), 'the batch failed');
  t.equal(ws.balance_nano, 0, 'both changes undone');
  t.equal(store.ledger.get('req_good_1'), undefined, 'the good row of the failed batch is not stored either');
  t.equal(ledger.failing, true, '/health would say failing');

  ledger.append(row('req_good_2', -500), ws);
  await ledger.committed();
  t.equal(ws.balance_nano, -500);
  t.equal((store.workspaces.get(ws.id) as { balance_nano: number }).balance_nano, -500, 'the stored balance is the stored rows\' sum');
  t.ok(LedgerRowSchema.safeParse(store.ledger.get('req_good_2')).success);
  t.equal(ledger.failing, false, 'a batch committed since: not failing');
});

t.test('the key limits\' counters a failed batch carried are written again with the next one', async (t) => {
  const { Limits } = await import('../../src/accounts/limits.js');
  for (const mainThreadCommit of [true, false]) {
    const store = await openStore(tempDataDir(), { fsync: false, writableMap: mainThreadCommit });
    const workspaces = new Workspaces(store);
    const ledger = new Ledger(store, workspaces, 0, mainThreadCommit);
    const limits = new Limits(store);
    ledger.addPersister((force) => limits.persistDirty(force ? 0 : 500));
    ledger.onRollback(() => limits.rewrite());
    const ws = await workspaces.create('acme', null);
    const key = { id: 'key_lim', kind: 'minted', limits: { rpm: 100 } } as unknown as Parameters<typeof limits.admit>[0][number];
    const admission = limits.admit([key], { tokens: 0, nano: 0 })!;
    limits.finish(key, admission, 0, 0);
    // The counters go out with a batch that fails (a row LMDB refuses).
    ledger.append(ledgerRow({ id: `req_${'x'.repeat(3000)}`, kind: 'request', workspace: ws.id, key_id: key.id, endpoint: 'chat.completions' }), ws);
    await t.rejects(ledger.committed(), `the batch failed (${mainThreadCommit ? 'this thread' : 'writer thread'})`);
    t.equal(store.limits.get(key.id), undefined, 'nothing of the failed batch is stored');
    // The next batch (however soon: the counters wait for no interval) stores them, though the key did nothing since.
    ledger.append(ledgerRow({ id: 'req_next', kind: 'request', workspace: ws.id, key_id: 'key_other', endpoint: 'chat.completions' }), ws);
    await ledger.committed();
    t.ok(store.limits.get(key.id), 'the key\'s counters are stored with the next batch');
    await store.close();
  }
});

t.test('writer-thread commits (fsync on) go one at a time: rows appended meanwhile wait, and a failed batch\'s changes never reach the next one\'s records', async (t) => {
  const store = await openStore(tempDataDir(), { fsync: false, writableMap: false });
  t.teardown(() => store.close());
  const workspaces = new Workspaces(store);
  const ledger = new Ledger(store, workspaces, 0, false);
  const ws = await workspaces.create('acme', null);
  const row = (id: string, delta: number) => ledgerRow({ id, kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions', delta_nano: delta });
  const order: string[] = [];
  ledger.onRow((r) => order.push(`put ${r.id.slice(0, 12)}`));

  ledger.append(row('req_first_ok', -1000), ws);
  ledger.append(row(`req_${'x'.repeat(3000)}`, -2000), ws);
  const first = ledger.committed().then(() => order.push('first committed'), () => order.push('first failed'));
  // The next turn's rows, appended while the first batch's commit is undecided.
  await new Promise((r) => setImmediate(r));
  ledger.append(row('req_second', -500), ws);
  const second = ledger.committed().then(() => order.push('second committed'));
  await Promise.all([first, second]);
  t.same(order.filter((x) => !x.startsWith(`put req_${'x'.repeat(8)}`)), ['put req_first_ok', 'first failed', 'put req_second', 'second committed'],
    'the second batch is put only once the first has failed');
  t.equal(ws.balance_nano, -500);
  t.equal((store.workspaces.get(ws.id) as { balance_nano: number }).balance_nano, -500, 'the stored balance is the stored rows\' sum');
  t.equal(store.ledger.get('req_first_ok'), undefined);
  t.ok(store.ledger.get('req_second'));

  // flush() waits for a commit in flight, then writes what waits behind it.
  ledger.append(row('req_third', -1), ws);
  await new Promise((r) => setImmediate(r));
  ledger.append(row('req_fourth', -1), ws);
  await ledger.flush();
  t.ok(store.ledger.get('req_third') && store.ledger.get('req_fourth'), 'flush: both stored');
});

t.test('a row shape first written in a failed batch is readable after a restart when a later batch stores it', async (t) => {
  for (const mainThreadCommit of [true, false]) {
    const dir = tempDataDir();
    let store = await openStore(dir, { fsync: false, writableMap: mainThreadCommit });
    const workspaces = new Workspaces(store);
    const ledger = new Ledger(store, workspaces, 0, mainThreadCommit);
    const ws = await workspaces.create('acme', null);
    // (a saving no row had before: its nested object is a record structure msgpackr mints with this row)
    const shaped = (id: string) => ledgerRow({ id, kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions', saved_tokens: { chunk_dedupe: 7, compression: 3 } });
    ledger.append(shaped('req_shaped_1'), ws);
    ledger.append(ledgerRow({ id: `req_${'x'.repeat(3000)}`, kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions' }), ws);
    await t.rejects(ledger.committed());
    ledger.append(shaped('req_shaped_2'), ws);
    await ledger.committed();
    await ledger.flush();
    await store.close();
    store = await openStore(dir, { fsync: false, writableMap: false });
    const row = LedgerRowSchema.safeParse(store.ledger.get('req_shaped_2'));
    t.ok(row.success, `the later row reads after a restart (${mainThreadCommit ? 'this thread' : 'writer thread'})`);
    t.same(row.success ? row.data.saved_tokens : null, { chunk_dedupe: 7, compression: 3 });
    await store.close();
  }
});

t.test('writer-thread commits (fsync on): a batch stores its workspaces as its own rows left them, not with rows appended while the writer had not run it', async (t) => {
  const store = await openStore(tempDataDir(), { fsync: false, writableMap: false });
  t.teardown(() => store.close());
  const workspaces = new Workspaces(store);
  const ledger = new Ledger(store, workspaces, 0, false);
  const ws = await workspaces.create('acme', null);
  await ledger.flush();
  const row = (id: string, delta: number) => ledgerRow({ id, kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions', delta_nano: delta });
  ledger.append(row('req_first', -1000), ws);
  const first = ledger.committed();
  // Right after the batch is handed to the writer (this runs after the ledger's write, in the same turn):
  // a row whose own batch will fail (LMDB refuses its key).
  await new Promise((r) => setImmediate(r));
  ledger.append(row(`req_${'x'.repeat(3000)}`, -500), ws);
  await first;
  await t.rejects(ledger.committed(), 'the second batch failed');
  t.equal(ws.balance_nano, -1000, 'in memory: the first row only');
  t.equal((store.workspaces.get(ws.id) as { balance_nano: number }).balance_nano, -1000, 'stored: the stored rows\' sum, without the failed row\'s change');
});

t.test('onAnswered sees each row after its batch\'s waiters were told, with whether a thread sent it, committed or not', async (t) => {
  for (const mainThreadCommit of [true, false]) {
    const store = await openStore(tempDataDir(), { fsync: false, writableMap: mainThreadCommit });
    const workspaces = new Workspaces(store);
    const ledger = new Ledger(store, workspaces, 0, mainThreadCommit);
    const ws = await workspaces.create('acme', null);
    const order: string[] = [];
    ledger.onRow((row) => order.push(`written ${row.id}`));
    ledger.onAnswered((row, relayed, committed) => order.push(`answered ${row.id}${relayed ? ' (relayed)' : ''}${committed ? '' : ' (not committed)'}`));
    const row = (id: string) => ledgerRow({ id, kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'chat.completions', delta_nano: -1000 });
    ledger.append(row('req_a'), ws);
    ledger.append(row('req_b'), ws, true);
    ledger.whenCommitted((err) => order.push(`told ${err === null ? 'committed' : 'failed'}`));
    await ledger.committed();
    t.same(order, ['written req_a', 'written req_b', 'told committed', 'answered req_a', 'answered req_b (relayed)'], `${mainThreadCommit ? 'main-thread' : 'writer-thread'} commit`);
    order.length = 0;
    ledger.append(row(`req_${'x'.repeat(3000)}`), ws); // (refused by LMDB: the batch fails)
    ledger.whenCommitted((err) => order.push(`told ${err === null ? 'committed' : 'failed'}`));
    await t.rejects(ledger.committed());
    // (the refused put throws before the row listeners see it; the access log still gets its line)
    t.same(order.map((o) => o.replace(/x{3000}/, 'x…')), ['told failed', 'answered req_x… (not committed)'], 'a failed batch: its rows too, after its waiters');
    await store.close();
  }
});
