// The access log encodes each row's line as the row is written, into chunks handed to the
// destination every 50 ms: every line arrives whole and in order across chunk boundaries
// (multi-byte text included), a shared stdout gets pieces of whole lines no larger than
// PIPE_BUF, and close() writes what is pending.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { ledgerRow, type LedgerRow } from '../../src/accounts/ledger.js';
import { AccessLog, accessLine } from '../../src/ops/access-log.js';

type Dest = { fd: number; once(event: 'ready', f: () => void): void; write(b: Buffer): boolean };
const destOf = (log: AccessLog) => (log as unknown as { dest: Dest }).dest;
/** The destination's file is open (it opens asynchronously). */
const opened = (log: AccessLog) => new Promise<void>((resolve) => { const d = destOf(log); if (d.fd >= 0) resolve(); else d.once('ready', resolve); });

const row = (i: number): LedgerRow => ({
  ...ledgerRow({ id: `req_${String(i).padStart(8, '0')}`, kind: 'request', workspace: 'ws_default', key_id: 'key_abc', endpoint: 'chat.completions' }),
  requested_model: i % 3 ? 'gpt-4.1-mini' : 'modèle-été', status: i % 5 ? 200 : 502, total_ms: i / 7,
  // (every fifth: an error with multi-byte text, cut at 500 characters)
  error: i % 5 ? null : `upstream said ${'é€😀'.repeat(300)}`,
});

t.test('lines arrive whole and in order across chunks, multi-byte text included', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'access.log');
  const log = new AccessLog(file);
  await opened(log);
  const rows = Array.from({ length: 3000 }, (_, i) => row(i)); // ~2.4 MB: dozens of 64 KiB chunks
  for (const r of rows.slice(0, 1500)) log.add(r);
  await new Promise((r) => setTimeout(r, 120)); // (a drain in between)
  for (const r of rows.slice(1500)) log.add(r);
  log.add({ ...row(9999), kind: 'topup' }); // (not a request: not logged)
  log.close();
  const text = readFileSync(file, 'utf8');
  t.equal(text, rows.map(accessLine).join(''), 'the file is exactly the lines, in order');
  const lines = text.trimEnd().split('\n');
  t.equal(lines.length, 3000);
  t.ok(lines.every((l) => JSON.parse(l) !== null), 'each line is JSON');
  t.match(JSON.parse(lines[0]!), { request_id: 'req_00000000', model: 'modèle-été', status: 502 });
});

t.test('a shared stdout gets pieces of whole lines of at most PIPE_BUF bytes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-access-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const log = new AccessLog(join(dir, 'access.log'), true);
  await opened(log);
  const pieces: Buffer[] = [];
  // (what the destination is given, piece by piece)
  destOf(log).write = (b: Buffer) => { pieces.push(Buffer.from(b)); return true; };
  const rows = Array.from({ length: 2000 }, (_, i) => row(i));
  for (const r of rows) log.add(r);
  log.close();
  t.ok(pieces.length > 100, `${pieces.length} pieces`);
  t.ok(pieces.every((p) => p.length <= 4096), 'none larger than PIPE_BUF');
  t.ok(pieces.every((p) => p[p.length - 1] === 10 && JSON.parse(p.toString('utf8').split('\n')[0]!) !== null), 'each piece is whole lines');
  t.equal(Buffer.concat(pieces).toString('utf8'), rows.map(accessLine).join(''), 'together, every line in order');
});
