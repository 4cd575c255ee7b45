// local.test.mjs - the local backend: finding models (MODELS_DIR file names,
// general.name, an Ollama model store), the loaded-model limit, the queue
// bound, and a client that disconnects mid-stream.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { createHash } from 'node:crypto';
import os from 'node:os';
import path from 'node:path';
import { startServer, req, sleep, KEY } from '../integration/lib.mjs';
import { waitLog } from '../integration/lib.mjs';

const SHARED = path.resolve('../shared/models');

test('models from MODELS_DIR by file name and general.name, and from an Ollama store by name:tag', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smp-models-'));
  const store = path.join(dir, 'ollama');
  const blob = readFileSync(path.join(SHARED, 'mini/mini-qwen2-Q8_0.gguf'));
  const digest = createHash('sha256').update(blob).digest('hex');
  mkdirSync(path.join(store, 'blobs'), { recursive: true });
  symlinkSync(path.join(SHARED, 'mini/mini-qwen2-Q8_0.gguf'), path.join(store, 'blobs', `sha256-${digest}`));
  mkdirSync(path.join(store, 'manifests/registry.ollama.ai/library/tinyqwen'), { recursive: true });
  writeFileSync(path.join(store, 'manifests/registry.ollama.ai/library/tinyqwen/0.5b'), JSON.stringify({
    schemaVersion: 2, layers: [{ mediaType: 'application/vnd.ollama.image.model', digest: `sha256:${digest}`, size: blob.length }],
  }));
  const srv = await startServer({ MODELS_DIR: path.join(SHARED, 'mini'), OLLAMA_MODELS: store });
  try {
    const names = (await req(srv, 'GET', '/models')).json.models.map((m) => m.name);
    for (const n of ['mini-llama-f32', 'mini-llama-Q4_K', 'tinyqwen:0.5b', 'stories260K']) assert.ok(names.includes(n), n);
    for (const model of ['mini-llama-Q4_K', 'mini-llama-Q4_K.gguf', 'mini-llama-random' /* general.name */, 'tinyqwen:0.5b']) {
      const r = await req(srv, 'POST', '/api/generate', { json: { model, prompt: 'Once', stream: false,
        options: { temperature: 0, num_predict: 4 } } });
      assert.equal(r.status, 200, `${model}: ${r.text}`);
      assert.equal(r.json.eval_count, 4);
    }
    // The Ollama-store model is the same file as the MODELS_DIR one: same answer.
    const a = await req(srv, 'POST', '/inference/generate', { json: { model: 'tinyqwen:0.5b', prompt: 'Once', temperature: 0, max_tokens: 8 } });
    const b = await req(srv, 'POST', '/inference/generate', { json: { model: 'mini-qwen2-Q8_0', prompt: 'Once', temperature: 0, max_tokens: 8 } });
    assert.equal(a.json.response, b.json.response);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('MAX_LOADED_MODELS: the least recently used model is unloaded', async () => {
  const srv = await startServer({ MODELS_DIR: path.join(SHARED, 'mini'), MAX_LOADED_MODELS: '1' });
  try {
    const run = (model) => req(srv, 'POST', '/inference/generate', { json: { model, prompt: 'x', max_tokens: 2 },
      headers: { 'Cache-Control': 'no-cache' } });
    assert.equal((await run('mini-llama-f32')).status, 200);
    assert.equal((await run('mini-llama-Q8_0')).status, 200);
    const ps = (await req(srv, 'GET', '/api/ps')).json.models.map((m) => m.name);
    assert.deepEqual(ps, ['mini-llama-Q8_0']);
    assert.ok(await waitLog(srv, /unloading mini-llama-f32/), srv.stderr);
  } finally { await srv.stop(); }
});

test('a full model queue answers 503 with Retry-After; the rest are served', async () => {
  // One slot and one place in the queue: of eight at once, the rest are refused.
  const srv = await startServer({ MODEL_QUEUE_MAX: '1', PARALLEL: '1', CACHE_ENABLED: 'false' });
  try {
    const body = { prompt: 'Once upon a time', max_tokens: 400, temperature: 1 };
    const rs = await Promise.all(Array.from({ length: 8 }, () =>
      fetch(srv.url + '/inference/generate', { method: 'POST', headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify(body) }).then(async (r) => ({ status: r.status, retry: r.headers.get('retry-after'), body: await r.json() }))));
    const busy = rs.filter((r) => r.status === 503);
    const ok = rs.filter((r) => r.status === 200);
    assert.ok(ok.length >= 1 && busy.length >= 1, JSON.stringify(rs.map((r) => r.status)));
    assert.equal(ok.length + busy.length, 8);
    for (const b of busy) {
      assert.equal(b.retry, '2');
      assert.match(b.body.detail, /MODEL_QUEUE_MAX|busy/);
    }
  } finally { await srv.stop(); }
});

test('a model file added while the server runs is found without a restart', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smp-late-'));
  const srv = await startServer({ MODELS_DIR: dir });
  try {
    const ask = () => req(srv, 'POST', '/inference/generate', { json: { model: 'late', prompt: 'x', max_tokens: 2 } });
    assert.equal((await ask()).status, 404);
    symlinkSync(path.join(SHARED, 'mini/mini-llama-Q8_0.gguf'), path.join(dir, 'late.gguf'));
    await sleep(1100); /* unknown names rescan at most once a second */
    const r = await ask();
    assert.equal(r.status, 200, r.text);
    // The catalogue still has it after further rescans (unchanged files are not reopened).
    assert.equal((await req(srv, 'POST', '/inference/generate', { json: { model: 'nope', prompt: 'x' } })).status, 404);
    await sleep(1100);
    assert.equal((await req(srv, 'POST', '/inference/generate', { json: { model: 'nope', prompt: 'x' } })).status, 404);
    assert.equal((await ask()).status, 200);
  } finally {
    await srv.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});
