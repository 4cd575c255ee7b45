/* analytics.c - recent-request store behind the /analytics routes; see analytics.h.
 *
 * Data structure: two fixed rings allocated once at init, each behind its own
 * mutex. A slot keeps its strings inline (cut to the slot's size at a UTF-8
 * character boundary), so recording is a lock, a copy and an unlock with no
 * allocation:
 *   req_slot  t, seconds, status, hash of (method, route), method[16], route[128]
 *   err_slot  t, status, method[16], path[128], error[512]
 * `next` is the slot written next; once a ring is full it overwrites the oldest.
 *
 * Retention: an entry older than retention_hours (by its own timestamp) is
 * ignored by every query; its slot is reused by the ring in time.
 * retention_hours <= 0 means no age limit (the ring sizes still bound memory).
 *
 * Number formats in the JSON answers: times in seconds rounded to 6 decimals,
 * percentages (error_rate in stats and endpoint_breakdown) rounded to 2
 * decimals, requests_per_minute to 2 decimals, alert values to 6 decimals.
 * status_distribution lists only the classes seen ("2xx", "4xx", ...;
 * statuses outside 100..599 count as "other"). requests_per_minute is the
 * count divided by since_minutes; for since_minutes <= 0 it is divided by the
 * minutes from the oldest retained entry to now, at least one minute.
 *
 * Stats walk the ring under its lock (O(ring size), about 10k slots) and
 * group endpoints in a small open-addressing table keyed by the hash stored
 * at record time. */
#include "analytics.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/util.h"

#define METHOD_MAX 16
#define ROUTE_MAX 128
#define ERROR_MAX 512
#define ALERT_WINDOW_SECONDS 300.0
#define ALERT_MIN_REQUESTS 10

typedef struct req_slot {
    double t, seconds;
    int status;
    uint64_t hash; /* of method and route, for grouping by endpoint */
    char method[METHOD_MAX];
    char route[ROUTE_MAX];
} req_slot;

typedef struct err_slot {
    double t;
    int status;
    char method[METHOD_MAX];
    char path[ROUTE_MAX];
    char error[ERROR_MAX];
} err_slot;

static pthread_mutex_t req_lock = PTHREAD_MUTEX_INITIALIZER;
static req_slot *reqs;
static size_t req_next, req_count;

static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;
static err_slot *errs;
static size_t err_next, err_count;

static int retention_hours; /* written only by init */

/* ---- helpers ------------------------------------------------------------ */

/* Copy s into dst[cap], cut at a character boundary if too long. */
static void copy_str(char *dst, size_t cap, const char *s) {
    if (!s) s = "";
    size_t n = strnlen(s, cap);
    if (n == cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--; /* s[n] would start the cut character */
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static uint64_t hash_endpoint(const char *method, const char *route) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *p = method; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
    for (const char *p = route; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    return h;
}

static const char *reason_phrase(int status) {
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status >= 500 ? "Server Error" : "Client Error";
    }
}

static double round_to(double x, double scale) { return round(x * scale) / scale; }

/* Oldest timestamp still retained at `now` (-INFINITY: no age limit). */
static double retention_cutoff(double now) {
    return retention_hours > 0 ? now - (double)retention_hours * 3600.0 : -INFINITY;
}

/* A JSON string from bytes that may not be valid UTF-8 (if they are not,
 * every non-ASCII byte becomes '?'). */
static json_t *jstr(const char *s) {
    json_t *j = json_string(s);
    if (j) return j;
    char *tmp = smp_strdup(s);
    if (!tmp) return NULL;
    for (char *p = tmp; *p; p++)
        if ((unsigned char)*p >= 0x80) *p = '?';
    j = json_string(tmp);
    smp_free(tmp);
    return j;
}

/* ---- recording ---------------------------------------------------------- */

void analytics_record(const char *method, const char *route, int status, double seconds, const char *error,
                      double now) {
    if (now <= 0) now = util_wall_seconds();
    if (!method) method = "";
    if (!route) route = "";

    pthread_mutex_lock(&req_lock);
    if (reqs) {
        req_slot *r = &reqs[req_next];
        r->t = now;
        r->seconds = seconds >= 0 ? seconds : 0;
        r->status = status;
        copy_str(r->method, sizeof r->method, method);
        copy_str(r->route, sizeof r->route, route);
        r->hash = hash_endpoint(r->method, r->route);
        req_next = (req_next + 1) % ANALYTICS_MAX_REQUESTS;
        if (req_count < ANALYTICS_MAX_REQUESTS) req_count++;
    }
    pthread_mutex_unlock(&req_lock);

    if (status < 400) return;
    pthread_mutex_lock(&err_lock);
    if (errs) {
        err_slot *e = &errs[err_next];
        e->t = now;
        e->status = status;
        copy_str(e->method, sizeof e->method, method);
        copy_str(e->path, sizeof e->path, route);
        copy_str(e->error, sizeof e->error, error && *error ? error : reason_phrase(status));
        err_next = (err_next + 1) % ANALYTICS_MAX_ERRORS;
        if (err_count < ANALYTICS_MAX_ERRORS) err_count++;
    }
    pthread_mutex_unlock(&err_lock);
}

/* ---- stats -------------------------------------------------------------- */

typedef struct ep_agg {
    const req_slot *first; /* NULL: empty table cell */
    long n, errors;
    double sum, min, max;
} ep_agg;

typedef struct ep_table {
    ep_agg *cells;
    size_t cap, used;
} ep_table;

static ep_agg *ep_find(ep_table *t, const req_slot *r) {
    size_t i = (size_t)r->hash & (t->cap - 1);
    while (t->cells[i].first) {
        const req_slot *f = t->cells[i].first;
        if (f->hash == r->hash && !strcmp(f->method, r->method) && !strcmp(f->route, r->route)) return &t->cells[i];
        i = (i + 1) & (t->cap - 1);
    }
    return &t->cells[i];
}

/* Keep the table at most half full. Returns 0 or -1 (out of memory). */
static int ep_grow(ep_table *t) {
    if (t->cells && 2 * (t->used + 1) <= t->cap) return 0;
    ep_table bigger = {smp_calloc(t->cap ? 2 * t->cap : 64, sizeof(ep_agg)), t->cap ? 2 * t->cap : 64, t->used};
    if (!bigger.cells) return -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->cells[i].first) *ep_find(&bigger, t->cells[i].first) = t->cells[i];
    smp_free(t->cells);
    *t = bigger;
    return 0;
}

static const char *status_class(int status) {
    static const char *const names[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    return status >= 100 && status <= 599 ? names[status / 100 - 1] : "other";
}

json_t *analytics_stats(int since_minutes) {
    double now = util_wall_seconds();
    double cutoff = retention_cutoff(now);
    if (since_minutes > 0 && now - since_minutes * 60.0 > cutoff) cutoff = now - since_minutes * 60.0;

    long total = 0, errors = 0, classes[6] = {0};
    double sum = 0, oldest = now;
    ep_table tab = {0};
    json_t *eps = json_object();
    if (!eps) return NULL;

    pthread_mutex_lock(&req_lock);
    for (size_t i = 0; i < req_count; i++) {
        const req_slot *r = &reqs[i];
        if (r->t < cutoff) continue;
        if (ep_grow(&tab) != 0) goto fail_locked;
        ep_agg *a = ep_find(&tab, r);
        if (!a->first) {
            a->first = r;
            a->min = a->max = r->seconds;
            tab.used++;
        }
        bool err = r->status >= 400;
        total++;
        errors += err;
        sum += r->seconds;
        if (r->t < oldest) oldest = r->t;
        classes[r->status >= 100 && r->status <= 599 ? r->status / 100 - 1 : 5]++;
        a->n++;
        a->errors += err;
        a->sum += r->seconds;
        if (r->seconds < a->min) a->min = r->seconds;
        if (r->seconds > a->max) a->max = r->seconds;
    }
    /* The keys point into the ring: build those objects before unlocking. */
    for (size_t i = 0; i < tab.cap; i++) {
        const ep_agg *a = &tab.cells[i];
        if (!a->first) continue;
        char key[METHOD_MAX + ROUTE_MAX + 2];
        snprintf(key, sizeof key, "%s %s", a->first->method, a->first->route);
        json_t *o = json_pack("{s:I, s:f, s:f, s:f, s:I, s:f}", "requests", (json_int_t)a->n, "avg_time",
                              round_to(a->sum / (double)a->n, 1e6), "min_time", round_to(a->min, 1e6), "max_time",
                              round_to(a->max, 1e6), "errors", (json_int_t)a->errors, "error_rate",
                              round_to(100.0 * (double)a->errors / (double)a->n, 100));
        if (!o) goto fail_locked;
        json_t *k = jstr(key);
        if (!k || json_object_set_new(eps, json_string_value(k), o) != 0) {
            json_decref(k);
            goto fail_locked;
        }
        json_decref(k);
    }
    pthread_mutex_unlock(&req_lock);
    smp_free(tab.cells);

    json_t *dist = json_object();
    for (int c = 0; c < 6; c++)
        if (classes[c])
            json_object_set_new(dist, c < 5 ? status_class((c + 1) * 100) : "other", json_integer(classes[c]));
    /* since_minutes <= 0: per minute over the span from the oldest retained entry to now, at least one minute. */
    double minutes = since_minutes > 0 ? (double)since_minutes : fmax(1.0, (now - oldest) / 60.0);
    return json_pack("{s:I, s:I, s:f, s:f, s:f, s:o, s:o, s:i}", "total_requests", (json_int_t)total, "total_errors",
                     (json_int_t)errors, "error_rate",
                     total ? round_to(100.0 * (double)errors / (double)total, 100) : 0.0, "avg_response_time",
                     total ? round_to(sum / (double)total, 1e6) : 0.0, "requests_per_minute",
                     round_to((double)total / minutes, 100), "status_distribution", dist, "endpoint_breakdown", eps,
                     "retention_hours", retention_hours);

fail_locked:
    pthread_mutex_unlock(&req_lock);
    smp_free(tab.cells);
    json_decref(eps);
    return NULL;
}

json_t *analytics_errors(int limit) {
    json_t *arr = json_array();
    if (!arr) return NULL;
    double cutoff = retention_cutoff(util_wall_seconds());
    pthread_mutex_lock(&err_lock);
    for (size_t k = 0; k < err_count && (int)json_array_size(arr) < limit; k++) {
        const err_slot *e = &errs[(err_next + ANALYTICS_MAX_ERRORS - 1 - k) % ANALYTICS_MAX_ERRORS];
        if (e->t < cutoff) continue;
        char ts[40];
        util_iso8601(e->t, ts, sizeof ts);
        json_t *o = json_pack("{s:s, s:o, s:o, s:i, s:o}", "timestamp", ts, "method", jstr(e->method), "path",
                              jstr(e->path), "status", e->status, "error", jstr(e->error));
        if (!o || json_array_append_new(arr, o) != 0) {
            pthread_mutex_unlock(&err_lock);
            json_decref(arr);
            return NULL;
        }
    }
    pthread_mutex_unlock(&err_lock);
    return arr;
}

json_t *analytics_alerts(double error_rate_threshold, double response_time_threshold) {
    double now = util_wall_seconds();
    double cutoff = fmax(retention_cutoff(now), now - ALERT_WINDOW_SECONDS);
    long n = 0, errors = 0;
    double sum = 0;
    pthread_mutex_lock(&req_lock);
    for (size_t i = 0; i < req_count; i++) {
        if (reqs[i].t < cutoff) continue;
        n++;
        errors += reqs[i].status >= 400;
        sum += reqs[i].seconds;
    }
    pthread_mutex_unlock(&req_lock);

    json_t *alerts = json_array();
    char msg[256];
    double rate = n ? (double)errors / (double)n : 0, avg = n ? sum / (double)n : 0;
    if (n >= ALERT_MIN_REQUESTS && rate > error_rate_threshold) {
        snprintf(msg, sizeof msg,
                 "Error rate %.2f%% is above the %.2f%% threshold (%ld of %ld requests in the last 5 minutes)",
                 100 * rate, 100 * error_rate_threshold, errors, n);
        json_array_append_new(alerts, json_pack("{s:s, s:s, s:s, s:f, s:f}", "type", "high_error_rate", "severity",
                                                "critical", "message", msg, "value", round_to(rate, 1e6), "threshold",
                                                error_rate_threshold));
    }
    if (n > 0 && avg > response_time_threshold) {
        snprintf(msg, sizeof msg,
                 "Average response time %.3f s is above the %.3f s threshold (%ld requests in the last 5 minutes)", avg,
                 response_time_threshold, n);
        json_array_append_new(alerts, json_pack("{s:s, s:s, s:s, s:f, s:f}", "type", "high_response_time", "severity",
                                                "warning", "message", msg, "value", round_to(avg, 1e6), "threshold",
                                                response_time_threshold));
    }
    size_t count = json_array_size(alerts);
    return json_pack("{s:s, s:o, s:I, s:{s:f, s:f}}", "status", count ? "warning" : "success", "alerts", alerts,
                     "alert_count", (json_int_t)count, "thresholds", "error_rate", error_rate_threshold,
                     "response_time", response_time_threshold);
}

json_t *analytics_health(void) {
    double cutoff = retention_cutoff(util_wall_seconds());
    long nreq = 0, nerr = 0;
    pthread_mutex_lock(&req_lock);
    for (size_t i = 0; i < req_count; i++) nreq += reqs[i].t >= cutoff;
    pthread_mutex_unlock(&req_lock);
    pthread_mutex_lock(&err_lock);
    for (size_t i = 0; i < err_count; i++) nerr += errs[i].t >= cutoff;
    pthread_mutex_unlock(&err_lock);
    return json_pack("{s:s, s:I, s:I, s:i}", "status", "healthy", "requests_tracked", (json_int_t)nreq,
                     "errors_tracked", (json_int_t)nerr, "retention_hours", retention_hours);
}

/* ---- lifetime ----------------------------------------------------------- */

int analytics_init(int hours) {
    analytics_free();
    req_slot *r = smp_calloc(ANALYTICS_MAX_REQUESTS, sizeof *r);
    err_slot *e = smp_calloc(ANALYTICS_MAX_ERRORS, sizeof *e);
    if (!r || !e) {
        smp_free(r);
        smp_free(e);
        return -1;
    }
    retention_hours = hours;
    pthread_mutex_lock(&req_lock);
    reqs = r;
    req_next = req_count = 0;
    pthread_mutex_unlock(&req_lock);
    pthread_mutex_lock(&err_lock);
    errs = e;
    err_next = err_count = 0;
    pthread_mutex_unlock(&err_lock);
    return 0;
}

void analytics_free(void) {
    pthread_mutex_lock(&req_lock);
    smp_free(reqs);
    reqs = NULL;
    req_next = req_count = 0;
    pthread_mutex_unlock(&req_lock);
    pthread_mutex_lock(&err_lock);
    smp_free(errs);
    errs = NULL;
    err_next = err_count = 0;
    pthread_mutex_unlock(&err_lock);
}
