// The sweep reads a record's `exp` from its bytes (store/lmdb.ts peekExp) instead of decoding
// the whole record: it must read what decoding reads, for every number lmdb-js may write
// there, and say undefined (so the record is decoded) for anything else.
import { open } from 'lmdb';
import t from 'tap';
import { ExpirySweep, peekExp } from '../../src/store/lmdb.js';
import { tempDataDir } from '../helpers/gateway.js';

const root = open({ path: `${tempDataDir()}/peek.mdb`, compression: false });
t.teardown(() => root.close());
const db = root.openDB<unknown, string[]>({ name: 'records', encoding: 'msgpack' });

t.test('every exp lmdb-js writes is read as decoding reads it', async (t) => {
  const exps = [0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 31, 2 ** 32 - 1, 2 ** 32, Date.now(), Date.now() + 86_400_000, 1.5, -1, -32, -33, -200, -40_000, -(2 ** 31), 2 ** 53, Number.MAX_SAFE_INTEGER, 1e300, -1e300];
  let n = 0;
  for (const exp of exps) {
    for (const record of [{ exp }, { exp, decision: 'openai/x', body: 'x'.repeat(300), usage: { prompt_tokens: 1 } }, { exp, ws: 'w', hash: 'h'.repeat(40) },
      { exp, ['k'.repeat(40)]: 1, ['l'.repeat(300)]: 2 }]) {
      const key = [`r${n++}`];
      await db.put(key, record);
      const peeked = peekExp(db.getBinary(key)!);
      const decoded = (db.get(key) as { exp: number }).exp;
      t.ok(peeked === undefined || peeked === decoded, `exp ${exp} (${Object.keys(record).length} keys): read ${peeked}, decoded ${decoded}`);
    }
  }
  // The timestamps the caches write are read from the bytes, not decoded.
  const key = ['stamp'];
  await db.put(key, { exp: Date.now() + 3_600_000, decision: 'openai/x', body: 'y'.repeat(100_000), usage: {} });
  t.equal(peekExp(db.getBinary(key)!), (db.get(key) as { exp: number }).exp);
});

t.test('anything else is left to decoding', async (t) => {
  const others: Array<[string, unknown]> = [['exp not first', { body: 'x', exp: 5 }], ['no exp', { a: 1 }], ['a string exp', { exp: '5' }], ['an array', [1, 2]], ['a string', 'exp'], ['a number', 5], ['null', null],
    ['many keys', Object.fromEntries([['exp', 5], ...Array.from({ length: 20 }, (_, i) => [`k${i}`, i])])]];
  for (const [what, value] of others) {
    const key = [what];
    await db.put(key, value);
    const peeked = peekExp(db.getBinary(key)!);
    const decoded = (value as { exp?: unknown } | null)?.exp;
    t.ok(peeked === undefined || peeked === decoded, `${what}: ${peeked}`);
  }
  t.equal(peekExp(Buffer.from([0xd4, 0x72, 0x40, 0x91, 0xa3, 0x65, 0x78, 0x70])), undefined, 'cut before the value');
  t.equal(peekExp(Buffer.from([0xd4, 0x72, 0x40, 0x91, 0xa3, 0x65, 0x78, 0x70, 0xcb, 1, 2])), undefined, 'cut inside the value');
  t.equal(peekExp(Buffer.from([0xd4, 0x72, 0x40, 0x92, 0xa3, 0x65, 0x78, 0x70, 0xd9])), undefined, 'cut inside a key');
  t.equal(peekExp(Buffer.alloc(0)), undefined);
});

t.test('the sweep removes what expired and keeps the rest, read from the bytes or decoded', async (t) => {
  const sweep = root.openDB<unknown, string[]>({ name: 'sweep', encoding: 'msgpack' });
  const now = Date.now();
  const values: Array<[string, unknown, boolean]> = [['fresh', { exp: now + 60_000, body: 'a' }, true], ['stale', { exp: now - 1, body: 'b' }, false],
    ['fresh, exp last', { body: 'c', exp: now + 60_000 }, true], ['stale, exp last', { body: 'd', exp: now - 1 }, false], ['no exp', { body: 'e' }, false], ['stale small', { exp: 3 }, false]];
  for (const [k, v] of values) await sweep.put([k], v);
  new ExpirySweep(sweep).run(100, now);
  await root.committed;
  t.same([...sweep.getKeys()].map((k) => String(Array.isArray(k) ? k[0] : k)).sort(), values.filter(([, , keep]) => keep).map(([k]) => k).sort());
});
