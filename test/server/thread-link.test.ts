// A thread's end of the link (server/thread-link.ts) feeds the thread's access log with the
// rows of each commit request once their waiters are told: as committed, or, when the main
// thread could not commit them, as their clients were told (an answer became a 500 not
// recorded, uncharged), as the main thread's own log does.
import { MessageChannel } from 'node:worker_threads';
import t from 'tap';
import { ledgerRow, type LedgerRow } from '../../src/accounts/ledger.js';
import { MainLink, toWire } from '../../src/server/thread-link.js';
import { GatewayError, Errors } from '../../src/errors.js';

t.test('rows of a commit request reach onCommitted, as told, whether or not the commit succeeded', async (t) => {
  const { port1, port2 } = new MessageChannel();
  t.teardown(() => { port1.close(); port2.close(); });
  let failNext = false;
  // The main thread's side: every commit request answered, or failed when asked to.
  port2.on('message', (batch: Array<{ t: string; id?: number }>) => {
    for (const m of batch) {
      if (m.t !== 'commit') continue;
      port2.postMessage([failNext ? { t: 'fail', id: m.id, error: toWire(new GatewayError(Errors.internal, 'no room')) } : { t: 'reply', id: m.id, value: null }]);
    }
  });
  const link = new MainLink(port1, () => undefined);
  const logged: LedgerRow[] = [];
  link.onCommitted = (rows) => logged.push(...rows);
  const row = (id: string) => ledgerRow({ id, kind: 'request', workspace: 'ws', key_id: 'key_x', endpoint: 'chat.completions', status: 200, charge_usd: 0.25 });

  link.append(row('req_ok'));
  const ok = await new Promise((resolve) => link.whenCommitted(resolve));
  t.equal(ok, null, 'committed');
  t.match(logged, [{ id: 'req_ok', status: 200, charge_usd: 0.25 }], 'logged as it is');

  failNext = true;
  link.append(row('req_lost'));
  const err = await new Promise((resolve) => link.whenCommitted(resolve));
  t.ok(err instanceof GatewayError, 'the waiter hears the failure');
  t.equal(logged.length, 2, 'the row is logged all the same');
  t.match(logged[1], { id: 'req_lost', status: 500, error: 'ledger_not_recorded', charge_usd: 0 }, 'as its client was told: a 500, not charged');
});
