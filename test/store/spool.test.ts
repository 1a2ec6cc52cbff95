// The upload spool: memory first, then an unlinked file; readers follow it as it grows, each
// from the first byte (failover resends), and see its failure or its end.
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MEMORY_BYTES, Spool } from '../../src/store/spool.js';

const dir = mkdtempSync(join(tmpdir(), 'sluice-spool-'));
const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));
const drain = async (spool: Spool) => { const parts: Buffer[] = []; for await (const c of spool.read()) parts.push(c); return Buffer.concat(parts); };

t.test('a reader that starts first follows the upload into the file; a later one reads it all again', async (t) => {
  const spool = new Spool(dir);
  const first = drain(spool);
  const chunks = Array.from({ length: 40 }, (_, i) => bytes(100_000 + i, i)); // ~4 MB: most of it spills
  for (const c of chunks) {
    spool.append(Buffer.from(c));
    await new Promise((r) => setImmediate(r));
  }
  spool.end();
  const whole = Buffer.concat(chunks);
  t.ok(whole.length > 3 * MEMORY_BYTES);
  t.ok((await first).equals(whole), 'the reader that followed got every byte in order');
  t.ok((await drain(spool)).equals(whole), 'a second reader (a failover attempt) gets the same bytes');
  t.ok(spool.head(16).equals(whole.subarray(0, 16)));
  t.equal(spool.size, whole.length);
  t.same(readdirSync(dir), [], 'the spool file was unlinked as soon as it was opened');
  t.ok(spool.complete, 'complete once ended');
  spool.close();
  await t.rejects(drain(spool), { message: 'The request is over.' }, 'a reader after close stops: the request is over');
});

t.test('a failure reaches readers waiting and to come; a writer ahead of the disk is told to pause', async (t) => {
  const spool = new Spool(dir);
  const waiting = drain(spool);
  let paused = false;
  let drained = 0;
  spool.onDrain = () => { drained++; };
  for (let i = 0; i < 12; i++) if (!spool.append(bytes(512 * 1024, i))) paused = true;
  t.ok(paused, 'more than a MiB waiting for the disk: pause');
  await new Promise((r) => setTimeout(r, 200));
  t.ok(drained >= 1, 'and told when to go on');
  const err = Object.assign(new Error('bad form'), { status: 400 });
  spool.fail(err as never);
  await t.rejects(waiting, { message: 'bad form' });
  await t.rejects(drain(spool), { message: 'bad form' });
  t.notOk(spool.complete, 'a failed upload is never complete');
  spool.close();
});
