import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { ConfigError, loadConfig } from '../../src/config/load.js';
import { tempDataDir } from '../helpers/gateway.js';

t.test('defaults with no file', (t) => {
  const c = loadConfig({});
  t.equal(c.port, 8080);
  t.equal(c.host, '127.0.0.1');
  t.equal(c.max_body_bytes, 4 * 1024 * 1024);
  t.same(c.providers, {});
  t.end();
});

t.test('env overrides and provider keys enable providers', (t) => {
  const c = loadConfig({ PORT: '9999', OPENAI_API_KEY: 'sk-x', OPENAI_BASE_URL: 'http://127.0.0.1:1/v1', SLUICE_API_KEYS: 'sk-operator-key-0001, sk-operator-key-0002' });
  t.equal(c.port, 9999);
  t.equal(c.providers.openai?.api_key, 'sk-x');
  t.equal(c.api_keys.length, 2);
  t.end();
});

t.test('errors name the field', (t) => {
  const dir = tempDataDir();
  const path = join(dir, 'sluice.yaml');
  writeFileSync(path, 'port: "eighty"\nproviders:\n  groq:\n    kind: openai\n    base_url: not-a-url\nbilling:\n  markup: -1\n  typo: 1\n');
  try {
    loadConfig({ SLUICE_CONFIG: path });
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof ConfigError);
    const msg = (err as Error).message;
    t.match(msg, /port:/);
    t.match(msg, /providers\.groq\.base_url/);
    t.match(msg, /billing\.markup/);
    t.match(msg, /billing.*typo|typo/);
  }
  t.throws(() => loadConfig({ PORT: 'abc' }), /PORT=abc/);
  t.throws(() => loadConfig({ SLUICE_CONFIG: join(dir, 'missing.yaml') }), /does not exist/);
  t.end();
});
