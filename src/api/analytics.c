/* analytics.c - the analytics routes: stats, errors, alerts, cache, health. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "backend/registry.h"
#include "cache/cache.h"
#include "core/config.h"
#include "core/errors.h"
#include "http/router.h"
#include "http/server.h"
#include "obs/analytics.h"

/* Read an optional integer query parameter in [lo, hi]. Returns 0 and sends a
 * 422 naming the parameter when it is not one. */
static int query_int(http_req *r, const char *name, long lo, long hi, long def, long *out) {
    const char *s = http_query(r, name);
    *out = def;
    if (!s) return 1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    char msg[160];
    if (!*s || *end || errno)
        snprintf(msg, sizeof msg, "Input should be a valid integer, got '%.40s'", s);
    else if (v < lo || v > hi)
        snprintf(msg, sizeof msg, "Input should be between %ld and %ld", lo, hi);
    else {
        *out = v;
        return 1;
    }
    http_send_validation(r, json_pack("[{s:[s,s],s:s,s:s}]", "loc", "query", name, "msg", msg, "type",
                                      *end || !*s ? "int_parsing" : "range"));
    return 0;
}

static void stats(http_req *r) {
    const config *c = config_get();
    long since;
    if (!query_int(r, "since_minutes", 1, c->metrics_retention_hours * 60, 60, &since)) return;
    char period[64];
    snprintf(period, sizeof period, "last %ld minutes", since);
    http_send_json(r, 200,
                   json_pack("{s:s,s:o,s:s}", "status", "success", "metrics", analytics_stats((int)since), "period",
                             period));
}

static void errors(http_req *r) {
    long limit;
    if (!query_int(r, "limit", 1, ANALYTICS_MAX_ERRORS, 10, &limit)) return;
    json_t *list = analytics_errors((int)limit);
    size_t n = json_array_size(list);
    http_send_json(r, 200, json_pack("{s:s,s:o,s:I}", "status", "success", "errors", list, "count", (json_int_t)n));
}

static void alerts(http_req *r) {
    const config *c = config_get();
    http_send_json(r, 200, analytics_alerts(c->alert_error_rate_threshold, c->alert_response_time_threshold));
}

static void cache_get_stats(http_req *r) {
    http_send_json(r, 200, json_pack("{s:s,s:o}", "status", "success", "cache", cache_stats_json()));
}

static void cache_delete(http_req *r) {
    const char *prefix = http_query(r, "prefix");
    if (prefix && !*prefix) prefix = NULL;
    if (prefix && cache_type_parse(prefix) < 0) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "Unknown cache prefix '%.40s': expected embedding, inference, chat, vision, audio, rag or other",
                 prefix);
        http_send_validation(r, json_pack("[{s:[s,s],s:s,s:s}]", "loc", "query", "prefix", "msg", msg, "type",
                                          "enum"));
        return;
    }
    if (!cache_enabled()) {
        http_send_json(r, 200, json_pack("{s:s,s:s,s:i}", "status", "success", "message", "Cache is disabled",
                                         "deleted", 0));
        return;
    }
    long n = cache_clear(prefix);
    if (n < 0) {
        http_send_error(r, -SMP_E_UNAVAILABLE, "Could not connect to the cache backend (redis): entries not cleared");
        return;
    }
    char msg[128];
    snprintf(msg, sizeof msg, "Cleared %ld %s%scache entries", n, prefix ? prefix : "", prefix ? " " : "");
    http_send_json(r, 200, json_pack("{s:s,s:s,s:I}", "status", "success", "message", msg, "deleted", (json_int_t)n));
}

static void health(http_req *r) {
    json_t *cache = cache_health_json();
    bool any_backend = false;
    json_t *backends = registry_health(&any_backend);
    bool degraded = cache_degraded() || !any_backend;
    json_t *body = json_pack("{s:s,s:{s:o,s:o,s:o}}", "status", degraded ? "degraded" : "healthy", "components",
                             "monitoring", analytics_health(), "cache", cache, "backends", backends);
    api_public_scrub(body);
    http_send_json(r, 200, body);
}

void api_analytics_register(void) {
    router_add("GET", "/analytics/stats", stats, 0, "Request statistics over a window (since_minutes)");
    router_add("GET", "/analytics/errors", errors, 0, "Recent errors, newest first (limit)");
    router_add("GET", "/analytics/alerts", alerts, 0, "Alerts over the last 5 minutes");
    router_add("GET", "/analytics/cache", cache_get_stats, 0, "Cache statistics");
    router_add("DELETE", "/analytics/cache", cache_delete, 0, "Clear Simpleton's cache entries (prefix)");
    router_add("GET", "/analytics/health", health, ROUTE_PUBLIC, "Health of monitoring, cache and backends");
}
