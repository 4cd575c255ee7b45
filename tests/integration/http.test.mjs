// http.test.mjs - the HTTP layer: request ids, 404/405, CORS, body caps,
// slow clients, graceful shutdown, configuration errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, symlinkSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, req, rawConnect, readAll, sleep, BIN, KEY } from './lib.mjs';

let srv;
before(async () => {
  srv = await startServer({ MAX_BODY_MB: '1', CONNECTION_TIMEOUT: '2', CORS_ORIGINS: 'http://good.example' });
});
after(async () => { await srv.stop(); });

test('every response carries a request id; a valid client id is echoed', async () => {
  const a = await req(srv, 'GET', '/');
  assert.match(a.headers.get('x-request-id'), /^[0-9a-f]{32}$/);
  const b = await req(srv, 'GET', '/', { headers: { 'X-Request-Id': 'client-abc.123' } });
  assert.equal(b.headers.get('x-request-id'), 'client-abc.123');
  const c = await req(srv, 'GET', '/', { headers: { 'X-Request-Id': 'bad id with spaces' } });
  assert.notEqual(c.headers.get('x-request-id'), 'bad id with spaces');
  assert.match(c.headers.get('x-request-id'), /^[0-9a-f]{32}$/);
});

test('GET / describes the service', async () => {
  const r = await req(srv, 'GET', '/', { key: null });
  assert.equal(r.json.service, 'Simpleton');
  for (const k of ['version', 'description', 'docs', 'health']) assert.equal(typeof r.json[k], 'string');
});

test('public routes disclose no filesystem paths (models dir, data dir, vector store file)', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smp-paths-'));
  mkdirSync(path.join(dir, 'models'));
  symlinkSync(path.resolve('../shared/models/stories260K.gguf'), path.join(dir, 'models', 'tiny-story.gguf'));
  const s = await startServer({ MODELS_DIR: path.join(dir, 'models'), DATA_DIR: path.join(dir, 'data'),
    REDIS_URL: `unix://${path.join(dir, 'no-redis.sock')}` }, { dataDir: dir });
  try {
    const seen = [];
    for (const p of ['/', '/health', '/analytics/health', '/metrics', '/openapi.json', '/docs']) {
      const r = await req(s, 'GET', p, { key: null });
      assert.ok(r.status === 200 || r.status === 503, `${p}: ${r.status}`);
      assert.ok(!r.text.includes(dir), `${p} shows the data directory: ${r.text.slice(0, 2000)}`);
      assert.doesNotMatch(r.text, /"\/(tmp|home|var|srv|usr|etc|opt|root|work)\//, p);
      seen.push(r.text);
    }
    // What the paths stood for is still there, by name.
    const h = JSON.parse(seen[1]);
    assert.ok(h.models['tiny-story'], seen[1]);
    assert.match(seen[1], /vectors\.sqlite3/);
    // An operator with the key still sees the details where they are asked for.
    assert.equal((await req(s, 'GET', '/models')).status, 200);
  } finally {
    await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unknown path: 404 JSON naming it', async () => {
  const r = await req(srv, 'GET', '/no/such/thing');
  assert.equal(r.status, 404);
  assert.match(r.headers.get('content-type'), /application\/json/);
  assert.match(r.json.detail, /\/no\/such\/thing/);
});

test('wrong method: 405 with Allow', async () => {
  const r = await req(srv, 'POST', '/health', { body: '' });
  assert.equal(r.status, 405);
  assert.equal(r.headers.get('allow'), 'GET, HEAD');
  const c = await req(srv, 'PUT', '/analytics/cache', { body: '' });
  assert.equal(c.status, 405);
  assert.equal(c.headers.get('allow'), 'GET, HEAD, DELETE');
});

test('OpenAI and Ollama paths answer errors in their own shapes', async () => {
  const o = await req(srv, 'GET', '/v1/nothing-here');
  assert.equal(o.status, 404);
  assert.equal(typeof o.json.error.message, 'string');
  assert.equal(typeof o.json.error.type, 'string');
  const l = await req(srv, 'GET', '/api/nothing-here');
  assert.equal(l.status, 404);
  assert.equal(typeof l.json.error, 'string');
});

test('CORS: allowed origin echoed, preflight answered, other origins not', async () => {
  const a = await req(srv, 'GET', '/', { headers: { Origin: 'http://good.example' } });
  assert.equal(a.headers.get('access-control-allow-origin'), 'http://good.example');
  const b = await req(srv, 'GET', '/', { headers: { Origin: 'http://evil.example' } });
  assert.equal(b.headers.get('access-control-allow-origin'), null);
  const p = await fetch(srv.url + '/analytics/stats', {
    method: 'OPTIONS',
    headers: { Origin: 'http://good.example', 'Access-Control-Request-Method': 'GET',
      'Access-Control-Request-Headers': 'x-api-key' },
  });
  assert.equal(p.status, 200);
  assert.equal(p.headers.get('access-control-allow-origin'), 'http://good.example');
  assert.match(p.headers.get('access-control-allow-methods'), /GET/);
  assert.match(p.headers.get('access-control-allow-headers'), /x-api-key/);
});

test('oversized body: 413 from Content-Length before the body is sent', async () => {
  const sock = await rawConnect(srv.port);
  // Announce 50 MiB and send none of it: the answer must come anyway.
  sock.write(`DELETE /analytics/cache HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n` +
    `Content-Type: application/json\r\nContent-Length: ${50 << 20}\r\n\r\n`);
  const { data } = await readAll(sock, 3000);
  sock.destroy();
  assert.match(data, /^HTTP\/1\.1 413/);
  assert.match(data, /MAX_BODY_MB/);
});

test('body limit boundaries: exactly MAX_BODY_MB is read, one byte more is refused (Content-Length and chunked)', async () => {
  const cap = 1 << 20;
  const head = `DELETE /analytics/cache HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nConnection: close\r\n`;
  const exchange = async (bytes, timeoutMs = 5000) => {
    const sock = await rawConnect(srv.port);
    sock.on('error', () => {});
    const done = readAll(sock, timeoutMs);
    sock.write(bytes);
    const r = await done;
    sock.destroy();
    return r.data;
  };
  const status = (data) => (data.match(/^HTTP\/1\.1 (\d+)/) || [])[1];
  // Content-Length: the whole body at the cap is read and answered.
  let data = await exchange(Buffer.concat([Buffer.from(`${head}Content-Length: ${cap}\r\n\r\n`), Buffer.alloc(cap, 0x20)]));
  assert.equal(status(data), '200', data.slice(0, 300));
  // One byte over: 413 from the header alone, with none of the body sent.
  data = await exchange(`${head}Content-Length: ${cap + 1}\r\n\r\n`, 3000);
  assert.equal(status(data), '413', data.slice(0, 300));
  assert.match(data, /MAX_BODY_MB/);
  // Chunked: exactly the cap in two chunks is read; one byte more is refused.
  const chunked = (n) => {
    const half = Math.floor(n / 2);
    return Buffer.concat([Buffer.from(`${head}Transfer-Encoding: chunked\r\n\r\n${half.toString(16)}\r\n`),
      Buffer.alloc(half, 0x20), Buffer.from(`\r\n${(n - half).toString(16)}\r\n`), Buffer.alloc(n - half, 0x20),
      Buffer.from('\r\n0\r\n\r\n')]);
  };
  data = await exchange(chunked(cap));
  assert.equal(status(data), '200', data.slice(0, 300));
  data = await exchange(chunked(cap + 1));
  assert.equal(status(data), '413', data.slice(0, 300));
});

test('oversized chunked body: 413 while the client is still sending, then the connection closes', async () => {
  // No Content-Length: the cap (1 MiB) is only known to be passed mid-body.
  // The 413 must arrive while the client is still streaming, not at its end.
  const sock = await rawConnect(srv.port);
  sock.on('error', () => {});
  let got = '';
  sock.on('data', (d) => { got += d.toString('latin1'); });
  const closed = new Promise((r) => sock.on('close', r));
  sock.write(`DELETE /analytics/cache HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n` +
    'Transfer-Encoding: chunked\r\n\r\n');
  const chunk = 'x'.repeat(256 * 1024);
  let sent = 0;
  // Keep sending (up to 64 MiB) until the answer shows up; never send the last chunk.
  while (!got.endsWith('}') && sent < (64 << 20) && !sock.destroyed) {
    sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    sent += chunk.length;
    await sleep(2);
  }
  assert.match(got, /^HTTP\/1\.1 413/);
  assert.ok(sent < (4 << 20), `answered only after ${sent} bytes`);
  const body = got.slice(got.indexOf('\r\n\r\n') + 4);
  assert.match(JSON.parse(body).detail, /MAX_BODY_MB/);
  assert.match(got, /X-Request-Id: /i);
  // The server stops reading soon after (bounded), and closes.
  for (let i = 0; i < 64 && !sock.destroyed && sock.writable; i++) {
    sock.write(`${chunk.length.toString(16)}\r\n${chunk}\r\n`);
    await sleep(2);
  }
  await Promise.race([closed, sleep(5000)]);
  assert.ok(sock.destroyed || sock.readableEnded, 'connection was not closed');
  // Counted like any answer.
  const m = await req(srv, 'GET', '/metrics');
  assert.match(m.text, /simpleton_requests_total\{method="DELETE",endpoint="\/analytics\/cache",status="413"\}/);
});

test('a slow-loris client is cut off while others are served', async () => {
  const sock = await rawConnect(srv.port);
  const start = Date.now();
  const closed = readAll(sock, 10000);
  sock.write('GET / HTTP/1.1\r\nHost: x\r\n');
  // One header byte every 2.5 s: slower than CONNECTION_TIMEOUT=2.
  const dripper = setInterval(() => { if (!sock.destroyed) sock.write('X'); }, 2500);
  sock.on('error', () => {});
  // Meanwhile normal clients are answered promptly.
  for (let i = 0; i < 20; i++) {
    const t = Date.now();
    const r = await req(srv, 'GET', '/');
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t < 1000);
  }
  const res = await closed;
  clearInterval(dripper);
  assert.ok(res.closed, 'slow client was not disconnected');
  assert.ok(Date.now() - start < 9000);
  assert.doesNotMatch(res.data, /200 OK/);
});

test('graceful shutdown: in-flight request finishes, exit code 0', async () => {
  const s = await startServer();
  const sock = await rawConnect(s.port);
  // Start a request whose body is still arriving, then SIGTERM.
  sock.write(`DELETE /analytics/cache HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nContent-Length: 4\r\n\r\nab`);
  const reply = readAll(sock, 8000);
  await sleep(200);
  s.proc.kill('SIGTERM');
  await sleep(300);
  assert.equal(s.exited, null, 'server exited with a request in flight');
  // New connections are refused while draining.
  await assert.rejects(fetch(s.url + '/'));
  sock.write('cd');
  const { data } = await reply;
  assert.match(data, /^HTTP\/1\.1 200/);
  const ex = await s.exitPromise;
  assert.equal(ex.code, 0);
  await s.stop();
});

test('bad configuration stops the server with a message naming the variable', async () => {
  for (const [k, v] of [['PORT', 'abc'], ['CACHE_TTL', '-5'], ['ALERT_ERROR_RATE_THRESHOLD', '1.5'],
    ['MONITORING_ENABLED', 'maybe'], ['REDIS_URL', 'localhost:6379']]) {
    const s = await startServer({ [k]: v }, { expectFail: true });
    assert.equal(s.exited?.code, 2, `${k}=${v} did not stop the server`);
    assert.match(s.stderr, new RegExp(k));
    await s.stop();
  }
});

test('serve --help lists every variable with its default', () => {
  const r = spawnSync(BIN, ['serve', '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  for (const v of ['API_KEYS', 'OLLAMA_BASE_URL', 'DEFAULT_INFERENCE_MODEL', 'DEFAULT_EMBEDDING_MODEL',
    'DEFAULT_VISION_MODEL', 'DEFAULT_AUDIO_MODEL', 'HOST', 'PORT', 'LOG_LEVEL', 'QDRANT_URL', 'QDRANT_API_KEY',
    'DEFAULT_COLLECTION', 'CHUNK_SIZE', 'CHUNK_OVERLAP', 'TOP_K_RESULTS', 'REDIS_URL', 'CACHE_ENABLED', 'CACHE_TTL',
    'CACHE_EMBEDDING_TTL', 'CACHE_INFERENCE_TTL', 'MONITORING_ENABLED', 'METRICS_RETENTION_HOURS',
    'ALERT_ERROR_RATE_THRESHOLD', 'ALERT_RESPONSE_TIME_THRESHOLD', 'MODELS_DIR', 'DATA_DIR', 'CACHE_MAX_MB',
    'MAX_LOADED_MODELS', 'THREADS']) {
    assert.match(r.stdout, new RegExp(`^  ${v} +default: `, 'm'), v);
  }
  assert.match(r.stdout, /PORT +default: 8000/);
});

test('.env is read and the environment wins', async () => {
  const { writeFileSync, mkdtempSync } = await import('node:fs');
  const os = await import('node:os');
  const path = await import('node:path');
  const d = mkdtempSync(path.join(os.tmpdir(), 'smp-env-'));
  const f = path.join(d, '.env');
  writeFileSync(f, 'METRICS_RETENTION_HOURS=3\nAPI_KEYS=from-file\n');
  const s = await startServer({ ENV_FILE: f, API_KEYS: undefined });
  try {
    const r = await req(s, 'GET', '/analytics/stats', { key: 'from-file' });
    assert.equal(r.status, 200);
    assert.equal(r.json.metrics.retention_hours, 3);
  } finally { await s.stop(); }
  const s2 = await startServer({ ENV_FILE: f, METRICS_RETENTION_HOURS: '5' });
  try {
    const r = await req(s2, 'GET', '/analytics/stats');
    assert.equal(r.json.metrics.retention_hours, 5);
  } finally { await s2.stop(); }
});
