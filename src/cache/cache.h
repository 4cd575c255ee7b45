/* cache.h - response cache with two interchangeable backends.
 *
 * cache_mem.c: in-process, sharded hash tables with LRU lists, bounded by
 * CACHE_MAX_MB, per-entry TTL (default). cache_redis.c: Redis through hiredis
 * when REDIS_URL is set: a small connection pool, command timeouts, keys
 * simpleton:<type>:<sha256>, SET with EX, clear by SCAN + UNLINK of our keys
 * only; when Redis is down every call is a miss or a no-op and the backend
 * reconnects by itself with backoff. cache.c holds what both share: keys,
 * TTLs per type, hit/miss counters (fed to metrics_cache_event) and stats.
 *
 * No call ever fails towards a client: errors turn into misses. */
#ifndef SMP_CACHE_H
#define SMP_CACHE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

typedef enum {
    CACHE_EMBEDDING, /* TTL: CACHE_EMBEDDING_TTL */
    CACHE_INFERENCE, /* CACHE_INFERENCE_TTL */
    CACHE_CHAT,      /* CACHE_INFERENCE_TTL */
    CACHE_VISION,    /* CACHE_TTL (also: all types below) */
    CACHE_AUDIO,
    CACHE_RAG,
    CACHE_OTHER,
    CACHE__COUNT
} cache_type;

/* "embedding", "inference", "chat", "vision", "audio", "rag", "other". */
const char *cache_type_name(cache_type t);
/* Type from its name; -1 if unknown. */
int cache_type_parse(const char *name);

#define CACHE_KEY_MAX 96 /* "simpleton:" + type + ":" + 64 hex + NUL */

/* Start the backend chosen by c (memory, or Redis when c->redis_url is set;
 * nothing at all when c->cache_enabled is false). An unreachable Redis is not
 * an error: the cache starts degraded and keeps trying. */
int cache_init(const config *c);
void cache_shutdown(void);
bool cache_enabled(void);
/* Should a request with this Cache-Control header (NULL: none) use the
 * cache? Enabled, and not bypassed by no-cache or no-store. */
bool cache_wanted(const char *cache_control);

/* key = "simpleton:<type>:<sha256 of the canonical JSON of fields>"
 * (compact, keys sorted). fields is borrowed. */
void cache_key(cache_type t, json_t *fields, char out[CACHE_KEY_MAX]);

/* 1: hit, *val is a copy the caller frees with smp_free (NUL-terminated, *len
 * bytes); 0: miss (or cache disabled / backend down). Counts a hit or miss. */
int cache_get(cache_type t, const char *key, char **val, size_t *len);
/* Store with the TTL of type t (ttl_seconds > 0 overrides). Best effort. */
void cache_put(cache_type t, const char *key, const void *val, size_t len, long ttl_seconds);
/* Delete Simpleton's entries: all of them (type_prefix NULL) or one type's.
 * Returns the number deleted, or -1 if the backend is unreachable. */
long cache_clear(const char *type_prefix);

/* The "cache" object of GET /analytics/cache: {enabled, backend, status,
 * total_keys, hits, misses, hit_rate, memory_used_mb, evictions}. New ref. */
json_t *cache_stats_json(void);
/* For /analytics/health: {status:"healthy"|"degraded"|"disabled", backend, detail}. */
json_t *cache_health_json(void);
/* True when a configured backend cannot be reached right now. */
bool cache_degraded(void);

#endif
