// textgen.test.mjs - the text routes of every dialect with the built-in model:
// limits that must agree across dialects, and Ollama's "load the model" calls.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, req } from './lib.mjs';

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
