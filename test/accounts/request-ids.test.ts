// Cluster mode looks again, briefly, for a request answered through another replica moments
// ago (its row may still wait in that replica's outbox): only for ids that are request ids
// made in the last hour, read from the time RequestIds puts in them.
import t from 'tap';
import { RequestIds } from '../../src/accounts/ledger.js';
import { requestIdTime } from '../../src/accounts/shipper.js';

t.test('a request id says when it was made', async (t) => {
  const before = Date.now();
  const id = new RequestIds().next();
  const at = requestIdTime(id);
  t.ok(at !== null && at >= before && at <= Date.now(), `${id}: ${at}`);
});

t.test('anything else is not a request id', async (t) => {
  for (const id of ['', 'req_', 'req_x', 'ref_req_0mxbcoempc7b1490000j', 'req_0mxbcoempc7b1490000j ', 'REQ_0mxbcoempc7b1490000j', 'req_0mxbcoempc7b1490000jj', 'req_0mxbco-mpc7b1490000j']) {
    t.equal(requestIdTime(id), null, JSON.stringify(id));
  }
});
