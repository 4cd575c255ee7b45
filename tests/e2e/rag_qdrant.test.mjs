// rag_qdrant.test.mjs - retrieval with QDRANT_URL set: the real binary's
// Qdrant adapter against fake_qdrant.mjs, a stand-in built from Qdrant's
// documented REST API (no Qdrant server can be installed here). Checks what
// goes over the wire (api-key, wait=true, batches, cosine collection of the
// embedding size) and the routes' answers: ingest, search, query, list,
// delete, 404, 409 on a dimension mismatch, undo of a failed add, and a
// Qdrant that is down (503, health "down").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { startServer, req, freePort, sleep } from '../integration/lib.mjs';

const QKEY = 'qdrant-secret';
let fake;
let srv;

async function startFake(key = QKEY) {
  const proc = spawn('node', ['tests/e2e/fake_qdrant.mjs', '0', key], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    proc.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    proc.once('exit', () => reject(new Error('fake qdrant died')));
  });
  const url = `http://127.0.0.1:${port}`;
  const call = async (method, p, body) => {
    const res = await fetch(url + p, { method, headers: { 'Content-Type': 'application/json', 'api-key': key },
      body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, json: await res.json().catch(() => null) };
  };
  return { proc, url, call, stop: () => proc.kill('SIGKILL') };
}

before(async () => {
  fake = await startFake();
  srv = await startServer({ QDRANT_URL: fake.url, QDRANT_API_KEY: QKEY });
});
after(async () => {
  await srv.stop();
  fake.stop();
});

const post = (p, json, s = srv) => req(s, 'POST', p, { json });
const DOCS = [
  'The lighthouse keeper climbed the stairs every night.',
  'Bread rises because yeast makes gas in the dough.',
  'The small robot learned to paint yellow sunflowers.',
];

test('qdrant: ingest creates a cosine collection of the embedding size; points carry payloads; api-key sent', async () => {
  await fake.call('POST', '/__reset');
  const ids = [];
  for (const [i, content] of DOCS.entries()) {
    const r = await post('/rag/ingest', { content, collection: 'q-docs', metadata: { n: i } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.chunks_created, 1);
    ids.push(r.json.chunk_ids[0]);
  }
  const info = await fake.call('GET', '/collections/q-docs');
  assert.equal(info.status, 200);
  assert.deepEqual(info.json.result.config.params.vectors, { size: 64, distance: 'Cosine' });
  assert.equal(info.json.result.points_count, 3);
  const seen = (await fake.call('GET', '/__requests')).json;
  const upserts = seen.filter((q) => q.method === 'PUT' && q.path === '/collections/q-docs/points');
  assert.equal(upserts.length, 3);
  assert.ok(upserts.every((q) => q.query === '?wait=true'));
  assert.ok(seen.filter((q) => !q.path.startsWith('/__')).every((q) => q.apiKey === QKEY));
  assert.equal(seen.filter((q) => q.method === 'PUT' && q.path === '/collections/q-docs').length, 1);
  // The payload as stored in Qdrant.
  const hit = (await fake.call('POST', '/collections/q-docs/points/search', { vector: Array(64).fill(1), limit: 3, with_payload: true })).json.result;
  const p = hit.find((h) => h.id === ids[1]).payload;
  assert.equal(p.content, DOCS[1]);
  assert.equal(p.metadata.n, 1);
  assert.equal(p.metadata.chunk_index, 0);
  assert.equal(p.metadata.char_end, DOCS[1].length);

  // Search, top_k, threshold, list, query, delete, unknown.
  let r = await post('/rag/search', { query: DOCS[2], collection: 'q-docs', top_k: 2 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.total_results, 2);
  assert.equal(r.json.results[0].chunk_id, ids[2]);
  assert.equal(r.json.results[0].content, DOCS[2]);
  assert.ok(Math.abs(r.json.results[0].score - 1) < 1e-4, String(r.json.results[0].score));
  r = await post('/rag/search', { query: DOCS[2], collection: 'q-docs', top_k: 3, score_threshold: 0.9999 });
  assert.equal(r.json.results.length, 1);
  r = await req(srv, 'GET', '/rag/collections');
  assert.deepEqual(r.json.collections.find((c) => c.name === 'q-docs'), { name: 'q-docs', vectors_count: 3, points_count: 3 });
  r = await post('/rag/query', { query: 'Who climbed the stairs?', collection: 'q-docs', top_k: 2, max_tokens: 8 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.sources.length, 2);
  assert.equal(r.json.model, 'stories260K');
  r = await req(srv, 'DELETE', '/rag/collections/q-docs');
  assert.deepEqual(r.json, { collection: 'q-docs', success: true });
  assert.equal((await fake.call('GET', '/collections/q-docs')).status, 404);
  assert.equal((await req(srv, 'DELETE', '/rag/collections/q-docs')).status, 404);
  assert.equal((await post('/rag/search', { query: 'x', collection: 'q-docs' })).status, 404);
});

test('qdrant: big documents go up in batches; a failed batch is undone', async () => {
  await fake.call('POST', '/__reset');
  const content = Array.from({ length: 600 }, (_, i) => `w${i % 10}`).join(' '); // 600 words, 300 chunks of 2
  let r = await post('/rag/ingest', { content, collection: 'q-big', chunk_size: 5, chunk_overlap: 0 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.chunks_created, 300);
  let seen = (await fake.call('GET', '/__requests')).json.filter((q) => q.method === 'PUT' && q.path === '/collections/q-big/points');
  assert.deepEqual(seen.map((q) => q.points), [256, 44]);
  assert.equal((await fake.call('GET', '/collections/q-big')).json.result.points_count, 300);

  // Second batch fails: the first one is deleted again; the count is unchanged.
  await fake.call('POST', '/__fail', { upsertAfter: 1 });
  r = await post('/rag/ingest', { content, collection: 'q-big', chunk_size: 5, chunk_overlap: 0 });
  assert.equal(r.status, 502, r.text);
  assert.match(r.json.detail, /qdrant/);
  assert.equal((await fake.call('GET', '/collections/q-big')).json.result.points_count, 300);
  // A failed add that created its collection drops it again.
  await fake.call('POST', '/__fail', { upsertAfter: 1 });
  r = await post('/rag/ingest', { content, collection: 'q-new', chunk_size: 5, chunk_overlap: 0 });
  assert.equal(r.status, 502, r.text);
  assert.equal((await fake.call('GET', '/collections/q-new')).status, 404);
  await fake.call('POST', '/__fail', {});
});

test('qdrant: an existing collection of another size is a 409 naming both sizes', async () => {
  await fake.call('POST', '/__reset');
  assert.equal((await fake.call('PUT', '/collections/q-eight', { vectors: { size: 8, distance: 'Cosine' } })).status, 200);
  let r = await post('/rag/ingest', { content: 'some text', collection: 'q-eight' });
  assert.equal(r.status, 409, r.text);
  assert.match(r.json.detail, /\b8\b/);
  assert.match(r.json.detail, /64/);
  r = await post('/rag/search', { query: 'some text', collection: 'q-eight' });
  assert.equal(r.status, 409, r.text);
});

test('qdrant down or refusing the key: 503 / 502 naming qdrant; health says down', async () => {
  const port = await freePort();
  const down = await startServer({ QDRANT_URL: `http://127.0.0.1:${port}` });
  try {
    let r = await post('/rag/ingest', { content: 'x', collection: 'c' }, down);
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.detail, /Could not connect to qdrant/);
    r = await req(down, 'GET', '/rag/collections');
    assert.equal(r.status, 503);
    const h = await req(down, 'GET', '/health', { key: null });
    assert.equal(h.json.components.vector_store.status, 'down');
  } finally { await down.stop(); }
  const badKey = await startServer({ QDRANT_URL: fake.url, QDRANT_API_KEY: 'wrong' });
  try {
    const r = await req(badKey, 'GET', '/rag/collections');
    assert.equal(r.status, 502, r.text);
    assert.match(r.json.detail, /qdrant returned 401/);
  } finally { await badKey.stop(); }
});

test('a Qdrant that stops answering does not hold up shutdown past its deadline', async () => {
  const s = await startServer({ QDRANT_URL: fake.url, QDRANT_API_KEY: QKEY, SHUTDOWN_TIMEOUT: '1' });
  try {
    assert.equal((await post('/rag/ingest', { content: DOCS[0], collection: 'hang' }, s)).status, 200);
    await fake.call('POST', '/__hang', { search: true });
    const pending = post('/rag/search', { query: 'stairs', collection: 'hang' }, s).catch((e) => e);
    await sleep(300);
    const t0 = Date.now();
    const r = await s.stop('SIGTERM');
    // 1 s of deadline, then at most ~1 s for the Qdrant call to notice.
    assert.ok(r, 'the server had to be killed');
    assert.equal(r.code, 0, s.stderr.slice(-1500));
    assert.ok(Date.now() - t0 < 6000, `shutdown took ${Date.now() - t0} ms`);
    const answer = await pending;
    if (!(answer instanceof Error)) assert.equal(answer.status, 503, answer.text);
  } finally {
    await fake.call('POST', '/__hang', { search: false });
    await s.stop();
  }
});
