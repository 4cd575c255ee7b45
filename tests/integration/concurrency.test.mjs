// concurrency.test.mjs - many clients at once against one server (a thread
// per connection, a small worker pool): streams read to the end and streams
// cut after the first frame, non-streamed answers, embeddings, bad JSON,
// bodies cut short, health probes, and a clean shutdown while streams run.
// Every answer that arrives must be well formed, nothing may be left in
// progress, and (under `make test SANITIZE=1`) the sanitizers must stay
// silent: this is where a race in the request hand-over would show.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, req, rawConnect, sleep, KEY } from './lib.mjs';

const GEN = { prompt: 'Once upon a time', max_tokens: 24, temperature: 0 };

// A small deterministic generator, so a failure replays the same mix.
function rng(seed) {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    return x / 4294967296;
  };
}

async function postRaw(port, path, body, { cutAfterFirst = false } = {}) {
  const sock = await rawConnect(port);
  const b = JSON.stringify(body);
  sock.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(b)}\r\nConnection: close\r\n\r\n${b}`);
  return new Promise((resolve) => {
    let got = '';
    const t = setTimeout(() => { sock.destroy(); resolve({ got, timedOut: true }); }, 10000);
    sock.on('data', (d) => {
      got += d;
      if (cutAfterFirst && /data: /.test(got)) { clearTimeout(t); sock.destroy(); resolve({ got, cut: true }); }
    });
    sock.on('close', () => { clearTimeout(t); resolve({ got }); });
    sock.on('error', () => {});
  });
}

const ops = {
  async plain(s) {
    const r = await req(s, 'POST', '/inference/generate', { json: GEN });
    assert.equal(r.status, 200, r.text);
    assert.equal(typeof r.json.response, 'string');
  },
  async streamAll(s) {
    const r = await postRaw(s.port, '/inference/generate', { ...GEN, stream: true });
    assert.ok(!r.timedOut, 'stream timed out');
    assert.match(r.got, /^HTTP\/1\.1 200/);
    assert.match(r.got, /"done":true/);
  },
  async streamCut(s) {
    const r = await postRaw(s.port, '/inference/generate', { ...GEN, max_tokens: 200, stream: true },
      { cutAfterFirst: true });
    assert.ok(!r.timedOut, 'no first frame');
  },
  async ollamaChat(s) {
    const r = await req(s, 'POST', '/api/chat', { json: { model: 'stories260K', stream: false,
      messages: [{ role: 'user', content: 'Hi' }], options: { num_predict: 8 } } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.message.role, 'assistant');
  },
  async embed(s) {
    const r = await req(s, 'POST', '/embeddings/', { json: { input: ['a dog', 'a cat'] } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.embeddings.length, 2);
  },
  async badJson(s) {
    const r = await req(s, 'POST', '/inference/generate', { body: '{"prompt": ', headers: { 'Content-Type': 'application/json' } });
    assert.ok(r.status === 400 || r.status === 422, `${r.status} ${r.text}`);
  },
  async shortBody(s) {
    const sock = await rawConnect(s.port);
    sock.on('error', () => {});
    sock.write(`POST /inference/generate HTTP/1.1\r\nHost: x\r\nX-API-Key: ${KEY}\r\n` +
      'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"prompt":');
    await sleep(5);
    sock.destroy();
  },
  async health(s) {
    const r = await req(s, 'GET', '/health', { key: null });
    assert.equal(r.status, 200, r.text);
  },
};

test('24 clients mixing streams (read or cut), plain answers, embeddings and bad input: all answered, none left', async () => {
  // MODEL_QUEUE_MAX above the client count: every request must be served, none turned away busy.
  const s = await startServer({ CACHE_ENABLED: 'false', REQUEST_WORKERS: '2', MODEL_QUEUE_MAX: '64' });
  try {
    const names = Object.keys(ops);
    const counts = Object.fromEntries(names.map((n) => [n, 0]));
    await Promise.all(Array.from({ length: 24 }, async (_, c) => {
      const next = rng(1000 + c);
      for (let i = 0; i < 8; i++) {
        const name = names[Math.floor(next() * names.length)];
        counts[name]++;
        await ops[name](s);
      }
    }));
    for (const n of names) assert.ok(counts[n] > 0, `the mix never ran ${n}`);
    // Everything finished: only the /metrics request itself is in progress.
    let inProgress;
    for (let i = 0; i < 100; i++) {
      const m = (await req(s, 'GET', '/metrics', { key: null })).text;
      inProgress = Number(m.match(/^simpleton_requests_in_progress (\S+)/m)[1]);
      if (inProgress === 1) break;
      await sleep(50);
    }
    assert.equal(inProgress, 1);
    await ops.plain(s);
    assert.equal(s.exited, null);
    assert.doesNotMatch(s.stderr, /AddressSanitizer|runtime error|LeakSanitizer/);
  } finally {
    await s.stop();
  }
});

test('SIGTERM while streams and plain requests run: the server exits cleanly and in time', async () => {
  const s = await startServer({ CACHE_ENABLED: 'false', REQUEST_WORKERS: '2', SHUTDOWN_TIMEOUT: '5' });
  const running = [];
  for (let i = 0; i < 6; i++) {
    running.push(postRaw(s.port, '/inference/generate', { ...GEN, max_tokens: 200, stream: true }));
    running.push(req(s, 'POST', '/inference/generate', { json: GEN }).catch(() => null));
  }
  await sleep(20);
  const t0 = Date.now();
  const r = await s.stop('SIGTERM');
  assert.ok(r, 'the server had to be killed');
  assert.equal(r.code, 0, s.stderr.slice(-2000));
  assert.ok(Date.now() - t0 < 8000, `shutdown took ${Date.now() - t0} ms`);
  await Promise.all(running);
  assert.doesNotMatch(s.stderr, /AddressSanitizer|runtime error|LeakSanitizer/);
});
