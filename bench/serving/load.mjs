// load.mjs - the serving benchmark's client (issue 15): N concurrent
// streaming completions against an OpenAI-compatible /v1/completions
// (Simpleton or llama.cpp's llama-server), each a distinct short prompt and
// TOKENS generated tokens; then a two-turn conversation whose first prompt
// starts with a ~600-token system text.
//
//   node load.mjs URL KEY N TOKENS ROUNDS    -> one JSON line:
//   {n, tokens, rounds, tok_s, ttft_p50_ms, ttft_p99_ms, completion_tokens, turn1_ttft_ms, turn2_ttft_ms}
//
// tok_s: completion tokens of all clients of a round over the round's wall
// time (first request sent to last answer ended), median over rounds. TTFT:
// request sent to first non-empty text, pooled over every round's clients.
// Tokens are counted from the final usage when the server sends one, else
// one per streamed piece of text.
const [url, key, nArg, tokArg, roundsArg] = process.argv.slice(2);
const N = Number(nArg), TOKENS = Number(tokArg), ROUNDS = Number(roundsArg || 3);
const WORDS = 'the a little dog cat bird ran jumped over under near happy sad big small red blue green tree house ' +
  'river sun moon star boy girl mom dad friend park ball toy cake song day night';
const pool = WORDS.split(' ');
let seed = 12345;
const rnd = () => (seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648;
const words = (n) => Array.from({ length: n }, () => pool[Math.floor(rnd() * pool.length)]).join(' ');

async function complete(prompt, maxTokens) {
  const t0 = performance.now();
  const r = await fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}`, 'X-API-Key': key },
    body: JSON.stringify({ model: process.env.MODEL || 'tinyllama-Q4_K_M', prompt, max_tokens: maxTokens, temperature: 0.8, seed: 1, stream: true,
      stream_options: { include_usage: true } }),
  });
  if (r.status !== 200) throw new Error(`${r.status} ${await r.text()}`);
  let ttft = null, pieces = 0, usage = null, text = '', buf = '';
  const dec = new TextDecoder();
  for await (const chunk of r.body) {
    buf += dec.decode(chunk, { stream: true });
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const frame = buf.slice(0, i);
      buf = buf.slice(i + 2);
      if (!frame.startsWith('data: ') || frame === 'data: [DONE]') continue;
      const o = JSON.parse(frame.slice(6));
      if (o.usage) usage = o.usage;
      const t = o.choices?.[0]?.text || o.content || '';
      if (t) {
        if (ttft === null) ttft = performance.now() - t0;
        pieces++;
        text += t;
      }
    }
  }
  return { ttft, tokens: usage?.completion_tokens ?? pieces, end: performance.now(), text };
}

const pct = (a, p) => {
  const s = [...a].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};

const ttfts = [], rates = [];
let completion = 0;
for (let round = 0; round < ROUNDS; round++) {
  const prompts = Array.from({ length: N }, (_, i) => `Story ${round}-${i}: ${words(12)}`);
  const t0 = performance.now();
  const res = await Promise.all(prompts.map((p) => complete(p, TOKENS)));
  const end = Math.max(...res.map((x) => x.end));
  const toks = res.reduce((s, x) => s + x.tokens, 0);
  completion += toks;
  rates.push((toks * 1000) / (end - t0));
  for (const x of res) if (x.ttft !== null) ttfts.push(x.ttft);
}
// Two turns: the second prompt is the first, its answer and a new question.
const system = `System: ${words(560)}\n`;
const turn1 = `${system}User: tell me a story about a dog.\nAssistant:`;
const a = await complete(turn1, TOKENS);
const b = await complete(`${turn1}${a.text}\nUser: and then what happened?\nAssistant:`, TOKENS);
console.log(JSON.stringify({ n: N, tokens: TOKENS, rounds: ROUNDS, tok_s: Number(pct(rates, 50).toFixed(2)),
  ttft_p50_ms: Math.round(pct(ttfts, 50)), ttft_p99_ms: Math.round(pct(ttfts, 99)), completion_tokens: completion,
  turn1_ttft_ms: Math.round(a.ttft), turn2_ttft_ms: Math.round(b.ttft) }));
