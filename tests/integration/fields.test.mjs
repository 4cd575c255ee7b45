// fields.test.mjs - no request field is silently ignored (issue 14): every
// route refuses the fields it cannot honour with 400 (422 on Simpleton's
// routes) naming the field, accepts the ones that are honoured or truly have
// no effect, and forwards the honoured ones to upstreams (checked on the fake
// upstream's /__last).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, mkdtempSync, mkdirSync, readdirSync, symlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, startFakeUpstream, req, KEY } from './lib.mjs';

let s;
before(async () => { s = await startServer({ CACHE_ENABLED: 'false' }); });
after(async () => { await s.stop(); });

const M = 'stories260K';
const user = [{ role: 'user', content: 'Hi' }];
const SHARED = path.resolve('../shared');
const png = readFileSync(path.join(SHARED, 'images/sign.png'));
const wav = readFileSync(path.join(SHARED, 'audio/jfk.wav'));
const image = png.toString('base64');
const FILE = Symbol('file');

// A multipart POST: each key one part (an array: one part per value), the
// FILE key the upload.
async function postForm(srv, route, fields, file = fields[FILE]) {
  const fd = new FormData();
  if (file) fd.append('file', new Blob([file.data]), file.name);
  for (const [k, v] of Object.entries(fields)) for (const x of [].concat(v)) fd.append(k, String(x));
  const res = await fetch(`${srv.url}${route}`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, text, json };
}
const send = (srv, route, body) => (ROUTES[route].form ? postForm(srv, route, body) : req(srv, 'POST', route, { json: body }));

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
  '/embeddings': { base: { model: M, input: 'a cat' }, names: simpletonNames },
  '/api/show': { base: { model: M }, names: ollamaNames },
  '/v1/audio/transcriptions': { form: true, base: { model: 'whisper-1', [FILE]: { data: wav, name: 'a.wav' } },
    names: openaiNames },
  '/v1/audio/translations': { form: true, base: { model: 'whisper-1', [FILE]: { data: wav, name: 'a.wav' } },
    names: openaiNames },
  '/audio/transcribe': { base: { audio: wav.toString('base64') }, names: simpletonNames },
  '/audio/translate': { base: { audio: wav.toString('base64') }, names: simpletonNames },
  '/audio/upload/transcribe': { form: true, base: { [FILE]: { data: wav, name: 'a.wav' } }, names: simpletonNames },
  '/audio/upload/translate': { form: true, base: { [FILE]: { data: wav, name: 'a.wav' } }, names: simpletonNames },
  '/vision/analyze': { base: { image, prompt: 'What is this?' }, names: simpletonNames },
  '/vision/caption': { base: { image }, names: simpletonNames },
  '/vision/ocr': { base: { image }, names: simpletonNames },
  '/vision/upload': { form: true, base: { [FILE]: { data: png, name: 'a.png' } }, names: simpletonNames },
  '/rag/ingest': { base: { content: 'Cats purr.' }, names: simpletonNames },
  '/rag/ingest/file': { form: true, base: { [FILE]: { data: Buffer.from('Cats purr.'), name: 'a.txt' } },
    names: simpletonNames },
  '/rag/search': { base: { query: 'cats' }, names: simpletonNames },
  '/rag/query': { base: { query: 'cats', model: M, max_tokens: 3 }, names: simpletonNames },
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
  tools: 'garbage', tool_choice: 'required' /* with no tools */, parallel_tool_calls: 'yes', functions: [tool.function],
  function_call: 'auto2',
  top_logprobs: 2 /* without logprobs: true */,
  logit_bias: { x: -100 }, n: 2, audio: { voice: 'alloy', format: 'wav' }, modalities: ['text', 'audio'],
  prediction: { type: 'content', content: 'x' }, reasoning_effort: 'low', store: true, web_search_options: {},
  verbosity: 'low', service_tier: 'flex', frobnicate: 1,
});
top('/v1/completions', { echo: true, suffix: 'end', best_of: 2, logprobs: 6, logit_bias: { 1: 101 }, n: 3, frobnicate: 1 });
top('/v1/embeddings', { frobnicate: 1 });
top('/api/generate', { think: true, suffix: 'end', template: '{{ .Prompt }}', logprobs: 'yes',
  top_logprobs: 3 /* without logprobs: true */, shift: true, debug_render_only: true, width: 512 });
top('/api/chat', { tools: 'garbage', think: 'high', top_logprobs: 21 });
top('/inference/generate', { tools: [tool], images: ['x'], n: 2, frobnicate: 1 });
top('/inference/chat', { system: 'Be brief', response_format: { type: 'json_object' }, frobnicate: 1 });
top('/embeddings/', { dimensions: 8 });
top('/v1/audio/transcriptions', { 'timestamp_granularities[]': ['segment', 'word'], stream: 'true',
  'include[]': 'logprobs', chunking_strategy: 'server_vad', 'known_speaker_names[]': 'bob', frobnicate: 1 });
top('/v1/audio/translations', { stream: 'true', 'timestamp_granularities[]': 'word', frobnicate: 1 });
top('/audio/translate', { task: 'transcribe', frobnicate: 1 });
top('/audio/upload/translate', { task: 'transcribe', frobnicate: 1 });
top('/audio/upload/transcribe', { response_format: 'srt', frobnicate: 1 });
top('/audio/transcribe', { response_format: 'srt' });
top('/vision/analyze', { detail_level: 'brief', frobnicate: 1 });
top('/vision/caption', { prompt: 'Say it in French' });
top('/vision/ocr', { temperature: 0.2, max_tokens: 5, prompt: 'x' });
top('/vision/upload', { temperature: 0.2 });
top('/rag/ingest', { embedding_model: 'x', frobnicate: 1 });
top('/rag/ingest/file', { content: 'x', frobnicate: 1 });
top('/rag/search', { model: M, temperature: 0.1 });
top('/rag/query', { filter: { a: 1 } });
top('/api/show', { verbose: true });
// OCR with a vision model: the language is Tesseract's, so it is refused.
REFUSED.push(['/vision/ocr', 'language', { image, model: 'llava', language: 'eng' }]);
for (const [f, v] of Object.entries({ mirostat: 2, typical_p: 0.5, tfs_z: 0.9, repeat_last_n: 128,
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
ok('/api/generate', { options: { num_predict: 3, num_ctx: 1 << 20 } }); // above the model's: the model's context
ok('/api/chat', { think: null, options: { num_predict: 3, num_ctx: 256 } });
ok('/api/show', { verbose: false });
ok('/vision/ocr', { language: 'eng', model: 'tesseract' });

test('every refused field gets 400 (Simpleton: 422) naming it, in each dialect\'s error shape', async () => {
  const failures = [];
  for (const [route, field, body] of REFUSED) {
    const r = await send(s, route, body);
    if (!ROUTES[route].names(r, field)) failures.push(`${route} ${field}: ${r.status} ${r.text.slice(0, 300)}`);
  }
  assert.deepEqual(failures, []);
});

test('refusals say what is not supported, not just that the field is wrong', async () => {
  const chat = ROUTES['/v1/chat/completions'].base;
  let r = await req(s, 'POST', '/v1/chat/completions', { json: { ...chat, functions: [tool.function] } });
  assert.match(r.json.error.message, /^functions: the legacy functions API is not supported: use tools/);
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
    const r = await send(s, route, body);
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

test('/openapi.json carries each route\'s field table, and the server does what it says', async () => {
  const doc = (await req(s, 'GET', '/openapi.json')).json;
  const chat = doc.paths['/v1/chat/completions'].post['x-simpleton-fields'];
  const entry = (f, name, where = 'body') => f.fields.find((e) => e.name === name && e.in === where);
  assert.equal(entry(chat, 'tools').treatment, 'honoured');
  assert.equal(entry(chat, 'functions').treatment, 'refused');
  assert.match(entry(chat, 'functions').note, /use tools/);
  assert.equal(entry(chat, 'seed').treatment, 'honoured');
  assert.equal(entry(chat, 'user').treatment, 'no-effect');
  assert.equal(entry(chat, 'tool_call_id', 'message').treatment, 'honoured');
  assert.equal(entry(chat, 'refusal', 'message').treatment, 'refused');
  assert.deepEqual(chat.unknown_fields, { body: 'refused', message: 'refused' });
  const ochat = doc.paths['/api/chat'].post['x-simpleton-fields'];
  assert.deepEqual(entry(ochat, 'mirostat', 'options').accepted_values, [0]);
  assert.equal(entry(ochat, 'num_ctx', 'options').treatment, 'honoured');
  const stt = doc.paths['/v1/audio/transcriptions'].post['x-simpleton-fields'];
  assert.deepEqual(entry(stt, 'timestamp_granularities[]', 'form').accepted_values, ['segment']);

  // Walk the whole published table: every route that has one has a request
  // here, every refused field sent with a value it does not accept is
  // refused naming it, and so is an unknown field where the table says so.
  const failures = [];
  const where = { body: (f) => f, form: (f) => f, message: (f) => `messages.0.${f}`, options: (f) => `options.${f}` };
  let refusedSeen = 0;
  for (const [route, ops] of Object.entries(doc.paths)) {
    const t = ops.post?.['x-simpleton-fields'];
    if (!t) continue;
    const R = ROUTES[route];
    if (!R) { failures.push(`${route}: published but not walked (add it to ROUTES)`); continue; }
    const withField = (e, v) => {
      const b = { ...R.base };
      if (e.in === 'message') b.messages = [{ ...(R.base.messages?.[0] ?? { role: 'user', content: 'Hi' }), [e.name]: v }];
      else if (e.in === 'options') b.options = { ...R.base.options, [e.name]: v };
      else b[e.name] = v;
      return b;
    };
    for (const e of t.fields) {
      if (!where[e.in]) failures.push(`${route} ${e.name}: unknown place ${e.in}`);
      if (!['honoured', 'no-effect', 'refused'].includes(e.treatment)) failures.push(`${route} ${e.name}: ${e.treatment}`);
      if (e.treatment !== 'refused') continue;
      refusedSeen++;
      const r = await send(s, route, withField(e, 'zz-not-accepted'));
      if (!R.names(r, where[e.in](e.name))) failures.push(`${route} ${e.in} ${e.name}: ${r.status} ${r.text.slice(0, 200)}`);
    }
    for (const [place, how] of Object.entries(t.unknown_fields)) {
      if (how !== 'refused') continue;
      const r = await send(s, route, withField({ in: place, name: 'frobnicate' }, 1));
      if (!R.names(r, where[place]('frobnicate'))) failures.push(`${route} unknown ${place} field: ${r.status} ${r.text.slice(0, 200)}`);
    }
  }
  assert.deepEqual(failures, []);
  assert.ok(refusedSeen > 50, `${refusedSeen} refused fields published`);
});

test('options.num_ctx caps prompt plus answer; a prompt that does not fit it is refused naming num_ctx', async () => {
  const prompt = 'Once upon a time there was a little dog who liked to run in the park with his friends. '.repeat(2);
  const gen = (options, route = '/api/generate') => req(s, 'POST', route, { json: route === '/api/generate'
    ? { model: M, prompt, stream: false, options: { temperature: 0, ...options } }
    : { model: M, messages: [{ role: 'user', content: prompt }], stream: false, options: { temperature: 0, ...options } } });
  const free = await gen({ num_predict: 40 });
  assert.equal(free.status, 200, free.text);
  const P = free.json.prompt_eval_count;
  assert.ok(free.json.eval_count > 4, `a free answer runs on (${free.json.eval_count} tokens)`);
  // A window just past the prompt: the answer stops at its end.
  const capped = await gen({ num_predict: 40, num_ctx: P + 4 });
  assert.equal(capped.status, 200, capped.text);
  assert.ok(capped.json.prompt_eval_count + capped.json.eval_count <= P + 4,
    `prompt ${capped.json.prompt_eval_count} + answer ${capped.json.eval_count} > num_ctx ${P + 4}`);
  assert.equal(capped.json.done_reason, 'length');
  // A window the prompt does not fit: refused, naming num_ctx (as the model's own context is).
  for (const route of ['/api/generate', '/api/chat']) {
    const r = await gen({ num_ctx: 16 }, route);
    assert.ok(r.status === 400 || r.status === 422, `${route}: ${r.status} ${r.text}`);
    assert.match(r.json.error, /^options\.num_ctx: the prompt is (at least )?\d+ tokens; num_ctx allows 16/, route);
  }
  // Above the model's context: the model's context applies.
  const big = await gen({ num_predict: 40, num_ctx: 1 << 20 });
  assert.equal(big.status, 200, big.text);
  assert.equal(big.json.response, free.json.response);
  const zero = await gen({ num_predict: 40, num_ctx: 0 }); // 0: the model's context
  assert.equal(zero.json.response, free.json.response);
  const bad = await gen({ num_ctx: -1 });
  assert.equal(bad.status, 400);
  assert.match(bad.json.error, /num_ctx: /);
});

test('"dimensions" above the model\'s embedding size is a 400 naming it, in every embedding route that takes it', async () => {
  const full = await req(s, 'POST', '/v1/embeddings', { json: { model: M, input: 'a cat' } });
  const dim = full.json.data[0].embedding.length;
  for (const [route, names, body, vec] of [
    ['/v1/embeddings', openaiNames, { model: M, input: 'a dog' }, (r) => r.json.data[0].embedding],
    ['/api/embed', ollamaNames, { model: M, input: 'a dog' }, (r) => r.json.embeddings[0]],
  ]) {
    const same = await req(s, 'POST', route, { json: { ...body, dimensions: dim } });
    assert.equal(same.status, 200, same.text);
    assert.equal(vec(same).length, dim);
    const over = await req(s, 'POST', route, { json: { ...body, dimensions: dim + 1 } });
    assert.ok(names(over, 'dimensions'), `${route}: ${over.status} ${over.text}`);
    assert.match(over.text, new RegExp(`makes vectors of ${dim}`));
  }
  assert.ok(simpletonNames(await req(s, 'POST', '/embeddings/', { json: { model: M, input: 'a', dimensions: 2 } }),
    'dimensions'));
});

test('audio: the accepted values of refused OpenAI form fields transcribe (200), and the refused ones say why', async () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'smp-fields-'));
  const models = path.join(tmp, 'models');
  mkdirSync(models);
  const wdir = path.join(SHARED, 'models/whisper');
  for (const f of readdirSync(wdir)) if (f.endsWith('.bin')) symlinkSync(path.join(wdir, f), path.join(models, f));
  const a = await startServer({ MODELS_DIR: models, DEFAULT_AUDIO_MODEL: 'whisper-rand-tiny64-f16',
    WHISPER_DOWNLOAD_URL: '', CACHE_ENABLED: 'false' });
  try {
    const file = { data: wav, name: 'jfk.wav' };
    let r = await postForm(a, '/v1/audio/transcriptions', { model: 'whisper-1', response_format: 'verbose_json',
      'timestamp_granularities[]': 'segment', chunking_strategy: 'auto', stream: 'false', temperature: '0' }, file);
    assert.equal(r.status, 200, r.text);
    assert.ok(Array.isArray(r.json.segments));
    r = await postForm(a, '/v1/audio/transcriptions', { model: 'whisper-1',
      'timestamp_granularities[]': ['segment', 'word'] }, file);
    assert.equal(r.status, 400);
    assert.equal(r.json.error.param, 'timestamp_granularities[]');
    assert.match(r.json.error.message, /word timestamps are not supported/);
    r = await req(a, 'POST', '/audio/translate', { json: { audio: wav.toString('base64'), task: 'translate' } });
    assert.equal(r.status, 200, r.text);
    r = await postForm(a, '/audio/upload/translate', { task: 'translate' }, file);
    assert.equal(r.status, 200, r.text);
  } finally {
    await a.stop();
    rmSync(tmp, { recursive: true, force: true });
  }
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
    // Ollama's context window goes on to an Ollama upstream as it came.
    for (const route of ['/api/chat', '/api/generate']) {
      const body = route === '/api/chat' ? { messages: user } : { prompt: 'Once' };
      const r = await req(srv, 'POST', route, { json: { model: 'fake-llm', stream: false, ...body,
        options: { num_ctx: 4096, num_predict: 9 } } });
      assert.equal(r.status, 200, `${route}: ${r.text}`);
      assert.deepEqual({ ...(await last()).options }, { num_ctx: 4096, num_predict: 9, temperature: 0.8 }, route);
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
    // Nor has a per-request context window.
    const win = await req(srv, 'POST', '/api/chat',
      { json: { model: 'fake-gpt', messages: user, stream: false, options: { num_ctx: 2048 } } });
    assert.equal(win.status, 400, win.text);
    assert.match(win.json.error, /^options\.num_ctx: .*cannot be forwarded/);
    const viaOllama = await req(srv, 'POST', '/api/generate',
      { json: { model: 'fake-llm', prompt: 'more', context: [1, 2, 3], stream: false } });
    assert.equal(viaOllama.status, 200, viaOllama.text);
    assert.deepEqual((await last()).context, [1, 2, 3]);
    // A refused field is refused before anything is sent upstream.
    const before = await last();
    const r = await req(srv, 'POST', '/v1/chat/completions',
      { json: { model: 'fake-gpt', messages: user, functions: [tool.function] } });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.param, 'functions');
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
