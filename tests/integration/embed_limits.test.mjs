// embed_limits.test.mjs - one embeddings request must not monopolise a model
// (issue #12): every text is checked before any is embedded (a text longer
// than the context: 422 naming it, 400 with param "input" in OpenAI's
// dialect; all texts together over EMBED_MAX_BATCH_TOKENS: 413), a big batch
// takes turns with the other requests for the same model, and a client that
// leaves or a shutdown stops it. The model is the embedded stories260K
// (context 2048 tokens); one of the long texts below is about 1,500 tokens,
// and 150 of them take tens of seconds to embed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { startServer, req, sleep, waitLog, KEY } from './lib.mjs';

const MODEL = 'stories260K';
const SENTENCE = 'the quick brown fox jumps over the lazy dog ';
// About 3.1 tokens per word with this model's 512-token vocabulary.
const text = (i, words) => `${i} ${SENTENCE.repeat(Math.ceil(words / 9))}`;
const LONG = 480;   // words: ~1,500 tokens, fits the context
const TOO_LONG = 900; // ~2,800 tokens: does not

const peakRssMiB = (srv) => Number(readFileSync(`/proc/${srv.proc.pid}/status`, 'utf8').match(/VmHWM:\s+(\d+)/)[1]) / 1024;

// A big batch, sent with fetch so that the test can abandon it.
function startBatch(srv, n, { path = '/v1/embeddings' } = {}) {
  const ctl = new AbortController();
  const t0 = Date.now();
  const done = fetch(srv.url + path, {
    method: 'POST', signal: ctl.signal,
    headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: MODEL, input: Array.from({ length: n }, (_, i) => text(i, LONG)) }),
  }).then(async (r) => ({ status: r.status, body: await r.text(), ms: Date.now() - t0 }),
    (e) => ({ error: e.name, ms: Date.now() - t0 }));
  let settled = false;
  done.then(() => (settled = true));
  return { ctl, done, settled: () => settled };
}

test('every text is checked before any is embedded: the one too long is named, in every dialect', async () => {
  const srv = await startServer({ CACHE_ENABLED: 'false', EMBED_MAX_BATCH_TOKENS: '1000000' });
  try {
    // 150 texts that fit (tens of seconds of work), then one that does not.
    const input = Array.from({ length: 150 }, (_, i) => text(i, LONG));
    input.push(text(150, TOO_LONG));
    let t0 = Date.now();
    const o = await req(srv, 'POST', '/v1/embeddings', { json: { model: MODEL, input } });
    const ms = Date.now() - t0;
    assert.ok(ms < 3000, `refused after ${ms} ms: the texts before it were embedded first`);
    assert.equal(o.status, 400, o.text);
    assert.equal(o.json.error.param, 'input');
    assert.match(o.json.error.message, /Text 150 is too long: at least \d+ tokens; model 'stories260K' takes at most 2048 per text/);

    const s = await req(srv, 'POST', '/embeddings', { json: { model: MODEL, input } });
    assert.equal(s.status, 422, s.text);
    assert.deepEqual(s.json.detail[0].loc, ['body', 'input', 150]);
    assert.match(s.json.detail[0].msg, /2048/);
    const b = await req(srv, 'POST', `/embeddings/batch?model=${MODEL}`, { json: input });
    assert.equal(b.status, 422, b.text);
    assert.deepEqual(b.json.detail[0].loc, ['body', 150]);
    const ol = await req(srv, 'POST', '/api/embed', { json: { model: MODEL, input } });
    assert.equal(ol.status, 400, ol.text);
    assert.match(ol.json.error, /Text 150 is too long/);
    // Cached texts do not shift the index: texts 0 and 1 are embedded (and
    // cached) now, then the same batch with a bad third text names text 2.
    const c = await startServer({ EMBED_MAX_BATCH_TOKENS: '1000000' });
    try {
      assert.equal((await req(c, 'POST', '/embeddings', { json: { model: MODEL, input: ['a cat', 'a dog'] } })).status, 200);
      const r = await req(c, 'POST', '/embeddings', { json: { model: MODEL, input: ['a cat', 'a dog', text(2, TOO_LONG)] } });
      assert.equal(r.status, 422, r.text);
      assert.deepEqual(r.json.detail[0].loc, ['body', 'input', 2]);
    } finally { await c.stop(); }

    // 30 MB in one text: refused from its length, without tokenizing it
    // (that took 16 s and about 1 GB before).
    const before = peakRssMiB(srv);
    const big = SENTENCE.repeat(Math.ceil(30e6 / SENTENCE.length));
    t0 = Date.now();
    const h = await req(srv, 'POST', '/v1/embeddings', { json: { model: MODEL, input: ['short', big] } });
    const hms = Date.now() - t0;
    assert.equal(h.status, 400, h.text.slice(0, 500));
    assert.match(h.json.error.message, /Text 1 is too long: at least \d{6,} tokens/);
    const grew = peakRssMiB(srv) - before;
    assert.ok(hms < 8000, `30 MB text refused after ${hms} ms`);
    assert.ok(grew < 400, `peak RSS grew by ${grew.toFixed(0)} MiB`);
  } finally { await srv.stop(); }
});

test('EMBED_MAX_BATCH_TOKENS bounds the tokens of one request (413 naming it); a batch under it passes', async () => {
  const srv = await startServer({ CACHE_ENABLED: 'false', EMBED_MAX_BATCH_TOKENS: '5000' });
  try {
    const input = (n) => Array.from({ length: n }, (_, i) => text(i, 190)); // ~600 tokens each
    const ok = await req(srv, 'POST', '/v1/embeddings', { json: { model: MODEL, input: input(7) } });
    assert.equal(ok.status, 200, ok.text);
    assert.ok(ok.json.usage.prompt_tokens > 4000 && ok.json.usage.prompt_tokens <= 5000, ok.json.usage.prompt_tokens);
    for (const [path, body] of [['/v1/embeddings', { model: MODEL, input: input(10) }],
      ['/embeddings', { model: MODEL, input: input(10) }], ['/api/embed', { model: MODEL, input: input(10) }]]) {
      const r = await req(srv, 'POST', path, { json: body });
      assert.equal(r.status, 413, `${path}: ${r.text}`);
      assert.match(r.text, /more than 5000 tokens together.*EMBED_MAX_BATCH_TOKENS/, path);
    }
  } finally { await srv.stop(); }
});

test('a big batch takes turns: other requests for the model are served meanwhile; a client that leaves frees it', async () => {
  const srv = await startServer({ CACHE_ENABLED: 'false', EMBED_MAX_BATCH_TOKENS: '1000000' });
  try {
    await req(srv, 'POST', '/v1/embeddings', { json: { model: MODEL, input: 'load the model' } });
    const batch = startBatch(srv, 150);
    await sleep(1000); // the batch is running
    let t0 = Date.now();
    const small = await req(srv, 'POST', '/v1/embeddings', { json: { model: MODEL, input: 'a small one' } });
    const smallMs = Date.now() - t0;
    t0 = Date.now();
    const gen = await req(srv, 'POST', '/inference/generate', { json: { model: MODEL, prompt: 'Once', max_tokens: 8, temperature: 0 } });
    const genMs = Date.now() - t0;
    assert.equal(small.status, 200, small.text);
    assert.equal(gen.status, 200, gen.text);
    assert.ok(!batch.settled(), 'the batch ended before the small requests were answered');
    assert.ok(smallMs < 5000 && genMs < 5000, `small embedding ${smallMs} ms, generation ${genMs} ms behind the batch`);

    // The client leaves: the batch stops (its request ends at once) and the
    // model is free.
    batch.ctl.abort();
    assert.equal((await batch.done).error, 'AbortError');
    assert.ok(await waitLog(srv, /POST \/v1\/embeddings 503 /, 3000), srv.stderr.slice(-1500));
    const m = await req(srv, 'GET', '/metrics');
    assert.match(m.text, /^simpleton_requests_in_progress 1$/m, 'only the /metrics request itself is in progress');
  } finally { await srv.stop(); }
});

test('SIGTERM during a big batch: the server stops it at SHUTDOWN_TIMEOUT and exits cleanly', async () => {
  const srv = await startServer({ CACHE_ENABLED: 'false', EMBED_MAX_BATCH_TOKENS: '1000000', SHUTDOWN_TIMEOUT: '1' });
  const batch = startBatch(srv, 150, { path: '/embeddings' });
  await sleep(1000);
  const t0 = Date.now();
  const r = await srv.stop('SIGTERM');
  const ms = Date.now() - t0;
  assert.ok(r, 'the server had to be killed');
  assert.equal(r.code, 0, srv.stderr.slice(-2000));
  assert.ok(ms < 3000, `shutdown took ${ms} ms with SHUTDOWN_TIMEOUT=1`);
  const b = await batch.done;
  assert.equal(b.status, 503, JSON.stringify(b));
  assert.match(b.body, /shutting down/);
  assert.doesNotMatch(srv.stderr, /AddressSanitizer|runtime error|LeakSanitizer/);
});
