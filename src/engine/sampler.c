/* sampler.c - token sampling and stop strings; see sampler.h for the order of
 * operations and the guarantees.
 *
 * Where the time goes: for a 150k vocabulary the passes over all logits are
 * (a) penalties: none (only the window's distinct tokens are touched),
 * (b) top-k: one pass with a k-sized heap, O(n log k),
 * (c) top-p without top-k: two passes that bucket the logits by value and
 *     sort only the bucket where the mass p is reached (see top_p_buckets),
 * (d) min-p without the others: one pass with a threshold, no sort,
 * (e) the softmax and the draw over the survivors. */
#define _GNU_SOURCE /* memmem */
#include "engine/sampler.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"

/* Penalty windows longer than this are clamped (a million tokens is far past
 * any context length). */
#define SAMPLER_MAX_WINDOW (1 << 20)

typedef struct {
    int32_t id;
    float logit; /* later reused for the unnormalised probability */
} cand;

struct sampler {
    sampler_params p;
    int32_t n_vocab;
    uint64_t seed;
    uint64_t rng[4];
    cand *cand;      /* n_vocab entries of scratch */
    int32_t *ring;   /* last window accepted tokens */
    int32_t *sorted; /* scratch copy of ring for counting */
    int32_t window, ring_len, ring_pos;
};

/* ---- PRNG: xoshiro256** (Blackman & Vigna), seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(uint64_t st[4]) {
    uint64_t result = rotl(st[1] * 5, 7) * 9;
    uint64_t t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return result;
}

static void rng_seed(uint64_t st[4], uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) st[i] = splitmix64(&x);
}

/* Uniform double in [0, 1) from the top 53 bits. */
static double rng_uniform(uint64_t st[4]) { return (double)(rng_next(st) >> 11) * 0x1.0p-53; }

static uint64_t random_seed(void) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, 0) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uint64_t)getpid();
        v = splitmix64(&x);
    }
    return v == SAMPLER_SEED_RANDOM ? v - 1 : v;
}

/* ---- sampler ------------------------------------------------------------ */

sampler_params sampler_params_default(void) {
    return (sampler_params){
        .temperature = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .presence_penalty = 0.0f,
        .frequency_penalty = 0.0f,
        .seed = SAMPLER_SEED_RANDOM,
    };
}

sampler *sampler_new(const sampler_params *params, int32_t n_vocab) {
    if (!params || n_vocab < 1) return NULL;
    sampler *s = smp_calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *params;
    s->n_vocab = n_vocab;
    s->window = params->repeat_last_n > 0 ? params->repeat_last_n : 0;
    if (s->window > SAMPLER_MAX_WINDOW) s->window = SAMPLER_MAX_WINDOW;
    s->cand = smp_malloc((size_t)n_vocab * sizeof *s->cand);
    if (!s->cand) goto fail;
    if (s->window) {
        s->ring = smp_malloc((size_t)s->window * sizeof *s->ring);
        s->sorted = smp_malloc((size_t)s->window * sizeof *s->sorted);
        if (!s->ring || !s->sorted) goto fail;
    }
    s->seed = params->seed == SAMPLER_SEED_RANDOM ? random_seed() : params->seed;
    rng_seed(s->rng, s->seed);
    return s;
fail:
    sampler_free(s);
    return NULL;
}

void sampler_free(sampler *s) {
    if (!s) return;
    smp_free(s->cand);
    smp_free(s->ring);
    smp_free(s->sorted);
    smp_free(s);
}

void sampler_reset(sampler *s) {
    s->ring_len = s->ring_pos = 0;
    rng_seed(s->rng, s->seed);
}

uint64_t sampler_seed(const sampler *s) { return s->seed; }

void sampler_accept(sampler *s, int32_t token) {
    if (token < 0 || token >= s->n_vocab || s->window == 0) return;
    s->ring[s->ring_pos] = token;
    s->ring_pos = (s->ring_pos + 1) % s->window;
    if (s->ring_len < s->window) s->ring_len++;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Step 1: for every distinct token in the window (counted by sorting a copy of
 * the window, so no vocabulary-sized table is needed). */
static void apply_penalties(sampler *s, float *logits) {
    float rep = s->p.repeat_penalty, pres = s->p.presence_penalty, freq = s->p.frequency_penalty;
    bool use_rep = rep > 0.0f && rep != 1.0f;
    if (s->ring_len == 0 || (!use_rep && pres == 0.0f && freq == 0.0f)) return;
    memcpy(s->sorted, s->ring, (size_t)s->ring_len * sizeof *s->sorted);
    qsort(s->sorted, (size_t)s->ring_len, sizeof *s->sorted, cmp_i32);
    for (int32_t i = 0; i < s->ring_len;) {
        int32_t t = s->sorted[i], count = 0;
        while (i < s->ring_len && s->sorted[i] == t) i++, count++;
        float *l = &logits[t];
        if (use_rep) *l = *l > 0.0f ? *l / rep : *l * rep;
        *l -= (float)count * freq + pres;
    }
}

static float clean(float x) { return isnan(x) ? -INFINITY : x; }

/* a ranks before b: larger logit, then lower id. A total order, so every
 * selection and sort below is deterministic. */
static bool better(const cand *a, const cand *b) {
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *a, const void *b) {
    const cand *x = a, *y = b;
    return better(x, y) ? -1 : better(y, x) ? 1 : 0;
}

static int32_t argmax(const float *logits, int32_t n) {
    int32_t best = 0;
    float bl = clean(logits[0]);
    for (int32_t i = 1; i < n; i++) {
        if (logits[i] > bl) { /* NaN compares false */
            bl = logits[i];
            best = i;
        }
    }
    return best;
}

/* Keep heap h[0..n) with the worst candidate at the root. */
static void sift_down(cand *h, size_t n, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l])) w = l;
        if (r < n && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* The k best of logits[0..n) into out[0..k), sorted best first. O(n log k). */
static void select_top(const float *logits, int32_t n, size_t k, cand *out) {
    for (size_t i = 0; i < k; i++) out[i] = (cand){(int32_t)i, clean(logits[i])};
    for (size_t i = k / 2; i-- > 0;) sift_down(out, k, i);
    for (int32_t i = (int32_t)k; i < n; i++) {
        cand c = {i, clean(logits[i])};
        if (better(&c, &out[0])) {
            out[0] = c;
            sift_down(out, k, 0);
        }
    }
    qsort(out, k, sizeof *out, cmp_cand);
}

/* How many of the sorted c[0..n) reach softmax mass p of a distribution whose
 * normaliser (relative to max logit mx) is z; n if they do not. */
static size_t mass_prefix(const cand *c, size_t n, float mx, double z, float p) {
    double target = (double)p * z, cum = 0.0;
    for (size_t i = 0; i < n; i++) {
        cum += exp((double)c[i].logit - mx);
        if (cum >= target) return i + 1;
    }
    return n;
}

/* Top-p over all of logits without sorting them: put the logits in buckets
 * by value (TOP_P_BUCKETS equal slices of [min, max], the best first), add up
 * each bucket's mass from the top, and sort only the bucket where the running
 * mass reaches p. The kept tokens are the same as a full sort would keep; they
 * go to c[0..return) in no particular order. O(n) plus one bucket's sort. */
#define TOP_P_BUCKETS 512

static int bucket_of(float l, float mx, float scale) {
    if (scale == 0.0f) return 0; /* one bucket (and no inf * 0) */
    int b = (int)((mx - l) * scale);
    return b < TOP_P_BUCKETS - 1 ? b : TOP_P_BUCKETS - 1;
}

static size_t top_p_buckets(const float *logits, int32_t nv, float top_p, cand *c) {
    float mx = -INFINITY, mn = INFINITY;
    for (int32_t i = 0; i < nv; i++) {
        float l = clean(logits[i]);
        if (l > mx) mx = l;
        if (l > -INFINITY && l < mn) mn = l;
    }
    if (mx == -INFINITY) { /* nothing has any mass: keep everything */
        for (int32_t i = 0; i < nv; i++) c[i] = (cand){i, -INFINITY};
        return (size_t)nv;
    }
    float scale = mx > mn && isfinite(mx - mn) ? (float)(TOP_P_BUCKETS - 1) / (mx - mn) : 0.0f;
    double mass[TOP_P_BUCKETS] = {0}, z = 0.0;
    for (int32_t i = 0; i < nv; i++) {
        float l = clean(logits[i]);
        if (l == -INFINITY) continue;
        double w = exp((double)l - mx);
        mass[bucket_of(l, mx, scale)] += w;
        z += w;
    }
    double target = (double)top_p * z, cum = 0.0;
    int cross = TOP_P_BUCKETS - 1;
    for (int b = 0; b < TOP_P_BUCKETS; b++) {
        if (cum + mass[b] >= target) {
            cross = b;
            break;
        }
        cum += mass[b];
    }
    /* Buckets above the crossing one are kept whole (front of c); the crossing
     * bucket goes to the back of c, is sorted, and gives just enough. */
    size_t n = 0, t = (size_t)nv;
    for (int32_t i = 0; i < nv; i++) {
        float l = clean(logits[i]);
        if (l == -INFINITY) continue;
        int b = bucket_of(l, mx, scale);
        if (b < cross)
            c[n++] = (cand){i, l};
        else if (b == cross)
            c[--t] = (cand){i, l};
    }
    qsort(c + t, (size_t)nv - t, sizeof *c, cmp_cand);
    for (size_t j = t; j < (size_t)nv; j++) {
        cum += exp((double)c[j].logit - mx);
        c[n++] = c[j];
        if (cum >= target) break;
    }
    return n;
}

int32_t sampler_sample(sampler *s, float *logits) {
    const int32_t nv = s->n_vocab;
    const sampler_params *p = &s->p;
    apply_penalties(s, logits);
    if (!(p->temperature > 0.0f)) return argmax(logits, nv);

    /* Candidates: c[0..n). Until a step materialises them, "virtual" means all
     * of logits[] in id order; "sorted" means best first. */
    cand *c = s->cand;
    size_t n = (size_t)nv;
    bool virt = true, sorted = false;

    if (p->top_k > 0 && p->top_k < nv) {
        n = (size_t)p->top_k;
        select_top(logits, nv, n, c);
        virt = false;
        sorted = true;
    }

    if (p->top_p < 1.0f) {
        if (p->top_p <= 0.0f) {
            /* No mass is needed: keep the single most likely token. */
            if (virt) select_top(logits, nv, 1, c);
            n = 1;
            virt = false;
            sorted = true;
        } else if (sorted) {
            double z = 0.0;
            for (size_t i = 0; i < n; i++) z += exp((double)c[i].logit - c[0].logit);
            n = mass_prefix(c, n, c[0].logit, z, p->top_p);
        } else {
            n = top_p_buckets(logits, nv, p->top_p, c);
            virt = false;
        }
    }

    if (p->min_p > 0.0f) {
        /* p >= min_p * p_max  <=>  logit >= max + log(min_p); above 1 it
         * would keep nothing, so 1 (the most likely tokens) is the limit. */
        float log_min_p = logf(p->min_p < 1.0f ? p->min_p : 1.0f);
        if (virt) {
            float mx = clean(logits[argmax(logits, nv)]);
            float thr = mx + log_min_p;
            n = 0;
            for (int32_t i = 0; i < nv; i++)
                if (clean(logits[i]) >= thr) c[n++] = (cand){i, logits[i]};
            virt = false;
        } else if (sorted) {
            float thr = c[0].logit + log_min_p;
            size_t keep = 1;
            while (keep < n && c[keep].logit >= thr) keep++;
            n = keep;
        } else {
            float mx = -INFINITY;
            for (size_t i = 0; i < n; i++)
                if (c[i].logit > mx) mx = c[i].logit;
            float thr = mx + log_min_p;
            size_t keep = 0;
            for (size_t i = 0; i < n; i++)
                if (c[i].logit >= thr) c[keep++] = c[i];
            n = keep;
        }
    }

    if (virt) {
        for (int32_t i = 0; i < nv; i++) c[i] = (cand){i, clean(logits[i])};
    }

    /* Temperature, softmax (unnormalised), draw. */
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (c[i].logit > mx) mx = c[i].logit;
    if (mx == -INFINITY) return sorted ? c[0].id : argmax(logits, nv);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        /* divide rather than multiply by 1/T: 1/T overflows for tiny T */
        c[i].logit = expf((c[i].logit - mx) / p->temperature);
        sum += c[i].logit;
    }
    double target = rng_uniform(s->rng) * sum, acc = 0.0;
    size_t last = 0;
    for (size_t i = 0; i < n; i++) {
        if (c[i].logit <= 0.0f) continue;
        acc += c[i].logit;
        last = i;
        if (target < acc) return c[i].id;
    }
    return c[last].id; /* rounding left target at the very top */
}

/* ---- log probabilities -------------------------------------------------- */

double sampler_log_softmax_top(const float *logits, int32_t n, int k, sampler_logprob *top, int *n_top) {
    float mx = -INFINITY;
    for (int32_t i = 0; i < n; i++)
        if (clean(logits[i]) > mx) mx = logits[i];
    double lse = -INFINITY;
    if (mx > -INFINITY) {
        double z = 0.0;
        for (int32_t i = 0; i < n; i++) z += exp((double)clean(logits[i]) - mx);
        lse = mx + log(z);
    }
    if (k > SAMPLER_MAX_TOP_LOGPROBS) k = SAMPLER_MAX_TOP_LOGPROBS;
    if (k > n) k = (int)n;
    if (k < 0) k = 0;
    cand best[SAMPLER_MAX_TOP_LOGPROBS];
    if (k > 0) select_top(logits, n, (size_t)k, best);
    for (int i = 0; i < k; i++) top[i] = (sampler_logprob){best[i].id, (float)(best[i].logit - lse)};
    *n_top = k;
    return lse;
}

/* ---- stop strings ------------------------------------------------------- */

struct stop_matcher {
    int n;
    char *s[STOP_MAX_STRINGS];
    size_t len[STOP_MAX_STRINGS];
    size_t scanned; /* text length at the previous update */
};

int stop_matcher_new(const char *const *stops, int n, stop_matcher **out) {
    *out = NULL;
    if (n < 0 || (n > 0 && !stops)) return -SMP_E_VALIDATION;
    stop_matcher *m = smp_calloc(1, sizeof *m);
    if (!m) return -SMP_E_NOMEM;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        size_t len = stops[i] ? strlen(stops[i]) : 0;
        if (len == 0) continue;
        if (m->n == STOP_MAX_STRINGS || len > STOP_MAX_LEN) {
            rc = -SMP_E_VALIDATION;
            goto fail;
        }
        m->s[m->n] = smp_strdup(stops[i]);
        if (!m->s[m->n]) {
            rc = -SMP_E_NOMEM;
            goto fail;
        }
        m->len[m->n++] = len;
    }
    *out = m;
    return 0;
fail:
    stop_matcher_free(m);
    return rc;
}

void stop_matcher_free(stop_matcher *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) smp_free(m->s[i]);
    smp_free(m);
}

void stop_matcher_reset(stop_matcher *m) { m->scanned = 0; }

stop_result stop_matcher_update(stop_matcher *m, const char *text, size_t len) {
    stop_result r = {.which = -1, .cut = 0, .hold = 0};
    if (len < m->scanned) m->scanned = 0; /* the text shrank: rescan it all */

    /* (a) Any occurrence that was not complete last time ends in the new bytes,
     * so it starts at most len_i - 1 bytes before them. */
    for (int i = 0; i < m->n; i++) {
        size_t li = m->len[i];
        if (li > len) continue;
        size_t from = m->scanned >= li - 1 ? m->scanned - (li - 1) : 0;
        const char *hit = memmem(text + from, len - from, m->s[i], li);
        if (hit) {
            size_t at = (size_t)(hit - text);
            if (r.which < 0 || at < r.cut) {
                r.which = i;
                r.cut = at;
            }
        }
    }
    m->scanned = len;
    if (r.which >= 0) return r;

    /* (b) The longest tail of text that is a proper prefix of a stop string. */
    for (int i = 0; i < m->n; i++) {
        size_t k = m->len[i] - 1;
        if (k > len) k = len;
        for (; k > r.hold; k--) {
            if (!memcmp(text + len - k, m->s[i], k)) {
                r.hold = k;
                break;
            }
        }
    }
    return r;
}
