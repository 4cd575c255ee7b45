// fake_upstream.mjs - a stand-in for an Ollama server and an OpenAI-compatible
// server in one process (node:http only, no dependencies), for the remote
// backend tests.
//
// Usage: node tests/e2e/fake_upstream.mjs [port]   (default 0: any free port)
// Prints the port on stdout (one line), then serves on 127.0.0.1 until killed.
//
// Answers are deterministic so tests can check them:
//   generate / completions: the prompt reversed (by code point), in 3 pieces.
//   chat: the last message's text reversed, then " img:<sha256>" per image
//     (OpenAI: " img:<mime>:<sha256>") of the decoded bytes; an image whose
//     base64 is not canonical is refused with 400.
//   embeddings: for text t, [length, first code point, last code point, 0.25]
//     (OpenAI's data list comes back in reverse order, each with its index).
//   Ollama generate: context = request context + prompt code points; when
//     options.num_predict < 3 the answer stops early with done_reason "length".
// Ollama lines are written in two halves with a pause between, and two lines
// share one write, so a client must reassemble lines across reads.
//
// Faults, chosen by the model name of a POST:
//   fault-500        500 with an error body
//   fault-404 / missing-*  404 "model ... not found"
//   fault-garbage    200, then a line that is not JSON
//   fault-cut        two pieces, then the response ends (no done / [DONE])
//   fault-reset      two pieces, then the socket is destroyed
//   fault-hang       never answers
//   fault-hang-mid   one piece, then silence
//   fault-error-line 200, one piece, then an error object in the stream
//   fault-slow-first-token[-MS]  waits MS (default 400) ms before the first piece
//   slow             100 pieces "tokN " 20 ms apart (for cancellation tests);
//                    embeddings: 300 ms before each answer
//   no-stream        (OpenAI) one JSON answer although stream:true was asked
// and for the GET routes (/api/tags, /api/version, /v1/models) by
// POST /__config {"metaFault": "500" | "garbage" | "hang" | null}.
// OpenAI routes refuse an Authorization header other than "Bearer sk-test"
// with 401 (no header is accepted).
//
// Scripted answers: POST /__script {parts: ["...", ...], contentType?} makes
// the next generation request (any POST route but the hooks) answer 200 with
// exactly these parts, written one by one a few ms apart (so a client sees
// them in separate reads), whatever it asked; the script is then used up.
// Tests use it for answers the deterministic modes cannot give (tool calls,
// log probabilities, malformed pieces).
//
// Test hooks: GET /__last returns the last non-hook request as
// {method, path, headers, body (parsed JSON, or text), remotePort};
// GET /__stats returns {requests, connections}.
import http from 'node:http';
import crypto from 'node:crypto';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let last = null;
let requests = 0;
let connections = 0;
let metaFault = null;
let script = null;

async function playScript(res, sc) {
  res.writeHead(200, { 'Content-Type': sc.contentType || 'application/json' });
  for (const p of sc.parts || []) {
    if (res.destroyed) return;
    res.write(p);
    await sleep(3);
  }
  res.end();
}

function reverse(s) {
  return [...s].reverse().join('');
}

function split3(s) {
  const cps = [...s];
  const n = cps.length;
  const out = [];
  for (let i = 0; i < 3; i++) out.push(cps.slice(Math.floor((i * n) / 3), Math.floor(((i + 1) * n) / 3)).join(''));
  return out;
}

function vec(t) {
  const cps = [...t];
  return [cps.length, cps.length ? cps[0].codePointAt(0) : 0, cps.length ? cps[cps.length - 1].codePointAt(0) : 0, 0.25];
}

function sha(buf) {
  return crypto.createHash('sha256').update(buf).digest('hex');
}

// Strict base64: decoding and re-encoding must give the same text.
function decodeB64(s) {
  if (typeof s !== 'string') return null;
  const b = Buffer.from(s, 'base64');
  return b.toString('base64') === s ? b : null;
}

function json(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function faultOf(model) {
  if (typeof model !== 'string') return null;
  if (model.startsWith('missing')) return 'fault-404';
  if (model.startsWith('fault-slow-first-token')) return 'fault-slow-first-token';
  if (model.startsWith('fault-') || model === 'slow') return model;
  return null;
}

function slowDelay(model) {
  const m = /^fault-slow-first-token-(\d+)$/.exec(model);
  return m ? Number(m[1]) : 400;
}

// Pieces for a fault mode (normal modes get `pieces` unchanged).
function faultPieces(fault, pieces) {
  if (fault === 'slow') return Array.from({ length: 100 }, (_, i) => `tok${i} `);
  return pieces;
}

// Stream `pieces` via lineOf(piece) and finish with finalLines, honoring faults.
// Returns when done (or when the client left).
async function streamPieces(req, res, fault, model, pieces, lineOf, finalLines, errorLine) {
  let closed = false;
  res.on('close', () => (closed = true));
  res.on('error', () => {});
  const write = (s) => {
    if (!closed) res.write(s);
  };
  if (fault === 'fault-slow-first-token') await sleep(slowDelay(model));
  const lines = pieces.map(lineOf);
  for (let i = 0; i < lines.length && !closed; i++) {
    if (fault === 'fault-cut' && i === 2) {
      res.end();
      return;
    }
    if (fault === 'fault-reset' && i === 2) {
      res.socket.destroy();
      return;
    }
    if (fault === 'fault-hang-mid' && i === 1) return; // silence forever
    if (fault === 'fault-error-line' && i === 1) {
      write(errorLine);
      res.end();
      return;
    }
    if (fault === 'slow') {
      write(lines[i]);
      await sleep(20);
    } else if (!fault && i === 1 && i + 1 < lines.length) {
      write(lines[i] + lines[i + 1]); // two lines in one write
      i++;
      await sleep(2);
    } else {
      const l = lines[i];
      const h = Math.floor(l.length / 2);
      write(l.slice(0, h)); // half a line, then the rest
      await sleep(3);
      write(l.slice(h));
      await sleep(2);
    }
  }
  if (closed) return;
  for (const l of finalLines) write(l);
  res.end();
}

function beginStream(res, contentType) {
  res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-cache' });
  if (res.flushHeaders) res.flushHeaders();
}

// ---- Ollama ----

// A whole (stream: false) answer, with the stream faults played on it: a body
// cut in half, a reset, silence after a few bytes, an error status, a slow
// start, or (model "slow") 2 s of work before answering.
async function answerWhole(req, res, fault, obj) {
  const text = JSON.stringify(obj);
  if (fault === 'fault-error-line') return json(res, 500, { error: 'the fake upstream failed mid-generation' });
  if (fault === 'fault-cut' || fault === 'fault-reset' || fault === 'fault-hang-mid') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.write(text.slice(0, Math.floor(text.length / 2)));
    if (fault === 'fault-cut') res.end();
    if (fault === 'fault-reset') res.socket.destroy();
    return;
  }
  const m = /^fault-slow-first-token(?:-(\d+))?$/.exec(fault || '');
  if (m) await sleep(Number(m[1] || 400));
  if (fault === 'slow') await sleep(2000);
  if (!res.destroyed) json(res, 200, obj);
}

function ollamaFault(res, fault, model) {
  if (fault === 'fault-500') return json(res, 500, { error: 'boom: the fake upstream failed' }), true;
  if (fault === 'fault-404') return json(res, 404, { error: `model "${model}" not found, try pulling it first` }), true;
  if (fault === 'fault-hang') return true;
  if (fault === 'fault-garbage') {
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
    res.end('this is not json\n');
    return true;
  }
  return false;
}

async function ollamaGenerate(req, res, body) {
  const model = body.model;
  const fault = faultOf(model);
  if (ollamaFault(res, fault, model)) return;
  const prompt = typeof body.prompt === 'string' ? body.prompt : '';
  let pieces = faultPieces(fault, split3(reverse(prompt)));
  let reason = 'stop';
  const np = body.options && body.options.num_predict;
  if (Number.isInteger(np) && np > 0 && np < pieces.length) {
    pieces = pieces.slice(0, np);
    reason = 'length';
  }
  const ctx = (Array.isArray(body.context) ? body.context : []).concat([...prompt].map((c) => c.codePointAt(0)));
  const created_at = new Date().toISOString();
  const stream = body.stream !== false;
  const final = {
    model, created_at, response: '', done: true, done_reason: reason, context: ctx,
    total_duration: 123456789, load_duration: 1000, prompt_eval_count: [...prompt].length,
    prompt_eval_duration: 2000, eval_count: pieces.length, eval_duration: 3000,
  };
  if (!stream) return answerWhole(req, res, fault, { ...final, response: pieces.join('') });
  beginStream(res, 'application/x-ndjson');
  await streamPieces(req, res, fault, model, pieces,
    (p) => JSON.stringify({ model, created_at, response: p, done: false }) + '\n',
    [JSON.stringify(final) + '\n'],
    JSON.stringify({ error: 'the fake upstream failed mid-stream' }) + '\n');
}

function chatAnswer(messages, openai) {
  const lastMsg = Array.isArray(messages) && messages.length ? messages[messages.length - 1] : {};
  let text = '';
  const imgs = [];
  if (typeof lastMsg.content === 'string') text = lastMsg.content;
  else if (Array.isArray(lastMsg.content)) {
    for (const part of lastMsg.content) {
      if (part.type === 'text') text += part.text;
      else if (part.type === 'image_url') {
        const m = /^data:([^;,]+);base64,(.*)$/s.exec((part.image_url && part.image_url.url) || '');
        const b = m && decodeB64(m[2]);
        if (!b) return { error: 'invalid image data URL' };
        imgs.push(` img:${m[1]}:${sha(b)}`);
      }
    }
  }
  if (!openai && Array.isArray(lastMsg.images)) {
    for (const s of lastMsg.images) {
      const b = decodeB64(s);
      if (!b) return { error: 'invalid image base64' };
      imgs.push(` img:${sha(b)}`);
    }
  }
  return { text: reverse(text) + imgs.join('') };
}

async function ollamaChat(req, res, body) {
  const model = body.model;
  const fault = faultOf(model);
  if (ollamaFault(res, fault, model)) return;
  const ans = chatAnswer(body.messages, false);
  if (ans.error) return json(res, 400, { error: ans.error });
  const pieces = faultPieces(fault, split3(ans.text));
  const created_at = new Date().toISOString();
  const final = {
    model, created_at, message: { role: 'assistant', content: '' }, done: true, done_reason: 'stop',
    total_duration: 987654321, load_duration: 500, prompt_eval_count: 11, prompt_eval_duration: 1500,
    eval_count: pieces.length, eval_duration: 2500,
  };
  if (body.stream === false) {
    return answerWhole(req, res, fault, { ...final, message: { role: 'assistant', content: pieces.join('') } });
  }
  beginStream(res, 'application/x-ndjson');
  await streamPieces(req, res, fault, model, pieces,
    (p) => JSON.stringify({ model, created_at, message: { role: 'assistant', content: p }, done: false }) + '\n',
    [JSON.stringify(final) + '\n'],
    JSON.stringify({ error: 'the fake upstream failed mid-stream' }) + '\n');
}

async function ollamaEmbed(req, res, body) {
  const model = body.model;
  const fault = faultOf(model);
  if (ollamaFault(res, fault, model)) return;
  if (fault === 'slow') await sleep(300);
  const input = Array.isArray(body.input) ? body.input : [body.input];
  json(res, 200, { model, embeddings: input.map(vec), total_duration: 4242, load_duration: 1, prompt_eval_count: input.join('').length });
}

const TAGS = {
  models: [
    { name: 'fake-llm:latest', model: 'fake-llm:latest', modified_at: '2024-05-01T10:00:00.000000000Z', size: 4661224676,
      digest: 'sha256:aaaa1111', details: { format: 'gguf', family: 'llama', families: ['llama'], parameter_size: '8B' } },
    { name: 'nomic-embed-text:latest', model: 'nomic-embed-text:latest', modified_at: '2024-04-01T10:00:00Z', size: 274302450,
      digest: 'sha256:bbbb2222', details: { format: 'gguf', family: 'nomic-bert', families: ['nomic-bert'] } },
    { name: 'llava:7b', model: 'llava:7b', modified_at: '2024-03-01T10:00:00Z', size: 4733363377,
      digest: 'sha256:cccc3333', details: { family: 'llama', families: ['llama', 'clip'] } },
  ],
};

// ---- OpenAI ----

function openaiError(res, status, message, type, code) {
  json(res, status, { error: { message, type, param: null, code: code || null } });
}

function openaiFault(res, fault, model) {
  if (fault === 'fault-500') return openaiError(res, 500, 'boom: the fake upstream failed', 'server_error'), true;
  if (fault === 'fault-404') {
    openaiError(res, 404, `The model \`${model}\` does not exist or you do not have access to it.`,
      'invalid_request_error', 'model_not_found');
    return true;
  }
  if (fault === 'fault-hang') return true;
  if (fault === 'fault-garbage') {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.end('data: {this is not json\n\n');
    return true;
  }
  return false;
}

function authOk(req, res) {
  const a = req.headers.authorization;
  if (a === undefined || a === 'Bearer sk-test') return true;
  openaiError(res, 401, 'Incorrect API key provided', 'invalid_request_error', 'invalid_api_key');
  return false;
}

async function openaiStream(req, res, body, chat) {
  const model = body.model;
  const fault = faultOf(model);
  if (openaiFault(res, fault, model)) return;
  let text;
  if (chat) {
    const ans = chatAnswer(body.messages, true);
    if (ans.error) return openaiError(res, 400, ans.error, 'invalid_request_error');
    text = ans.text;
  } else {
    text = reverse(typeof body.prompt === 'string' ? body.prompt : '');
  }
  let pieces = faultPieces(fault, split3(text));
  let reason = 'stop';
  if (Number.isInteger(body.max_tokens) && body.max_tokens > 0 && body.max_tokens < pieces.length) {
    pieces = pieces.slice(0, body.max_tokens);
    reason = 'length';
  }
  const id = chat ? 'chatcmpl-fake' : 'cmpl-fake';
  const object = chat ? 'chat.completion.chunk' : 'text_completion';
  const created = Math.floor(Date.now() / 1000);
  const chunk = (choice) => `data: ${JSON.stringify({ id, object, created, model, choices: [choice] })}\n\n`;
  const pieceChoice = (p) => (chat ? { index: 0, delta: { content: p }, finish_reason: null } : { index: 0, text: p, finish_reason: null });
  const finalLines = [
    chunk(chat ? { index: 0, delta: {}, finish_reason: reason } : { index: 0, text: '', finish_reason: reason }),
  ];
  if (body.stream_options && body.stream_options.include_usage) {
    finalLines.push(`data: ${JSON.stringify({ id, object, created, model, choices: [],
      usage: { prompt_tokens: 17, completion_tokens: pieces.length, total_tokens: 17 + pieces.length } })}\n\n`);
  }
  finalLines.push('data: [DONE]\n\n');
  if (body.stream === false || model === 'no-stream') {
    const full = pieces.join('');
    return answerWhole(req, res, fault, { id, object: chat ? 'chat.completion' : 'text_completion', created, model,
      choices: [chat ? { index: 0, message: { role: 'assistant', content: full }, finish_reason: reason } : { index: 0, text: full, finish_reason: reason }],
      usage: { prompt_tokens: 17, completion_tokens: pieces.length, total_tokens: 17 + pieces.length } });
  }
  beginStream(res, 'text/event-stream');
  if (chat) res.write(chunk({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }));
  res.write(': keep-alive comment\n\n');
  await streamPieces(req, res, fault, model, pieces, (p) => chunk(pieceChoice(p)), finalLines,
    `data: ${JSON.stringify({ error: { message: 'the fake upstream failed mid-stream', type: 'server_error' } })}\n\n`);
}

async function openaiEmbeddings(req, res, body) {
  const model = body.model;
  const fault = faultOf(model);
  if (openaiFault(res, fault, model)) return;
  if (fault === 'slow') await sleep(300);
  const input = Array.isArray(body.input) ? body.input : [body.input];
  const data = input.map((t, i) => ({ object: 'embedding', index: i, embedding: vec(t) })).reverse();
  json(res, 200, { object: 'list', data, model, usage: { prompt_tokens: input.join('').length, total_tokens: input.join('').length } });
}

const MODELS = {
  object: 'list',
  data: [
    { id: 'fake-gpt', object: 'model', created: 1714557600, owned_by: 'fake' },
    { id: 'text-embedding-3-small', object: 'model', created: 1705948997, owned_by: 'system' },
  ],
};

// ---- dispatch ----

function metaAnswer(res, obj) {
  if (metaFault === 'hang') return;
  if (metaFault === '500') return json(res, 500, { error: 'meta route failed' });
  if (metaFault === 'garbage') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    return res.end('<html>not json</html>');
  }
  json(res, 200, obj);
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return Buffer.concat(chunks).toString('utf8');
}

const server = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0];
  const raw = await readBody(req);
  let body = null;
  try {
    body = raw.length ? JSON.parse(raw) : null;
  } catch {
    body = raw;
  }
  if (path === '/__last') return json(res, 200, last);
  if (path === '/__stats') return json(res, 200, { requests, connections });
  if (path === '/__script') {
    script = body && typeof body === 'object' ? body : null;
    return json(res, 200, { ok: true });
  }
  if (path === '/__config') {
    metaFault = (body && body.metaFault) || null;
    return json(res, 200, { metaFault });
  }
  requests++;
  last = { method: req.method, path, headers: req.headers, body, remotePort: req.socket.remotePort };
  const b = body && typeof body === 'object' ? body : {};
  if (script && req.method === 'POST') {
    const sc = script;
    script = null;
    return playScript(res, sc);
  }
  try {
    if (req.method === 'GET' && path === '/api/version') return metaAnswer(res, { version: '0.0.0-fake' });
    if (req.method === 'GET' && path === '/api/tags') return metaAnswer(res, TAGS);
    if (req.method === 'POST' && path === '/api/generate') return await ollamaGenerate(req, res, b);
    if (req.method === 'POST' && path === '/api/chat') return await ollamaChat(req, res, b);
    if (req.method === 'POST' && path === '/api/embed') return ollamaEmbed(req, res, b);
    if (path.startsWith('/v1/')) {
      if (!authOk(req, res)) return;
      if (req.method === 'GET' && path === '/v1/models') return metaAnswer(res, MODELS);
      if (req.method === 'POST' && path === '/v1/chat/completions') return await openaiStream(req, res, b, true);
      if (req.method === 'POST' && path === '/v1/completions') return await openaiStream(req, res, b, false);
      if (req.method === 'POST' && path === '/v1/embeddings') return openaiEmbeddings(req, res, b);
    }
    json(res, 404, { error: `no route ${req.method} ${path}` });
  } catch (e) {
    if (!res.headersSent) json(res, 500, { error: String(e) });
    else res.destroy();
  }
});
server.on('connection', () => connections++);
server.keepAliveTimeout = 30000;
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`);
});
