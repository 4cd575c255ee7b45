// clients.test.mjs - the official OpenAI and Ollama npm clients against the
// real binary serving the built-in stories260K model. Greedy output must be
// the same through every dialect and the same as the CLI's.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { startServer, KEY, BIN } from '../integration/lib.mjs';

const MODEL = 'stories260K';
const PROMPT = 'Once upon a time';
let srv, openai, ollama;

// What `simpleton run` prints for the same greedy request.
function cliGreedy(n) {
  const r = spawnSync(BIN, ['run', '../shared/models/stories260K.gguf', PROMPT, '-n', String(n), '--temp', '0'],
    { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.replace(/\n$/, '');
}

before(async () => {
  srv = await startServer({ CACHE_ENABLED: 'false' });
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
  ollama = new Ollama({ host: srv.url, headers: { 'X-API-Key': KEY } });
});
after(async () => { await srv.stop(); });

test('openai: completion equals the CLI greedy output', async () => {
  const want = cliGreedy(30);
  assert.ok(want.length > 20, want);
  const r = await openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 30, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices[0].text, want);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, 30);
  assert.equal(r.usage.prompt_tokens, 5);
});

test('openai: streamed completion equals the non-streamed one', async () => {
  const want = (await openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0 }))
    .choices[0].text;
  const stream = await openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 24, temperature: 0,
    stream: true });
  let text = '', chunks = 0;
  for await (const c of stream) { text += c.choices[0]?.text ?? ''; chunks++; }
  assert.equal(text, want);
  assert.ok(chunks >= 10, `only ${chunks} chunks: not streamed token by token`);
});

test('openai: chat completion, streamed and not, with usage', async () => {
  const messages = [{ role: 'user', content: PROMPT }];
  const r = await openai.chat.completions.create({ model: MODEL, messages, max_tokens: 20, temperature: 0, seed: 1 });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.equal(r.usage.completion_tokens, 20);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 20);
  const stream = await openai.chat.completions.create({ model: MODEL, messages, max_tokens: 20, temperature: 0,
    stream: true, stream_options: { include_usage: true } });
  let text = '', usage = null, finish = null;
  for await (const c of stream) {
    text += c.choices[0]?.delta?.content ?? '';
    if (c.choices[0]?.finish_reason) finish = c.choices[0].finish_reason;
    if (c.usage) usage = c.usage;
  }
  assert.equal(text, r.choices[0].message.content);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 20);
});

test('openai: same seed gives the same sampled text', async () => {
  const req = { model: MODEL, messages: [{ role: 'user', content: 'Lily' }], max_tokens: 24, temperature: 1, seed: 42 };
  const a = await openai.chat.completions.create(req);
  const b = await openai.chat.completions.create(req);
  assert.equal(a.choices[0].message.content, b.choices[0].message.content);
});

test('openai: stop strings end the answer before the stop text', async () => {
  const r = await openai.completions.create({ model: MODEL, prompt: PROMPT, max_tokens: 40, temperature: 0,
    stop: ['Lily'] });
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.ok(!r.choices[0].text.includes('Lily'));
  assert.ok(cliGreedy(40).startsWith(r.choices[0].text));
});

test('openai: embeddings, single and batch, float and base64', async () => {
  const one = await openai.embeddings.create({ model: MODEL, input: 'a happy dog', encoding_format: 'float' });
  const v = one.data[0].embedding;
  assert.equal(v.length, 64);
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  assert.ok(Math.abs(norm - 1) < 1e-4, String(norm));
  const batch = await openai.embeddings.create({ model: MODEL, input: ['a happy dog', 'the sun', 'a red ball'],
    encoding_format: 'float' });
  assert.equal(batch.data.length, 3);
  assert.deepEqual(batch.data.map((d) => d.index), [0, 1, 2]);
  batch.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - v[i]) < 1e-6));
  // The client's default asks for base64 and decodes it itself.
  const b64 = await openai.embeddings.create({ model: MODEL, input: 'a happy dog' });
  b64.data[0].embedding.forEach((x, i) => assert.ok(Math.abs(x - v[i]) < 1e-6));
});

test('openai: models list and errors', async () => {
  const list = await openai.models.list();
  assert.ok(list.data.some((m) => m.id === MODEL));
  await assert.rejects(openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e.status === 404 && /no-such-model/.test(e.message) && /stories260K/.test(e.message));
  await assert.rejects(openai.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }],
    temperature: 3 }), (e) => e.status === 400 && /temperature/.test(e.message));
});

test('ollama: generate equals the CLI; streamed the same; context round-trips', async () => {
  const want = cliGreedy(30);
  const r = await ollama.generate({ model: MODEL, prompt: PROMPT, options: { temperature: 0, num_predict: 30 } });
  assert.equal(r.response, want);
  assert.equal(r.done, true);
  assert.equal(r.eval_count, 30);
  // The prompt is 5 tokens (context = prompt + answer); Ollama counts those it
  // evaluated, and an earlier request may have left them in a slot's cache.
  assert.ok(r.prompt_eval_count >= 1 && r.prompt_eval_count <= 5, `${r.prompt_eval_count}`);
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration'])
    assert.equal(typeof r[k], 'number', k);
  assert.ok(Array.isArray(r.context) && r.context.length === 35);
  let text = '', parts = 0;
  for await (const p of await ollama.generate({ model: MODEL, prompt: PROMPT, stream: true,
    options: { temperature: 0, num_predict: 30 } })) { text += p.response; parts++; }
  assert.equal(text, want);
  assert.ok(parts >= 30);
  // Continuing from the context gives the next part of the greedy story.
  const more = await ollama.generate({ model: MODEL, prompt: ' ', context: r.context,
    options: { temperature: 0, num_predict: 10 } });
  assert.equal(more.context.slice(0, 35).join(','), r.context.join(','));
});

test('ollama: chat, embed, embeddings (legacy), tags, show, ps, version', async () => {
  const c = await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: PROMPT }], options: { temperature: 0, num_predict: 12 } });
  assert.equal(c.message.role, 'assistant');
  assert.ok(c.message.content.length > 0);
  let streamed = '';
  for await (const p of await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: PROMPT }], stream: true,
    options: { temperature: 0, num_predict: 12 } })) streamed += p.message.content;
  assert.equal(streamed, c.message.content);
  const e = await ollama.embed({ model: MODEL, input: ['one', 'two'] });
  assert.equal(e.embeddings.length, 2);
  assert.equal(e.embeddings[0].length, 64);
  const legacy = await ollama.embeddings({ model: MODEL, prompt: 'one' });
  legacy.embedding.forEach((x, i) => assert.ok(Math.abs(x - e.embeddings[0][i]) < 1e-6));
  const tags = await ollama.list();
  assert.ok(tags.models.some((m) => m.name === MODEL));
  const show = await ollama.show({ model: MODEL });
  assert.equal(show.details.family, 'llama');
  const ps = await ollama.ps();
  assert.ok(ps.models.some((m) => m.name === MODEL));
  assert.equal(typeof (await ollama.version()).version, 'string');
  await assert.rejects(ollama.generate({ model: 'nope', prompt: 'x' }), (err) => err.status_code === 404);
});
