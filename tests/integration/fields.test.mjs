// fields.test.mjs - no request field is silently ignored (issue 14): every
// route refuses the fields it cannot honour with 400 (422 on Simpleton's
// routes) naming the field, accepts the ones that are honoured or truly have
// no effect, and forwards the honoured ones to upstreams (checked on the fake
// upstream's /__last).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeUpstream, req } from './lib.mjs';

let s;
before(async () => { s = await startServer({ CACHE_ENABLED: 'false' }); });
after(async () => { await s.stop(); });

const M = 'stories260K';
const user = [{ role: 'user', content: 'Hi' }];

// How each dialect names the refused field.
const openaiNames = (r, f) => r.status === 400 && r.json?.error?.param === f && r.json.error.message.includes(f);
const ollamaNames = (r, f) => r.status === 400 && typeof r.json?.error === 'string' && r.json.error.startsWith(`${f}: `);
const simpletonNames = (r, f) => r.status === 422 && r.json?.detail?.some?.((d) => d.loc.join('.') === `body.${f}`);

const ROUTES = {
  '/v1/chat/completions': { base: { model: M, messages: user, max_tokens: 3 }, names: openaiNames },
  '/v1/completions': { base: { model: M, prompt: 'Once', max_tokens: 3 }, names: openaiNames },
  '/v1/embeddings': { base: { model: M, input: 'a cat' }, names: openaiNames },
  '/api/generate': { base: { model: M, prompt: 'Once', stream: false, options: { num_predict: 3 } }, names: ollamaNames },
  '/api/chat': { base: { model: M, messages: user, stream: false, options: { num_predict: 3 } }, names: ollamaNames },
  '/api/embed': { base: { model: M, input: 'a cat' }, names: ollamaNames },
  '/api/embeddings': { base: { model: M, prompt: 'a cat' }, names: ollamaNames },
  '/inference/generate': { base: { model: M, prompt: 'Once', max_tokens: 3 }, names: simpletonNames },
  '/inference/chat': { base: { model: M, messages: user, max_tokens: 3 }, names: simpletonNames },
  '/embeddings/': { base: { model: M, input: 'a cat' }, names: simpletonNames },
};

const tool = { type: 'function', function: { name: 'f', parameters: { type: 'object', properties: {} } } };
const schema = { type: 'object', properties: { a: { type: 'string' } } };
const withOptions = (route, extra) => ({ ...ROUTES[route].base, options: { ...ROUTES[route].base.options, ...extra } });
const withMessage = (route, extra) => ({ ...ROUTES[route].base, messages: [{ role: 'user', content: 'Hi', ...extra }] });

// [route, field the error must name, body]
const REFUSED = [];
const top = (route, fields) => {
  for (const [f, v] of Object.entries(fields)) REFUSED.push([route, f, { ...ROUTES[route].base, [f]: v }]);
};
top('/v1/chat/completions', {
  tools: [tool], tool_choice: 'required', parallel_tool_calls: true, functions: [tool.function], function_call: 'auto2',
  top_logprobs: 2 /* without logprobs: true */,
  logit_bias: { x: -100 }, n: 2, audio: { voice: 'alloy', format: 'wav' }, modalities: ['text', 'audio'],
  prediction: { type: 'content', content: 'x' }, reasoning_effort: 'low', store: true, web_search_options: {},
  verbosity: 'low', service_tier: 'flex', frobnicate: 1,
});
top('/v1/completions', { echo: true, suffix: 'end', best_of: 2, logprobs: 6, logit_bias: { 1: 101 }, n: 3, frobnicate: 1 });
top('/v1/embeddings', { frobnicate: 1 });
top('/api/generate', { think: true, suffix: 'end', template: '{{ .Prompt }}', logprobs: 'yes',
  top_logprobs: 3 /* without logprobs: true */, shift: true, debug_render_only: true, width: 512 });
top('/api/chat', { tools: [tool], think: 'high', top_logprobs: 21 });
top('/inference/generate', { tools: [tool], images: ['x'], n: 2, frobnicate: 1 });
top('/inference/chat', { system: 'Be brief', response_format: { type: 'json_object' }, frobnicate: 1 });
top('/embeddings/', { dimensions: 8 });
for (const [f, v] of Object.entries({ mirostat: 2, typical_p: 0.5, tfs_z: 0.9, repeat_last_n: 128, num_ctx: 1 << 20,
  vocab_only: true })) {
  REFUSED.push(['/api/generate', `options.${f}`, withOptions('/api/generate', { [f]: v })]);
  REFUSED.push(['/api/chat', `options.${f}`, withOptions('/api/chat', { [f]: v })]);
}
for (const [f, v] of Object.entries({ tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: '{}' } }],
  tool_call_id: 'c1', name: 'bob', function_call: { name: 'f', arguments: '{}' }, refusal: 'no', frobnicate: 1 }))
  REFUSED.push(['/v1/chat/completions', `messages.0.${f}`, withMessage('/v1/chat/completions', { [f]: v })]);
for (const [f, v] of Object.entries({ tool_calls: [{ function: { name: 'f', arguments: {} } }], tool_name: 'f',
  thinking: 'hmm' }))
  REFUSED.push(['/api/chat', `messages.0.${f}`, withMessage('/api/chat', { [f]: v })]);
REFUSED.push(['/inference/chat', 'messages.0.tool_calls', withMessage('/inference/chat', { tool_calls: [] })]);

// [route, body]: honoured, or accepted because it truly changes nothing.
const ACCEPTED = [];
const ok = (route, fields) => ACCEPTED.push([route, { ...ROUTES[route].base, ...fields }]);
ok('/v1/chat/completions', {
  user: 'u1', n: 1, store: false, metadata: { a: 'b' }, stream_options: null, tools: [], tool_choice: 'none',
  response_format: { type: 'text' }, logprobs: true, top_logprobs: 2, logit_bias: { 5: -1 }, parallel_tool_calls: null,
  modalities: ['text'], service_tier: 'auto', safety_identifier: 'x', prompt_cache_key: 'k', seed: 7, top_p: 0.9,
  top_k: 20, min_p: 0.05, repeat_penalty: 1.1, presence_penalty: 0.5, frequency_penalty: 0.5, stop: ['zz'],
  max_completion_tokens: 3, temperature: 0.5,
});
ok('/v1/chat/completions', { messages: [{ role: 'system', content: 'Be kind', name: null },
  { role: 'user', content: [{ type: 'text', text: 'Hi' }], tool_calls: [] }] });
ok('/v1/completions', { logprobs: 2, logit_bias: { 5: 1 } });
ok('/v1/completions', { echo: false, suffix: '', best_of: 1, n: 1, logprobs: null, logit_bias: {}, user: 'u', seed: 3,
  top_k: 10, stop: 'zz' });
ok('/v1/embeddings', { user: 'u', encoding_format: 'float', dimensions: 4 });
ok('/api/generate', { format: '', think: false, keep_alive: '5m', truncate: true, shift: false, suffix: '', raw: false,
  logprobs: true, top_logprobs: 2, some_future_key: 1,
  options: { num_predict: 3, seed: 1, top_k: 5, top_p: 0.9, min_p: 0.1, repeat_penalty: 1.1, presence_penalty: 0.1,
    frequency_penalty: 0.1, stop: ['zz'], mirostat: 0, typical_p: 1.0, tfs_z: 1, repeat_last_n: 64, num_thread: 2,
    num_batch: 64, num_gpu: 0, use_mmap: true, num_keep: 4, penalize_newline: false, unknown_opt: 1 } });
ok('/api/chat', { tools: [], format: null, think: false, keep_alive: 0,
  messages: [{ role: 'user', content: 'Hi', images: null, thinking: '', tool_calls: [], extra: 1 }] });
ok('/api/embed', { truncate: true, keep_alive: '1m', options: { num_thread: 2 }, dimensions: 2 });
ok('/api/embeddings', { keep_alive: '1m', options: {} });
ok('/inference/generate', { system: 'S', raw: false, top_k: 3, min_p: 0.1, repeat_penalty: 1.1, seed: 1, stop: ['zz'] });
ok('/inference/chat', { messages: [{ role: 'user', content: 'Hi', images: null }], top_k: 3, seed: 2 });
ok('/embeddings/', { input: ['a', 'b'] });

test('every refused field gets 400 (Simpleton: 422) naming it, in each dialect\'s error shape', async () => {
  const failures = [];
  for (const [route, field, body] of REFUSED) {
    const r = await req(s, 'POST', route, { json: body });
    if (!ROUTES[route].names(r, field)) failures.push(`${route} ${field}: ${r.status} ${r.text.slice(0, 300)}`);
  }
  assert.deepEqual(failures, []);
});

test('refusals say what is not supported, not just that the field is wrong', async () => {
  const chat = ROUTES['/v1/chat/completions'].base;
  let r = await req(s, 'POST', '/v1/chat/completions', { json: { ...chat, tools: [tool] } });
  assert.match(r.json.error.message, /^tools: tool calling is not supported yet/);
  r = await req(s, 'POST', '/v1/chat/completions', { json: { ...chat, frobnicate: 1 } });
  assert.match(r.json.error.message, /Unrecognized request argument supplied: frobnicate/);
  r = await req(s, 'POST', '/api/chat', { json: { ...ROUTES['/api/chat'].base, think: true } });
  assert.match(r.json.error, /^think: thinking/);
  r = await req(s, 'POST', '/inference/generate', { json: { ...ROUTES['/inference/generate'].base, frobnicate: 1 } });
  const d = r.json.detail.find((x) => x.loc.join('.') === 'body.frobnicate');
  assert.equal(d.type, 'extra_forbidden');
});

test('honoured fields, and fields that truly change nothing, are accepted (200)', async () => {
  const failures = [];
  for (const [route, body] of ACCEPTED) {
    const r = await req(s, 'POST', route, { json: body });
    if (r.status !== 200) failures.push(`${route} ${JSON.stringify(body).slice(0, 200)}: ${r.status} ${r.text.slice(0, 300)}`);
  }
  assert.deepEqual(failures, []);
});

test('Ollama\'s "dimensions" on /api/embed shortens the vectors as OpenAI\'s does', async () => {
  const r = await req(s, 'POST', '/api/embed', { json: { model: M, input: ['a cat'], dimensions: 3 } });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.embeddings[0].length, 3);
  const norm = Math.hypot(...r.json.embeddings[0]);
  assert.ok(Math.abs(norm - 1) < 1e-3, `unit length: ${norm}`);
});

test('/openapi.json carries each route\'s field table', async () => {
  const r = await req(s, 'GET', '/openapi.json');
  const f = r.json.paths['/v1/chat/completions'].post['x-request-fields'];
  assert.match(f.body.tools, /^refused/);
  assert.match(f.body.seed, /^honoured/);
  assert.match(f.message.tool_call_id, /^refused/);
  assert.match(r.json.paths['/api/chat'].post['x-request-fields'].options.mirostat, /^refused unless/);
});

test('honoured sampling fields reach the upstream, translated between dialects', async () => {
  const fake = await startFakeUpstream();
  const srv = await startServer({ OLLAMA_BASE_URL: fake.url, OPENAI_BASE_URL: `${fake.url}/v1`,
    MODEL_BACKENDS: 'fake-llm=ollama,fake-gpt=openai', CACHE_ENABLED: 'false' });
  const last = async () => (await (await fetch(`${fake.url}/__last`)).json()).body;
  const sampling = { seed: 42, top_p: 0.5, top_k: 7, min_p: 0.05, repeat_penalty: 1.3, presence_penalty: 0.4,
    frequency_penalty: 0.6, stop: ['END'] };
  try {
    // Every dialect into an Ollama upstream: the fields land in `options`.
    const toOllama = [
      ['/v1/chat/completions', { model: 'fake-llm', messages: user, max_tokens: 9, temperature: 0.3, ...sampling }],
      ['/v1/completions', { model: 'fake-llm', prompt: 'Once', max_tokens: 9, temperature: 0.3, ...sampling }],
      ['/api/chat', { model: 'fake-llm', messages: user, stream: false,
        options: { num_predict: 9, temperature: 0.3, ...sampling } }],
      ['/api/generate', { model: 'fake-llm', prompt: 'Once', stream: false,
        options: { num_predict: 9, temperature: 0.3, ...sampling } }],
      ['/inference/chat', { model: 'fake-llm', messages: user, max_tokens: 9, temperature: 0.3, ...sampling }],
      ['/inference/generate', { model: 'fake-llm', prompt: 'Once', max_tokens: 9, temperature: 0.3, ...sampling }],
    ];
    for (const [route, body] of toOllama) {
      const r = await req(srv, 'POST', route, { json: body });
      assert.equal(r.status, 200, `${route}: ${r.text}`);
      const o = (await last()).options;
      assert.deepEqual({ ...o }, { seed: 42, top_p: 0.5, top_k: 7, min_p: 0.05, repeat_penalty: 1.3,
        presence_penalty: 0.4, frequency_penalty: 0.6, stop: ['END'], num_predict: 9, temperature: 0.3 }, route);
    }
    // ... and into an OpenAI-compatible upstream: top-level fields (top_k,
    // min_p and repeat_penalty as the extensions vLLM and llama.cpp read).
    const toOpenAI = [
      ['/v1/chat/completions', { model: 'fake-gpt', messages: user, max_tokens: 9, temperature: 0.3, ...sampling }],
      ['/api/chat', { model: 'fake-gpt', messages: user, stream: false,
        options: { num_predict: 9, temperature: 0.3, ...sampling } }],
      ['/inference/generate', { model: 'fake-gpt', prompt: 'Once', max_tokens: 9, temperature: 0.3, ...sampling }],
    ];
    for (const [route, body] of toOpenAI) {
      const r = await req(srv, 'POST', route, { json: body });
      assert.equal(r.status, 200, `${route}: ${r.text}`);
      const b = await last();
      for (const [k, v] of Object.entries({ ...sampling, max_tokens: 9, temperature: 0.3 }))
        assert.deepEqual(b[k], v, `${route}: ${k} forwarded as ${JSON.stringify(b[k])}`);
    }
    // Token ids of a previous answer have no OpenAI equivalent: refused, not dropped.
    for (const [route, body] of [['/api/generate', { model: 'fake-gpt', prompt: 'more', context: [1, 2, 3], stream: false }],
      ['/inference/generate', { model: 'fake-gpt', prompt: 'more', context: [1, 2, 3] }]]) {
      const r = await req(srv, 'POST', route, { json: body });
      assert.equal(r.status, 400, `${route}: ${r.text}`);
      assert.match(r.text, /context: token ids cannot be forwarded/);
    }
    const viaOllama = await req(srv, 'POST', '/api/generate',
      { json: { model: 'fake-llm', prompt: 'more', context: [1, 2, 3], stream: false } });
    assert.equal(viaOllama.status, 200, viaOllama.text);
    assert.deepEqual((await last()).context, [1, 2, 3]);
    // A refused field is refused before anything is sent upstream.
    const before = await last();
    const r = await req(srv, 'POST', '/v1/chat/completions', { json: { model: 'fake-gpt', messages: user, tools: [tool] } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.param, 'tools');
    assert.deepEqual(await last(), before);
  } finally {
    await srv.stop();
    fake.stop();
  }
});

test('structured output: a schema keyword the engine cannot enforce is a 400 naming it (OpenAI and Ollama)', async () => {
  const chat = ROUTES['/v1/chat/completions'].base;
  const bad = { type: 'object', properties: { n: { type: 'number', multipleOf: 3 } } };
  let r = await req(s, 'POST', '/v1/chat/completions',
    { json: { ...chat, response_format: { type: 'json_schema', json_schema: { name: 'x', schema: bad } } } });
  assert.equal(r.status, 400, r.text);
  assert.equal(r.json.error.param, 'response_format');
  assert.match(r.json.error.message, /properties\.n: keyword 'multipleOf' is not supported/);
  r = await req(s, 'POST', '/api/chat', { json: { ...ROUTES['/api/chat'].base, format: bad } });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error, /^format: .*multipleOf/);
});
