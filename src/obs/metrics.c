/* metrics.c - Prometheus registry and text exposition (format 0.0.4); see metrics.h.
 *
 * Data structure. The families are a fixed table (defs[] / fams[]), declared at
 * init. A family keeps its series - one per distinct tuple of label values - in
 * a chained hash table of FAM_BUCKETS heads. The heads are split into
 * FAM_STRIPES stripes, each with its own mutex (stripe = bucket % FAM_STRIPES),
 * so two threads recording different label sets rarely meet.
 *
 * A series is one smp_malloc block:
 *   [struct series][bucket counts: u64 x (nbounds + 1), histograms only][label values, NUL-terminated]
 * The label values are copied once, when the tuple is first seen (each is cut
 * to LABEL_MAX bytes). After that, recording a sample is: hash the label
 * values, lock one stripe, walk a short chain, add, unlock - no allocation.
 * Series live until metrics_free, so the renderer may keep pointers to them.
 * A family holds at most FAM_MAX_SERIES series; a sample for a new tuple past
 * that is dropped and counted in simpleton_metrics_dropped_total, so a bug that
 * invents label values cannot grow memory without bound.
 *
 * Histograms store per-bucket (non-cumulative) counts, the sum and the count;
 * the renderer accumulates them into the cumulative `le` buckets Prometheus
 * expects, ending with le="+Inf" (== _count).
 *
 * Render. Per family: snapshot each series' values under its stripe lock (so a
 * histogram's buckets, sum and count agree), sort by label values, write. Then
 * the computed families (build info, heap, dropped samples, process metrics
 * from /proc/self, getrusage and getrlimit), then registered collectors.
 *
 * metrics_init / metrics_free must not run concurrently with other calls;
 * every recording call before init or after free is a no-op. */
#include "metrics.h"

#include <dirent.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/util.h"

#define MAX_LABELS 3
#define MAX_BOUNDS 16
#define LABEL_MAX 256 /* bytes of a label value kept */
#define FAM_BUCKETS 1024
#define FAM_STRIPES 16
#define FAM_MAX_SERIES 10000
#define MAX_COLLECTORS 16

typedef enum { MT_COUNTER, MT_GAUGE, MT_HISTOGRAM } mtype;
static const char *const type_names[] = {"counter", "gauge", "histogram"};

/* Request latency: 5 ms for a cached answer up to 5 minutes for a long generation. */
static const double duration_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
static const double ttft_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60};
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64};
#define NB(a) ((int)(sizeof(a) / sizeof((a)[0])))

enum {
    F_REQUESTS,
    F_DURATION,
    F_IN_PROGRESS,
    F_ERRORS,
    F_CACHE_HITS,
    F_CACHE_MISSES,
    F_LLM_REQUESTS,
    F_LLM_TOKENS,
    F_TTFT,
    F_TPS,
    F_QUEUE,
    F_BATCH,
    F_RUNNING,
    F_QUEUE_WAIT,
    F_MODEL_LOAD,
    F__COUNT
};

typedef struct famdef {
    const char *name;
    mtype type;
    int nlabels;
    const char *keys[MAX_LABELS];
    const double *bounds; /* histograms: upper bounds, increasing; +Inf is implicit */
    int nbounds;
    const char *help;
} famdef;

/* clang-format off */
static const famdef defs[F__COUNT] = {
    [F_REQUESTS] = {"simpleton_requests_total", MT_COUNTER, 3, {"method", "endpoint", "status"}, NULL, 0,
        "HTTP requests served, by method, route template and status."},
    [F_DURATION] = {"simpleton_request_duration_seconds", MT_HISTOGRAM, 2, {"method", "endpoint"},
        duration_bounds, NB(duration_bounds), "HTTP request duration in seconds, by method and route template."},
    [F_IN_PROGRESS] = {"simpleton_requests_in_progress", MT_GAUGE, 0, {0}, NULL, 0,
        "HTTP requests being served right now."},
    [F_ERRORS] = {"simpleton_errors_total", MT_COUNTER, 2, {"endpoint", "error_type"}, NULL, 0,
        "Requests answered with an error, by route template and error type."},
    [F_CACHE_HITS] = {"simpleton_cache_hits_total", MT_COUNTER, 1, {"cache_type"}, NULL, 0,
        "Response cache hits, by cache type."},
    [F_CACHE_MISSES] = {"simpleton_cache_misses_total", MT_COUNTER, 1, {"cache_type"}, NULL, 0,
        "Response cache misses, by cache type."},
    [F_LLM_REQUESTS] = {"simpleton_llm_requests_total", MT_COUNTER, 2, {"model", "endpoint"}, NULL, 0,
        "Requests that reached a model, by model and route template."},
    [F_LLM_TOKENS] = {"simpleton_llm_tokens_total", MT_COUNTER, 2, {"model", "token_type"}, NULL, 0,
        "Tokens processed, by model and token type (prompt or completion)."},
    [F_TTFT] = {"simpleton_llm_time_to_first_token_seconds", MT_HISTOGRAM, 1, {"model"},
        ttft_bounds, NB(ttft_bounds), "Seconds from request start to the first generated token."},
    [F_TPS] = {"simpleton_llm_tokens_per_second", MT_GAUGE, 1, {"model"}, NULL, 0,
        "Generation speed of the last completed generation, tokens per second."},
    [F_QUEUE] = {"simpleton_llm_queue_depth", MT_GAUGE, 1, {"model"}, NULL, 0,
        "Requests waiting for a model."},
    [F_MODEL_LOAD] = {"simpleton_model_load_seconds", MT_GAUGE, 1, {"model"}, NULL, 0,
        "Seconds the last load of a model took."},
    [F_BATCH] = {"simpleton_llm_batch_sequences", MT_HISTOGRAM, 1, {"model"}, batch_bounds, NB(batch_bounds),
        "Sequences advanced together by one forward pass of a local model (continuous batching)."},
    [F_RUNNING] = {"simpleton_llm_sequences_running", MT_GAUGE, 1, {"model"}, NULL, 0,
        "Sequences a local model's last forward pass advanced."},
    [F_QUEUE_WAIT] = {"simpleton_llm_queue_wait_seconds", MT_HISTOGRAM, 1, {"model"}, ttft_bounds, NB(ttft_bounds),
        "Seconds a request waited for a slot of a local model."},
};
/* clang-format on */

typedef struct series {
    struct series *next;
    uint64_t hash;
    double value;   /* counter/gauge value; histogram: sum of observations */
    uint64_t count; /* histogram: number of observations */
    const char *labels[MAX_LABELS];
    uint16_t lens[MAX_LABELS];
    uint64_t buckets[]; /* histogram: nbounds + 1 counts, the last one for +Inf */
} series;

typedef struct family {
    series *heads[FAM_BUCKETS];
    pthread_mutex_t locks[FAM_STRIPES];
    atomic_int nseries;
} family;

static family fams[F__COUNT];
static atomic_bool ready;
static atomic_uint_fast64_t dropped;
static char *build_version;
static double start_time;

static pthread_mutex_t collectors_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    metrics_collector fn;
    void *ud;
} collectors[MAX_COLLECTORS];
static int ncollectors;

/* Set when an append to the render buffer fails (it hit its cap). */
static __thread bool write_failed;

/* ---- recording ---------------------------------------------------------- */

typedef enum { OP_ADD, OP_SET, OP_OBSERVE } op;

static uint64_t hash_labels(const char *const *vals, const size_t *lens, int n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < n; i++) {
        for (size_t j = 0; j < lens[i]; j++) h = (h ^ (unsigned char)vals[i][j]) * 1099511628211ull;
        h = (h ^ 0xff) * 1099511628211ull; /* separator: ("ab","") != ("a","b") */
    }
    return h;
}

static bool series_matches(const series *s, uint64_t h, const char *const *vals, const size_t *lens, int n) {
    if (s->hash != h) return false;
    for (int i = 0; i < n; i++)
        if (s->lens[i] != lens[i] || memcmp(s->labels[i], vals[i], lens[i]) != 0) return false;
    return true;
}

/* Allocate a series with copies of its label values. Caller holds the stripe lock. */
static series *series_new(const famdef *d, uint64_t h, const char *const *vals, const size_t *lens) {
    size_t nb = d->type == MT_HISTOGRAM ? (size_t)d->nbounds + 1 : 0;
    size_t size = sizeof(series) + nb * sizeof(uint64_t);
    for (int i = 0; i < d->nlabels; i++) size += lens[i] + 1;
    series *s = smp_calloc(1, size);
    if (!s) return NULL;
    s->hash = h;
    char *p = (char *)(s->buckets + nb);
    for (int i = 0; i < d->nlabels; i++) {
        memcpy(p, vals[i], lens[i]);
        p[lens[i]] = '\0';
        s->labels[i] = p;
        s->lens[i] = (uint16_t)lens[i];
        p += lens[i] + 1;
    }
    return s;
}

static void apply(const famdef *d, series *s, op o, double x) {
    switch (o) {
    case OP_ADD: s->value += x; break;
    case OP_SET: s->value = x; break;
    case OP_OBSERVE: {
        int i = 0;
        while (i < d->nbounds && x > d->bounds[i]) i++; /* le: x <= bound */
        s->buckets[i]++;
        s->count++;
        s->value += x;
        break;
    }
    }
}

/* The one hot path: find (or create) the series for vals and update it. */
static void record(int f, const char *const *vals, op o, double x) {
    if (!atomic_load_explicit(&ready, memory_order_acquire)) return;
    const famdef *d = &defs[f];
    family *fam = &fams[f];
    size_t lens[MAX_LABELS];
    const char *v[MAX_LABELS];
    for (int i = 0; i < d->nlabels; i++) {
        v[i] = vals[i] ? vals[i] : "";
        lens[i] = strnlen(v[i], LABEL_MAX);
    }
    uint64_t h = hash_labels(v, lens, d->nlabels);
    size_t b = (size_t)(h % FAM_BUCKETS);
    pthread_mutex_t *lock = &fam->locks[b % FAM_STRIPES];
    pthread_mutex_lock(lock);
    series *s = fam->heads[b];
    while (s && !series_matches(s, h, v, lens, d->nlabels)) s = s->next;
    if (!s) {
        if (atomic_fetch_add(&fam->nseries, 1) >= FAM_MAX_SERIES || !(s = series_new(d, h, v, lens))) {
            atomic_fetch_sub(&fam->nseries, 1);
            pthread_mutex_unlock(lock);
            atomic_fetch_add_explicit(&dropped, 1, memory_order_relaxed);
            return;
        }
        s->next = fam->heads[b];
        fam->heads[b] = s;
    }
    apply(d, s, o, x);
    pthread_mutex_unlock(lock);
}

/* Counters only go up: negative and NaN increments are ignored. */
static void counter_add(int f, const char *const *vals, double n) {
    if (n >= 0) record(f, vals, OP_ADD, n);
}

static void status_str(int status, char out[12]) {
    if (status >= 100 && status <= 999) {
        out[0] = (char)('0' + status / 100);
        out[1] = (char)('0' + status / 10 % 10);
        out[2] = (char)('0' + status % 10);
        out[3] = '\0';
    } else {
        snprintf(out, 12, "%d", status);
    }
}

void metrics_request_done(const char *method, const char *endpoint, int status, double seconds) {
    char st[12];
    status_str(status, st);
    const char *v[3] = {method, endpoint, st};
    counter_add(F_REQUESTS, v, 1);
    if (seconds >= 0) record(F_DURATION, v, OP_OBSERVE, seconds);
}

void metrics_in_progress_add(int delta) { record(F_IN_PROGRESS, NULL, OP_ADD, delta); }

void metrics_error(const char *endpoint, const char *error_type) {
    const char *v[2] = {endpoint, error_type};
    counter_add(F_ERRORS, v, 1);
}

void metrics_cache_event(const char *cache_type, bool hit) {
    counter_add(hit ? F_CACHE_HITS : F_CACHE_MISSES, &cache_type, 1);
}

static bool (*model_known)(const char *model);

void metrics_set_model_filter(bool (*known)(const char *model)) { model_known = known; }

static bool model_ok(const char *model) { return model && (!model_known || model_known(model)); }

void metrics_llm_request(const char *model, const char *endpoint) {
    const char *v[2] = {model, endpoint};
    if (model_ok(model)) counter_add(F_LLM_REQUESTS, v, 1);
}

void metrics_llm_tokens(const char *model, const char *token_type, long n) {
    const char *v[2] = {model, token_type};
    if (model_ok(model)) counter_add(F_LLM_TOKENS, v, (double)n);
}

/* These four are recorded by what serves a model it has found (loaded), often
 * under its own lock, so they are not filtered (the filter may take that lock). */
void metrics_llm_ttft(const char *model, double seconds) {
    if (seconds >= 0) record(F_TTFT, &model, OP_OBSERVE, seconds);
}

void metrics_llm_tokens_per_second(const char *model, double tps) { record(F_TPS, &model, OP_SET, tps); }

void metrics_llm_queue_depth(const char *model, long depth) { record(F_QUEUE, &model, OP_SET, (double)depth); }

void metrics_llm_batch(const char *model, int sequences, int rows, double seconds) {
    (void)rows;
    (void)seconds;
    record(F_BATCH, &model, OP_OBSERVE, (double)sequences);
    record(F_RUNNING, &model, OP_SET, (double)sequences);
}

void metrics_llm_queue_wait(const char *model, double seconds) {
    if (seconds >= 0) record(F_QUEUE_WAIT, &model, OP_OBSERVE, seconds);
}

void metrics_model_load_seconds(const char *model, double seconds) { record(F_MODEL_LOAD, &model, OP_SET, seconds); }

/* ---- text output -------------------------------------------------------- */

static void put(buf *out, const void *p, size_t n) {
    if (buf_append(out, p, n) != 0) write_failed = true;
}

static void puts_(buf *out, const char *s) { put(out, s, strlen(s)); }

/* Shortest of %.15g / %.17g that reads back as the same double; Inf/NaN as Prometheus spells them. */
static void fmt_value(double v, char *out, size_t n) {
    if (isnan(v))
        snprintf(out, n, "NaN");
    else if (isinf(v))
        snprintf(out, n, v > 0 ? "+Inf" : "-Inf");
    else {
        snprintf(out, n, "%.15g", v);
        if (strtod(out, NULL) != v) snprintf(out, n, "%.17g", v);
    }
}

/* Length of the well-formed UTF-8 sequence at p (avail bytes), 0 if malformed. */
static size_t utf8_seq(const unsigned char *p, size_t avail) {
    unsigned char c = p[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0) lo = 0xa0;
        if (c == 0xed) hi = 0x9f; /* no surrogates */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0) lo = 0x90;
        if (c == 0xf4) hi = 0x8f;
    } else
        return 0;
    if (avail < n || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if ((p[i] & 0xc0) != 0x80) return 0;
    return n;
}

/* A label value: escape \ " and newline; malformed UTF-8 becomes U+FFFD. */
static void put_label_value(buf *out, const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t len = strlen(s);
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        if (c == '\\')
            puts_(out, "\\\\");
        else if (c == '"')
            puts_(out, "\\\"");
        else if (c == '\n')
            puts_(out, "\\n");
        else if (c < 0x80)
            put(out, &p[i], 1);
        else {
            size_t n = utf8_seq(p + i, len - i);
            if (n) {
                put(out, p + i, n);
                i += n;
                continue;
            }
            puts_(out, "\xef\xbf\xbd");
        }
        i++;
    }
}

void metrics_write_sample(buf *out, const char *name, const char *const *keys, const char *const *vals, int nlabels,
                          double value) {
    puts_(out, name);
    if (nlabels > 0) {
        put(out, "{", 1);
        for (int i = 0; i < nlabels; i++) {
            if (i) put(out, ",", 1);
            puts_(out, keys[i]);
            put(out, "=\"", 2);
            put_label_value(out, vals[i] ? vals[i] : "");
            put(out, "\"", 1);
        }
        put(out, "}", 1);
    }
    char num[40];
    fmt_value(value, num, sizeof num);
    put(out, " ", 1);
    puts_(out, num);
    put(out, "\n", 1);
}

void metrics_write_header(buf *out, const char *name, const char *type, const char *help) {
    puts_(out, "# HELP ");
    puts_(out, name);
    put(out, " ", 1);
    for (const char *p = help ? help : ""; *p; p++) {
        if (*p == '\\')
            puts_(out, "\\\\");
        else if (*p == '\n')
            puts_(out, "\\n");
        else
            put(out, p, 1);
    }
    puts_(out, "\n# TYPE ");
    puts_(out, name);
    put(out, " ", 1);
    puts_(out, type);
    put(out, "\n", 1);
}

/* ---- render ------------------------------------------------------------- */

typedef struct snap {
    const series *s;
    double value;
    uint64_t count;
    uint64_t buckets[MAX_BOUNDS + 1];
} snap;

static int g_sort_nlabels; /* qsort has no context argument; render holds render_lock */
static pthread_mutex_t render_lock = PTHREAD_MUTEX_INITIALIZER;

static int snap_cmp(const void *a, const void *b) {
    const series *x = ((const snap *)a)->s, *y = ((const snap *)b)->s;
    for (int i = 0; i < g_sort_nlabels; i++) {
        int c = strcmp(x->labels[i], y->labels[i]);
        if (c) return c;
    }
    return 0;
}

static void render_family(buf *out, int f) {
    const famdef *d = &defs[f];
    family *fam = &fams[f];
    metrics_write_header(out, d->name, type_names[d->type], d->help);

    /* Series created after this count is read are left for the next scrape. */
    int cap = atomic_load(&fam->nseries), n = 0;
    if (cap == 0) return;
    snap *sn = smp_malloc((size_t)cap * sizeof *sn);
    if (!sn) {
        write_failed = true;
        return;
    }
    for (int st = 0; st < FAM_STRIPES; st++) {
        pthread_mutex_lock(&fam->locks[st]);
        for (int b = st; b < FAM_BUCKETS; b += FAM_STRIPES)
            for (const series *s = fam->heads[b]; s && n < cap; s = s->next) {
                snap *p = &sn[n++];
                p->s = s;
                p->value = s->value;
                p->count = s->count;
                if (d->type == MT_HISTOGRAM)
                    memcpy(p->buckets, s->buckets, ((size_t)d->nbounds + 1) * sizeof(uint64_t));
            }
        pthread_mutex_unlock(&fam->locks[st]);
    }
    g_sort_nlabels = d->nlabels;
    qsort(sn, (size_t)n, sizeof *sn, snap_cmp);

    char bname[128], sname[128], cname[128];
    snprintf(bname, sizeof bname, "%s_bucket", d->name);
    snprintf(sname, sizeof sname, "%s_sum", d->name);
    snprintf(cname, sizeof cname, "%s_count", d->name);
    for (int i = 0; i < n; i++) {
        const snap *p = &sn[i];
        if (d->type != MT_HISTOGRAM) {
            metrics_write_sample(out, d->name, d->keys, p->s->labels, d->nlabels, p->value);
            continue;
        }
        const char *keys[MAX_LABELS + 1], *vals[MAX_LABELS + 1];
        for (int k = 0; k < d->nlabels; k++) {
            keys[k] = d->keys[k];
            vals[k] = p->s->labels[k];
        }
        keys[d->nlabels] = "le";
        uint64_t cum = 0;
        char le[40];
        for (int k = 0; k <= d->nbounds; k++) {
            cum += p->buckets[k];
            if (k < d->nbounds)
                fmt_value(d->bounds[k], le, sizeof le);
            else
                snprintf(le, sizeof le, "+Inf");
            vals[d->nlabels] = le;
            metrics_write_sample(out, bname, keys, vals, d->nlabels + 1, (double)cum);
        }
        metrics_write_sample(out, sname, d->keys, p->s->labels, d->nlabels, p->value);
        metrics_write_sample(out, cname, d->keys, p->s->labels, d->nlabels, (double)p->count);
    }
    smp_free(sn);
}

/* Read a small /proc file into out (NUL-terminated). Returns bytes read or -1. */
static long read_small(const char *path, char *out, size_t n) {
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    size_t got = fread(out, 1, n - 1, f);
    fclose(f);
    out[got] = '\0';
    return (long)got;
}

/* Process start as epoch seconds: /proc/self/stat field 22 (clock ticks after
 * boot) + btime from /proc/stat. Falls back to now (called once at init). */
static double process_start_seconds(void) {
    char st[1024], ps[8192];
    long tck = sysconf(_SC_CLK_TCK);
    if (tck <= 0 || read_small("/proc/self/stat", st, sizeof st) <= 0 || read_small("/proc/stat", ps, sizeof ps) <= 0)
        return util_wall_seconds();
    /* comm (field 2) may hold spaces and ')'; fields after the last ')' start at 3. */
    char *p = strrchr(st, ')');
    const char *bt = strstr(ps, "\nbtime ");
    if (!p || !bt) return util_wall_seconds();
    p++;
    unsigned long long ticks = 0;
    for (int field = 3; field <= 22; field++) {
        while (*p == ' ') p++;
        if (!*p) return util_wall_seconds();
        if (field == 22) ticks = strtoull(p, NULL, 10);
        while (*p && *p != ' ') p++;
    }
    double btime = strtod(bt + 7, NULL);
    return btime + (double)ticks / (double)tck;
}

static void gauge_line(buf *out, const char *name, const char *type, const char *help, double v, bool have) {
    metrics_write_header(out, name, type, help);
    if (have) metrics_write_sample(out, name, NULL, NULL, 0, v);
}

static void render_process(buf *out) {
    char statm[256];
    unsigned long long vsz = 0, rss = 0;
    bool have_mem =
        read_small("/proc/self/statm", statm, sizeof statm) > 0 && sscanf(statm, "%llu %llu", &vsz, &rss) == 2;
    double page = (double)sysconf(_SC_PAGESIZE);
    gauge_line(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", (double)rss * page,
               have_mem);
    gauge_line(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", (double)vsz * page,
               have_mem);

    struct rusage ru;
    bool have_ru = getrusage(RUSAGE_SELF, &ru) == 0;
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 (double)ru.ru_stime.tv_usec / 1e6;
    gauge_line(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
               have_ru ? cpu : 0, have_ru);

    long nfd = 0;
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        int self = dirfd(dir);
        struct dirent *e;
        while ((e = readdir(dir)))
            if (e->d_name[0] != '.' && atoi(e->d_name) != self) nfd++;
        closedir(dir);
    }
    gauge_line(out, "process_open_fds", "gauge", "Number of open file descriptors.", (double)nfd, dir != NULL);

    struct rlimit rl;
    bool have_rl = getrlimit(RLIMIT_NOFILE, &rl) == 0;
    double maxfd = !have_rl ? 0 : rl.rlim_cur == RLIM_INFINITY ? INFINITY : (double)rl.rlim_cur;
    gauge_line(out, "process_max_fds", "gauge", "Maximum number of open file descriptors.", maxfd, have_rl);

    gauge_line(out, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
               start_time, true);
}

static const char *compiler_name(void) {
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

int metrics_render(buf *out) {
    if (!atomic_load_explicit(&ready, memory_order_acquire)) return -1;
    pthread_mutex_lock(&render_lock);
    write_failed = false;
    for (int f = 0; f < F__COUNT; f++) render_family(out, f);

    metrics_write_header(out, "simpleton_build_info", "gauge", "Build information; the value is always 1.");
    const char *bk[2] = {"version", "compiler"}, *bv[2] = {build_version, compiler_name()};
    metrics_write_sample(out, "simpleton_build_info", bk, bv, 2, 1);
    gauge_line(out, "simpleton_heap_bytes", "gauge", "Bytes allocated on the heap through Simpleton's allocator.",
               (double)smp_alloc_live_bytes(), true);
    gauge_line(out, "simpleton_metrics_dropped_total", "counter",
               "Samples dropped because a metric family reached its limit of label sets.",
               (double)atomic_load(&dropped), true);
    render_process(out);

    /* Collectors write into a scratch buffer, so a cap hit anywhere in their
     * output is seen when it is appended to out. */
    int nc;
    typeof(collectors[0]) cs[MAX_COLLECTORS];
    pthread_mutex_lock(&collectors_lock);
    nc = ncollectors;
    memcpy(cs, collectors, sizeof cs);
    pthread_mutex_unlock(&collectors_lock);
    buf tmp;
    buf_init(&tmp, 0);
    for (int i = 0; i < nc; i++) {
        buf_reset(&tmp);
        cs[i].fn(&tmp, cs[i].ud);
        put(out, tmp.data ? tmp.data : "", tmp.len);
    }
    buf_free(&tmp);
    int rc = write_failed ? -1 : 0;
    pthread_mutex_unlock(&render_lock);
    return rc;
}

void metrics_add_collector(metrics_collector fn, void *ud) {
    pthread_mutex_lock(&collectors_lock);
    if (ncollectors < MAX_COLLECTORS) {
        collectors[ncollectors].fn = fn;
        collectors[ncollectors].ud = ud;
        ncollectors++;
    } else {
        log_warn("metrics: more than %d collectors; one was ignored", MAX_COLLECTORS);
    }
    pthread_mutex_unlock(&collectors_lock);
}

/* ---- lifetime ----------------------------------------------------------- */

int metrics_init(const char *version) {
    metrics_free();
    build_version = smp_strdup(version ? version : "unknown");
    if (!build_version) return -1;
    for (int f = 0; f < F__COUNT; f++) {
        memset(fams[f].heads, 0, sizeof fams[f].heads);
        atomic_store(&fams[f].nseries, 0);
        for (int s = 0; s < FAM_STRIPES; s++) pthread_mutex_init(&fams[f].locks[s], NULL);
    }
    atomic_store(&dropped, 0);
    start_time = process_start_seconds();
    atomic_store_explicit(&ready, true, memory_order_release);
    metrics_in_progress_add(0); /* the unlabelled gauge shows 0 from the start */
    return 0;
}

void metrics_free(void) {
    if (!atomic_exchange(&ready, false)) return;
    for (int f = 0; f < F__COUNT; f++) {
        for (int b = 0; b < FAM_BUCKETS; b++) {
            series *s = fams[f].heads[b];
            while (s) {
                series *next = s->next;
                smp_free(s);
                s = next;
            }
            fams[f].heads[b] = NULL;
        }
        for (int s = 0; s < FAM_STRIPES; s++) pthread_mutex_destroy(&fams[f].locks[s]);
    }
    pthread_mutex_lock(&collectors_lock);
    ncollectors = 0;
    pthread_mutex_unlock(&collectors_lock);
    smp_free(build_version);
    build_version = NULL;
}
