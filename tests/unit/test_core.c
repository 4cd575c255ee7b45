/* test_core.c - buf, valid, util, config. */
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/util.h"
#include "core/valid.h"
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
