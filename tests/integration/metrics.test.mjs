// metrics.test.mjs - /metrics passes promtool, a real Prometheus scrapes it,
// and the counters match the requests sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, req, freePort, sleep } from './lib.mjs';

function sample(text, name, labels) {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const m = line.match(/^([^{ ]+)(?:\{(.*)\})? (\S+)$/);
    if (!m || m[1] !== name) continue;
    const have = m[2] ? m[2].match(/\w+="(?:[^"\\]|\\.)*"/g) : [];
    if (want.every((w) => have.includes(w))) return Number(m[3]);
  }
  return undefined;
}

test('/metrics passes promtool and counts every request by route template', async () => {
  const s = await startServer();
  try {
    for (let i = 0; i < 5; i++) await req(s, 'GET', '/');
    for (let i = 0; i < 2; i++) await req(s, 'GET', `/raw/path/${i}`);
    await req(s, 'GET', '/analytics/stats', { key: 'bad' });
    await req(s, 'GET', '/metrics');
    const r = await req(s, 'GET', '/metrics', { key: null });
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/);
    const check = spawnSync('promtool', ['check', 'metrics'], { input: r.text, encoding: 'utf8' });
    assert.equal(check.error, undefined, 'promtool not found: install the prometheus package');
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const t = r.text;
    assert.equal(sample(t, 'simpleton_requests_total', { method: 'GET', endpoint: '/', status: '200' }), 5);
    assert.equal(sample(t, 'simpleton_requests_total', { method: 'GET', endpoint: 'unmatched', status: '404' }), 2);
    assert.equal(sample(t, 'simpleton_requests_total', { endpoint: '/analytics/stats', status: '401' }), 1);
    assert.doesNotMatch(t, /\/raw\/path/);
    // /metrics itself is not recorded.
    assert.doesNotMatch(t, /endpoint="\/metrics"/);
    assert.equal(sample(t, 'simpleton_request_duration_seconds_count', { method: 'GET', endpoint: '/' }), 5);
    assert.equal(sample(t, 'simpleton_request_duration_seconds_bucket', { method: 'GET', endpoint: '/', le: '300' }), 5);
    assert.equal(sample(t, 'simpleton_request_duration_seconds_bucket', { endpoint: '/', le: '0.005' }) <= 5, true);
    assert.equal(sample(t, 'simpleton_errors_total', { endpoint: '/analytics/stats', error_type: 'auth_invalid' }), 1);
    assert.equal(sample(t, 'simpleton_requests_in_progress', {}), 1);
    for (const fam of ['simpleton_cache_hits_total', 'simpleton_cache_misses_total', 'simpleton_llm_requests_total',
      'simpleton_llm_tokens_total', 'process_resident_memory_bytes', 'process_cpu_seconds_total',
      'process_open_fds', 'process_start_time_seconds', 'simpleton_build_info'])
      assert.match(t, new RegExp(`^# TYPE ${fam} `, 'm'), fam);
    assert.ok(sample(t, 'process_resident_memory_bytes', {}) > 1e6);
    const start = sample(t, 'process_start_time_seconds', {});
    assert.ok(Math.abs(start - Date.now() / 1000) < 120, String(start));
  } finally { await s.stop(); }
});

test('model labels only name models that exist: 50 bogus (and hostile) names on every model route leave no series', async () => {
  const s = await startServer({ CACHE_ENABLED: 'false' });
  try {
    const names = Array.from({ length: 44 }, () => `bogus-${randomUUID()}`)
      .concat(['a"b', 'line\nbreak', '}{', 'x\\"}', 'm{le="1"} 9', 'tab\there']);
    // 0.1 s of silence as a wav, and a 1x1 PNG.
    const wav = Buffer.alloc(44 + 3200);
    wav.write('RIFF', 0); wav.writeUInt32LE(36 + 3200, 4); wav.write('WAVEfmt ', 8); wav.writeUInt32LE(16, 16);
    wav.writeUInt16LE(1, 20); wav.writeUInt16LE(1, 22); wav.writeUInt32LE(16000, 24); wav.writeUInt32LE(32000, 28);
    wav.writeUInt16LE(2, 32); wav.writeUInt16LE(16, 34); wav.write('data', 36); wav.writeUInt32LE(3200, 40);
    const png = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';
    const calls = (model) => [
      ['/inference/generate', { model, prompt: 'Once', max_tokens: 2 }],
      ['/inference/chat', { model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }],
      ['/v1/chat/completions', { model, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 2 }],
      ['/v1/completions', { model, prompt: 'Once', max_tokens: 2 }],
      ['/api/generate', { model, prompt: 'Once', stream: false }],
      ['/api/chat', { model, messages: [{ role: 'user', content: 'Hi' }], stream: false }],
      ['/embeddings/', { model, input: 'hello' }],
      ['/v1/embeddings', { model, input: 'hello' }],
      ['/api/embed', { model, input: 'hello' }],
      ['/vision/analyze', { model, image: png, prompt: 'What is it?' }],
      ['/audio/transcribe', { model, audio: wav.toString('base64') }],
    ];
    let refused = 0;
    for (const name of names) {
      for (const [p, json] of calls(name)) {
        const r = await req(s, 'POST', p, { json });
        assert.ok(r.status >= 400, `${p} ${JSON.stringify(name)}: ${r.status} ${r.text}`);
        refused++;
      }
    }
    assert.equal(refused, names.length * 11);
    // A real model is still counted.
    assert.equal((await req(s, 'POST', '/inference/generate', { json: { prompt: 'Once', max_tokens: 2 } })).status, 200);
    const r = await req(s, 'GET', '/metrics', { key: null });
    const check = spawnSync('promtool', ['check', 'metrics'], { input: r.text, encoding: 'utf8' });
    assert.equal(check.status, 0, check.stdout + check.stderr);
    const labels = new Set([...r.text.matchAll(/[{,]model="((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]));
    assert.deepEqual([...labels], ['stories260K']);
    assert.equal(sample(r.text, 'simpleton_llm_requests_total', { model: 'stories260K', endpoint: '/inference/generate' }), 1);
    assert.doesNotMatch(r.text, /bogus-/);
  } finally { await s.stop(); }
});

test('a real Prometheus scrapes Simpleton (up == 1)', async () => {
  const s = await startServer();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smp-prom-'));
  const promPort = await freePort();
  writeFileSync(path.join(dir, 'prometheus.yml'),
    `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: simpleton\n    static_configs:\n      - targets: ['127.0.0.1:${s.port}']\n`);
  const prom = spawn('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`],
  { stdio: 'ignore' });
  try {
    let up, reqs;
    for (let i = 0; i < 100 && !(up === '1' && reqs !== undefined); i++) {
      await sleep(200);
      await req(s, 'GET', '/');
      try {
        const q = await (await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=up{job="simpleton"}`)).json();
        up = q.data?.result?.[0]?.value?.[1];
        const q2 = await (await fetch(`http://127.0.0.1:${promPort}/api/v1/query?query=simpleton_requests_total{endpoint="/"}`)).json();
        reqs = q2.data?.result?.[0]?.value?.[1];
      } catch { /* prometheus not up yet */ }
    }
    assert.equal(up, '1');
    assert.ok(Number(reqs) >= 1);
  } finally {
    prom.kill('SIGKILL');
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
