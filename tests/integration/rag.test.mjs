// rag.test.mjs - retrieval through the real binary with the built-in model:
// ingest/search/query/collections/delete, chunk metadata, validation and bad
// input, file uploads (txt, md, html, pdf), durability across kill -9 (also in
// the middle of an ingest), the query prompt as a backend receives it (the
// fake upstream echoes it), and a dimension conflict across embedding models.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startServer, startFakeUpstream, req, rawConnect, readAll, sleep, KEY } from './lib.mjs';

let s;
before(async () => { s = await startServer(); });
after(async () => { await s.stop(); });

const DOCS = [
  'The lighthouse keeper climbed the stairs every night. He lit the lamp and watched the ships.',
  'Bread rises because yeast makes gas. Bakers knead the dough and let it rest in a warm place.',
  'The small robot learned to paint flowers. Its first picture was a yellow sunflower.',
];

const post = (p, json, srv = s) => req(srv, 'POST', p, { json });

function sortedKeys(o) { return Object.keys(o).sort(); }

function hasPdftotext() {
  try { execFileSync('pdftotext', ['-v'], { stdio: 'ignore' }); return true; } catch { return false; }
}

// A one-page PDF with one line of text (Helvetica), offsets computed.
function makePdf(text) {
  const stream = `BT /F1 12 Tf 72 720 Td (${text}) Tj ET`;
  const objs = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offs = [];
  objs.forEach((o, i) => { offs.push(out.length); out += `${i + 1} 0 obj\n${o}\nendobj\n`; });
  const xref = out.length;
  out += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n`;
  for (const o of offs) out += `${String(o).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objs.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

async function upload(srv, filename, data, fields = {}, type = 'application/octet-stream') {
  const fd = new FormData();
  fd.append('file', new Blob([data], { type }), filename);
  for (const [k, v] of Object.entries(fields)) fd.append(k, v);
  const res = await fetch(`${srv.url}/rag/ingest/file`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, text, json };
}

test('ingest several documents; search finds the exact chunk first with score ~1; top_k and threshold hold', async () => {
  const ids = [];
  for (const [i, content] of DOCS.entries()) {
    const r = await post('/rag/ingest', { content, collection: 'it-search', metadata: { doc: i } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(sortedKeys(r.json), ['chunk_ids', 'chunks_created', 'collection', 'embedding_model']);
    assert.equal(r.json.collection, 'it-search');
    assert.equal(r.json.chunks_created, 1); // each fits in CHUNK_SIZE
    assert.equal(r.json.embedding_model, 'stories260K');
    assert.match(r.json.chunk_ids[0], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    ids.push(r.json.chunk_ids[0]);
  }
  for (const [i, content] of DOCS.entries()) {
    const r = await post('/rag/search', { query: content, collection: 'it-search', top_k: 3 });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(sortedKeys(r.json), ['collection', 'query', 'results', 'total_results']);
    assert.equal(r.json.query, content);
    assert.equal(r.json.total_results, 3);
    const top = r.json.results[0];
    assert.deepEqual(sortedKeys(top), ['chunk_id', 'content', 'metadata', 'score']);
    assert.equal(top.chunk_id, ids[i]);
    assert.equal(top.content, content);
    assert.ok(Math.abs(top.score - 1) < 1e-4, `score ${top.score}`);
    assert.equal(top.metadata.doc, i);
    for (let k = 1; k < 3; k++) assert.ok(r.json.results[k].score <= r.json.results[k - 1].score);
  }
  let r = await post('/rag/search', { query: DOCS[0], collection: 'it-search', top_k: 1 });
  assert.equal(r.json.results.length, 1);
  assert.equal(r.json.total_results, 1);
  // The default top_k is TOP_K_RESULTS (5): all three here.
  r = await post('/rag/search', { query: DOCS[0], collection: 'it-search' });
  assert.equal(r.json.results.length, 3);
  // A threshold between the best and the rest keeps only the exact chunk.
  const second = r.json.results[1].score;
  r = await post('/rag/search', { query: DOCS[0], collection: 'it-search', score_threshold: Math.min(0.9999, second + 1e-3) });
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.results.every((h) => h.score >= second + 1e-3 || h.score >= 0.9999));
  assert.equal(r.json.results[0].chunk_id, ids[0]);
  assert.ok(r.json.results.length < 3);
  r = await post('/rag/search', { query: DOCS[0], collection: 'it-search', score_threshold: 1 });
  assert.ok(r.json.results.length <= 1);
});

test('chunks record exact character offsets, including multi-byte text', async () => {
  const content = 'Première phrase ici. Deuxième phrase là.\n\n日本語の文。二番目の文！\n\nLast words here.';
  const r = await post('/rag/ingest', { content, collection: 'it-chunks', chunk_size: 25, chunk_overlap: 0, metadata: { src: 'x', chunk_index: 99 } });
  assert.equal(r.status, 200, r.text);
  assert.ok(r.json.chunks_created >= 3);
  const cps = [...content];
  for (const [i, id] of r.json.chunk_ids.entries()) {
    const hit = (await post('/rag/search', { query: 'x', collection: 'it-chunks', top_k: 100 })).json.results.find((h) => h.chunk_id === id);
    assert.ok(hit, `chunk ${id} found`);
    const m = hit.metadata;
    assert.equal(m.chunk_index, i); // ours win over the user's field of the same name
    assert.equal(m.src, 'x');
    assert.equal(m.chunk_length, m.char_end - m.char_start);
    assert.ok(m.chunk_length <= 25);
    assert.equal(hit.content, cps.slice(m.char_start, m.char_end).join(''));
    assert.match(m.document_id, /^[0-9a-f-]{36}$/);
    assert.ok(!Number.isNaN(Date.parse(m.ingested_at)));
  }
});

test('collections are listed with their counts; delete works; unknown collection is 404', async () => {
  await post('/rag/ingest', { content: 'one two three four five six seven', collection: 'it-list-a', chunk_size: 10, chunk_overlap: 0 });
  await post('/rag/ingest', { content: 'alpha', collection: 'it-list-b' });
  let r = await req(s, 'GET', '/rag/collections');
  assert.equal(r.status, 200, r.text);
  const a = r.json.collections.find((c) => c.name === 'it-list-a');
  const b = r.json.collections.find((c) => c.name === 'it-list-b');
  assert.deepEqual(sortedKeys(a), ['name', 'points_count', 'vectors_count']);
  assert.equal(a.points_count, 4); // "one two" "three four" "five six" "seven"
  assert.equal(a.vectors_count, 4);
  assert.equal(b.points_count, 1);
  r = await req(s, 'DELETE', '/rag/collections/it-list-a');
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(r.json, { collection: 'it-list-a', success: true });
  r = await req(s, 'GET', '/rag/collections');
  assert.ok(!r.json.collections.some((c) => c.name === 'it-list-a'));
  assert.equal((await req(s, 'DELETE', '/rag/collections/it-list-a')).status, 404);
  r = await post('/rag/search', { query: 'alpha', collection: 'it-list-a' });
  assert.equal(r.status, 404);
  assert.match(r.json.detail, /it-list-a/);
  assert.equal((await post('/rag/query', { query: 'alpha', collection: 'nope-nope' })).status, 404);
});

test('a chunk longer than the embedding model\'s context is embedded by its leading part', async () => {
  // About 3 tokens per character with the built-in model: 1000 characters
  // are past its 2048-token context.
  const content = '这是一个关于小猫的故事。小猫喜欢在阳光下玩耍。'.repeat(42).slice(0, 1000);
  let r = await post('/rag/ingest', { content, collection: 'it-long', chunk_size: 1000 });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.chunks_created, 1);
  r = await post('/rag/search', { query: content, collection: 'it-long' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.results[0].content, content);
  assert.ok(Math.abs(r.json.results[0].score - 1) < 1e-4);
});

test('/rag/query answers through the default model and returns its sources', async () => {
  await post('/rag/ingest', { content: DOCS[2], collection: 'it-query' });
  const r = await post('/rag/query', { query: 'What did the robot paint?', collection: 'it-query', max_tokens: 16, temperature: 0 });
  assert.equal(r.status, 200, r.text);
  assert.deepEqual(sortedKeys(r.json), ['answer', 'collection', 'model', 'query', 'sources']);
  assert.equal(r.json.model, 'stories260K');
  assert.equal(r.json.collection, 'it-query');
  assert.equal(typeof r.json.answer, 'string');
  assert.ok(r.json.answer.length > 0);
  assert.equal(r.json.sources.length, 1);
  assert.equal(r.json.sources[0].content, DOCS[2]);
  assert.deepEqual(sortedKeys(r.json.sources[0]), ['chunk_id', 'content', 'metadata', 'score']);
});

test('/rag/query with more retrieved text than the model\'s context drops the lowest-ranked sources instead of failing', async () => {
  // 8 documents of ~3,400 characters, 2 or 3 chunks each: far more text than the built-in model's context.
  for (let d = 0; d < 8; d++) {
    const words = Array.from({ length: 400 }, (_, i) => `word${(i * 7 + d) % 97}`);
    const r = await post('/rag/ingest', { content: `Document ${d} says: ${words.join(' ')}.`, collection: 'it-long',
      chunk_size: 2000, chunk_overlap: 0 });
    assert.equal(r.status, 200, r.text);
  }
  const query = 'What does document 3 say?';
  const ranked = await post('/rag/search', { query, collection: 'it-long', top_k: 50 });
  const found = ranked.json.results.length;
  assert.ok(found >= 16, String(found));
  const r = await post('/rag/query', { query, collection: 'it-long', top_k: 50, max_tokens: 8, temperature: 0 });
  assert.equal(r.status, 200, r.text);
  assert.equal(typeof r.json.answer, 'string');
  assert.ok(r.json.answer.length > 0);
  // Only the sources the model was given come back: the best-ranked ones, in order.
  assert.ok(r.json.sources.length >= 1 && r.json.sources.length < found, String(r.json.sources.length));
  assert.deepEqual(r.json.sources.map((x) => x.chunk_id),
    ranked.json.results.slice(0, r.json.sources.length).map((x) => x.chunk_id));
});

test('bad input: missing fields, top_k bounds, overlap >= size, bad names, empty content', async () => {
  const detailFields = (r) => r.json.detail.map((d) => d.loc[d.loc.length - 1]);
  let r = await post('/rag/ingest', {});
  assert.equal(r.status, 422);
  assert.deepEqual(detailFields(r), ['content']);
  r = await post('/rag/ingest', { content: '' });
  assert.equal(r.status, 400);
  assert.match(r.json.detail, /empty/i);
  assert.equal((await post('/rag/ingest', { content: ' \n\t ' })).status, 400);
  r = await post('/rag/ingest', { content: 'x', chunk_size: 100, chunk_overlap: 100 });
  assert.equal(r.status, 422);
  assert.deepEqual(detailFields(r), ['chunk_overlap']);
  assert.equal((await post('/rag/ingest', { content: 'x', chunk_size: 0 })).status, 422);
  assert.equal((await post('/rag/ingest', { content: 'x', chunk_overlap: -1 })).status, 422);
  assert.equal((await post('/rag/ingest', { content: 'x', metadata: [1, 2] })).status, 422);
  // A chunk_size below the default overlap still works (the default overlap shrinks).
  assert.equal((await post('/rag/ingest', { content: 'short text', chunk_size: 50, collection: 'it-bad' })).status, 200);
  for (const name of ['a/b', '..', '.', 'a\u0000b', '', 'x'.repeat(65), 'white space', 'é']) {
    r = await post('/rag/ingest', { content: 'x', collection: name });
    assert.equal(r.status, 422, `${JSON.stringify(name)}: ${r.text}`);
    assert.deepEqual(detailFields(r), ['collection']);
    r = await post('/rag/search', { query: 'x', collection: name });
    assert.equal(r.status, 422, `${JSON.stringify(name)}: ${r.text}`);
  }
  r = await post('/rag/search', {});
  assert.equal(r.status, 422);
  assert.deepEqual(detailFields(r), ['query']);
  for (const top_k of [-1, 0, 1001, 1e9, 'five', 2.5]) {
    r = await post('/rag/search', { query: 'x', collection: 'it-bad', top_k });
    assert.equal(r.status, 422, `top_k ${top_k}: ${r.text}`);
    assert.deepEqual(detailFields(r), ['top_k']);
  }
  assert.equal((await post('/rag/search', { query: 'x', collection: 'it-bad', score_threshold: 1.5 })).status, 422);
  assert.equal((await post('/rag/query', { query: 'x', collection: 'it-bad', temperature: 3 })).status, 422);
  assert.equal((await post('/rag/query', { collection: 'it-bad' })).status, 422);
  // Path names: '..', encoded slashes and NUL never reach the store. A NUL must
  // not cut the name short: collection "a" exists and must survive "a%00b".
  assert.equal((await post('/rag/ingest', { content: 'kept', collection: 'a' })).status, 200);
  for (const p of ['/rag/collections/..', '/rag/collections/a%2Fb', '/rag/collections/a%00b', '/rag/collections/%2e%2e']) {
    const sock = await rawConnect(s.port);
    sock.write(`DELETE ${p} HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nConnection: close\r\n\r\n`);
    const { data } = await readAll(sock);
    const status = Number(data.split(' ')[1]);
    assert.ok(status === 422 || status === 404, `${p}: ${data.slice(0, 200)}`);
  }
  const cols = (await req(s, 'GET', '/rag/collections')).json.collections.map((c) => c.name);
  assert.ok(cols.includes('a'), JSON.stringify(cols));
  assert.equal((await req(s, 'GET', '/rag/collections', { key: null })).status, 401);
});

test('a 50 MiB document is refused by the body limit (413), and the server carries on', async () => {
  const big = JSON.stringify({ content: 'word '.repeat(10 * 1024 * 1024), collection: 'it-big' });
  assert.ok(big.length > 50 * 1024 * 1024);
  // A raw socket, so the answer is read even when the server closes before
  // the upload ends (fetch then throws and its status would go unchecked).
  const sock = await rawConnect(s.port);
  sock.on('error', () => {});
  let got = '';
  sock.on('data', (d) => { got += d.toString('latin1'); });
  sock.write(`POST /rag/ingest HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(big)}\r\nConnection: close\r\n\r\n`);
  // The answer is due from the header alone; a server that waited for the
  // body gets it, 256 KiB at a time, until it answers.
  for (let i = 0; i < 20 && !got; i++) await sleep(50);
  for (let off = 0; off < big.length && !got && !sock.destroyed; off += 1 << 18) {
    sock.write(big.slice(off, off + (1 << 18)));
    await sleep(2);
  }
  for (let i = 0; i < 100 && !got.endsWith('}'); i++) await sleep(50);
  sock.destroy();
  assert.match(got, /^HTTP\/1\.1 413/, got.slice(0, 200));
  assert.match(got, /MAX_BODY_MB/);
  assert.equal((await req(s, 'GET', '/health', { key: null })).status, 200);
  assert.ok(!(await req(s, 'GET', '/rag/collections')).json.collections.some((c) => c.name === 'it-big'));
});

test('the chunk limit answers 413 instead of creating a million chunks', async () => {
  const srv = await startServer({ RAG_MAX_CHUNKS: '50' });
  try {
    const r = await post('/rag/ingest', { content: 'a b c d e f g h i j '.repeat(10), chunk_size: 1, chunk_overlap: 0 }, srv);
    assert.equal(r.status, 413, r.text);
    assert.match(r.json.detail, /RAG_MAX_CHUNKS/);
  } finally { await srv.stop(); }
});

test('file upload: txt, md, html (tags stripped), pdf; garbage pdf 400; unknown type 415', async () => {
  let r = await upload(s, 'notes.txt', 'Plain text notes about sailing boats.', { collection: 'it-files', metadata: '{"team":"blue"}' });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.chunks_created, 1);
  let hit = (await post('/rag/search', { query: 'Plain text notes about sailing boats.', collection: 'it-files', top_k: 1 })).json.results[0];
  assert.equal(hit.content, 'Plain text notes about sailing boats.');
  assert.equal(hit.metadata.filename, 'notes.txt');
  assert.equal(hit.metadata.content_type, 'text/plain');
  assert.equal(hit.metadata.team, 'blue');

  r = await upload(s, 'readme.MD', '# Title\n\nSome *markdown* text.', { collection: 'it-files' });
  assert.equal(r.status, 200, r.text);

  const html = '<html><head><title>Page</title><style>p{color:red}</style><script>var x = "<p>no</p>";</script></head>' +
    '<body><h1>Garden &amp; Trees</h1><p>Oak trees   grow\nslowly.</p><!-- hidden --><ul><li>one</li><li>two</li></ul></body></html>';
  r = await upload(s, 'page.html', html, { collection: 'it-files-html' });
  assert.equal(r.status, 200, r.text);
  hit = (await post('/rag/search', { query: 'x', collection: 'it-files-html', top_k: 5 })).json.results[0];
  assert.equal(hit.content, 'Page\n\nGarden & Trees\n\nOak trees grow slowly.\n\none\ntwo');
  assert.equal(hit.metadata.content_type, 'text/html');

  if (hasPdftotext()) {
    r = await upload(s, 'doc.pdf', makePdf('Hello from a PDF document'), { collection: 'it-files-pdf' });
    assert.equal(r.status, 200, r.text);
    hit = (await post('/rag/search', { query: 'x', collection: 'it-files-pdf' })).json.results[0];
    assert.equal(hit.content, 'Hello from a PDF document');
    assert.equal(hit.metadata.content_type, 'application/pdf');
  }
  const garbage = Buffer.alloc(4096);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 7919 + 13) & 0xff;
  r = await upload(s, 'garbage.pdf', garbage, { collection: 'it-files' });
  assert.equal(r.status, 400, r.text);
  r = await upload(s, 'garbage2.pdf', Buffer.concat([Buffer.from('%PDF-1.7\n'), garbage]), { collection: 'it-files' });
  assert.equal(r.status, hasPdftotext() ? 400 : 501, r.text);
  r = await upload(s, 'image.png', garbage);
  assert.equal(r.status, 415, r.text);
  r = await upload(s, 'latin1.txt', Buffer.from([0x63, 0x61, 0x66, 0xe9]));
  assert.equal(r.status, 400, r.text);
  r = await upload(s, 'empty.txt', '');
  assert.equal(r.status, 400, r.text);
  r = await upload(s, 'x.txt', 'text', { collection: '../etc' });
  assert.equal(r.status, 422, r.text);
  r = await upload(s, 'x.txt', 'text', { chunk_size: '10', chunk_overlap: '10' });
  assert.equal(r.status, 422, r.text);
  // No file part; not multipart at all.
  const fd = new FormData();
  fd.append('collection', 'x');
  let res = await fetch(`${s.url}/rag/ingest/file`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd });
  assert.equal(res.status, 422);
  res = await fetch(`${s.url}/rag/ingest/file`, { method: 'POST', headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' }, body: '{}' });
  assert.equal(res.status, 415);
  // Collection as a query parameter.
  const fd2 = new FormData();
  fd2.append('file', new Blob(['query parameter collection']), 'q.txt');
  res = await fetch(`${s.url}/rag/ingest/file?collection=it-files-q`, { method: 'POST', headers: { 'X-API-Key': KEY }, body: fd2 });
  assert.equal(res.status, 200);
  assert.equal((await res.json()).collection, 'it-files-q');
});

test('embeddings of ingested chunks go through the embeddings cache', async () => {
  const text = 'A unique sentence about purple elephants dancing in the rain.';
  const r = await post('/rag/ingest', { content: text, collection: 'it-cache' });
  assert.equal(r.status, 200, r.text);
  const e = await post('/embeddings/', { input: text });
  assert.equal(e.status, 200);
  assert.equal(e.headers.get('x-cache'), 'HIT');
  const m = await req(s, 'GET', '/metrics', { key: null });
  assert.match(m.text, /simpleton_llm_requests_total\{[^}]*endpoint="embeddings"[^}]*\} [1-9]/);
});

test('durability: committed documents survive kill -9; an ingest killed midway leaves all or nothing', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smp-rag-'));
  try {
    let srv = await startServer({}, { dataDir: dir });
    const ids = [];
    for (const content of DOCS) {
      const r = await post('/rag/ingest', { content, collection: 'durable' }, srv);
      assert.equal(r.status, 200, r.text);
      ids.push(r.json.chunk_ids[0]);
    }
    // A big document: a few hundred chunks, killed while being ingested.
    const words = ['river', 'stone', 'cloud', 'lamp', 'field', 'winter', 'music', 'paper'];
    const big = Array.from({ length: 6000 }, (_, i) => words[(i * 7) % words.length] + (i % 11 === 10 ? '.' : '')).join(' ');
    const pending = post('/rag/ingest', { content: big, collection: 'victim', chunk_size: 120, chunk_overlap: 0 }, srv).catch(() => null);
    await sleep(400);
    await srv.stop('SIGKILL');
    const answered = await pending;
    // Deterministically inside the transaction: the server kills itself
    // (SIGKILL) after writing 20 of the document's points.
    srv = await startServer({ SIMPLETON_TEST_CRASH_AFTER_POINTS: '20' }, { dataDir: dir });
    const mid = await post('/rag/ingest', { content: big.slice(0, 6000), collection: 'durable', chunk_size: 120, chunk_overlap: 0 }, srv)
      .catch(() => null);
    assert.equal(mid, null, 'the server died before answering');
    await srv.exitPromise;
    assert.equal(srv.exited.signal, 'SIGKILL');
    srv = await startServer({}, { dataDir: dir });
    try {
      for (const [i, content] of DOCS.entries()) {
        const r = await post('/rag/search', { query: content, collection: 'durable', top_k: 1 }, srv);
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.results[0].chunk_id, ids[i]);
        assert.ok(Math.abs(r.json.results[0].score - 1) < 1e-4);
      }
      const list = (await req(srv, 'GET', '/rag/collections')).json.collections;
      assert.equal(list.find((c) => c.name === 'durable').points_count, 3);
      const victim = list.find((c) => c.name === 'victim');
      // Either the whole document (if it committed before the kill) or nothing.
      if (victim) {
        const expected = answered && answered.status === 200 ? answered.json.chunks_created : null;
        const again = await post('/rag/ingest', { content: big, collection: 'victim-check', chunk_size: 120, chunk_overlap: 0 }, srv);
        assert.equal(victim.points_count, expected ?? again.json.chunks_created);
      }
      // And the store still takes writes after the crash.
      assert.equal((await post('/rag/ingest', { content: 'after the crash', collection: 'durable' }, srv)).status, 200);
    } finally { await srv.stop(); }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('the query prompt carries the retrieved chunks; system_prompt overrides the instruction', async () => {
  const fake = await startFakeUpstream();
  const fakeUrl = fake.url;
  const srv = await startServer({ OLLAMA_BASE_URL: fakeUrl, MODEL_BACKENDS: 'fake-llm=ollama', CACHE_ENABLED: 'false' });
  try {
    for (const content of DOCS) assert.equal((await post('/rag/ingest', { content, collection: 'prompted' }, srv)).status, 200);
    let r = await post('/rag/query', { query: DOCS[1], collection: 'prompted', model: 'fake-llm', top_k: 2 }, srv);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, 'fake-llm');
    assert.equal(r.json.sources.length, 2);
    assert.equal(r.json.sources[0].content, DOCS[1]);
    const last = await (await fetch(`${fakeUrl}/__last`)).json();
    assert.equal(last.path, '/api/generate');
    const prompt = last.body.prompt;
    for (const src of r.json.sources) assert.ok(prompt.includes(src.content), prompt);
    assert.ok(prompt.includes(`Question: ${DOCS[1]}`), prompt);
    assert.match(last.body.system, /only/);
    // The fake answers with the prompt reversed: the answer is the model's.
    assert.equal(r.json.answer, [...prompt].reverse().join(''));
    r = await post('/rag/query', { query: 'bread', collection: 'prompted', model: 'fake-llm', system_prompt: 'Answer like a pirate.' }, srv);
    assert.equal(r.status, 200, r.text);
    assert.equal((await (await fetch(`${fakeUrl}/__last`)).json()).body.system, 'Answer like a pirate.');
  } finally {
    await srv.stop();
    fake.stop();
  }
});

test('an ingest stopped by the shutdown deadline answers 503 saying so; one whose client left says that', async () => {
  const fake = await startFakeUpstream();
  // Embeddings take 300 ms a batch of 16: this document's 100 chunks take 2 s.
  const env = { OLLAMA_BASE_URL: fake.url, MODEL_BACKENDS: 'slow=ollama', DEFAULT_EMBEDDING_MODEL: 'slow',
    CACHE_ENABLED: 'false', SHUTDOWN_TIMEOUT: '1' };
  const body = { content: Array.from({ length: 100 }, (_, i) => `Sentence ${String(i).padStart(3, '0')} of a long text.`).join(' '),
    collection: 'stopped', chunk_size: 30, chunk_overlap: 0 };
  try {
    let srv = await startServer(env);
    try {
      const ac = new AbortController();
      const left = fetch(srv.url + '/rag/ingest', { method: 'POST', signal: ac.signal,
        headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' }, body: JSON.stringify(body) }).catch(() => null);
      await sleep(400);
      ac.abort();
      await left;
      let e;
      for (let i = 0; i < 50 && !e; i++) {
        await sleep(100);
        e = (await req(srv, 'GET', '/analytics/errors?limit=10')).json.errors.find((x) => x.path === '/rag/ingest');
      }
      assert.ok(e, 'the stopped ingest was not recorded');
      assert.match(e.error, /client left/);
      assert.doesNotMatch(e.error, /shutting down/);
    } finally { await srv.stop(); }
    srv = await startServer(env);
    const answer = post('/rag/ingest', body, srv);
    await sleep(400);
    const exited = srv.stop('SIGTERM');
    const r = await answer;
    assert.ok(await exited, 'the server had to be killed');
    assert.equal(r.status, 503, r.text);
    assert.match(r.json.detail, /shutting down/);
    assert.doesNotMatch(r.json.detail, /client left/);
  } finally { fake.stop(); }
});

test('a later ingest with another embedding dimension is refused with 409 naming both', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smp-rag-dim-'));
  const fake = await startFakeUpstream();
  try {
    let srv = await startServer({}, { dataDir: dir });
    assert.equal((await post('/rag/ingest', { content: 'made with the built-in model', collection: 'dims' }, srv)).status, 200);
    await srv.stop();
    // Now embeddings come from the fake upstream's nomic-embed-text (4 dimensions).
    srv = await startServer({ OLLAMA_BASE_URL: fake.url }, { dataDir: dir });
    try {
      const r = await post('/rag/ingest', { content: 'made with another model', collection: 'dims' }, srv);
      assert.equal(r.status, 409, r.text);
      assert.match(r.json.detail, /64/);
      assert.match(r.json.detail, /\b4\b/);
      assert.equal((await post('/rag/search', { query: 'x', collection: 'dims' }, srv)).status, 409);
      assert.equal((await post('/rag/ingest', { content: 'a new collection is fine', collection: 'dims4' }, srv)).status, 200);
    } finally { await srv.stop(); }
  } finally {
    fake.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
