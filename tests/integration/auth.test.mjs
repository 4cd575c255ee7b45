// auth.test.mjs - every route x {no key, wrong key, key, bearer}, and the
// generated key when API_KEYS is unset.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, req, KEY } from './lib.mjs';

// [method, path, public?, status with a valid key] - every route; the last
// test checks that /openapi.json lists nothing this table lacks. POST routes
// get an empty JSON object, so a valid key leads to the body's validation
// error (422 on Simpleton's routes, 400 in the other dialects), not a 401.
const ROUTES = [
  ['GET', '/', true, 200],
  ['GET', '/health', true, 200],
  ['GET', '/metrics', true, 200],
  ['GET', '/docs', true, 200],
  ['GET', '/openapi.json', true, 200],
  ['GET', '/analytics/health', true, 200],
  ['GET', '/analytics/stats', false, 200],
  ['GET', '/analytics/errors', false, 200],
  ['GET', '/analytics/alerts', false, 200],
  ['GET', '/analytics/cache', false, 200],
  ['DELETE', '/analytics/cache', false, 200],
  ['GET', '/models', false, 200],
  ['POST', '/inference/generate', false, 422],
  ['POST', '/inference/chat', false, 422],
  ['POST', '/embeddings/', false, 422],
  ['POST', '/embeddings', false, 422],
  ['POST', '/embeddings/batch', false, 422],
  ['GET', '/v1/models', false, 200],
  ['GET', '/v1/models/{model}', false, 200],
  ['POST', '/v1/chat/completions', false, 400],
  ['POST', '/v1/completions', false, 400],
  ['POST', '/v1/embeddings', false, 400],
  ['GET', '/api/tags', false, 200],
  ['GET', '/api/ps', false, 200],
  ['POST', '/api/show', false, 400],
  ['GET', '/api/version', false, 200],
  ['POST', '/api/generate', false, 400],
  ['POST', '/api/chat', false, 400],
  ['POST', '/api/embed', false, 400],
  ['POST', '/api/embeddings', false, 400],
  ['POST', '/rag/ingest', false, 422],
  ['POST', '/rag/ingest/file', false, 415],
  ['POST', '/vision/analyze', false, 422],
  ['POST', '/vision/caption', false, 422],
  ['POST', '/vision/ocr', false, 422],
  ['POST', '/vision/upload', false, 415],
  ['POST', '/audio/transcribe', false, 422],
  ['POST', '/audio/translate', false, 422],
  ['POST', '/audio/upload/transcribe', false, 415],
  ['POST', '/audio/upload/translate', false, 415],
  ['POST', '/v1/audio/transcriptions', false, 415],
  ['POST', '/v1/audio/translations', false, 415],
  ['POST', '/rag/search', false, 422],
  ['POST', '/rag/query', false, 422],
  ['GET', '/rag/collections', false, 200],
  ['DELETE', '/rag/collections/{name}', false, 422],
];
const concrete = (p) => p.replace('{model}', 'stories260K').replace('{name}', '%7Bname%7D');
const call = (method, p, opts) => req(srv, method, concrete(p), method === 'POST' ? { ...opts, json: {} } : opts);

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.stop(); });

for (const [method, p, isPublic, okStatus] of ROUTES) {
  test(`${method} ${p}: no key`, async () => {
    const r = await call(method, p, { key: null });
    if (isPublic) {
      assert.equal(r.status, okStatus, r.text);
    } else {
      assert.equal(r.status, 401);
      const msg = r.json.detail ?? r.json.error?.message ?? r.json.error;
      assert.equal(msg, "Missing API Key. Include 'X-API-Key' header in your request.");
      assert.equal(r.headers.get('www-authenticate'), 'ApiKey');
    }
  });
  test(`${method} ${p}: wrong key`, async () => {
    const r = await call(method, p, { key: 'nope' });
    if (isPublic) {
      assert.equal(r.status, okStatus);
    } else {
      assert.equal(r.status, 401);
      const msg = r.json.detail ?? r.json.error?.message ?? r.json.error;
      assert.equal(msg, 'Invalid API Key');
      assert.equal(r.headers.get('www-authenticate'), 'ApiKey');
    }
  });
  test(`${method} ${p}: X-API-Key`, async () => {
    const r = await call(method, p, {});
    assert.equal(r.status, okStatus, r.text);
  });
  test(`${method} ${p}: Bearer`, async () => {
    const r = await call(method, p, { key: null, headers: { Authorization: `Bearer ${KEY}` } });
    assert.equal(r.status, okStatus, r.text);
  });
}

test('a key that is a prefix of the real key is refused', async () => {
  const r = await req(srv, 'GET', '/analytics/stats', { key: KEY.slice(0, -1) });
  assert.equal(r.status, 401);
});

// Keys are compared as SHA-256 digests; a check that only compared lengths
// (or a prefix) would let these in.
test('a wrong key of the same length as a real key is refused, however close', async () => {
  const swap = (c) => (c === 'a' ? 'b' : 'a');
  const wrong = [
    KEY.slice(0, -1) + swap(KEY.at(-1)), // last character
    swap(KEY[0]) + KEY.slice(1), // first character
    KEY.toUpperCase(),
    'x'.repeat(KEY.length),
  ];
  for (const key of wrong) {
    assert.equal(key.length, KEY.length);
    assert.equal((await req(srv, 'GET', '/analytics/stats', { key })).status, 401, key);
    const b = await req(srv, 'GET', '/analytics/stats', { key: null, headers: { Authorization: `Bearer ${key}` } });
    assert.equal(b.status, 401, `Bearer ${key}`);
  }
  // With keys of different lengths, a wrong key as long as either is refused too.
  const s = await startServer({ API_KEYS: 'short,a-much-longer-key' });
  try {
    assert.equal((await req(s, 'GET', '/analytics/stats', { key: 'short' })).status, 200);
    assert.equal((await req(s, 'GET', '/analytics/stats', { key: 'a-much-longer-key' })).status, 200);
    for (const key of ['shorT', 'a-much-longer-kez', 'sh', 'a-much-longer-key-'])
      assert.equal((await req(s, 'GET', '/analytics/stats', { key })).status, 401, key);
  } finally { await s.stop(); }
});

test('several comma-separated keys all work', async () => {
  const s = await startServer({ API_KEYS: 'alpha, beta' });
  try {
    assert.equal((await req(s, 'GET', '/analytics/stats', { key: 'alpha' })).status, 200);
    assert.equal((await req(s, 'GET', '/analytics/stats', { key: 'beta' })).status, 200);
    assert.equal((await req(s, 'GET', '/analytics/stats', { key: 'gamma' })).status, 401);
  } finally { await s.stop(); }
});

test('every route in /openapi.json is in the auth table', async () => {
  const r = await req(srv, 'GET', '/openapi.json', { key: null });
  const listed = [];
  for (const [p, ops] of Object.entries(r.json.paths))
    for (const [m, op] of Object.entries(ops)) listed.push([m.toUpperCase(), p, !op.security]);
  for (const row of listed)
    assert.ok(ROUTES.some((x) => x[0] === row[0] && x[1] === row[1] && x[2] === row[2]), `untested route ${row}`);
});

test('without API_KEYS a key is generated once, kept 0600, and reused', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smp-key-'));
  try {
    const s1 = await startServer({ API_KEYS: undefined }, { dataDir: dir });
    const m = s1.stdout.match(/Generated API key \(kept in (.+), mode 0600\): (\S+)/);
    assert.ok(m, `no key printed: ${s1.stdout}`);
    const file = path.join(dir, 'data', 'api_key');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    assert.equal(readFileSync(file, 'utf8').trim(), m[2]);
    assert.equal((await req(s1, 'GET', '/analytics/stats', { key: m[2] })).status, 200);
    assert.equal((await req(s1, 'GET', '/analytics/stats', { key: 'other' })).status, 401);
    await s1.stop();
    const s2 = await startServer({ API_KEYS: undefined }, { dataDir: dir });
    assert.doesNotMatch(s2.stdout, /Generated API key/);
    assert.equal((await req(s2, 'GET', '/analytics/stats', { key: m[2] })).status, 200);
    await s2.stop();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
