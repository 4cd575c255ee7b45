// sdk_tools.test.mjs - tool calling (issue 14) through the client libraries:
// the OpenAI client (each tool_choice, streamed calls, a follow-up turn with
// the tool's result, runTools), the Vercel AI SDK's generateText, LangChain's
// bindTools, and the Ollama client (tools, a role 'tool' answer), on the
// built-in stories260K model served directly and through a forwarding
// Simpleton (see targets.mjs). Every call must name a declared tool and its
// arguments must validate (ajv) against that tool's parameters. An Ollama
// upstream cannot force a call: 'required' and a named tool are a 400 naming
// tool_choice there, and 'auto' works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { z } from 'zod';
import { zodFunction } from 'openai/helpers/zod';
import { generateText, tool, stepCountIs } from 'ai';
import { tool as lcTool } from '@langchain/core/tools';
import { AIMessage, HumanMessage, ToolMessage } from '@langchain/core/messages';
import { TARGETS, MODEL, forEachTarget, jsonSchema, valid, refusesToolChoice } from './targets.mjs';

const Weather = z.object({ city: z.string().min(1).max(20), unit: z.enum(['celsius', 'fahrenheit']) });
const Add = z.object({ a: z.number().int().min(0).max(100), b: z.number().int().min(0).max(100) });
const PARAMS = { get_weather: jsonSchema(Weather), add: jsonSchema(Add) };
const DESCRIPTION = { get_weather: 'The current weather in a city', add: 'Add two numbers' };
// The same two tools as OpenAI and Ollama take them.
const TOOLS = Object.keys(PARAMS).map((name) => ({ type: 'function',
  function: { name, description: DESCRIPTION[name], parameters: PARAMS[name] } }));
const ASK = [{ role: 'user', content: 'What is the weather in Paris?' }];
const GEN = { model: MODEL, max_tokens: 300, temperature: 0.8 };
const NAMED = { type: 'function', function: { name: 'add' } };
// A finished first turn: the assistant called get_weather, the tool answered.
const CALL = { id: 'call_weather_1', type: 'function',
  function: { name: 'get_weather', arguments: '{"city":"Paris","unit":"celsius"}' } };
const RESULT = '{"temperature":21,"sky":"clear"}';

// One call as the OpenAI dialect gives it (arguments are JSON text).
function checkCall(call, want) {
  assert.equal(call.type, 'function');
  assert.ok(typeof call.id === 'string' && call.id.length > 0, `call id ${call.id}`);
  const { name, arguments: args } = call.function;
  assert.ok(name in PARAMS, `undeclared tool '${name}'`);
  if (want) assert.equal(name, want);
  return valid(PARAMS[name], args, name);
}

// An answer the model was free to give as text or as calls.
function checkFreeChoice(choice, what) {
  const m = choice.message;
  if (m.tool_calls?.length) {
    assert.equal(choice.finish_reason, 'tool_calls', what);
    m.tool_calls.forEach((c) => checkCall(c));
  } else {
    assert.equal(typeof m.content, 'string', what);
    assert.ok(['stop', 'length'].includes(choice.finish_reason), `${what}: ${choice.finish_reason}`);
  }
}

forEachTarget(TARGETS, (ctx) => {
  const forcedRefused = () => ctx.target.upstream === 'ollama';

  test('openai: tool_choice required gives calls of declared tools whose arguments validate', async () => {
    const ask = (seed, extra = {}) => ctx.openai.chat.completions.create({ ...GEN, seed, messages: ASK, tools: TOOLS,
      tool_choice: 'required', ...extra });
    if (forcedRefused()) return refusesToolChoice(ask(1));
    for (const seed of [1, 2, 3]) {
      const c = (await ask(seed)).choices[0];
      assert.equal(c.finish_reason, 'tool_calls', `seed ${seed}`);
      assert.ok(c.message.tool_calls.length >= 1);
      c.message.tool_calls.forEach((call) => checkCall(call));
    }
    const one = (await ask(4, { parallel_tool_calls: false })).choices[0];
    assert.equal(one.message.tool_calls.length, 1, 'parallel_tool_calls false');
    checkCall(one.message.tool_calls[0]);
  });

  test('openai: a named tool (chat.completions.parse with zodFunction) is the one called', async () => {
    const ask = (seed) => ctx.openai.chat.completions.parse({ ...GEN, seed, messages: ASK,
      tools: [zodFunction({ name: 'get_weather', parameters: Weather }), zodFunction({ name: 'add', parameters: Add })],
      tool_choice: NAMED });
    if (forcedRefused()) return refusesToolChoice(ask(1));
    for (const seed of [1, 2]) {
      const c = (await ask(seed)).choices[0];
      assert.equal(c.finish_reason, 'tool_calls');
      const call = c.message.tool_calls[0];
      const args = checkCall(call, 'add');
      assert.deepEqual(call.function.parsed_arguments, args);
    }
  });

  test('openai: tool_choice auto answers with text or with calls that validate', async () => {
    for (const seed of [1, 2, 3, 4]) {
      const r = await ctx.openai.chat.completions.create({ ...GEN, seed, temperature: 1, messages: ASK, tools: TOOLS,
        tool_choice: 'auto' });
      checkFreeChoice(r.choices[0], `seed ${seed}`);
    }
  });

  if (ctx.target.upstream !== 'ollama') {
    test('openai: tool_choice none answers with text and no calls', async () => {
      for (const seed of [1, 2]) {
        const c = (await ctx.openai.chat.completions.create({ ...GEN, seed, messages: ASK, tools: TOOLS,
          tool_choice: 'none' })).choices[0];
        assert.ok(!c.message.tool_calls?.length, JSON.stringify(c.message.tool_calls));
        assert.equal(typeof c.message.content, 'string');
        assert.notEqual(c.finish_reason, 'tool_calls');
      }
    });
  }

  test('openai: streamed tool calls: id and name first, arguments in pieces, joined they validate', async () => {
    const ask = (seed, tool_choice) => ctx.openai.chat.completions.create({ ...GEN, seed, stream: true, messages: ASK,
      tools: TOOLS, tool_choice });
    if (forcedRefused()) return refusesToolChoice(ask(1, 'required'));
    for (const [seed, choice, want] of [[1, 'required'], [2, 'required'], [3, NAMED, 'add']]) {
      const calls = [];
      let finish = null;
      for await (const chunk of await ask(seed, choice)) {
        const c = chunk.choices[0];
        if (!c) continue;
        for (const d of c.delta?.tool_calls ?? []) {
          if (!calls[d.index]) {
            assert.ok(d.id && d.function?.name, `the first delta of call ${d.index} has no id or name`);
            calls[d.index] = { id: d.id, type: d.type ?? 'function', function: { name: d.function.name, arguments: '' },
              pieces: 0 };
          }
          if (d.function?.arguments) {
            calls[d.index].function.arguments += d.function.arguments;
            calls[d.index].pieces++;
          }
        }
        if (c.finish_reason) finish = c.finish_reason;
      }
      assert.equal(finish, 'tool_calls', `seed ${seed}`);
      assert.ok(calls.length >= 1, `seed ${seed}: no tool call streamed`);
      for (const call of calls) {
        checkCall(call, want);
        assert.ok(call.pieces >= 2, `arguments came in ${call.pieces} piece(s): not streamed`);
      }
    }
  });

  test('openai: a follow-up turn with the assistant\'s tool_calls and a role tool message is answered', async () => {
    const messages = [...ASK, { role: 'assistant', content: null, tool_calls: [CALL] },
      { role: 'tool', tool_call_id: CALL.id, content: RESULT }];
    const r = await ctx.openai.chat.completions.create({ ...GEN, seed: 1, messages, tools: TOOLS, tool_choice: 'auto' });
    assert.equal(r.choices[0].message.role, 'assistant');
    checkFreeChoice(r.choices[0], 'auto after the tool result');
    if (ctx.target.upstream === 'ollama') return;
    const c = (await ctx.openai.chat.completions.create({ ...GEN, seed: 2, messages, tools: TOOLS,
      tool_choice: 'none' })).choices[0];
    assert.ok(c.message.content.length > 0);
    assert.ok(!c.message.tool_calls?.length);
  });

  test('openai: runTools with a named tool calls the function once with arguments that validate', async () => {
    const got = [];
    const runner = ctx.openai.chat.completions.runTools({ ...GEN, seed: 1, messages: ASK, tool_choice: NAMED,
      tools: [zodFunction({ name: 'add', parameters: Add, function: (args) => { got.push(args); return args.a + args.b; } })] });
    if (forcedRefused()) return refusesToolChoice(runner.done());
    await runner.done();
    assert.equal(got.length, 1, `the function ran ${got.length} times`);
    valid(PARAMS.add, got[0]);
    const sent = runner.messages.map((m) => m.role);
    assert.deepEqual(sent, ['user', 'assistant', 'tool']);
  });

  test('AI SDK: generateText with tools, toolChoice required, a named tool and auto', async () => {
    const tools = { get_weather: tool({ description: DESCRIPTION.get_weather, inputSchema: Weather }),
      add: tool({ description: DESCRIPTION.add, inputSchema: Add }) };
    const ask = (seed, toolChoice) => generateText({ model: ctx.ai(), tools, toolChoice, seed, temperature: 0.8,
      prompt: ASK[0].content, maxOutputTokens: 300, maxRetries: 0 });
    const checkCalls = (r, want) => {
      for (const c of r.toolCalls) {
        assert.notEqual(c.invalid, true, `invalid call ${c.toolName}: ${c.error}`);
        assert.ok(c.toolName in PARAMS, `undeclared tool '${c.toolName}'`);
        if (want) assert.equal(c.toolName, want);
        valid(PARAMS[c.toolName], c.input, c.toolName);
      }
    };
    if (forcedRefused()) {
      await refusesToolChoice(ask(1, 'required'));
      await refusesToolChoice(ask(1, { type: 'tool', toolName: 'add' }));
    } else {
      for (const [seed, choice, want] of [[1, 'required'], [2, 'required'], [3, { type: 'tool', toolName: 'add' }, 'add']]) {
        const r = await ask(seed, choice);
        assert.equal(r.finishReason, 'tool-calls', `seed ${seed}`);
        assert.ok(r.toolCalls.length >= 1, `seed ${seed}: no tool call`);
        checkCalls(r, want);
      }
    }
    for (const seed of [4, 5]) {
      const r = await ask(seed, 'auto');
      checkCalls(r);
      if (r.toolCalls.length) assert.equal(r.finishReason, 'tool-calls');
      else assert.equal(typeof r.text, 'string');
    }
  });

  if (ctx.target.upstream !== 'ollama') {
    test('AI SDK: a tool that runs, and its result sent back in a second step', async () => {
      const got = [];
      const r = await generateText({ model: ctx.ai(), seed: 1, temperature: 0.8, prompt: ASK[0].content,
        maxOutputTokens: 300, maxRetries: 0, toolChoice: 'required', stopWhen: stepCountIs(2),
        prepareStep: ({ stepNumber }) => (stepNumber === 1 ? { toolChoice: 'none' } : undefined),
        tools: { get_weather: tool({ description: DESCRIPTION.get_weather, inputSchema: Weather,
          execute: async (input) => { got.push(input); return { temperature: 21 }; } }) } });
      assert.equal(got.length >= 1, true, 'the tool never ran');
      got.forEach((input) => valid(PARAMS.get_weather, input));
      assert.equal(r.steps.length, 2);
      assert.equal(typeof r.text, 'string');
      assert.notEqual(r.finishReason, 'tool-calls');
    });
  }

  test('LangChain: bindTools with tool_choice any and a named tool; a ToolMessage follow-up', async () => {
    const tools = [
      lcTool(async () => RESULT, { name: 'get_weather', description: DESCRIPTION.get_weather, schema: Weather }),
      lcTool(async ({ a, b }) => String(a + b), { name: 'add', description: DESCRIPTION.add, schema: Add }),
    ];
    const bound = (tool_choice) => ctx.langchain({ temperature: 0.8 }).bindTools(tools, { tool_choice });
    if (forcedRefused()) {
      await refusesToolChoice(bound('any').invoke(ASK[0].content, { seed: 1 }));
      await refusesToolChoice(bound('add').invoke(ASK[0].content, { seed: 1 }));
    } else {
      for (const [seed, choice, want] of [[1, 'any'], [2, 'required'], [3, 'add', 'add']]) {
        const msg = await bound(choice).invoke(ASK[0].content, { seed });
        assert.deepEqual(msg.invalid_tool_calls ?? [], [], `seed ${seed}`);
        assert.ok(msg.tool_calls.length >= 1, `seed ${seed}: no tool call`);
        for (const call of msg.tool_calls) {
          assert.ok(call.name in PARAMS, `undeclared tool '${call.name}'`);
          if (want) assert.equal(call.name, want);
          valid(PARAMS[call.name], call.args, call.name);
        }
      }
    }
    const reply = await ctx.langchain({ temperature: 0.8 }).bindTools(tools).invoke([
      new HumanMessage(ASK[0].content),
      new AIMessage({ content: '', tool_calls: [{ id: CALL.id, name: 'get_weather', args: JSON.parse(CALL.function.arguments) }] }),
      new ToolMessage({ tool_call_id: CALL.id, content: RESULT }),
    ], { seed: 1 });
    assert.equal(reply.getType(), 'ai');
    reply.tool_calls.forEach((call) => valid(PARAMS[call.name], call.args, call.name));
  });

  test('ollama: tools on chat: every call names a declared tool with arguments that validate', async () => {
    for (const seed of [1, 2, 3, 4]) {
      const r = await ctx.ollama.chat({ model: MODEL, messages: ASK, tools: TOOLS,
        options: { seed, temperature: 1, num_predict: 300 } });
      assert.equal(r.done, true);
      for (const call of r.message.tool_calls ?? []) {
        assert.ok(call.function.name in PARAMS, `undeclared tool '${call.function.name}'`);
        assert.equal(typeof call.function.arguments, 'object', 'Ollama gives arguments as an object');
        valid(PARAMS[call.function.name], call.function.arguments, call.function.name);
      }
    }
  });

  test('ollama: a role tool message (tool_name) after the assistant\'s tool_calls is answered', async () => {
    const messages = [...ASK,
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: JSON.parse(CALL.function.arguments) } }] },
      { role: 'tool', tool_name: 'get_weather', content: RESULT }];
    const r = await ctx.ollama.chat({ model: MODEL, messages, tools: TOOLS, options: { seed: 1, num_predict: 60 } });
    assert.equal(r.message.role, 'assistant');
    assert.equal(r.done, true);
    assert.equal(typeof r.message.content, 'string');
  });
});
