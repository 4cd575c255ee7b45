/* test_core.c - buf, valid, util, config, workq. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/util.h"
#include "core/valid.h"
#include "core/workq.h"
#include "test.h"

TEST(buf_cap_refuses_overflow) {
    buf b;
    buf_init(&b, 8);
    CHECK_INT(buf_puts(&b, "12345678"), 0);
    CHECK_INT(buf_putc(&b, '9'), -1);
    CHECK_STR(b.data, "12345678");
    buf_free(&b);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(buf_printf_long) {
    buf b;
    buf_init(&b, 0);
    for (int i = 0; i < 100; i++) buf_printf(&b, "%0300d", i);
    CHECK_INT(b.len, 30000);
    buf_free(&b);
}

TEST(alloc_fail_injection) {
    smp_alloc_fail_after(1);
    void *a = smp_malloc(10);
    void *b = smp_malloc(10);
    CHECK(a != NULL);
    CHECK(b == NULL);
    smp_alloc_fail_after(-1);
    smp_free(a);
}

TEST(b64_roundtrip_and_strictness) {
    unsigned char out[64];
    char err[128], enc[64];
    long n = util_b64_decode("aGVsbG8=", 8, out, err, sizeof err);
    CHECK_INT(n, 5);
    CHECK(!memcmp(out, "hello", 5));
    util_b64_encode((const unsigned char *)"hello", 5, enc);
    CHECK_STR(enc, "aGVsbG8=");
    CHECK_INT(util_b64_decode("aGVsbG8", 7, out, err, sizeof err), -1);
    CHECK(strstr(err, "padding") != NULL);
    CHECK_INT(util_b64_decode("aGV*bG8=", 8, out, err, sizeof err), -1);
    CHECK(strstr(err, "'*' at offset 3") != NULL);
    CHECK_INT(util_b64_decode("aGVsbG8=aa==", 12, out, err, sizeof err), -1);
    CHECK_INT(util_b64_decode("a===", 4, out, err, sizeof err), -1);
    CHECK_INT(util_b64_decode("aG=a", 4, out, err, sizeof err), -1); /* data inside the padding */
    CHECK(strstr(err, "after '=' padding at offset 3") != NULL);
    CHECK_INT(util_b64_decode("aGk=\r\n", 6, out, err, sizeof err), 2); /* line breaks may follow */
    CHECK_INT(util_b64_decode("", 0, out, err, sizeof err), 0);
}

TEST(sha256_known_vector) {
    char hex[65];
    util_sha256_hex("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ct_equal) {
    CHECK(util_ct_equal("abc", 3, "abc", 3));
    CHECK(!util_ct_equal("abc", 3, "abd", 3));
    CHECK(!util_ct_equal("abc", 3, "abcd", 4));
}

TEST(valid_reports_line_and_column) {
    valid v;
    valid_init(&v);
    const char *body = "{\n  \"a\": 1,\n  \"b\": }";
    json_t *j = valid_parse_object(&v, body, strlen(body));
    CHECK(j == NULL);
    json_t *e = json_array_get(v.errors, 0);
    const char *msg = json_string_value(json_object_get(e, "msg"));
    CHECK(msg && strstr(msg, "line 3") && strstr(msg, "column"));
    CHECK_STR(json_string_value(json_object_get(e, "type")), "json_invalid");
    valid_free(&v);
}

TEST(valid_names_the_field) {
    valid v;
    valid_init(&v);
    const char *body = "{\"prompt\": 5, \"temperature\": 3, \"max_tokens\": 0}";
    json_t *j = valid_parse_object(&v, body, strlen(body));
    REQUIRE(j != NULL);
    const char *p;
    double t;
    long long mt;
    CHECK_INT(valid_str(&v, j, "prompt", true, true, &p), -1);
    CHECK_INT(valid_num(&v, j, "temperature", false, 0, 2, &t), -1);
    CHECK_INT(valid_int(&v, j, "max_tokens", false, 1, 1 << 20, &mt), -1);
    CHECK_INT(valid_str(&v, j, "model", true, false, &p), 0);
    CHECK_INT(json_array_size(v.errors), 4);
    json_t *loc = json_object_get(json_array_get(v.errors, 0), "loc");
    CHECK_STR(json_string_value(json_array_get(loc, 1)), "prompt");
    CHECK_STR(json_string_value(json_object_get(json_array_get(v.errors, 3), "type")), "missing");
    json_decref(j);
    valid_free(&v);
}

TEST(valid_depth_cap) {
    valid v;
    valid_init(&v);
    char deep[400];
    for (int i = 0; i < 100; i++) deep[i] = '[';
    for (int i = 0; i < 100; i++) deep[100 + i] = ']';
    json_t *j = valid_parse(&v, deep, 200);
    CHECK(j == NULL);
    CHECK(!valid_ok(&v));
    valid_free(&v);
}

TEST(valid_utf8_cases) {
    CHECK(valid_utf8("h\xc3\xa9llo", 6));
    CHECK(!valid_utf8("\xc3", 1));
    CHECK(!valid_utf8("\xed\xa0\x80", 3)); /* surrogate */
    CHECK(!valid_utf8("\xc0\xaf", 2));      /* overlong */
    CHECK(valid_utf8("\xf0\x9f\x98\x80", 4));
    CHECK(valid_utf8("\xf4\x8f\xbf\xbf", 4));   /* U+10FFFF, the last code point */
    CHECK(!valid_utf8("\xf4\x90\x80\x80", 4));  /* U+110000 */
    CHECK(!valid_utf8("\xc3\xa9", 1));            /* cut short, a continuation byte after n */
    CHECK(!valid_utf8("\xe2\x82\xac", 2));
    CHECK(!valid_utf8("\x80", 1));                /* a lone continuation byte */
    CHECK(valid_utf8("\xed\x9f\xbf", 3));         /* U+D7FF, just below the surrogates */
}

/* The shape limits count before parsing: an array of VALID_MAX_VALUES numbers
 * is parsed, one more is refused; likewise VALID_MAX_OBJECTS objects. Commas
 * and brackets inside strings count for nothing. */
static json_t *parse_list(valid *v, int n, const char *item) {
    buf b;
    buf_init(&b, 0);
    buf_putc(&b, '[');
    for (int i = 0; i < n; i++) buf_printf(&b, "%s%s", i ? "," : "", item);
    buf_putc(&b, ']');
    json_t *j = valid_parse(v, b.data, b.len);
    buf_free(&b);
    return j;
}

TEST(valid_json_shape_limits) {
    valid v;
    valid_init(&v);
    json_t *j = parse_list(&v, VALID_MAX_VALUES, "1");
    CHECK(j != NULL);
    CHECK_INT(json_array_size(j), VALID_MAX_VALUES);
    json_decref(j);
    CHECK(parse_list(&v, VALID_MAX_VALUES + 1, "1") == NULL);
    CHECK_STR(json_string_value(json_object_get(json_array_get(v.errors, 0), "type")), "json_too_large");
    valid_free(&v);

    valid_init(&v);
    j = parse_list(&v, VALID_MAX_OBJECTS, "{}");
    CHECK(j != NULL);
    json_decref(j);
    CHECK(parse_list(&v, VALID_MAX_OBJECTS + 1, "{}") == NULL);
    CHECK_INT(json_array_size(v.errors), 1);
    valid_free(&v);

    valid_init(&v);
    j = parse_list(&v, VALID_MAX_VALUES / 2, "\"{[,\\\",]}\"");
    CHECK(j != NULL);
    json_decref(j);
    CHECK(valid_ok(&v));
    valid_free(&v);
}

TEST(config_env_wins_and_validates) {
    char path[] = "/tmp/smp_env_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    const char *txt = "# comment\nPORT=9001\nexport LOG_LEVEL=debug\nDEFAULT_COLLECTION=\"from file\"\nOTHER=1\n";
    CHECK(write(fd, txt, strlen(txt)) == (ssize_t)strlen(txt));
    close(fd);
    config c;
    char err[256];
    setenv("PORT", "9002", 1);
    CHECK_INT(config_load(&c, path, err, sizeof err), 0);
    CHECK_INT(c.port, 9002);
    CHECK_STR(c.default_collection, "from file");
    CHECK_INT(c.chunk_size, 1000);
    config_free(&c);
    setenv("PORT", "abc", 1);
    CHECK_INT(config_load(&c, path, err, sizeof err), -1);
    CHECK(strstr(err, "PORT") != NULL);
    setenv("PORT", "8000", 1);
    setenv("CACHE_TTL", "-5", 1);
    CHECK_INT(config_load(&c, path, err, sizeof err), -1);
    CHECK(strstr(err, "CACHE_TTL") != NULL);
    unsetenv("CACHE_TTL");
    setenv("ALERT_ERROR_RATE_THRESHOLD", "1.5", 1);
    CHECK_INT(config_load(&c, path, err, sizeof err), -1);
    CHECK(strstr(err, "ALERT_ERROR_RATE_THRESHOLD") != NULL);
    unlink(path);
}

TEST(error_table) {
    CHECK_INT(smp_err_status(-SMP_E_NOT_FOUND), 404);
    CHECK_INT(smp_err_status(SMP_E_TOO_LARGE), 413);
    CHECK_STR(smp_err_name(-SMP_E_VALIDATION), "validation");
    CHECK_INT(smp_err_status(9999), 500);
}

TEST(fmt_float_round_trips) {
    char b[32];
    util_fmt_float(0.5f, b);
    CHECK_STR(b, "0.5");
    util_fmt_float(-123.25f, b);
    CHECK_STR(b, "-123.25");
    util_fmt_float(1e-7f, b);
    CHECK_STR(b, "1.00000001e-7");
    util_fmt_float(0.00012f, b);
    CHECK_STR(b, "0.000119999997");
    util_fmt_float(0.f, b);
    CHECK_STR(b, "0");
    util_fmt_float(100.f, b);
    CHECK_STR(b, "100");
    /* Every value read back must give the same float. */
    unsigned seed = 12345;
    for (int i = 0; i < 200000; i++) {
        seed = seed * 1103515245u + 12345u;
        unsigned bits = seed ^ (seed << 7);
        float f;
        memcpy(&f, &bits, 4);
        if (!isfinite(f)) continue;
        int n = util_fmt_float(f, b);
        REQUIRE(n > 0 && n < 24);
        float back = strtof(b, NULL);
        if (back != f) {
            fprintf(stderr, "  %a printed as %s reads back as %a\n", (double)f, b, (double)back);
            CHECK(back == f);
            return;
        }
    }
}

/* ---- workq ---- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool open;              /* gate: blocking jobs wait until set */
    _Atomic int ran;
    _Atomic int running;
    pthread_t who[64];      /* which thread ran job i */
} wq_state;

typedef struct {
    wq_state *st;
    int i;
    bool block;
} wq_job;

static void wq_fn(void *arg) {
    wq_job *j = arg;
    wq_state *st = j->st;
    atomic_fetch_add(&st->running, 1);
    if (j->block) {
        pthread_mutex_lock(&st->mu);
        while (!st->open) pthread_cond_wait(&st->cv, &st->mu);
        pthread_mutex_unlock(&st->mu);
    }
    st->who[j->i] = pthread_self();
    atomic_fetch_add(&st->ran, 1);
}

static void wq_wait_ran(wq_state *st, int n) {
    for (int t = 0; t < 5000 && atomic_load(&st->ran) < n; t++) usleep(1000);
}

TEST(workq_bounds_the_queue_and_finishes_queued_work) {
    wq_state st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    workq *q;
    REQUIRE(workq_new(2, 3, &q) == 0);
    wq_job jobs[8];
    for (int i = 0; i < 8; i++) jobs[i] = (wq_job){&st, i, true};
    /* Two workers take a blocking job each; three more wait; the sixth is refused. */
    CHECK_INT(workq_submit(q, wq_fn, &jobs[0]), 0);
    CHECK_INT(workq_submit(q, wq_fn, &jobs[1]), 0);
    for (int t = 0; t < 5000 && atomic_load(&st.running) < 2; t++) usleep(1000);
    CHECK_INT(atomic_load(&st.running), 2);
    for (int i = 2; i < 5; i++) CHECK_INT(workq_submit(q, wq_fn, &jobs[i]), 0);
    CHECK_INT((int)workq_pending(q), 3);
    CHECK_INT(workq_submit(q, wq_fn, &jobs[5]), -SMP_E_TOO_MANY);
    pthread_mutex_lock(&st.mu);
    st.open = true;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
    workq_free(q); /* finishes the queued jobs before returning */
    CHECK_INT(atomic_load(&st.ran), 5);
}

TEST(workq_sequential_jobs_reuse_the_last_idle_worker) {
    /* One job at a time: the worker that just finished takes the next one
     * (LIFO), instead of every thread of the pool in turn. */
    wq_state st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .open = true};
    workq *q;
    REQUIRE(workq_new(8, 16, &q) == 0);
    wq_job jobs[20];
    for (int i = 0; i < 20; i++) {
        jobs[i] = (wq_job){&st, i, false};
        CHECK_INT(workq_submit(q, wq_fn, &jobs[i]), 0);
        wq_wait_ran(&st, i + 1);
        usleep(2000); /* let the worker park again */
    }
    int same = 0;
    for (int i = 11; i < 20; i++) same += pthread_equal(st.who[i], st.who[10]) != 0;
    CHECK_INT(same, 9);
    workq_free(q);
    CHECK_INT(atomic_load(&st.ran), 20);
}

/* ---- util_unique_hex ---- */

#define UQ_N 2000

static void *uq_thread(void *p) {
    char(*ids)[33] = p;
    for (int i = 0; i < UQ_N; i++) util_unique_hex(16, ids[i]);
    return NULL;
}

static int uq_cmp(const void *a, const void *b) { return strcmp(a, b); }

TEST(unique_hex_is_hex_and_never_repeats_across_threads) {
    static char ids[4 * UQ_N][33];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, uq_thread, ids + i * UQ_N);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    int bad = 0;
    for (int i = 0; i < 4 * UQ_N; i++) bad += strlen(ids[i]) != 32 || strspn(ids[i], "0123456789abcdef") != 32;
    CHECK_INT(bad, 0);
    qsort(ids, 4 * UQ_N, sizeof ids[0], uq_cmp);
    int dup = 0;
    for (int i = 1; i < 4 * UQ_N; i++) dup += !strcmp(ids[i - 1], ids[i]);
    CHECK_INT(dup, 0);
    char odd[8];
    util_unique_hex(3, odd); /* lengths that are not a multiple of 8 */
    CHECK_INT((int)strlen(odd), 6);
}
