// Measures what it costs to count prompt tokens on the main thread vs through the worker
// pool, to justify what crosses the thread boundary (numbers go in src/workers/protocol.ts).
import { compileTokenizerWasm, loadTokenizers } from '../native/tokenizer.js';
import { WorkerPool } from '../src/workers/pool.js';
import { countPromptTokens } from '../src/workers/prompt-text.js';

const question = 'Summarize this support ticket in 3 bullets. The customer says the invoice was wrong twice. ';
const bodies = {
  short: Buffer.from(JSON.stringify({ model: 'gpt-4.1-mini', messages: [{ role: 'user', content: question }] })),
  long: Buffer.from(JSON.stringify({ model: 'gpt-4.1-mini', messages: [{ role: 'system', content: 'You are helpful.' }, { role: 'user', content: question.repeat(40) }] })),
};

const tokenizers = await loadTokenizers(await compileTokenizerWasm(), ['o200k_base']);
const tok = tokenizers.get('o200k_base')!;
const pool = await WorkerPool.start(1);

for (const [name, body] of Object.entries(bodies)) {
  const n = 2000;
  let t0 = performance.now();
  for (let i = 0; i < n; i++) countPromptTokens(tok, JSON.parse(body.toString()));
  const main = ((performance.now() - t0) / n) * 1000;

  // Main-thread CPU spent per pooled call (submit + settle), measured with no other work.
  const cpu0 = process.cpuUsage();
  t0 = performance.now();
  const batch = 64;
  for (let i = 0; i < n; i += batch) {
    await Promise.all(Array.from({ length: batch }, () => pool.countPrompt('o200k_base', body)));
  }
  const wall = ((performance.now() - t0) / n) * 1000;
  const cpu = process.cpuUsage(cpu0);
  // process.cpuUsage covers all threads; subtract the worker's share by running the same count on the main thread.
  console.log(`${name.padEnd(6)} ${body.length} B body, ${countPromptTokens(tok, JSON.parse(body.toString()))} tokens: main-thread count ${main.toFixed(1)} µs; pool ${wall.toFixed(1)} µs wall/call (process CPU ${(((cpu.user + cpu.system) / n)).toFixed(1)} µs/call incl. worker)`);
}
await pool.close();
