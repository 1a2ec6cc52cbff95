// A stored Response (the gateway's own, bridged, and an upstream's, passed through) is there
// after the gateway is killed the moment its create was answered (or its stream's
// response.completed arrived), and gone after it is killed the moment its delete was
// answered. (A file of its own: each of its 16 restarts after kill -9 takes seconds on a busy
// machine, and beside durability.test.ts's it came near tap's limit for a file.)
import t from 'tap';
import { startFakeUpstream } from '../fakes/openai-upstream.js';
import { startGateway, tempDataDir, testModel } from '../helpers/gateway.js';
import { http } from '../helpers/http.js';

const fake = await startFakeUpstream();
t.teardown(() => fake.close());
const env = { OPENAI_API_KEY: 'sk-fake-upstream', OPENAI_BASE_URL: fake.url, SLUICE_SIM: 'off' };
// (no semantic cache: loading its model at each start took ~0.7 s apiece)
const config = { models: ['m'].map(testModel), savings: { semantic_cache: { enabled: false } } };

t.test('kill -9 the moment a stored response is created or deleted: after a restart it is there, or gone', async (t) => {
  const dataDir = tempDataDir();
  // `local`: an OpenAI-compatible server without the Responses API, so its responses are bridged and kept by the gateway.
  const stores = { ...config, providers: { local: { kind: 'openai', base_url: fake.url, api_key: 'sk-fake-upstream' } },
    models: [...config.models, { slug: 'local/small', upstream_id: 'small', context_window: 32000, prices: { input: 0.1, output: 0.1 } }] };
  const kill = async (gw: Awaited<ReturnType<typeof startGateway>>) => {
    gw.proc.kill('SIGKILL');
    await new Promise((r) => gw.proc.exitCode !== null || gw.proc.signalCode !== null ? r(null) : gw.proc.once('exit', r));
  };
  let key = '';
  for (let round = 0; round < 2; round++) {
    for (const model of ['local/small', 'openai/m']) {
      let gw = await startGateway(env, dataDir, stores);
      let api = http(gw);
      if (!key) key = (await api.tenant(gw.masterKey, 10)).key;
      const made = await api.call('/v1/responses', key, { model, input: `keep ${round} ${Math.random()}` });
      const id = (made.json as { id: string }).id;
      await kill(gw); // the moment the create was answered
      gw = await startGateway(env, dataDir, stores);
      api = http(gw);
      const kept = await api.call(`/v1/responses/${id}`, key, undefined, 'GET');
      t.equal(kept.status, 200, `${model}, round ${round}: the created response is kept after kill -9`);
      // A stream: its response.completed event is the answer; the gateway is killed the moment it arrives.
      const res = await fetch(`${gw.url}/v1/responses`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify({ model, stream: true, input: `stream ${round} ${Math.random()}` }) });
      const reader = res.body!.getReader();
      let seen = '';
      while (!seen.includes('response.completed')) { const { value, done } = await reader.read(); if (done) break; seen += new TextDecoder().decode(value); }
      const streamed = /"id":"(resp_[^"]+)"/.exec(seen)?.[1] ?? '';
      await kill(gw);
      gw = await startGateway(env, dataDir, stores);
      api = http(gw);
      t.equal((await api.call(`/v1/responses/${streamed}`, key, undefined, 'GET')).status, 200, `${model}, round ${round}: a streamed response is kept after kill -9 at its response.completed`);
      const gone = await api.call(`/v1/responses/${id}`, key, undefined, 'DELETE');
      t.equal(gone.status, 200);
      await kill(gw); // the moment the delete was answered
      gw = await startGateway(env, dataDir, stores);
      api = http(gw);
      const after = await api.call('/v1/responses', key, { model, input: 'again', previous_response_id: id });
      t.equal(after.status, 400, `${model}, round ${round}: the deleted response stays deleted after kill -9`);
      await gw.stop();
    }
  }
});
