// Cluster mode's reads of Postgres (keys and workspaces, the router's shared state): a caller
// that waits for a read gets one begun after its call, never one already under way (which may
// have begun before what it waits for was written: read your writes across replicas).
import t from 'tap';
import { Refresher } from '../../src/store/cluster.js';

t.test('a refresh while a read runs settles only after a read begun after it', async (t) => {
  const reads: Array<{ began: number; finish: () => void }> = [];
  let clock = 0;
  const refresher = new Refresher(() => new Promise<void>((resolve) => reads.push({ began: ++clock, finish: resolve })), 'test records');

  const first = refresher.refresh();
  t.equal(reads.length, 1, 'a read begins');
  const written = ++clock; // something is written elsewhere while that read runs
  let caughtUp = false;
  const waiting = refresher.refresh().then(() => { caughtUp = true; });
  const alsoWaiting = refresher.refresh();
  t.equal(reads.length, 1, 'no second read while one runs');
  reads[0]!.finish();
  await first;
  await new Promise((r) => setImmediate(r));
  t.equal(caughtUp, false, 'the read under way when the caller asked does not settle its wait');
  t.equal(reads.length, 2, 'one more read begins once that one is over (the calls made meanwhile share it)');
  t.ok(reads[1]!.began > written, 'and it began after the write');
  reads[1]!.finish();
  await Promise.all([waiting, alsoWaiting]);
  t.equal(caughtUp, true);
  t.equal(reads.length, 2);

  const idle = refresher.refresh();
  t.equal(reads.length, 3, 'when no read runs, a call begins one at once');
  reads[2]!.finish();
  await idle;
});

t.test('a failed read is logged and settles the wait; the next call reads again', async (t) => {
  let n = 0;
  const logged: string[] = [];
  const error = console.error;
  console.error = (line: string) => { logged.push(line); };
  t.teardown(() => { console.error = error; });
  const refresher = new Refresher(() => (++n === 1 ? Promise.reject(new Error('connection refused')) : Promise.resolve()), 'test records');
  await refresher.refresh();
  t.match(logged[0], /reading test records from Postgres failed: connection refused/);
  await refresher.refresh();
  t.equal(n, 2);
});
