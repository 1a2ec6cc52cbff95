// Renders /openapi.json: operations grouped by tag, with auth, parameters and the request
// body's JSON Schema (generated from the zod schemas the server validates with).
const esc = (v) => String(v ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
const spec = await (await fetch('/openapi.json')).json();
const byTag = new Map();
for (const [path, ops] of Object.entries(spec.paths)) {
  for (const [method, op] of Object.entries(ops)) {
    const tag = op.tags?.[0] ?? 'Other';
    if (!byTag.has(tag)) byTag.set(tag, []);
    byTag.get(tag).push({ path, method, op });
  }
}
const root = document.getElementById('docs');
root.innerHTML = `<h1>${esc(spec.info.title)} API <span class="dim" style="font-size:14px">${esc(spec.info.version)} · OpenAPI ${esc(spec.openapi)}</span></h1>
  <p class="dim">${esc(spec.info.description)} Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>.</p>
  ${[...byTag].map(([tag, ops]) => `<h2>${esc(tag)}</h2>${ops.map(({ path, method, op }) => `
    <details class="op"><summary><span class="m ${method}">${method.toUpperCase()}</span><code class="path">${esc(path)}</code><span class="dim">${esc(op.summary)}</span></summary>
    <div class="body">
      <p>${op.security?.length ? esc(op.description ?? 'Needs a key.') : 'Public.'}</p>
      ${op.parameters ? `<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th></tr>${op.parameters.map((p) => `<tr><td><code>${esc(p.name)}</code></td><td>${p.in}</td><td>${p.required ? 'yes' : ''}</td><td><code>${esc(JSON.stringify(p.schema))}</code></td></tr>`).join('')}</table>` : ''}
      ${op.requestBody ? `<p>Request body (JSON Schema):</p><pre>${esc(JSON.stringify(op.requestBody.content['application/json'].schema, null, 2))}</pre>` : ''}
    </div></details>`).join('')}`).join('')}`;
