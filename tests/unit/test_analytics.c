/* test_analytics.c - the recent-request store: exact counts and percentages,
 * since_minutes windows, retention, ring wrap-around, the error ring, alert
 * thresholds, and concurrent recording. Timestamps are injected. */
#include <pthread.h>

#include "core/alloc.h"
#include "core/util.h"
#include "core/valid.h"
#include "obs/analytics.h"
#include "test.h"

static double num(json_t *o, const char *path_a, const char *path_b) {
    json_t *v = json_object_get(o, path_a);
    if (path_b) v = json_object_get(v, path_b);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static json_t *endpoint(json_t *stats, const char *key) {
    return json_object_get(json_object_get(stats, "endpoint_breakdown"), key);
}

TEST(analytics_exact_counts_and_percent) {
    REQUIRE(analytics_init(168) == 0);
    double now = util_wall_seconds() - 10;
    for (int i = 0; i < 6; i++) analytics_record("GET", "/a", 200, 0.1, NULL, now);
    analytics_record("GET", "/a", 302, 0.1, NULL, now);
    analytics_record("GET", "/a", 404, 0.3, NULL, now);
    analytics_record("POST", "/b", 422, 0.5, "bad field", now);
    analytics_record("POST", "/b", 503, 3.0, NULL, now);
    json_t *s = analytics_stats(0);
    REQUIRE(s != NULL);
    CHECK_INT(num(s, "total_requests", NULL), 10);
    CHECK_INT(num(s, "total_errors", NULL), 3);
    CHECK_NEAR(num(s, "error_rate", NULL), 30.0, 1e-9);
    CHECK_NEAR(num(s, "avg_response_time", NULL), 0.45, 1e-9);
    CHECK_NEAR(num(s, "requests_per_minute", NULL), 10, 1e-9); /* span < 1 minute counts as 1 */
    CHECK_INT(num(s, "retention_hours", NULL), 168);
    json_t *d = json_object_get(s, "status_distribution");
    CHECK_INT(json_object_size(d), 4); /* only the classes seen */
    CHECK_INT(num(d, "2xx", NULL), 6);
    CHECK_INT(num(d, "3xx", NULL), 1);
    CHECK_INT(num(d, "4xx", NULL), 2);
    CHECK_INT(num(d, "5xx", NULL), 1);
    CHECK(json_object_get(d, "1xx") == NULL);
    CHECK_INT(json_object_size(json_object_get(s, "endpoint_breakdown")), 2);
    json_t *a = endpoint(s, "GET /a"), *b = endpoint(s, "POST /b");
    REQUIRE(a && b);
    CHECK_INT(num(a, "requests", NULL), 8);
    CHECK_INT(num(a, "errors", NULL), 1);
    CHECK_NEAR(num(a, "error_rate", NULL), 12.5, 1e-9);
    CHECK_NEAR(num(a, "avg_time", NULL), 0.125, 1e-9);
    CHECK_NEAR(num(a, "min_time", NULL), 0.1, 1e-9);
    CHECK_NEAR(num(a, "max_time", NULL), 0.3, 1e-9);
    CHECK_INT(num(b, "requests", NULL), 2);
    CHECK_NEAR(num(b, "error_rate", NULL), 100, 1e-9);
    CHECK_NEAR(num(b, "avg_time", NULL), 1.75, 1e-9);
    CHECK_NEAR(num(b, "min_time", NULL), 0.5, 1e-9);
    CHECK_NEAR(num(b, "max_time", NULL), 3.0, 1e-9);
    json_decref(s);

    /* Rounding: 1/3 of requests failing is 33.33 percent; per-minute over 60 minutes. */
    s = analytics_stats(60);
    CHECK_NEAR(num(s, "requests_per_minute", NULL), 0.17, 1e-9); /* 10 / 60 */
    json_decref(s);
    analytics_free();
    REQUIRE(analytics_init(168) == 0);
    analytics_record("GET", "/r", 200, 1.0 / 3, NULL, 0);
    analytics_record("GET", "/r", 200, 0, NULL, 0);
    analytics_record("GET", "/r", 500, 0, NULL, 0);
    s = analytics_stats(0);
    CHECK_NEAR(num(s, "error_rate", NULL), 33.33, 1e-9);
    CHECK_NEAR(num(s, "avg_response_time", NULL), 0.111111, 1e-12);
    CHECK_NEAR(num(endpoint(s, "GET /r"), "max_time", NULL), 0.333333, 1e-12);
    json_decref(s);
    analytics_free();
}

TEST(analytics_empty_store) {
    REQUIRE(analytics_init(168) == 0);
    json_t *s = analytics_stats(0);
    REQUIRE(s != NULL);
    CHECK_INT(num(s, "total_requests", NULL), 0);
    CHECK_INT(num(s, "error_rate", NULL), 0);
    CHECK_INT(num(s, "avg_response_time", NULL), 0);
    CHECK_INT(num(s, "requests_per_minute", NULL), 0);
    CHECK_INT(json_object_size(json_object_get(s, "status_distribution")), 0);
    CHECK_INT(json_object_size(json_object_get(s, "endpoint_breakdown")), 0);
    json_decref(s);
    json_t *e = analytics_errors(10);
    CHECK_INT(json_array_size(e), 0);
    json_decref(e);
    analytics_free();
    /* After free (and before init) everything still answers, empty. */
    analytics_record("GET", "/", 500, 1, NULL, 0);
    s = analytics_stats(0);
    CHECK_INT(num(s, "total_requests", NULL), 0);
    json_decref(s);
}

TEST(analytics_since_minutes_window) {
    REQUIRE(analytics_init(168) == 0);
    double now = util_wall_seconds();
    for (int i = 0; i < 5; i++) analytics_record("GET", "/old", 200, 1, NULL, now - 30 * 60);
    for (int i = 0; i < 3; i++) analytics_record("GET", "/mid", 500, 2, NULL, now - 2 * 60);
    for (int i = 0; i < 2; i++) analytics_record("GET", "/new", 200, 3, NULL, now - 10);
    json_t *s = analytics_stats(1);
    CHECK_INT(num(s, "total_requests", NULL), 2);
    CHECK_INT(num(s, "total_errors", NULL), 0);
    CHECK_NEAR(num(s, "requests_per_minute", NULL), 2, 1e-9);
    CHECK(endpoint(s, "GET /old") == NULL);
    json_decref(s);
    s = analytics_stats(5);
    CHECK_INT(num(s, "total_requests", NULL), 5);
    CHECK_INT(num(s, "total_errors", NULL), 3);
    CHECK_NEAR(num(s, "error_rate", NULL), 60, 1e-9);
    CHECK_NEAR(num(s, "avg_response_time", NULL), 2.4, 1e-9);
    CHECK_NEAR(num(s, "requests_per_minute", NULL), 1, 1e-9);
    json_decref(s);
    s = analytics_stats(60);
    CHECK_INT(num(s, "total_requests", NULL), 10);
    json_decref(s);
    s = analytics_stats(0); /* whole retention: per minute over the 30-minute span */
    CHECK_INT(num(s, "total_requests", NULL), 10);
    CHECK_NEAR(num(s, "requests_per_minute", NULL), 0.33, 1e-6);
    json_decref(s);
    analytics_free();
}

TEST(analytics_retention_excludes_old) {
    REQUIRE(analytics_init(1) == 0);
    double now = util_wall_seconds();
    for (int i = 0; i < 4; i++) analytics_record("GET", "/x", 500, 1, "ancient", now - 2 * 3600);
    analytics_record("GET", "/x", 200, 1, NULL, now - 30 * 60);
    analytics_record("GET", "/x", 500, 1, "recent", now - 30 * 60);
    json_t *s = analytics_stats(0);
    CHECK_INT(num(s, "total_requests", NULL), 2);
    CHECK_INT(num(s, "total_errors", NULL), 1);
    CHECK_INT(num(s, "retention_hours", NULL), 1);
    json_decref(s);
    s = analytics_stats(600); /* a window longer than retention is capped by it */
    CHECK_INT(num(s, "total_requests", NULL), 2);
    json_decref(s);
    json_t *e = analytics_errors(100);
    CHECK_INT(json_array_size(e), 1);
    CHECK_STR(json_string_value(json_object_get(json_array_get(e, 0), "error")), "recent");
    json_decref(e);
    json_t *h = analytics_health();
    CHECK_STR(json_string_value(json_object_get(h, "status")), "healthy");
    CHECK_INT(num(h, "requests_tracked", NULL), 2);
    CHECK_INT(num(h, "errors_tracked", NULL), 1);
    CHECK_INT(num(h, "retention_hours", NULL), 1);
    json_decref(h);
    analytics_free();
}

TEST(analytics_request_ring_wraps) {
    REQUIRE(analytics_init(168) == 0);
    double now = util_wall_seconds() - 60;
    /* The first 50 (errors) are overwritten by the last 50. */
    for (int i = 0; i < 50; i++) analytics_record("GET", "/w", 500, 1, NULL, now);
    size_t heap = smp_alloc_live_bytes();
    for (int i = 0; i < ANALYTICS_MAX_REQUESTS; i++) analytics_record("GET", "/w", 200, 1, NULL, now);
    CHECK_INT(smp_alloc_live_bytes(), heap); /* recording allocates nothing */
    json_t *s = analytics_stats(0);
    CHECK_INT(num(s, "total_requests", NULL), ANALYTICS_MAX_REQUESTS);
    CHECK_INT(num(s, "total_errors", NULL), 0);
    CHECK_INT(num(endpoint(s, "GET /w"), "requests", NULL), ANALYTICS_MAX_REQUESTS);
    json_decref(s);
    json_t *h = analytics_health();
    CHECK_INT(num(h, "requests_tracked", NULL), ANALYTICS_MAX_REQUESTS);
    CHECK_INT(num(h, "errors_tracked", NULL), 50); /* the error ring still has them */
    json_decref(h);
    analytics_free();
}

TEST(analytics_errors_newest_first) {
    REQUIRE(analytics_init(168) == 0);
    double t0 = util_wall_seconds() - 100;
    char msg[16];
    for (int i = 1; i <= 5; i++) {
        snprintf(msg, sizeof msg, "e%d", i);
        analytics_record("POST", "/inference/generate", 500, 0.1, msg, t0 + i);
    }
    analytics_record("GET", "/missing", 404, 0.01, NULL, t0 + 6);
    analytics_record("GET", "/ok", 200, 0.01, "not an error", t0 + 7);
    json_t *e = analytics_errors(3);
    REQUIRE(json_array_size(e) == 3);
    json_t *first = json_array_get(e, 0);
    CHECK_STR(json_string_value(json_object_get(first, "error")), "Not Found");
    CHECK_STR(json_string_value(json_object_get(first, "method")), "GET");
    CHECK_STR(json_string_value(json_object_get(first, "path")), "/missing");
    CHECK_INT(json_integer_value(json_object_get(first, "status")), 404);
    char ts[40];
    util_iso8601(t0 + 6, ts, sizeof ts);
    CHECK_STR(json_string_value(json_object_get(first, "timestamp")), ts);
    CHECK(strlen(ts) == 27 && ts[10] == 'T' && ts[26] == 'Z');
    CHECK_STR(json_string_value(json_object_get(json_array_get(e, 1), "error")), "e5");
    CHECK_STR(json_string_value(json_object_get(json_array_get(e, 2), "error")), "e4");
    json_decref(e);
    e = analytics_errors(0);
    CHECK_INT(json_array_size(e), 0);
    json_decref(e);
    e = analytics_errors(100);
    CHECK_INT(json_array_size(e), 6);
    json_decref(e);

    /* The error ring keeps the newest ANALYTICS_MAX_ERRORS. */
    for (int i = 0; i < ANALYTICS_MAX_ERRORS + 10; i++) {
        snprintf(msg, sizeof msg, "w%d", i);
        analytics_record("GET", "/w", 500, 0.1, msg, t0 + 10);
    }
    e = analytics_errors(1000000);
    CHECK_INT(json_array_size(e), ANALYTICS_MAX_ERRORS);
    snprintf(msg, sizeof msg, "w%d", ANALYTICS_MAX_ERRORS + 9);
    CHECK_STR(json_string_value(json_object_get(json_array_get(e, 0), "error")), msg);
    CHECK_STR(json_string_value(json_object_get(json_array_get(e, ANALYTICS_MAX_ERRORS - 1), "error")), "w10");
    json_decref(e);
    analytics_free();
}

TEST(analytics_long_and_odd_strings) {
    REQUIRE(analytics_init(168) == 0);
    char big[2000] = "";
    for (int i = 0; i < 999; i++) strcat(big, "\xc3\xa9"); /* 'é' x 999 = 1998 bytes */
    analytics_record("GET", "/e", 500, 0.1, big, 0);
    analytics_record("G\xff", "/bad\xfe", 400, 0.1, "bad \xff byte", 0);
    json_t *e = analytics_errors(10);
    REQUIRE(json_array_size(e) == 2);
    const char *odd = json_string_value(json_object_get(json_array_get(e, 0), "error"));
    CHECK_STR(odd, "bad ? byte");
    CHECK_STR(json_string_value(json_object_get(json_array_get(e, 0), "method")), "G?");
    const char *kept = json_string_value(json_object_get(json_array_get(e, 1), "error"));
    REQUIRE(kept != NULL);
    CHECK_INT(strlen(kept), 510); /* 511 would cut an 'é' in half */
    CHECK(valid_utf8(kept, strlen(kept)));
    json_decref(e);
    json_t *s = analytics_stats(0);
    CHECK(endpoint(s, "G? /bad?") != NULL);
    json_decref(s);
    analytics_free();
}

static json_t *alert_of(json_t *body, const char *type) {
    json_t *arr = json_object_get(body, "alerts");
    for (size_t i = 0; i < json_array_size(arr); i++)
        if (!strcmp(json_string_value(json_object_get(json_array_get(arr, i), "type")), type))
            return json_array_get(arr, i);
    return NULL;
}

TEST(analytics_alert_error_rate_threshold) {
    REQUIRE(analytics_init(168) == 0);
    double now = util_wall_seconds() - 5;
    /* Exactly at the threshold (1 of 10 = 0.1): no alert. */
    for (int i = 0; i < 9; i++) analytics_record("GET", "/a", 200, 0.1, NULL, now);
    analytics_record("GET", "/a", 500, 0.1, NULL, now);
    for (int i = 0; i < 20; i++) analytics_record("GET", "/a", 500, 0.1, NULL, now - 600); /* outside 5 minutes */
    json_t *b = analytics_alerts(0.1, 5.0);
    CHECK_STR(json_string_value(json_object_get(b, "status")), "success");
    CHECK_INT(num(b, "alert_count", NULL), 0);
    CHECK_INT(json_array_size(json_object_get(b, "alerts")), 0);
    CHECK_NEAR(num(b, "thresholds", "error_rate"), 0.1, 1e-12);
    CHECK_NEAR(num(b, "thresholds", "response_time"), 5.0, 1e-12);
    json_decref(b);
    /* Just above (2 of 11): fires, critical, value as a fraction. */
    analytics_record("GET", "/a", 503, 0.1, NULL, now);
    b = analytics_alerts(0.1, 5.0);
    CHECK_STR(json_string_value(json_object_get(b, "status")), "warning");
    CHECK_INT(num(b, "alert_count", NULL), 1);
    json_t *a = alert_of(b, "high_error_rate");
    REQUIRE(a != NULL);
    CHECK_STR(json_string_value(json_object_get(a, "severity")), "critical");
    CHECK_NEAR(num(a, "value", NULL), 0.181818, 1e-9);
    CHECK_NEAR(num(a, "threshold", NULL), 0.1, 1e-12);
    CHECK(strstr(json_string_value(json_object_get(a, "message")), "18.18%") != NULL);
    json_decref(b);
    analytics_free();

    /* Fewer than 10 requests never fire, even at 100 percent. */
    REQUIRE(analytics_init(168) == 0);
    for (int i = 0; i < 9; i++) analytics_record("GET", "/a", 500, 0.1, NULL, 0);
    b = analytics_alerts(0.1, 5.0);
    CHECK_INT(num(b, "alert_count", NULL), 0);
    json_decref(b);
    analytics_record("GET", "/a", 500, 0.1, NULL, 0);
    b = analytics_alerts(0.1, 5.0);
    CHECK_INT(num(b, "alert_count", NULL), 1);
    json_decref(b);
    analytics_free();
}

TEST(analytics_alert_response_time_threshold) {
    REQUIRE(analytics_init(168) == 0);
    for (int i = 0; i < 4; i++) analytics_record("POST", "/slow", 200, 5.0, NULL, 0);
    analytics_record("POST", "/slow", 200, 99.0, NULL, util_wall_seconds() - 301); /* outside the window */
    /* avg exactly 5.0: no alert */
    json_t *b = analytics_alerts(0.1, 5.0);
    CHECK_INT(num(b, "alert_count", NULL), 0);
    json_decref(b);
    analytics_record("POST", "/slow", 200, 5.05, NULL, 0); /* avg 5.01 */
    b = analytics_alerts(0.1, 5.0);
    CHECK_STR(json_string_value(json_object_get(b, "status")), "warning");
    json_t *a = alert_of(b, "high_response_time");
    REQUIRE(a != NULL);
    CHECK_STR(json_string_value(json_object_get(a, "severity")), "warning");
    CHECK_NEAR(num(a, "value", NULL), 5.01, 1e-9);
    CHECK_NEAR(num(a, "threshold", NULL), 5.0, 1e-12);
    CHECK(alert_of(b, "high_error_rate") == NULL);
    json_decref(b);
    analytics_free();
}

#define NTHREADS 4
#define PER_THREAD 20000

static void *writer(void *arg) {
    long id = (long)arg;
    char route[16];
    snprintf(route, sizeof route, "/t%ld", id);
    for (int i = 0; i < PER_THREAD; i++) analytics_record("GET", route, i % 4 ? 200 : 500, 0.01, "boom", 0);
    return NULL;
}

TEST(analytics_threads_smoke) {
    REQUIRE(analytics_init(168) == 0);
    pthread_t th[NTHREADS];
    for (long i = 0; i < NTHREADS; i++) REQUIRE(pthread_create(&th[i], NULL, writer, (void *)i) == 0);
    for (int i = 0; i < 5; i++) {
        json_decref(analytics_stats(0));
        json_decref(analytics_errors(50));
        json_decref(analytics_alerts(0.1, 5));
    }
    for (int i = 0; i < NTHREADS; i++) pthread_join(th[i], NULL);
    json_t *s = analytics_stats(0);
    CHECK_INT(num(s, "total_requests", NULL), ANALYTICS_MAX_REQUESTS);
    long per_ep = 0;
    for (int i = 0; i < NTHREADS; i++) {
        char key[32];
        snprintf(key, sizeof key, "GET /t%d", i);
        json_t *ep = endpoint(s, key);
        if (ep) per_ep += (long)num(ep, "requests", NULL);
    }
    CHECK_INT(per_ep, ANALYTICS_MAX_REQUESTS);
    json_decref(s);
    json_t *e = analytics_errors(5000);
    CHECK_INT(json_array_size(e), ANALYTICS_MAX_ERRORS);
    json_decref(e);
    analytics_free();
    CHECK_INT(smp_alloc_live_bytes(), 0);
}
