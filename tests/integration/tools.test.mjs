// tools.test.mjs - tool calling attacked as a hostile client would, in the
// OpenAI and Ollama dialects, on the built-in stories260K model and through
// the fake upstream (tests/e2e/fake_upstream.mjs) standing in for an
// OpenAI-compatible server and for Ollama:
//   - bad input: a 400 naming the field (OpenAI error.param; Ollama's error
//     text starts with "field: ");
//   - hostile shapes: the tool and call limits, deep schemas, huge texts,
//     unicode, 20 requests at once, clients that leave mid-call;
//   - upstreams that send malformed calls: the server stays up and answers
//     something a client can use or a clear error;
//   - every field reaches the upstream that can honour it, what Ollama cannot
//     do is refused before anything is sent, and calls come back in the
//     client's dialect;
//   - the cache keeps answers that differ in tools apart.
// The client SDKs' view of tool calling is in tests/e2e/sdk_tools.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeUpstream, req, KEY } from './lib.mjs';

const MODEL = 'stories260K';
const ASK = [{ role: 'user', content: 'What is the weather in Paris?' }];
const fn = (name, parameters, description) => ({ type: 'function', function: { name, description, parameters } });
const WEATHER = fn('get_weather', { type: 'object', properties: { city: { type: 'string', maxLength: 12 } },
  required: ['city'] }, 'The weather in a city');
const ADD = fn('add', { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' } },
  required: ['a', 'b'] }, 'Add two numbers');
const NAMED = (name) => ({ type: 'function', function: { name } });
// A finished first turn in each dialect: the assistant called get_weather, the tool answered.
const CALL = { id: 'call_w1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } };
const HISTORY = [ASK[0], { role: 'assistant', content: null, tool_calls: [CALL] },
  { role: 'tool', tool_call_id: 'call_w1', content: '{"temperature":3}' }];
const OLLAMA_HISTORY = [ASK[0],
  { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Oslo' } } }] },
  { role: 'tool', tool_name: 'get_weather', content: '{"temperature":3}' }];

let local; // the built-in model, no cache
let fwd;   // fake-gpt -> OpenAI-compatible upstream, fake-llm -> Ollama upstream
let cached; // the built-in model with the in-memory cache
let up;
before(async () => {
  up = await startFakeUpstream();
  [local, fwd, cached] = await Promise.all([
    startServer({ CACHE_ENABLED: 'false', MODEL_QUEUE_MAX: '64' }),
    startServer({ OLLAMA_BASE_URL: up.url, OPENAI_BASE_URL: `${up.url}/v1`,
      MODEL_BACKENDS: 'fake-llm=ollama,fake-gpt=openai', CACHE_ENABLED: 'false' }),
    startServer({}),
  ]);
});
after(async () => {
  await Promise.all([local, fwd, cached].map((s) => s && s.stop()));
  if (up) up.stop();
});

const chat = (srv, body, opts = {}) =>
  req(srv, 'POST', '/v1/chat/completions', { json: { model: MODEL, ...body }, timeoutMs: 30000, ...opts });
const ochat = (srv, body, opts = {}) =>
  req(srv, 'POST', '/api/chat', { json: { model: MODEL, stream: false, ...body }, timeoutMs: 30000, ...opts });

const upstream = {
  last: async () => (await (await fetch(`${up.url}/__last`)).json()).body,
  requests: async () => (await (await fetch(`${up.url}/__stats`)).json()).requests,
  script: (parts, contentType) => fetch(`${up.url}/__script`, { method: 'POST',
    body: JSON.stringify({ parts, contentType }) }),
};

function refusedOpenAI(r, param, what) {
  assert.equal(r.status, 400, `${what}: ${r.text}`);
  assert.equal(r.json.error.param, param, `${what}: ${r.text}`);
}

function refusedOllama(r, field, what) {
  assert.equal(r.status, 400, `${what}: ${r.text}`);
  assert.ok(r.json.error.startsWith(`${field}: `), `${what}: ${r.text}`);
}

// A streamed answer's frames: SSE data lines (OpenAI) or NDJSON lines (Ollama).
function sse(text) {
  const data = text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
  return { done: data.at(-1) === '[DONE]', frames: data.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d)) };
}
const ndjson = (text) => text.split('\n').filter(Boolean).map((l) => JSON.parse(l));

// The calls of an OpenAI stream put back together as a client does: by
// index, the first piece with id and name, then argument pieces.
function streamedCalls(frames) {
  const calls = [];
  for (const f of frames)
    for (const p of f.choices?.[0]?.delta?.tool_calls || []) {
      if (p.id) calls[p.index] = { id: p.id, type: p.type, function: { name: p.function.name, arguments: '' } };
      assert.ok(calls[p.index], `a piece of call ${p.index} before its name: ${JSON.stringify(f)}`);
      calls[p.index].function.arguments += p.function?.arguments || '';
    }
  return calls;
}

// A call of a declared tool whose arguments are a JSON object.
function checkCall(call, tools, want) {
  const names = tools.map((t) => t.function.name);
  assert.ok(names.includes(call.function.name), `undeclared tool ${call.function.name}`);
  if (want) assert.equal(call.function.name, want);
  assert.match(call.id, /^call_/);
  const args = JSON.parse(call.function.arguments);
  assert.equal(typeof args, 'object');
  assert.ok(args && !Array.isArray(args), call.function.arguments);
  return args;
}

// ---- 1. bad input -----------------------------------------------------------

const turn = (...calls) => [{ role: 'user', content: 'x' }, { role: 'assistant', content: '', tool_calls: calls }];
const OPENAI_BAD = [
  ['tools not a list', { tools: 'garbage' }, 'tools'],
  ['a tool of type retrieval', { tools: [{ type: 'retrieval' }] }, 'tools.0.type'],
  ['a tool with no function', { tools: [WEATHER, { type: 'function' }] }, 'tools.1.function'],
  ['a function that is a string', { tools: [{ type: 'function', function: 'get_weather' }] }, 'tools.0.function'],
  ['a name with a space', { tools: [fn('get weather')] }, 'tools.0.function.name'],
  ['a name of 65 bytes', { tools: [fn('x'.repeat(65))] }, 'tools.0.function.name'],
  ['an empty name', { tools: [fn('')] }, 'tools.0.function.name'],
  ['a name that is a number', { tools: [{ type: 'function', function: { name: 7 } }] }, 'tools.0.function.name'],
  ['two tools with one name', { tools: [WEATHER, ADD, WEATHER] }, 'tools.2.function.name'],
  ['parameters a list', { tools: [fn('f', [{ type: 'string' }])] }, 'tools.0.function.parameters'],
  ['parameters a string', { tools: [fn('f', 'object')] }, 'tools.0.function.parameters'],
  ['a format the engine cannot enforce',
    { tools: [WEATHER, fn('f', { type: 'object', properties: { d: { type: 'string', format: 'ipv6' } } })] },
    'tools.1.function.parameters'],
  ['a remote $ref', { tools: [fn('f', { type: 'object', properties: { d: { $ref: 'https://x.example/s.json' } } })] },
    'tools.0.function.parameters'],
  ['a description that is an object', { tools: [{ type: 'function', function: { name: 'f', description: {} } }] },
    'tools.0.function.description'],
  ['tool_choice an unknown word', { tools: [WEATHER], tool_choice: 'always' }, 'tool_choice'],
  ['tool_choice a number', { tools: [WEATHER], tool_choice: 1 }, 'tool_choice'],
  ['tool_choice an unknown function', { tools: [WEATHER], tool_choice: NAMED('launch') }, 'tool_choice'],
  ['tool_choice of another type', { tools: [WEATHER], tool_choice: { type: 'retrieval', function: { name: 'get_weather' } } },
    'tool_choice'],
  ['tool_choice required with no tools', { tool_choice: 'required' }, 'tool_choice'],
  ['tool_choice named with no tools', { tool_choice: NAMED('get_weather') }, 'tool_choice'],
  ['parallel_tool_calls a string', { tools: [WEATHER], parallel_tool_calls: 'yes' }, 'parallel_tool_calls'],
  ['assistant tool_calls an object', { messages: [{ role: 'user', content: 'x' },
    { role: 'assistant', content: '', tool_calls: { 0: CALL } }] }, 'messages.1.tool_calls'],
  ['tool_calls on a user message', { messages: [{ role: 'user', content: 'x', tool_calls: [CALL] }] },
    'messages.0.tool_calls'],
  ['a call without function.name', { messages: turn({ id: 'c1', type: 'function', function: { arguments: '{}' } }) },
    'messages.1.tool_calls.0'],
  ['a call without an id', { messages: turn({ type: 'function', function: { name: 'f', arguments: '{}' } }) },
    'messages.1.tool_calls.0'],
  ['a call that is a string', { messages: turn('get_weather()') }, 'messages.1.tool_calls.0'],
  ['arguments an object', { messages: turn({ id: 'c1', type: 'function', function: { name: 'f', arguments: { a: 1 } } }) },
    'messages.1.tool_calls.0'],
  ['arguments a number', { messages: turn({ id: 'c1', type: 'function', function: { name: 'f', arguments: 1 } }) },
    'messages.1.tool_calls.0'],
  ['arguments missing', { messages: turn({ id: 'c1', type: 'function', function: { name: 'f' } }) },
    'messages.1.tool_calls.0'],
  ['a result for a call never made', { messages: [...turn(CALL), { role: 'tool', tool_call_id: 'call_zz', content: 'r' }] },
    'messages.2.tool_call_id'],
  ['a result before its call', { messages: [{ role: 'user', content: 'x' },
    { role: 'tool', tool_call_id: 'call_w1', content: 'r' }, { role: 'assistant', content: '', tool_calls: [CALL] }] },
  'messages.1.tool_call_id'],
  ['a tool message without tool_call_id', { messages: [...turn(CALL), { role: 'tool', content: 'r' }] },
    'messages.2.tool_call_id'],
  ['tool_call_id on a user message', { messages: [{ role: 'user', content: 'x', tool_call_id: 'call_w1' }] },
    'messages.0.tool_call_id'],
  ['tool_call_id a number', { messages: [...turn(CALL), { role: 'tool', tool_call_id: 1, content: 'r' }] },
    'messages.2.tool_call_id'],
  ['the legacy functions API', { functions: [WEATHER.function] }, 'functions'],
];

test('OpenAI dialect: each bad tools value is a 400 whose error.param names the field', async () => {
  for (const [what, body, param] of OPENAI_BAD)
    refusedOpenAI(await chat(local, { messages: ASK, max_tokens: 2, ...body }), param, what);
  // Every one of them was refused before the model ran: the server is still fine.
  assert.equal((await chat(local, { messages: ASK, max_tokens: 2 })).status, 200);
});

const OLLAMA_BAD = [
  ['tools not a list', { tools: 'garbage' }, 'tools'],
  ['a tool of type retrieval', { tools: [{ type: 'retrieval', function: { name: 'f' } }] }, 'tools.0.type'],
  ['a tool with no function', { tools: [{ type: 'function' }] }, 'tools.0.function'],
  ['a bad name', { tools: [fn('météo')] }, 'tools.0.function.name'],
  ['two tools with one name', { tools: [WEATHER, WEATHER] }, 'tools.1.function.name'],
  ['parameters not an object', { tools: [fn('f', true)] }, 'tools.0.function.parameters'],
  ['a keyword the engine cannot enforce',
    { tools: [fn('f', { type: 'object', properties: { d: { type: 'string', format: 'hostname' } } })] },
    'tools.0.function.parameters'],
  ['assistant tool_calls a string', { messages: [{ role: 'user', content: 'x' },
    { role: 'assistant', content: '', tool_calls: 'get_weather' }] }, 'messages.1.tool_calls'],
  ['a call without function.name', { messages: [{ role: 'user', content: 'x' },
    { role: 'assistant', content: '', tool_calls: [{ function: { arguments: {} } }] }] }, 'messages.1.tool_calls.0'],
  ['arguments a string', { messages: [{ role: 'user', content: 'x' },
    { role: 'assistant', content: '', tool_calls: [{ function: { name: 'f', arguments: '{"a":1}' } }] }] },
  'messages.1.tool_calls.0'],
  ['arguments a list', { messages: [{ role: 'user', content: 'x' },
    { role: 'assistant', content: '', tool_calls: [{ function: { name: 'f', arguments: [1] } }] }] },
  'messages.1.tool_calls.0'],
  ['a result of a tool never called', { messages: [...OLLAMA_HISTORY.slice(0, 2),
    { role: 'tool', tool_name: 'add', content: '3' }] }, 'messages.2.tool_name'],
  ['tool_name on a user message', { messages: [{ role: 'user', content: 'x', tool_name: 'get_weather' }] },
    'messages.0.tool_name'],
];

test('Ollama dialect: each bad tools value is a 400 whose error starts with the field', async () => {
  for (const [what, body, field] of OLLAMA_BAD)
    refusedOllama(await ochat(local, { messages: ASK, options: { num_predict: 2 }, ...body }), field, what);
});

test('tools with response_format, format or grammar on the built-in engine: 400 naming tools, saying why', async () => {
  const why = /tools: the built-in engine cannot hold an answer to tools and to response_format, format or grammar/;
  for (const rf of [{ type: 'json_object' }, { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' } } }]) {
    const r = await chat(local, { messages: ASK, max_tokens: 4, tools: [WEATHER], response_format: rf });
    refusedOpenAI(r, 'tools', JSON.stringify(rf));
    assert.match(r.json.error.message, why);
  }
  const g = await chat(local, { messages: ASK, max_tokens: 4, tools: [WEATHER], grammar: 'root ::= "a"' });
  refusedOpenAI(g, 'tools', 'grammar');
  for (const format of ['json', { type: 'object' }]) {
    const r = await ochat(local, { messages: ASK, options: { num_predict: 4 }, tools: [WEATHER], format });
    refusedOllama(r, 'tools', JSON.stringify(format));
    assert.match(r.json.error, why);
  }
  // tool_choice none shows the model no tools: the format alone holds, and the answer is JSON.
  const none = await chat(local, { messages: ASK, max_tokens: 40, tools: [WEATHER], tool_choice: 'none',
    response_format: { type: 'json_object' } });
  assert.equal(none.status, 200, none.text);
  JSON.parse(none.json.choices[0].message.content);
});

// ---- 2. hostile shapes ---------------------------------------------------------

const manyTools = (n, description) => Array.from({ length: n }, (_, i) =>
  fn(`t${i}`, { type: 'object', properties: { a: { type: 'integer' } } }, description));

test('128 tools are taken (the prompt is then too long for this model: a 4xx saying so) and 129 refused', async () => {
  const many = await chat(local, { messages: ASK, max_tokens: 4, tools: manyTools(128), tool_choice: 'required' });
  assert.equal(many.status, 422, many.text); // read, rendered and measured: too long for a 2048-token context
  assert.match(many.json.error.message, /the prompt is \d+ tokens; the model's context holds 2048/);
  refusedOpenAI(await chat(local, { messages: ASK, max_tokens: 4, tools: manyTools(129) }), 'tools', '129 tools');
  refusedOllama(await ochat(local, { messages: ASK, tools: manyTools(129) }), 'tools', '129 tools');
  // The limit is the tools' count, not the prompt: 16 small ones fit and give a call.
  const fits = await chat(local, { messages: ASK, max_tokens: 60, temperature: 0, tools: manyTools(16),
    tool_choice: 'required' });
  assert.equal(fits.status, 200, fits.text);
  assert.equal(fits.json.choices[0].finish_reason, 'tool_calls', fits.text);
  checkCall(fits.json.choices[0].message.tool_calls[0], manyTools(16));
});

test('huge descriptions, a 1 MB tool result and thousands of calls in history: a quick 4xx, never a hang', async () => {
  const cases = [
    ['a 5 MB description', { messages: ASK, tools: [fn('big', undefined, 'd'.repeat(5 << 20))] }],
    ['128 tools of 100 kB', { messages: ASK, tools: manyTools(128, 'd'.repeat(100000)) }],
    ['a 1 MB tool result', { messages: [...HISTORY.slice(0, 2), { role: 'tool', tool_call_id: 'call_w1',
      content: 'r'.repeat(1 << 20) }], tools: [WEATHER] }],
    ['10,000 calls in 100 messages', { messages: [ASK[0], ...Array.from({ length: 100 }, (_, i) => ({
      role: 'assistant', content: '', tool_calls: Array.from({ length: 100 }, (_, k) => ({ id: `c${i}_${k}`,
        type: 'function', function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } })) }))], tools: [WEATHER] }],
  ];
  for (const [what, body] of cases) {
    const t0 = Date.now();
    const r = await chat(local, { max_tokens: 4, ...body });
    assert.equal(r.status, 422, `${what}: ${r.text}`);
    assert.match(r.json.error.message, /the prompt is at least \d+ tokens; the model's context holds 2048/, what);
    assert.ok(Date.now() - t0 < 10000, `${what}: ${Date.now() - t0} ms`);
    if (body.messages !== ASK) continue;
    const o = await ochat(local, body);
    assert.equal(o.status, 422, `${what} (Ollama): ${o.text}`);
  }
  // 10,000 calls in one message: past the 128 a message may hold.
  const one = await chat(local, { messages: turn(...Array.from({ length: 10000 }, (_, k) => ({ id: `c${k}`,
    type: 'function', function: { name: 'f', arguments: '{}' } }))), max_tokens: 4 });
  refusedOpenAI(one, 'messages.1.tool_calls', '10,000 calls in one message');
  assert.match(one.json.error.message, /at most 128 calls/);
});

// A history as large as the body limits allow (50,000 objects): 156
// messages of 128 calls and 9,800 results. Finding each result's call is one
// look-up: results that answer the first call cost what results that answer
// the last one do (scanning back from each result took ten times as long).
test('thousands of tool results are matched to their calls, and one that answers no call is named', async () => {
  // 156 assistant turns of 128 calls, then 9,800 results (matched in one
  // pass: a quadratic match took over a second here; speed itself is not
  // asserted, that is for benchmarks).
  const history = (answers, last = answers) => JSON.stringify({ model: MODEL, max_tokens: 1, messages: [ASK[0],
    ...Array.from({ length: 156 }, (_, i) => ({ role: 'assistant', tool_calls: Array.from({ length: 128 },
      (_, k) => ({ id: `${i}.${k}`, type: 'function', function: { name: 'f', arguments: '' } })) })),
    ...Array.from({ length: 9800 }, (_, i) => ({ role: 'tool', tool_call_id: i === 9799 ? last : answers,
      content: '' }))] });
  const post = (body) => req(local, 'POST', '/v1/chat/completions', { body,
    headers: { 'Content-Type': 'application/json' }, timeoutMs: 30000 });
  for (const id of ['155.127', '0.0']) {
    const r = await post(history(id));
    assert.equal(r.status, 422, r.text); // validated, rendered, and too long for this model
  }
  const r = await post(history('0.0', 'nope'));
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error.param, 'messages.9956.tool_call_id');
});

test('a parameters schema nested 60 deep is refused by the body depth limit; 25 deep gives a valid call', async () => {
  const nest = (n) => {
    let s = { type: 'string', maxLength: 3 };
    for (let i = 0; i < n; i++) s = { type: 'object', properties: { x: s }, required: ['x'] };
    return s;
  };
  const deep = await chat(local, { messages: ASK, max_tokens: 4, tools: [fn('deep', nest(60))] });
  assert.equal(deep.status, 400, deep.text);
  assert.match(deep.json.error.message, /JSON nested deeper than 64 levels/);
  const ok = await chat(local, { messages: ASK, max_tokens: 400, temperature: 0, tools: [fn('deep', nest(25))],
    tool_choice: 'required' });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.json.choices[0].finish_reason, 'tool_calls', ok.text);
  let v = checkCall(ok.json.choices[0].message.tool_calls[0], [fn('deep')], 'deep');
  for (let i = 0; i < 25; i++) v = v.x;
  assert.equal(typeof v, 'string');
  assert.ok(v.length <= 3, v);
});

test('unicode: names must be ASCII (400); descriptions, enums, ids and results in any script work', async () => {
  for (const name of ['météo', '天気', 'get_weather\u0000', 'a\u200bb'])
    refusedOpenAI(await chat(local, { messages: ASK, max_tokens: 2, tools: [fn(name)] }), 'tools.0.function.name', name);
  refusedOpenAI(await chat(local, { messages: ASK, max_tokens: 2, tools: [WEATHER], tool_choice: NAMED('天気') }),
    'tool_choice', 'a named tool_choice in another script');
  const CITIES = ['Zürich', '東京', 'Київ', '🌧city'];
  const tool = fn('weather', { type: 'object', properties: { ville: { type: 'string', enum: CITIES } },
    required: ['ville'] }, 'Le temps qu’il fait ☀ 東京 — “quoted” \\ backslash');
  const messages = [{ role: 'user', content: 'Wetter in Zürich? 天気は?' },
    { role: 'assistant', content: 'Je regarde…', tool_calls: [{ id: 'appel_é1', type: 'function',
      function: { name: 'weather', arguments: '{"ville":"東京"}' } }] },
    { role: 'tool', tool_call_id: 'appel_é1', content: '{"ciel":"nuageux ☁","temp":"3 °C"}' },
    { role: 'user', content: 'Et à Київ?' }];
  for (const seed of [1, 2, 3]) {
    const r = await chat(local, { messages, max_tokens: 80, seed, tools: [tool], tool_choice: 'required' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.choices[0].finish_reason, 'tool_calls', r.text);
    const args = checkCall(r.json.choices[0].message.tool_calls[0], [tool], 'weather');
    assert.ok(CITIES.includes(args.ville), JSON.stringify(args));
  }
  const o = await ochat(local, { messages: [{ role: 'user', content: '天気は?' }], tools: [tool],
    options: { num_predict: 80, seed: 4 } });
  assert.equal(o.status, 200, o.text);
});

test('a call cut short by max_tokens is not shown as text, streamed or not', async () => {
  // tool_choice required: the whole answer is the call section; 6 tokens cannot finish a call.
  const body = { messages: ASK, max_tokens: 6, temperature: 0, tools: [WEATHER], tool_choice: 'required' };
  const whole = await chat(local, body);
  assert.equal(whole.status, 200, whole.text);
  const c = whole.json.choices[0];
  assert.equal(c.finish_reason, 'length');
  assert.equal(c.message.tool_calls, undefined, whole.text);
  assert.equal(c.message.content, '', `half a call leaked into the text: ${whole.text}`);
  const streamed = sse((await chat(local, { ...body, stream: true })).text);
  const text = streamed.frames.map((f) => f.choices[0]?.delta?.content || '').join('');
  assert.equal(text, c.message.content, 'the stream and the whole answer agree');
  assert.equal(streamed.frames.at(-1).choices[0].finish_reason, 'length');
});

test('20 requests at once, streamed and not, with every tool_choice: each finishes with a valid answer', async () => {
  const tools = [WEATHER, ADD];
  const CHOICES = ['auto', 'required', 'none', NAMED('add')];
  const one = async (i) => {
    const choice = CHOICES[i % 4];
    const stream = i % 2 === 1;
    const ollama = i % 5 === 4;
    const body = { messages: ASK, max_tokens: 100, seed: i, tools, tool_choice: choice, stream };
    if (ollama) {
      const r = await ochat(local, { messages: ASK, tools, stream, options: { num_predict: 100, seed: i } });
      assert.equal(r.status, 200, r.text);
      const lines = stream ? ndjson(r.text) : [r.json];
      assert.equal(lines.at(-1).done, true, r.text);
      for (const l of lines)
        for (const call of l.message?.tool_calls || []) {
          assert.ok(['get_weather', 'add'].includes(call.function.name), JSON.stringify(call));
          assert.equal(typeof call.function.arguments, 'object');
        }
      return;
    }
    const r = await chat(local, body);
    assert.equal(r.status, 200, `${i}: ${r.text}`);
    let calls;
    let finish;
    if (stream) {
      const s = sse(r.text);
      assert.ok(s.done, `${i}: no [DONE]: ${r.text}`);
      calls = streamedCalls(s.frames);
      finish = s.frames.at(-1).choices[0].finish_reason;
    } else {
      calls = r.json.choices[0].message.tool_calls || [];
      finish = r.json.choices[0].finish_reason;
    }
    if (choice === 'none') assert.equal(calls.length, 0, `${i}: none`);
    if (choice === 'required' || typeof choice === 'object') {
      assert.equal(finish, 'tool_calls', `${i}: ${JSON.stringify(choice)}: ${r.text.slice(0, 500)}`);
      assert.ok(calls.length >= 1, `${i}: no call`);
    }
    calls.forEach((call) => checkCall(call, tools, typeof choice === 'object' ? 'add' : undefined));
    if (calls.length) assert.equal(finish, 'tool_calls', `${i}: calls but ${finish}`);
  };
  await Promise.all(Array.from({ length: 20 }, (_, i) => one(i)));
});

// Read a stream until `until` matches what has arrived, then drop the connection.
async function leaveMidStream(srv, path, body, until) {
  const ac = new AbortController();
  const res = await fetch(srv.url + path, { method: 'POST', signal: ac.signal,
    headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  let got = '';
  while (!until.test(got)) {
    const { value, done } = await reader.read();
    assert.ok(!done, `the stream ended before ${until}: ${got}`);
    got += Buffer.from(value).toString();
  }
  ac.abort();
  return got;
}

test('a client that leaves in the middle of a streamed call: the server stays healthy and answers the next', async () => {
  for (let i = 0; i < 3; i++) {
    await leaveMidStream(local, '/v1/chat/completions', { model: MODEL, messages: ASK, max_tokens: 300,
      tools: [WEATHER, ADD], tool_choice: 'required', stream: true }, /"arguments":"[^"]/);
    await leaveMidStream(local, '/api/chat', { model: MODEL, messages: ASK, tools: [WEATHER],
      options: { num_predict: 300, seed: i } }, /"content"/);
  }
  assert.equal((await req(local, 'GET', '/health')).status, 200);
  const next = await chat(local, { messages: ASK, max_tokens: 60, temperature: 0, tools: [WEATHER],
    tool_choice: 'required' });
  assert.equal(next.status, 200, next.text);
  checkCall(next.json.choices[0].message.tool_calls[0], [WEATHER], 'get_weather');
  assert.equal(local.exited, null);
});

// ---- 2b. an upstream that sends malformed calls ----------------------------

const chunk = (delta, finish = null) => `data: ${JSON.stringify({ id: 'chatcmpl-up', object: 'chat.completion.chunk',
  created: 1, model: 'fake-gpt', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
const piece = (p) => chunk({ tool_calls: [p] });
const head = (index, id, name, args = '') => piece({ index, id, type: 'function', function: { name, arguments: args } });
const END = [chunk({}, 'tool_calls'), 'data: [DONE]\n\n'];
const CITY = '{"city":"Oslo, the capital of Norway"}';

// Ask fake-gpt (the OpenAI-compatible upstream) with a scripted answer, in
// both client dialects, streamed and not. Returns {openai, openaiStream, ollama, ollamaStream}.
async function viaUpstream(parts) {
  const out = {};
  for (const [key, path, stream] of [['openai', '/v1/chat/completions', false], ['openaiStream', '/v1/chat/completions', true],
    ['ollama', '/api/chat', false], ['ollamaStream', '/api/chat', true]]) {
    await upstream.script(parts, 'text/event-stream');
    out[key] = await req(fwd, 'POST', path, { json: { model: 'fake-gpt', messages: ASK, tools: [WEATHER], stream },
      timeoutMs: 10000 });
  }
  return out;
}

test('upstream calls split in 50 pieces arrive whole in both dialects, streamed and not', async () => {
  const parts = [head(0, 'call_up1', 'get_weather'),
    ...Array.from({ length: 50 }, (_, i) => piece({ index: 0, function: {
      arguments: CITY.slice(Math.floor((i * CITY.length) / 50), Math.floor(((i + 1) * CITY.length) / 50)) } })), ...END];
  const r = await viaUpstream(parts);
  const want = { id: 'call_up1', type: 'function', function: { name: 'get_weather', arguments: CITY } };
  assert.deepEqual(r.openai.json.choices[0].message.tool_calls, [want], r.openai.text);
  assert.equal(r.openai.json.choices[0].finish_reason, 'tool_calls');
  const s = sse(r.openaiStream.text);
  assert.ok(s.done);
  assert.deepEqual(streamedCalls(s.frames), [want]);
  assert.equal(s.frames.at(-1).choices[0].finish_reason, 'tool_calls');
  assert.deepEqual(r.ollama.json.message.tool_calls, [{ function: { index: 0, name: 'get_weather',
    arguments: JSON.parse(CITY) } }], r.ollama.text);
  const lines = ndjson(r.ollamaStream.text);
  assert.deepEqual(lines.flatMap((l) => l.message?.tool_calls || []), r.ollama.json.message.tool_calls);
  assert.equal(lines.at(-1).done, true);
});

test('malformed upstream calls: the server does not crash and each client gets something it can use', async () => {
  // Arguments that are not JSON: kept as the model wrote them for OpenAI
  // clients; Ollama's clients need an object and get an empty one.
  let r = await viaUpstream([head(0, 'call_bad', 'get_weather', 'not json{'), ...END]);
  assert.equal(r.openai.json.choices[0].message.tool_calls[0].function.arguments, 'not json{', r.openai.text);
  assert.equal(streamedCalls(sse(r.openaiStream.text).frames)[0].function.arguments, 'not json{');
  assert.deepEqual(r.ollama.json.message.tool_calls[0].function, { index: 0, name: 'get_weather', arguments: {} });
  assert.deepEqual(ndjson(r.ollamaStream.text)[0].message.tool_calls[0].function.arguments, {});

  // A call without a name cannot be answered: left out, the answer is plain.
  r = await viaUpstream([piece({ index: 0, id: 'call_anon', type: 'function', function: { arguments: '{}' } }), ...END]);
  for (const k of ['openai', 'ollama']) assert.equal(r[k].status, 200, r[k].text);
  assert.equal(r.openai.json.choices[0].message.tool_calls, undefined, r.openai.text);
  assert.equal(r.openai.json.choices[0].finish_reason, 'stop');
  assert.equal(streamedCalls(sse(r.openaiStream.text).frames).length, 0);
  assert.equal(r.ollama.json.message.tool_calls, undefined);

  // An index going back: the answer cannot be trusted. 502 before anything
  // was sent; mid-stream an error frame, and the stream ends.
  r = await viaUpstream([head(1, 'call_b', 'get_weather', '{}'), head(0, 'call_a', 'get_weather', '{}'), ...END]);
  for (const k of ['openai', 'ollama', 'ollamaStream']) {
    assert.equal(r[k].status, 502, `${k}: ${r[k].text}`);
    assert.match(r[k].text, /a tool call's index went back/);
  }
  let s = sse(r.openaiStream.text);
  assert.match(s.frames.at(-1).error.message, /a tool call's index went back/);
  assert.equal(s.done, false);

  // The stream ends in the middle of a call: an error, never half a call as an answer.
  r = await viaUpstream([head(0, 'call_cut', 'get_weather', '{"ci')]);
  for (const k of ['openai', 'ollama', 'ollamaStream']) {
    assert.equal(r[k].status, 502, `${k}: ${r[k].text}`);
    assert.match(r[k].text, /stream ended before the answer was complete/);
  }
  s = sse(r.openaiStream.text);
  assert.match(s.frames.at(-1).error.message, /stream ended before the answer was complete/);

  // tool_calls that is not a list, a call that is not an object.
  for (const bad of [chunk({ tool_calls: { 0: {} } }), chunk({ tool_calls: ['get_weather'] })]) {
    r = await viaUpstream([bad, ...END]);
    assert.equal(r.openai.status, 502, r.openai.text);
    assert.match(r.openai.text, /openai sent an invalid response/);
  }
  assert.equal((await req(fwd, 'GET', '/health')).status, 200);
  assert.equal(fwd.exited, null);
});

test('a client that leaves mid-call of a forwarded stream: the server stays healthy', async () => {
  const parts = [head(0, 'call_long', 'get_weather'),
    ...Array.from({ length: 300 }, () => piece({ index: 0, function: { arguments: ' ' } })), ...END];
  await upstream.script(parts, 'text/event-stream');
  await leaveMidStream(fwd, '/v1/chat/completions', { model: 'fake-gpt', messages: ASK, tools: [WEATHER], stream: true },
    /"arguments":" "/);
  // An Ollama client gets each call whole, once it is complete: leave as soon as the answer begins.
  await upstream.script(parts, 'text/event-stream');
  await leaveMidStream(fwd, '/api/chat', { model: 'fake-gpt', messages: ASK, tools: [WEATHER] }, /^/);
  await upstream.script([head(0, 'call_next', 'get_weather', '{"city":"Rome"}'), ...END], 'text/event-stream');
  const next = await req(fwd, 'POST', '/v1/chat/completions', { json: { model: 'fake-gpt', messages: ASK, tools: [WEATHER] },
    timeoutMs: 10000 });
  assert.equal(next.status, 200, next.text);
  assert.equal(next.json.choices[0].message.tool_calls[0].id, 'call_next');
});

// ---- 3. forwarding: every field arrives; answers come back in the client's dialect

test('OpenAI-compatible upstream: tools, each tool_choice, parallel_tool_calls, history, logprobs, logit_bias arrive', async () => {
  const strictTool = { type: 'function', function: { ...WEATHER.function, strict: true } };
  for (const choice of ['none', 'auto', 'required', NAMED('get_weather')]) {
    const r = await req(fwd, 'POST', '/v1/chat/completions', { json: { model: 'fake-gpt', messages: HISTORY,
      tools: [strictTool, ADD], tool_choice: choice, parallel_tool_calls: false, logprobs: true, top_logprobs: 3,
      logit_bias: { 42: -100, 7: 2.5 } } });
    assert.equal(r.status, 200, r.text);
    const b = await upstream.last();
    assert.deepEqual(b.tools, [strictTool, ADD].map((t) => JSON.parse(JSON.stringify(t))));
    assert.deepEqual(b.tool_choice, choice);
    assert.equal(b.parallel_tool_calls, false);
    assert.deepEqual(b.messages, [ASK[0], { role: 'assistant', content: null, tool_calls: [CALL] },
      { role: 'tool', tool_call_id: 'call_w1', content: '{"temperature":3}' }]);
    assert.equal(b.logprobs, true);
    assert.equal(b.top_logprobs, 3);
    assert.deepEqual(b.logit_bias, { 7: 2.5, 42: -100 });
  }
  // The Ollama dialect's history (no ids, arguments as objects, tool_name) in OpenAI's words.
  const o = await ochat(fwd, { model: 'fake-gpt', messages: OLLAMA_HISTORY, tools: [WEATHER], logprobs: true,
    top_logprobs: 2 });
  assert.equal(o.status, 200, o.text);
  const b = await upstream.last();
  const id = b.messages[1].tool_calls[0].id;
  assert.ok(id, JSON.stringify(b.messages[1]));
  assert.deepEqual(b.messages[1].tool_calls, [{ id, type: 'function',
    function: { name: 'get_weather', arguments: '{"city":"Oslo"}' } }]);
  assert.deepEqual(b.messages[2], { role: 'tool', tool_call_id: id, content: '{"temperature":3}' });
  assert.deepEqual(b.tools, [WEATHER]);
  assert.equal(b.logprobs, true);
  assert.equal(b.top_logprobs, 2);
});

test('Ollama upstream: tools, history calls as objects, tool results with tool_name, logprobs, num_ctx arrive', async () => {
  const o = await ochat(fwd, { model: 'fake-llm', messages: OLLAMA_HISTORY, tools: [WEATHER], logprobs: true,
    top_logprobs: 2, options: { num_ctx: 512 } });
  assert.equal(o.status, 200, o.text);
  let b = await upstream.last();
  assert.deepEqual(b.tools, [WEATHER]);
  assert.deepEqual(b.messages, OLLAMA_HISTORY);
  assert.equal(b.logprobs, true);
  assert.equal(b.top_logprobs, 2);
  assert.equal(b.options.num_ctx, 512);
  // From the OpenAI dialect: string arguments become objects, tool_call_id becomes the call's tool_name.
  const r = await req(fwd, 'POST', '/v1/chat/completions', { json: { model: 'fake-llm', messages: HISTORY,
    tools: [WEATHER], tool_choice: 'auto', logprobs: true, top_logprobs: 1 } });
  assert.equal(r.status, 200, r.text);
  b = await upstream.last();
  assert.deepEqual(b.messages, OLLAMA_HISTORY);
  assert.deepEqual(b.tools, [WEATHER]);
  assert.equal(b.top_logprobs, 1);
  // tool_choice none: the model is not shown the tools.
  await req(fwd, 'POST', '/v1/chat/completions', { json: { model: 'fake-llm', messages: ASK, tools: [WEATHER],
    tool_choice: 'none' } });
  assert.equal((await upstream.last()).tools, undefined);
});

test('what Ollama cannot do is a 400 naming the field, and nothing is sent upstream', async () => {
  const strict = { type: 'function', function: { ...WEATHER.function, strict: true } };
  const cases = [
    ['tool_choice', { tools: [WEATHER], tool_choice: 'required' }],
    ['tool_choice', { tools: [WEATHER], tool_choice: NAMED('get_weather') }],
    ['logit_bias', { logit_bias: { 5: 1 } }],
    ['tools.1.function.strict', { tools: [ADD, strict] }],
    ['parallel_tool_calls', { tools: [WEATHER], parallel_tool_calls: false }],
  ];
  for (const [field, extra] of cases) {
    const before = await upstream.requests();
    const r = await req(fwd, 'POST', '/v1/chat/completions', { json: { model: 'fake-llm', messages: ASK, ...extra } });
    refusedOpenAI(r, field, JSON.stringify(extra));
    assert.match(r.json.error.message, /cannot be forwarded/);
    assert.equal(await upstream.requests(), before, `${field}: sent upstream anyway`);
  }
  // The Ollama dialect has strict too (its tools are OpenAI's shape).
  const before = await upstream.requests();
  refusedOllama(await ochat(fwd, { model: 'fake-llm', messages: ASK, tools: [strict] }), 'tools.0.function.strict',
    'strict');
  // A history call whose arguments are not an object cannot be written in Ollama's words.
  refusedOpenAI(await req(fwd, 'POST', '/v1/chat/completions', { json: { model: 'fake-llm', messages: [ASK[0],
    { role: 'assistant', content: null, tool_calls: [{ ...CALL, function: { ...CALL.function, arguments: '[1,2]' } }] }] } }),
  'messages.1.tool_calls.0.function.arguments', 'arguments not an object');
  assert.equal(await upstream.requests(), before);
});

const OPENAI_CALLS = [head(0, 'call_o1', 'get_weather', '{"city":'), piece({ index: 0, function: { arguments: '"Oslo"}' } }),
  head(1, 'call_o2', 'add', '{"a":1,"b":2}'), ...END];
const OLLAMA_CALLS = [
  `${JSON.stringify({ model: 'fake-llm', message: { role: 'assistant', content: '' }, done: false })}\n`,
  `${JSON.stringify({ model: 'fake-llm', message: { role: 'assistant', content: '', tool_calls: [
    { function: { index: 0, name: 'get_weather', arguments: { city: 'Oslo' } } },
    { function: { index: 1, name: 'add', arguments: { a: 1, b: 2 } } }] }, done: false })}\n`,
  `${JSON.stringify({ model: 'fake-llm', message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop',
    prompt_eval_count: 5, eval_count: 7 })}\n`,
];

test('an OpenAI upstream\'s calls become Ollama tool_calls (arguments objects) on /api/chat, streamed and not', async () => {
  const want = [{ function: { index: 0, name: 'get_weather', arguments: { city: 'Oslo' } } },
    { function: { index: 1, name: 'add', arguments: { a: 1, b: 2 } } }];
  await upstream.script(OPENAI_CALLS, 'text/event-stream');
  const whole = await ochat(fwd, { model: 'fake-gpt', messages: ASK, tools: [WEATHER, ADD] });
  assert.equal(whole.status, 200, whole.text);
  assert.deepEqual(whole.json.message.tool_calls, want);
  assert.equal(whole.json.done_reason, 'stop');
  await upstream.script(OPENAI_CALLS, 'text/event-stream');
  const streamed = await ochat(fwd, { model: 'fake-gpt', messages: ASK, tools: [WEATHER, ADD], stream: true });
  const lines = ndjson(streamed.text);
  assert.deepEqual(lines.flatMap((l) => l.message?.tool_calls || []), want);
  assert.equal(lines.at(-1).done, true);
});

test('an Ollama upstream\'s calls become OpenAI tool_calls (string arguments, ids, finish_reason tool_calls)', async () => {
  const check = (calls) => {
    assert.equal(calls.length, 2, JSON.stringify(calls));
    assert.deepEqual(calls.map((c) => [c.type, c.function.name, JSON.parse(c.function.arguments)]),
      [['function', 'get_weather', { city: 'Oslo' }], ['function', 'add', { a: 1, b: 2 }]]);
    for (const c of calls) assert.equal(typeof c.function.arguments, 'string');
    assert.ok(calls.every((c) => /^call_/.test(c.id)) && calls[0].id !== calls[1].id, JSON.stringify(calls));
  };
  await upstream.script(OLLAMA_CALLS, 'application/x-ndjson');
  const whole = await req(fwd, 'POST', '/v1/chat/completions', { json: { model: 'fake-llm', messages: ASK,
    tools: [WEATHER, ADD] } });
  assert.equal(whole.status, 200, whole.text);
  assert.equal(whole.json.choices[0].finish_reason, 'tool_calls');
  assert.equal(whole.json.choices[0].message.content, null);
  check(whole.json.choices[0].message.tool_calls);
  await upstream.script(OLLAMA_CALLS, 'application/x-ndjson');
  const streamed = sse((await req(fwd, 'POST', '/v1/chat/completions', { json: { model: 'fake-llm', messages: ASK,
    tools: [WEATHER, ADD], stream: true } })).text);
  assert.ok(streamed.done);
  check(streamedCalls(streamed.frames));
  assert.equal(streamed.frames.at(-1).choices[0].finish_reason, 'tool_calls');
});

// ---- 4. cache ----------------------------------------------------------------------

test('cache: answers that differ in tools, tool_choice, a past call or a tool result are kept apart', async () => {
  const base = { messages: HISTORY, max_tokens: 60, temperature: 0, tools: [WEATHER, ADD], tool_choice: 'required' };
  const variants = [
    ['base', base],
    ['a tool\'s description', { ...base, tools: [fn('get_weather', WEATHER.function.parameters, 'Weather now'), ADD] }],
    ['a tool\'s parameters', { ...base, tools: [fn('get_weather', { type: 'object', properties: { city: { type: 'string' } } },
      WEATHER.function.description), ADD] }],
    ['one tool fewer', { ...base, tools: [WEATHER] }],
    ['tool_choice auto', { ...base, tool_choice: 'auto' }],
    ['tool_choice named', { ...base, tool_choice: NAMED('add') }],
    ['parallel_tool_calls false', { ...base, parallel_tool_calls: false }],
    ['a past call\'s arguments', { ...base, messages: [HISTORY[0], { ...HISTORY[1], tool_calls: [{ ...CALL,
      function: { ...CALL.function, arguments: '{"city":"Rome"}' } }] }, HISTORY[2]] }],
    ['a tool result', { ...base, messages: [...HISTORY.slice(0, 2), { ...HISTORY[2], content: '{"temperature":30}' }] }],
  ];
  const first = {};
  for (const [what, body] of variants) {
    const r = await chat(cached, body);
    assert.equal(r.status, 200, `${what}: ${r.text}`);
    assert.equal(r.headers.get('x-cache'), 'MISS', `${what} shares a cache entry with an earlier variant`);
    first[what] = r.json;
  }
  const again = await chat(cached, base);
  assert.equal(again.headers.get('x-cache'), 'HIT');
  assert.equal(again.json.choices[0].finish_reason, 'tool_calls', again.text);
  assert.deepEqual(again.json.choices[0].message.tool_calls, first.base.choices[0].message.tool_calls);
  checkCall(again.json.choices[0].message.tool_calls[0], [WEATHER, ADD]);
  // The Ollama dialect: same rules, its own entries.
  const ollama = { messages: OLLAMA_HISTORY, tools: [WEATHER], options: { num_predict: 40, temperature: 0 } };
  const o1 = await ochat(cached, ollama);
  const o2 = await ochat(cached, { ...ollama, messages: [...OLLAMA_HISTORY.slice(0, 2),
    { ...OLLAMA_HISTORY[2], content: 'rain' }] });
  const o3 = await ochat(cached, ollama);
  assert.deepEqual([o1, o2, o3].map((r) => r.headers.get('x-cache')), ['MISS', 'MISS', 'HIT']);
  assert.deepEqual(o3.json.message, o1.json.message);
});
