// One LMDB environment in the data dir, named sub-databases, msgpackr values (lmdb's
// default encoding). Writes use lmdb's batched async commits: many puts share one fsync.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { open, type Database, type RootDatabase } from 'lmdb';

export interface Store {
  readonly root: RootDatabase;
  readonly keys: Database<unknown, string>;
  readonly ledger: Database<unknown, string>;
  close(): Promise<void>;
}

export async function openStore(dataDir: string): Promise<Store> {
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const root = open({ path: join(dataDir, 'sluice.mdb'), compression: false, mapSize: 2 ** 32 });
  const keys = root.openDB<unknown, string>({ name: 'keys', encoding: 'msgpack' });
  const ledger = root.openDB<unknown, string>({ name: 'ledger', encoding: 'msgpack' });
  return {
    root,
    keys,
    ledger,
    async close() {
      await root.flushed;
      await root.close();
    },
  };
}
