/* test_metrics.c - the Prometheus registry: exact values, histogram buckets,
 * label escaping, family declarations, caps, collectors, threads, and the
 * rendered exposition checked by promtool. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/util.h"
#include "obs/metrics.h"
#include "test.h"

/* Render into a fresh uncapped buffer; the caller frees with buf_free. */
static buf render(void) {
    buf b;
    buf_init(&b, 0);
    CHECK_INT(metrics_render(&b), 0);
    return b;
}

/* Value of the sample whose line starts with exactly `series` (name and
 * labels as rendered) followed by a space; NAN if there is none. */
static double sample(const char *text, const char *series) {
    size_t n = strlen(series);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, series, n) && p[n] == ' ') return strtod(p + n + 1, NULL);
    return NAN;
}

static int count_lines_starting(const char *text, const char *prefix) {
    int n = 0;
    size_t len = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, prefix, len)) n++;
    return n;
}

TEST(metrics_every_family_declared) {
    static const char *const fams[][2] = {
        {"simpleton_requests_total", "counter"},
        {"simpleton_request_duration_seconds", "histogram"},
        {"simpleton_requests_in_progress", "gauge"},
        {"simpleton_errors_total", "counter"},
        {"simpleton_cache_hits_total", "counter"},
        {"simpleton_cache_misses_total", "counter"},
        {"simpleton_llm_requests_total", "counter"},
        {"simpleton_llm_tokens_total", "counter"},
        {"simpleton_llm_time_to_first_token_seconds", "histogram"},
        {"simpleton_llm_tokens_per_second", "gauge"},
        {"simpleton_llm_queue_depth", "gauge"},
        {"simpleton_model_load_seconds", "gauge"},
        {"simpleton_build_info", "gauge"},
        {"simpleton_heap_bytes", "gauge"},
        {"simpleton_metrics_dropped_total", "counter"},
        {"process_resident_memory_bytes", "gauge"},
        {"process_virtual_memory_bytes", "gauge"},
        {"process_cpu_seconds_total", "counter"},
        {"process_open_fds", "gauge"},
        {"process_max_fds", "gauge"},
        {"process_start_time_seconds", "gauge"},
    };
    REQUIRE(metrics_init("1.2.3") == 0);
    buf b = render();
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++) {
        char help[128], type[128];
        snprintf(help, sizeof help, "# HELP %s ", fams[i][0]);
        snprintf(type, sizeof type, "# TYPE %s %s\n", fams[i][0], fams[i][1]);
        if (count_lines_starting(b.data, help) != 1 || !strstr(b.data, type)) {
            fprintf(stderr, "  family %s not declared once as %s\n", fams[i][0], fams[i][1]);
            test_failures++;
        }
    }
    /* Before any request: the unlabelled gauge reads 0, labelled families have no samples. */
    CHECK_INT(sample(b.data, "simpleton_requests_in_progress"), 0);
    CHECK_INT(count_lines_starting(b.data, "simpleton_requests_total{"), 0);
    CHECK(strstr(b.data, "simpleton_build_info{version=\"1.2.3\",compiler=\"") != NULL);
    CHECK(sample(b.data, "simpleton_heap_bytes") > 0);
    CHECK(sample(b.data, "process_resident_memory_bytes") > 0);
    CHECK(sample(b.data, "process_open_fds") >= 3);
    CHECK(sample(b.data, "process_max_fds") >= sample(b.data, "process_open_fds"));
    CHECK(fabs(sample(b.data, "process_start_time_seconds") - util_wall_seconds()) < 120);
    buf_free(&b);
    metrics_free();
}

TEST(metrics_exact_counts_and_gauges) {
    REQUIRE(metrics_init("t") == 0);
    for (int i = 0; i < 3; i++) metrics_request_done("GET", "/health", 200, 0.001);
    metrics_request_done("POST", "/inference/generate", 422, 0.02);
    metrics_request_done("POST", "/inference/generate", 200, 1.5);
    metrics_in_progress_add(2);
    metrics_in_progress_add(-1);
    metrics_error("/inference/generate", "validation");
    metrics_cache_event("embedding", true);
    metrics_cache_event("embedding", true);
    metrics_cache_event("embedding", false);
    metrics_llm_request("stories260K", "/inference/generate");
    metrics_llm_tokens("stories260K", "prompt", 12);
    metrics_llm_tokens("stories260K", "completion", 30);
    metrics_llm_tokens("stories260K", "completion", 5);
    metrics_llm_tokens("stories260K", "completion", -7); /* counters never go down */
    metrics_llm_tokens_per_second("stories260K", 99.5);
    metrics_llm_tokens_per_second("stories260K", 120.25);
    metrics_llm_queue_depth("stories260K", 4);
    metrics_model_load_seconds("stories260K", 0.125);
    buf b = render();
    const char *t = b.data;
    CHECK_INT(sample(t, "simpleton_requests_total{method=\"GET\",endpoint=\"/health\",status=\"200\"}"), 3);
    CHECK_INT(sample(t, "simpleton_requests_total{method=\"POST\",endpoint=\"/inference/generate\",status=\"422\"}"),
              1);
    CHECK_INT(sample(t, "simpleton_requests_total{method=\"POST\",endpoint=\"/inference/generate\",status=\"200\"}"),
              1);
    CHECK_INT(sample(t, "simpleton_request_duration_seconds_count{method=\"POST\",endpoint=\"/inference/generate\"}"),
              2);
    CHECK_NEAR(sample(t, "simpleton_request_duration_seconds_sum{method=\"POST\",endpoint=\"/inference/generate\"}"),
               1.52, 1e-12);
    CHECK_INT(sample(t, "simpleton_requests_in_progress"), 1);
    CHECK_INT(sample(t, "simpleton_errors_total{endpoint=\"/inference/generate\",error_type=\"validation\"}"), 1);
    CHECK_INT(sample(t, "simpleton_cache_hits_total{cache_type=\"embedding\"}"), 2);
    CHECK_INT(sample(t, "simpleton_cache_misses_total{cache_type=\"embedding\"}"), 1);
    CHECK_INT(sample(t, "simpleton_llm_requests_total{model=\"stories260K\",endpoint=\"/inference/generate\"}"), 1);
    CHECK_INT(sample(t, "simpleton_llm_tokens_total{model=\"stories260K\",token_type=\"prompt\"}"), 12);
    CHECK_INT(sample(t, "simpleton_llm_tokens_total{model=\"stories260K\",token_type=\"completion\"}"), 35);
    CHECK(strstr(t, "simpleton_llm_tokens_per_second{model=\"stories260K\"} 120.25\n") != NULL);
    CHECK_INT(sample(t, "simpleton_llm_queue_depth{model=\"stories260K\"}"), 4);
    CHECK(strstr(t, "simpleton_model_load_seconds{model=\"stories260K\"} 0.125\n") != NULL);
    /* Integers render as integers. */
    CHECK(strstr(t, "simpleton_llm_tokens_total{model=\"stories260K\",token_type=\"completion\"} 35\n") != NULL);
    CHECK_INT(sample(t, "simpleton_metrics_dropped_total"), 0);
    buf_free(&b);
    metrics_free();
}

TEST(metrics_histogram_buckets_cumulative) {
    REQUIRE(metrics_init("t") == 0);
    const double obs[] = {0.003, 0.005 /* on a bound: le is inclusive */, 0.007, 0.2, 299.0, 1000.0};
    for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) metrics_request_done("GET", "/x", 200, obs[i]);
    metrics_llm_ttft("m", 0.3);
    metrics_llm_ttft("m", 100);
    buf b = render();
    const char *t = b.data;
    static const struct {
        const char *le;
        int n;
    } want[] = {{"0.005", 2}, {"0.01", 3}, {"0.025", 3}, {"0.05", 3}, {"0.1", 3}, {"0.25", 4}, {"0.5", 4}, {"1", 4},
                {"2.5", 4},   {"5", 4},    {"10", 4},    {"30", 4},   {"60", 4},  {"120", 4},  {"300", 5}, {"+Inf", 6}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        char s[160];
        snprintf(s, sizeof s, "simpleton_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/x\",le=\"%s\"}",
                 want[i].le);
        CHECK_INT(sample(t, s), want[i].n);
    }
    CHECK_INT(count_lines_starting(t, "simpleton_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/x\","), 16);
    CHECK_INT(sample(t, "simpleton_request_duration_seconds_count{method=\"GET\",endpoint=\"/x\"}"), 6);
    CHECK_NEAR(sample(t, "simpleton_request_duration_seconds_sum{method=\"GET\",endpoint=\"/x\"}"), 1299.215, 1e-9);
    /* Buckets appear in increasing le order and never decrease. */
    double prev = -1;
    int seen = 0;
    for (const char *p = strstr(t, "simpleton_llm_time_to_first_token_seconds_bucket{"); p;
         p = strstr(p + 1, "simpleton_llm_time_to_first_token_seconds_bucket{")) {
        double v = strtod(strchr(p, '}') + 2, NULL);
        CHECK(v >= prev);
        prev = v;
        seen++;
    }
    CHECK(seen >= 10);
    CHECK_INT(sample(t, "simpleton_llm_time_to_first_token_seconds_bucket{model=\"m\",le=\"0.25\"}"), 0);
    CHECK_INT(sample(t, "simpleton_llm_time_to_first_token_seconds_bucket{model=\"m\",le=\"0.5\"}"), 1);
    CHECK_INT(sample(t, "simpleton_llm_time_to_first_token_seconds_bucket{model=\"m\",le=\"60\"}"), 1);
    CHECK_INT(sample(t, "simpleton_llm_time_to_first_token_seconds_bucket{model=\"m\",le=\"+Inf\"}"), 2);
    buf_free(&b);
    metrics_free();
}

TEST(metrics_label_escaping) {
    REQUIRE(metrics_init("v\"1\\\n") == 0);
    metrics_error("/a\"b\\c\nd", "x");
    metrics_cache_event("bad\xff\xc3", true); /* malformed UTF-8 -> U+FFFD each */
    metrics_cache_event("caf\xc3\xa9 \xe2\x9c\x93", true); /* well-formed stays */
    buf b = render();
    CHECK(strstr(b.data, "simpleton_errors_total{endpoint=\"/a\\\"b\\\\c\\nd\",error_type=\"x\"} 1\n") != NULL);
    CHECK(strstr(b.data, "cache_type=\"bad\xef\xbf\xbd\xef\xbf\xbd\"} 1\n") != NULL);
    CHECK(strstr(b.data, "cache_type=\"caf\xc3\xa9 \xe2\x9c\x93\"} 1\n") != NULL);
    CHECK(strstr(b.data, "version=\"v\\\"1\\\\\\n\"") != NULL);
    buf_free(&b);
    metrics_free();
}

TEST(metrics_write_sample_numbers) {
    buf b;
    buf_init(&b, 0);
    const char *k[1] = {"a"}, *v[1] = {NULL};
    metrics_write_sample(&b, "m", NULL, NULL, 0, 3);
    metrics_write_sample(&b, "m", NULL, NULL, 0, 0.1);
    metrics_write_sample(&b, "m", NULL, NULL, 0, 1.0 / 3);
    metrics_write_sample(&b, "m", NULL, NULL, 0, 1e21);
    metrics_write_sample(&b, "m", NULL, NULL, 0, -2.5);
    metrics_write_sample(&b, "m", NULL, NULL, 0, INFINITY);
    metrics_write_sample(&b, "m", NULL, NULL, 0, -INFINITY);
    metrics_write_sample(&b, "m", NULL, NULL, 0, NAN);
    metrics_write_sample(&b, "m", k, v, 1, 9007199254740993.0);
    CHECK_STR(b.data, "m 3\nm 0.1\nm 0.33333333333333331\nm 1e+21\nm -2.5\nm +Inf\nm -Inf\nm NaN\n"
                      "m{a=\"\"} 9007199254740992\n");
    buf_reset(&b);
    metrics_write_header(&b, "c_total", "counter", "Line one\nback\\slash");
    CHECK_STR(b.data, "# HELP c_total Line one\\nback\\\\slash\n# TYPE c_total counter\n");
    buf_free(&b);
}

TEST(metrics_label_sets_are_capped) {
    REQUIRE(metrics_init("t") == 0);
    char name[32];
    for (int i = 0; i < 10005; i++) {
        snprintf(name, sizeof name, "c%d", i);
        metrics_cache_event(name, false);
    }
    metrics_cache_event("c42", false); /* an existing set still counts */
    size_t heap = smp_alloc_live_bytes();
    metrics_cache_event("one-more", false);
    CHECK_INT(smp_alloc_live_bytes(), heap); /* dropped without allocating */
    buf b = render();
    CHECK_INT(count_lines_starting(b.data, "simpleton_cache_misses_total{"), 10000);
    CHECK_INT(sample(b.data, "simpleton_cache_misses_total{cache_type=\"c42\"}"), 2);
    CHECK_INT(sample(b.data, "simpleton_metrics_dropped_total"), 6);
    /* Other families are unaffected. */
    metrics_cache_event("fine", true);
    buf_free(&b);
    b = render();
    CHECK_INT(sample(b.data, "simpleton_cache_hits_total{cache_type=\"fine\"}"), 1);
    buf_free(&b);
    metrics_free();
}

TEST(metrics_long_label_truncated) {
    REQUIRE(metrics_init("t") == 0);
    char a[1000], c[1000];
    memset(a, 'a', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(c, a, sizeof c);
    c[900] = 'z'; /* differs only past the kept prefix: same series */
    metrics_cache_event(a, true);
    metrics_cache_event(c, true);
    buf b = render();
    CHECK_INT(count_lines_starting(b.data, "simpleton_cache_hits_total{"), 1);
    char want[400] = "simpleton_cache_hits_total{cache_type=\"";
    memset(want + strlen(want), 'a', 256);
    strcat(want, "\"}");
    CHECK_INT(sample(b.data, want), 2);
    buf_free(&b);
    metrics_free();
}

TEST(metrics_render_reports_cap) {
    REQUIRE(metrics_init("t") == 0);
    metrics_request_done("GET", "/", 200, 0.01);
    buf b;
    buf_init(&b, 1000);
    CHECK_INT(metrics_render(&b), -1);
    buf_free(&b);
    buf_init(&b, 1 << 20);
    CHECK_INT(metrics_render(&b), 0);
    buf_free(&b);
    metrics_free();
}

static void coll_a(buf *out, void *ud) {
    metrics_write_header(out, "simpleton_cache_entries", "gauge", "Entries in the response cache.");
    const char *k[1] = {"backend"}, *v[1] = {"memory"};
    metrics_write_sample(out, "simpleton_cache_entries", k, v, 1, (double)*(int *)ud);
}

static void coll_big(buf *out, void *ud) {
    for (int i = 0; i < 1000; i++) buf_puts(out, "# a comment line that makes the output long enough\n");
}

TEST(metrics_collectors_appended) {
    REQUIRE(metrics_init("t") == 0);
    int entries = 17;
    metrics_add_collector(coll_a, &entries);
    buf b = render();
    const char *c = strstr(b.data, "# HELP simpleton_cache_entries ");
    REQUIRE(c != NULL);
    CHECK(c > strstr(b.data, "process_start_time_seconds")); /* after the built-in families */
    CHECK_INT(sample(b.data, "simpleton_cache_entries{backend=\"memory\"}"), 17);
    buf_free(&b);
    /* A collector that overflows the cap makes the render fail even though it
     * writes with plain buf calls. */
    metrics_add_collector(coll_big, NULL);
    buf_init(&b, 0);
    CHECK_INT(metrics_render(&b), 0);
    size_t full = b.len;
    buf_free(&b);
    /* Half of it: well short of what the collector alone writes (52 KB),
     * whatever the process figures (CPU seconds, memory) print as this time;
     * a cap just 10 bytes short could fit a second render that came out
     * shorter. */
    buf_init(&b, full / 2);
    CHECK_INT(metrics_render(&b), -1);
    buf_free(&b);
    metrics_free();
}

TEST(metrics_noop_before_init_and_free_releases) {
    size_t base = smp_alloc_live_bytes();
    metrics_request_done("GET", "/", 200, 0.1); /* not initialised: ignored */
    buf b;
    buf_init(&b, 0);
    CHECK_INT(metrics_render(&b), -1);
    buf_free(&b);
    REQUIRE(metrics_init("t") == 0);
    for (int i = 0; i < 100; i++) {
        char ep[32];
        snprintf(ep, sizeof ep, "/r%d", i);
        metrics_request_done("GET", ep, 200, 0.1);
        metrics_llm_ttft(ep, 0.1);
    }
    REQUIRE(metrics_init("again") == 0); /* init again starts over */
    b = render();
    CHECK_INT(count_lines_starting(b.data, "simpleton_requests_total{"), 0);
    buf_free(&b);
    metrics_free();
    metrics_free();
    CHECK_INT(smp_alloc_live_bytes(), base);
}

#define NTHREADS 4
#define PER_THREAD 50000

static void *hammer(void *arg) {
    long id = (long)arg;
    char own[16];
    snprintf(own, sizeof own, "/t%ld", id);
    for (int i = 0; i < PER_THREAD; i++) {
        metrics_in_progress_add(1);
        metrics_request_done("GET", "/shared", 200, 0.001 * (i % 7));
        metrics_request_done("POST", own, i % 10 ? 200 : 500, 0.5);
        metrics_llm_tokens("m", "completion", 2);
        metrics_in_progress_add(-1);
    }
    return NULL;
}

TEST(metrics_threads_smoke) {
    REQUIRE(metrics_init("t") == 0);
    pthread_t th[NTHREADS];
    for (long i = 0; i < NTHREADS; i++) REQUIRE(pthread_create(&th[i], NULL, hammer, (void *)i) == 0);
    /* Render concurrently with the writers. */
    for (int i = 0; i < 5; i++) {
        buf b = render();
        buf_free(&b);
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    buf b = render();
    const char *t = b.data;
    CHECK_INT(sample(t, "simpleton_requests_total{method=\"GET\",endpoint=\"/shared\",status=\"200\"}"),
              NTHREADS * PER_THREAD);
    CHECK_INT(sample(t, "simpleton_request_duration_seconds_bucket{method=\"GET\",endpoint=\"/shared\",le=\"+Inf\"}"),
              NTHREADS * PER_THREAD);
    CHECK_INT(sample(t, "simpleton_requests_total{method=\"POST\",endpoint=\"/t2\",status=\"500\"}"), PER_THREAD / 10);
    CHECK_INT(sample(t, "simpleton_llm_tokens_total{model=\"m\",token_type=\"completion\"}"),
              2L * NTHREADS * PER_THREAD);
    CHECK_INT(sample(t, "simpleton_requests_in_progress"), 0);
    buf_free(&b);
    metrics_free();
}

TEST(metrics_hot_path_cost) {
    REQUIRE(metrics_init("t") == 0);
    metrics_request_done("GET", "/v1/chat/completions", 200, 0.01);
    int n = 200000;
    uint64_t t0 = util_now_ns();
    for (int i = 0; i < n; i++) metrics_request_done("GET", "/v1/chat/completions", 200, 0.01 * (i & 15));
    double ns = (double)(util_now_ns() - t0) / n;
    fprintf(stderr, "  metrics_request_done: %.0f ns per call\n", ns);
    CHECK(ns < 5000); /* budget ~25 us per request at 40k req/s; this is a gross-regression guard */
    metrics_free();
}

/* Exit status of `promtool check metrics` on text (lint included), -1 if it could not run. */
static int promtool_check(const char *text, size_t len, bool quiet) {
    char path[] = "/tmp/smp_metrics_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    ssize_t w = write(fd, text, len);
    close(fd);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "/usr/bin/promtool check metrics < %s %s", path, quiet ? ">/dev/null 2>&1" : "1>&2");
    int st = w == (ssize_t)len ? system(cmd) : -1;
    unlink(path);
    return st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Render some awkward samples and require `promtool check metrics` to accept them. */
TEST(metrics_promtool_accepts_exposition) {
    REQUIRE(access("/usr/bin/promtool", X_OK) == 0); /* Debian package prometheus; fail, not skip */
    const char *bad = "# TYPE x counter\nx{a=\"b} 1\n";
    CHECK(promtool_check(bad, strlen(bad), true) > 0); /* the harness does see a rejection */
    REQUIRE(metrics_init("0.1.0-dev \"q\"") == 0);
    metrics_request_done("GET", "/rag/collections/{name}", 200, 0.02);
    metrics_request_done("POST", "/a\"b\\c\nd", 500, 7);
    metrics_error("/x", "internal");
    metrics_cache_event("caf\xc3\xa9", true);
    metrics_cache_event("bad\xff", false);
    metrics_llm_request("qwen2.5:7b", "/v1/chat/completions");
    metrics_llm_tokens("qwen2.5:7b", "prompt", 10);
    metrics_llm_ttft("qwen2.5:7b", 0.4);
    metrics_llm_tokens_per_second("qwen2.5:7b", 31.7);
    metrics_llm_queue_depth("qwen2.5:7b", 0);
    metrics_model_load_seconds("qwen2.5:7b", 2.25);
    metrics_in_progress_add(1);
    int entries = 3;
    metrics_add_collector(coll_a, &entries);
    buf b = render();
    int rc = promtool_check(b.data, b.len, false);
    if (rc != 0) {
        fprintf(stderr, "  promtool exit %d on the exposition:\n%s\n", rc, b.data);
        test_failures++;
    }
    buf_free(&b);
    metrics_free();
}

static bool only_llama(const char *model) { return !strcmp(model, "llama"); }

/* Routes record the model a client named; only models that exist make series. */
TEST(metrics_model_filter) {
    REQUIRE(metrics_init("t") == 0);
    metrics_set_model_filter(only_llama);
    metrics_llm_request("llama", "/api/chat");
    metrics_llm_request("no-such\"model", "/api/chat");
    metrics_llm_tokens("llama", "prompt", 5);
    metrics_llm_tokens("ghost", "prompt", 5);
    buf b = render();
    CHECK(sample(b.data, "simpleton_llm_requests_total{model=\"llama\",endpoint=\"/api/chat\"}") == 1);
    CHECK(sample(b.data, "simpleton_llm_tokens_total{model=\"llama\",token_type=\"prompt\"}") == 5);
    CHECK(!strstr(b.data, "no-such"));
    CHECK(!strstr(b.data, "ghost"));
    buf_free(&b);
    metrics_set_model_filter(NULL);
    metrics_free();
}
