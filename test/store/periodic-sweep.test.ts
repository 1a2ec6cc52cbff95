// The expiry sweep's timer: passes of slices a gap apart, sooner while behind, a failing
// slice logged and the pass going on, nothing after stop.
import t from 'tap';
import { PeriodicSweep, SWEEP_PACE, type SweepTimers } from '../../src/store/periodic-sweep.js';

/** Timers a test fires by hand: what is pending, and at what delay it was set. */
function manualTimers() {
  const pending = new Map<number, { run: () => void; ms: number }>();
  let next = 1;
  const timers: SweepTimers = {
    set: (run, ms) => { const id = next++; pending.set(id, { run, ms }); return id; },
    clear: (handle) => { pending.delete(handle as number); },
  };
  /** The one pending timer's delay (the sweep never has two). */
  const delay = (): number => {
    if (pending.size !== 1) throw new Error(`${pending.size} timers pending`);
    return [...pending.values()][0]!.ms;
  };
  const fire = (): void => {
    const [id, timer] = [...pending.entries()][0]!;
    pending.delete(id);
    timer.run();
  };
  return { timers, pending, delay, fire };
}

t.test('a pass is ten slices of 500 records, 1 ms apart, then 10 s until the next', async (t) => {
  const clock = manualTimers();
  const budgets: number[] = [];
  const sweep = new PeriodicSweep((budget) => { budgets.push(budget); return false; }, SWEEP_PACE, clock.timers);
  sweep.start();
  t.equal(clock.delay(), 10_000, 'the first pass 10 s after start');
  const delays: number[] = [];
  for (let i = 0; i < 10; i++) { clock.fire(); delays.push(clock.delay()); }
  t.same(budgets, Array(10).fill(500));
  t.same(delays, [1, 1, 1, 1, 1, 1, 1, 1, 1, 10_000]);
  // The next pass is the same.
  for (let i = 0; i < 10; i++) clock.fire();
  t.equal(budgets.length, 20);
  t.equal(clock.delay(), 10_000);
});

t.test('a slice that says it is behind brings the next pass to 1 s; a pass that is not puts it back', async (t) => {
  const clock = manualTimers();
  let call = 0;
  const behindAt = new Set([3]);
  const sweep = new PeriodicSweep(() => behindAt.has(++call), SWEEP_PACE, clock.timers);
  sweep.start();
  for (let i = 0; i < 10; i++) clock.fire(); // (the first slice runs when the wait ends)
  t.equal(clock.delay(), 1000, 'behind in its 3rd slice of 10: the next pass in 1 s');
  for (let i = 0; i < 10; i++) clock.fire();
  t.equal(clock.delay(), 10_000, 'a pass that kept up: back to 10 s');
});

t.test('a slice that throws is logged; the pass and the next go on', async (t) => {
  const clock = manualTimers();
  const logged: string[] = [];
  const error = console.error;
  console.error = (...args: unknown[]) => { logged.push(args.map(String).join(' ')); };
  t.teardown(() => { console.error = error; });
  let call = 0;
  const sweep = new PeriodicSweep(() => { if (++call === 2) throw new Error('a record it cannot handle'); return false; }, SWEEP_PACE, clock.timers);
  sweep.start();
  for (let i = 0; i < 10; i++) clock.fire();
  t.equal(call, 10, 'every slice of the pass ran');
  t.same(logged, ['sweep failed: a record it cannot handle']);
  t.equal(clock.delay(), 10_000);
});

t.test('nothing runs after stop, whether it comes between slices or during one', async (t) => {
  const clock = manualTimers();
  let calls = 0;
  const between = new PeriodicSweep(() => { calls++; return false; }, SWEEP_PACE, clock.timers);
  between.start();
  clock.fire();
  clock.fire();
  between.stop();
  t.equal(clock.pending.size, 0, 'the next slice is cleared');
  t.equal(calls, 2);

  const during = manualTimers();
  let sweep: PeriodicSweep | null = null;
  sweep = new PeriodicSweep(() => { sweep!.stop(); return true; }, SWEEP_PACE, during.timers);
  sweep.start();
  during.fire();
  t.equal(during.pending.size, 0, 'a slice that stops the sweep schedules nothing after it');
});

t.test("on Node's timers: the slices a gap apart, passes repeating, none after stop, and the process not held up", async (t) => {
  const at: number[] = [];
  const sweep = new PeriodicSweep(() => { at.push(performance.now()); return false; }, { budget: 7, slices: 3, gapMs: 1, everyMs: 20, behindMs: 5 });
  sweep.start();
  const started = performance.now();
  while (at.length < 6 && performance.now() - started < 5_000) await new Promise((r) => setTimeout(r, 5));
  sweep.stop();
  t.ok(at.length >= 6, 'two passes of three slices ran');
  t.ok(at[3]! - at[2]! >= 15, `a pass's wait separates the passes (${(at[3]! - at[2]!).toFixed(1)} ms)`);
  const count = at.length;
  await new Promise((r) => setTimeout(r, 60));
  t.equal(at.length, count, 'none after stop');
});
