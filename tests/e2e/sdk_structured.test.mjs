// sdk_structured.test.mjs - structured output (issue 14) through the client
// libraries people use it with: the OpenAI client's zod helpers, the Vercel
// AI SDK's generateObject/streamObject and LangChain's withStructuredOutput
// in each of its three methods, on the built-in stories260K model, served
// directly and through a forwarding Simpleton in each upstream dialect (see
// targets.mjs). Every answer is checked with ajv against the JSON Schema its
// zod schema stands for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { zodResponseFormat } from 'openai/helpers/zod';
import { generateObject, streamObject } from 'ai';
import { TARGETS, MODEL, forEachTarget, jsonSchema, valid, refusesToolChoice } from './targets.mjs';

const Person = z.object({
  name: z.string().min(1).max(24),
  age: z.number().int().min(0).max(120),
  pet: z.enum(['cat', 'dog', 'bird']),
  tags: z.array(z.string().max(12)).max(3),
  alive: z.boolean(),
});
const PERSON = jsonSchema(Person);
const ASK = [{ role: 'user', content: 'Describe a person.' }];

forEachTarget(TARGETS, (ctx) => {
  test('openai: chat.completions.parse with zodResponseFormat gives a parsed object that validates', async () => {
    for (const seed of [1, 2, 3]) {
      const r = await ctx.openai.chat.completions.parse({ model: MODEL, seed, temperature: 0.8, max_tokens: 300,
        messages: ASK, response_format: zodResponseFormat(Person, 'person') });
      const m = r.choices[0].message;
      assert.equal(r.choices[0].finish_reason, 'stop', `seed ${seed}: ${m.content}`);
      valid(PERSON, m.parsed, `seed ${seed}`);
      assert.deepEqual(m.parsed, JSON.parse(m.content));
    }
  });

  test('openai: the zod response format streamed (chat.completions.stream) parses at the end', async () => {
    const stream = ctx.openai.chat.completions.stream({ model: MODEL, seed: 7, temperature: 0.7, max_tokens: 300,
      messages: ASK, response_format: zodResponseFormat(Person, 'person') });
    let deltas = 0;
    stream.on('content.delta', () => deltas++);
    const done = await stream.finalChatCompletion();
    assert.equal(done.choices[0].finish_reason, 'stop');
    valid(PERSON, done.choices[0].message.parsed);
    assert.ok(deltas > 5, `${deltas} deltas: not streamed`);
  });

  test('openai: json_object gives one JSON object', async () => {
    for (const seed of [1, 2]) {
      const r = await ctx.openai.chat.completions.create({ model: MODEL, seed, max_tokens: 300, messages: ASK,
        response_format: { type: 'json_object' } });
      const c = r.choices[0];
      assert.equal(c.finish_reason, 'stop', `seed ${seed}: ${c.message.content}`);
      valid({ type: 'object' }, c.message.content, `seed ${seed}`);
    }
  });

  test('AI SDK: generateObject with a zod schema, through /v1/chat/completions', async () => {
    const before = ctx.routes.length;
    for (const seed of [1, 4]) {
      const r = await generateObject({ model: ctx.ai(), schema: Person, prompt: 'Describe a person.', seed,
        temperature: 0.8, maxOutputTokens: 300, maxRetries: 0 });
      assert.equal(r.finishReason, 'stop');
      valid(PERSON, r.object, `seed ${seed}`);
    }
    assert.deepEqual([...new Set(ctx.routes.slice(before))], ['/v1/chat/completions']);
  });

  test('AI SDK: streamObject streams partial objects and ends with one that validates', async () => {
    const r = streamObject({ model: ctx.ai(), schema: Person, prompt: 'Describe a person.', seed: 5,
      temperature: 0.8, maxOutputTokens: 300, maxRetries: 0, onError: () => {} });
    const partials = [];
    for await (const p of r.partialObjectStream) partials.push(p);
    assert.ok(partials.length > 2, `${partials.length} partial objects: not streamed`);
    valid(PERSON, await r.object);
    assert.equal(await r.finishReason, 'stop');
  });

  test('LangChain: withStructuredOutput, method jsonSchema', async () => {
    const before = ctx.routes.length;
    const model = ctx.langchain({ temperature: 0.8 }).withStructuredOutput(Person, { method: 'jsonSchema' });
    for (const seed of [1, 2]) valid(PERSON, await model.invoke('Describe a person.', { seed }), `seed ${seed}`);
    assert.deepEqual([...new Set(ctx.routes.slice(before))], ['/v1/chat/completions']);
  });

  test('LangChain: withStructuredOutput, method jsonMode', async () => {
    // jsonMode sends only {type: 'json_object'}: the server never sees the
    // schema, so a model can keep to no more than "an object"; LangChain
    // would check a zod schema after parsing, so the schema here is one
    // every object meets.
    const AnyObject = z.looseObject({});
    const model = ctx.langchain({ temperature: 0.8 }).withStructuredOutput(AnyObject, { method: 'jsonMode' });
    valid(jsonSchema(AnyObject), await model.invoke('Describe a person.', { seed: 3 }));
  });

  test('LangChain: withStructuredOutput, method functionCalling (a forced tool call)', async () => {
    const model = ctx.langchain({ temperature: 0.8 }).withStructuredOutput(Person, { method: 'functionCalling' });
    if (ctx.target.upstream === 'ollama') {
      await refusesToolChoice(model.invoke('Describe a person.', { seed: 1 }));
      return;
    }
    for (const seed of [1, 2]) {
      const out = await model.invoke('Describe a person.', { seed });
      assert.notEqual(out, undefined, 'no parsed object (the tool call was missing)');
      valid(PERSON, out, `seed ${seed}`);
    }
  });

  // The local format test is structured.test.mjs's; here it crosses a hop.
  if (ctx.target.upstream) {
    test('ollama: format with a schema on chat', async () => {
      const r = await ctx.ollama.chat({ model: MODEL, format: PERSON, messages: ASK,
        options: { seed: 4, temperature: 0.5, num_predict: 300 } });
      assert.equal(r.done_reason, 'stop', r.message.content);
      valid(PERSON, r.message.content);
    });
  }
});
