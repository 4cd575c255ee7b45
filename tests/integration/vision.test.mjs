// vision.test.mjs - the /vision routes through the real binary: Tesseract OCR
// of every image in ../shared/images (the known text, exact words), the
// bad-input list (non-image, truncated PNG, corrupt JPEG body, decompression
// bomb, 0-byte file, 200 MiB upload, wrong content type, bad base64, URLs),
// the 503 that names the missing vision model, chat with images routed to the
// text-only local engine, and, with the fake upstream as the vision backend,
// upload vs base64 giving the same answer and the prompt as form field or
// query parameter.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import crypto from 'node:crypto';
import { startServer, req, rawConnect, readAll, KEY } from './lib.mjs';

const DIR = '../shared/images/';
const INVOICE = 'Invoice 2041: total $318.40 Due date: 2026-12-01';
const SIGN = 'Simpleton reads this';
const KNOWN = {
  'invoice.png': INVOICE, 'invoice.jpg': INVOICE,
  'sign.png': SIGN, 'sign.webp': SIGN, 'sign.gif': SIGN, 'sign.bmp': SIGN, 'sign.tiff': SIGN,
  'tiny-gradient.png': '',
};
const norm = (s) => s.replace(/\s+/g, ' ').trim().toLowerCase();
const img = (name) => readFileSync(DIR + name);
const b64 = (buf) => buf.toString('base64');

let s;
before(async () => { s = await startServer({ CACHE_ENABLED: 'false', MAX_UPLOAD_MB: '100' }); });
after(async () => { await s.stop(); });

const post = (p, json, srv = s) => req(srv, 'POST', p, { json });

async function upload(srv, query, file, name, fields = {}, type = 'application/octet-stream') {
  const fd = new FormData();
  if (file) fd.append('file', new Blob([file], { type }), name);
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  const res = await fetch(`${srv.url}/vision/upload${query}`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, text, json, headers: res.headers };
}

// ---- test images with known faults ----

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xEDB88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function pngChunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

// 1x1 pixel of data, header claiming 50,000 x 50,000 (2.5 gigapixels).
function pngBomb() {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(50000, 0);
  ihdr.writeUInt32BE(50000, 4);
  ihdr[8] = 8; // 8-bit gray
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), pngChunk('IHDR', ihdr),
    pngChunk('IDAT', Buffer.from('789c63000000010001', 'hex')), pngChunk('IEND', Buffer.alloc(0))]);
}

function corruptJpeg() {
  const b = Buffer.from(img('invoice.jpg'));
  let x = 12345;
  for (let i = b.length >> 1; i < b.length - 2; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = (x >>> 16) & 0xff;
  }
  return b;
}

const BAD = [
  ['not-an-image.png', () => img('not-an-image.png'), 400, /Invalid image file: unrecognised format/],
  ['truncated PNG', () => img('sign.png').subarray(0, 7000), 400, /Invalid image file: .*truncated or corrupt/],
  ['PNG cut inside its header', () => img('sign.png').subarray(0, 20), 400, /Invalid image file: PNG file truncated/],
  ['JPEG with a corrupt body', corruptJpeg, 400, /Invalid image file: .*truncated or corrupt/],
  ['decompression bomb', pngBomb, 413, /50000 x 50000 .*MAX_IMAGE_MP/],
  ['0-byte file', () => Buffer.alloc(0), 400, /Invalid image file: the file is empty|image data is empty/],
];

// ---- OCR ----

test('ocr: every image in ../shared/images gives its known text (Tesseract, no model)', async () => {
  for (const [name, want] of Object.entries(KNOWN)) {
    const r = await post('/vision/ocr', { image: b64(img(name)) });
    assert.equal(r.status, 200, `${name}: ${r.text}`);
    assert.equal(norm(r.json.text), norm(want), name);
    assert.deepEqual(Object.keys(r.json).sort(), ['model', 'text']);
    assert.equal(r.json.model, 'tesseract');
  }
  // The data: prefix is accepted; "tesseract" names the in-process engine too.
  const r = await post('/vision/ocr', { image: `data:image/webp;base64,${b64(img('sign.webp'))}`, model: 'tesseract',
    language: 'eng' });
  assert.equal(r.status, 200, r.text);
  assert.equal(norm(r.json.text), norm(SIGN));
});

test('ocr: unknown language is 422 listing the installed ones', async () => {
  const r = await post('/vision/ocr', { image: b64(img('sign.png')), language: 'klingon' });
  assert.equal(r.status, 422, r.text);
  assert.match(JSON.stringify(r.json.detail), /klingon.*not installed.*eng/);
});

test('ocr: concurrent requests on the worker pool all get the right text', async () => {
  const names = Object.keys(KNOWN).filter((n) => KNOWN[n]);
  const rs = await Promise.all(names.concat(names).map((n) => post('/vision/ocr', { image: b64(img(n)) })));
  rs.forEach((r, i) => {
    assert.equal(r.status, 200, r.text);
    assert.equal(norm(r.json.text), norm(KNOWN[names[i % names.length]]));
  });
});

// ---- bad input ----

test('bad images: clear 4xx through base64 and upload alike', async () => {
  for (const [what, make, status, re] of BAD) {
    const data = make();
    const a = await post('/vision/ocr', { image: b64(data) });
    if (data.length === 0) {
      assert.equal(a.status, 422, `${what} (base64): ${a.text}`); // "image" must not be empty
    } else {
      assert.equal(a.status, status, `${what} (base64): ${a.text}`);
      assert.match(a.json.detail, re, what);
    }
    const u = await upload(s, '', data, 'x.png');
    assert.equal(u.status, status, `${what} (upload): ${u.text}`);
    assert.match(u.json.detail, re, what);
    if (data.length) assert.equal(u.json.detail, a.json.detail, `${what}: same message both ways`);
  }
});

test('bad base64, URLs and data URLs that are not images are 400', async () => {
  const good = b64(img('sign.png'));
  let r = await post('/vision/analyze', { image: good.slice(0, -2), prompt: 'x' });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.detail, /base64/);
  r = await post('/vision/analyze', { image: `${good.slice(0, 10)}*${good.slice(11)}`, prompt: 'x' });
  assert.equal(r.status, 400, r.text);
  r = await post('/vision/analyze', { image: 'https://example.com/cat.png', prompt: 'x' });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.detail, /no server-side fetching/);
  r = await post('/vision/caption', { image: `data:text/plain;base64,${good}` });
  assert.equal(r.status, 400, r.text);
});

test('validation: missing fields and unknown detail_level are 422', async () => {
  let r = await post('/vision/analyze', { image: b64(img('sign.png')) });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.detail[0].loc, ['body', 'prompt']);
  r = await post('/vision/caption', { image: b64(img('sign.png')), detail_level: 'extreme' });
  assert.equal(r.status, 422);
  assert.deepEqual(r.json.detail[0].loc, ['body', 'detail_level']);
  r = await post('/vision/ocr', {});
  assert.equal(r.status, 422);
  const u = await upload(s, '', null, null, { prompt: 'no file' });
  assert.equal(u.status, 422, u.text);
  assert.deepEqual(u.json.detail[0].loc, ['body', 'file']);
});

test('wrong content type: an upload that is not multipart is 415, a JSON route given a form is 422', async () => {
  let r = await req(s, 'POST', '/vision/upload', { headers: { 'Content-Type': 'image/png' }, body: img('sign.png') });
  assert.equal(r.status, 415, r.text);
  assert.match(r.json.detail, /multipart\/form-data/);
  const fd = new FormData();
  fd.append('image', 'abc');
  const res = await fetch(`${s.url}/vision/ocr`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd });
  assert.equal(res.status, 422);
});

test('a 200 MiB upload gets 413 from its Content-Length, before any of the body is sent', async () => {
  const sock = await rawConnect(s.port);
  const t0 = Date.now();
  sock.write(`POST /vision/upload HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n` +
    `Content-Type: multipart/form-data; boundary=B\r\nContent-Length: ${200 * 1024 * 1024}\r\n\r\n`);
  const { data } = await readAll(sock, 5000);
  sock.destroy();
  assert.match(data, /^HTTP\/1\.1 413/);
  assert.match(data, /MAX_UPLOAD_MB/);
  assert.ok(Date.now() - t0 < 2000, 'answered at once');
});

// ---- vision models ----

test('no vision backend: 503 naming the model and how to configure one', async () => {
  const image = b64(img('sign.png'));
  const rs = [
    await post('/vision/analyze', { image, prompt: 'What is this?' }),
    await post('/vision/caption', { image }),
    await post('/vision/ocr', { image, model: 'llava' }),
    await upload(s, '', img('sign.png'), 'sign.png'),
  ];
  for (const r of rs) {
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.detail, /vision model 'llava'/);
    assert.match(r.json.detail, /OLLAMA_BASE_URL/);
    assert.match(r.json.detail, /OPENAI_BASE_URL/);
    assert.match(r.json.detail, /MODEL_BACKENDS/);
  }
  const r = await post('/vision/analyze', { image, prompt: 'x', model: 'bakllava' });
  assert.match(r.json.detail, /'bakllava'/);
});

test('images sent to the text-only local engine: 503, never ignored (also chat routes)', async () => {
  const image = b64(img('sign.png'));
  let r = await post('/vision/analyze', { image, prompt: 'What is this?', model: 'stories260K' });
  assert.equal(r.status, 503, r.text);
  assert.match(r.json.detail, /cannot read images/);
  r = await post('/inference/chat', { model: 'stories260K', messages: [{ role: 'user', content: 'hi', images: [image] }] });
  assert.equal(r.status, 503, r.text);
  assert.match(r.json.detail, /cannot read images/);
  r = await post('/v1/chat/completions', { model: 'stories260K', messages: [{ role: 'user', content: [
    { type: 'text', text: 'hi' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${image}` } }] }] });
  assert.equal(r.status, 503, r.text);
  assert.match(r.json.error.message, /cannot read images/);
  // Without images the same model still answers.
  r = await post('/inference/chat', { model: 'stories260K', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 });
  assert.equal(r.status, 200, r.text);
});

async function startFake() {
  const proc = spawn('node', ['tests/e2e/fake_upstream.mjs', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    proc.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    proc.once('exit', () => reject(new Error('fake upstream died')));
  });
  return { proc, url: `http://127.0.0.1:${port}`, stop: () => proc.kill('SIGKILL') };
}

const reverse = (t) => [...t].reverse().join('');
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

test('with a vision backend: upload and base64 give the same answer; prompt as form field or query', async () => {
  const fake = await startFake();
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url, MODEL_BACKENDS: 'llava=ollama', CACHE_ENABLED: 'false' });
  try {
    for (const name of ['sign.png', 'invoice.jpg', 'sign.gif']) {
      const data = img(name);
      const want = `${reverse('What does it say?')} img:${sha(data)}`;
      const a = await post('/vision/analyze', { image: b64(data), prompt: 'What does it say?' }, gw);
      assert.equal(a.status, 200, a.text);
      assert.equal(a.json.response, want);
      assert.equal(a.json.model, 'llava');
      assert.equal(a.json.done, true);
      assert.equal(typeof a.json.total_duration, 'number');
      assert.equal(typeof a.json.eval_count, 'number');
      const f = await upload(gw, '', data, name, { prompt: 'What does it say?' });
      assert.equal(f.status, 200, f.text);
      assert.equal(f.json.response, a.json.response, 'form-field prompt');
      assert.equal(f.json.filename, name);
      const q = await upload(gw, `?prompt=${encodeURIComponent('What does it say?')}&model=llava`, data, name);
      assert.equal(q.status, 200, q.text);
      assert.equal(q.json.response, a.json.response, 'query-parameter prompt');
    }
    const d = await upload(gw, '', img('sign.png'), 'sign.png');
    assert.equal(d.json.response, `${reverse('Describe this image')} img:${sha(img('sign.png'))}`, 'default prompt');
  } finally {
    await gw.stop();
    fake.stop();
  }
});

test('vision requests are counted in /metrics and /analytics', async () => {
  await post('/vision/ocr', { image: b64(img('sign.png')) });
  const m = await req(s, 'GET', '/metrics');
  assert.match(m.text, /simpleton_requests_total\{[^}]*endpoint="\/vision\/ocr"[^}]*\} [1-9]/);
  assert.match(m.text, /simpleton_requests_total\{[^}]*endpoint="\/vision\/upload"/);
  const a = await req(s, 'GET', '/analytics/stats');
  assert.ok(a.json.metrics.endpoint_breakdown['POST /vision/ocr'].requests >= 1);
});
