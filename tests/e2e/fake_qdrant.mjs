// fake_qdrant.mjs - a stand-in for a Qdrant server (REST API, 1.x), built
// from Qdrant's documented requests and responses (the OpenAPI description
// in qdrant/qdrant docs/redoc and the "Collections", "Points" and "Search"
// concept pages), for testing Simpleton's Qdrant adapter where no Qdrant
// server can be installed. In memory, node:http only, no dependencies.
//
// Usage: node tests/e2e/fake_qdrant.mjs [port] [api-key]   (port 0: any free)
// Prints the port on stdout (one line), then serves on 127.0.0.1 until killed.
//
// What it does as Qdrant does:
//   - every JSON answer is an envelope {"result": ..., "status": "ok", "time": s};
//     errors are {"status": {"error": "..."}, "time": s} with 400/404/409/500;
//   - a body must be sent as Content-Type: application/json (else 400);
//   - with an API key configured, requests need an `api-key` header (or
//     `Authorization: Bearer`), else 401;
//   - PUT /collections/{c} {"vectors":{"size","distance"}}: 409 when it exists
//     ("Wrong input: Collection `c` already exists!", as since Qdrant 1.8);
//   - GET /collections, GET /collections/{c} (CollectionInfo: status,
//     optimizer_status, indexed_vectors_count, points_count, segments_count,
//     config.params.vectors, payload_schema), GET /collections/{c}/exists,
//     DELETE /collections/{c};
//   - PUT /collections/{c}/points {"points":[{id,vector,payload}]} or
//     {"batch":{ids,vectors,payloads}}: ids are unsigned integers or UUIDs
//     (returned in hyphenated lower case), a vector of the wrong size is
//     400 "Wrong input: Vector dimension error: expected dim: N, got M";
//     Cosine collections store vectors normalised;
//   - POST /collections/{c}/points/search {vector, limit, offset,
//     with_payload, with_vector, score_threshold} -> [ScoredPoint{id,
//     version, score, payload, vector}], best first; POST .../points/query
//     {query, limit, ...} -> {"points": [...]};
//   - POST .../points/delete {"points":[ids]}, POST .../points/count.
//   - 404 "Not found: Collection `c` doesn't exist!" for unknown collections.
// Test hooks (not Qdrant): GET /__requests lists the requests seen
// ({method, path, apiKey, points}); POST /__fail {"upsertAfter": n} makes
// every upsert after the next n fail with 500; POST /__hang {"search": true}
// makes searches and queries never answer; POST /__reset clears all.
import http from 'node:http';

const port = Number(process.argv[2] || 0);
const apiKey = process.argv[3] || '';

let collections = new Map(); // name -> { size, distance, points: Map(id -> {vector, payload}), version }
let requests = [];
let upsertsLeft = Infinity;
let hangSearch = false;
let opId = 0;

const t0 = () => process.hrtime.bigint();
const secs = (start) => Number(process.hrtime.bigint() - start) / 1e9;

function send(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}
const ok = (res, start, result) => send(res, 200, { result, status: 'ok', time: secs(start) });
const fail = (res, start, status, error) => send(res, status, { status: { error }, time: secs(start) });
const missing = (res, start, name) => fail(res, start, 404, `Not found: Collection \`${name}\` doesn't exist!`);

const UUID = /^(urn:uuid:)?\{?([0-9a-fA-F]{8})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{4})-?([0-9a-fA-F]{12})\}?$/;

// A point id as Qdrant keeps it: a non-negative integer or a canonical UUID.
function pointId(id) {
  if (Number.isInteger(id) && id >= 0) return id;
  if (typeof id === 'string') {
    const m = UUID.exec(id);
    if (m) return `${m[2]}-${m[3]}-${m[4]}-${m[5]}-${m[6]}`.toLowerCase();
  }
  return null;
}

function normalise(v) {
  const n = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
  return n > 0 ? v.map((x) => x / n) : v.slice();
}

function score(c, q, v) {
  switch (c.distance) {
    case 'Cosine': {
      const qn = normalise(q);
      return qn.reduce((s, x, i) => s + x * v[i], 0);
    }
    case 'Dot': return q.reduce((s, x, i) => s + x * v[i], 0);
    case 'Euclid': return Math.sqrt(q.reduce((s, x, i) => s + (x - v[i]) ** 2, 0));
    default: return q.reduce((s, x, i) => s + Math.abs(x - v[i]), 0);
  }
}

function info(c) {
  const n = c.points.size;
  return {
    status: 'green',
    optimizer_status: 'ok',
    indexed_vectors_count: 0,
    points_count: n,
    segments_count: 2,
    config: {
      params: { vectors: { size: c.size, distance: c.distance }, shard_number: 1, replication_factor: 1,
        write_consistency_factor: 1, on_disk_payload: true },
      hnsw_config: { m: 16, ef_construct: 100, full_scan_threshold: 10000, max_indexing_threads: 0, on_disk: false },
      optimizer_config: { deleted_threshold: 0.2, vacuum_min_vector_number: 1000, default_segment_number: 0,
        max_segment_size: null, memmap_threshold: null, indexing_threshold: 20000, flush_interval_sec: 5,
        max_optimization_threads: null },
      wal_config: { wal_capacity_mb: 32, wal_segments_ahead: 0 },
      quantization_config: null,
    },
    payload_schema: {},
  };
}

function checkVector(c, v) {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'number' && Number.isFinite(x))) return 'Json deserialize error: vector must be a list of numbers';
  if (v.length !== c.size) return `Wrong input: Vector dimension error: expected dim: ${c.size}, got ${v.length}`;
  return null;
}

function selectPayload(p, withPayload) {
  if (withPayload === true) return p;
  if (Array.isArray(withPayload)) return Object.fromEntries(Object.entries(p || {}).filter(([k]) => withPayload.includes(k)));
  return null;
}

function search(c, q, body) {
  const limit = body.limit;
  const offset = body.offset || 0;
  const hits = [];
  for (const [id, p] of c.points) {
    const s = score(c, q, p.vector);
    const better = c.distance === 'Euclid' || c.distance === 'Manhattan' ? -s : s;
    if (body.score_threshold != null) {
      if (c.distance === 'Euclid' || c.distance === 'Manhattan' ? s > body.score_threshold : s < body.score_threshold) continue;
    }
    hits.push({ id, better, score: s, p });
  }
  hits.sort((a, b) => b.better - a.better);
  return hits.slice(offset, offset + limit).map((h) => ({
    id: h.id, version: h.p.version, score: h.score,
    payload: selectPayload(h.p.payload, body.with_payload ?? false),
    vector: body.with_vector ? h.p.vector : null,
  }));
}

async function readBody(req) {
  const chunks = [];
  for await (const ch of req) chunks.push(ch);
  return Buffer.concat(chunks).toString('utf8');
}

async function handle(req, res) {
  const start = t0();
  const url = new URL(req.url, 'http://x');
  const path = url.pathname;
  const text = await readBody(req);
  if (path === '/__requests') return send(res, 200, requests);
  if (path === '/__reset') {
    collections = new Map(); requests = []; upsertsLeft = Infinity; hangSearch = false;
    return send(res, 200, {});
  }
  if (path === '/__hang') { hangSearch = !!JSON.parse(text || '{}').search; return send(res, 200, {}); }
  if (hangSearch && /\/points\/(search|query)$/.test(path)) return; // never answers
  if (path === '/__fail') { upsertsLeft = JSON.parse(text || '{}').upsertAfter ?? Infinity; return send(res, 200, {}); }

  const given = req.headers['api-key'] || (req.headers.authorization || '').replace(/^Bearer /, '');
  let body = null;
  if (text.length) {
    if (!/^application\/json/.test(req.headers['content-type'] || '')) return fail(res, start, 400, 'Content type error');
    try { body = JSON.parse(text); } catch (e) { return fail(res, start, 400, `Json deserialize error: ${e.message}`); }
  }
  requests.push({ method: req.method, path, query: url.search, apiKey: req.headers['api-key'] || null,
    points: body && Array.isArray(body.points) ? body.points.length : undefined });
  if (apiKey && given !== apiKey) {
    res.writeHead(401, { 'Content-Type': 'text/plain' });
    return res.end(given ? 'Invalid API key or JWT' : 'Must provide an API key or an Authorization bearer token');
  }

  if (req.method === 'GET' && path === '/') return send(res, 200, { title: 'qdrant - vector search engine', version: '1.12.5', commit: 'fake' });
  if (req.method === 'GET' && (path === '/healthz' || path === '/readyz' || path === '/livez')) {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    return res.end('healthz check passed');
  }
  if (req.method === 'GET' && path === '/collections') {
    return ok(res, start, { collections: [...collections.keys()].map((name) => ({ name })) });
  }
  const m = /^\/collections\/([^/]+)(\/.*)?$/.exec(path);
  if (!m) return fail(res, start, 404, `Not found: ${path}`);
  const name = decodeURIComponent(m[1]);
  const rest = m[2] || '';
  const c = collections.get(name);

  if (rest === '' && req.method === 'PUT') {
    if (c) return fail(res, start, 409, `Wrong input: Collection \`${name}\` already exists!`);
    const v = body && body.vectors;
    if (!v || !Number.isInteger(v.size) || v.size < 1 || !['Cosine', 'Dot', 'Euclid', 'Manhattan'].includes(v.distance)) {
      return fail(res, start, 400, 'Json deserialize error: vectors: expected {size, distance}');
    }
    collections.set(name, { size: v.size, distance: v.distance, points: new Map() });
    return ok(res, start, true);
  }
  if (rest === '' && req.method === 'GET') return c ? ok(res, start, info(c)) : missing(res, start, name);
  if (rest === '' && req.method === 'DELETE') return ok(res, start, collections.delete(name));
  if (rest === '/exists' && req.method === 'GET') return ok(res, start, { exists: !!c });
  if (!c) return missing(res, start, name);

  if (rest === '/points' && req.method === 'PUT') {
    if (upsertsLeft <= 0) return fail(res, start, 500, 'Service internal error: injected upsert failure');
    upsertsLeft--;
    let pts = body && body.points;
    if (!pts && body && body.batch) {
      const b = body.batch;
      pts = b.ids.map((id, i) => ({ id, vector: b.vectors[i], payload: b.payloads ? b.payloads[i] : null }));
    }
    if (!Array.isArray(pts)) return fail(res, start, 400, 'Json deserialize error: expected points or batch');
    const staged = [];
    for (const p of pts) {
      const id = pointId(p.id);
      if (id === null) return fail(res, start, 400, `Json deserialize error: Unable to parse point id: ${JSON.stringify(p.id)}`);
      const e = checkVector(c, p.vector);
      if (e) return fail(res, start, 400, e);
      if (p.payload != null && (typeof p.payload !== 'object' || Array.isArray(p.payload))) {
        return fail(res, start, 400, 'Json deserialize error: payload must be an object');
      }
      staged.push([id, { vector: c.distance === 'Cosine' ? normalise(p.vector) : p.vector, payload: p.payload || {}, version: ++opId }]);
    }
    for (const [id, p] of staged) c.points.set(id, p);
    return ok(res, start, { operation_id: opId, status: url.searchParams.get('wait') === 'true' ? 'completed' : 'acknowledged' });
  }
  if (rest === '/points/delete' && req.method === 'POST') {
    if (!body || !Array.isArray(body.points)) return fail(res, start, 400, 'Json deserialize error: expected points (filters are not in this stand-in)');
    for (const id of body.points) c.points.delete(pointId(id));
    return ok(res, start, { operation_id: ++opId, status: url.searchParams.get('wait') === 'true' ? 'completed' : 'acknowledged' });
  }
  if (rest === '/points/count' && req.method === 'POST') return ok(res, start, { count: c.points.size });
  if (rest === '/points/search' && req.method === 'POST') {
    if (!body || !Number.isInteger(body.limit) || body.limit < 1) return fail(res, start, 400, 'Json deserialize error: missing field `limit`');
    const q = Array.isArray(body.vector) ? body.vector : body.vector && body.vector.vector;
    const e = checkVector(c, q);
    if (e) return fail(res, start, 400, e);
    return ok(res, start, search(c, q, body));
  }
  if (rest === '/points/query' && req.method === 'POST') {
    const q = body && body.query;
    const e = checkVector(c, q);
    if (e) return fail(res, start, 400, e);
    return ok(res, start, { points: search(c, q, { ...body, limit: body.limit || 10 }) });
  }
  return fail(res, start, 404, `Not found: ${req.method} ${path}`);
}

const server = http.createServer((req, res) => {
  handle(req, res).catch((e) => fail(res, t0(), 500, `Service internal error: ${e.message}`));
});
server.listen(port, '127.0.0.1', () => { console.log(server.address().port); });
