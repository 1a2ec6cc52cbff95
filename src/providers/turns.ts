// The chat-completions request read once into what every translating adapter (Anthropic,
// Bedrock, Gemini/Vertex) needs, whatever its wire shape: the system text, the turns as
// alternating user/assistant blocks (text, images, tool calls, tool results with the name
// of the call they answer), the tools, the tool choice, the stop list and the JSON format.
// Each adapter maps these blocks to its own wire names; none walks OpenAI's messages itself.
import { Errors, GatewayError } from '../errors.js';
import { MAX_JSON_DEPTH, isRecord, nestsDeeper, text as asText, type Json } from '../json.js';
import { contentText, type ChatRequest } from '../wire/chat.js';

export type Block =
  | { type: 'text'; text: string }
  /** `data`: base64 bytes of a data: URL (with `mime`); else `url` as sent. */
  | { type: 'image'; mime: string | null; data: string | null; url: string | null }
  /** `signature`: the thought signature Gemini gave the call, carried in its OpenAI id (see callId). */
  | { type: 'tool_call'; id: string; name: string; input: unknown; signature: string | null }
  /** `name`: the function the answered call named (Gemini's functionResponse needs it). */
  | { type: 'tool_result'; id: string; name: string; text: string };

export interface Turn {
  role: 'user' | 'assistant';
  blocks: Block[];
}

export interface ToolSpec {
  name: string;
  description: string | null;
  parameters: Json;
}

export type ToolChoice = { mode: 'auto' | 'required' | 'none' } | { mode: 'tool'; name: string };

/** `response_format`: `schema` is null for `json_object` (any JSON object). */
export interface JsonFormat {
  name: string;
  schema: Json | null;
}

/** Between a tool call's id and a thought signature (base64, which never contains `~`) that must go back with the call. */
const SIGNATURE_MARK = '~sig~';

/** The OpenAI tool-call id for a call and the thought signature it came with (Gemini's; no other provider sees it). */
export function callId(id: string, signature: string | null | undefined): string {
  return signature ? `${id}${SIGNATURE_MARK}${signature}` : id;
}

/** A tool-call id as the upstream knows it, and its thought signature. */
function splitCallId(raw: string): [string, string | null] {
  const at = raw.indexOf(SIGNATURE_MARK);
  return at === -1 ? [raw, null] : [raw.slice(0, at), raw.slice(at + SIGNATURE_MARK.length)];
}

const invalid = (message: string) => new GatewayError(Errors.invalidRequest, message, 'messages');

/** A tool call's arguments: a JSON object (every translating provider takes a call's input as one; an empty string is none). */
export function parseArguments(args: unknown): Json {
  if (typeof args !== 'string') {
    if (isRecord(args)) return args;
    throw invalid('A tool call\'s arguments must be a JSON object (as a string).');
  }
  if (!args.trim()) return {};
  let value: unknown;
  try { value = JSON.parse(args); } catch { throw invalid('A tool call\'s arguments are not valid JSON.'); }
  if (nestsDeeper(value)) throw new GatewayError(Errors.jsonTooDeep, `A tool call's arguments nest more than ${MAX_JSON_DEPTH} levels deep.`, 'messages');
  if (!isRecord(value)) throw invalid('A tool call\'s arguments must be a JSON object.');
  return value;
}

function imageOf(part: Json): Block {
  const url = isRecord(part.image_url) ? part.image_url.url : part.image_url;
  if (typeof url !== 'string' || !url) throw invalid('An image_url part has no url.');
  // data:[<mime>][;param=value]*;base64,<data>
  const data = /^data:([^;,]+)(?:;[^;,=]+=[^;,]*)*;base64,(.*)$/s.exec(url);
  return data ? { type: 'image', mime: data[1]!, data: data[2]!, url: null } : { type: 'image', mime: null, data: null, url };
}

function userBlocks(content: unknown): Block[] {
  if (typeof content === 'string') return content ? [{ type: 'text', text: content }] : [];
  if (!Array.isArray(content)) return [];
  const blocks: Block[] = [];
  for (const part of content) {
    if (!isRecord(part)) continue;
    if (part.type === 'text' && typeof part.text === 'string') { if (part.text) blocks.push({ type: 'text', text: part.text }); }
    else if (part.type === 'image_url') blocks.push(imageOf(part));
    // Never dropped in silence: the model would answer without what the caller sent, and bill for it.
    else throw invalid(`This route's provider takes text and images in a message; a '${String(part.type).slice(0, 40)}' part cannot be sent to it.`);
  }
  return blocks;
}

/** The system prompt (system and developer messages, in order) and the turns, alternating: same-role neighbours merge. */
export function chatTurns(request: ChatRequest): { system: string[]; turns: Turn[] } {
  const system: string[] = [];
  const turns: Turn[] = [];
  const names = new Map<string, string>(); // tool call id → function name
  const push = (role: Turn['role'], blocks: Block[]) => {
    if (!blocks.length) return;
    const last = turns.at(-1);
    if (last && last.role === role) last.blocks.push(...blocks);
    else turns.push({ role, blocks });
  };
  for (const m of request.messages) {
    const role = m.role;
    if (role === 'system' || role === 'developer') { system.push(contentText(m.content)); continue; }
    if (role === 'tool') {
      const [id] = splitCallId(asText(m.tool_call_id));
      const name = names.get(id);
      if (name === undefined) throw invalid(`A tool message answers tool_call_id '${id.slice(0, 64)}', which no earlier assistant message called.`);
      push('user', [{ type: 'tool_result', id, name, text: contentText(m.content) }]);
      continue;
    }
    if (role === 'assistant') {
      const blocks: Block[] = [];
      const said = contentText(m.content);
      if (said) blocks.push({ type: 'text', text: said });
      for (const call of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
        if (!isRecord(call) || !isRecord(call.function)) continue;
        const [id, signature] = splitCallId(asText(call.id));
        const name = asText(call.function.name);
        names.set(id, name);
        blocks.push({ type: 'tool_call', id, name, input: parseArguments(call.function.arguments), signature });
      }
      push('assistant', blocks);
      continue;
    }
    push('user', userBlocks(m.content));
  }
  if (!turns.length) throw invalid('The conversation has nothing to send but a system prompt: add a user message.');
  return { system, turns };
}

export function toolsOf(request: ChatRequest): ToolSpec[] {
  if (!Array.isArray(request.tools)) return [];
  return request.tools.filter(isRecord).map((t) => {
    const f = isRecord(t.function) ? t.function : {};
    return { name: asText(f.name), description: typeof f.description === 'string' && f.description ? f.description : null,
      parameters: isRecord(f.parameters) ? f.parameters : { type: 'object', properties: {} } };
  });
}

export function toolChoiceOf(request: ChatRequest): ToolChoice | null {
  const choice = request.tool_choice;
  if (choice === 'auto' || choice === 'required' || choice === 'none') return { mode: choice };
  if (isRecord(choice) && isRecord(choice.function)) return { mode: 'tool', name: asText(choice.function.name) };
  return null;
}

export function stopList(request: ChatRequest): string[] | null {
  const stop = request.stop;
  if (typeof stop === 'string') return [stop];
  return Array.isArray(stop) ? stop.filter((s): s is string => typeof s === 'string') : null;
}

export function jsonFormat(request: ChatRequest): JsonFormat | null {
  const f = request.response_format;
  if (!isRecord(f)) return null;
  if (f.type === 'json_object') return { name: 'json_response', schema: null };
  if (f.type !== 'json_schema') return null;
  const spec = isRecord(f.json_schema) ? f.json_schema : {};
  const name = typeof spec.name === 'string' && /^[A-Za-z0-9_-]{1,64}$/.test(spec.name) ? spec.name : 'json_response';
  return { name, schema: isRecord(spec.schema) ? spec.schema : { type: 'object' } };
}

/**
 * JSON output for providers with no JSON switch (Anthropic, Bedrock's Converse): a tool whose
 * input is the answer, named apart from the caller's tools, and forced when the caller offered
 * none (with tools of its own, the model chooses). The adapter returns the tool's input as
 * the message content. Null when the request asks for no JSON.
 */
export function jsonOutputTool(request: ChatRequest, tools: readonly ToolSpec[]): { tool: ToolSpec; forced: boolean } | null {
  const format = jsonFormat(request);
  if (!format) return null;
  const name = tools.some((t) => t.name === format.name) ? `${format.name}_json_output` : format.name;
  return { tool: { name, description: 'Answer with the JSON object the user asked for, as this tool\'s input.', parameters: format.schema ?? { type: 'object' } }, forced: tools.length === 0 };
}
