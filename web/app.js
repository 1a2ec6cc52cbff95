// The Sluice dashboard: plain modules, no framework, no CDN. Everything it shows comes from
// the same APIs an app would call, with the key the user signs in with (kept in this
// browser's localStorage, sent only to this gateway).
const $ = (sel, root = document) => root.querySelector(sel);
const view = $('#view');
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const usd = (n) => (n == null ? '–' : `$${Number(n).toFixed(n !== 0 && Math.abs(n) < 0.01 ? 6 : 4)}`);
const num = (n) => (n == null ? '–' : Number(n).toLocaleString('en-US'));
const when = (ts) => new Date(ts).toLocaleString();

let key = localStorage.getItem('sluice.key') || '';
let me = null; // GET /v1/account, or null for keys without usage:read

async function api(path, opts = {}) {
  const res = await fetch(path, { ...opts, headers: { authorization: `Bearer ${key}`, ...(opts.body ? { 'content-type': 'application/json' } : {}), ...(opts.headers || {}) } });
  const text = await res.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = { error: { message: text } }; }
  if (!res.ok) throw Object.assign(new Error(body?.error?.message || `HTTP ${res.status}`), { status: res.status, body });
  return body;
}

const isAdmin = () => me?.key?.scopes?.includes('admin');

function error(err) {
  return `<div class="error">${esc(err.message)}</div>`;
}

// ---- sign in ---------------------------------------------------------------------------

function signIn(message = '') {
  $('#nav').hidden = true;
  $('#signout').hidden = true;
  $('#who').textContent = '';
  view.innerHTML = `<div class="signin">
    <h1>Sign in</h1>
    <p class="dim">With a Sluice key (<code>sk-sluice-…</code>) that can read usage, or the master key. It stays in this browser.</p>
    ${message ? `<div class="error">${esc(message)}</div>` : ''}
    <form class="row" id="signin-form"><input id="key" type="password" placeholder="sk-sluice-…" style="flex:1" autocomplete="off"><button>Sign in</button></form>
  </div>`;
  $('#signin-form').onsubmit = async (e) => {
    e.preventDefault();
    key = $('#key').value.trim();
    await start();
  };
}

async function start() {
  try {
    me = await api('/v1/account');
  } catch (err) {
    localStorage.removeItem('sluice.key');
    signIn(err.status === 401 ? 'That key is not valid.' : err.status === 403 ? 'That key cannot read usage (it needs the usage:read scope).' : err.message);
    return;
  }
  localStorage.setItem('sluice.key', key);
  $('#nav').hidden = false;
  $('#signout').hidden = false;
  $('#nav-admin').hidden = !isAdmin();
  $('#who').textContent = `${me.name} · ${me.metered ? `${usd(me.available_usd)} available` : 'unmetered'} · key ${me.key.name}`;
  route();
}

$('#signout').onclick = () => { localStorage.removeItem('sluice.key'); key = ''; me = null; location.hash = ''; signIn(); };

// ---- pages -----------------------------------------------------------------------------

const pages = {
  async overview(params) {
    const ranges = { '1h': [3600, 'minute', 60], '24h': [86400, 'hour', 3600], '30d': [30 * 86400, 'day', 86400] };
    const chosen = ranges[params.get('range')] ? params.get('range') : '24h';
    const [span, bucket, step] = ranges[chosen];
    const end = Math.ceil(Date.now() / 1000 / step) * step;
    const start = end - span;
    const [s, ts] = await Promise.all([api(`/v1/usage/summary`), api(`/v1/usage/timeseries?bucket=${bucket}&start=${start}&end=${end}`)]);
    const mech = s.by_saving || [];
    const maxSaved = Math.max(1e-12, ...mech.map((m) => m.saved_usd || 0));
    view.innerHTML = `<h1>Overview <span class="dim" style="font-size:13px">last 30 days</span></h1>
      <div class="cards">
        <div class="card"><div class="label">Requests</div><div class="value" id="total-requests">${num(s.requests)}</div></div>
        <div class="card"><div class="label">Benchmark</div><div class="value">${usd(s.benchmark_usd)}</div></div>
        <div class="card"><div class="label">Charged</div><div class="value">${usd(s.charge_usd)}</div></div>
        <div class="card"><div class="label">Saved</div><div class="value good">${usd(s.saved_usd)}</div></div>
        <div class="card"><div class="label">Tokens billed</div><div class="value">${num(s.prompt_tokens + s.completion_tokens)}</div></div>
        <div class="card"><div class="label">Served from cache</div><div class="value">${num((s.by_cache.exact || 0) + (s.by_cache.semantic || 0) + (s.by_cache.dedupe || 0))}</div></div>
      </div>
      <h2>Cumulative benchmark, charged and saved, per ${bucket}
        ${Object.keys(ranges).map((r) => r === chosen ? `<b style="margin-left:10px">${r}</b>` : `<a style="margin-left:10px" href="#overview?range=${r}">${r}</a>`).join('')}</h2>
      <div id="chart"></div>
      <h2>Savings by mechanism</h2>
      <table><tr><th>mechanism</th><th>requests</th><th>tokens saved</th><th>saved</th><th style="width:35%"></th></tr>
      ${mech.map((m) => `<tr><td>${esc(m.mechanism)}</td><td>${num(m.requests)}</td><td>${m.tokens ? num(m.tokens) : '–'}</td><td>${usd(m.saved_usd || 0)}</td><td><div class="bar" style="width:${(100 * Math.max(0, m.saved_usd || 0) / maxSaved).toFixed(1)}%"></div></td></tr>`).join('') || '<tr><td colspan="5" class="dim">Nothing saved yet.</td></tr>'}
      </table>
      <h2>By model</h2>
      <table><tr><th>model</th><th>requests</th><th>charged</th><th>saved</th></tr>
      ${s.by_model.map((m) => `<tr><td>${esc(m.model)}</td><td>${num(m.requests)}</td><td>${usd(m.charge_usd)}</td><td>${usd(m.saved_usd)}</td></tr>`).join('')}</table>`;
    drawChart(ts.data, start, end, step);
  },

  async requests(params) {
    const q = new URLSearchParams(params);
    q.set('limit', '50');
    const page = await api(`/v1/requests?${q}`);
    view.innerHTML = `<h1>Requests</h1>
      <form class="row" id="filters">
        <input name="model" placeholder="model" value="${esc(params.get('model'))}">
        <input name="status" placeholder="status" size="6" value="${esc(params.get('status'))}">
        <select name="cache"><option value="">any cache</option>${['miss', 'exact', 'semantic', 'dedupe'].map((c) => `<option ${params.get('cache') === c ? 'selected' : ''}>${c}</option>`).join('')}</select>
        <button>Filter</button>
      </form>
      <table id="requests-table"><tr><th>time</th><th>request</th><th>model</th><th>served by</th><th>status</th><th>cache</th><th>tokens</th><th>charged</th><th>saved</th><th>ms</th></tr>
      ${page.data.map((r) => `<tr class="click" data-id="${esc(r.id)}"><td>${when(r.ts)}</td><td><code>${esc(r.id)}</code></td><td>${esc(r.requested_model)}</td><td>${esc(r.served)}</td>
        <td class="${r.status >= 400 ? 'bad' : ''}">${r.status}</td><td>${esc(r.cache)}</td><td>${num(r.prompt_tokens + r.completion_tokens)}</td><td>${usd(r.charge_usd)}</td><td class="good">${usd(r.saved_usd)}</td><td>${r.total_ms.toFixed(1)}</td></tr>`).join('')
        || '<tr><td colspan="10" class="dim">No requests yet.</td></tr>'}
      </table>
      ${page.has_more ? `<p><a href="#requests?${new URLSearchParams({ ...Object.fromEntries(params), cursor: page.next_cursor ?? page.data.at(-1)?.id ?? '' })}">Older →</a></p>` : ''}`;
    $('#filters').onsubmit = (e) => {
      e.preventDefault();
      const f = new URLSearchParams([...new FormData(e.target)].filter(([, v]) => v));
      location.hash = `requests?${f}`;
    };
    for (const tr of view.querySelectorAll('tr.click')) tr.onclick = () => { location.hash = `request/${tr.dataset.id}`; };
  },

  async request(_params, id) {
    const r = await api(`/v1/requests/${encodeURIComponent(id)}`);
    const upstream = Math.max(0, r.total_ms - r.overhead_ms);
    const rows = [
      ['request', `<code>${esc(r.id)}</code>`], ['time', when(r.ts)], ['endpoint', esc(r.endpoint)], ['key', esc(r.key_id)],
      ['requested model', esc(r.requested_model)], ['served by (route)', esc(r.served)], ['router', r.router_bucket ? `${esc(r.router_bucket)} (score ${r.router_score})` : '–'],
      ['status', `${r.status}${r.error ? ` · ${esc(r.error)}` : ''}`], ['retries', r.retries], ['cache', esc(r.cache)], ['stream', r.stream ? 'yes' : 'no'],
      ['prompt tokens', num(r.prompt_tokens)], ['cached tokens', num(r.cached_tokens)], ['completion tokens', num(r.completion_tokens)],
      ['saved tokens', Object.entries(r.saved_tokens).map(([m, n]) => `${esc(m)}: ${num(n)}`).join(', ') || '–'],
      ['saved by', Object.entries(r.savings_usd || {}).map(([m, n]) => `${esc(m)}: ${usd(n)}`).join(', ') || '–'],
      ['upstream cost', usd(r.cost_usd)], ['benchmark', usd(r.benchmark_usd)], ['charged', usd(r.charge_usd)], ['saved', `<span class="good">${usd(r.saved_usd)}</span>`],
      ['time to first byte', r.ttfb_ms == null ? '–' : `${r.ttfb_ms.toFixed(2)} ms`], ['total', `${r.total_ms.toFixed(2)} ms`],
      ['upstream', `${upstream.toFixed(2)} ms`], ['gateway overhead', `${r.overhead_ms.toFixed(3)} ms`],
    ];
    view.innerHTML = `<h1>Request <code>${esc(r.id)}</code></h1><p><a href="#requests">← Requests</a></p>
      <div class="kv" id="drilldown">${rows.map(([k, v]) => `<div>${k}</div><div>${v}</div>`).join('')}</div>`;
  },

  async router() {
    const [state, rows] = await Promise.all([api('/v1/router'), autoRows(500)]);
    const operator = ['master', 'operator'].includes(me?.key?.kind);
    const pct = (q) => (q == null ? '–' : `${(100 * q).toFixed(1)}%`);
    // routing savings over time: the auto requests' benchmark, charge and saving, from their rows
    const byTask = new Map();
    for (const r of rows) {
      const t = byTask.get(r.router_task) || { requests: 0, benchmark: 0, charged: 0 };
      t.requests++; t.benchmark += r.benchmark_usd; t.charged += r.charge_usd;
      byTask.set(r.router_task, t);
    }
    view.innerHTML = `<h1>Router <span class="dim" style="font-size:13px">model: auto · margin ${esc(state.margin)} · shared by every key</span></h1>
      ${state.judge ? `<p class="dim">Judge: <code>${esc(state.judge.model)}</code> · ${num(state.judge.judged)} answers scored · ${num(state.judge.failed)} without a score · cost ${usd(state.judge.cost_usd)} (the operator's)</p>` : '<p class="dim">No judge: only /v1/feedback teaches the router.</p>'}
      <table id="router-table"><tr><th>task type</th><th>current model</th><th>its quality</th><th>requests</th><th>signals</th><th>candidates (pulls · quality [95%] · cost/request)</th><th>saved (recent)</th></tr>
      ${state.task_types.map((t) => {
        const chosen = t.candidates.find((c) => c.model === t.choice) || {};
        const recent = byTask.get(t.task_type);
        return `<tr><td>${esc(t.task_type)}</td><td><b>${esc(t.choice)}</b></td><td>${pct(chosen.quality)}</td><td>${num(t.requests)}</td><td>${num(t.signals)}</td>
          <td>${t.candidates.map((c) => `<div class="${c.model === t.choice ? '' : 'dim'}"><code>${esc(c.model)}</code> ${num(c.pulls)} · ${pct(c.quality)} [${pct(c.quality_interval[0])}–${pct(c.quality_interval[1])}] · ${usd(c.cost_per_request_usd)}${c.price_simulated ? ' <span class="bad">simulated price</span>' : ''}</div>`).join('')}</td>
          <td class="good">${recent && recent.benchmark > 0 ? `${(100 * (1 - recent.charged / recent.benchmark)).toFixed(1)}%` : '–'}</td></tr>`;
      }).join('') || '<tr><td colspan="7" class="dim">Nothing learned yet: send requests with model "auto".</td></tr>'}
      </table>
      <h2>Routed requests: cumulative benchmark, charged and saved <span class="dim" style="font-size:13px">(the last ${num(rows.length)} auto requests of this workspace)</span></h2>
      <div id="chart"></div>
      ${operator ? `<h2>Controls <span class="dim" style="font-size:13px">operator key</span></h2>
        <form class="row" id="simulate"><select name="model">${state.candidates.map((c) => `<option>${esc(c.model)}</option>`).join('')}</select>
          <input name="input" placeholder="input $/1M" size="10"><input name="output" placeholder="output $/1M" size="10">
          <button>Simulate price</button><button type="button" class="ghost" id="unsimulate">Restore list price</button></form>
        <p><button class="ghost" id="reset">Reset learned state</button> <span id="control-result" class="dim"></span></p>` : ''}`;
    const span = rows.length ? [Math.floor(rows.at(-1).ts / 1000), Math.ceil(rows[0].ts / 1000)] : [Math.floor(Date.now() / 1000) - 3600, Math.ceil(Date.now() / 1000)];
    const step = Math.max(1, Math.ceil((span[1] - span[0]) / 60));
    const points = new Map();
    for (const r of rows) {
      const x = span[0] + Math.floor((Math.floor(r.ts / 1000) - span[0]) / step) * step;
      const p = points.get(x) || { start: x, requests: 0, benchmark_usd: 0, charge_usd: 0, saved_usd: 0 };
      p.requests++; p.benchmark_usd += r.benchmark_usd; p.charge_usd += r.charge_usd; p.saved_usd += r.saved_usd;
      points.set(x, p);
    }
    drawChart([...points.values()], span[0], span[0] + Math.ceil((span[1] - span[0]) / step) * step, step);
    if (!operator) return;
    const done = (text) => { $('#control-result').textContent = text; setTimeout(route, 600); };
    $('#simulate').onsubmit = async (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      try {
        await api('/v1/simulate-price', { method: 'POST', body: JSON.stringify({ model: f.get('model'), prices: { input: Number(f.get('input')), output: Number(f.get('output')) } }) });
        done(`Routing now prices ${f.get('model')} at $${f.get('input')} / $${f.get('output')} per 1M tokens.`);
      } catch (err) { $('#control-result').textContent = err.message; }
    };
    $('#unsimulate').onclick = async () => {
      const model = new FormData($('#simulate')).get('model');
      try { await api('/v1/simulate-price', { method: 'POST', body: JSON.stringify({ model, prices: null }) }); done(`${model} is priced at its list price again.`); } catch (err) { $('#control-result').textContent = err.message; }
    };
    $('#reset').onclick = async () => {
      if (!confirm('Forget everything the router has learned?')) return;
      try { await api('/v1/reset', { method: 'POST', body: '{}' }); done('Learned state reset.'); } catch (err) { $('#control-result').textContent = err.message; }
    };
  },

  async routes() {
    const p = await api('/v1/providers');
    const deployments = p.data.flatMap((prov) => prov.deployments);
    view.innerHTML = `<h1>Routes</h1>
      <table><tr><th>deployment</th><th>models</th><th>breaker</th><th>requests</th><th>error rate</th><th>latency (EWMA)</th><th>last error</th>${isAdmin() ? '<th></th>' : ''}</tr>
      ${deployments.map((d) => `<tr><td>${esc(d.decision)}</td><td>${d.models.length}</td>
        <td class="${d.state === 'closed' ? 'good' : d.state === 'disabled' ? 'dim' : 'bad'}">${esc(d.state)}</td><td>${num(d.requests)}</td>
        <td>${(100 * d.error_rate).toFixed(1)}%</td><td>${d.latency_ewma_ms == null ? '–' : `${d.latency_ewma_ms.toFixed(1)} ms`}</td><td class="dim">${esc(d.last_error ?? '')}</td>
        ${isAdmin() ? `<td><button class="ghost" data-toggle="${esc(d.decision)}" data-to="${d.enabled ? 'disable' : 'enable'}">${d.enabled ? 'Disable' : 'Enable'}</button></td>` : ''}</tr>`).join('')}
      </table>`;
    for (const b of view.querySelectorAll('[data-toggle]')) {
      b.onclick = async () => { await api(`/admin/deployments/${b.dataset.to}`, { method: 'POST', body: JSON.stringify({ decision: b.dataset.toggle }) }); route(); };
    }
  },

  async keys() {
    let list;
    try { list = await api('/v1/api-keys'); } catch (err) {
      view.innerHTML = `<h1>Keys</h1>${err.status === 403 ? '<p class="dim">This key cannot manage keys (it needs the keys:write scope).</p>' : error(err)}`;
      return;
    }
    view.innerHTML = `<h1>Keys</h1>
      <form class="row" id="mint"><input name="name" placeholder="name" required>
        ${['inference', 'usage:read', 'keys:write'].filter((s) => isAdmin() || me.key.scopes.includes(s)).map((s) => `<label><input type="checkbox" name="scope" value="${s}" ${s === 'inference' ? 'checked' : ''}> ${s}</label>`).join(' ')}
        <button>Mint key</button></form>
      <div id="minted"></div>
      <table id="keys-table"><tr><th>name</th><th>id</th><th>scopes</th><th>created</th><th>status</th><th></th></tr>
      ${list.data.map((k) => `<tr data-key="${esc(k.id)}"><td>${esc(k.name)}</td><td><code>${esc(k.id)}</code></td><td>${esc(k.scopes.join(', '))}</td><td>${when(k.created_at)}</td>
        <td>${k.revoked_at ? '<span class="bad">revoked</span>' : '<span class="good">active</span>'}</td>
        <td>${k.revoked_at ? '' : `<button class="danger" data-revoke="${esc(k.id)}">Revoke</button>`}</td></tr>`).join('')}
      </table>`;
    $('#mint').onsubmit = async (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      try {
        const k = await api('/v1/api-keys', { method: 'POST', body: JSON.stringify({ name: f.get('name'), scopes: f.getAll('scope') }) });
        await pages.keys();
        $('#minted').innerHTML = `<div class="notice">New key <b>${esc(k.name)}</b> (shown once): <code id="new-secret">${esc(k.key)}</code></div>`;
      } catch (err) { $('#minted').innerHTML = error(err); }
    };
    for (const b of view.querySelectorAll('[data-revoke]')) {
      b.onclick = async () => { await api(`/v1/api-keys/${b.dataset.revoke}`, { method: 'DELETE' }); await pages.keys(); };
    }
  },

  async credits() {
    me = await api('/v1/account');
    view.innerHTML = `<h1>Credits</h1>
      <div class="cards">
        <div class="card"><div class="label">Balance</div><div class="value">${me.metered ? usd(me.balance_usd) : 'unmetered'}</div></div>
        <div class="card"><div class="label">Held by requests in flight</div><div class="value">${usd(me.reserved_usd)}</div></div>
        <div class="card"><div class="label">Available</div><div class="value">${me.metered ? usd(me.available_usd) : '–'}</div></div>
      </div>
      <h2>Top-ups and refunds</h2>
      <table><tr><th>time</th><th>kind</th><th>amount</th><th>balance after</th><th>note</th></tr>
      ${me.credits.map((c) => `<tr><td>${when(c.created_at)}</td><td>${esc(c.kind)}</td><td class="good">${usd(c.amount_usd)}</td><td>${usd(c.balance_after_usd)}</td><td class="dim">${esc(c.note)}</td></tr>`).join('')
        || '<tr><td colspan="5" class="dim">No top-ups yet.</td></tr>'}</table>`;
  },

  async pricing() {
    const models = await (await fetch('/v1/models')).json();
    view.innerHTML = `<h1>Pricing preview</h1>
      <p class="dim">What a request would cost on each route, counted exactly; nothing is sent upstream.</p>
      <form id="quote"><div class="row"><select name="model">${models.data.filter((m) => m.id !== 'auto').map((m) => `<option>${esc(m.id)}</option>`).join('')}</select>
        <input name="max_tokens" type="number" min="1" placeholder="max_tokens"><button>Quote</button></div>
        <textarea name="prompt" placeholder="Your prompt">Summarize the benefits of an LLM gateway in three bullet points.</textarea></form>
      <div id="quote-out"></div>`;
    $('#quote').onsubmit = async (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      try {
        const q = await api('/v1/account/quote', { method: 'POST', body: JSON.stringify({ model: f.get('model'), messages: [{ role: 'user', content: f.get('prompt') }], ...(f.get('max_tokens') ? { max_tokens: Number(f.get('max_tokens')) } : {}) }) });
        $('#quote-out').innerHTML = `<p>${num(q.prompt_tokens)} prompt tokens, up to ${num(q.completion_tokens.max)} output tokens.</p>
          <table><tr><th>route</th><th>charge (min – max)</th><th>benchmark (max)</th><th>saved (max)</th></tr>
          ${q.options.map((o) => `<tr><td>${esc(o.decision)}</td><td>${usd(o.charge_usd.min)} – ${usd(o.charge_usd.max)}</td><td>${usd(o.benchmark_usd.max)}</td><td class="good">${usd(o.saved_usd.max)}</td></tr>`).join('')}</table>`;
      } catch (err) { $('#quote-out').innerHTML = error(err); }
    };
  },

  async playground() {
    const models = await (await fetch('/v1/models')).json();
    view.innerHTML = `<h1>Playground</h1>
      <form id="play"><div class="row"><select name="model">${models.data.map((m) => `<option>${esc(m.id)}</option>`).join('')}</select>
        <label><input type="checkbox" name="cache" checked> savings on</label><button id="send">Send (streams)</button></div>
        <textarea name="prompt">Write a haiku about gateways.</textarea></form>
      <h2>Answer</h2><pre id="answer"></pre><div id="figures" class="dim"></div>`;
    $('#play').onsubmit = async (e) => {
      e.preventDefault();
      const f = new FormData(e.target);
      const out = $('#answer');
      out.textContent = '';
      $('#figures').textContent = '';
      const res = await fetch('/v1/chat/completions', { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(f.get('cache') ? {} : { 'x-gateway-savings': 'off' }) },
        body: JSON.stringify({ model: f.get('model'), stream: true, messages: [{ role: 'user', content: f.get('prompt') }] }) });
      if (!res.ok) { out.textContent = (await res.json()).error?.message ?? `HTTP ${res.status}`; return; }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let end;
        while ((end = buf.indexOf('\n\n')) !== -1) {
          const event = buf.slice(0, end);
          buf = buf.slice(end + 2);
          if (event.startsWith(': gateway ')) {
            const g = JSON.parse(event.slice(10));
            $('#figures').textContent = `served by ${g.served} · cache ${g.cache} · charged ${usd(g.charge_usd)} · saved ${usd(g.saved_usd)} · overhead ${g.overhead_ms} ms`;
            continue;
          }
          const data = event.startsWith('data: ') ? event.slice(6) : '';
          if (!data || data === '[DONE]') continue;
          const chunk = JSON.parse(data);
          out.textContent += chunk.choices?.[0]?.delta?.content ?? '';
        }
      }
    };
  },

  async admin() {
    const ws = await api('/admin/workspaces');
    view.innerHTML = `<h1>Workspaces</h1>
      <table><tr><th>name</th><th>id</th><th>email</th><th>balance</th><th>available</th><th>created</th></tr>
      ${ws.data.map((w) => `<tr><td>${esc(w.name)}</td><td><code>${esc(w.id)}</code></td><td>${esc(w.email ?? '')}</td><td>${w.metered ? usd(w.balance_usd) : 'unmetered'}</td><td>${w.metered ? usd(w.available_usd) : '–'}</td><td>${when(w.created_at)}</td></tr>`).join('')}</table>
      <p class="dim">Deployments can be enabled and disabled on the <a href="#routes">Routes</a> page.</p>`;
  },
};

/** Cumulative dollars over the range, every bucket present (empty ones add nothing). */
/** The workspace's latest `auto` rows (newest first), up to `max`, page by page. */
async function autoRows(max) {
  const rows = [];
  let cursor = '';
  while (rows.length < max) {
    const page = await api(`/v1/requests?model=auto&limit=100${cursor ? `&cursor=${cursor}` : ''}`);
    rows.push(...page.data.filter((r) => r.router_task && r.status === 200));
    if (!page.has_more || !page.data.length) break;
    cursor = page.next_cursor ?? page.data.at(-1).id;
  }
  return rows;
}

function drawChart(points, start, end, step) {
  const el = $('#chart');
  el.dataset.points = String(points.filter((p) => p.requests > 0).length);
  if (!window.uPlot) { el.textContent = 'Chart library missing.'; return; }
  const byStart = new Map(points.map((p) => [p.start, p]));
  const xs = [];
  const cols = [[], [], []];
  const run = [0, 0, 0];
  for (let x = start; x <= end; x += step) {
    const p = byStart.get(x);
    if (p) { run[0] += p.benchmark_usd; run[1] += p.charge_usd; run[2] += p.saved_usd; }
    xs.push(x);
    run.forEach((v, i) => cols[i].push(v));
  }
  const money = (v) => (v === 0 ? '$0' : v < 0.01 ? `$${v.toExponential(1)}` : `$${v.toFixed(2)}`);
  new window.uPlot({
    width: Math.min(1160, (el.clientWidth || 1180) - 20), height: 260,
    scales: { x: { time: true, range: [start, end] }, y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1e-6] } },
    series: [{}, { label: 'benchmark', stroke: '#8a97a6', width: 2, value: (_u, v) => (v == null ? '–' : money(v)) },
      { label: 'charged', stroke: '#4fb3ff', width: 2, value: (_u, v) => (v == null ? '–' : money(v)) },
      { label: 'saved', stroke: '#43c58a', width: 2, fill: 'rgba(67,197,138,.12)', value: (_u, v) => (v == null ? '–' : money(v)) }],
    axes: [{ stroke: '#8a97a6', grid: { stroke: '#26313d' } }, { stroke: '#8a97a6', grid: { stroke: '#26313d' }, size: 80, values: (_u, ticks) => ticks.map(money) }],
  }, [xs, ...cols], el);
}

async function route() {
  if (!me) return;
  const [path, query] = (location.hash.slice(1) || 'overview').split('?');
  const [name, arg] = path.split('/');
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('on', a.getAttribute('href') === `#${name === 'request' ? 'requests' : name}`);
  const page = pages[name] || pages.overview;
  view.innerHTML = '<p class="dim">Loading…</p>';
  try { await page(new URLSearchParams(query || ''), arg && decodeURIComponent(arg)); } catch (err) { view.innerHTML = error(err); }
}

window.addEventListener('hashchange', route);
if (key) start(); else signIn();
