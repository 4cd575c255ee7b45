// vision.test.mjs - the vision-model path end to end: /vision/analyze,
// /vision/caption, /vision/ocr (with a model) and /vision/upload, and chat
// with images, through the Ollama backend and the OpenAI backend against the
// stand-in upstream (fake_upstream.mjs). The stand-in answers a chat with the
// prompt reversed and the SHA-256 of every image it received after decoding
// its base64 (OpenAI: with the data URL's MIME type), so each test checks that
// the very bytes of the file arrived, for every image format.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import crypto from 'node:crypto';
import { startServer, startFakeUpstream, req, KEY } from '../integration/lib.mjs';

const DIR = '../shared/images/';
const FILES = { 'sign.png': 'image/png', 'invoice.jpg': 'image/jpeg', 'sign.gif': 'image/gif',
  'sign.webp': 'image/webp', 'sign.bmp': 'image/bmp', 'sign.tiff': 'image/tiff' };
const img = (name) => readFileSync(DIR + name);
const reverse = (t) => [...t].reverse().join('');
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

let fake;
before(async () => { fake = await startFakeUpstream(); });
after(() => { fake.stop(); });

async function upload(srv, query, file, name, fields = {}) {
  const fd = new FormData();
  fd.append('file', new Blob([file], { type: 'application/octet-stream' }), name);
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  const res = await fetch(`${srv.url}/vision/upload${query}`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd });
  return { status: res.status, text: await res.clone().text(), json: await res.json().catch(() => null),
    served: res.headers.get('x-served-by') };
}

const post = (srv, p, json) => req(srv, 'POST', p, { json });

// What the stand-in answers for one prompt and one image.
function expected(kind, prompt, name) {
  const data = img(name);
  return kind === 'openai' ? `${reverse(prompt)} img:${FILES[name]}:${sha(data)}` : `${reverse(prompt)} img:${sha(data)}`;
}

const CAPTION = {
  brief: 'Describe this image in one short sentence.',
  normal: 'Describe this image in two or three sentences.',
};

for (const kind of ['ollama', 'openai']) {
  const env = () => (kind === 'ollama'
    ? { OLLAMA_BASE_URL: fake.url }
    : { OPENAI_BASE_URL: `${fake.url}/v1`, OPENAI_API_KEY: 'sk-test' });

  test(`${kind}: every image format reaches the upstream intact through every vision route`, async () => {
    const gw = await startServer({ ...env(), MODEL_BACKENDS: `llava=${kind},my-vlm=${kind}`, CACHE_ENABLED: 'false' });
    try {
      for (const name of Object.keys(FILES)) {
        const data = img(name);
        const image = data.toString('base64');
        const a = await post(gw, '/vision/analyze', { image, prompt: 'What is written here?' });
        assert.equal(a.status, 200, `${name}: ${a.text}`);
        assert.equal(a.headers.get('x-served-by'), kind);
        assert.equal(a.json.response, expected(kind, 'What is written here?', name), name);
        assert.equal(a.json.model, 'llava');
        assert.equal(a.json.done, true);
        // The same with a data: URL prefix.
        const p = await post(gw, '/vision/analyze', { image: `data:${FILES[name]};base64,${image}`,
          prompt: 'What is written here?' });
        assert.equal(p.json.response, a.json.response);
        const u = await upload(gw, '', data, name, { prompt: 'What is written here?' });
        assert.equal(u.status, 200, u.text);
        assert.equal(u.json.response, a.json.response, `${name}: upload and base64 agree`);
        assert.equal(u.served, kind);
      }
      const image = img('sign.png').toString('base64');
      for (const [level, prompt] of Object.entries(CAPTION)) {
        const c = await post(gw, '/vision/caption', { image, detail_level: level });
        assert.equal(c.status, 200, c.text);
        assert.deepEqual(Object.keys(c.json).sort(), ['caption', 'model']);
        assert.equal(c.json.caption, expected(kind, prompt, 'sign.png'));
      }
      const d = await post(gw, '/vision/caption', { image, detail_level: 'detailed' });
      assert.match(d.json.caption, new RegExp(`img:.*${sha(img('sign.png'))}$`));
      assert.ok(d.json.caption.length > CAPTION.normal.length);
      const o = await post(gw, '/vision/ocr', { image, model: 'my-vlm' });
      assert.equal(o.status, 200, o.text);
      assert.deepEqual(Object.keys(o.json).sort(), ['model', 'text']);
      assert.equal(o.json.model, 'my-vlm');
      assert.match(o.json.text, new RegExp(`img:.*${sha(img('sign.png'))}$`));
      const q = await upload(gw, '?prompt=Read%20it&model=my-vlm', img('invoice.jpg'), 'invoice.jpg');
      assert.equal(q.status, 200, q.text);
      assert.equal(q.json.response, expected(kind, 'Read it', 'invoice.jpg'));
      assert.equal(q.json.model, 'my-vlm');
      // Chat with images in both dialects is routed the same way.
      const ch = await post(gw, '/inference/chat', { model: 'llava', messages: [{ role: 'user', content: 'Hi there',
        images: [image] }] });
      assert.equal(ch.status, 200, ch.text);
      assert.equal(ch.json.message.content, expected(kind, 'Hi there', 'sign.png'));
      const oc = await post(gw, '/v1/chat/completions', { model: 'llava', messages: [{ role: 'user', content: [
        { type: 'text', text: 'Hi there' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${image}` } }] }] });
      assert.equal(oc.status, 200, oc.text);
      assert.equal(oc.json.choices[0].message.content, expected(kind, 'Hi there', 'sign.png'));
      // Ollama's /api/generate with images: the images go along, not dropped.
      const og = await post(gw, '/api/generate', { model: 'llava', prompt: 'Hi there', images: [image], stream: false });
      assert.equal(og.status, 200, og.text);
      assert.equal(og.json.response, expected(kind, 'Hi there', 'sign.png'));
      const bad = await post(gw, '/api/generate', { model: 'llava', prompt: 'Hi', images: ['QUJDRA=='], stream: false });
      assert.equal(bad.status, 400, bad.text);
      assert.match(bad.json.error, /image/i);
    } finally { await gw.stop(); }
  });

  test(`${kind}: an upstream failure is a clear error, never a wrong answer`, async () => {
    const gw = await startServer({ ...env(), MODEL_BACKENDS: `fault-500=${kind}`, CACHE_ENABLED: 'false',
      UPSTREAM_TIMEOUT: '2' });
    try {
      const image = img('sign.png').toString('base64');
      const r = await post(gw, '/vision/analyze', { image, prompt: 'x', model: 'fault-500' });
      assert.equal(r.status, 502, r.text);
      // The default vision model is not routed anywhere here: 503 naming it.
      const n = await post(gw, '/vision/caption', { image });
      assert.equal(n.status, 503, n.text);
      assert.match(n.json.detail, /'llava'/);
    } finally { await gw.stop(); }
  });
}
