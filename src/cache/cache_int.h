/* cache_int.h - what cache.c shares with its two backends (private).
 *
 * A backend is a table of functions (cache_ops) over one process-wide
 * instance. cache.c chooses one at cache_init, checks that the cache is on,
 * counts hits and misses, and passes full keys ("simpleton:<type>:<hex>") and
 * key prefixes ("simpleton:" or "simpleton:<type>:") through unchanged.
 * Backends never report errors to cache.c except through get's miss, clear's
 * -1 and the stats/health fields. The test hooks at the end exist for the unit
 * tests only. */
#ifndef SMP_CACHE_INT_H
#define SMP_CACHE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CACHE_KEY_PREFIX "simpleton:"
/* Longest key a caller may pass (cache_key makes < CACHE_KEY_MAX). */
#define CACHE_KEY_LIMIT 512
/* Largest value stored (a cache entry's cap; larger puts are ignored). */
#define CACHE_VALUE_MAX ((size_t)64 << 20)

typedef struct cache_backend_stats {
    bool reachable;   /* false: the backend cannot be used right now */
    long keys;        /* Simpleton's entries (-1: unknown) */
    double memory_mb; /* memory: our bytes; redis: the server's used_memory */
    long evictions;   /* memory: LRU evictions; redis: server evicted_keys */
} cache_backend_stats;

typedef struct cache_ops {
    const char *name; /* "memory" | "redis" */
    /* 1: hit, *val a NUL-terminated smp_malloc copy of *len bytes; 0: miss. */
    int (*get)(const char *key, char **val, size_t *len);
    void (*put)(const char *key, const void *val, size_t len, long ttl_seconds);
    /* Delete every key starting with prefix; count deleted, -1 unreachable. */
    long (*clear)(const char *prefix);
    void (*stats)(cache_backend_stats *out);
    /* Current state without I/O. */
    bool (*degraded)(void);
    /* true when usable; may probe the backend. detail gets a short text. */
    bool (*health)(char *detail, size_t n);
    void (*shutdown)(void);
} cache_ops;

/* cache_mem.c: bounded by max_bytes (entries + their overhead). */
extern const cache_ops cache_mem_ops;
int cache_mem_init(size_t max_bytes);

/* cache_redis.c: url as in REDIS_URL; connect and command timeout in ms.
 * An unreachable server is not an error (the backend starts degraded); a
 * malformed or unsupported URL is (-1, message logged). */
extern const cache_ops cache_redis_ops;
int cache_redis_init(const char *url, long timeout_ms);

/* Parsed REDIS_URL (exposed for tests). Strings are smp_malloc'd or NULL. */
typedef struct cache_redis_target {
    char *host; /* TCP host (NULL for unix) */
    int port;
    char *path; /* unix socket path (NULL for TCP) */
    char *user, *password;
    long db;
} cache_redis_target;
int cache_redis_parse_url(const char *url, cache_redis_target *t, char *err, size_t errlen);
void cache_redis_target_free(cache_redis_target *t);

/* Test hooks for cache_mem.c. */
/* Bytes one entry is charged (key, value, header, allocator overhead). */
size_t cache_mem_entry_charge(size_t keylen, size_t vallen);
/* Replace the byte bound (evicting at once if over it). */
void cache_mem_test_set_limit(size_t max_bytes);
/* Move the backend's TTL clock forward. */
void cache_mem_test_advance(uint64_t ns);

#endif
