// The official Anthropic SDK as a real client of the relay: create, stream,
// count tokens, and a typed error for a bad key. Prints its plan first
// ("# plan: N checks"), then "ok - ..." / "FAIL - ..." lines; exits non-zero
// when a check fails or another number of checks ran than planned.
import Anthropic from '@anthropic-ai/sdk';

const PLAN = 7;
const baseURL = process.env.RELAY_BASE;   // e.g. http://127.0.0.1:3000/api
const apiKey = process.env.RELAY_KEY;
let failed = 0;
let checks = 0;
function check(name, cond, detail) {
  checks++;
  console.log(`${cond ? 'ok' : 'FAIL'} - sdk: ${name}${cond ? '' : ': ' + detail}`);
  if (!cond) failed++;
}
console.log(`# plan: ${PLAN} checks`);

const client = new Anthropic({ apiKey, baseURL, maxRetries: 0 });
const params = {
  model: 'claude-sonnet-5-mock-usage-12_34_0_0_0',
  max_tokens: 64,
  messages: [{ role: 'user', content: 'hello from the SDK' }],
};

const msg = await client.messages.create(params);
check('messages.create returns a message', msg.type === 'message' && msg.content[0].type === 'text', JSON.stringify(msg));
check('messages.create reports usage', msg.usage.input_tokens === 12 && msg.usage.output_tokens === 34, JSON.stringify(msg.usage));

const stream = client.messages.stream(params);
let text = '';
const events = [];
stream.on('text', (t) => { text += t; });
stream.on('streamEvent', (e) => { events.push(e.type); });
const final = await stream.finalMessage();
check('messages.stream delivers text deltas', text.length > 0 && text === final.content[0].text, `${text} vs ${JSON.stringify(final.content)}`);
// The mock's answer to this model is one text block in three deltas (the
// SDK does not pass pings on): every event, in order, nothing else.
const wantEvents = ['message_start', 'content_block_start', 'content_block_delta', 'content_block_delta',
  'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'];
check('messages.stream sees every event, in order', events.join(' ') === wantEvents.join(' '), events.join(' '));
check('messages.stream final usage', final.usage.output_tokens === 34, JSON.stringify(final.usage));

const count = await client.messages.countTokens({ model: params.model, messages: params.messages });
check('messages.countTokens is forwarded', count.input_tokens === 12, JSON.stringify(count));

const bad = new Anthropic({ apiKey: 'cr_' + '0'.repeat(64), baseURL, maxRetries: 0 });
try {
  await bad.messages.create(params);
  check('a bad key raises AuthenticationError', false, 'no error');
} catch (e) {
  check('a bad key raises AuthenticationError', e instanceof Anthropic.AuthenticationError && e.status === 401,
        `${e.constructor.name} ${e.status}`);
}
if (checks !== PLAN) {
  console.log(`FAIL - sdk: the script ran the checks it planned: ${checks} of ${PLAN}`);
  failed++;
}
process.exit(failed ? 1 : 0);
