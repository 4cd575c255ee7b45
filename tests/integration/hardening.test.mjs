// hardening.test.mjs - what a hostile client tries (issue #12): request
// memory with no fixed cap, HTTP framing that could smuggle a request,
// connections that would lock others out, amplification through counts,
// and the small leaks of the public surface. Every case here failed on the
// build before its fix.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startServer, startFakeUpstream, req, rawConnect, readAll, sleep, KEY } from './lib.mjs';

const IMG = readFileSync('../shared/images/sign.png');
const B64 = IMG.toString('base64');

let fake, s;
before(async () => {
  fake = await startFakeUpstream();
  s = await startServer({ OLLAMA_BASE_URL: fake.url, OPENAI_BASE_URL: `${fake.url}/v1`,
    MODEL_BACKENDS: 'llava=ollama,gpt-4o=openai', CACHE_ENABLED: 'false' });
});
after(async () => { await s.stop(); fake.stop(); });

const post = (p, json, opts = {}) => req(s, 'POST', p, { json, ...opts });
const lastUpstream = async () => (await fetch(`${fake.url}/__last`)).json();

// ---- 1. request memory has no fixed cap --------------------------------------

test('chat with an image in each of 12 messages: every image reaches the upstream (/inference/chat, /api/chat)', async () => {
  const messages = [];
  for (let i = 0; i < 12; i++) messages.push({ role: i % 2 ? 'assistant' : 'user', content: `turn ${i}`, images: [B64] });
  for (const route of ['/inference/chat', '/api/chat']) {
    const r = await post(route, { model: 'llava', messages, stream: false });
    assert.equal(r.status, 200, `${route}: ${r.text}`);
    const up = await lastUpstream();
    assert.equal(up.body.messages.length, 12);
    up.body.messages.forEach((m, i) => {
      assert.equal(m.content, `turn ${i}`);
      assert.deepEqual(m.images, [B64], `${route}: message ${i} image`);
    });
  }
});

test('OpenAI chat with array content in 20 messages: the upstream gets every text and image', async () => {
  const messages = [];
  for (let i = 0; i < 20; i++) {
    messages.push({ role: 'user', content: [
      { type: 'text', text: `part A of ${i}` }, { type: 'text', text: `part B of ${i}` },
      { type: 'image_url', image_url: { url: `data:image/png;base64,${B64}` } }] });
  }
  const r = await post('/v1/chat/completions', { model: 'gpt-4o', messages });
  assert.equal(r.status, 200, r.text);
  const up = await lastUpstream();
  assert.equal(up.body.messages.length, 20);
  up.body.messages.forEach((m, i) => {
    const parts = Array.isArray(m.content) ? m.content : [{ type: 'text', text: m.content }];
    const text = parts.filter((p) => p.type === 'text').map((p) => p.text).join('\n');
    assert.equal(text, `part A of ${i}\npart B of ${i}`, `message ${i}`);
    const urls = parts.filter((p) => p.type === 'image_url').map((p) => p.image_url.url);
    assert.deepEqual(urls, [`data:image/png;base64,${B64}`], `message ${i} image`);
  });
});
