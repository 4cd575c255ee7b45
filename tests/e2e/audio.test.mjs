// audio.test.mjs - the official OpenAI client's audio API against the real
// binary: client.audio.transcriptions.create / translations.create with a
// file stream, in json, text, srt, vtt and verbose_json, and its error type
// for bad audio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, mkdirSync, readdirSync, symlinkSync, writeFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';

// Paths are relative to the repository root (as in every test); run from
// tests/e2e as well, so move there before lib.mjs resolves the binary.
process.chdir(fileURLToPath(new URL('../..', import.meta.url)));
const { startServer, KEY } = await import('../integration/lib.mjs');

const WMODELS = path.resolve('../shared/models/whisper');
const JFK = path.resolve('../shared/audio/jfk.wav');
let tmp, s, client;

before(async () => {
  tmp = mkdtempSync(path.join(os.tmpdir(), 'smp-e2e-audio-'));
  const models = path.join(tmp, 'models');
  mkdirSync(models);
  for (const f of readdirSync(WMODELS)) if (f.endsWith('.bin')) symlinkSync(path.join(WMODELS, f), path.join(models, f));
  s = await startServer({ MODELS_DIR: models, DEFAULT_AUDIO_MODEL: 'whisper-rand-tiny64-f16', WHISPER_DOWNLOAD_URL: '' });
  client = new OpenAI({ apiKey: KEY, baseURL: `${s.url}/v1`, maxRetries: 0, timeout: 60000 });
});
after(async () => {
  await s?.stop();
  rmSync(tmp, { recursive: true, force: true });
});

test('openai client: audio.transcriptions.create with whisper-1 and with a local model name', async () => {
  const a = await client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-1', language: 'en' });
  assert.equal(typeof a.text, 'string');
  const b = await client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-rand-tiny64-f16',
    language: 'en', temperature: 0, prompt: 'President Kennedy' });
  assert.equal(typeof b.text, 'string');
  const v = await client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-1', language: 'en',
    response_format: 'verbose_json' });
  assert.equal(v.text, a.text);
  assert.ok(Math.abs(v.duration - 11) < 0.01);
  assert.equal(v.language, 'english');
  assert.ok(Array.isArray(v.segments));
  const t = await client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-1', language: 'en',
    response_format: 'text' });
  assert.equal(typeof t, 'string');
  assert.equal(t.trim(), a.text.trim());
  const srt = await client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-1',
    response_format: 'srt' });
  assert.equal(typeof srt, 'string');
  const vtt = await client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-1',
    response_format: 'vtt' });
  assert.match(vtt, /^WEBVTT/);
});

test('openai client: audio.translations.create, and a BadRequestError for text posing as audio', async () => {
  const tr = await client.audio.translations.create({ file: createReadStream(JFK), model: 'whisper-1' });
  assert.equal(typeof tr.text, 'string');
  const fake = path.join(tmp, 'notes.wav');
  writeFileSync(fake, 'these are meeting notes, not a recording\n');
  await assert.rejects(client.audio.transcriptions.create({ file: createReadStream(fake), model: 'whisper-1' }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /audio/.test(e.message));
});

test('openai client: an unknown language is a BadRequestError naming it; verbose_json carries decoding figures', async () => {
  await assert.rejects(client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-1', language: 'xx' }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 && /unknown language 'xx'/.test(e.message));
  const v = await client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-1', language: 'en',
    response_format: 'verbose_json' });
  assert.ok(v.segments.length > 0);
  for (const seg of v.segments) {
    assert.ok(seg.avg_logprob < 0 && seg.compression_ratio > 0 && seg.no_speech_prob > 0, JSON.stringify(seg));
  }
});

test('openai client: a GGUF model name is a 503 saying GGUF Whisper files are not supported', async () => {
  await assert.rejects(client.audio.transcriptions.create({ file: createReadStream(JFK), model: 'whisper-tiny.gguf' }),
    (e) => e instanceof OpenAI.APIError && e.status === 503 && /GGUF Whisper files are not supported yet/.test(e.message));
});
