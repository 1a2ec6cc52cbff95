// Byte-level edits of a body's top-level members (wire/splice.ts): what JSON.parse reads
// from the edited bytes is the parsed body with the edits applied, whatever the layout.
import t from 'tap';
import { editMembers, insertMembers, memberCount, members, type MemberEdits } from '../../src/wire/splice.js';

/** What the edits mean on the parsed value (the last occurrence of a key is the one a parser keeps). */
function expected(body: string, e: MemberEdits): Record<string, unknown> {
  const value = JSON.parse(body) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [k, json] of e.add ?? []) out[k] = JSON.parse(json);
  for (const [k, v] of Object.entries(value)) if (!(e.drop ?? []).includes(k)) out[k] = v;
  for (const [k, json] of e.set ?? []) if (!(e.drop ?? []).includes(k)) out[k] = JSON.parse(json); // a key the body lacks is added
  return out;
}

const BODIES = [
  '{"model":"openai/gpt-4o","messages":[{"role":"user","content":"hi"}]}',
  '  {\n  "messages" : [ {"role":"user","content":"model"} ] ,\n  "model" : "openai/gpt-4o" , "n": 2 , "stream": true }  ',
  '{"messages":[{"role":"user","content":"say \\"model\\":\\"x\\" {not a brace"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"properties":{"model":{"type":"string"}}}}}],"model":"a/b"}',
  '{"provider":"openai","model":"a/b","messages":[]}',
  '{"model":"a/b","provider":"openai"}',
  '{"provider":"openai"}',
  '{}',
  '{"model":"first","messages":[],"model":"a/b"}',
  '{"mod\\u0065l":"a/b","max_tokens":null,"temperature":0.5,"stop":["}"],"x":true,"y":false,"z":-1.5e3}',
  '{"model":"a/b","stream_options":{"include_usage":false},"messages":[]}',
];

const EDITS: MemberEdits[] = [
  { set: [['model', '"gpt-4o"']] },
  { drop: ['provider'] },
  { add: [['stream_options', '{"include_usage":true}']] },
  { set: [['model', '"gpt-4o"'], ['stream_options', '{"include_usage":true}']], drop: ['provider'], add: [['prompt_cache_key', '"k"']] },
  { add: [['a', '1'], ['b', '[1,{"c":"}"}]']], drop: ['model', 'messages'] },
];

t.test('every edit of every body reads back as the edited value', async (t) => {
  for (const body of BODIES) {
    for (const e of EDITS) {
      const out = editMembers(Buffer.from(body), e);
      t.ok(out, `an object: ${body}`);
      t.same(JSON.parse(out!.toString()), expected(body, e), `${body} with ${JSON.stringify(e)}`);
    }
  }
});

t.test('the last occurrence of a duplicated key is the one replaced, and the only one kept', async (t) => {
  const out = editMembers(Buffer.from('{"model":"first","model":"second"}'), { set: [['model', '"up"']] })!.toString();
  t.equal(out, '{"model":"up"}');
});

t.test('members untouched keep their bytes (messages are copied, not re-encoded)', async (t) => {
  const messages = '[ {"role":"user","content":"caf\\u00e9 \\ud83d\\ude00"} ]';
  const out = editMembers(Buffer.from(`{"model":"a/b","messages":${messages}}`), { set: [['model', '"b"']] })!.toString();
  t.equal(out, `{"model":"b","messages":${messages}}`);
});

t.test('a body that is not an object is left to the caller', async (t) => {
  t.equal(members(Buffer.from('[1,2]')), null);
  t.equal(editMembers(Buffer.from('"x"'), { drop: ['a'] }), null);
  t.same(members(Buffer.from(' {"a" : 1 , "b":"}"} '))?.map((m) => m.key), ['a', 'b']);
});

t.test('the layout outside the edited members is kept byte for byte', async (t) => {
  const edit = (body: string, e: MemberEdits) => editMembers(Buffer.from(body), e)!.toString();
  t.equal(edit('{ "a": 1,  "provider": "x" ,\n "b": 2 }', { drop: ['provider'] }), '{ "a": 1,  "b": 2 }');
  t.equal(edit('{ "a": 1, "provider": "x" }', { drop: ['provider'] }), '{ "a": 1 }');
  t.equal(edit('{ "provider": "x", "a": 1 }', { drop: ['provider'] }), '{ "a": 1 }');
  t.equal(edit('{ "model" : "a/b" , "x": [1, 2] }', { set: [['model', '"b"']], add: [['s', '{"u":true}']] }), '{"s":{"u":true}, "model" : "b" , "x": [1, 2] }');
});

t.test('a key named twice keeps only its last occurrence (what the gateway read), edits or not', async (t) => {
  const edit = (body: string, e: MemberEdits = {}) => editMembers(Buffer.from(body), e)!.toString();
  t.equal(edit('{"model":"evil","model":"a/b","messages":[]}', { set: [['model', '"b"']] }), '{"model":"b","messages":[]}');
  t.equal(edit('{"n":128,"model":"m","n":1,"max_tokens":32768,"max_tokens":1}'), '{"model":"m","n":1,"max_tokens":1}');
  t.equal(edit('{"mod\\u0065l":"x","model":"y"}'), '{"model":"y"}', 'a key spelled with an escape is the same key');
  t.equal(edit('{"stream":false,"a":1,"stream":true}'), '{"a":1,"stream":true}');
  const plain = Buffer.from('{"model":"m","messages":[]}');
  t.equal(editMembers(plain, {}), plain, 'nothing to change: the body itself, not a copy');
});

t.test('strings of any length and escaping are skipped whole (the scan past 32 bytes searches natively)', async (t) => {
  for (const n of [0, 1, 30, 31, 32, 33, 34, 100, 5000]) {
    for (const tail of ['', '\\\\', '\\"', '\\\\\\"', 'é🙂']) {
      const content = 'x'.repeat(n) + tail + '"model":"no"}' + 'y'.repeat(n);
      const body = JSON.stringify({ messages: [{ role: 'user', content }], model: 'a/b' });
      const out = editMembers(Buffer.from(body), { set: [['model', '"b"']] })!.toString();
      t.same(JSON.parse(out), { messages: [{ role: 'user', content }], model: 'b' }, `content of ${n} + ${JSON.stringify(tail)}`);
    }
  }
});

t.test('memberCount counts the members in the bytes, duplicates included', async (t) => {
  for (const body of BODIES) t.equal(memberCount(Buffer.from(body)), members(Buffer.from(body))!.length, body);
  t.equal(memberCount(Buffer.from('{"a":1,"a":2}')), 2);
  t.equal(memberCount(Buffer.from('[1]')), -1);
});

t.test('insertMembers adds after the opening brace, leaving every other byte', async (t) => {
  t.equal(insertMembers(Buffer.from(' { "a" : 1 }'), 1, [['s', '{"u":true}'], ['k', '"x"']]).toString(), ' {"s":{"u":true},"k":"x" "a" : 1 }'.replace('"x" "a"', '"x", "a"'));
  t.equal(insertMembers(Buffer.from('{}'), 0, [['s', '1']]).toString(), '{"s":1}');
});
