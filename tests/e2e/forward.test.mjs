// forward.test.mjs - the Ollama and OpenAI backends. A second Simpleton
// process is the real Ollama/OpenAI-dialect upstream; a fault-injecting
// stand-in (fake_upstream.mjs) covers what no real server does on demand.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startFakeUpstream, req, freePort, sleep, rawConnect, KEY } from '../integration/lib.mjs';
import { waitLog } from '../integration/lib.mjs';

let up;
before(async () => { up = await startServer({ CACHE_ENABLED: 'false' }); });
after(async () => { await up.stop(); });

const GEN = { prompt: 'Once upon a time', temperature: 0, max_tokens: 24 };

test('ollama backend: generate, stream, chat and embeddings forwarded to a real Ollama-dialect server', async () => {
  const gw = await startServer({ OLLAMA_BASE_URL: up.url, OLLAMA_API_KEY: KEY, MODEL_BACKENDS: 'stories260K=ollama',
    CACHE_ENABLED: 'false' });
  try {
    const direct = await req(up, 'POST', '/inference/generate', { json: GEN });
    const via = await req(gw, 'POST', '/inference/generate', { json: GEN });
    assert.equal(via.status, 200, via.text);
    assert.equal(via.headers.get('x-served-by'), 'ollama');
    assert.equal(via.json.response, direct.json.response);
    assert.equal(via.json.eval_count, 24);
    assert.ok(await waitLog(up, /POST \/api\/generate 200/), up.stderr);
    // Streaming arrives piece by piece through both hops.
    const res = await fetch(gw.url + '/inference/generate', { method: 'POST',
      headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' }, body: JSON.stringify({ ...GEN, stream: true }) });
    const frames = (await res.text()).split('\n\n').filter(Boolean).map((f) => JSON.parse(f.slice(6)));
    assert.ok(frames.length > 10);
    assert.equal(frames.slice(0, -1).map((f) => f.response).join(''), direct.json.response);
    const chat = await req(gw, 'POST', '/inference/chat', { json: { messages: [{ role: 'user', content: 'Hi' }],
      temperature: 0, max_tokens: 8 } });
    assert.equal(chat.status, 200, chat.text);
    assert.ok(await waitLog(up, /POST \/api\/chat 200/), up.stderr);
    const e1 = await req(gw, 'POST', '/embeddings/', { json: { input: ['dog', 'cat'], model: 'stories260K' } });
    const e2 = await req(up, 'POST', '/embeddings/', { json: { input: ['dog', 'cat'], model: 'stories260K' } });
    assert.equal(e1.status, 200, e1.text);
    assert.deepEqual(e1.json.embeddings, e2.json.embeddings);
    assert.ok(await waitLog(up, /POST \/api\/embed 200/), up.stderr);
    const models = await req(gw, 'GET', '/models');
    assert.ok(models.json.models.some((m) => m.name === 'stories260K' && m.backend === 'ollama'));
    assert.ok(models.json.models.some((m) => m.name === 'stories260K' && m.backend === 'local'));
    const h = await req(gw, 'GET', '/health', { key: null });
    assert.equal(h.json.backends.ollama.status, 'healthy');
  } finally { await gw.stop(); }
});

test('openai backend: chat and completions forwarded to a real OpenAI-dialect server', async () => {
  const gw = await startServer({ OPENAI_BASE_URL: `${up.url}/v1`, OPENAI_API_KEY: KEY,
    MODEL_BACKENDS: 'stories260K=openai', CACHE_ENABLED: 'false' });
  try {
    const direct = await req(up, 'POST', '/v1/completions', { json: { model: 'stories260K', prompt: 'Once upon a time',
      max_tokens: 20, temperature: 0 } });
    const via = await req(gw, 'POST', '/inference/generate', { json: { ...GEN, max_tokens: 20 } });
    assert.equal(via.status, 200, via.text);
    assert.equal(via.headers.get('x-served-by'), 'openai');
    assert.equal(via.json.response, direct.json.choices[0].text);
    const chat = await req(gw, 'POST', '/v1/chat/completions', { json: { model: 'stories260K',
      messages: [{ role: 'user', content: 'Hi' }], max_tokens: 6, temperature: 0 } });
    assert.equal(chat.status, 200, chat.text);
    assert.ok(await waitLog(up, /POST \/v1\/chat\/completions 200/), up.stderr);
  } finally { await gw.stop(); }
});

test('fallback: an unreachable backend hands over to the next one that has the model', async () => {
  const dead = await freePort();
  const gw = await startServer({ OLLAMA_BASE_URL: `http://127.0.0.1:${dead}`, MODEL_BACKENDS: 'stories260K=ollama',
    BACKEND_ORDER: 'ollama,local', CACHE_ENABLED: 'false' });
  try {
    const r = await req(gw, 'POST', '/inference/generate', { json: GEN });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers.get('x-served-by'), 'local');
    assert.ok(await waitLog(gw, /unreachable.*falling back to local/), gw.stderr);
    const h = await req(gw, 'GET', '/health', { key: null });
    assert.equal(h.json.backends.ollama.status === 'healthy', false);
  } finally { await gw.stop(); }
});

test('upstream faults end in the documented status, nothing hangs, no error is cached', async () => {
  const fake = await startFakeUpstream();
  const faults = ['fault-500', 'fault-garbage', 'fault-cut', 'fault-reset', 'fault-hang', 'fault-error-line'];
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url, UPSTREAM_TIMEOUT: '2', BACKEND_ORDER: 'ollama,local',
    MODEL_BACKENDS: faults.map((f) => `${f}=ollama`).join(',') });
  try {
    const expect = { 'fault-500': 502, 'fault-garbage': 502, 'fault-cut': 502, 'fault-reset': 502, 'fault-hang': 503,
      'fault-error-line': 502 };
    for (const model of faults) {
      const t0 = Date.now();
      const r = await req(gw, 'POST', '/inference/generate', { json: { prompt: 'hello', model, temperature: 0 } });
      assert.equal(r.status, expect[model], `${model}: ${r.text}`);
      assert.ok(Date.now() - t0 < 6000, `${model} took ${Date.now() - t0} ms`);
      assert.match(r.json.detail, expect[model] === 502 ? /^Backend error: / : /^Could not connect to /, model);
      assert.match(r.json.detail, /ollama/);
      // Asked again: still an error, never a cached one.
      const again = await req(gw, 'POST', '/inference/generate', { json: { prompt: 'hello', model, temperature: 0 } });
      assert.equal(again.status, expect[model]);
      assert.notEqual(again.headers.get('x-cache'), 'HIT');
    }
    assert.equal((await req(gw, 'GET', '/analytics/cache')).json.cache.total_keys, 0);
    // A stream cut mid-answer: the frames so far, then an error frame, then the end.
    const res = await fetch(gw.url + '/inference/generate', { method: 'POST',
      headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'hello world', model: 'fault-cut', stream: true }) });
    const frames = (await res.text()).split('\n\n').filter(Boolean).map((f) => JSON.parse(f.slice(6)));
    assert.ok(frames.length >= 2);
    assert.match(frames.at(-1).error, /ended before the answer was complete|Backend error/);
    // The good path through the same upstream still works.
    const ok = await req(gw, 'POST', '/inference/generate', { json: { prompt: 'abc', model: 'echo' } });
    assert.ok(ok.status === 200 || ok.status === 404, ok.text);
  } finally {
    await gw.stop();
    fake.stop();
  }
});

test('a client that disconnects mid-stream stops the generation upstream', async () => {
  const fake = await startFakeUpstream();
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url, MODEL_BACKENDS: 'slow=ollama', CACHE_ENABLED: 'false' });
  try {
    // A raw socket, so the disconnect is exactly a close of the connection.
    const sock = await rawConnect(gw.port);
    const body = JSON.stringify({ prompt: 'hello', model: 'slow', stream: true });
    let got = '';
    const three = new Promise((resolve) => sock.on('data', (d) => {
      got += d;
      if ((got.match(/data: /g) || []).length >= 3) resolve();
    }));
    sock.write(`POST /inference/generate HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await three;
    const t0 = Date.now();
    sock.destroy();
    // The upstream answer would take 2 s more; the request must end within a few hundred ms.
    let inProgress;
    for (let i = 0; i < 40; i++) {
      await sleep(50);
      const m = (await req(gw, 'GET', '/metrics', { key: null })).text;
      inProgress = Number(m.match(/^simpleton_requests_in_progress (\S+)/m)[1]);
      if (inProgress === 1) break; /* only this /metrics request */
    }
    assert.equal(inProgress, 1);
    assert.ok(Date.now() - t0 < 1500, `took ${Date.now() - t0} ms`);
    const tokens = Number(((await req(gw, 'GET', '/metrics', { key: null })).text
      .match(/simpleton_llm_tokens_total\{model="slow",token_type="completion"\} (\S+)/) || [])[1]);
    assert.ok(tokens < 50, `${tokens} pieces were generated after the client left`);
  } finally {
    await gw.stop();
    fake.stop();
  }
});

test('a backend that never answers its health probe or model list does not stall other connections', async () => {
  const fake = await startFakeUpstream();
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url });
  try {
    await fetch(`${fake.url}/__config`, { method: 'POST', body: JSON.stringify({ metaFault: 'hang' }) });
    // Four slow probes at once (more than there are cores) ...
    const slow = [0, 1, 2, 3].map((i) => req(gw, 'GET', i % 2 ? '/health' : '/models', { key: KEY }));
    await sleep(100);
    // ... while other clients are still answered at once.
    for (let i = 0; i < 5; i++) {
      const t = Date.now();
      assert.equal((await req(gw, 'GET', '/', { key: null })).status, 200);
      assert.ok(Date.now() - t < 500, `GET / took ${Date.now() - t} ms`);
    }
    const done = await Promise.all(slow);
    for (const r of done) assert.ok(r.status === 200 || r.status === 503, r.text);
  } finally {
    await gw.stop();
    fake.stop();
  }
});

test('with the only request worker busy streaming, non-streamed requests are still answered on their own connections', async () => {
  const fake = await startFakeUpstream();
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url, MODEL_BACKENDS: 'slow=ollama', CACHE_ENABLED: 'false',
                                 REQUEST_WORKERS: '1' });
  try {
    // A 2 s stream holds the one worker ...
    const res = await fetch(`${gw.url}/inference/generate`, {
      method: 'POST', headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'hello', model: 'slow', stream: true }),
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    const first = await reader.read();
    assert.match(new TextDecoder().decode(first.value), /data: /);
    const t0 = Date.now();
    // ... a second stream queues behind it rather than failing ...
    const second = req(gw, 'POST', '/inference/generate', { json: { prompt: 'hi', model: 'slow', stream: true } });
    // ... while the local engine, embeddings and a forwarded non-streamed answer need no worker.
    const local = await req(gw, 'POST', '/inference/generate', { json: GEN });
    assert.equal(local.status, 200, local.text);
    assert.ok(local.json.response.length > 0);
    const emb = await req(gw, 'POST', '/embeddings/', { json: { input: 'a dog' } });
    assert.equal(emb.status, 200, emb.text);
    assert.ok(Date.now() - t0 < 1000, `local answers took ${Date.now() - t0} ms`);
    const t1 = Date.now();
    const fwd = await req(gw, 'POST', '/inference/generate', { json: { prompt: 'hi', model: 'slow' } });
    assert.equal(fwd.status, 200, fwd.text);
    // The upstream takes 2 s; queued behind the stream it would take ~4 s.
    assert.ok(Date.now() - t1 < 3500, `forwarded answer took ${Date.now() - t1} ms`);
    let rest = '';
    for (let r = await reader.read(); !r.done; r = await reader.read()) rest += new TextDecoder().decode(r.value);
    assert.match(rest, /"done":true/);
    const s2 = await second;
    assert.equal(s2.status, 200, s2.text);
    assert.match(s2.text, /"done":true/);
  } finally {
    await gw.stop();
    fake.stop();
  }
});

test('a stream whose upstream pauses longer than CONNECTION_TIMEOUT still gets its frames and its error frame', async () => {
  const fake = await startFakeUpstream();
  // The connection may be silent for 1 s; the upstream, for 3 s.
  const gw = await startServer({ OLLAMA_BASE_URL: fake.url, CONNECTION_TIMEOUT: '1', UPSTREAM_TIMEOUT: '3',
    MODEL_BACKENDS: 'fault-hang-mid=ollama,fault-slow-first-token-1800=ollama', BACKEND_ORDER: 'ollama,local' });
  try {
    const stream = async (model) => {
      const res = await fetch(gw.url + '/inference/generate', { method: 'POST',
        headers: { 'X-API-Key': KEY, 'Content-Type': 'application/json' },
        body: JSON.stringify({ prompt: 'hello world', model, stream: true }) });
      assert.equal(res.status, 200);
      return (await res.text()).split('\n\n').filter(Boolean).map((f) => JSON.parse(f.slice(6)));
    };
    // One piece, then 3 s of silence: the piece, then the upstream-timeout error frame.
    const t0 = Date.now();
    const frames = await stream('fault-hang-mid');
    assert.ok(Date.now() - t0 >= 2500, `ended after ${Date.now() - t0} ms`);
    assert.ok(frames.length >= 2, JSON.stringify(frames));
    assert.equal(typeof frames[0].response, 'string');
    assert.match(frames.at(-1).error, /silent|timed out|timeout|Could not connect/i, JSON.stringify(frames.at(-1)));
    // 1.8 s before the first piece (longer than CONNECTION_TIMEOUT), then a whole answer.
    const slow = await stream('fault-slow-first-token-1800');
    assert.equal(slow.at(-1).done, true, JSON.stringify(slow.at(-1)));
  } finally {
    await gw.stop();
    fake.stop();
  }
});
