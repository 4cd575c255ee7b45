// load.mjs - a hostile mix beside normal clients, on loopback (issue #12).
//
// Two phases of PHASE_S seconds against one server on its default limits:
// first normal clients alone (the baseline), then the same clients while
// hostile ones run from other loopback addresses (127.0.0.2-9):
//   slow-loris   600 connections trickling a header line every 2 s
//   idle         600 connections that never send a byte
//   oversized    Content-Length of 10 GB, and chunked bodies past the cap
//   nested       1 MB of '[' and of '{"a":' (JSON nesting)
//   amplifying   a million tiny chat messages (31 MB)
//   image bombs  PNG header claiming 50000 x 50000; TIFF with doubled size tags
//   audio bomb   3 hours of silence as a 2 MB FLAC (when ffmpeg and a Whisper model are there)
//   streams      chat streams cut after their first bytes
//   embeddings   batches of 2048 long texts
// Then SIGTERM while everything still runs. Prints one JSON line: normal
// latency p50/p99 per phase, failures, peak RSS, exit code and time. Every
// loop is bounded by the phase's end; nothing leaves the machine.
import net from 'node:net';
import http from 'node:http';
import path from 'node:path';
import os from 'node:os';
import zlib from 'node:zlib';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, symlinkSync } from 'node:fs';
import { startServer, sleep, KEY } from '../../tests/integration/lib.mjs';

const PHASE_S = Number(process.env.PHASE_S || 30);
const SHUTDOWN_S = Number(process.env.SHUTDOWN_TIMEOUT || 10);
const SHARED = path.resolve('../shared');

// ---- what the hostile clients send -----------------------------------------

function crc32(buf) {
  let c, crc = 0xffffffff;
  for (const b of buf) {
    c = (crc ^ b) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function pngChunk(type, data) {
  const len = Buffer.alloc(4); len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type), data]);
  const crc = Buffer.alloc(4); crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function pngBomb() { // 50000 x 50000 grey, a few KB of zlib
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(50000, 0); ihdr.writeUInt32BE(50000, 4); ihdr[8] = 8; ihdr[9] = 0;
  const idat = zlib.deflateSync(Buffer.alloc(1 << 20));
  return Buffer.concat([Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]), pngChunk('IHDR', ihdr),
    pngChunk('IDAT', idat), pngChunk('IEND', Buffer.alloc(0))]);
}
function tiffBomb() { // little-endian TIFF, ImageWidth/ImageLength twice: huge first, small last
  const entries = [[256, 4, 60000], [257, 4, 60000], [256, 4, 8], [257, 4, 8], [258, 3, 8], [259, 3, 1],
    [262, 3, 1], [273, 4, 200], [277, 3, 1], [278, 4, 8], [279, 4, 64]];
  const ifd = Buffer.alloc(2 + entries.length * 12 + 4);
  ifd.writeUInt16LE(entries.length, 0);
  entries.forEach(([tag, type, v], i) => {
    const o = 2 + i * 12;
    ifd.writeUInt16LE(tag, o); ifd.writeUInt16LE(type, o + 2); ifd.writeUInt32LE(1, o + 4);
    if (type === 3) ifd.writeUInt16LE(v, o + 8); else ifd.writeUInt32LE(v, o + 8);
  });
  const head = Buffer.from([0x49, 0x49, 42, 0, 8, 0, 0, 0]);
  const out = Buffer.alloc(300 + 64);
  Buffer.concat([head, ifd]).copy(out);
  return out;
}

const million = Buffer.from(`{"model":"stories260K","messages":[${'{"role":"user","content":"x"},'.repeat(1000000).slice(0, -1)}]}`);
const nestedArr = Buffer.from('['.repeat(1 << 20));
const nestedObj = Buffer.from('{"a":'.repeat(200000));
const bigBatch = Buffer.from(JSON.stringify({ model: 'stories260K', input: Array.from({ length: 2048 }, (_, i) => `text ${i} `.repeat(60)) }));
const png = JSON.stringify({ image: pngBomb().toString('base64') });
const tiff = JSON.stringify({ image: tiffBomb().toString('base64') });

function rawPost(addr, port, p, body, headers = {}) {
  return new Promise((resolve) => {
    const r = http.request({ host: '127.0.0.1', port, localAddress: addr, method: 'POST', path: p,
      headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json', ...headers } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
      res.on('error', () => resolve(0));
    });
    r.on('error', () => resolve(0));
    r.setTimeout(60000, () => r.destroy());
    if (body !== undefined) r.end(body);
    else r.end();
  });
}

// ---- hostile loops (each runs until `until`) ---------------------------------

function holdSockets(port, addrs, perAddr, until, trickle) {
  const socks = new Set();
  let opened = 0, closedByServer = 0;
  const open = (addr) => {
    if (Date.now() >= until) return;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: addr });
    opened++;
    s.on('error', () => {});
    s.on('connect', () => { if (trickle) s.write('GET /health HTTP/1.1\r\nHost: x\r\n'); });
    s.on('close', () => { socks.delete(s); closedByServer++; setTimeout(() => open(addr), 200); });
    socks.add(s);
  };
  for (const a of addrs) for (let i = 0; i < perAddr; i++) open(a);
  const iv = trickle ? setInterval(() => { for (const s of socks) if (!s.destroyed) s.write('X-Pad: y\r\n'); }, 2000) : null;
  return { stop: () => { if (iv) clearInterval(iv); for (const s of socks) { s.removeAllListeners('close'); s.destroy(); } },
    stats: () => ({ opened, closed_by_server: closedByServer }) };
}

async function loop(until, fn) {
  let n = 0;
  while (Date.now() < until) { await fn(); n++; }
  return n;
}

async function cutStream(port, addr) {
  await new Promise((resolve) => {
    const r = http.request({ host: '127.0.0.1', port, localAddress: addr, method: 'POST', path: '/v1/chat/completions',
      headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' } }, (res) => {
      res.once('data', () => { r.destroy(); resolve(); });
      res.on('end', resolve);
    });
    r.on('error', resolve);
    r.end(JSON.stringify({ model: 'stories260K', stream: true, max_tokens: 200, messages: [{ role: 'user', content: 'Once upon' }] }));
  });
}

async function oversized(port, addr) {
  // A huge declared length: answered 413 before the body.
  await new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: addr }, () => {
      s.write(`POST /inference/generate HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nContent-Length: 10737418240\r\n\r\n`);
      s.write(Buffer.alloc(65536, 32));
    });
    s.on('data', () => s.destroy());
    s.on('error', resolve);
    s.on('close', resolve);
    s.setTimeout(10000, () => s.destroy());
  });
  // Chunked past the 32 MB cap, 1 MB at a time.
  await new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress: addr }, async () => {
      s.write(`POST /inference/generate HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nTransfer-Encoding: chunked\r\n\r\n`);
      const chunk = Buffer.concat([Buffer.from('100000\r\n'), Buffer.alloc(1 << 20, 32), Buffer.from('\r\n')]);
      for (let i = 0; i < 40 && !s.destroyed; i++) { if (!s.write(chunk)) await new Promise((r) => s.once('drain', r)); }
    });
    s.on('data', () => s.destroy());
    s.on('error', resolve);
    s.on('close', resolve);
    s.setTimeout(20000, () => s.destroy());
  });
}

// ---- normal clients ------------------------------------------------------------

const NORMAL = [
  ['GET', '/health', undefined],
  ['POST', '/inference/generate', { model: 'stories260K', prompt: 'Once upon a time', max_tokens: 16 }],
  ['POST', '/embeddings/', { input: ['a short text', 'another one'], model: 'stories260K' }],
  ['POST', '/v1/chat/completions', { model: 'stories260K', max_tokens: 16, messages: [{ role: 'user', content: 'Hello' }] }],
];

async function normalClient(srv, until, lat, fails) {
  let i = Math.floor(Math.random() * NORMAL.length);
  while (Date.now() < until) {
    const [method, p, json] = NORMAL[i++ % NORMAL.length];
    const t0 = performance.now();
    try {
      const res = await fetch(srv.url + p, { method, headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json', 'Cache-Control': 'no-cache' },
        body: json && JSON.stringify(json), signal: AbortSignal.timeout(30000) });
      await res.arrayBuffer();
      if (res.status !== 200) fails.push(`${p} ${res.status}`);
    } catch (e) {
      fails.push(`${p} ${e.name}`);
    }
    lat.push(performance.now() - t0);
    await sleep(20);
  }
}

const pct = (a, q) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(q * s.length))] : NaN; };

async function phase(srv, hostile, seconds = PHASE_S, normal = true) {
  const until = Date.now() + seconds * 1000;
  const lat = [], fails = [], tasks = [];
  if (normal) for (let c = 0; c < 4; c++) tasks.push(normalClient(srv, until, lat, fails));
  const counts = {};
  let held = [];
  if (hostile) {
    const a = (n) => `127.0.0.${n}`;
    held = [holdSockets(srv.port, [a(2), a(3), a(4), a(5)], 150, until, true),
      holdSockets(srv.port, [a(6), a(7), a(8), a(9)], 150, until, false)];
    const h = (name, fn) => tasks.push(loop(until, fn).then((n) => { counts[name] = n; }));
    h('oversized', () => oversized(srv.port, a(10)));
    h('nested', async () => { await rawPost(a(11), srv.port, '/inference/generate', nestedArr); await rawPost(a(11), srv.port, '/v1/chat/completions', nestedObj); });
    h('million_messages', () => rawPost(a(12), srv.port, '/v1/chat/completions', million));
    h('million_messages_2', () => rawPost(a(12), srv.port, '/inference/chat', million));
    h('png_bomb', () => rawPost(a(13), srv.port, '/vision/ocr', png));
    h('tiff_bomb', () => rawPost(a(13), srv.port, '/vision/ocr', tiff));
    h('cut_streams', () => cutStream(srv.port, a(14)));
    h('embedding_batches', () => rawPost(a(15), srv.port, '/v1/embeddings', bigBatch));
    if (srv.flac) h('audio_bomb', () => rawPost(a(16), srv.port, '/audio/upload/transcribe', srv.flac.body, { 'Content-Type': srv.flac.ctype }));
  }
  await Promise.all(tasks);
  const sockets = held.map((x) => { const s = x.stats(); x.stop(); return s; });
  return { requests: lat.length, p50_ms: +pct(lat, 0.5).toFixed(1), p99_ms: +pct(lat, 0.99).toFixed(1),
    max_ms: +Math.max(...lat).toFixed(1), failures: fails.length, failure_sample: fails.slice(0, 5), hostile: counts,
    slowloris: sockets[0], idle: sockets[1] };
}

// ---- run -------------------------------------------------------------------------

const tmp = mkdtempSync(path.join(os.tmpdir(), 'smp-hostile-'));
const env = { SHUTDOWN_TIMEOUT: String(SHUTDOWN_S), ACCESS_LOG: 'false' };
let flac = null;
const wdir = path.join(SHARED, 'models/whisper');
if (existsSync(wdir)) {
  const models = path.join(tmp, 'models');
  mkdirSync(models);
  for (const f of readdirSync(wdir)) if (f.endsWith('.bin')) symlinkSync(path.join(wdir, f), path.join(models, f));
  env.MODELS_DIR = models;
  env.DEFAULT_AUDIO_MODEL = 'whisper-rand-tiny64-f16';
  try {
    const f = path.join(tmp, 'silence.flac');
    execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'anullsrc=r=16000:cl=mono', '-t', '10800', '-c:a', 'flac', f]);
    const boundary = 'hostileboundary';
    const body = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.flac"\r\n` +
      'Content-Type: audio/flac\r\n\r\n'), readFileSync(f), Buffer.from(`\r\n--${boundary}--\r\n`)]);
    flac = { body, ctype: `multipart/form-data; boundary=${boundary}` };
  } catch { /* no ffmpeg: no audio bomb */ }
}
const srv = await startServer(env);
srv.flac = flac;
let peak = 0;
const rssTimer = setInterval(() => {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8'));
    if (m) peak = Math.max(peak, Number(m[1]) / 1024);
  } catch { /* exited */ }
}, 50);
const baseline = await phase(srv, false);
const peakBaseline = peak;
const hostile = await phase(srv, true);
// SIGTERM while the hostile mix still runs.
const tail = phase(srv, true, 8, false);
await sleep(3000);
const t0 = Date.now();
srv.proc.kill('SIGTERM');
const code = await new Promise((r) => srv.proc.on('exit', (c, sig) => r(c ?? sig)));
const exitS = (Date.now() - t0) / 1000;
await tail;
clearInterval(rssTimer);
console.log(JSON.stringify({ phase_s: PHASE_S, baseline, hostile, peak_rss_mb_baseline: +peakBaseline.toFixed(0),
  peak_rss_mb: +peak.toFixed(0), exit_code: code, exit_s: +exitS.toFixed(2), shutdown_timeout_s: SHUTDOWN_S,
  audio_bomb: !!flac }));
process.exit(0);
