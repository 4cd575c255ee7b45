// textgen.test.mjs - the text routes of every dialect with the built-in model:
// limits that must agree across dialects, and Ollama's "load the model" calls.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeUpstream, req, sleep, KEY } from './lib.mjs';

let s;
before(async () => { s = await startServer({ CACHE_ENABLED: 'false' }); });
after(async () => { await s.stop(); });

const post = (p, json) => req(s, 'POST', p, { json });
const stops = (n) => Array.from({ length: n }, (_, i) => `zq${i}`);

// Each dialect with its `stop` in place, and how it names a refused field.
const DIALECTS = [
  ['/inference/generate', (st) => ({ prompt: 'Once', max_tokens: 3, stop: st }), 422,
    (r) => r.json.detail.some((d) => d.loc.join('.') === 'body.stop')],
  ['/inference/chat', (st) => ({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, stop: st }), 422,
    (r) => r.json.detail.some((d) => d.loc.join('.') === 'body.stop')],
  ['/v1/chat/completions', (st) => ({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 3, stop: st }), 400,
    (r) => r.json.error.param === 'stop'],
  ['/v1/completions', (st) => ({ prompt: 'Once', max_tokens: 3, stop: st }), 400,
    (r) => r.json.error.param === 'stop'],
  ['/api/generate', (st) => ({ model: 'stories260K', prompt: 'Once', stream: false, options: { num_predict: 3, stop: st } }),
    400, (r) => /^stop: /.test(r.json.error)],
  ['/api/chat', (st) => ({ model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], stream: false,
    options: { num_predict: 3, stop: st } }), 400, (r) => /^stop: /.test(r.json.error)],
];

test('stop: 16 sequences are taken and 17 refused in every dialect, with one message', async () => {
  const messages = new Set();
  for (const [path, body, status, namesStop] of DIALECTS) {
    const ok = await post(path, body(stops(16)));
    assert.equal(ok.status, 200, `${path} with 16 stop sequences: ${ok.text}`);
    const bad = await post(path, body(stops(17)));
    assert.equal(bad.status, status, `${path} with 17 stop sequences: ${bad.text}`);
    assert.ok(namesStop(bad), `${path}: the error names stop: ${bad.text}`);
    assert.match(bad.text, /at most 16 strings/);
    const long = await post(path, body('x'.repeat(257)));
    assert.equal(long.status, status, `${path} with a 257-byte stop string: ${long.text}`);
    assert.ok(namesStop(long), `${path}: the error names stop: ${long.text}`);
    assert.match(long.text, /at most 256 bytes/);
    const longInList = await post(path, body(['x'.repeat(257)]));
    assert.equal(longInList.status, status, longInList.text);
    assert.equal(longInList.text.includes('at most 256 bytes'), true, longInList.text);
    messages.add(bad.text.match(/Input should be[^"]*/)[0]);
  }
  assert.equal(messages.size, 1, [...messages].join(' | '));
});

test('Ollama load calls (empty prompt, no messages) resolve the model: 404 when unknown, done_reason "load" when known', async () => {
  for (const body of [{ model: 'no-such-model', prompt: '' }, { model: 'no-such-model' }]) {
    const r = await post('/api/generate', body);
    assert.equal(r.status, 404, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.error, /^model 'no-such-model' not found/);
  }
  for (const body of [{ model: 'no-such-model', messages: [] }, { model: 'no-such-model' }]) {
    const r = await post('/api/chat', body);
    assert.equal(r.status, 404, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.json.error, /^model 'no-such-model' not found/);
  }
  const g = await post('/api/generate', { model: 'stories260K', prompt: '' });
  assert.equal(g.status, 200, g.text);
  assert.deepEqual([g.json.model, g.json.response, g.json.done, g.json.done_reason], ['stories260K', '', true, 'load']);
  const c = await post('/api/chat', { model: 'stories260K', messages: [] });
  assert.equal(c.status, 200, c.text);
  assert.deepEqual([c.json.model, c.json.message, c.json.done, c.json.done_reason],
    ['stories260K', { role: 'assistant', content: '' }, true, 'load']);
  // Still validated first; a chat with messages still generates.
  assert.equal((await post('/api/chat', { model: 'stories260K', messages: 'x' })).status, 400);
  assert.equal((await post('/api/generate', { prompt: '' })).status, 400);
  const real = await post('/api/chat', { model: 'stories260K', messages: [{ role: 'user', content: 'Hi' }], stream: false,
    options: { num_predict: 2 } });
  assert.equal(real.status, 200, real.text);
  assert.notEqual(real.json.done_reason, 'load');
});

// Read a streamed answer to its end (or until the connection breaks); resolves
// {status, text} and calls onData after each read.
async function readStream(srv, path, body, onData = () => {}) {
  const res = await fetch(srv.url + path, { method: 'POST', headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify(body) });
  let text = '';
  const dec = new TextDecoder();
  try {
    for await (const chunk of res.body) {
      text += dec.decode(chunk, { stream: true });
      onData(text);
    }
  } catch { /* cut: what arrived is the answer */ }
  return { status: res.status, text };
}

test('streams cut at the shutdown deadline end with their dialect\'s error frame; a waiting answer says why', async () => {
  const fake = await startFakeUpstream();
  // "slow" streams 100 pieces 20 ms apart: 2 s, longer than SHUTDOWN_TIMEOUT.
  const srv = await startServer({ OLLAMA_BASE_URL: fake.url, MODEL_BACKENDS: 'slow=ollama', CACHE_ENABLED: 'false',
    SHUTDOWN_TIMEOUT: '1' });
  try {
    const started = [];
    const stream = (path, body) => {
      let mark;
      started.push(new Promise((resolve) => { mark = resolve; }));
      return readStream(srv, path, body, (t) => { if (t.includes('tok1')) mark(); });
    };
    const simpleton = stream('/inference/generate', { model: 'slow', prompt: 'hi', stream: true });
    const openai = stream('/v1/chat/completions', { model: 'slow', messages: [{ role: 'user', content: 'hi' }], stream: true });
    const ollama = stream('/api/generate', { model: 'slow', prompt: 'hi' });
    const whole = req(srv, 'POST', '/inference/generate', { json: { model: 'slow', prompt: 'hi' } });
    await Promise.all(started);
    const exited = srv.stop('SIGTERM');
    const sse = (t) => t.trim().split('\n\n').map((f) => f.replace(/^data: /, ''));
    const s1 = await simpleton;
    assert.equal(s1.status, 200);
    const last1 = JSON.parse(sse(s1.text).at(-1));
    assert.match(last1.error, /shutting down/, s1.text.slice(-300));
    assert.equal(last1.status, 503);
    const s2 = await openai;
    const last2 = JSON.parse(sse(s2.text).at(-1));
    assert.match(last2.error.message, /shutting down/, s2.text.slice(-300));
    const s3 = await ollama;
    const last3 = JSON.parse(s3.text.trim().split('\n').at(-1));
    assert.match(last3.error, /shutting down/, s3.text.slice(-300));
    const w = await whole;
    assert.equal(w.status, 503, w.text);
    assert.match(w.json.detail, /shutting down/);
    assert.doesNotMatch(w.json.detail, /client left/);
    const r = await exited;
    assert.equal(r && r.code, 0, srv.stderr.slice(-2000));
  } finally {
    await srv.stop();
    fake.stop();
  }
});

test('an Ollama stream\'s frames are stamped in order: the final frame is not older than the pieces', async () => {
  for (const [route, body] of [['/api/generate', { prompt: 'Once upon a time' }],
    ['/api/chat', { messages: [{ role: 'user', content: 'Hi' }] }]]) {
    const r = await req(s, 'POST', route, { json: { model: 'stories260K', ...body, options: { num_predict: 12 } } });
    assert.equal(r.status, 200, r.text);
    const stamps = r.text.trim().split('\n').map((l) => JSON.parse(l).created_at);
    assert.ok(stamps.length > 2, r.text);
    for (let i = 1; i < stamps.length; i++)
      assert.ok(stamps[i] >= stamps[i - 1], `${route}: frame ${i} at ${stamps[i]} after ${stamps[i - 1]}`);
  }
});

test('prompt cache: a second chat turn computes only what is new, and answers as if it computed everything', async () => {
  const sys = { role: 'system', content: 'You are a storyteller who tells short tales. '.repeat(12) };
  const ask = (messages, extra = {}) => req(s, 'POST', '/v1/chat/completions',
    { json: { model: 'stories260K', temperature: 0, max_tokens: 24, messages, ...extra } });
  const turn1 = [sys, { role: 'user', content: 'Tell me about a cat.' }];
  const a = await ask(turn1);
  assert.equal(a.status, 200, a.text);
  const turn2 = [...turn1, a.json.choices[0].message, { role: 'user', content: 'And a dog?' }];
  const b = await ask(turn2);
  assert.equal(b.status, 200, b.text);
  const cached = b.json.usage.prompt_tokens_details.cached_tokens;
  // Everything up to the end of turn 1's prompt at least was reused.
  assert.ok(cached >= a.json.usage.prompt_tokens && cached < b.json.usage.prompt_tokens, JSON.stringify(b.json.usage));
  // The same turn on a fresh server (nothing to reuse) answers the same, streamed.
  const fresh = await startServer({ CACHE_ENABLED: 'false' });
  try {
    const c = await req(fresh, 'POST', '/v1/chat/completions', { json: { model: 'stories260K', temperature: 0,
      max_tokens: 24, messages: turn2, stream: true, stream_options: { include_usage: true } } });
    const frames = c.text.split('\n\n').filter((f) => f.startsWith('data: {')).map((f) => JSON.parse(f.slice(6)));
    assert.equal(frames.map((f) => f.choices[0]?.delta?.content || '').join(''), b.json.choices[0].message.content);
    assert.equal(frames.at(-1).usage.prompt_tokens_details.cached_tokens, 0);
  } finally {
    await fresh.stop();
  }
  // Another client with the same system prompt, in Ollama's dialect: only its own tokens are evaluated.
  const o = await req(s, 'POST', '/api/chat', { json: { model: 'stories260K', stream: false,
    options: { temperature: 0, num_predict: 4 }, messages: [sys, { role: 'user', content: 'Hi' }] } });
  assert.equal(o.status, 200, o.text);
  assert.ok(o.json.prompt_eval_count > 0 && o.json.prompt_eval_count < 20, `evaluated ${o.json.prompt_eval_count}`);
});

test('slots: /api/ps and /health show a loaded model\'s slots and how many are answering', async () => {
  const srv = await startServer({ CACHE_ENABLED: 'false', PARALLEL: '3' });
  try {
    assert.equal((await req(srv, 'POST', '/api/generate', { json: { model: 'stories260K', prompt: 'Hi', stream: false,
      options: { num_predict: 2 } } })).status, 200);
    let ps = await req(srv, 'GET', '/api/ps');
    assert.deepEqual(ps.json.models.find((m) => m.name === 'stories260K').slots, { slots: 3, busy: 0, queued: 0 });
    // While a long answer streams (its first piece read, the rest not), one slot is busy.
    const ctl = new AbortController();
    const r = await fetch(`${srv.url}/api/generate`, { method: 'POST', signal: ctl.signal,
      headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({ model: 'stories260K', prompt: 'Once', options: { num_predict: 100000, temperature: 1 } }) });
    const reader = r.body.getReader();
    await reader.read();
    ps = await req(srv, 'GET', '/api/ps');
    assert.equal(ps.json.models.find((m) => m.name === 'stories260K').slots.busy, 1, ps.text);
    const h = await req(srv, 'GET', '/health');
    assert.equal(h.json.backends.local.slots.stories260K.slots, 3, h.text);
    ctl.abort();
    // /metrics: passes by sequences advanced, and each request's wait for a slot.
    const m = (await req(srv, 'GET', '/metrics')).text;
    const count = (name) => Number((m.match(new RegExp(`^${name}_count\\{model="stories260K"\\} (\\d+)`, 'm')) || [])[1]);
    assert.ok(count('simpleton_llm_batch_sequences') >= 2, m);
    assert.ok(count('simpleton_llm_queue_wait_seconds') >= 2, m);
  } finally {
    await srv.stop();
  }
});
