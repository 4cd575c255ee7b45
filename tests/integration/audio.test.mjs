// audio.test.mjs - speech to text through the real binary with the random
// tiny64 Whisper models of ../shared/models/whisper:
//   formats: jfk.wav converted with the ffmpeg CLI to mp3, m4a, flac, ogg
//     (opus) and webm gives the same log-mel as the wav (`simpleton mel`),
//     and every format transcribes through the upload route;
//   the base64 and upload paths agree (also with a data: URL prefix);
//   bad input: random bytes, truncated mp3, a text file named .wav, an empty
//     file, silence, over MAX_AUDIO_SECONDS, a 2 h file, broken base64;
//   model download from a local HTTP server (truncated, failed, good,
//     concurrent requests share one download);
//   forwarding to an OpenAI-compatible stand-in that checks the uploaded bytes;
//   the OpenAI routes' response_format variants and error shape;
//   bad model files (503, not "Invalid audio"), GGUF names, unknown
//   languages (422 list / OpenAI 400), a download the client abandons, the
//   transcribe route's task translate shape, and the `simpleton transcribe` CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, mkdirSync, symlinkSync, readFileSync, writeFileSync, readdirSync, existsSync, rmSync,
  statSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { startServer, req, waitLog, sleep, BIN, KEY } from './lib.mjs';

const SHARED = path.resolve('../shared');
const JFK = path.join(SHARED, 'audio/jfk.wav');
const WMODELS = path.join(SHARED, 'models/whisper');
const MODEL = 'whisper-rand-tiny64-f16';
const T = 60000; // no request may take longer than this: nothing hangs

let tmp, modelsDir, s;

function modelsWithSymlinks(dir) {
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(WMODELS)) if (f.endsWith('.bin')) symlinkSync(path.join(WMODELS, f), path.join(dir, f));
  return dir;
}

function ffmpeg(args) {
  execFileSync('ffmpeg', ['-v', 'error', '-y', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

// Convert jfk.wav once per format (quality well above what speech needs, as users send).
const FORMATS = {
  mp3: ['-c:a', 'libmp3lame', '-b:a', '96k'],
  m4a: ['-c:a', 'aac', '-b:a', '96k'],
  flac: ['-c:a', 'flac'],
  ogg: ['-c:a', 'libopus', '-b:a', '48k'],
  webm: ['-c:a', 'libopus', '-b:a', '48k'],
};
const files = {};

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'smp-audio-'));
  modelsDir = modelsWithSymlinks(path.join(tmp, 'models'));
  for (const [ext, args] of Object.entries(FORMATS)) {
    files[ext] = path.join(tmp, `jfk.${ext}`);
    ffmpeg(['-i', JFK, ...args, files[ext]]);
  }
  s = await startServer({ MODELS_DIR: modelsDir, DEFAULT_AUDIO_MODEL: MODEL, WHISPER_DOWNLOAD_URL: '' });
});
after(async () => {
  await s?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

async function upload(srv, route, filename, data, fields = {},
  { query = '', type = 'application/octet-stream', headers = {} } = {}) {
  const fd = new FormData();
  fd.append('file', new Blob([data], { type }), filename);
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  const res = await fetch(`${srv.url}${route}${query}`, { method: 'POST', headers: { 'X-API-Key': KEY, ...headers }, body: fd,
    signal: AbortSignal.timeout(T) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

const b64 = (srv, route, json, headers = {}) => req(srv, 'POST', route, { json, headers });
const NC = { 'Cache-Control': 'no-cache' };

// The log-mel of a file as `simpleton mel` computes it: [80][3000] float32.
function mel(file) {
  const out = path.join(tmp, `${path.basename(file)}.mel.f32`);
  execFileSync(BIN, ['mel', file, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  const b = readFileSync(out);
  return new Float32Array(b.buffer, b.byteOffset, b.length / 4);
}

// Mean |a - b| over the frames that hold audio (11 s of 30: frames 0..1100).
function melDiff(a, b, frames = 1100) {
  let sum = 0, n = 0;
  for (let m = 0; m < 80; m++) for (let t = 0; t < frames; t++) { sum += Math.abs(a[m * 3000 + t] - b[m * 3000 + t]); n++; }
  return sum / n;
}

test('every format gives the same log-mel as the wav, within a tolerance that still tells clips apart', () => {
  // The log-mel is Whisper's input: log10 power, clamped to 8 below the
  // maximum, scaled (x + 4) / 4, so one unit is 4 decades (40 dB). The
  // measure is the mean |Δ| over the 1100 frames that hold the 11 s of audio.
  // Measured here: flac 0 (lossless), m4a 0.005, mp3 0.011, opus 0.016 (a
  // 32 kb/s mp3: 0.027). Tolerance 0.04 (1.6 dB on average) passes every
  // codec at the bitrates users send, yet fails the same wav shifted by one
  // frame (10 ms: 0.08) and another speaker and text (a librivox clip: 0.5+),
  // both checked below: so the comparison proves that the right audio came
  // out, at the right speed and in place, not merely "some audio".
  const TOL = 0.04;
  const ref = mel(JFK);
  const diffs = {};
  for (const ext of Object.keys(FORMATS)) diffs[ext] = melDiff(ref, mel(files[ext]));
  for (const [ext, d] of Object.entries(diffs)) assert.ok(d < TOL, `${ext}: mean |Δ log-mel| ${d.toFixed(4)} ≥ ${TOL}`);
  assert.ok(diffs.flac < 1e-4, `flac is lossless: ${diffs.flac}`);
  const shifted = new Float32Array(ref.length);
  for (let m = 0; m < 80; m++) for (let t = 0; t < 3000; t++) shifted[m * 3000 + t] = ref[m * 3000 + Math.max(0, t - 1)];
  assert.ok(melDiff(ref, shifted) > 2 * TOL, `a 10 ms shift differs by only ${melDiff(ref, shifted)}`);
  const other = melDiff(ref, mel(path.join(SHARED, 'audio/librivox/sense_and_sensibility_01_austen_64kb-0870.wav')));
  assert.ok(other > 10 * TOL, `another clip differs by only ${other}`);
});

test('every format transcribes through the upload route, with the duration of the audio', async () => {
  for (const ext of ['wav', ...Object.keys(FORMATS)]) {
    const file = ext === 'wav' ? JFK : files[ext];
    const r = await upload(s, '/audio/upload/transcribe', `speech.${ext}`, readFileSync(file));
    assert.equal(r.status, 200, `${ext}: ${r.text}`);
    assert.ok(Math.abs(r.json.duration - 11) < 0.1, `${ext}: duration ${r.json.duration}`);
    assert.equal(r.json.model, MODEL);
    assert.equal(typeof r.json.text, 'string');
    assert.equal(typeof r.json.language, 'string');
    assert.ok(Array.isArray(r.json.segments));
  }
});

test('base64 (plain and data: URL) and upload paths give the same answer', async () => {
  // Each computed afresh (no-cache): the agreement is the engine's, not the cache's.
  const wav = readFileSync(JFK);
  const opts = { language: 'en', model: MODEL };
  const up = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, opts, { type: 'audio/wav', headers: NC });
  const plain = await b64(s, '/audio/transcribe', { audio: wav.toString('base64'), ...opts }, NC);
  const dataUrl = await b64(s, '/audio/transcribe', { audio: `data:audio/wav;base64,${wav.toString('base64')}`, ...opts,
    temperature: 0 }, NC);
  const q = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, {},
    { query: `?language=en&model=${MODEL}`, headers: NC });
  for (const r of [up, plain, dataUrl, q]) assert.equal(r.status, 200, r.text);
  assert.deepEqual(plain.json, up.json);
  assert.deepEqual(dataUrl.json, up.json);
  assert.deepEqual(q.json, up.json);
  assert.ok(up.json.text.length > 0);
  assert.equal(up.json.language, 'en');
  assert.deepEqual(Object.keys(up.json).sort(), ['duration', 'language', 'model', 'segments', 'text']);
  for (const seg of up.json.segments) {
    assert.deepEqual(Object.keys(seg).sort(), ['end', 'start', 'text']);
    assert.ok(seg.start >= 0 && seg.end >= seg.start && seg.end <= 11.01, JSON.stringify(seg));
  }
  // Translate: source_language instead of language.
  const tr = await b64(s, '/audio/translate', { audio: wav.toString('base64'), language: 'en' });
  assert.equal(tr.status, 200, tr.text);
  assert.equal(tr.json.source_language, 'en');
  assert.equal(tr.json.language, undefined);
  const trUp = await upload(s, '/audio/upload/translate', 'jfk.wav', wav, { language: 'en' });
  assert.equal(trUp.status, 200, trUp.text);
  assert.deepEqual(trUp.json, tr.json);
  // task translate on the transcribe routes: `language` as API.md lists for
  // them, and source_language too; same text as the translate route.
  for (const t of [await b64(s, '/audio/transcribe', { audio: wav.toString('base64'), language: 'en', task: 'translate' }),
    await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, { language: 'en', task: 'translate' })]) {
    assert.equal(t.status, 200, t.text);
    assert.equal(t.json.language, 'en');
    assert.equal(t.json.source_language, 'en');
    assert.equal(t.json.text, tr.json.text);
  }
});

test('bad input gets the documented 4xx, and nothing hangs', async () => {
  const wav = readFileSync(JFK);
  const rnd = Buffer.alloc(65536);
  for (let i = 0; i < rnd.length; i++) rnd[i] = (i * 2654435761) >>> 24;
  let r = await upload(s, '/audio/upload/transcribe', 'noise.mp3', rnd);
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.detail, /Invalid audio/);
  r = await upload(s, '/audio/upload/transcribe', 'speech.wav', Buffer.from('Hello, this is text, not audio.\n'.repeat(50)));
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.detail, /not an audio file/);
  r = await upload(s, '/audio/upload/transcribe', 'empty.wav', Buffer.alloc(0));
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.detail, /empty/);
  r = await b64(s, '/audio/transcribe', { audio: '' });
  assert.equal(r.status, 422, r.text); // an empty required string is a validation error
  // A truncated mp3: cut inside the first frame nothing decodes (400); cut in
  // the middle, the part that is there is transcribed (200, shorter).
  const mp3 = readFileSync(files.mp3);
  r = await upload(s, '/audio/upload/transcribe', 'cut.mp3', mp3.subarray(0, 300));
  assert.equal(r.status, 400, r.text);
  r = await upload(s, '/audio/upload/transcribe', 'half.mp3', mp3.subarray(0, mp3.length >> 1));
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.duration > 4 && r.json.duration < 7, `half duration ${r.json.duration}`);
  // Broken base64.
  for (const audio of ['abc!', 'QUJD=', wav.toString('base64').slice(0, -3), 'data:audio/wav,AAAA', 'data:audio/wav;base64']) {
    r = await b64(s, '/audio/transcribe', { audio });
    assert.equal(r.status, 400, `${audio.slice(0, 20)}: ${r.text}`);
    assert.match(r.json.detail, /base64|data URL/);
  }
  // Fields.
  r = await b64(s, '/audio/transcribe', { audio: wav.toString('base64'), task: 'summarize', temperature: 3 });
  assert.equal(r.status, 422, r.text);
  assert.deepEqual(r.json.detail.map((d) => d.loc[1]).sort(), ['task', 'temperature']);
  r = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, { language: 'english!' });
  assert.equal(r.status, 422, r.text);
  r = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, { model: 'no-such-model' });
  assert.equal(r.status, 503, r.text);
  assert.match(r.json.detail, /Whisper model 'no-such-model' not found: put no-such-model\.bin in /);
  r = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, { model: 'base' });
  assert.equal(r.status, 503, r.text);
  assert.match(r.json.detail, /put ggml-base\.bin in .* or set WHISPER_DOWNLOAD_URL/);
  r = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, { model: '../etc/passwd' });
  assert.equal(r.status, 422, r.text);
  // Unknown but well-formed languages: refused by the handler, before the
  // audio is decoded (broken audio still gets the 422), as the detail list.
  r = await b64(s, '/audio/transcribe', { audio: Buffer.from('not audio').toString('base64'), language: 'xx' });
  assert.equal(r.status, 422, r.text);
  assert.deepEqual(r.json.detail.map((d) => d.loc), [['body', 'language']]);
  assert.match(r.json.detail[0].msg, /unknown language 'xx'/);
  assert.equal(r.json.detail[0].type, 'value_error');
  r = await upload(s, '/audio/upload/transcribe', 'x.wav', Buffer.from('not audio'), { language: 'zz' });
  assert.equal(r.status, 422, r.text);
  assert.equal(r.json.detail[0].loc[1], 'language');
  r = await upload(s, '/v1/audio/transcriptions', 'x.wav', Buffer.from('not audio'), { model: 'whisper-1', language: 'xx' });
  assert.equal(r.status, 400, r.text);
  assert.match(r.json.error.message, /^language: unknown language 'xx'/);
  assert.equal(r.json.error.type, 'invalid_request_error');
  r = await b64(s, '/audio/transcribe', { audio: wav.toString('base64'), language: 'HAW' }, NC); // 3-letter code, any case
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.language, 'haw');
  const fd = new FormData();
  fd.append('language', 'en');
  const res = await fetch(`${s.url}/audio/upload/transcribe`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd });
  assert.equal(res.status, 422);
});

test('silence gives no segments and empty text', async () => {
  const wav = path.join(tmp, 'silence.wav');
  ffmpeg(['-f', 'lavfi', '-i', 'anullsrc=r=16000:cl=mono', '-t', '5', wav]);
  const r = await upload(s, '/audio/upload/transcribe', 'silence.wav', readFileSync(wav));
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.text, '');
  assert.deepEqual(r.json.segments, []);
  assert.ok(Math.abs(r.json.duration - 5) < 0.05);
});

// A PCM wav header (mono) for n bytes of data.
function wavHeader(rate, bits, dataBytes) {
  const h = Buffer.alloc(44);
  h.write('RIFF', 0); h.writeUInt32LE(Math.min(36 + dataBytes, 0xffffffff), 4); h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16); h.writeUInt16LE(1, 20); h.writeUInt16LE(1, 22); h.writeUInt32LE(rate, 24);
  h.writeUInt32LE(rate * bits / 8, 28); h.writeUInt16LE(bits / 8, 32); h.writeUInt16LE(bits, 34);
  h.write('data', 36); h.writeUInt32LE(dataBytes, 40);
  return h;
}

test('audio over MAX_AUDIO_SECONDS: 413 naming the limit, refused early (also a 2 h file)', async () => {
  const srv = await startServer({ MODELS_DIR: modelsDir, DEFAULT_AUDIO_MODEL: MODEL, MAX_AUDIO_SECONDS: '5' });
  try {
    let r = await upload(srv, '/audio/upload/transcribe', 'jfk.wav', readFileSync(JFK));
    assert.equal(r.status, 413, r.text);
    assert.match(r.json.detail, /limit of 5 seconds/);
    r = await upload(srv, '/v1/audio/transcriptions', 'jfk.mp3', readFileSync(files.mp3), { model: 'whisper-1' });
    assert.equal(r.status, 413, r.text);
    assert.match(r.json.error.message, /limit of 5 seconds/);
    // 2 h of 8 kHz u8 silence (57.6 MB): the container says 7200 s, refused
    // before decoding.
    const n = 8000 * 7200;
    const big = Buffer.alloc(44 + n, 128);
    wavHeader(8000, 8, n).copy(big);
    let t0 = Date.now();
    r = await upload(srv, '/audio/upload/transcribe', 'long.wav', big);
    assert.equal(r.status, 413, r.text);
    // A header that claims no length: counting samples stops at the limit.
    big.writeUInt32LE(0xffffffff, 40);
    big.writeUInt32LE(0xffffffff, 4);
    t0 = Date.now();
    r = await upload(srv, '/audio/upload/transcribe', 'long.wav', big);
    assert.equal(r.status, 413, r.text);
    assert.ok(Date.now() - t0 < 10000, `took ${Date.now() - t0} ms`);
  } finally {
    await srv.stop();
  }
});

// A stand-in model repository: serves /ggml-tiny.bin (the tiny64 file) in the
// current mode: 'good', 'truncate' (sends half, then drops the connection),
// '404'. Counts the requests.
async function modelServer() {
  const model = readFileSync(path.join(WMODELS, `${MODEL}.bin`));
  const st = { mode: 'good', hits: 0, model };
  st.server = http.createServer((rq, rs) => {
    if (rq.url !== '/ggml-tiny.bin') { rs.writeHead(404); rs.end('not here'); return; }
    st.hits++;
    if (st.mode === '404') { rs.writeHead(404); rs.end('Entry not found'); return; }
    rs.writeHead(200, { 'Content-Length': model.length, 'Content-Type': 'application/octet-stream' });
    if (st.mode === 'truncate') {
      rs.write(model.subarray(0, model.length >> 1), () => setTimeout(() => rs.socket.destroy(), 50));
      return;
    }
    // Slowly enough that concurrent requests overlap with the download.
    rs.write(model.subarray(0, 1 << 20));
    setTimeout(() => rs.end(model.subarray(1 << 20)), 300);
  });
  await new Promise((r) => st.server.listen(0, '127.0.0.1', r));
  st.url = `http://127.0.0.1:${st.server.address().port}`;
  return st;
}

test('missing model: downloaded from WHISPER_DOWNLOAD_URL; failures leave no file behind', async () => {
  const ms = await modelServer();
  const emptyModels = path.join(tmp, 'empty-models');
  mkdirSync(emptyModels, { recursive: true });
  const srv = await startServer({ MODELS_DIR: emptyModels, DEFAULT_AUDIO_MODEL: 'tiny', WHISPER_DOWNLOAD_URL: ms.url });
  const dl = path.join(srv.dir, 'data', 'models');
  const listing = () => (existsSync(dl) ? readdirSync(dl) : []);
  try {
    const wav = readFileSync(JFK);
    ms.mode = 'truncate';
    let r = await upload(srv, '/audio/upload/transcribe', 'jfk.wav', wav);
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.detail, /ggml-tiny\.bin/);
    assert.deepEqual(listing(), [], 'a truncated download leaves nothing');
    ms.mode = '404';
    r = await upload(srv, '/audio/upload/transcribe', 'jfk.wav', wav);
    assert.equal(r.status, 502, r.text);
    assert.match(r.json.detail, /returned HTTP 404/);
    assert.deepEqual(listing(), []);
    // Good: three requests at once share one download.
    ms.mode = 'good';
    ms.hits = 0;
    const rs = await Promise.all([0, 1, 2].map(() => upload(srv, '/audio/upload/transcribe', 'jfk.wav', wav,
      { language: 'en' })));
    for (const x of rs) assert.equal(x.status, 200, x.text);
    assert.equal(ms.hits, 1);
    assert.deepEqual(listing(), ['ggml-tiny.bin']);
    const got = readFileSync(path.join(dl, 'ggml-tiny.bin'));
    assert.equal(createHash('sha256').update(got).digest('hex'),
      createHash('sha256').update(ms.model).digest('hex'));
    assert.ok(await waitLog(srv, /downloading ggml-tiny\.bin: 100%/), srv.stderr);
    // The downloaded model transcribes like the original file.
    const direct = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, { language: 'en' });
    assert.equal(rs[0].json.text, direct.json.text);
    // Downloads off: the message says what to do.
  } finally {
    await srv.stop();
    ms.server.close();
  }
});

// A stand-in OpenAI-compatible server: /v1/audio/transcriptions and
// /v1/audio/translations parse the multipart body and answer verbose_json
// whose text names the sha256 of the uploaded bytes; model 'fault-500' gets
// a 500.
async function openaiStandIn() {
  const st = { calls: [] };
  st.server = http.createServer(async (rq, rs) => {
    const chunks = [];
    for await (const c of rq) chunks.push(c);
    const body = Buffer.concat(chunks);
    if (rq.method === 'GET') { rs.writeHead(200, { 'Content-Type': 'application/json' }); rs.end('{"object":"list","data":[]}'); return; }
    const form = await new Request('http://x' + rq.url, { method: 'POST', headers: rq.headers, body }).formData();
    const file = form.get('file');
    const bytes = Buffer.from(await file.arrayBuffer());
    const call = { url: rq.url, auth: rq.headers.authorization, filename: file.name, type: file.type,
      sha: createHash('sha256').update(bytes).digest('hex'), fields: {} };
    for (const [k, v] of form.entries()) if (k !== 'file') call.fields[k] = v;
    st.calls.push(call);
    if (call.fields.model === 'fault-500') {
      rs.writeHead(500, { 'Content-Type': 'application/json' });
      rs.end(JSON.stringify({ error: { message: 'upstream exploded', type: 'server_error' } }));
      return;
    }
    rs.writeHead(200, { 'Content-Type': 'application/json' });
    rs.end(JSON.stringify({ task: rq.url.endsWith('translations') ? 'translate' : 'transcribe', language: 'english',
      duration: 11, text: `sha ${call.sha}`, segments: [
        { id: 0, start: 0, end: 2.5, text: ' And so, my fellow Americans,' },
        { id: 1, start: 2.5, end: 3661.25, text: ' ask not.' }] }));
  });
  await new Promise((r) => st.server.listen(0, '127.0.0.1', r));
  st.url = `http://127.0.0.1:${st.server.address().port}/v1`;
  return st;
}

test('forwarding to an OpenAI-compatible server: bytes arrive intact, answers mapped, errors 502/503', async () => {
  const up = await openaiStandIn();
  const srv = await startServer({ MODELS_DIR: modelsDir, DEFAULT_AUDIO_MODEL: MODEL, OPENAI_BASE_URL: up.url,
    OPENAI_API_KEY: 'sk-up', MODEL_BACKENDS: 'whisper-1=openai', BACKEND_ORDER: 'local,openai' });
  try {
    const mp3 = readFileSync(files.mp3);
    const sha = createHash('sha256').update(mp3).digest('hex');
    let r = await upload(srv, '/audio/upload/transcribe', 'talk.mp3', mp3, { model: 'whisper-1', language: 'en',
      prompt: 'Kennedy', temperature: '0.2' }, { type: 'audio/mpeg' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.text, `sha ${sha}`);
    assert.equal(r.json.model, 'whisper-1');
    assert.equal(r.json.duration, 11);
    assert.equal(r.json.segments.length, 2);
    let c = up.calls.at(-1);
    assert.equal(c.url, '/v1/audio/transcriptions');
    assert.equal(c.sha, sha);
    assert.equal(c.filename, 'talk.mp3');
    assert.equal(c.type, 'audio/mpeg');
    assert.equal(c.auth, 'Bearer sk-up');
    assert.deepEqual(c.fields, { model: 'whisper-1', response_format: 'verbose_json', language: 'en', prompt: 'Kennedy',
      temperature: '0.2' });
    assert.equal(r.json.language, 'en', 'OpenAI\'s "english" comes back as the ISO code');
    // Base64: the decoded bytes go up, named for their container (OpenAI
    // picks the decoder from the extension).
    r = await b64(srv, '/audio/translate', { audio: mp3.toString('base64'), model: 'whisper-1' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.text, `sha ${sha}`);
    assert.equal(r.json.source_language, 'en');
    c = up.calls.at(-1);
    assert.equal(c.url, '/v1/audio/translations');
    assert.equal(c.filename, 'audio.mp3');
    assert.equal(c.type, 'audio/mpeg');
    for (const ext of ['wav', 'm4a', 'flac', 'ogg', 'webm']) {
      const bytes = readFileSync(ext === 'wav' ? JFK : files[ext]);
      r = await b64(srv, '/audio/transcribe', { audio: bytes.toString('base64'), model: 'whisper-1' }, NC);
      assert.equal(r.status, 200, r.text);
      assert.equal(up.calls.at(-1).filename, `audio.${ext}`);
      assert.match(up.calls.at(-1).type, /^audio\//);
    }
    // Bytes that say nothing: the data: URL's type names the container.
    r = await b64(srv, '/audio/transcribe', { audio: `data:audio/ogg;base64,${Buffer.from('????').toString('base64')}`,
      model: 'whisper-1' }, NC);
    assert.equal(r.status, 200, r.text);
    assert.equal(up.calls.at(-1).filename, 'audio.ogg');
    assert.equal(up.calls.at(-1).type, 'audio/ogg');
    // An upload without an extension gets one too.
    r = await upload(srv, '/audio/upload/transcribe', 'recording', mp3, { model: 'whisper-1' }, { headers: NC });
    assert.equal(r.status, 200, r.text);
    assert.equal(up.calls.at(-1).filename, 'audio.mp3');
    assert.equal(up.calls.at(-1).type, 'audio/mpeg');
    // A name that is no local Whisper model goes upstream too (OPENAI_BASE_URL set).
    r = await upload(srv, '/v1/audio/transcriptions', 'a.mp3', mp3, { model: 'gpt-4o-transcribe', response_format: 'srt' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.text, '1\n00:00:00,000 --> 00:00:02,500\nAnd so, my fellow Americans,\n\n' +
      '2\n00:00:02,500 --> 01:01:01,250\nask not.\n\n');
    // A local model is not forwarded.
    const n = up.calls.length;
    r = await upload(srv, '/audio/upload/transcribe', 'a.mp3', mp3, { model: MODEL });
    assert.equal(r.status, 200, r.text);
    assert.equal(up.calls.length, n);
    // Upstream error -> 502 naming it; OpenAI dialect keeps its error shape.
    r = await upload(srv, '/v1/audio/transcriptions', 'a.mp3', mp3, { model: 'fault-500' });
    assert.equal(r.status, 502, r.text);
    assert.match(r.json.error.message, /upstream exploded/);
  } finally {
    await srv.stop();
    up.server.close();
  }
  // Unreachable -> 503.
  const dead = await startServer({ MODELS_DIR: modelsDir, OPENAI_BASE_URL: 'http://127.0.0.1:9/v1',
    MODEL_BACKENDS: 'whisper-1=openai' });
  try {
    const r = await upload(dead, '/audio/upload/transcribe', 'a.wav', readFileSync(JFK), { model: 'whisper-1' });
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.detail, /Could not connect to openai/);
  } finally {
    await dead.stop();
  }
});

test('OpenAI routes: response_format json, text, srt, vtt, verbose_json; whisper-1 means the default model', async () => {
  const wav = readFileSync(JFK);
  const base = { model: 'whisper-1', language: 'en' };
  const j = await upload(s, '/v1/audio/transcriptions', 'jfk.wav', wav, base);
  assert.equal(j.status, 200, j.text);
  assert.deepEqual(Object.keys(j.json), ['text']);
  const own = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, { language: 'en' });
  assert.equal(j.json.text, own.json.text);
  const t = await upload(s, '/v1/audio/transcriptions', 'jfk.wav', wav, { ...base, response_format: 'text' });
  assert.equal(t.status, 200);
  assert.match(t.headers.get('content-type'), /^text\/plain/);
  assert.equal(t.text, `${j.json.text}\n`);
  const v = await upload(s, '/v1/audio/transcriptions', 'jfk.wav', wav, { ...base, response_format: 'verbose_json' });
  assert.equal(v.status, 200, v.text);
  assert.equal(v.json.task, 'transcribe');
  assert.equal(v.json.language, 'english'); // OpenAI's name; the Simpleton routes keep ISO codes
  assert.ok(Math.abs(v.json.duration - 11) < 0.01);
  assert.equal(v.json.text, j.json.text);
  assert.equal(v.json.segments.length, own.json.segments.length);
  // The decoding figures come from the engine (the random model speaks, so
  // there are segments, and its tokens are far from certain).
  assert.ok(v.json.segments.length > 0);
  for (const seg of v.json.segments) {
    assert.ok(seg.avg_logprob < 0, JSON.stringify(seg));
    assert.ok(seg.compression_ratio > 0, JSON.stringify(seg));
    assert.ok(seg.no_speech_prob > 0 && seg.no_speech_prob < 1, JSON.stringify(seg));
  }
  const srt = await upload(s, '/v1/audio/transcriptions', 'jfk.wav', wav, { ...base, response_format: 'srt' });
  assert.equal(srt.status, 200);
  const cue = /^\d+\n\d\d:\d\d:\d\d,\d\d\d --> \d\d:\d\d:\d\d,\d\d\d\n.*\n$/s;
  for (const block of srt.text.split('\n\n').filter(Boolean)) assert.match(block + '\n', cue);
  const vtt = await upload(s, '/v1/audio/transcriptions', 'jfk.wav', wav, { ...base, response_format: 'vtt' });
  assert.equal(vtt.status, 200);
  assert.match(vtt.text, /^WEBVTT\n\n/);
  assert.match(vtt.headers.get('content-type'), /^text\/vtt/);
  const tr = await upload(s, '/v1/audio/translations', 'jfk.wav', wav, { model: 'whisper-1', response_format: 'verbose_json' });
  assert.equal(tr.status, 200, tr.text);
  assert.equal(tr.json.task, 'translate');
  // seek: where each segment's 30 s window starts, in 10 ms frames. Three
  // times the clip (33 s) needs a second window.
  const pcm = wav.subarray(wav.length - 352000);
  const long = Buffer.concat([wavHeader(16000, 16, 3 * pcm.length), pcm, pcm, pcm]);
  const lv = await upload(s, '/v1/audio/transcriptions', 'long.wav', long, { ...base, response_format: 'verbose_json' });
  assert.equal(lv.status, 200, lv.text);
  const seeks = lv.json.segments.map((g) => g.seek);
  assert.equal(seeks[0], 0, JSON.stringify(seeks));
  assert.ok(seeks.some((k) => k > 0), JSON.stringify(seeks));
  for (const g of lv.json.segments) {
    assert.ok(Number.isInteger(g.seek) && g.seek <= Math.round(g.start * 100) + 1, JSON.stringify(g));
    // Each segment's token ids, its opening and closing timestamps included.
    assert.ok(g.tokens.length >= 2 && g.tokens.every(Number.isInteger), JSON.stringify(g));
  }
  // Errors in the OpenAI shape.
  const bad = await upload(s, '/v1/audio/transcriptions', 'jfk.wav', wav, { ...base, response_format: 'docx' });
  assert.equal(bad.status, 400, bad.text);
  assert.match(bad.json.error.message, /response_format/);
  const noise = await upload(s, '/v1/audio/transcriptions', 'x.wav', Buffer.from('not audio at all'), base);
  assert.equal(noise.status, 400);
  assert.equal(typeof noise.json.error.message, 'string');
});

test('a client that leaves stops its transcription', async () => {
  const long = path.join(tmp, 'long.wav');
  ffmpeg(['-stream_loop', '5', '-i', JFK, '-c', 'copy', long]); // 66 s: several 30 s windows
  const fd = new FormData();
  fd.append('file', new Blob([readFileSync(long)]), 'long.wav');
  const ac = new AbortController();
  const p = fetch(`${s.url}/audio/upload/transcribe`, { method: 'POST', headers: { 'X-API-Key': KEY, ...NC }, body: fd,
    signal: ac.signal }).catch((e) => e);
  await new Promise((r) => setTimeout(r, 400));
  const t0 = Date.now();
  ac.abort();
  await p;
  assert.ok(await waitLog(s, /POST \/audio\/upload\/transcribe 503/, 5000), 'the worker did not stop');
  assert.ok(Date.now() - t0 < 5000);
  assert.doesNotMatch(s.stderr, /transcribed 66\.0 s/);
});

test('answers are cached by audio content and options; no-cache bypasses', async () => {
  const wav = readFileSync(JFK);
  const hits = async () => {
    const m = (await req(s, 'GET', '/metrics')).text.match(/simpleton_cache_hits_total\{cache_type="audio"\} (\d+)/);
    return m ? Number(m[1]) : 0;
  };
  const h0 = await hits();
  const a = await upload(s, '/audio/upload/transcribe', 'x.wav', wav, { language: 'en', prompt: 'cache me' });
  const b = await b64(s, '/audio/transcribe', { audio: wav.toString('base64'), language: 'en', prompt: 'cache me' });
  assert.equal(a.status, 200);
  assert.equal(a.headers.get('x-cache'), 'MISS');
  assert.deepEqual(b.json, a.json);
  assert.equal(b.headers.get('x-cache'), 'HIT');
  assert.equal(await hits(), h0 + 1);
  const c = await upload(s, '/audio/upload/transcribe', 'x.wav', wav, { language: 'en', prompt: 'cache me' }, { headers: NC });
  assert.equal(c.headers.get('x-cache'), null);
  assert.equal(await hits(), h0 + 1);
});

test('/models lists the Whisper model files with kind "audio"', async () => {
  const r = await req(s, 'GET', '/models');
  assert.equal(r.status, 200, r.text);
  const w = r.json.models.find((m) => m.name === 'whisper-rand-tiny64-f16');
  assert.ok(w, JSON.stringify(r.json.models.map((m) => m.name)));
  assert.equal(w.kind, 'audio');
  assert.equal(w.backend, 'local');
  assert.equal(w.size, 8247619);
  // Text models are still there, and nothing that is not a Whisper file is listed as audio.
  assert.ok(r.json.models.some((m) => m.name === 'stories260K' && m.kind !== 'audio'));
  assert.ok(r.json.models.filter((m) => m.kind === 'audio').every((m) => /whisper|ggml/.test(m.name)));
});

test('audio routes show up in metrics and analytics by route template', async () => {
  const m = await req(s, 'GET', '/metrics');
  assert.match(m.text, /simpleton_requests_total\{method="POST",endpoint="\/audio\/upload\/transcribe",status="200"\}/);
  assert.match(m.text, /simpleton_requests_total\{method="POST",endpoint="\/v1\/audio\/transcriptions",status="400"\}/);
  const a = await req(s, 'GET', '/analytics/stats');
  assert.ok(a.json.metrics.endpoint_breakdown['POST /audio/transcribe'].requests > 0);
});

test('a bad model file is a 503 naming the file and the reason, not "Invalid audio"; GGUF is not supported yet', async () => {
  const wav = readFileSync(JFK);
  writeFileSync(path.join(modelsDir, 'cut-model.bin'), readFileSync(path.join(WMODELS, `${MODEL}.bin`)).subarray(0, 4096));
  symlinkSync(path.join(SHARED, 'models/stories260K.gguf'), path.join(modelsDir, 'lm.bin'));
  symlinkSync(path.join(SHARED, 'models/stories260K.gguf'), path.join(modelsDir, 'lm.gguf'));
  for (const [model, file] of [['cut-model', 'cut-model.bin'], ['lm', 'lm.bin'], ['lm.bin', 'lm.bin']]) {
    const r = await upload(s, '/audio/upload/transcribe', 'jfk.wav', wav, { model }, { headers: NC });
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.detail, new RegExp(`${file.replace('.', '\\.')} \\(model '${model.replace('.', '\\.')}'\\) is unusable: .+`));
    assert.doesNotMatch(r.json.detail, /Invalid audio/);
  }
  const r = await upload(s, '/v1/audio/transcriptions', 'jfk.wav', wav, { model: 'lm.gguf' });
  assert.equal(r.status, 503, r.text);
  assert.match(r.json.error.message, /GGUF Whisper files are not supported yet.*ggml \.bin/);
  // Broken audio with a good model is still "Invalid audio".
  const bad = await upload(s, '/audio/upload/transcribe', 'x.wav', Buffer.from('not audio at all'), {});
  assert.equal(bad.status, 400);
  assert.match(bad.json.detail, /^Invalid audio: /);
});

test('a download whose client leaves is aborted (logged, no .part left); with others waiting it goes on', async () => {
  // The stand-in sends 256 KB, then 16 KB every 200 ms: ~10 minutes for the file.
  const model = readFileSync(path.join(WMODELS, `${MODEL}.bin`));
  let conns = 0, closed = 0;
  const server = http.createServer((rq, rs) => {
    if (rq.url !== '/ggml-tiny.bin') { rs.writeHead(404); rs.end(); return; }
    conns++;
    rs.writeHead(200, { 'Content-Length': model.length });
    let off = 256 << 10;
    rs.write(model.subarray(0, off));
    const t = setInterval(() => { rs.write(model.subarray(off, off + 16384)); off += 16384; }, 200);
    rs.on('close', () => { clearInterval(t); closed++; });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const emptyModels = path.join(tmp, 'empty-models-2');
  mkdirSync(emptyModels, { recursive: true });
  const srv = await startServer({ MODELS_DIR: emptyModels, DEFAULT_AUDIO_MODEL: 'tiny',
    WHISPER_DOWNLOAD_URL: `http://127.0.0.1:${server.address().port}` });
  const dl = path.join(srv.dir, 'data', 'models');
  const send = (signal) => {
    const fd = new FormData();
    fd.append('file', new Blob([readFileSync(JFK)]), 'jfk.wav');
    return fetch(`${srv.url}/audio/upload/transcribe`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd, signal })
      .catch((e) => e);
  };
  try {
    // Two clients: the first (the downloader) leaves; the second still waits,
    // so the download goes on. When the second leaves too, it is aborted.
    const a = new AbortController(), b = new AbortController();
    const pa = send(a.signal);
    assert.ok(await waitLog(srv, /model tiny is missing, downloading/, 5000), srv.stderr);
    const pb = send(b.signal);
    await sleep(300);
    a.abort();
    await pa;
    await sleep(1500);
    assert.doesNotMatch(srv.stderr, /cancelled after/);
    assert.equal(conns, 1, 'one download for both requests');
    assert.equal(closed, 0, 'the download went on for the waiting request');
    assert.ok(existsSync(path.join(dl, '.ggml-tiny.bin.part')));
    const t0 = Date.now();
    b.abort();
    await pb;
    assert.ok(await waitLog(srv, /a request waiting for .*ggml-tiny\.bin left/, 5000), srv.stderr);
    assert.ok(await waitLog(srv, /download of Whisper model ggml-tiny\.bin cancelled after [\d.]+ MB: the requesting client left/,
      5000), srv.stderr);
    assert.ok(Date.now() - t0 < 5000);
    await sleep(200);
    assert.equal(closed, 1);
    assert.equal(conns, 1);
    assert.deepEqual(readdirSync(dl), [], 'no .part file stays');
  } finally {
    await srv.stop();
    server.closeAllConnections();
    server.close();
  }
});

test('simpleton transcribe: text, --json, --task translate; a missing file fails with a message', () => {
  const model = path.join(WMODELS, `${MODEL}.bin`);
  const run = (...args) => spawnSync(BIN, ['transcribe', model, ...args], { encoding: 'utf8', timeout: T });
  const plain = run(JFK, '--language', 'en');
  assert.equal(plain.status, 0, plain.stderr);
  assert.ok(plain.stdout.endsWith('\n') && plain.stdout.trim().length > 0, plain.stdout);
  assert.match(plain.stderr, /11\.00 s of audio \(en\)/);
  const js = run(JFK, '--language', 'en', '--json');
  assert.equal(js.status, 0, js.stderr);
  const j = JSON.parse(js.stdout);
  assert.deepEqual(Object.keys(j), ['text', 'language', 'duration', 'segments']);
  assert.equal(j.text, plain.stdout.slice(0, -1));
  assert.equal(j.language, 'en');
  assert.ok(Math.abs(j.duration - 11) < 0.01);
  for (const seg of j.segments) assert.deepEqual(Object.keys(seg), ['start', 'end', 'text']);
  const tr = run(JFK, '--language', 'en', '--task', 'translate', '--json');
  assert.equal(tr.status, 0, tr.stderr);
  assert.equal(typeof JSON.parse(tr.stdout).text, 'string');
  const missing = run(path.join(tmp, 'no-such.wav'));
  assert.ok(missing.status === 1 || missing.status === 2, `exit ${missing.status}`);
  assert.match(missing.stderr, /cannot open '.*no-such\.wav'/);
  assert.equal(missing.stdout, '');
  const badTask = run(JFK, '--task', 'summarize');
  assert.equal(badTask.status, 2);
  assert.match(badTask.stderr, /bad --task 'summarize'/);
});
