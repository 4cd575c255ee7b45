// analytics.test.mjs - payload shapes of /analytics/*, counts that match the
// requests sent, and alerts firing exactly past their thresholds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, req, rawConnect, readAll, sleep, KEY } from './lib.mjs';

const isNum = (x) => typeof x === 'number' && Number.isFinite(x);

test('stats: fields, types and exact counts', async () => {
  const s = await startServer();
  try {
    for (let i = 0; i < 7; i++) assert.equal((await req(s, 'GET', '/')).status, 200);
    for (let i = 0; i < 3; i++) assert.equal((await req(s, 'GET', '/missing')).status, 404);
    const r = await req(s, 'GET', '/analytics/stats?since_minutes=5');
    assert.equal(r.status, 200);
    assert.equal(r.json.status, 'success');
    assert.equal(typeof r.json.period, 'string');
    const m = r.json.metrics;
    assert.equal(m.total_requests, 10);
    assert.equal(m.total_errors, 3);
    assert.equal(m.error_rate, 30);
    for (const k of ['avg_response_time', 'requests_per_minute', 'retention_hours']) assert.ok(isNum(m[k]), k);
    assert.equal(m.retention_hours, 168);
    assert.equal(m.status_distribution['2xx'], 7);
    assert.equal(m.status_distribution['4xx'], 3);
    const root = m.endpoint_breakdown['GET /'];
    assert.equal(root.requests, 7);
    assert.equal(root.errors, 0);
    for (const k of ['avg_time', 'min_time', 'max_time', 'error_rate']) assert.ok(isNum(root[k]), k);
    assert.ok(root.min_time <= root.avg_time && root.avg_time <= root.max_time);
    // Unknown paths are grouped under one label, never the raw path.
    assert.equal(m.endpoint_breakdown['GET unmatched'].requests, 3);
    assert.ok(!Object.keys(m.endpoint_breakdown).some((k) => k.includes('/missing')));
  } finally { await s.stop(); }
});

test('stats: since_minutes is validated', async () => {
  const s = await startServer();
  try {
    for (const bad of ['abc', '0', '-1', '999999999']) {
      const r = await req(s, 'GET', `/analytics/stats?since_minutes=${bad}`);
      assert.equal(r.status, 422, bad);
      assert.deepEqual(r.json.detail[0].loc, ['query', 'since_minutes']);
    }
  } finally { await s.stop(); }
});

test('errors: newest first, limit, fields', async () => {
  const s = await startServer();
  try {
    await req(s, 'GET', '/first-missing');
    await req(s, 'POST', '/health', { body: '' });
    await req(s, 'GET', '/analytics/stats', { key: 'wrong' });
    const r = await req(s, 'GET', '/analytics/errors?limit=2');
    assert.equal(r.json.status, 'success');
    assert.equal(r.json.count, 2);
    const [a, b] = r.json.errors;
    assert.equal(a.status, 401);
    assert.equal(a.path, '/analytics/stats');
    assert.equal(a.method, 'GET');
    assert.equal(a.error, 'Invalid API Key');
    assert.match(a.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
    assert.equal(b.status, 405);
    const all = await req(s, 'GET', '/analytics/errors');
    assert.equal(all.json.count, 3);
    assert.equal(all.json.errors[2].status, 404);
    assert.match(all.json.errors[2].error, /first-missing/);
    assert.equal((await req(s, 'GET', '/analytics/errors?limit=0')).status, 422);
  } finally { await s.stop(); }
});

test('alerts: high_error_rate fires only past the threshold (and with >= 10 requests)', async () => {
  const s = await startServer({ ALERT_ERROR_RATE_THRESHOLD: '0.5' });
  try {
    const alerts = async () => (await req(s, 'GET', '/analytics/alerts')).json;
    // 4 ok + 5 errors = 9 requests: rate 0.56 but too few requests.
    for (let i = 0; i < 4; i++) await req(s, 'GET', '/');
    for (let i = 0; i < 5; i++) await req(s, 'GET', '/missing');
    let a = await alerts(); // this request is recorded after it answers: 10 requests, 5 errors next time
    assert.equal(a.status, 'success');
    assert.equal(a.alert_count, 0);
    assert.equal(a.thresholds.error_rate, 0.5);
    // Now 10 requests, 5 errors: exactly at the threshold: no alert.
    a = await alerts();
    assert.equal(a.alert_count, 0, JSON.stringify(a));
    // 11 requests + 2 errors -> 13 requests, 7 errors = 0.538 > 0.5: fires.
    await req(s, 'GET', '/missing');
    await req(s, 'GET', '/missing');
    a = await alerts();
    assert.equal(a.status, 'warning');
    assert.equal(a.alert_count, 1);
    const al = a.alerts[0];
    assert.equal(al.type, 'high_error_rate');
    assert.equal(typeof al.severity, 'string');
    assert.equal(typeof al.message, 'string');
    assert.ok(Math.abs(al.value - 7 / 13) < 1e-3, String(al.value));
    assert.equal(al.threshold, 0.5);
  } finally { await s.stop(); }
});

// A request whose body trickles in takes as long as the client makes it.
async function slowRequest(port, ms) {
  const sock = await rawConnect(port);
  sock.write(`DELETE /analytics/cache HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nConnection: close\r\nContent-Length: 2\r\n\r\na`);
  const reply = readAll(sock, ms + 5000);
  await sleep(ms);
  sock.write('b');
  const { data } = await reply;
  sock.destroy();
  return data;
}

test('alerts: high_response_time fires when the average passes the threshold', async () => {
  const s = await startServer({ ALERT_RESPONSE_TIME_THRESHOLD: '0.4', CONNECTION_TIMEOUT: '30' });
  try {
    for (let i = 0; i < 3; i++) await req(s, 'GET', '/');
    let a = (await req(s, 'GET', '/analytics/alerts')).json;
    assert.equal(a.alert_count, 0);
    assert.equal(a.thresholds.response_time, 0.4);
    // One 3 s request among 4 fast ones: average ~0.6 s > 0.4.
    assert.match(await slowRequest(s.port, 3000), /^HTTP\/1\.1 200/);
    a = (await req(s, 'GET', '/analytics/alerts')).json;
    assert.equal(a.status, 'warning');
    const al = a.alerts.find((x) => x.type === 'high_response_time');
    assert.ok(al, JSON.stringify(a));
    assert.ok(al.value > 0.4 && al.value < 1.0, String(al.value));
    // The alert's value is the same average /analytics/stats reports.
    const st = (await req(s, 'GET', '/analytics/stats?since_minutes=5')).json.metrics;
    assert.ok(st.avg_response_time < al.value, 'stats now include one more fast request');
  } finally { await s.stop(); }
});

test('analytics/health and cache payloads', async () => {
  const s = await startServer();
  try {
    const h = await req(s, 'GET', '/analytics/health', { key: null });
    assert.equal(h.status, 200);
    assert.equal(h.json.status, 'healthy');
    assert.equal(typeof h.json.components.monitoring, 'object');
    assert.equal(typeof h.json.components.cache, 'object');
    assert.equal(typeof h.json.components.backends, 'object');
    const c = await req(s, 'GET', '/analytics/cache');
    assert.equal(c.json.status, 'success');
    const k = c.json.cache;
    assert.equal(k.enabled, true);
    assert.equal(k.backend, 'memory');
    assert.equal(k.status, 'connected');
    for (const f of ['total_keys', 'hits', 'misses', 'hit_rate', 'memory_used_mb', 'evictions']) assert.ok(isNum(k[f]), f);
    const d = await req(s, 'DELETE', '/analytics/cache?prefix=embedding');
    assert.equal(d.status, 200);
    assert.equal(d.json.status, 'success');
    assert.equal(d.json.deleted, 0);
    assert.equal((await req(s, 'DELETE', '/analytics/cache?prefix=bogus')).status, 422);
  } finally { await s.stop(); }
});

test('MONITORING_ENABLED=false records nothing', async () => {
  const s = await startServer({ MONITORING_ENABLED: 'false' });
  try {
    for (let i = 0; i < 5; i++) await req(s, 'GET', '/');
    const r = await req(s, 'GET', '/analytics/stats');
    assert.equal(r.json.metrics.total_requests, 0);
  } finally { await s.stop(); }
});
