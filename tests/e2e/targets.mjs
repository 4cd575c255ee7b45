// targets.mjs - where the client-library suites (sdk_structured.test.mjs,
// sdk_tools.test.mjs) run. The same list of tests runs against each target:
// the built-in stories260K model served directly ("local"), and the same
// model reached through a second Simpleton that forwards to the first one in
// its OpenAI dialect or its Ollama dialect, so every client talks to the
// front server and every answer comes from the back one. Each target gets
// its own clients (OpenAI, Ollama, Vercel AI SDK, LangChain) whose fetch
// records the route and X-Served-By of every answer, so a suite can check
// where its answers came from and which route a library used.
import { before, after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { createOpenAI } from '@ai-sdk/openai';
import { ChatOpenAI } from '@langchain/openai';
import Ajv from 'ajv';
import { z } from 'zod';
import { startServer, KEY } from '../integration/lib.mjs';

export const MODEL = 'stories260K';

// upstream: which forwarding dialect the front uses (null: none); the access
// log line each forwarded chat answer leaves on the back server.
export const TARGETS = [
  { name: 'local', servedBy: 'local', upstream: null },
  { name: 'through an OpenAI-dialect upstream', servedBy: 'openai', upstream: 'openai',
    backLog: /POST \/v1\/chat\/completions 200/g,
    env: (back) => ({ OPENAI_BASE_URL: `${back.url}/v1`, OPENAI_API_KEY: KEY, MODEL_BACKENDS: `${MODEL}=openai` }) },
  { name: 'through an Ollama-dialect upstream', servedBy: 'ollama', upstream: 'ollama',
    backLog: /POST \/api\/chat 200/g,
    env: (back) => ({ OLLAMA_BASE_URL: back.url, OLLAMA_API_KEY: KEY, MODEL_BACKENDS: `${MODEL}=ollama` }) },
];

const ajv = new Ajv({ allErrors: true, strict: false });

// The JSON Schema a zod schema stands for (what the libraries send).
export const jsonSchema = (zodSchema) => z.toJSONSchema(zodSchema, { target: 'draft-7' });

// Check a document (text or already parsed) against a JSON Schema; returns it.
export function valid(schema, doc, what = '') {
  const v = ajv.compile(schema);
  const value = typeof doc === 'string' ? JSON.parse(doc) : doc;
  assert.ok(v(value), `${what} ${JSON.stringify(value)}: ${JSON.stringify(v.errors)}`);
  return value;
}

// For each target, a describe block whose context (filled before its tests
// run) holds: front (the server the clients talk to), openai, ollama, ai (an
// AI SDK chat model factory), langchain(fields) (a ChatOpenAI), and what the
// clients saw: routes (paths asked) and servedBy (X-Served-By values).
// body(ctx) declares the tests. A last test per target checks that every
// answer came from the target's backend and, when forwarded, that the back
// server answered.
export function forEachTarget(targets, body) {
  let back;
  before(async () => { back = await startServer({ CACHE_ENABLED: 'false' }); });
  after(async () => { await back.stop(); });
  for (const target of targets) {
    describe(target.name, () => {
      const ctx = { target, routes: [], servedBy: new Set() };
      let backBefore = 0;
      const countBack = () => (back.stderr.match(target.backLog) || []).length;
      before(async () => {
        ctx.front = target.env ? await startServer({ ...target.env(back), CACHE_ENABLED: 'false' }) : back;
        if (target.backLog) backBefore = countBack();
        const recordingFetch = async (url, init) => {
          const res = await fetch(url, init);
          ctx.routes.push(new URL(String(url instanceof Request ? url.url : url)).pathname);
          const by = res.headers.get('x-served-by');
          if (by) ctx.servedBy.add(by);
          return res;
        };
        const baseURL = `${ctx.front.url}/v1`;
        ctx.openai = new OpenAI({ baseURL, apiKey: KEY, maxRetries: 0, fetch: recordingFetch });
        ctx.ollama = new Ollama({ host: ctx.front.url, headers: { 'X-API-Key': KEY }, fetch: recordingFetch });
        const provider = createOpenAI({ baseURL, apiKey: KEY, fetch: recordingFetch });
        ctx.ai = () => provider.chat(MODEL);
        ctx.langchain = (fields = {}) => new ChatOpenAI({ model: MODEL, apiKey: KEY, maxRetries: 0, maxTokens: 300,
          configuration: { baseURL, fetch: recordingFetch }, ...fields });
      });
      after(async () => { if (ctx.front !== back) await ctx.front.stop(); });
      body(ctx);
      test(`every answer came from the ${target.servedBy} backend`, () => {
        assert.deepEqual([...ctx.servedBy], [target.servedBy]);
        if (target.backLog) assert.ok(countBack() > backBefore, 'the back server answered nothing');
      });
    });
  }
}

// A 400 from any of the libraries whose message names tool_choice (what an
// Ollama upstream, which cannot force a call, answers to 'required' or a
// named tool).
export async function refusesToolChoice(promise) {
  await assert.rejects(promise, (e) => {
    const status = e.status ?? e.statusCode ?? e.status_code;
    assert.equal(status, 400, String(e));
    assert.match(e.message, /tool_choice/);
    return true;
  });
}
