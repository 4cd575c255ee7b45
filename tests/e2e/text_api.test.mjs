// text_api.test.mjs - Simpleton's own text routes: SSE token streaming,
// caching (memory and a real redis-server), validation of bad input.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startServer, startRedis, startFakeUpstream, req, KEY } from '../integration/lib.mjs';

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.stop(); });

const gen = (body, headers = {}) => req(srv, 'POST', '/inference/generate', { json: body, headers });

test('generate and chat: fields as API.md lists them', async () => {
  const g = await gen({ prompt: 'Once upon a time', temperature: 0, max_tokens: 16 });
  assert.equal(g.status, 200, g.text);
  for (const k of ['model', 'response', 'done', 'context', 'total_duration', 'load_duration', 'prompt_eval_count',
    'eval_count', 'eval_duration']) assert.ok(k in g.json, k);
  assert.equal(g.json.model, 'stories260K');
  assert.equal(g.json.eval_count, 16);
  const c = await req(srv, 'POST', '/inference/chat', { json: { messages: [{ role: 'user', content: 'Hi' }],
    temperature: 0, max_tokens: 8 } });
  assert.equal(c.status, 200, c.text);
  assert.equal(c.json.message.role, 'assistant');
  for (const k of ['model', 'done', 'total_duration', 'prompt_eval_count', 'eval_count']) assert.ok(k in c.json, k);
});

test('streaming: SSE frames arrive one token at a time, then a done frame with stats', async () => {
  const res = await fetch(srv.url + '/inference/generate', {
    method: 'POST', headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once upon a time', temperature: 0, max_tokens: 20, stream: true }),
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /text\/event-stream/);
  const frames = [];
  let pending = '', reads = 0;
  const dec = new TextDecoder();
  for await (const chunk of res.body) {
    reads++;
    pending += dec.decode(chunk, { stream: true });
    let i;
    while ((i = pending.indexOf('\n\n')) >= 0) {
      const f = pending.slice(0, i);
      pending = pending.slice(i + 2);
      assert.match(f, /^data: /);
      frames.push(JSON.parse(f.slice(6)));
    }
  }
  const last = frames.pop();
  assert.equal(last.done, true);
  assert.equal(last.eval_count, 20);
  assert.equal(frames.length, 20);
  assert.ok(frames.every((f) => f.done === false && typeof f.response === 'string' && f.model === 'stories260K'));
  const full = (await gen({ prompt: 'Once upon a time', temperature: 0, max_tokens: 20 }, { 'Cache-Control': 'no-cache' })).json;
  assert.equal(frames.map((f) => f.response).join(''), full.response);
});

// For every row of TEXTGEN_KEY_FIELDS (the table the generate/chat cache key
// is built from), body changes that must each give another key. A row with
// no entry here fails the test below.
const SAMPLING_CHANGES = {
  temperature: [{ temperature: 0.6 }],
  top_p: [{ top_p: 0.9 }],
  top_k: [{ top_k: 5 }],
  min_p: [{ min_p: 0.2 }],
  repeat_penalty: [{ repeat_penalty: 1.3 }],
  presence_penalty: [{ presence_penalty: 0.5 }],
  frequency_penalty: [{ frequency_penalty: 0.5 }],
  seed: [{ seed: 8 }, { seed: undefined }],
  max_tokens: [{ max_tokens: 11 }],
  stop: [{ stop: ['x'] }],
};
const GENERATE_CHANGES = {
  model: [{ model: 'stories260K.gguf' }],
  prompt: [{ prompt: 'The cat' }],
  system: [{ system: 's' }],
  raw: [{ raw: true }],
  context: [{ context: [1, 2] }],
  ...SAMPLING_CHANGES,
};
const CHAT_CHANGES = {
  messages: [{ messages: [{ role: 'user', content: 'Hello' }] }, { messages: [{ role: 'assistant', content: 'Hi' }] },
    { messages: [{ role: 'system', content: 'Be kind' }, { role: 'user', content: 'Hi' }] }],
  ...SAMPLING_CHANGES,
};
// Structured output, log probabilities and logit_bias come from the OpenAI
// and Ollama dialects (below); in order, each change differs from the ones
// before it in its own field.
const TOOL_A = { type: 'function', function: { name: 'a', parameters: { type: 'object', properties: { x: { type: 'integer' } } } } };
const TOOL_B = { type: 'function', function: { name: 'b' } };
const FORMAT_CHANGES = {
  logprobs: [{ logprobs: true }],
  top_logprobs: [{ logprobs: true, top_logprobs: 2 }],
  logit_bias: [{ logit_bias: { 5: -100 } }, { logit_bias: { 5: -50 } }, { logit_bias: { 6: -50 } }],
  grammar: [{ grammar: 'root ::= "a" | "b"' }],
  json_object: [{ response_format: { type: 'json_object' } }],
  json_schema: [
    { response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'object' } } } },
    { response_format: { type: 'json_schema', json_schema: { name: 'a', schema: { type: 'object', properties: { a: { type: 'integer' } } } } } },
  ],
  // Tool calling: the tools shown, the choice, and parallel calls.
  tools: [{ tools: [TOOL_A] }, { tools: [TOOL_A, TOOL_B] },
    { tools: [{ ...TOOL_A, function: { ...TOOL_A.function, description: 'other' } }] }],
  tool_choice: [{ tools: [TOOL_A], tool_choice: 'none' }, { tools: [TOOL_A], tool_choice: 'required' }],
  tool_choice_name: [{ tools: [TOOL_A, TOOL_B], tool_choice: { type: 'function', function: { name: 'b' } } }],
  parallel_tool_calls: [{ tools: [TOOL_A], parallel_tool_calls: false }],
};
// Ollama's options that have no field in the other dialects (asked on /api/generate).
const OPTIONS_CHANGES = {
  num_ctx: [{ num_ctx: 200 }, { num_ctx: 100 }],
};
const keyFields = () => {
  const h = readFileSync('src/api/textgen.h', 'utf8');
  const block = h.slice(h.indexOf('#define TEXTGEN_KEY_FIELDS(X)')).split('\n');
  const rows = [];
  for (const line of block.slice(1)) {
    const m = line.match(/X\((\w+), \w+\)/);
    if (m) rows.push(m[1]);
    if (!line.trimEnd().endsWith('\\')) break;
  }
  return rows;
};

test('cache: every field the key is built from has a change that misses, on generate and chat', async () => {
  const rows = keyFields();
  assert.ok(rows.length >= 16 && rows.includes('min_p'), JSON.stringify(rows));
  for (const f of rows)
    assert.ok(f in GENERATE_CHANGES || f in CHAT_CHANGES || f in FORMAT_CHANGES || f in OPTIONS_CHANGES,
      `no body change for key field '${f}'`);
  const body = { prompt: 'The fox', temperature: 0.5, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.1,
    presence_penalty: 0.1, frequency_penalty: 0.1, max_tokens: 6, seed: 7 };
  const chat = { messages: [{ role: 'user', content: 'Hi' }], temperature: 0.5, top_k: 40, top_p: 0.95, min_p: 0.05,
    repeat_penalty: 1.1, presence_penalty: 0.1, frequency_penalty: 0.1, max_tokens: 6, seed: 7 };
  for (const [p, base, changes] of [['/inference/generate', body, GENERATE_CHANGES], ['/inference/chat', chat, CHAT_CHANGES]]) {
    const post = (b) => req(srv, 'POST', p, { json: b });
    assert.equal((await post(base)).headers.get('x-cache'), 'MISS', p);
    assert.equal((await post(base)).headers.get('x-cache'), 'HIT', p);
    for (const [field, list] of Object.entries(changes))
      for (const change of list) {
        const r = await post({ ...base, ...change });
        assert.equal(r.status, 200, `${p} ${JSON.stringify(change)}: ${r.text}`);
        assert.equal(r.headers.get('x-cache'), 'MISS', `${p}: changing ${field} ${JSON.stringify(change)} hit the cache`);
      }
  }
});

test('cache: Ollama options with no other dialect\'s field are in the key (each change misses)', async () => {
  const base = { model: 'stories260K', prompt: 'The fox', stream: false, options: { temperature: 0, num_predict: 6 } };
  const post = (options) => req(srv, 'POST', '/api/generate', { json: { ...base, options: { ...base.options, ...options } } });
  assert.equal((await post({})).headers.get('x-cache'), 'MISS');
  assert.equal((await post({})).headers.get('x-cache'), 'HIT');
  for (const [field, list] of Object.entries(OPTIONS_CHANGES))
    for (const change of list) {
      const r = await post(change);
      assert.equal(r.status, 200, `${JSON.stringify(change)}: ${r.text}`);
      assert.equal(r.headers.get('x-cache'), 'MISS', `changing options.${field} ${JSON.stringify(change)} hit the cache`);
    }
});

test('cache: structured output is in the key (every response_format change misses)', async () => {
  const base = { model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, seed: 7, temperature: 0 };
  const post = (b) => req(srv, 'POST', '/v1/chat/completions', { json: b });
  assert.equal((await post(base)).headers.get('x-cache'), 'MISS');
  assert.equal((await post(base)).headers.get('x-cache'), 'HIT');
  for (const [field, list] of Object.entries(FORMAT_CHANGES))
    for (const change of list) {
      const r = await post({ ...base, ...change });
      assert.equal(r.status, 200, `${JSON.stringify(change)}: ${r.text}`);
      assert.equal(r.headers.get('x-cache'), 'MISS', `changing ${field} ${JSON.stringify(change)} hit the cache`);
    }
});

test('cache: a sampled answer (temperature > 0, no seed) is drawn anew each time unless CACHE_SAMPLED', async () => {
  const body = { prompt: 'The dog', temperature: 0.9, max_tokens: 12 };
  const texts = new Set();
  for (let i = 0; i < 4; i++) {
    const r = await req(srv, 'POST', '/inference/generate', { json: body });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('x-cache'), 'MISS', `ask ${i}`);
    texts.add(r.json.response);
  }
  assert.ok(texts.size > 1, 'four draws at temperature 0.9 gave one text');
  // With a seed the answer is fixed, so it is cached.
  const seeded = { ...body, seed: 5 };
  assert.equal((await req(srv, 'POST', '/inference/generate', { json: seeded })).headers.get('x-cache'), 'MISS');
  assert.equal((await req(srv, 'POST', '/inference/generate', { json: seeded })).headers.get('x-cache'), 'HIT');
  const s = await startServer({ CACHE_SAMPLED: 'true' });
  try {
    assert.equal((await req(s, 'POST', '/inference/generate', { json: body })).headers.get('x-cache'), 'MISS');
    assert.equal((await req(s, 'POST', '/inference/generate', { json: body })).headers.get('x-cache'), 'HIT');
  } finally {
    await s.stop();
  }
});

test('cache: chat images are in the key (another image, or none, misses)', async () => {
  const fake = await startFakeUpstream();
  const s = await startServer({ OLLAMA_BASE_URL: fake.url, MODEL_BACKENDS: 'llava=ollama' });
  try {
    const png = (f) => readFileSync(`../shared/images/${f}`).toString('base64');
    const ask = (images) => req(s, 'POST', '/inference/chat', { json: { model: 'llava',
      messages: [{ role: 'user', content: 'What is this?', ...(images && { images }) }], temperature: 0 } });
    const first = await ask([png('sign.png')]);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get('x-cache'), 'MISS');
    assert.equal((await ask([png('sign.png')])).headers.get('x-cache'), 'HIT');
    for (const images of [[png('tiny-gradient.png')], [png('sign.png'), png('sign.png')], null]) {
      const r = await ask(images);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-cache'), 'MISS', `images: ${images ? images.length : 'none'}`);
    }
  } finally {
    await s.stop();
    fake.stop();
  }
});

test('cache: identical request hits with the same body; any change misses; no-cache bypasses', async () => {
  const body = { prompt: 'The dog', temperature: 0.5, max_tokens: 10, seed: 7 };
  const a = await gen(body);
  assert.equal(a.headers.get('x-cache'), 'MISS');
  const b = await gen(body);
  assert.equal(b.headers.get('x-cache'), 'HIT');
  assert.equal(b.text, a.text);
  for (const change of Object.values(GENERATE_CHANGES).flat())
    assert.equal((await gen({ ...body, ...change })).headers.get('x-cache'), 'MISS', JSON.stringify(change));
  assert.equal((await gen(body, { 'Cache-Control': 'no-cache' })).headers.get('x-cache'), null);
  // Streaming is never served from or written to the cache.
  const s = await fetch(srv.url + '/inference/generate', { method: 'POST',
    headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' }, body: JSON.stringify({ ...body, stream: true }) });
  assert.equal(s.headers.get('x-cache'), null);
  await s.text();
  // Chat is cached under its own type.
  const chat = { messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 5 };
  assert.equal((await req(srv, 'POST', '/inference/chat', { json: chat })).headers.get('x-cache'), 'MISS');
  assert.equal((await req(srv, 'POST', '/inference/chat', { json: chat })).headers.get('x-cache'), 'HIT');
  const st = (await req(srv, 'GET', '/analytics/cache')).json.cache;
  assert.ok(st.hits >= 2 && st.total_keys >= 3);
});

test('embeddings: partial batch hit computes only the misses', async () => {
  const e1 = await req(srv, 'POST', '/embeddings/', { json: { input: ['alpha', 'beta'] } });
  assert.equal(e1.status, 200, e1.text);
  assert.equal(e1.headers.get('x-cache'), 'MISS');
  assert.equal(e1.json.embeddings.length, 2);
  const e2 = await req(srv, 'POST', '/embeddings', { json: { input: 'alpha' } });
  assert.equal(e2.headers.get('x-cache'), 'HIT');
  assert.deepEqual(e2.json.embeddings[0], e1.json.embeddings[0]);
  const tokens = (t) => Number((t.match(/simpleton_llm_tokens_total\{model="stories260K",token_type="prompt"\} (\S+)/) || [])[1] || 0);
  const before = (await req(srv, 'GET', '/metrics', { key: null })).text;
  await req(srv, 'POST', '/embeddings/', { json: { input: 'gamma' }, headers: { 'Cache-Control': 'no-cache' } });
  const m0 = (await req(srv, 'GET', '/metrics', { key: null })).text;
  const gammaTokens = tokens(m0) - tokens(before);
  const e3 = await req(srv, 'POST', '/embeddings/batch', { json: ['beta', 'gamma'] });
  assert.equal(e3.headers.get('x-cache'), 'MISS');
  assert.deepEqual(e3.json.embeddings[0], e1.json.embeddings[1]);
  const m1 = (await req(srv, 'GET', '/metrics', { key: null })).text;
  // Only "gamma" was embedded, not "beta" again.
  assert.ok(gammaTokens > 0);
  assert.equal(tokens(m1) - tokens(m0), gammaTokens);
  assert.equal((await req(srv, 'POST', '/embeddings/batch', { json: ['beta', 'gamma'] })).headers.get('x-cache'), 'HIT');
});

test('metrics: LLM requests and tokens are counted per model and endpoint', async () => {
  await gen({ prompt: 'Once', max_tokens: 3 }, { 'Cache-Control': 'no-cache' });
  const t = (await req(srv, 'GET', '/metrics', { key: null })).text;
  assert.match(t, /simpleton_llm_requests_total\{model="stories260K",endpoint="\/inference\/generate"\} [1-9]/);
  assert.match(t, /simpleton_llm_tokens_total\{model="stories260K",token_type="completion"\} [1-9]/);
  assert.match(t, /simpleton_llm_time_to_first_token_seconds_count\{model="stories260K"\} [1-9]/);
});

test('bad input: documented 4xx, never a 5xx', async () => {
  const cases = [
    ['/inference/generate', { prompt: '' }, 422, 'prompt'],
    ['/inference/generate', {}, 422, 'prompt'],
    ['/inference/generate', { prompt: 5 }, 422, 'prompt'],
    ['/inference/generate', { prompt: 'x', temperature: 3 }, 422, 'temperature'],
    ['/inference/generate', { prompt: 'x', max_tokens: 0 }, 422, 'max_tokens'],
    ['/inference/generate', { prompt: 'x', top_p: 1.5 }, 422, 'top_p'],
    ['/inference/generate', { prompt: 'x', stream: 'yes' }, 422, 'stream'],
    ['/inference/generate', { prompt: 'x', context: ['a'] }, 422, 'context'],
    ['/inference/chat', { messages: 'hello' }, 422, 'messages'],
    ['/inference/chat', { messages: [] }, 422, 'messages'],
    ['/inference/chat', { messages: [{ role: 'wizard', content: 'x' }] }, 422, 'messages.0.role'],
    ['/inference/chat', { messages: [{ role: 'user' }] }, 422, 'messages.0.content'],
    ['/embeddings/', { input: [] }, 422, 'input'],
    ['/embeddings/', { input: [1, 2] }, 422, 'input.0'],
  ];
  for (const [path, body, status, field] of cases) {
    const r = await req(srv, 'POST', path, { json: body });
    assert.equal(r.status, status, `${path} ${JSON.stringify(body)}: ${r.text}`);
    assert.ok(r.json.detail.some((d) => d.loc.join('.') === `body.${field}`), `${JSON.stringify(body)}: ${r.text}`);
  }
});

test('bad input: unknown model lists what exists; prompt longer than the context names the limit', async () => {
  const r = await gen({ prompt: 'x', model: 'qwen9:404b' });
  assert.equal(r.status, 404);
  assert.match(r.json.detail, /qwen9:404b/);
  assert.match(r.json.detail, /stories260K/);
  const long = await gen({ prompt: 'the dog ran and '.repeat(400), max_tokens: 5 });
  assert.equal(long.status, 422, long.text);
  assert.match(long.json.detail, /context/);
  assert.match(long.json.detail, /holds \d+/);
});

test('bad input: malformed JSON names line and column; invalid UTF-8 is refused', async () => {
  const r = await req(srv, 'POST', '/inference/generate', { body: '{\n  "prompt": "x",\n  "max_tokens": }',
    headers: { 'Content-Type': 'application/json' } });
  assert.equal(r.status, 422);
  assert.equal(r.json.detail[0].type, 'json_invalid');
  assert.match(r.json.detail[0].msg, /line 3 column/);
  const bad = Buffer.concat([Buffer.from('{"prompt": "caf'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
  const u = await req(srv, 'POST', '/inference/generate', { body: bad, headers: { 'Content-Type': 'application/json' } });
  assert.equal(u.status, 422);
  assert.match(u.json.detail[0].msg, /UTF-8|unicode|invalid/i);
  const o = await req(srv, 'POST', '/v1/chat/completions', { body: '{"model": ', headers: { 'Content-Type': 'application/json' } });
  assert.equal(o.status, 400);
  assert.equal(typeof o.json.error.message, 'string');
  // A field error names the field in OpenAI's "param".
  const t = await req(srv, 'POST', '/v1/chat/completions', { json: { messages: [{ role: 'user', content: 'x' }], temperature: 3 } });
  assert.equal(t.status, 400);
  assert.equal(t.json.error.param, 'temperature');
  assert.equal(t.json.error.type, 'invalid_request_error');
});

test('redis cache: hits across two Simpleton processes sharing one Redis', async () => {
  const redis = await startRedis();
  const a = await startServer({ REDIS_URL: redis.url });
  const b = await startServer({ REDIS_URL: redis.url });
  try {
    const body = { json: { prompt: 'A cat', temperature: 0, max_tokens: 6 } };
    const r1 = await req(a, 'POST', '/inference/generate', body);
    assert.equal(r1.headers.get('x-cache'), 'MISS');
    const r2 = await req(b, 'POST', '/inference/generate', body);
    assert.equal(r2.headers.get('x-cache'), 'HIT');
    assert.equal(r2.text, r1.text);
    assert.match(redis.cli('KEYS', 'simpleton:inference:*'), /^simpleton:inference:[0-9a-f]{64}$/);
    // Errors are never cached.
    assert.equal((await req(a, 'POST', '/inference/generate', { json: { prompt: 'x', model: 'nope' } })).status, 404);
    assert.equal(redis.cli('DBSIZE'), '1');
  } finally {
    await a.stop();
    await b.stop();
    await redis.cleanup();
  }
});
