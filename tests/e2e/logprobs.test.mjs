// logprobs.test.mjs - log probabilities and logit_bias through the official
// clients on the built-in stories260K model: OpenAI chat (logprobs,
// top_logprobs), completions (the legacy format), Ollama's logprobs, each
// streamed too; logit_bias changing the answer; bad values refused naming the
// field; the cache key telling answers with and without logprobs apart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { startServer, req, KEY } from '../integration/lib.mjs';

const MODEL = 'stories260K';
const user = [{ role: 'user', content: 'Tell me a story.' }];
let srv, openai, ollama;

before(async () => {
  srv = await startServer();
  openai = new OpenAI({ baseURL: `${srv.url}/v1`, apiKey: KEY, maxRetries: 0 });
  ollama = new Ollama({ host: srv.url, headers: { 'X-API-Key': KEY, 'Cache-Control': 'no-cache' } });
});
after(async () => { await srv.stop(); });

const noCache = { headers: { 'Cache-Control': 'no-cache' } };

// An entry in OpenAI's chat format, as the engine gives it for every dialect.
const checkEntry = (e, top) => {
  assert.equal(typeof e.token, 'string');
  assert.ok(e.logprob <= 0, JSON.stringify(e));
  assert.deepEqual(e.bytes, [...Buffer.from(e.token)], 'bytes are the token\'s (ASCII here)');
  assert.equal(e.top_logprobs.length, top);
  for (let i = 1; i < top; i++) assert.ok(e.top_logprobs[i].logprob <= e.top_logprobs[i - 1].logprob);
  assert.ok(e.top_logprobs.reduce((s, t) => s + Math.exp(t.logprob), 0) <= 1 + 1e-6);
  if (top) { // greedy: the chosen token is the model's favourite
    assert.equal(e.token, e.top_logprobs[0].token);
    assert.equal(e.logprob, e.top_logprobs[0].logprob);
  }
};

test('openai chat: logprobs with top_logprobs at temperature 0, whole and streamed', async () => {
  const body = { model: MODEL, messages: user, max_tokens: 24, temperature: 0, logprobs: true, top_logprobs: 3 };
  const r = await openai.chat.completions.create(body, noCache);
  const c = r.choices[0];
  assert.ok(c.message.content.length > 0);
  assert.equal(c.logprobs.refusal, null);
  const entries = c.logprobs.content;
  assert.equal(entries.length, r.usage.completion_tokens);
  for (const e of entries) checkEntry(e, 3);
  assert.equal(entries.map((e) => e.token).join(''), c.message.content);

  const stream = await openai.chat.completions.create({ ...body, stream: true });
  let text = '';
  const streamed = [];
  for await (const chunk of stream) {
    const ch = chunk.choices[0];
    if (!ch) continue;
    if (ch.delta?.content) {
      assert.ok(ch.logprobs, `a content chunk without logprobs: ${JSON.stringify(chunk)}`);
      text += ch.delta.content;
    }
    streamed.push(...(ch.logprobs?.content || []));
  }
  assert.equal(text, c.message.content);
  assert.deepEqual(streamed, entries);

  // Not asked: null, as OpenAI answers.
  const plain = await openai.chat.completions.create({ model: MODEL, messages: user, max_tokens: 4, temperature: 0 }, noCache);
  assert.equal(plain.choices[0].logprobs, null);
});

test('openai completions: the legacy logprobs format, whole and streamed', async () => {
  const body = { model: MODEL, prompt: 'Once upon a time', max_tokens: 12, temperature: 0, logprobs: 2 };
  const r = await openai.completions.create(body, noCache);
  const { text, logprobs } = r.choices[0];
  assert.equal(logprobs.tokens.length, 12);
  assert.equal(logprobs.tokens.join(''), text);
  assert.equal(logprobs.token_logprobs.length, 12);
  let offset = 0;
  logprobs.tokens.forEach((t, i) => {
    assert.equal(logprobs.text_offset[i], offset);
    offset += Buffer.byteLength(t);
    const top = Object.entries(logprobs.top_logprobs[i]);
    assert.ok(top.length >= 1 && top.length <= 2);
    assert.equal(logprobs.top_logprobs[i][t], logprobs.token_logprobs[i], 'greedy: the chosen token tops the list');
  });
  const stream = await openai.completions.create({ ...body, stream: true });
  const tokens = [], offsets = [];
  for await (const chunk of stream) {
    const lp = chunk.choices[0]?.logprobs;
    if (lp) tokens.push(...lp.tokens), offsets.push(...lp.text_offset);
  }
  assert.deepEqual(tokens, logprobs.tokens);
  assert.deepEqual(offsets, logprobs.text_offset);
});

test('ollama: logprobs and top_logprobs on generate and chat, streamed too', async () => {
  const g = await ollama.generate({ model: MODEL, prompt: 'Once upon a time', logprobs: true, top_logprobs: 2,
    options: { temperature: 0, num_predict: 10 } });
  assert.equal(g.logprobs.length, g.eval_count);
  for (const e of g.logprobs) checkEntry(e, 2);
  assert.equal(g.logprobs.map((e) => e.token).join(''), g.response);

  const stream = await ollama.chat({ model: MODEL, messages: user, stream: true, logprobs: true,
    options: { temperature: 0, num_predict: 10 } });
  let text = '';
  const entries = [];
  for await (const part of stream) {
    text += part.message.content;
    entries.push(...(part.logprobs || []));
  }
  assert.ok(text.length > 0);
  assert.equal(entries.map((e) => e.token).join(''), text);
  for (const e of entries) checkEntry(e, 0);
});

test('logit_bias: banning the greedy first token changes the answer, forcing one repeats it', async () => {
  // Ollama's context gives the ids: the prompt's, then the answer's.
  const prompt = 'Once upon a time';
  const g = await ollama.generate({ model: MODEL, prompt, raw: true, options: { temperature: 0, num_predict: 6 } });
  const first = g.context[g.context.length - g.eval_count]; /* prompt_eval_count leaves out a cached prefix */
  const base = { model: MODEL, prompt, max_tokens: 6, temperature: 0 };
  const plain = await openai.completions.create({ ...base, logprobs: 0 }, noCache);
  assert.equal(plain.choices[0].text, g.response);
  const banned = await openai.completions.create({ ...base, logit_bias: { [first]: -100 }, logprobs: 0 }, noCache);
  assert.notEqual(banned.choices[0].text, plain.choices[0].text);
  assert.notEqual(banned.choices[0].logprobs.tokens[0], plain.choices[0].logprobs.tokens[0]);
  const forced = await openai.chat.completions.create({ model: MODEL, messages: user, max_tokens: 5, temperature: 0,
    logit_bias: { [first]: 100 }, logprobs: true }, noCache);
  const toks = forced.choices[0].logprobs.content.map((e) => e.token);
  assert.equal(new Set(toks).size, 1, JSON.stringify(toks));
});

test('bad values: 400 naming the field (out-of-vocabulary ids: 4xx naming logit_bias)', async () => {
  const chat = { model: MODEL, messages: user, max_tokens: 2 };
  const cmpl = { model: MODEL, prompt: 'Once', max_tokens: 2 };
  const cases = [
    ['/v1/chat/completions', { ...chat, logprobs: true, top_logprobs: 21 }, 'top_logprobs'],
    ['/v1/chat/completions', { ...chat, top_logprobs: 2 }, 'top_logprobs'],
    ['/v1/chat/completions', { ...chat, logprobs: false, top_logprobs: 2 }, 'top_logprobs'],
    ['/v1/chat/completions', { ...chat, logprobs: 'yes' }, 'logprobs'],
    ['/v1/chat/completions', { ...chat, logit_bias: { abc: 1 } }, 'logit_bias'],
    ['/v1/chat/completions', { ...chat, logit_bias: { '-3': 1 } }, 'logit_bias'],
    ['/v1/chat/completions', { ...chat, logit_bias: { 5: 100.5 } }, 'logit_bias'],
    ['/v1/chat/completions', { ...chat, logit_bias: { 5: '1' } }, 'logit_bias'],
    ['/v1/chat/completions', { ...chat, logit_bias: [5] }, 'logit_bias'],
    ['/v1/chat/completions', { ...chat, logit_bias: Object.fromEntries([...Array(301).keys()].map((i) => [i, 1])) }, 'logit_bias'],
    ['/v1/completions', { ...cmpl, logprobs: 6 }, 'logprobs'],
    ['/v1/completions', { ...cmpl, logprobs: true }, 'logprobs'],
    ['/v1/completions', { ...cmpl, logit_bias: { 5: -101 } }, 'logit_bias'],
  ];
  for (const [route, body, field] of cases) {
    const r = await req(srv, 'POST', route, { json: body });
    assert.equal(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.equal(r.json.error.param, field, r.text);
    assert.ok(r.json.error.message.includes(field), r.text);
  }
  for (const [route, body] of [['/api/generate', { model: MODEL, prompt: 'Once', stream: false, logprobs: true, top_logprobs: 21 }],
    ['/api/chat', { model: MODEL, messages: user, stream: false, top_logprobs: 3 }]]) {
    const r = await req(srv, 'POST', route, { json: body });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error, /^top_logprobs: /);
  }
  const r = await req(srv, 'POST', '/v1/chat/completions', { json: { ...chat, logit_bias: { 512: 1 } } });
  assert.ok(r.status >= 400 && r.status < 500, r.text);
  assert.match(r.json.error.message, /logit_bias: token id 512 is outside the model's vocabulary/);
  // 300 entries is the limit, and fine.
  const ok = await req(srv, 'POST', '/v1/chat/completions', { json: { ...chat,
    logit_bias: Object.fromEntries([...Array(300).keys()].map((i) => [i, 0])) } });
  assert.equal(ok.status, 200, ok.text);
});

test('cache: answers with and without logprobs have their own keys', async () => {
  const body = { model: MODEL, messages: user, max_tokens: 6, temperature: 0 };
  const post = (b) => req(srv, 'POST', '/v1/chat/completions', { json: b });
  const variants = [body, { ...body, logprobs: true }, { ...body, logprobs: true, top_logprobs: 2 },
    { ...body, logit_bias: { 5: -100 } }];
  for (const b of variants) assert.equal((await post(b)).headers.get('x-cache'), 'MISS', JSON.stringify(b));
  for (const b of variants) {
    const r = await post(b);
    assert.equal(r.headers.get('x-cache'), 'HIT', JSON.stringify(b));
    assert.equal(r.json.choices[0].logprobs === null, !b.logprobs);
    if (b.top_logprobs) assert.equal(r.json.choices[0].logprobs.content[0].top_logprobs.length, 2);
  }
});
