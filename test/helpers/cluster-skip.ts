// The cluster tests' first line: without Debian's redis-server and Postgres they are skipped,
// saying why (in CI that is an error: CI installs them). Apart from helpers/cluster.ts, which
// the benches import too and which must not load tap.
import t from 'tap';
import { clusterUnavailable } from './cluster.js';

/** Ends the test file as one skipped test named `name` when the servers are missing. */
export function skipWithoutClusterServers(name: string): void {
  const missing = clusterUnavailable();
  if (!missing) return;
  if (process.env.CI) throw new Error(`cluster tests need their servers in CI: ${missing}`);
  t.test(name, { skip: `cluster tests: ${missing}` }, () => undefined);
  process.exit(0);
}
