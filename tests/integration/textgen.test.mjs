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
