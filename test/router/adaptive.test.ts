// The adaptive policy on its own (router/adaptive.ts), on a real LMDB store: it converges
// where the evidence says, exactly and repeatably for a seed; it moves when scores or prices
// change; its state survives a reopen, a reset clears it, and a bad stored record is set
// aside rather than stopping the start.
import t from 'tap';
import { AdaptiveRouter, MEMORY, type Candidate } from '../../src/router/adaptive.js';
import { openStore, type Store } from '../../src/store/lmdb.js';
import { tempDataDir } from '../helpers/gateway.js';

const CHEAP: Candidate = { name: 'cheap', prices: { input: 0.1, output: 0.4 } };
const BEST: Candidate = { name: 'best', prices: { input: 2, output: 8 } };
const candidates = [CHEAP, BEST];

/** The world the policy does not see: each model's true chance of a right answer per task type. */
const TRUTH: Record<string, Record<string, number>> = { easy: { cheap: 0.95, best: 0.96 }, hard: { cheap: 0.3, best: 0.95 } };

/** Seeded uniform draws for the world (not the policy's own generator): mulberry32. */
function world(seed: number) {
  let s = seed;
  return () => {
    let x = (s = (s + 0x6d2b79f5) | 0);
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

let n = 0;
/** Runs `rounds` requests per task type; each answer is scored (1 right, 0 wrong) like a judge would. */
async function run(router: AdaptiveRouter, rounds: number, truth = TRUTH, seed = 7): Promise<Record<string, string[]>> {
  const u = world(seed);
  const picks: Record<string, string[]> = {};
  for (let i = 0; i < rounds; i++) {
    for (const task of Object.keys(truth)) {
      const choice = router.choose(task)!;
      (picks[task] ??= []).push(choice.model);
      router.observe(task, choice.model, 0.001, 100, 50);
      const right = u() < truth[task]![choice.model]!;
      await router.signal(`req_t${n++}`, 'judge', { workspace: 'default', score: right ? 1 : 0, comment: null, task, model: choice.model, ts: 0, judge_request: null, trusted: true, served_at: Date.now() });
    }
  }
  return picks;
}

const open = async (dir = tempDataDir()) => ({ dir, store: await openStore(dir) });
const count = (xs: string[], m: string) => xs.filter((x) => x === m).length;

t.test('converges to the cheap model where it is as good, to the better one where it is not: exactly, for a seed', async (t) => {
  const { store } = await open();
  const router = new AdaptiveRouter(store, { candidates, margin: 0.05, seed: 42 });
  t.teardown(async () => { await router.flush(); await store.close(); });
  const picks = await run(router, 150);
  t.equal(router.current('easy').name, 'cheap', 'easy → cheap (as good, 20× cheaper)');
  t.equal(router.current('hard').name, 'best', 'hard → best (cheap is right 30% of the time)');
  const lastEasy = picks.easy!.slice(-50);
  const lastHard = picks.hard!.slice(-50);
  t.ok(count(lastEasy, 'cheap') >= 45, `the last 50 easy requests went to cheap (${count(lastEasy, 'cheap')})`);
  t.ok(count(lastHard, 'best') >= 48, `the last 50 hard requests went to best (${count(lastHard, 'best')})`);
  // Determinism: a second policy with the same seed, fed the same world, chooses the same sequence.
  const { store: other } = await open();
  const second = new AdaptiveRouter(other, { candidates, margin: 0.05, seed: 42 });
  t.teardown(async () => { await second.flush(); await other.close(); });
  n = 0;
  const again = await run(second, 150);
  t.same(again, picks, 'the same seed and signals give the same choices');
  const view = router.view();
  const hard = view.find((v) => v.task_type === 'hard')!;
  const cheapArm = hard.candidates.find((c) => c.model === 'cheap')!;
  const bestArm = hard.candidates.find((c) => c.model === 'best')!;
  t.ok(cheapArm.quality_interval[1] < bestArm.quality_interval[0], `on hard, cheap's quality interval lies below best's (${cheapArm.quality_interval} vs ${bestArm.quality_interval})`);
  t.equal(hard.requests, 150);
  t.ok(hard.signals > 100 && hard.signals <= 150);
});

t.test('low scores move a task type off a model (old evidence fades)', async (t) => {
  const { store } = await open();
  const router = new AdaptiveRouter(store, { candidates, margin: 0.05, seed: 3 });
  t.teardown(async () => { await router.flush(); await store.close(); });
  await run(router, 200, { chat: { cheap: 0.99, best: 0.99 } });
  t.equal(router.current('chat').name, 'cheap');
  // The cheap model gets worse (a provider change): its answers are now reported bad.
  const picks = await run(router, MEMORY, { chat: { cheap: 0.2, best: 0.99 } }, 11);
  t.equal(router.current('chat').name, 'best', 'after the bad scores, the current choice is the better model');
  t.ok(count(picks.chat!.slice(-40), 'best') >= 36, `and traffic moved (${count(picks.chat!.slice(-40), 'best')}/40)`);
});

t.test('simulate-price: the cheap model made expensive loses the traffic; restoring it brings it back', async (t) => {
  const { store } = await open();
  const router = new AdaptiveRouter(store, { candidates, margin: 0.05, seed: 5 });
  t.teardown(async () => { await router.flush(); await store.close(); });
  await run(router, 200, { chat: { cheap: 0.99, best: 0.99 } });
  t.equal(router.current('chat').name, 'cheap');
  await router.simulatePrice('cheap', { input: 20, output: 80 });
  t.equal(router.current('chat').name, 'best', 'at 10× best\'s price, cheap is no longer the cheapest within the margin');
  const picks = await run(router, 30, { chat: { cheap: 0.99, best: 0.99 } }, 9);
  t.ok(count(picks.chat!, 'best') >= 27, `traffic moved to best (${count(picks.chat!, 'best')}/30)`);
  t.same(router.simulatedPrices(), { cheap: { input: 20, output: 80 } });
  await router.simulatePrice('cheap', null);
  t.equal(router.current('chat').name, 'cheap');
});

t.test('the state survives a reopen; reset clears it; a bad stored record is quarantined, not fatal', async (t) => {
  const { dir, store } = await open();
  const router = new AdaptiveRouter(store, { candidates, margin: 0.05, seed: 8 });
  await run(router, 60);
  await router.simulatePrice('best', { input: 1, output: 4 });
  const before = router.view();
  await router.flush();
  await store.close();

  const again = await openStore(dir);
  const reopened = new AdaptiveRouter(again, { candidates, margin: 0.05, seed: 8 });
  t.same(reopened.view(), before, 'every estimate, pull, token mean and simulated price came back');
  t.equal(reopened.hasSignal('req_t0', 'judge') || reopened.hasSignal(`req_t${n - 1}`, 'judge'), true, 'signals are remembered (one per request)');
  t.equal(await reopened.signal(`req_t${n - 1}`, 'judge', { workspace: 'default', score: 1, comment: null, task: 'easy', model: 'cheap', ts: 0, judge_request: null, trusted: true, served_at: Date.now() }), 'duplicate', 'a second signal for a request is refused');

  await again.router.put(['arm', 'easy', 'cheap'], { a: 'lots', b: -1 });
  await again.router.put(['mystery', 'x'], 1);
  await again.router.put(['meta', 'reset'], Date.UTC(3000, 0, 1)); // (a reset from the future would make every signal move nothing until then)
  const tolerant = new AdaptiveRouter(again, { candidates, margin: 0.05, seed: 8 });
  t.ok(tolerant.view().length > 0, 'the start went on');
  await again.quarantine.committed;
  const quarantined = [...again.quarantine.getRange()].map(({ key }) => String(key)).filter((k) => k.startsWith('router:'));
  t.same(quarantined.sort(), ['router:["arm","easy","cheap"]', 'router:["meta","reset"]', 'router:["mystery","x"]'], 'the bad records are in quarantine');
  t.ok(tolerant.lastReset < Date.now(), 'and a reset stamped in the future is not trusted');

  await tolerant.flush();
  await reopened.reset();
  t.same(reopened.view(), [], 'reset forgets every task type');
  t.same(reopened.simulatedPrices(), {});
  t.same([...again.router.getRange()].map(({ key }) => key), [['meta', 'reset']], 'and the stored state is gone (but when it was reset)');
  await reopened.flush();
  await again.close();
});

t.test('one tenant cannot steer the shared policy: its say is capped, and it loses it by contradicting the judge', async (t) => {
  const { store } = await open();
  const router = new AdaptiveRouter(store, { candidates, margin: 0.05, seed: 4, judged: true });
  t.teardown(async () => { await router.flush(); await store.close(); });
  await run(router, 150);
  t.equal(router.current('hard').name, 'best');
  const u = world(99);
  const tenant = (ws: string, id: string, task: string, model: string, score: number) =>
    router.signal(id, 'app', { workspace: ws, score, comment: null, task, model, ts: 0, judge_request: null, trusted: false, served_at: Date.now() });
  const judge = (id: string, task: string, model: string, score: number) =>
    router.signal(id, 'judge', { workspace: 'x', score, comment: null, task, model, ts: 0, judge_request: null, trusted: true, served_at: Date.now() });
  // `evil` reports the cheap model's hard answers good and the better model's bad, 300 times; no judge overlap yet.
  for (let i = 0; i < 300; i++) {
    const model = i % 2 ? 'cheap' : 'best';
    t.equal(await tenant('evil', `req_e${i}`, 'hard', model, model === 'cheap' ? 1 : 0), 'applied');
  }
  t.equal(router.current('hard').name, 'best', 'capped (10 signals per arm) at half weight, 300 lies do not move the choice');
  const cheap = () => router.view().find((v) => v.task_type === 'hard')!.candidates.find((c) => c.model === 'cheap')!.quality;
  const lied = cheap();
  // The judge scores some of the same requests as they really were: evil's word is worth less and less.
  for (let i = 0; i < 40; i++) {
    const model = i % 2 ? 'cheap' : 'best';
    await judge(`req_e${i}`, 'hard', model, u() < TRUTH.hard![model]! ? 1 : 0);
  }
  t.ok(router.credibility('evil') < 0.3, `evil contradicted the judge: credibility ${router.credibility('evil').toFixed(3)}`);
  t.ok(cheap() < lied, `and its reports count for less, retroactively (cheap's hard quality ${lied} → ${cheap()})`);
  // An honest tenant agrees with the judge and keeps its say.
  for (let i = 0; i < 20; i++) {
    const right = u() < 0.95;
    await tenant('honest', `req_h${i}`, 'easy', 'cheap', right ? 1 : 0);
    await judge(`req_h${i}`, 'easy', 'cheap', right ? 1 : 0);
  }
  t.ok(router.credibility('honest') > 0.9, `honest: ${router.credibility('honest').toFixed(3)}`);
});

t.test('many workspaces one party controls are still one voice: with a judge, all tenants together count as one, at most a quarter of the judge', async (t) => {
  const { store } = await open();
  const router = new AdaptiveRouter(store, { candidates, margin: 0.05, seed: 6, tenantCap: 10, judged: true });
  t.teardown(async () => { await router.flush(); await store.close(); });
  await run(router, 150);
  t.equal(router.current('hard').name, 'best');
  for (let w = 0; w < 100; w++) {
    for (let i = 0; i < 10; i++) {
      const model = i % 2 ? 'cheap' : 'best';
      await router.signal(`req_s${w}_${i}`, 'app', { workspace: `sybil${w}`, score: model === 'cheap' ? 1 : 0, comment: null, task: 'hard', model, ts: 0, judge_request: null, trusted: false, served_at: Date.now() });
    }
  }
  const hardView = router.view().find((v) => v.task_type === 'hard')!;
  t.equal(router.current('hard').name, 'best', `100 workspaces × 10 lies do not move the choice (${JSON.stringify(hardView.candidates.map((c) => [c.model, c.quality, c.signals]))})`);
  const cheapArm = router.view().find((v) => v.task_type === 'hard')!.candidates.find((c) => c.model === 'cheap')!;
  t.ok(cheapArm.quality < 0.85, `cheap's hard quality stays low (${cheapArm.quality})`);
});

t.test('a signal about a request answered before the last reset is kept but moves nothing', async (t) => {
  const { store } = await open();
  const router = new AdaptiveRouter(store, { candidates, margin: 0.05, seed: 4 });
  t.teardown(async () => { await router.flush(); await store.close(); });
  const before = Date.now() - 1000;
  await router.reset();
  t.equal(await router.signal('req_old', 'judge', { workspace: 'x', score: 0, comment: null, task: 'easy', model: 'cheap', ts: 0, judge_request: null, trusted: true, served_at: before }), 'stored');
  t.same(router.view().find((v) => v.task_type === 'easy')?.signals ?? 0, 0);
  t.equal(await router.signal('req_new', 'judge', { workspace: 'x', score: 0, comment: null, task: 'easy', model: 'cheap', ts: 0, judge_request: null, trusted: true, served_at: Date.now() }), 'applied');
});

t.test('a key that allows one candidate gets it; none: no choice', async (t) => {
  const { store } = await open();
  const router = new AdaptiveRouter(store, { candidates, margin: 0.05, seed: 1 });
  t.teardown(async () => { await router.flush(); await store.close(); });
  t.same(router.choose('easy', (c) => c.name === 'best'), { model: 'best', quality: router.choose('easy', (c) => c.name === 'best')!.quality, reason: 'only_candidate', teaches: false },
    'a restricted choice teaches nothing');
  t.equal(router.choose('easy')!.teaches, true, 'a free one does');
  t.equal(router.choose('easy', () => false), null);
});

void ({} as Store);
