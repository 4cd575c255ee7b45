// vision.test.mjs - the /vision routes through the real binary: Tesseract OCR
// of every image in ../shared/images (the known text, exact words), OCR
// stopped by OCR_TIMEOUT_S and by a client that leaves (a page of noise), the
// bad-input list (non-image, truncated PNG, corrupt JPEG body, decompression
// bomb, a TIFF giving its size twice, 0-byte file, 200 MiB upload, a chunked
// upload past MAX_UPLOAD_MB, wrong content type, bad base64, URLs, over-long
// model names), chat images checked like vision images in both dialects, the
// memory budget (HEAVY_JOB_MEMORY_MB) refusing a page too large for it, the
// 503 that names the missing vision model, chat with images routed to the
// text-only local engine, and,
// with the fake upstream as the vision backend, upload vs base64 giving the
// same answer, the prompt as form field or query parameter, and upload file
// names that are not UTF-8 or too long.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import crypto from 'node:crypto';
import zlib from 'node:zlib';
import { startServer, startFakeUpstream, req, rawConnect, readAll, sleep, waitLog, KEY } from './lib.mjs';

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

// A size x size page of 1-bit noise: Tesseract spends about 1 s on its
// layout and then several seconds (7.5 s for 1400 x 1400 on one core) on
// "words", so a stop is seen long before the end.
function noisePng(size) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 1; // 1-bit gray
  const stride = 1 + Math.ceil(size / 8);
  const raw = Buffer.alloc(stride * size); // filter byte 0 on every row
  let x = 42;
  for (let y = 0; y < size; y++) {
    for (let i = 1; i < stride; i++) {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      raw[y * stride + i] = (x >>> 16) & 0xff;
    }
  }
  return Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), pngChunk('IHDR', ihdr),
    pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))]);
}

// A 16 x 8 8-bit gray TIFF (left half black), little-endian, uncompressed;
// `before` and `after` are [tag, type (3 SHORT, 4 LONG), value] entries put
// around its own in the directory.
function tiff(before = [], after = []) {
  const own = [[256, 3, 16], [257, 3, 8], [258, 3, 8], [259, 3, 1], [262, 3, 1], [273, 4, 0], [277, 3, 1],
    [278, 3, 8], [279, 4, 128]];
  const entries = [...before, ...own, ...after];
  const dataOff = 8 + 2 + entries.length * 12 + 4;
  const b = Buffer.alloc(dataOff + 128);
  b.write('II', 0, 'ascii');
  b.writeUInt16LE(42, 2);
  b.writeUInt32LE(8, 4);
  b.writeUInt16LE(entries.length, 8);
  entries.forEach(([tag, type, v], i) => {
    const at = 10 + i * 12;
    b.writeUInt16LE(tag, at);
    b.writeUInt16LE(type, at + 2);
    b.writeUInt32LE(1, at + 4);
    if (tag === 273) v = dataOff;
    if (type === 3) b.writeUInt16LE(v, at + 8); else b.writeUInt32LE(v, at + 8);
  });
  for (let i = 0; i < 128; i++) b[dataOff + i] = i % 16 < 8 ? 0 : 255;
  return b;
}
// libtiff reads the first of repeated tags: 20000 x 20000 first and 16 x 8
// after once passed the limit as 16 x 8 and made the server allocate 400 MB.
const HUGE_SIZE = [[256, 4, 20000], [257, 4, 20000]];

const BAD = [
  ['TIFF giving its size twice, huge first', () => tiff(HUGE_SIZE, []), 400,
    /Invalid image file: TIFF file gives ImageWidth twice with different values \(20000 and 16\); refused as ambiguous/],
  ['TIFF giving its size twice, huge last', () => tiff([], HUGE_SIZE), 400,
    /Invalid image file: TIFF file gives ImageWidth twice with different values \(16 and 20000\); refused as ambiguous/],
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

test('ocr: a TIFF without repeated tags is read (the file the bad-image list repeats tags of)', async () => {
  const r = await post('/vision/ocr', { image: b64(tiff()) });
  assert.equal(r.status, 200, r.text);
});

// The decoded pixels are reserved from HEAVY_JOB_MEMORY_MB (16 bytes a pixel
// for OCR): with 1 MB, a 900 x 220 page (3.2 MB) is refused with a 503
// naming the setting, a 64 x 64 image (64 KB) is read.
test('ocr: an image whose pixels exceed HEAVY_JOB_MEMORY_MB is 503 naming the setting', async () => {
  const srv = await startServer({ CACHE_ENABLED: 'false', HEAVY_JOB_MEMORY_MB: '1' });
  try {
    let r = await post('/vision/ocr', { image: b64(img('invoice.png')) }, srv);
    assert.equal(r.status, 503, r.text);
    assert.match(r.text, /decoding this image needs about 4 MB .*HEAVY_JOB_MEMORY_MB = 1/);
    r = await post('/vision/ocr', { image: b64(img('tiny-gradient.png')) }, srv);
    assert.equal(r.status, 200, r.text);
  } finally {
    await srv.stop();
  }
});

test('ocr: unknown language is 422 listing the installed ones', async () => {
  const r = await post('/vision/ocr', { image: b64(img('sign.png')), language: 'klingon' });
  assert.equal(r.status, 422, r.text);
  assert.match(JSON.stringify(r.json.detail), /klingon.*not installed.*eng/);
});

test('ocr: a client that leaves stops its OCR (the log shows it ended early)', async () => {
  const ac = new AbortController();
  const body = JSON.stringify({ image: b64(noisePng(1400)) });
  const p = fetch(`${s.url}/vision/ocr`, { method: 'POST', body, signal: ac.signal,
    headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' } }).catch((e) => e);
  await sleep(600); // decoded and inside Tesseract by now
  const t0 = Date.now();
  ac.abort();
  await p;
  assert.ok(await waitLog(s, /ocr: stopped after \d+ ms: the client left/, 6000), 'the OCR ran on');
  assert.ok(await waitLog(s, /POST \/vision\/ocr 503 /, 1000), s.stderr.slice(-2000));
  assert.ok(Date.now() - t0 < 6000);
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

test('OCR_TIMEOUT_S stops a long OCR with a clear 408; the worker then serves the next one', async () => {
  // One worker: the request after the stopped one runs on the same thread
  // and the same Tesseract handle.
  const lim = await startServer({ CACHE_ENABLED: 'false', OCR_TIMEOUT_S: '1', REQUEST_WORKERS: '1' });
  try {
    const t0 = Date.now();
    const r = await post('/vision/ocr', { image: b64(noisePng(1400)) }, lim);
    const took = Date.now() - t0;
    assert.equal(r.status, 408, r.text);
    assert.match(r.json.detail, /OCR took longer than its limit of 1 s \(OCR_TIMEOUT_S\)/);
    assert.ok(took < 5000, `answered after ${took} ms`); // the whole OCR takes about 7.5 s
    const ok = await post('/vision/ocr', { image: b64(img('sign.png')) }, lim);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(norm(ok.json.text), norm(SIGN));
  } finally {
    await lim.stop();
  }
});

test('a chunked upload past MAX_UPLOAD_MB gets its 413 while the client is still sending', async () => {
  const small = await startServer({ CACHE_ENABLED: 'false', MAX_UPLOAD_MB: '1' });
  try {
    const sock = await rawConnect(small.port);
    sock.on('error', () => {});
    let got = '';
    sock.on('data', (d) => { got += d.toString('latin1'); });
    sock.write(`POST /vision/upload HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n` +
      'Content-Type: multipart/form-data; boundary=B\r\nTransfer-Encoding: chunked\r\n\r\n');
    const head = '--B\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n\r\n';
    sock.write(`${Buffer.byteLength(head).toString(16)}\r\n${head}\r\n`);
    const chunk = 'x'.repeat(256 * 1024);
    let sent = 0;
    // Keep sending (up to 64 MiB) until the answer shows up; never end the body.
    while (!got.endsWith('}') && sent < (64 << 20) && !sock.destroyed) {
      // Count what the server could take: wait for the socket to drain
      // rather than queue megabytes in this process on a busy machine.
      if (!sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`)) {
        await Promise.race([new Promise((r) => sock.once('drain', r)), sleep(200)]);
      }
      sent += chunk.length;
      await sleep(2);
    }
    sock.destroy();
    assert.match(got, /^HTTP\/1\.1 413/);
    assert.ok(sent < (4 << 20), `answered only after ${sent} bytes`);
    assert.match(JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4)).detail, /MAX_UPLOAD_MB/);
  } finally {
    await small.stop();
  }
});

test('chat images are checked like vision images: not an image, bomb, bad types', async () => {
  const good = b64(img('sign.png'));
  // Simpleton dialect: 422 naming the message and the image.
  let r = await post('/inference/chat', { messages: [{ role: 'user', content: 'hi', images: ['QUJDRA=='] }] });
  assert.equal(r.status, 422, r.text);
  assert.deepEqual(r.json.detail[0].loc, ['body', 'messages.0.images.0']);
  assert.match(r.json.detail[0].msg, /^Invalid image file: unrecognised format/);
  r = await post('/inference/chat', { messages: [{ role: 'user', content: 'a' },
    { role: 'user', content: 'b', images: [good, b64(pngBomb())] }] });
  assert.equal(r.status, 422, r.text);
  assert.deepEqual(r.json.detail[0].loc, ['body', 'messages.1.images.1']);
  assert.match(r.json.detail[0].msg, /50000 x 50000 .*MAX_IMAGE_MP/);
  r = await post('/inference/chat', { messages: [{ role: 'user', content: 'a', images: [`data:text/plain;base64,${good}`] }] });
  assert.equal(r.status, 422, r.text);
  assert.match(r.json.detail[0].msg, /data:image/);
  // Ollama dialect, same parser: 400.
  r = await post('/api/chat', { model: 'x', messages: [{ role: 'user', content: 'hi', images: ['QUJDRA=='] }] });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error, /messages\.0\.images\.0: Invalid image file/);
  // OpenAI dialect: 400 naming the part.
  const chat = (part) => post('/v1/chat/completions', { model: 'x', messages: [{ role: 'user',
    content: [{ type: 'text', text: 'hi' }, part] }] });
  r = await chat({ type: 'image_url', image_url: { url: 'data:image/png;base64,QUJDRA==' } });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /^messages\.0\.content\.1\.image_url: Invalid image file: unrecognised format/);
  r = await chat({ type: 'image_url', image_url: `data:image/png;base64,${b64(img('not-an-image.png'))}` });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /Invalid image file/);
  r = await chat({ type: 'image_url', image_url: 5 });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /image_url should be an object/);
  r = await chat({ type: 'image_url', image_url: { url: 5 } });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /image_url\.url should be a string/);
  r = await chat({ type: 'image_url' });
  assert.equal(r.status, 400, r.text);
  assert.doesNotMatch(r.json.error.message, /Only data: URLs/);
  r = await chat({ type: 'image_url', image_url: { url: 'https://example.com/cat.png' } });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /Only data: URLs/);
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

test('model: a wrong type is reported once; over 199 bytes is string_too_long, never cut', async () => {
  const image = b64(img('sign.png'));
  let r = await post('/vision/ocr', { image, model: {} });
  assert.equal(r.status, 422, r.text);
  assert.equal(r.json.detail.length, 1, r.text);
  assert.deepEqual(r.json.detail[0].loc, ['body', 'model']);
  const long = 'm'.repeat(200);
  for (const p of ['/vision/analyze', '/vision/caption', '/vision/ocr']) {
    r = await post(p, { image, model: long, ...(p === '/vision/analyze' && { prompt: 'x' }) });
    assert.equal(r.status, 422, `${p}: ${r.text}`);
    assert.equal(r.json.detail[0].type, 'string_too_long');
    assert.match(r.json.detail[0].msg, /at most 199 bytes/);
  }
  // 199 bytes is a name like any other (no backend has it: 503 naming it whole).
  r = await post('/vision/analyze', { image, prompt: 'x', model: long.slice(1) });
  assert.equal(r.status, 503, r.text);
  assert.ok(r.json.detail.includes(`'${long.slice(1)}'`));
  // Multi-byte names are counted in bytes and refused rather than cut inside a character.
  r = await post('/vision/caption', { image, model: 'é'.repeat(100) });
  assert.equal(r.status, 422, r.text);
  const u = await upload(s, '', img('sign.png'), 'sign.png', { model: long });
  assert.equal(u.status, 422, u.text);
  assert.equal(u.json.detail[0].type, 'string_too_long');
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

const reverse = (t) => [...t].reverse().join('');
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');

test('with a vision backend: upload and base64 give the same answer; prompt as form field or query', async () => {
  const fake = await startFakeUpstream();
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
    // File names that are not UTF-8, or too long, still come back (as valid
    // UTF-8, at most 255 bytes, cut between characters).
    const names = [
      [Buffer.from([0xff, 0x70, 0x68, 0x6f, 0x74, 0x6f, 0xc3, 0x2e, 0x70, 0x6e, 0x67]), '\ufffdphoto\ufffd.png'],
      [Buffer.from('é'.repeat(200)), 'é'.repeat(127)],
      [Buffer.from(`a${'€'.repeat(100)}`), `a${'€'.repeat(84)}`],
    ];
    for (const [raw, want] of names) {
      const body = Buffer.concat([Buffer.from('--B\r\nContent-Disposition: form-data; name="file"; filename="'), raw,
        Buffer.from('"\r\nContent-Type: image/png\r\n\r\n'), img('sign.png'), Buffer.from('\r\n--B--\r\n')]);
      const res = await fetch(`${gw.url}/vision/upload`, { method: 'POST', body,
        headers: { 'X-API-Key': KEY, 'Content-Type': 'multipart/form-data; boundary=B' } });
      const j = await res.json();
      assert.equal(res.status, 200, JSON.stringify(j));
      assert.equal(j.filename, want);
      assert.ok(Buffer.byteLength(j.filename) <= 255);
    }
  } finally {
    await gw.stop();
    fake.stop();
  }
});

test('answers are cached by image and options: X-Cache MISS then HIT, no-cache bypasses, errors never', async () => {
  const fake = await startFakeUpstream();
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url, MODEL_BACKENDS: 'llava=ollama' });
  const metric = async (re) => {
    const m = (await req(gw, 'GET', '/metrics', { key: null })).text.match(re);
    return m ? Number(m[1]) : 0;
  };
  const hits = () => metric(/simpleton_cache_hits_total\{cache_type="vision"\} (\d+)/);
  const upstream = () => metric(/simpleton_llm_requests_total\{model="llava",endpoint="\/vision\/analyze"\} (\d+)/);
  const nc = (p, json) => req(gw, 'POST', p, { json, headers: { 'Cache-Control': 'no-cache' } });
  try {
    // In-process OCR.
    const a = await post('/vision/ocr', { image: b64(img('sign.png')) }, gw);
    assert.equal(a.status, 200, a.text);
    assert.equal(a.headers.get('x-cache'), 'MISS');
    const b = await post('/vision/ocr', { image: b64(img('sign.png')) }, gw);
    assert.equal(b.headers.get('x-cache'), 'HIT');
    assert.equal(b.text, a.text);
    assert.equal(await hits(), 1);
    // Another image, the same request otherwise: a miss.
    const c = await post('/vision/ocr', { image: b64(img('invoice.png')) }, gw);
    assert.equal(c.headers.get('x-cache'), 'MISS');
    assert.equal(norm(c.json.text), norm(INVOICE));
    // no-cache: computed, not marked.
    const d = await nc('/vision/ocr', { image: b64(img('sign.png')) });
    assert.equal(d.status, 200);
    assert.equal(d.headers.get('x-cache'), null);
    assert.equal(await hits(), 1);
    // Errors are not cached: a corrupt JPEG is a 400 every time.
    for (let i = 0; i < 2; i++) {
      const e = await post('/vision/ocr', { image: b64(corruptJpeg()) }, gw);
      assert.equal(e.status, 400, e.text);
      assert.equal(e.headers.get('x-cache'), null);
    }
    // Through a backend: the second identical request does not reach it.
    const q = { image: b64(img('sign.png')), prompt: 'What does it say?', model: 'llava' };
    const f = await post('/vision/analyze', q, gw);
    assert.equal(f.status, 200, f.text);
    assert.equal(f.headers.get('x-cache'), 'MISS');
    const g = await post('/vision/analyze', q, gw);
    assert.equal(g.headers.get('x-cache'), 'HIT');
    assert.deepEqual(g.json, f.json);
    assert.equal(await upstream(), 1);
    // Any changed field is a miss: prompt, temperature; a caption of the same image is its own entry.
    for (const change of [{ prompt: 'And now?' }, { temperature: 0.1 }]) {
      const h = await post('/vision/analyze', { ...q, ...change }, gw);
      assert.equal(h.headers.get('x-cache'), 'MISS', JSON.stringify(change));
    }
    assert.equal(await upstream(), 3);
    const cap = await post('/vision/caption', { image: q.image, model: 'llava' }, gw);
    assert.equal(cap.headers.get('x-cache'), 'MISS');
    assert.ok('caption' in cap.json);
    // Uploads: the file name is part of the answer, so of the key.
    const u1 = await upload(gw, '?model=llava', img('sign.png'), 'one.png');
    const u2 = await upload(gw, '?model=llava', img('sign.png'), 'one.png');
    const u3 = await upload(gw, '?model=llava', img('sign.png'), 'two.png');
    assert.deepEqual([u1, u2, u3].map((u) => u.headers.get('x-cache')), ['MISS', 'HIT', 'MISS']);
    assert.equal(u2.json.filename, 'one.png');
    assert.equal(u3.json.filename, 'two.png');
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
