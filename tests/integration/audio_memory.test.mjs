// audio_memory.test.mjs - a transcription's memory is bounded by a window,
// not by the audio's length, and heavy jobs share HEAVY_JOB_MEMORY_MB:
//   a 2 MB FLAC of 3 h of silence (691 MB as float samples; the decoder that
//     held them all peaked at 726 MB for one request, 4 GB for six) keeps
//     the server's peak RSS (VmHWM) under 200 MB, also three at once;
//   with a budget that fits one transcription, concurrent ones wait up to
//     HEAVY_JOB_WAIT_S and then get 503 naming the setting; afterwards the
//     budget is whole again; a budget smaller than one job refuses at once.
// Uses the random tiny64 Whisper model of ../shared/models/whisper.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, symlinkSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, KEY } from './lib.mjs';

const WMODELS = path.resolve('../shared/models/whisper');
const MODEL = 'whisper-rand-tiny64-f16';
const PEAK_MB = 200;

let tmp, modelsDir, silence3h;

before(() => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'smp-audiomem-'));
  modelsDir = path.join(tmp, 'models');
  mkdirSync(modelsDir);
  for (const f of readdirSync(WMODELS)) if (f.endsWith('.bin')) symlinkSync(path.join(WMODELS, f), path.join(modelsDir, f));
  const flac = path.join(tmp, 'silence3h.flac');
  execFileSync('ffmpeg', ['-v', 'error', '-y', '-f', 'lavfi', '-i', 'anullsrc=r=16000:cl=mono', '-t', '10800',
    '-c:a', 'flac', flac]);
  silence3h = readFileSync(flac);
});
after(() => rmSync(tmp, { recursive: true, force: true }));

// ASAN_OPTIONS: a sanitizer build keeps up to 256 MB of freed blocks in
// quarantine by default, which would be measured as ours; other builds
// ignore it.
const server = (env = {}) => startServer({ MODELS_DIR: modelsDir, DEFAULT_AUDIO_MODEL: MODEL, WHISPER_DOWNLOAD_URL: '',
  CACHE_ENABLED: 'false', ASAN_OPTIONS: 'quarantine_size_mb=8', ...env });

async function transcribe(srv, data) {
  const fd = new FormData();
  fd.append('file', new Blob([data]), 'silence.flac');
  const res = await fetch(`${srv.url}/v1/audio/transcriptions`, { method: 'POST', headers: { 'X-API-Key': KEY },
    body: fd, signal: AbortSignal.timeout(120000) });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json };
}

// The server's peak resident set so far, MB.
const peakMB = (srv) => Number(readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)[1]) / 1024;

test(`3 h of silent FLAC: peak RSS under ${PEAK_MB} MB, for one request and for three at once`, async () => {
  assert.ok(silence3h.length < 4 << 20, `${silence3h.length} bytes`);
  const srv = await server();
  try {
    let r = await transcribe(srv, silence3h);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.text, '');
    const one = peakMB(srv);
    assert.ok(one < PEAK_MB, `peak ${one.toFixed(0)} MB after one request`);
    const all = await Promise.all([1, 2, 3].map(() => transcribe(srv, silence3h)));
    for (const a of all) assert.equal(a.status, 200, a.text);
    const three = peakMB(srv);
    assert.ok(three < PEAK_MB, `peak ${three.toFixed(0)} MB after three at once`);
  } finally {
    await srv.stop();
  }
});

// One transcription of this file with the tiny64 model reserves about 38 MB
// (model state ~12, windows, voice gate and transcript for 3 h ~10, decoder
// 16): a 60 MB budget fits one at a time.
test('over HEAVY_JOB_MEMORY_MB: concurrent transcriptions wait HEAVY_JOB_WAIT_S, then 503 naming the setting', async () => {
  const srv = await server({ HEAVY_JOB_MEMORY_MB: '60', HEAVY_JOB_WAIT_S: '1' });
  try {
    const all = await Promise.all([1, 2, 3, 4].map(() => transcribe(srv, silence3h)));
    const ok = all.filter((a) => a.status === 200), busy = all.filter((a) => a.status === 503);
    assert.equal(ok.length + busy.length, 4, all.map((a) => `${a.status} ${a.text}`).join('\n'));
    assert.ok(ok.length >= 1, 'at least one ran');
    assert.ok(busy.length >= 1, `all ${ok.length} ran: nothing waited for the budget`);
    for (const b of busy) {
      assert.match(b.json.error.message, /HEAVY_JOB_MEMORY_MB = 60/);
      assert.match(b.json.error.message, /HEAVY_JOB_WAIT_S/);
      assert.equal(b.headers.get('retry-after'), '5');
    }
    // Everything reserved was given back: a request alone fits again.
    const r = await transcribe(srv, silence3h);
    assert.equal(r.status, 200, r.text);
  } finally {
    await srv.stop();
  }
  const tiny = await server({ HEAVY_JOB_MEMORY_MB: '1' });
  try {
    const t0 = Date.now();
    const r = await transcribe(tiny, silence3h);
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.error.message, /more than the whole budget for heavy jobs \(HEAVY_JOB_MEMORY_MB = 1\)/);
    assert.ok(Date.now() - t0 < 5000, 'refused without waiting');
  } finally {
    await tiny.stop();
  }
});
