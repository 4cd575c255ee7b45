# mutants.sh - the mutants `make mutate` puts into the code, one at a time.
# Sourced by tests/mutate/run.sh. Each one is
#
#   mutant ID FILE 'TESTS' 'SED' ['SED' ...]
#
# ID     a short name (`make mutate ONLY=ID-substring` runs the ones matching)
# FILE   the source file to mutate (relative to the repository)
# TESTS  the narrowest tests that should kill it, space-separated:
#          unit:NAME-substring            build/unit_tests NAME-substring
#          node:FILE[#NAME-REGEX]          node --test [--test-name-pattern] FILE
#          fuzz:NAME                       build/fuzz_NAME_replay tests/fuzz/corpus/NAME
# SED    sed expressions applied to FILE; each must change it (a rule that no
#        longer matches the code is reported, not silently skipped).
#
# A mutant is a bug someone could plausibly write: a boundary off by one, a
# check dropped, the wrong variable. One that no test kills is a gap in the
# tests (or a mutant that cannot change behaviour: then remove it and say so
# here). Left out as equivalent: top_p_buckets' crossing test (>= vs >
# differs only when a bucket's running mass equals p * z exactly in double,
# and the final prefix loop decides the kept set anyway); tok_min_tokens
# rounding up (every token covers at most max_bytes_per_id bytes, so
# ceil(len / max) is as true a floor as len / max).

# ---- sampler: top-p keeps the shortest prefix that reaches p --------------
mutant sampler-top-p-sorted-reach src/engine/sampler.c 'unit:sampler_top_p' \
    's/if (cum >= target) return i + 1;/if (cum > target) return i + 1;/'
mutant sampler-top-p-bucket-reach src/engine/sampler.c 'unit:sampler_top_p' \
    's/        if (cum >= target) break;/        if (cum > target) break;/'
mutant sampler-top-k-ignored src/engine/sampler.c 'unit:sampler_' \
    's/if (p->top_k > 0 \&\& p->top_k < nv) {/if (p->top_k > 0 \&\& p->top_k < 0) {/'
mutant sampler-min-p-sign src/engine/sampler.c 'unit:sampler_' \
    's/float thr = c\[0\].logit + log_min_p;/float thr = c[0].logit - log_min_p;/'
mutant sampler-min-p-off src/engine/sampler.c 'unit:sampler_min_p' \
    's/    if (p->min_p > 0.0f) {/    if (p->min_p > 1.0f) {/'
mutant sampler-presence-sign src/engine/sampler.c 'unit:sampler_penalties' \
    's/\*l -= (float)count \* freq + pres;/*l -= (float)count * freq - pres;/'
mutant sampler-repeat-negative src/engine/sampler.c 'unit:sampler_penalties' \
    's/\*l = \*l > 0.0f ? \*l \/ rep : \*l \* rep;/*l = *l \/ rep;/'

# ---- cache key: every field that shapes an answer -------------------------
mutant key-min-p-left-out src/api/textgen.h 'unit:textgen_key node:tests/e2e/text_api.test.mjs#every field' \
    '/    X(min_p, NUM)             \\/d'
mutant key-penalties-left-out src/api/textgen.h 'unit:textgen_key node:tests/e2e/text_api.test.mjs#every field' \
    '/    X(repeat_penalty, NUM)    \\/d' '/    X(presence_penalty, NUM)  \\/d' '/    X(frequency_penalty, NUM) \\/d'
mutant key-raw-left-out src/api/textgen.h 'unit:textgen_key node:tests/e2e/text_api.test.mjs#every field' \
    '/    X(raw, BOOL)              \\/d'
mutant key-numbers-constant src/api/textgen.c 'unit:textgen_key' \
    's/#define KEY_NUM(m) json_real(q->m)/#define KEY_NUM(m) json_real(0 * q->m)/'
mutant key-context-dropped src/api/textgen.c 'unit:textgen_key' \
    's/for (int i = 0; i < q->n_context; i++) json_array_append_new(a, json_integer(q->context\[i\]));//'
mutant key-images-dropped src/api/textgen.c 'unit:textgen_key node:tests/e2e/text_api.test.mjs#chat images' \
    's/json_array_append_new(imgs, json_string(hex));/(void)hex;/'
mutant cache-no-cache-ignored src/cache/cache.c 'unit:cache_ node:tests/e2e/text_api.test.mjs#identical request' \
    's/return C.enabled \&\& !(cc \&\& (strstr(cc, "no-cache") || strstr(cc, "no-store")));/return C.enabled;/'

# ---- cache: Redis down is a miss, never an error --------------------------
mutant redis-down-is-a-hit src/cache/cache_redis.c 'node:tests/integration/cache.test.mjs#redis down' \
    '/^static int redis_get(/,/^}/s/    if (!c) return 0;/    if (!c) return 1;/'

# ---- auth ------------------------------------------------------------------
mutant auth-length-only src/http/auth.c 'node:tests/integration/auth.test.mjs#same length|comma|prefix' \
    's/util_sha256_hex(s, n, keys\[nkeys++\]);/{ static const char z_[1 << 16]; util_sha256_hex(z_, n, keys[nkeys++]); }/' \
    's/util_sha256_hex(given, gl, digest);/static const char z_[1 << 16]; util_sha256_hex(z_, gl, digest);/'
mutant auth-last-key-only src/http/auth.c 'node:tests/integration/auth.test.mjs#comma' \
    's/match |= util_ct_equal(digest, 64, keys\[i\], 64);/match = util_ct_equal(digest, 64, keys[i], 64);/'
mutant auth-trailing-space-kept src/http/auth.c 'node:tests/integration/hardening.test.mjs#whitespace' \
    "s/while (gl \&\& (given\[gl - 1\] == ' ' || given\[gl - 1\] == '\\\\t')) gl--;//"
mutant ct-equal-lengths-only src/core/util.c 'unit:ct_equal' \
    's/return CRYPTO_memcmp(a, b, alen) == 0;/return true;/'

# ---- body limits -------------------------------------------------------------
mutant body-cap-refused src/http/server.c 'node:tests/integration/http.test.mjs#body limit' \
    's/if (\*end == .\\0. \&\& n > r->body_cap) {/if (*end == 0 \&\& n >= r->body_cap) {/'
mutant body-cap-doubled src/http/server.c 'node:tests/integration/http.test.mjs#body limit' \
    's/if (\*end == .\\0. \&\& n > r->body_cap) {/if (*end == 0 \&\& n > 2 * r->body_cap) {/'
mutant buf-cap-off-by-one src/core/buf.c 'unit:buf_' \
    's/if (b->cap \&\& b->len + extra > b->cap) return -1;/if (b->cap \&\& b->len + extra >= b->cap) return -1;/'

# ---- HTTP framing (RFC 9112) ------------------------------------------------
mutant framing-two-lengths src/http/server.c 'node:tests/integration/hardening.test.mjs#framing' \
    's/if (f.n_length > 1) {/if (f.n_length > 2) {/'
mutant framing-te-and-cl src/http/server.c 'node:tests/integration/hardening.test.mjs#framing' \
    '/^static int check_framing(/,/^}/s/    if (f.n_length) {/    if (0 \&\& f.n_length) {/'
mutant framing-host-any src/http/server.c 'node:tests/integration/hardening.test.mjs#framing' \
    's/f.n_host != 1) {/f.n_host > 1) {/'
mutant framing-chunked-not-last src/http/server.c 'node:tests/integration/hardening.test.mjs#framing' \
    's/        if (last_chunked) {/        if (0 \&\& last_chunked) {/'

# ---- connections: deadlines and shedding --------------------------------------
mutant conns-deadline-inverted src/http/conns.c 'node:tests/integration/hardening.test.mjs#slow clients' \
    's/if (d \&\& now > d \&\& !r->shut) {/if (d \&\& now < d \&\& !r->shut) {/'
mutant conns-body-rate-ignored src/http/conns.c 'node:tests/integration/hardening.test.mjs#slow clients' \
    's/return r->since + g.body_ns + r->body_bytes \* SEC \/ g.body_rate;/return r->since + g.body_ns;/'
mutant conns-header-uses-idle src/http/conns.c 'node:tests/integration/hardening.test.mjs#slow clients' \
    's/case CONN_HEADERS: return r->since + g.header_ns;/case CONN_HEADERS: return r->since + g.idle_ns;/'
mutant conns-never-shed src/http/conns.c 'node:tests/integration/hardening.test.mjs#past MAX_CONNECTIONS' \
    's/if (g.count >= g.high_water) {/if (g.count >= g.high_water + 1000) {/'

# ---- JSON limits, UTF-8, base64 ------------------------------------------------
mutant json-values-limit src/core/valid.c 'unit:valid_' \
    's/if (values > VALID_MAX_VALUES || objects > VALID_MAX_OBJECTS) {/if (values >= VALID_MAX_VALUES || objects > VALID_MAX_OBJECTS) {/'
mutant json-objects-unchecked src/core/valid.c 'unit:valid_' \
    's/if (values > VALID_MAX_VALUES || objects > VALID_MAX_OBJECTS) {/if (values > VALID_MAX_VALUES) {/'
mutant json-shape-escapes src/core/valid.c 'unit:valid_' \
    's/                if (s\[i\] == .\\\\.) i++;/                ;/'
mutant utf8-past-max src/core/valid.c 'unit:valid_utf8' \
    's/if (c < min || c > 0x10FFFF || (c >= 0xD800 \&\& c <= 0xDFFF)) return false;/if (c < min || (c >= 0xD800 \&\& c <= 0xDFFF)) return false;/'
mutant utf8-cut-short src/core/valid.c 'unit:valid_utf8' \
    's/        if (e - p < len) return false;//'
mutant b64-early-padding src/core/util.c 'unit:b64_' \
    's/            if (nq < 2) {/            if (nq < 1) {/'
mutant b64-data-after-padding src/core/util.c 'unit:b64_' \
    's/        if (pad) {/        if (0 \&\& pad) {/'

# ---- router ------------------------------------------------------------------
mutant router-prefix-match src/http/router.c 'node:tests/integration/http.test.mjs#unknown path|wrong method' \
    's/    if (\*t || \*p) return false;/    if (*t) return false;/'
mutant router-head-not-get src/http/router.c 'node:tests/integration/hardening.test.mjs#HEAD' \
    's/const char \*want = !strcmp(method, "HEAD") ? "GET" : method;/const char *want = method;/'

# ---- tokenizer -----------------------------------------------------------------
mutant tok-merge-ties-rightmost src/engine/tokenizer.c 'unit:tok_vocab' \
    's/return x->key < y->key || (x->key == y->key \&\& x->left < y->left);/return x->key < y->key || (x->key == y->key \&\& x->left > y->left);/'
mutant tok-min-tokens-any-vocab src/engine/tokenizer.c 'unit:tok_min_tokens' \
    's/t->max_bytes_per_id = keeps_bytes ? t->max_token_len : 0;/t->max_bytes_per_id = t->max_token_len;/'

# ---- arena and the request memory that lives in it ------------------------------
mutant arena-no-alignment src/core/arena.c 'unit:arena_' \
    's/size_t need = (n + ARENA_ALIGN - 1) \& ~(size_t)(ARENA_ALIGN - 1);/size_t need = n;/' \
    's/    if (need < n) return NULL;//'
mutant arena-no-growth src/core/arena.c 'unit:arena_' \
    's/size_t cap = c ? c->cap \* 2 : ARENA_FIRST_CHUNK;/size_t cap = ARENA_FIRST_CHUNK;/'
mutant arena-no-chunk-cap src/core/arena.c 'unit:arena_' \
    's/        if (cap > ARENA_MAX_CHUNK) cap = ARENA_MAX_CHUNK;//'
mutant arena-adopted-leak src/core/arena.c 'unit:arena_' \
    's/for (struct arena_adopted \*r = a->adopted; r; r = r->next) smp_free(r->p);//'
mutant textjob-arena-leak src/api/textgen.c 'fuzz:chat' \
    '/^void textjob_free(/,/^}/s/    arena_free(&j->mem);//'

# ---- grammar and schemas (issue 14): constrained decoding -----------------
mutant grammar-eos-anywhere src/engine/grammar.c 'unit:grammar' \
    's/    if (tok_is_eog(v->t, id)) return grammar_matcher_can_end(m);/    if (tok_is_eog(v->t, id)) return true;/'
mutant grammar-can-end-early src/engine/grammar.c 'unit:grammar' \
    's/        if (!m->tops\[i\]) return true;/        if (m->tops[i] || !m->tops[i]) return true;/'
mutant schema-maxlength-dropped src/engine/json_schema.c 'unit:grammar' \
    's/    else put(c, b, "\\"\\\\\\"\\" char{%ld,%ld} \\"\\\\\\"\\"", mn, mx);/    else put(c, b, "\\"\\\\\\"\\" char{%ld,} \\"\\\\\\"\\"", mn);/'
mutant schema-not-checked-up-front src/api/textgen.c 'node:tests/integration/fields.test.mjs#cannot enforce' \
    's/    if (check_schema(v, "response_format", schema) < 0) return -1;//'
