// lib.mjs - shared helpers for the integration tests: start the real
// simpleton binary (and real peers: redis-server, prometheus) on free ports,
// make requests, and clean up whatever happens.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const BIN = process.env.SIMPLETON_BIN || path.resolve('build/simpleton');
export const KEY = 'test-key-123';

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// Like sleep, but never keeps the process alive on its own.
const idleSleep = (ms) => new Promise((r) => setTimeout(r, ms).unref());

// Start `simpleton serve` with a clean environment plus `env`. Resolves once
// the "listening on" line appears (the server picks its port: PORT=0).
export async function startServer(env = {}, { expectFail = false, dataDir } = {}) {
  const dir = dataDir || mkdtempSync(path.join(os.tmpdir(), 'smp-it-'));
  const fullEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME || '/tmp',
    PORT: '0',
    HOST: '127.0.0.1',
    API_KEYS: KEY,
    DATA_DIR: path.join(dir, 'data'),
    MODELS_DIR: path.join(dir, 'models'),
    ENV_FILE: path.join(dir, 'none.env'),
    LOG_LEVEL: 'INFO',
    ...env,
  };
  for (const k of Object.keys(fullEnv)) if (fullEnv[k] === undefined) delete fullEnv[k];
  const proc = spawn(BIN, ['serve'], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const srv = { proc, dir, stdout: '', stderr: '', url: null, port: null, exited: null };
  proc.stdout.on('data', (d) => (srv.stdout += d));
  proc.stderr.on('data', (d) => (srv.stderr += d));
  srv.exitPromise = new Promise((resolve) => proc.on('exit', (code, signal) => {
    srv.exited = { code, signal };
    resolve(srv.exited);
  }));
  srv.stop = async (signal = 'SIGTERM') => {
    if (!srv.exited) proc.kill(signal);
    const r = await Promise.race([srv.exitPromise, idleSleep(15000).then(() => null)]);
    if (!r) proc.kill('SIGKILL');
    if (!dataDir) rmSync(dir, { recursive: true, force: true });
    return r;
  };
  if (expectFail) {
    await Promise.race([srv.exitPromise, idleSleep(10000)]);
    return srv;
  }
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    const m = srv.stderr.match(/listening on http:\/\/[^:]+:(\d+)/);
    if (m) {
      srv.port = Number(m[1]);
      srv.url = `http://127.0.0.1:${srv.port}`;
      return srv;
    }
    if (srv.exited) break;
    await sleep(20);
  }
  await srv.stop('SIGKILL');
  throw new Error(`server did not start: ${srv.stderr}`);
}

// Wait (up to ms) until the server's log matches re; the access-log line of a
// request is written just after its answer, so a test may see the answer first.
export async function waitLog(srv, re, ms = 3000) {
  const end = Date.now() + ms;
  while (!re.test(srv.stderr) && Date.now() < end) await sleep(20);
  return re.test(srv.stderr);
}

// The fault-injecting Ollama/OpenAI stand-in (tests/e2e/fake_upstream.mjs)
// on a free port: {proc, url, stop}.
export async function startFakeUpstream() {
  const proc = spawn('node', ['tests/e2e/fake_upstream.mjs', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((resolve, reject) => {
    proc.stdout.once('data', (d) => resolve(Number(String(d).trim())));
    proc.once('exit', () => reject(new Error('fake upstream died')));
  });
  return { proc, url: `http://127.0.0.1:${port}`, stop: () => proc.kill('SIGKILL') };
}

// fetch with the test key unless headers say otherwise; timeoutMs makes a
// request that gets no answer fail instead of waiting forever.
export async function req(srv, method, p, { key = KEY, headers = {}, body, json, timeoutMs } = {}) {
  const h = { ...headers };
  if (key) h['X-API-Key'] = key;
  let b = body;
  if (json !== undefined) {
    b = JSON.stringify(json);
    h['Content-Type'] = 'application/json';
  }
  const signal = timeoutMs ? AbortSignal.timeout(timeoutMs) : undefined;
  const res = await fetch(srv.url + p, { method, headers: h, body: b, signal });
  const text = await res.text();
  let data = null;
  try { data = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, headers: res.headers, text, json: data };
}

// Raw TCP exchange for what fetch cannot do (slow clients, early replies).
export function rawConnect(port) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => resolve(sock));
    sock.on('error', reject);
  });
}

export function readAll(sock, timeoutMs = 5000) {
  return new Promise((resolve) => {
    let data = '';
    const t = setTimeout(() => resolve({ data, closed: false }), timeoutMs);
    sock.on('data', (d) => (data += d));
    sock.on('close', () => { clearTimeout(t); resolve({ data, closed: true }); });
  });
}

// A real redis-server on a free port, in its own temp dir.
export async function startRedis(port) {
  port = port || (await freePort());
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smp-redis-'));
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '',
    '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  const r = { proc, port, dir, url: `redis://127.0.0.1:${port}` };
  r.cli = (...args) => execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).trim();
  r.kill = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const done = new Promise((res) => proc.on('exit', res));
      proc.kill('SIGKILL');
      await done;
    }
  };
  r.cleanup = async () => { await r.kill(); rmSync(dir, { recursive: true, force: true }); };
  for (let i = 0; i < 200; i++) {
    try { if (r.cli('PING') === 'PONG') return r; } catch { /* not up yet */ }
    await sleep(25);
  }
  await r.cleanup();
  throw new Error('redis-server did not start (is the redis-server package installed?)');
}
