// The stored Responses' records (gateway/response-ids.ts): with the ledger committing on this
// thread, a record rides in its next transaction; what a request sees is the latest write at
// once, and the store ends with it, a delete right after the put included.
import t from 'tap';
import { Ledger, ledgerRow } from '../../src/accounts/ledger.js';
import { Workspaces } from '../../src/accounts/workspaces.js';
import { ResponseIds } from '../../src/gateway/response-ids.js';
import { openStore } from '../../src/store/lmdb.js';
import { tempDataDir } from '../helpers/gateway.js';

t.test('a passthrough record commits with the ledger\'s batch; a delete in the same turn wins, in memory and in the store', async (t) => {
  const dir = tempDataDir();
  const store = await openStore(dir, { fsync: false });
  const workspaces = new Workspaces(store);
  const ledger = new Ledger(store, workspaces, 0, true);
  const ws = await workspaces.create('acme', null);
  const ids = new ResponseIds(store);

  ids.remember(ws.id, 'resp_kept', 120, 'openai');
  ids.remember(ws.id, 'resp_gone', 80, 'openai');
  t.ok(ids.forget(ws.id, 'resp_gone'), 'forgotten while its put is still queued');
  ledger.append(ledgerRow({ id: 'req_r1', kind: 'request', workspace: ws.id, key_id: 'key_x', endpoint: 'responses' }), ws);
  t.equal(ids.find(ws.id, 'resp_kept')?.tokens, 120, 'seen at once, before the commit');
  t.equal(ids.find(ws.id, 'resp_gone'), null);
  await ledger.committed();
  t.equal(ids.find(ws.id, 'resp_kept')?.provider, 'openai', 'and after it');
  t.equal(ids.find(ws.id, 'resp_gone'), null);
  await store.close();

  // What the store holds (no pending writes in a new process).
  const again = await openStore(dir, { fsync: false });
  t.teardown(() => again.close());
  const fresh = new ResponseIds(again);
  t.equal(fresh.find(ws.id, 'resp_kept')?.tokens, 120, 'the record was committed with the row');
  t.equal(fresh.find(ws.id, 'resp_gone'), null, 'the remove landed after the put');
  t.ok(again.ledger.get('req_r1'));
});

t.test('a bridged record (any size) goes the asynchronous way; a delete that follows it goes that way too', async (t) => {
  const store = await openStore(tempDataDir(), { fsync: false });
  t.teardown(() => store.close());
  const workspaces = new Workspaces(store);
  const ledger = new Ledger(store, workspaces, 0, true);
  const ws = await workspaces.create('acme', null);
  const ids = new ResponseIds(store);
  const conversation = [{ role: 'user', content: 'x'.repeat(200_000) }];
  ids.keep(ws.id, 'resp_big', 50_000, conversation, { id: 'resp_big', object: 'response' });
  t.equal(ids.find(ws.id, 'resp_big')?.conversation?.length, 1, 'seen at once');
  t.ok(ids.forget(ws.id, 'resp_big'));
  ids.keep(ws.id, 'resp_other', 1, [{ role: 'user', content: 'hi' }], { id: 'resp_other' });
  await store.root.committed;
  await ledger.committed();
  t.equal(store.responses.get([ws.id, 'resp_big']), undefined, 'the delete landed after the put');
  t.equal(ids.find(ws.id, 'resp_big'), null);
  t.equal(ids.find(ws.id, 'resp_other')?.tokens, 1);
});
