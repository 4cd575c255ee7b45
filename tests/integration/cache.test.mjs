// cache.test.mjs - the cache as the HTTP API shows it, against a real
// redis-server: status, prefix clearing that spares other keys, Redis killed
// (requests still succeed, health degraded) and restarted (back without a
// Simpleton restart).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startRedis, req, sleep } from './lib.mjs';

test('redis: clear by prefix touches only Simpleton keys of that type', async () => {
  const redis = await startRedis();
  const s = await startServer({ REDIS_URL: redis.url });
  try {
    redis.cli('SET', 'simpleton:embedding:aaa', '1');
    redis.cli('SET', 'simpleton:embedding:bbb', '1');
    redis.cli('SET', 'simpleton:chat:ccc', '1');
    redis.cli('SET', 'user:data', 'keep me');
    const st = (await req(s, 'GET', '/analytics/cache')).json.cache;
    assert.equal(st.backend, 'redis');
    assert.equal(st.status, 'connected');
    assert.equal(st.total_keys, 3);
    let d = await req(s, 'DELETE', '/analytics/cache?prefix=embedding');
    assert.equal(d.json.deleted, 2);
    assert.equal(redis.cli('EXISTS', 'simpleton:chat:ccc'), '1');
    d = await req(s, 'DELETE', '/analytics/cache');
    assert.equal(d.json.deleted, 1);
    assert.equal(redis.cli('GET', 'user:data'), 'keep me');
    assert.equal(redis.cli('DBSIZE'), '1');
  } finally {
    await s.stop();
    await redis.cleanup();
  }
});

test('redis down: cached routes still answer (MISS), health degraded; back up: connected again', async () => {
  const redis = await startRedis();
  const s = await startServer({ REDIS_URL: redis.url, REDIS_TIMEOUT_MS: '200' });
  try {
    assert.equal((await req(s, 'GET', '/analytics/health', { key: null })).json.status, 'healthy');
    await redis.kill();
    const t0 = Date.now();
    const root = await req(s, 'GET', '/');
    assert.equal(root.status, 200);
    // The cached routes answer from the model, twice (nothing could be stored).
    for (let i = 0; i < 2; i++)
      for (const [p, json] of [['/inference/generate', { prompt: 'Once', max_tokens: 4, temperature: 0 }],
        ['/inference/chat', { messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, temperature: 0 }],
        ['/api/generate', { model: 'stories260K', prompt: 'Once', stream: false, options: { num_predict: 4 } }],
        ['/embeddings/', { input: ['alpha', 'beta'] }],
        ['/v1/embeddings', { input: 'alpha', model: 'stories260K' }]]) {
        const r = await req(s, 'POST', p, { json });
        assert.equal(r.status, 200, `${p} while Redis is down: ${r.text}`);
        assert.equal(r.headers.get('x-cache'), 'MISS', p);
        assert.ok(r.json && typeof r.json === 'object', `${p}: ${r.text}`);
      }
    let h = await req(s, 'GET', '/analytics/health', { key: null });
    for (let i = 0; i < 20 && h.json.status !== 'degraded'; i++) {
      await sleep(100);
      h = await req(s, 'GET', '/analytics/health', { key: null });
    }
    assert.equal(h.status, 200);
    assert.equal(h.json.status, 'degraded');
    assert.equal(h.json.components.cache.status, 'degraded');
    const c = await req(s, 'GET', '/analytics/cache');
    assert.equal(c.status, 200);
    assert.equal(c.json.cache.status, 'error');
    assert.equal((await req(s, 'DELETE', '/analytics/cache')).status, 503);
    const hh = await req(s, 'GET', '/health', { key: null });
    assert.equal(hh.json.status, 'degraded');
    assert.ok(Date.now() - t0 < 5000, 'requests were slow while Redis was down');
    // Restart Redis on the same port: Simpleton finds it again by itself.
    const back = await startRedis(redis.port);
    try {
      let st;
      for (let i = 0; i < 80; i++) {
        st = (await req(s, 'GET', '/analytics/cache')).json.cache.status;
        if (st === 'connected') break;
        await sleep(100);
      }
      assert.equal(st, 'connected');
      assert.equal((await req(s, 'GET', '/analytics/health', { key: null })).json.status, 'healthy');
    } finally { await back.cleanup(); }
  } finally {
    await s.stop();
    await redis.cleanup();
  }
});

test('CACHE_ENABLED=false: cache reported disabled', async () => {
  const s = await startServer({ CACHE_ENABLED: 'false' });
  try {
    const c = (await req(s, 'GET', '/analytics/cache')).json.cache;
    assert.equal(c.enabled, false);
    assert.equal(c.status, 'disabled');
    assert.equal((await req(s, 'GET', '/analytics/health', { key: null })).json.status, 'healthy');
  } finally { await s.stop(); }
});
