// Semantic cache with the embedded sentence encoder (in the worker pool): paraphrases hit,
// near neighbours that ask something else miss (the guards), and nothing crosses a
// workspace or a different conversation context.
import OpenAI from 'openai';
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http, type Json } from '../helpers/http.js';
import { embeddingText, sameQuestion, signature } from '../../src/savings/guard.js';


t.test('guards (pure): numbers, names, languages and negation must agree', async (t) => {
  const same = (a: string, b: string) => sameQuestion(signature(a), signature(b));
  t.ok(same('What is the capital of France?', "What's the capital of France?"));
  t.ok(same('How do I reverse a string in Python?', 'How can I reverse a string in Python?'));
  t.notOk(same('What is the capital of France?', 'What is the capital of Germany?'), 'names differ');
  t.notOk(same('How do I reverse a string in Python?', 'How do I reverse a string in JavaScript?'), 'languages differ');
  t.notOk(same('Delete the temporary files', 'Do not delete the temporary files'), 'negation differs');
  t.notOk(same('Delete the temporary files', "Don't delete the temporary files"), 'contracted negation');
  t.notOk(same('What is 2+2?', 'What is 3+5?'), 'numbers differ');
  t.notOk(same('Write it in C', 'Write it in R'), 'one-letter languages when capitalized');
  t.ok(same('Go to the park and write a poem', 'go to the park and write a poem'), '"go" as a verb at a sentence start is not a language');
  t.notOk(same('How does pricing work at ACME?', 'How does discounts work at ACME?'), 'a content word swapped for another (cosine 0.90)');
  t.notOk(same('List three benefits of exercise', 'List three drawbacks of exercise'), 'benefits vs drawbacks');
  t.notOk(same('How many vacation days do employees get?', 'How many vacation days do part-time employees get?'), 'a word added may narrow the question');
  t.ok(same('How do I delete my account?', 'How do I delete my account, please?'), 'a filler added');
  t.ok(same('Explain how refunds work at ACME.', 'How do refunds work at ACME?'), 'function words changed');
});

t.test('guards (pure): order, degree, opposites, identifiers, language', async (t) => {
  const same = (a: string, b: string) => sameQuestion(signature(a), signature(b));
  // Two words trade places around the same relation: a different question.
  t.notOk(same('Convert 100 USD to EUR.', 'Convert 100 EUR to USD.'), 'A to B vs B to A');
  t.notOk(same('Convert 100 USD to EUR quickly.', 'Quickly convert 100 EUR into USD.'), 'the same swap with other words moved and into for to');
  t.notOk(same('How many inches are in a foot?', 'How many feet are in an inch?'), 'conversion the other way round');
  t.notOk(same('What is 12 miles in kilometers?', 'What is 12 kilometers in miles?'), 'unit direction');
  t.notOk(same('Should I run the migrations before deploying?', 'Should I deploy before running the migrations?'), 'X before Y vs Y before X');
  t.notOk(same('Did the Renaissance come before the Middle Ages?', 'Did the Middle Ages come before the Renaissance?'), 'a run of words swapped with one');
  t.notOk(same('Is Python faster than Java?', 'Is Java faster than Python?'), 'comparison reversed');
  t.notOk(same('Is a square a rectangle?', 'Is a rectangle a square?'), 'is-a reversed');
  t.notOk(same('Does the dog chase the cat?', 'Does the cat chase the dog?'), 'subject and object swapped');
  // …but a symmetric relation, a moved phrase, a changed relation or the passive voice is the same question.
  t.ok(same('Is a tomato a fruit or a vegetable?', 'Is a tomato a vegetable or a fruit?'), 'X or Y');
  t.ok(same('What is the difference between TCP and UDP?', 'What is the difference between UDP and TCP?'), 'X and Y');
  t.ok(same('What is the boiling point of water at sea level?', 'At sea level, what is the boiling point of water?'), 'a phrase moved to the front');
  t.ok(same('Does the dog chase the cat?', 'Is the cat chased by the dog?'), 'passive voice');
  t.ok(same('What is the tallest mountain in the world?', 'Which mountain is the tallest in the world?'), 'an adjective moved');
  // Degree words, opposites and identifiers.
  t.notOk(same('Which uses more memory, Redis or Memcached?', 'Which uses less memory, Redis or Memcached?'), 'more vs less');
  t.notOk(same('What is the cheapest plan?', 'What is the most expensive plan?'), 'cheapest vs most expensive');
  t.notOk(same('Which database needs more RAM?', 'Which database needs slower RAM?'), 'a degree word added');
  t.notOk(same('What is the fastest way to learn Spanish?', 'What is the cheapest way to learn Spanish?'), 'fastest way vs cheapest way');
  t.ok(same('How do I learn Spanish?', 'What is the best way to learn Spanish?'), '"the best way to" only frames the question');
  t.ok(same('What is the max file size?', 'What is the maximum file size?'), 'max is maximum');
  t.notOk(same('How do I log in?', 'How do I log out?'), 'in vs out');
  t.notOk(same('Copy the files to the server.', 'Copy the files from the server.'), 'to vs from');
  t.ok(same('Copy the files from my laptop to the server.', 'Copy the files to the server from my laptop.'), 'both directions kept, phrases moved');
  t.notOk(same('Why was payment cus_ABCD declined?', 'Why was payment cus_ABCE declined?'), 'identifiers differ by a letter');
  t.notOk(same('Show the profile of user jdoe42.', 'Show the profile of user jdoe43.'), 'lowercase identifiers');
  t.notOk(same('What plan fits a small team?', 'What planet fits a small team?'), 'a longer word is not the same stem');
  // The embedded model is English-only: other languages are not compared.
  t.notOk(same('Quelle est la capitale de la France ?', 'Quelle est la capitale de la France?'), 'French is not compared');
  t.notOk(same('日本の首都はどこですか？', '日本の首都はどこですか'), 'nor Japanese');
  t.ok(same('Summarize the plot of Hamlet.', 'Give me a summary of the plot of Hamlet.'), 'one word family (summarize, summary)');
});

t.test('guards (pure): question word, person, modality, tense, light verbs, case and frames', async (t) => {
  const same = (a: string, b: string) => sameQuestion(signature(a), signature(b));
  t.notOk(same('How do I reset my password?', 'Why do I want to reset my password?'), 'how vs why');
  t.notOk(same('Where do I send the contract?', 'When do I send the contract?'), 'where vs when');
  t.notOk(same('How do I reset my password?', 'How do they reset my password?'), 'I vs they');
  t.notOk(same('How do I delete my account?', 'How do I delete your account?'), 'my vs your');
  t.notOk(same('Can you book a flight for me?', 'Can I book a flight for you?'), 'the same persons, roles swapped');
  t.notOk(same('Can I bring my dog?', 'Must I bring my dog?'), 'can vs must');
  t.notOk(same('Can I cancel my subscription?', 'Do I need to cancel my subscription?'), 'can vs need to');
  t.notOk(same('Is the restaurant open this weekend?', 'Was the restaurant open this weekend?'), 'is vs was');
  t.notOk(same('How do I get a refund?', 'How do I give a refund?'), 'get vs give');
  t.notOk(same('Are there any discounts for students?', 'Are there many discounts for students?'), 'any vs many');
  t.ok(same('How do I cancel my order?', 'How can I cancel my order?'), 'a modal after a question word');
  t.ok(same('How do I cancel my order?', 'What is the way to cancel my order?'), '"what is the way to" asks how');
  t.ok(same('How do I cancel my order?', 'Can you tell me how to cancel my order?'), 'a request frame');
  t.ok(same('How do I cancel my order?', 'hi there, could you tell me how to cancel my order? thanks'), 'a greeting and thanks');
  t.ok(same("I can't log in to the dashboard.", 'I cannot log in to the dashboard.'), "can't is cannot");
  t.ok(same('What is the capital of Peru?', 'what is the capital of peru'), 'no letter case: names compared as words');
  t.notOk(same('what is the capital of peru', 'What is the capital of Chile?'), '…still told apart');
  t.ok(same('How do I rotate my SSH key?', 'HOW DO I ROTATE MY SSH KEY?'), 'all capitals');
  t.ok(same('Why was my card declined?', 'Why did my card get declined?'), 'the passive with get');
  t.equal(embeddingText('Hi there, COULD YOU TELL ME how to  Rotate my key? Thanks!'), 'how to rotate my key?', 'what is embedded: no frames, lower case');
});

t.test('guards (pure): symbols, Unicode, number order, roles, and/or, what is negated, one vs many', async (t) => {
  const same = (a: string, b: string) => sameQuestion(signature(a), signature(b));
  t.notOk(same('What is 12 + 7?', 'What is 12 - 7?'), 'operators');
  t.notOk(same('Is x ≥ 5 true when x is 5?', 'Is x ≤ 5 true when x is 5?'), 'symbols');
  t.notOk(same('What does 👍 mean?', 'What does 👎 mean?'), 'emoji');
  t.notOk(same('What is 3 + 3 + 5?', 'What is 3 + 5 + 5?'), 'numbers in order, repeats counted');
  t.notOk(same('What day of the week was 1/2/2020?', 'What day of the week was 2/1/2020?'), 'dates in order');
  t.notOk(same('Is it colder at -10 degrees?', 'Is it colder at 10 degrees?'), 'a minus sign');
  t.notOk(same('Is 1,5 kg of sugar too much?', 'Is 15 kg of sugar too much?'), 'a decimal comma');
  t.ok(same('Is 1,000 kg too much?', 'Is 1000 kg too much?'), 'a thousands separator');
  t.notOk(same('What is ７ times 8?', 'What is ９ times 8?'), 'fullwidth digits');
  t.notOk(same('Is it ｎｏｔ safe to drink?', 'Is it safe to drink?'), 'fullwidth letters');
  t.notOk(same('Who is Müller?', 'Who is Möller?'), 'accents');
  t.notOk(same('How do I move files to Dropbox from Google Drive?', 'How do I move files from Dropbox to Google Drive?'), 'particles moved, order kept');
  t.ok(same('Copy the files from my laptop to the server.', 'Copy the files to the server from my laptop.'), 'both particles kept with their words');
  t.notOk(same('Why does he hate her?', 'Why does she hate him?'), 'he/she roles');
  t.notOk(same('What should I say to my boss?', 'What should my boss say to me?'), 'speaker and listener');
  t.notOk(same('What rights does an employer have?', 'What rights does an employee have?'), '-er vs -ee');
  t.notOk(same('Can I take ibuprofen and paracetamol?', 'Can I take ibuprofen or paracetamol?'), 'and vs or');
  t.notOk(same('Why does the server crash when the cache is not full?', 'Why does the server not crash when the cache is full?'), 'what the negation negates');
  t.ok(same("Don't delete the temporary files.", 'Do not delete the temporary files.'), 'the same negation, written two ways');
  t.notOk(same('How do I delete a file?', 'How do I delete files?'), 'one vs many');
});

const fake = await startFakeUpstream();
const gw = await startGateway({ OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' }, tempDataDir(),
  { models: ['seq-sem'].map(testModel), savings: { semantic_cache: { enabled: true } } });
t.teardown(async () => { await gw.stop(); await fake.close(); });
const { adminJson: admin, call } = http(gw);
const wsA = await admin('/admin/workspaces', { name: 'a', credits_usd: 5 });
const wsB = await admin('/admin/workspaces', { name: 'b', credits_usd: 5 });
const keyA = (await admin('/admin/keys', { name: 'a', workspace: wsA.id })).key as string;
const keyB = (await admin('/admin/keys', { name: 'b', workspace: wsB.id })).key as string;

async function ask(q: string, key = keyA, system = 'You are concise.', stream = false) {
  const client = new OpenAI({ baseURL: gw.baseURL, apiKey: key, maxRetries: 0 });
  const body = { model: 'openai/seq-sem', temperature: 0, messages: [{ role: 'system' as const, content: system }, { role: 'user' as const, content: q }] };
  if (stream) {
    const { data, response } = await client.chat.completions.create({ ...body, stream: true }).withResponse();
    let text = '';
    for await (const chunk of data) text += chunk.choices[0]?.delta?.content ?? '';
    return { text, cache: response.headers.get('x-gateway-cache'), similarity: response.headers.get('x-gateway-cache-similarity') };
  }
  const { data, response } = await client.chat.completions.create(body).withResponse();
  return { text: data.choices[0]!.message.content, cache: response.headers.get('x-gateway-cache'), similarity: response.headers.get('x-gateway-cache-similarity'),
    gateway: (data as unknown as Json).gateway, id: response.headers.get('x-request-id')! };
}

t.test('paraphrases hit; different questions miss', async (t) => {
  const france = await ask('What is the capital of France?');
  t.equal(france.cache, 'miss');
  const calls = () => fake.received.length;
  const before = calls();
  const para = await ask("What's the capital of France?");
  t.equal(para.cache, 'semantic', `paraphrase hit (similarity ${para.similarity})`);
  t.equal(para.text, france.text, 'the cached answer');
  t.equal(calls(), before, 'no upstream call');
  t.ok(para.gateway.saved_tokens.semantic_cache > 0);
  t.equal(para.gateway.charge_usd, 0);
  const streamed = await ask('What is the capital of France, please?', keyA, 'You are concise.', true);
  t.equal(streamed.cache, 'semantic', 'a streaming paraphrase is replayed as a stream');
  t.equal(streamed.text, france.text);

  t.equal((await ask('What is the capital of Germany?')).cache, 'miss', 'France vs Germany');
  const py = await ask('How do I reverse a string in Python?');
  t.equal(py.cache, 'miss');
  const py2 = await ask('How can I reverse a string in Python?');
  t.equal(py2.cache, 'semantic');
  t.equal(py2.text, py.text);
  t.equal((await ask('How do I reverse a string in JavaScript?')).cache, 'miss', 'Python vs JavaScript');
  t.equal((await ask('Delete the temporary files in the build folder.')).cache, 'miss');
  t.equal((await ask('Do not delete the temporary files in the build folder.')).cache, 'miss', 'do X vs do not X');
});

t.test('each guard through the HTTP surface: a near miss is never answered from the cache', async (t) => {
  const nearMisses: [string, string, string][] = [
    ['order', 'Convert 250 GBP to JPY.', 'Convert 250 JPY to GBP.'],
    ['order (a run of words)', 'Did the Bronze Age come before the Iron Age?', 'Did the Iron Age come before the Bronze Age?'],
    ['order (is-a)', 'Is a violin a fiddle?', 'Is a fiddle a violin?'],
    ['degree', 'Which city has the most rain in Europe?', 'Which city has the least rain in Europe?'],
    ['opposites', 'How do I sign in to the portal?', 'How do I sign out of the portal?'],
    ['identifier', 'Why was payment ord_9f3k2 declined?', 'Why was payment ord_9f3k3 declined?'],
    ['quantity', 'Give me 3 ideas for a team offsite.', 'Give me 10 ideas for a team offsite.'],
    ['entity (lowercase)', 'what language do people speak in brazil', 'what language do people speak in mexico'],
    ['language', 'How do I update my shipping address?', '¿Cómo actualizo mi dirección de envío?'],
  ];
  for (const [why, a, b] of nearMisses) {
    t.equal((await ask(a)).cache, 'miss', `${why}: first asked`);
    const second = await ask(b);
    t.not(second.cache, 'semantic', `${why}: "${b}" is not answered from "${a}" (${second.similarity ?? 'no similarity'})`);
  }
  // A paraphrase of one of them still hits.
  t.equal((await ask('Convert 250 GBP into JPY.')).cache, 'semantic', 'the same conversion, reworded');
});

t.test('a semantic hit reported bad is evicted and its neighbourhood tightened; a bad miss is not replayed', async (t) => {
  const first = await ask('How do I rotate my API key?');
  t.equal(first.cache, 'miss');
  const hit = await ask('How can I rotate my API key?');
  t.equal(hit.cache, 'semantic');
  const good = await ask('How do I rotate my API key, please?');
  t.equal(good.cache, 'semantic');
  t.equal((await call('/v1/feedback', keyA, { request_id: good.id, score: 0.9 })).json.evicted, null, 'a good score evicts nothing');
  const bad = await call('/v1/feedback', keyA, { request_id: hit.id, score: 0.1, comment: 'answered a different question' });
  t.equal(bad.status, 200);
  t.same(bad.json.evicted, { exact: false, semantic: true, tightened: 0 }, 'the entry that answered goes');
  t.equal((await call('/v1/feedback', keyA, { request_id: hit.id, score: 0 })).status, 409, 'one signal per request');
  const calls = fake.received.length;
  const again = await ask('How can I rotate my API key?');
  t.equal(again.cache, 'miss', 'the wrongly answered question goes upstream now');
  t.equal(fake.received.length, calls + 1);
  // It was stored as a new entry; the original prompt, re-asked, hits its own exact entry (that answer was not reported).
  t.equal((await ask('How do I rotate my API key?')).cache, 'exact');
  // An answer reported bad on the miss that stored it: neither cache replays it.
  const miss = await ask('How do I undo the last commit in git?');
  t.equal(miss.cache, 'miss');
  t.same((await call('/v1/feedback', keyA, { request_id: miss.id, score: 0 })).json.evicted, { exact: true, semantic: true, tightened: 0 });
  t.equal((await ask('How do I undo the last commit in git?')).cache, 'miss', 'not from the exact cache');
  t.equal((await ask('How can I undo the last commit in git?')).cache, 'semantic', 'the new answer is cached again');
});

t.test('operators evict by request and purge a workspace (DELETE /v1/cache/...)', async (t) => {
  const stored = await ask('How do I export my contacts?');
  t.equal(stored.cache, 'miss');
  t.equal((await call(`/v1/cache/requests/${stored.id}`, keyA, undefined, 'DELETE')).status, 403, 'not with a tenant key');
  const evicted = await call(`/v1/cache/requests/${stored.id}`, gw.masterKey, undefined, 'DELETE');
  t.equal(evicted.status, 200);
  t.same(evicted.json.evicted, { exact: true, semantic: true, tightened: 0 });
  t.equal((await call(`/v1/cache/requests/${stored.id}`, gw.masterKey, undefined, 'DELETE')).status, 404, 'nothing left to evict');
  const malformed = await call('/v1/cache/requests/not-a-request-id', gw.masterKey, undefined, 'DELETE');
  t.same([malformed.status, malformed.json.error.code, malformed.json.error.param], [400, 'invalid_id', 'id'], 'a malformed id: a 400 naming the path parameter');
  t.equal((await ask('How can I export my contacts?')).cache, 'miss', 'evicted from the semantic cache');
  t.equal((await ask('How can I export my contacts?')).cache, 'exact', 'and stored again');
  t.equal((await ask('How do I export my contacts, please?')).cache, 'semantic');
  const purged = await call(`/v1/cache/workspaces/${wsA.id}`, gw.masterKey, undefined, 'DELETE');
  t.equal(purged.status, 200);
  t.ok(purged.json.purged.exact >= 1 && purged.json.purged.semantic >= 1, `purged ${JSON.stringify(purged.json.purged)}`);
  t.equal((await ask('How can I export my contacts?')).cache, 'miss', 'nothing of the workspace is cached');
  t.equal((await call(`/v1/cache/workspaces/${wsA.id}`, keyB, undefined, 'DELETE')).status, 403);
});

t.test('never across workspaces or conversation contexts', async (t) => {
  t.equal((await ask("What's the capital of France?", keyB)).cache, 'miss', 'another workspace');
  t.equal((await ask("What's the capital of France?", keyA, 'You answer in French.')).cache, 'miss', 'another system prompt');
});
