/* cache.c - the part of the response cache both backends share: choosing
 * the backend, keys, TTLs per type, hit/miss counters and the JSON reports.
 *
 * Data structure: one process-wide state (C) holding the chosen backend's
 * function table (cache_int.h), the TTL of every cache type and per-type
 * atomic hit and miss counters. cache_init/cache_shutdown run while no other
 * thread uses the cache; every other function is safe from many threads.
 *
 * Keys: "simpleton:<type>:" + SHA-256 hex of json_dumps(fields,
 * JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_ENCODE_ANY): no
 * whitespace, object keys in byte order, non-ASCII as \uXXXX escapes (upper-
 * case hex, as jansson writes them), so the same request always gives the
 * same bytes whatever order its fields came in.
 *
 * Counting: a lookup (cache_get while the cache is enabled) counts one hit or
 * one miss for its type here and in metrics_cache_event; a miss because the
 * backend is down counts as a miss. With the cache disabled nothing is looked
 * up and nothing is counted. hit_rate = hits / (hits + misses) as a fraction
 * 0..1 (0 before the first lookup). */
#include "cache.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cache_int.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/buf.h"
#include "core/util.h"
#include "core/valid.h"
#include "obs/metrics.h"

#define TTL_MAX_SECONDS (10L * 366 * 24 * 3600)

static const char *const type_names[CACHE__COUNT] = {"embedding", "inference", "chat", "vision",
                                                     "audio",     "rag",       "other"};

static struct {
    bool inited;
    bool enabled;
    const cache_ops *ops; /* NULL when disabled */
    const char *backend;  /* the configured backend's name, even when disabled */
    long ttl[CACHE__COUNT];
    _Atomic unsigned long hits[CACHE__COUNT];
    _Atomic unsigned long misses[CACHE__COUNT];
} C;

static cache_type type_or_other(cache_type t) { return (unsigned)t < CACHE__COUNT ? t : CACHE_OTHER; }

const char *cache_type_name(cache_type t) { return type_names[type_or_other(t)]; }

int cache_type_parse(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < CACHE__COUNT; i++)
        if (!strcmp(name, type_names[i])) return i;
    return -1;
}

int cache_init(const config *c) {
    if (C.inited) cache_shutdown();
    memset(&C, 0, sizeof C);
    C.inited = true;
    bool redis = c->redis_url && c->redis_url[0];
    C.backend = redis ? "redis" : "memory";
    for (int t = 0; t < CACHE__COUNT; t++) C.ttl[t] = c->cache_ttl;
    C.ttl[CACHE_EMBEDDING] = c->cache_embedding_ttl;
    C.ttl[CACHE_INFERENCE] = c->cache_inference_ttl;
    C.ttl[CACHE_CHAT] = c->cache_inference_ttl;
    if (!c->cache_enabled) {
        log_info("cache: disabled (CACHE_ENABLED=false)");
        return 0;
    }
    if (redis) {
        if (cache_redis_init(c->redis_url, c->redis_timeout_ms) < 0) return -1;
        C.ops = &cache_redis_ops;
    } else {
        size_t max = (size_t)c->cache_max_mb << 20;
        if (cache_mem_init(max) < 0) {
            log_error("cache: out of memory starting the in-memory cache");
            return -1;
        }
        C.ops = &cache_mem_ops;
        log_info("cache: in-memory, up to %ld MiB", c->cache_max_mb);
    }
    C.enabled = true;
    return 0;
}

void cache_shutdown(void) {
    if (C.ops) C.ops->shutdown();
    C.ops = NULL;
    C.enabled = false;
    C.inited = false;
}

bool cache_enabled(void) { return C.enabled; }

bool cache_wanted(const char *cc) {
    return C.enabled && !(cc && (strstr(cc, "no-cache") || strstr(cc, "no-store")));
}

/* If the JSON cannot be made (out of memory) the key is "": cache_get and
 * cache_put refuse it, so such a request is simply not cached. */
void cache_key(cache_type t, json_t *fields, char out[CACHE_KEY_MAX]) {
    char hex[65];
    buf text;
    buf_init(&text, 0);
    if (valid_dump(fields, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENSURE_ASCII | JSON_ENCODE_ANY, &text) != 0) {
        buf_free(&text);
        out[0] = '\0';
        return;
    }
    util_sha256_hex(text.data, text.len, hex);
    buf_free(&text);
    snprintf(out, CACHE_KEY_MAX, CACHE_KEY_PREFIX "%s:%s", cache_type_name(t), hex);
}

static bool key_ok(const char *key) { return key && key[0] && strnlen(key, CACHE_KEY_LIMIT) < CACHE_KEY_LIMIT; }

int cache_get(cache_type t, const char *key, char **val, size_t *len) {
    if (!C.enabled) return 0;
    t = type_or_other(t);
    char *v = NULL;
    size_t n = 0;
    int hit = key_ok(key) && C.ops->get(key, &v, &n) == 1;
    if (hit) {
        *val = v;
        if (len) *len = n;
        atomic_fetch_add(&C.hits[t], 1);
    } else {
        atomic_fetch_add(&C.misses[t], 1);
    }
    metrics_cache_event(type_names[t], hit);
    return hit;
}

void cache_put(cache_type t, const char *key, const void *val, size_t len, long ttl_seconds) {
    if (!C.enabled || !key_ok(key) || (!val && len) || len > CACHE_VALUE_MAX) return;
    long ttl = ttl_seconds > 0 ? ttl_seconds : C.ttl[type_or_other(t)];
    if (ttl > TTL_MAX_SECONDS) ttl = TTL_MAX_SECONDS;
    C.ops->put(key, val ? val : "", len, ttl);
}

long cache_clear(const char *type_prefix) {
    if (!C.enabled) return 0;
    char prefix[64];
    if (!type_prefix || !type_prefix[0]) {
        snprintf(prefix, sizeof prefix, CACHE_KEY_PREFIX);
    } else {
        /* "embedding", "embedding:", "simpleton:embedding" all name one type.
         * Only [A-Za-z0-9_-] is accepted, so nothing in it is a glob pattern. */
        const char *p = type_prefix;
        if (!strncmp(p, CACHE_KEY_PREFIX, strlen(CACHE_KEY_PREFIX))) p += strlen(CACHE_KEY_PREFIX);
        size_t n = strcspn(p, ":");
        if (n == 0 || n > 32 || (p[n] == ':' && p[n + 1])) return 0;
        for (size_t i = 0; i < n; i++) {
            char ch = p[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                  ch == '-'))
                return 0;
        }
        snprintf(prefix, sizeof prefix, CACHE_KEY_PREFIX "%.*s:", (int)n, p);
    }
    return C.ops->clear(prefix);
}

json_t *cache_stats_json(void) {
    unsigned long hits = 0, misses = 0;
    json_t *by_type = json_object();
    for (int t = 0; t < CACHE__COUNT; t++) {
        unsigned long h = atomic_load(&C.hits[t]), m = atomic_load(&C.misses[t]);
        hits += h;
        misses += m;
        if (h || m) json_object_set_new(by_type, type_names[t], json_pack("{s:I,s:I}", "hits", (json_int_t)h,
                                                                          "misses", (json_int_t)m));
    }
    cache_backend_stats st = {.keys = 0};
    const char *status = "disabled";
    if (C.enabled) {
        C.ops->stats(&st);
        status = st.reachable ? "connected" : "error";
    }
    double rate = hits + misses ? (double)hits / (double)(hits + misses) : 0.0;
    return json_pack("{s:b,s:s,s:s,s:I,s:I,s:I,s:f,s:f,s:I,s:o}", "enabled", C.enabled, "backend",
                     C.backend ? C.backend : "memory", "status", status, "total_keys",
                     (json_int_t)(st.keys > 0 ? st.keys : 0), "hits", (json_int_t)hits, "misses",
                     (json_int_t)misses, "hit_rate", rate, "memory_used_mb", st.memory_mb, "evictions",
                     (json_int_t)st.evictions, "by_type", by_type);
}

json_t *cache_health_json(void) {
    char detail[320];
    const char *status;
    if (!C.enabled) {
        status = "disabled";
        snprintf(detail, sizeof detail, "cache disabled (CACHE_ENABLED=false)");
    } else {
        status = C.ops->health(detail, sizeof detail) ? "healthy" : "degraded";
    }
    return json_pack("{s:s,s:s,s:s}", "status", status, "backend", C.backend ? C.backend : "memory", "detail",
                     detail);
}

bool cache_degraded(void) { return C.enabled && C.ops->degraded(); }
