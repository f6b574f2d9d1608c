// The official OpenAI SDK as a real client of the relay's Chat Completions
// route (converted to Claude Messages and back): create and stream with
// usage, a tool call (non-stream and stream) and the second turn that
// answers it, the model list, and a typed error for a bad key. The mock
// upstream is steered through the model name (mock-usage-..., mock-tool-...).
// Prints its plan first ("# plan: N checks"), then "ok - ..." / "FAIL - ..."
// lines; exits non-zero when a check fails or another number of checks ran
// than planned (a group that throws counts as one failed check).
import OpenAI from 'openai';
import { isDeepStrictEqual } from 'node:util';

const PLAN = 24;
const baseURL = process.env.RELAY_BASE;   // e.g. http://127.0.0.1:3000/openai/v1
const apiKey = process.env.RELAY_KEY;
let failed = 0;
let checks = 0;
function check(name, cond, detail) {
  checks++;
  console.log(`${cond ? 'ok' : 'FAIL'} - openai sdk: ${name}${cond ? '' : ': ' + detail}`);
  if (!cond) failed++;
}
console.log(`# plan: ${PLAN} checks`);
// Runs one group of checks; an exception fails the group, not the script.
async function step(name, fn) {
  try {
    await fn();
  } catch (e) {
    check(name, false, `${e.constructor.name}: ${e.message}${e.status ? ` (HTTP ${e.status})` : ''}`);
  }
}
const j = (v) => JSON.stringify(v);

const client = new OpenAI({ apiKey, baseURL, maxRetries: 0, timeout: 20000 });
const MODEL = 'claude-sonnet-5-mock-usage-21_13_0_0_0';   // prompt 21, completion 13
const TOOL_MODEL = 'claude-sonnet-5-mock-tool-get_weather-mock-usage-21_13_0_0_0';
const messages = [
  { role: 'system', content: 'You are terse.' },
  { role: 'user', content: 'hello from the OpenAI SDK' },
];
const tools = [{
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Weather forecast for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } } },
  },
}];
const wantArgs = { city: 'Paris', days: 3 };
const usageOk = (u) => u && u.prompt_tokens === 21 && u.completion_tokens === 13 && u.total_tokens === 34;

let fullText = '';
await step('chat.completions.create', async () => {
  const r = await client.chat.completions.create({ model: MODEL, messages, max_tokens: 64 });
  const c = r.choices?.[0];
  fullText = c?.message?.content ?? '';
  check('create returns a chat.completion', r.object === 'chat.completion' && /^chatcmpl-/.test(r.id) &&
        r.choices.length === 1 && c.index === 0, j(r));
  check('create echoes the requested model', r.model === MODEL, r.model);
  check('create: assistant text', c.message.role === 'assistant' && typeof fullText === 'string' &&
        fullText.length > 0 && !c.message.tool_calls?.length, j(c.message));
  check('create: finish_reason stop', c.finish_reason === 'stop', c.finish_reason);
  check('create: usage prompt 21 / completion 13 / total 34', usageOk(r.usage), j(r.usage));
});

await step('stream with include_usage', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL, messages, max_tokens: 64, stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  let usageChunks = 0;
  let afterUsage = 0;
  let role = null;
  const kinds = [];   // what each chunk carried, in order
  for await (const ch of stream) {
    chunks++;
    kinds.push(ch.usage ? 'usage' : ch.choices.map((c) => (c.delta?.role ? 'role' : '') +
      (c.delta?.content ? 'text' : '') + (c.finish_reason ? 'finish' : '')).join(',') || 'empty');
    if (usage) afterUsage++;
    if (ch.object !== 'chat.completion.chunk') throw new Error(`not a chunk: ${j(ch)}`);
    for (const c of ch.choices) {
      if (c.delta?.role) role = c.delta.role;
      if (c.delta?.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
    if (ch.usage) {
      usageChunks++;
      usage = ch.usage;
      if (ch.choices.length !== 0) throw new Error(`usage chunk with choices: ${j(ch)}`);
    }
  }
  check('stream: first delta carries role assistant', role === 'assistant', role);
  check('stream: text deltas join to the non-stream text', text.length > 0 && text === fullText, `${j(text)} vs ${j(fullText)}`);
  check('stream: finish_reason stop', finish === 'stop', finish);
  check('stream: one final usage chunk with prompt 21 / completion 13 / total 34',
        usageChunks === 1 && afterUsage === 0 && usageOk(usage), `${usageChunks} usage chunks, ${afterUsage} after it: ${j(usage)}`);
  // The mock's answer is one text block in three deltas: a role chunk, the
  // three texts, the finish reason, the usage; nothing before, between or after.
  check('stream ends cleanly: role, 3 text deltas, finish, usage and nothing else',
        kinds.join(' ') === 'role text text text finish usage', `${chunks} chunks: ${kinds.join(' ')}`);
});

let toolCall = null;
await step('tool call', async () => {
  const r = await client.chat.completions.create({
    model: TOOL_MODEL, messages: [{ role: 'user', content: 'weather in Paris for 3 days?' }], tools, max_tokens: 64,
  });
  const c = r.choices[0];
  const tc = c.message.tool_calls?.[0];
  check('tool call: finish_reason tool_calls', c.finish_reason === 'tool_calls', c.finish_reason);
  check('tool call: one function call get_weather with an id', c.message.tool_calls?.length === 1 &&
        tc.type === 'function' && tc.function.name === 'get_weather' && typeof tc.id === 'string' && tc.id.length > 0,
        j(c.message));
  let args;
  try { args = JSON.parse(tc.function.arguments); } catch (e) { args = e.message; }
  check('tool call: arguments parse to {city: Paris, days: 3}', isDeepStrictEqual(args, wantArgs), tc?.function?.arguments);
  check('tool call: the text before the call is kept as content', typeof c.message.content === 'string' &&
        c.message.content.length > 0, j(c.message.content));
  check('tool call: usage', usageOk(r.usage), j(r.usage));
  toolCall = tc;
});

await step('tool call stream', async () => {
  const stream = await client.chat.completions.create({
    model: TOOL_MODEL, messages: [{ role: 'user', content: 'weather in Paris for 3 days? (stream)' }], tools,
    max_tokens: 64, stream: true, stream_options: { include_usage: true },
  });
  const calls = [];   // accumulated by index, as a client does
  let finish = null;
  let usage = null;
  let text = '';
  let fragments = 0;
  for await (const ch of stream) {
    if (ch.usage) usage = ch.usage;
    for (const c of ch.choices) {
      if (c.finish_reason) finish = c.finish_reason;
      if (c.delta?.content) text += c.delta.content;
      for (const d of c.delta?.tool_calls ?? []) {
        if (typeof d.index !== 'number') throw new Error(`tool call delta without index: ${j(d)}`);
        if (!calls[d.index]) {
          if (!d.id || d.function?.name === undefined) throw new Error(`first delta of a call lacks id/name: ${j(d)}`);
          calls[d.index] = { id: d.id, type: d.type, name: d.function.name, arguments: '' };
        }
        if (d.function?.arguments) {
          calls[d.index].arguments += d.function.arguments;
          fragments++;
        }
      }
    }
  }
  check('tool call stream: finish_reason tool_calls', finish === 'tool_calls', finish);
  check('tool call stream: one call at index 0 named get_weather with an id', calls.length === 1 && calls[0] &&
        calls[0].name === 'get_weather' && calls[0].type === 'function' && calls[0].id.length > 0, j(calls));
  let args;
  try { args = JSON.parse(calls[0]?.arguments); } catch (e) { args = e.message; }
  check('tool call stream: argument fragments accumulate to {city: Paris, days: 3}',
        isDeepStrictEqual(args, wantArgs) && fragments >= 2, `${fragments} fragments: ${calls[0]?.arguments}`);
  check('tool call stream: text deltas before the call', text.length > 0, j(text));
  check('tool call stream: usage chunk', usageOk(usage), j(usage));
});

await step('second turn with the tool result', async () => {
  if (!toolCall) throw new Error('no tool call from the first turn');
  const r = await client.chat.completions.create({
    model: MODEL,
    max_tokens: 64,
    tools,
    messages: [
      { role: 'user', content: 'weather in Paris for 3 days?' },
      { role: 'assistant', content: null, tool_calls: [toolCall] },
      { role: 'tool', tool_call_id: toolCall.id, content: 'sunny, 24 C, then rain (tool result from the SDK)' },
    ],
  });
  const c = r.choices[0];
  check('second turn (assistant tool_calls + tool message) succeeds', c.finish_reason === 'stop' &&
        typeof c.message.content === 'string' && c.message.content.length > 0, j(r));
});

await step('models.list', async () => {
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  check('models.list contains claude-sonnet-5', ids.includes('claude-sonnet-5'), j(ids));
});

await step('bad key', async () => {
  const bad = new OpenAI({ apiKey: 'cr_' + '0'.repeat(64), baseURL, maxRetries: 0 });
  try {
    await bad.chat.completions.create({ model: MODEL, messages });
    check('a bad key raises AuthenticationError (401)', false, 'no error');
    check('...with the error message of the relay', false, 'no error');
  } catch (e) {
    check('a bad key raises AuthenticationError (401)', e instanceof OpenAI.AuthenticationError && e.status === 401,
          `${e.constructor.name} ${e.status} ${e.message}`);
    check('...with the error message of the relay', typeof e.error?.message === 'string' && e.error.message.length > 0,
          j(e.error));
  }
});
if (checks !== PLAN) {
  console.log(`FAIL - openai sdk: the script ran the checks it planned: ${checks} of ${PLAN}`);
  failed++;
}
process.exit(failed ? 1 : 0);
