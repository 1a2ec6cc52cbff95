// Cluster mode's stored Responses in Postgres (gateway/shared-responses.ts), against a
// counting stand-in for the pool: a lookup that finds nothing tries again for a write still
// landing, but ids a client makes up in bulk cost one query each, not five.
import t from 'tap';
import { SharedResponses } from '../../src/gateway/shared-responses.js';
import type { Cluster } from '../../src/store/cluster.js';

function counting(): { cluster: Cluster; queries: () => number } {
  let n = 0;
  const pg = { query: async () => { n++; await new Promise((r) => setTimeout(r, 1)); return { rows: [] }; } };
  return { cluster: { pg } as unknown as Cluster, queries: () => n };
}

t.test('one lookup of an unknown id tries again, for a write another replica has not landed yet', async (t) => {
  const { cluster, queries } = counting();
  t.equal(await new SharedResponses(cluster).load('ws_a', 'resp_1'), null);
  t.equal(queries(), 5, 'a query, then four more 50 ms apart');
});

t.test('made-up ids in bulk: each one query, once sixteen lookups are already trying again', async (t) => {
  const { cluster, queries } = counting();
  const shared = new SharedResponses(cluster);
  const found = await Promise.all(Array.from({ length: 200 }, (_, i) => shared.load('ws_a', `resp_made_up_${i}`)));
  t.ok(found.every((f) => f === null), 'all misses');
  t.ok(queries() <= 200 + 16 * 4, `${queries()} queries for 200 lookups (five each would be 1000)`);
  const before = queries();
  t.equal(await shared.load('ws_a', 'resp_later'), null);
  t.equal(queries() - before, 5, 'and once they are over, a lookup tries again as before');
});
