// structured.test.mjs - structured output (issue 14) through the official
// clients: OpenAI's response_format (json_schema and json_object) and
// Ollama's format, on the built-in stories260K model, whose answers are
// constrained by the engine's grammar; every answer that finished is checked
// against its schema with ajv. Then the same fields through the forwarding
// path: a fake upstream records what it receives.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import Ajv from 'ajv';
import { startServer, startFakeUpstream, req, KEY } from '../integration/lib.mjs';

const MODEL = 'stories260K';
const ajv = new Ajv({ allErrors: true, strict: false });
const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 24 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    pet: { enum: ['cat', 'dog', 'bird'] },
    tags: { type: 'array', items: { type: 'string', maxLength: 12 }, maxItems: 3 },
    alive: { type: 'boolean' },
  },
  required: ['name', 'age', 'pet', 'tags', 'alive'],
  additionalProperties: false,
};
let srv, openai, ollama;

before(async () => {
  srv = await startServer({ CACHE_ENABLED: 'false' });
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
  ollama = new Ollama({ host: srv.url, headers: { 'X-API-Key': KEY } });
});
after(async () => { await srv.stop(); });

const valid = (schema, text) => {
  const v = ajv.compile(schema);
  const doc = JSON.parse(text);
  assert.ok(v(doc), `${text}: ${JSON.stringify(v.errors)}`);
  return doc;
};

test('openai json_schema: every answer validates, at several seeds and temperatures', async () => {
  for (const [seed, temperature] of [[1, 0], [2, 0.8], [3, 1.5], [4, 1], [5, 0.3]]) {
    const r = await openai.chat.completions.create({
      model: MODEL, seed, temperature, max_tokens: 200,
      messages: [{ role: 'user', content: 'Describe a person.' }],
      response_format: { type: 'json_schema', json_schema: { name: 'person', strict: true, schema: PERSON } },
    });
    const c = r.choices[0];
    assert.equal(c.finish_reason, 'stop', `seed ${seed}: ${c.message.content}`);
    valid(PERSON, c.message.content);
  }
});

test('openai json_schema streamed: the deltas join into a valid document', async () => {
  const stream = await openai.chat.completions.create({
    model: MODEL, seed: 9, temperature: 0.7, max_tokens: 200, stream: true,
    messages: [{ role: 'user', content: 'Describe a person.' }],
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON } },
  });
  let text = '';
  let finish = null;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content || '';
    finish = chunk.choices[0]?.finish_reason || finish;
  }
  assert.equal(finish, 'stop');
  valid(PERSON, text);
});

test('ollama format: a schema on chat and generate, and "json"', async () => {
  const r = await ollama.chat({ model: MODEL, format: PERSON, options: { seed: 4, temperature: 0.5, num_predict: 200 },
    messages: [{ role: 'user', content: 'Describe a person.' }] });
  assert.equal(r.done_reason, 'stop', r.message.content);
  valid(PERSON, r.message.content);
  const small = { type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'] };
  const g = await ollama.generate({ model: MODEL, prompt: 'Once', format: small, options: { seed: 2, num_predict: 50 } });
  assert.equal(g.done_reason, 'stop', g.response);
  valid(small, g.response);
  // "json": any object. The story model never chooses to close its object
  // (it writes pairs until max tokens); the engine closes it in time.
  const j = await ollama.generate({ model: MODEL, prompt: 'Once', format: 'json', options: { seed: 1, num_predict: 60 } });
  assert.equal(j.done_reason, 'stop', j.response);
  assert.equal(typeof JSON.parse(j.response), 'object', j.response);
});

test('a small max_tokens still gives a complete document: the engine closes it in time', async () => {
  const STORY = {
    type: 'object',
    properties: { title: { type: 'string' }, story: { type: 'string' }, tags: { type: 'array', items: { type: 'string' } } },
    required: ['title', 'story'],
  };
  for (const [seed, temperature, max_tokens] of [[1, 0, 16], [2, 0.8, 25], [3, 1.5, 40], [4, 1, 60], [5, 0.3, 30]]) {
    const messages = [{ role: 'user', content: 'Tell me a story.' }];
    const o = await openai.chat.completions.create({ model: MODEL, seed, temperature, max_tokens, messages,
      response_format: { type: 'json_object' } });
    const oc = o.choices[0];
    assert.equal(oc.finish_reason, 'stop', `json_object, max_tokens ${max_tokens}: ${oc.message.content}`);
    assert.equal(typeof JSON.parse(oc.message.content), 'object', oc.message.content);
    assert.ok(o.usage.completion_tokens <= max_tokens);
    const s = await openai.chat.completions.create({ model: MODEL, seed, temperature, max_tokens: max_tokens + 10, messages,
      response_format: { type: 'json_schema', json_schema: { name: 'story', schema: STORY } } });
    const sc = s.choices[0];
    assert.equal(sc.finish_reason, 'stop', `json_schema, max_tokens ${max_tokens + 10}: ${sc.message.content}`);
    valid(STORY, sc.message.content);
  }
});

test('a schema the engine cannot enforce, or a bad response_format, is a 400 naming it', async () => {
  const cases = [
    [{ type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', properties: { n: { type: 'number', multipleOf: 3 } } } } }, /multipleOf/],
    [{ type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', patternProperties: { a: {} } } } }, /patternProperties/],
    [{ type: 'json_schema', json_schema: { name: 'x' } }, /schema/],
    [{ type: 'xml' }, /'xml' is not one of/],
    ['json', /response_format should be an object/],
  ];
  for (const [rf, re] of cases) {
    const r = await req(srv, 'POST', '/v1/chat/completions', { json: { model: MODEL, messages: [{ role: 'user', content: 'hi' }], response_format: rf } });
    assert.equal(r.status, 400, JSON.stringify(rf));
    assert.equal(r.json.error.param, 'response_format');
    assert.match(r.json.error.message, re);
  }
  const o = await req(srv, 'POST', '/api/chat', { json: { model: MODEL, stream: false, messages: [{ role: 'user', content: 'hi' }],
    format: { type: 'object', properties: { n: { type: 'number', multipleOf: 3 } } } } });
  assert.equal(o.status, 400);
  assert.match(o.json.error, /format: .*multipleOf/);
  const y = await req(srv, 'POST', '/api/generate', { json: { model: MODEL, prompt: 'x', stream: false, format: 'yaml' } });
  assert.equal(y.status, 400);
  assert.match(y.json.error, /format/);
});

test('forwarding: response_format and format reach the upstream in its own dialect', async () => {
  const fake = await startFakeUpstream();
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url, OPENAI_BASE_URL: `${fake.url}/v1`,
    MODEL_BACKENDS: 'up-ollama=ollama,up-openai=openai', CACHE_ENABLED: 'false' });
  const last = async () => (await fetch(`${fake.url}/__last`)).json();
  try {
    const schema = { type: 'object', properties: { a: { type: 'integer' } }, required: ['a'] };
    // OpenAI client -> Ollama upstream: response_format becomes format.
    let r = await req(gw, 'POST', '/v1/chat/completions', { json: { model: 'up-ollama', messages: [{ role: 'user', content: 'hi' }],
      response_format: { type: 'json_schema', json_schema: { name: 's', schema } } } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual((await last()).body.format, schema);
    // Ollama client -> OpenAI upstream: format becomes response_format.
    r = await req(gw, 'POST', '/api/chat', { json: { model: 'up-openai', stream: false, messages: [{ role: 'user', content: 'hi' }], format: schema } });
    assert.equal(r.status, 200, r.text);
    const rf = (await last()).body.response_format;
    assert.equal(rf.type, 'json_schema');
    assert.deepEqual(rf.json_schema.schema, schema);
    r = await req(gw, 'POST', '/api/chat', { json: { model: 'up-openai', stream: false, messages: [{ role: 'user', content: 'hi' }], format: 'json' } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual((await last()).body.response_format, { type: 'json_object' });
    r = await req(gw, 'POST', '/v1/chat/completions', { json: { model: 'up-ollama', messages: [{ role: 'user', content: 'hi' }],
      response_format: { type: 'json_object' } } });
    assert.equal((await last()).body.format, 'json');
  } finally {
    await gw.stop();
    fake.stop();
  }
});

test('grammar (GBNF, as llama.cpp takes it): honoured locally, a bad one is a 400 with its place, forwarded or refused per upstream', async () => {
  const g = 'root ::= "The answer is " ("yes" | "no") "."';
  for (const seed of [1, 2, 3]) {
    const r = await openai.completions.create({ model: MODEL, prompt: 'Is it?', max_tokens: 20, seed, temperature: 1,
      grammar: g });
    assert.match(r.choices[0].text, /^The answer is (yes|no)\.$/);
    assert.equal(r.choices[0].finish_reason, 'stop');
  }
  const c = await openai.chat.completions.create({ model: MODEL, max_tokens: 20, seed: 4,
    messages: [{ role: 'user', content: 'Is it?' }], grammar: g });
  assert.match(c.choices[0].message.content, /^The answer is (yes|no)\.$/);
  let r = await req(srv, 'POST', '/v1/completions', { json: { model: MODEL, prompt: 'x', grammar: 'root ::= "a" (' } });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.param, 'grammar');
  assert.match(r.json.error.message, /line 1, column \d+/);
  r = await req(srv, 'POST', '/v1/completions', { json: { model: MODEL, prompt: 'x', grammar: g, response_format: { type: 'json_object' } } });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /cannot be used together/);
  const fake = await startFakeUpstream();
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url, OPENAI_BASE_URL: `${fake.url}/v1`,
    MODEL_BACKENDS: 'up-ollama=ollama,up-openai=openai', CACHE_ENABLED: 'false' });
  try {
    r = await req(gw, 'POST', '/v1/completions', { json: { model: 'up-openai', prompt: 'x', grammar: g } });
    assert.equal(r.status, 200, r.text);
    assert.equal((await (await fetch(`${fake.url}/__last`)).json()).body.grammar, g);
    r = await req(gw, 'POST', '/v1/completions', { json: { model: 'up-ollama', prompt: 'x', grammar: g } });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error.message, /Ollama takes no GBNF grammar/);
  } finally {
    await gw.stop();
    fake.stop();
  }
});
