// metrics.test.mjs - /metrics passes promtool, a real Prometheus scrapes it,
// and the counters match the requests sent.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
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
