// auth.test.mjs - every route x {no key, wrong key, key, bearer}, and the
// generated key when API_KEYS is unset.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, req, KEY } from './lib.mjs';

// [method, path, public?] - every route registered in issue 2; later route
// families extend this table through /openapi.json (see the last test).
const ROUTES = [
  ['GET', '/', true],
  ['GET', '/health', true],
  ['GET', '/metrics', true],
  ['GET', '/docs', true],
  ['GET', '/openapi.json', true],
  ['GET', '/analytics/health', true],
  ['GET', '/analytics/stats', false],
  ['GET', '/analytics/errors', false],
  ['GET', '/analytics/alerts', false],
  ['GET', '/analytics/cache', false],
  ['DELETE', '/analytics/cache', false],
];

let srv;
before(async () => { srv = await startServer(); });
after(async () => { await srv.stop(); });

for (const [method, p, isPublic] of ROUTES) {
  test(`${method} ${p}: no key`, async () => {
    const r = await req(srv, method, p, { key: null });
    if (isPublic) {
      assert.equal(r.status, 200, r.text);
    } else {
      assert.equal(r.status, 401);
      assert.equal(r.json.detail, "Missing API Key. Include 'X-API-Key' header in your request.");
      assert.equal(r.headers.get('www-authenticate'), 'ApiKey');
    }
  });
  test(`${method} ${p}: wrong key`, async () => {
    const r = await req(srv, method, p, { key: 'nope' });
    if (isPublic) {
      assert.equal(r.status, 200);
    } else {
      assert.equal(r.status, 401);
      assert.equal(r.json.detail, 'Invalid API Key');
      assert.equal(r.headers.get('www-authenticate'), 'ApiKey');
    }
  });
  test(`${method} ${p}: X-API-Key`, async () => {
    const r = await req(srv, method, p);
    assert.equal(r.status, 200, r.text);
  });
  test(`${method} ${p}: Bearer`, async () => {
    const r = await req(srv, method, p, { key: null, headers: { Authorization: `Bearer ${KEY}` } });
    assert.equal(r.status, 200, r.text);
  });
}

test('a key that is a prefix of the real key is refused', async () => {
  const r = await req(srv, 'GET', '/analytics/stats', { key: KEY.slice(0, -1) });
  assert.equal(r.status, 401);
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
