/* cache_mem.c - the in-process cache backend: sharded hash tables with LRU
 * lists, a byte bound and per-entry TTL.
 *
 * Data structure: MEM_SHARDS shards, each with its own mutex, a chained hash
 * table (power-of-two buckets, doubled when entries outnumber buckets) and a
 * doubly-linked LRU list (head = most recently used). A key picks its shard
 * from the top bits of its hash, its bucket from the low bits. One entry is one
 * allocation: header, key bytes, NUL, value bytes, NUL.
 *
 * Bound: the sum of every entry's charge (cache_mem_entry_charge: header + key
 * + value + allocator overhead; bucket arrays are not counted) stays at or
 * under the limit (CACHE_MAX_MB). Each use stamps an entry with a global tick,
 * so each shard's tail is its oldest entry and the oldest of the 16 tails is
 * the least recently used entry of the whole cache: that one is evicted until
 * the total fits. Shard locks are never nested; a put inserts under its own
 * shard's lock, releases it, then evicts. Under concurrent puts the total may
 * overshoot briefly by the entries being inserted at that moment.
 *
 * An entry charged more than the whole bound is not stored at all.
 *
 * TTL: an entry past its expiry is a miss and is removed when read, when it
 * reaches an LRU tail, and by the sweep that every stats call runs (O(n),
 * for GET /analytics/cache) so that counts are exact. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cache_int.h"
#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"

#define MEM_SHARDS 16
#define MEM_SHARD_BITS 4
#define MEM_MIN_BUCKETS 64
#define MEM_ALLOC_OVERHEAD 16 /* smp_malloc's header per block */

typedef struct mem_entry {
    struct mem_entry *hnext;      /* next in the bucket chain */
    struct mem_entry *prev, *next; /* LRU neighbours: prev is more recent */
    uint64_t hash;
    uint64_t expires_ns; /* on the backend clock */
    uint64_t used_tick;  /* global recency stamp */
    size_t charge;
    size_t keylen, vallen;
    char data[]; /* key, NUL, value, NUL */
} mem_entry;

typedef struct mem_shard {
    pthread_mutex_t mu;
    mem_entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
    mem_entry *head, *tail;
} mem_shard;

static struct {
    mem_shard shard[MEM_SHARDS];
    bool ready;
    _Atomic size_t limit;
    _Atomic size_t bytes;
    _Atomic long entries;
    _Atomic long evictions;
    _Atomic uint64_t tick;
    _Atomic uint64_t skew_ns; /* test hook: added to the clock */
} M;

static uint64_t mem_now(void) { return util_now_ns() + atomic_load(&M.skew_ns); }

/* FNV-1a followed by a 64-bit finaliser so every bit depends on every byte. */
static uint64_t mem_hash(const char *key, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static mem_shard *shard_of(uint64_t hash) { return &M.shard[hash >> (64 - MEM_SHARD_BITS)]; }

size_t cache_mem_entry_charge(size_t keylen, size_t vallen) {
    return sizeof(mem_entry) + keylen + 1 + vallen + 1 + MEM_ALLOC_OVERHEAD;
}

/* ---- one shard; caller holds s->mu ---- */

static mem_entry **bucket_slot(mem_shard *s, uint64_t hash, const char *key, size_t keylen) {
    mem_entry **pp = &s->buckets[hash & (s->nbuckets - 1)];
    for (; *pp; pp = &(*pp)->hnext) {
        mem_entry *e = *pp;
        if (e->hash == hash && e->keylen == keylen && !memcmp(e->data, key, keylen)) return pp;
    }
    return pp;
}

static void lru_unlink(mem_shard *s, mem_entry *e) {
    if (e->prev) e->prev->next = e->next;
    else s->head = e->next;
    if (e->next) e->next->prev = e->prev;
    else s->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_head(mem_shard *s, mem_entry *e) {
    e->prev = NULL;
    e->next = s->head;
    if (s->head) s->head->prev = e;
    s->head = e;
    if (!s->tail) s->tail = e;
    e->used_tick = atomic_fetch_add(&M.tick, 1) + 1;
}

/* Take e out of the table and the list and the totals; the caller frees it. */
static void shard_remove(mem_shard *s, mem_entry *e) {
    mem_entry **pp = bucket_slot(s, e->hash, e->data, e->keylen);
    SMP_ASSERT(*pp == e);
    *pp = e->hnext;
    lru_unlink(s, e);
    s->count--;
    atomic_fetch_sub(&M.bytes, e->charge);
    atomic_fetch_sub(&M.entries, 1);
}

/* Double the bucket array; on allocation failure keep the old one (chains
 * just get longer). */
static void shard_grow(mem_shard *s) {
    size_t n = s->nbuckets * 2;
    mem_entry **nb = smp_calloc(n, sizeof *nb);
    if (!nb) return;
    for (size_t i = 0; i < s->nbuckets; i++) {
        mem_entry *e = s->buckets[i];
        while (e) {
            mem_entry *next = e->hnext;
            mem_entry **slot = &nb[e->hash & (n - 1)];
            e->hnext = *slot;
            *slot = e;
            e = next;
        }
    }
    smp_free(s->buckets);
    s->buckets = nb;
    s->nbuckets = n;
}

/* ---- backend ---- */

int cache_mem_init(size_t max_bytes) {
    memset(&M, 0, sizeof M);
    for (int i = 0; i < MEM_SHARDS; i++) {
        mem_shard *s = &M.shard[i];
        s->buckets = smp_calloc(MEM_MIN_BUCKETS, sizeof *s->buckets);
        if (!s->buckets) {
            for (int j = 0; j < i; j++) {
                pthread_mutex_destroy(&M.shard[j].mu);
                smp_free(M.shard[j].buckets);
            }
            return -1;
        }
        s->nbuckets = MEM_MIN_BUCKETS;
        pthread_mutex_init(&s->mu, NULL);
    }
    atomic_store(&M.limit, max_bytes);
    M.ready = true;
    return 0;
}

static void mem_shutdown(void) {
    if (!M.ready) return;
    for (int i = 0; i < MEM_SHARDS; i++) {
        mem_shard *s = &M.shard[i];
        for (mem_entry *e = s->head, *next; e; e = next) {
            next = e->next;
            smp_free(e);
        }
        smp_free(s->buckets);
        pthread_mutex_destroy(&s->mu);
    }
    memset(&M, 0, sizeof M);
}

static int mem_get(const char *key, char **val, size_t *len) {
    size_t keylen = strlen(key);
    uint64_t h = mem_hash(key, keylen);
    mem_shard *s = shard_of(h);
    mem_entry *dead = NULL;
    char *copy = NULL;
    size_t n = 0;

    pthread_mutex_lock(&s->mu);
    mem_entry *e = *bucket_slot(s, h, key, keylen);
    if (e && e->expires_ns <= mem_now()) {
        shard_remove(s, e);
        dead = e;
    } else if (e) {
        copy = smp_malloc(e->vallen + 1);
        if (copy) {
            n = e->vallen;
            memcpy(copy, e->data + e->keylen + 1, n + 1);
            lru_unlink(s, e);
            lru_push_head(s, e);
        }
    }
    pthread_mutex_unlock(&s->mu);

    smp_free(dead);
    if (!copy) return 0;
    *val = copy;
    *len = n;
    return 1;
}

/* The shard whose tail is the oldest entry, or -1 when the cache is empty. */
static int oldest_shard(void) {
    int best = -1;
    uint64_t best_tick = UINT64_MAX;
    for (int i = 0; i < MEM_SHARDS; i++) {
        mem_shard *s = &M.shard[i];
        pthread_mutex_lock(&s->mu);
        if (s->tail && s->tail->used_tick < best_tick) {
            best_tick = s->tail->used_tick;
            best = i;
        }
        pthread_mutex_unlock(&s->mu);
    }
    return best;
}

/* Evict least recently used entries until the total fits the limit. */
static void evict_to_limit(void) {
    while (atomic_load(&M.bytes) > atomic_load(&M.limit)) {
        int i = oldest_shard();
        if (i < 0) return;
        mem_shard *s = &M.shard[i];
        pthread_mutex_lock(&s->mu);
        mem_entry *e = s->tail;
        if (e) {
            if (e->expires_ns > mem_now()) atomic_fetch_add(&M.evictions, 1);
            shard_remove(s, e);
        }
        pthread_mutex_unlock(&s->mu);
        smp_free(e);
    }
}

static void mem_put(const char *key, const void *val, size_t len, long ttl_seconds) {
    size_t keylen = strlen(key);
    uint64_t h = mem_hash(key, keylen);
    mem_shard *s = shard_of(h);
    size_t charge = cache_mem_entry_charge(keylen, len);
    mem_entry *e = NULL;

    /* An entry that cannot fit is not stored, and must not leave an older
     * value behind under the same key either. */
    if (charge <= atomic_load(&M.limit)) e = smp_malloc(sizeof *e + keylen + 1 + len + 1);
    if (e) {
        memset(e, 0, sizeof *e);
        e->hash = h;
        e->keylen = keylen;
        e->vallen = len;
        e->charge = charge;
        e->expires_ns = mem_now() + (uint64_t)ttl_seconds * 1000000000ULL;
        memcpy(e->data, key, keylen + 1);
        if (len) memcpy(e->data + keylen + 1, val, len);
        e->data[keylen + 1 + len] = '\0';
    }

    pthread_mutex_lock(&s->mu);
    mem_entry *old = *bucket_slot(s, h, key, keylen);
    if (old) shard_remove(s, old);
    if (e) {
        mem_entry **b = &s->buckets[h & (s->nbuckets - 1)];
        e->hnext = *b;
        *b = e;
        lru_push_head(s, e);
        s->count++;
        atomic_fetch_add(&M.bytes, charge);
        atomic_fetch_add(&M.entries, 1);
        if (s->count > s->nbuckets) shard_grow(s);
    }
    pthread_mutex_unlock(&s->mu);

    smp_free(old);
    evict_to_limit();
}

/* Remove entries of one shard matching prefix (NULL: expired ones). */
static long shard_sweep(mem_shard *s, const char *prefix) {
    size_t plen = prefix ? strlen(prefix) : 0;
    uint64_t now = mem_now();
    mem_entry *dead = NULL;
    long n = 0;
    pthread_mutex_lock(&s->mu);
    for (mem_entry *e = s->head, *next; e; e = next) {
        next = e->next;
        bool match = prefix ? (e->keylen >= plen && !memcmp(e->data, prefix, plen)) : e->expires_ns <= now;
        if (!match) continue;
        shard_remove(s, e);
        e->next = dead; /* reuse the LRU link for the free list */
        dead = e;
        n++;
    }
    pthread_mutex_unlock(&s->mu);
    while (dead) {
        mem_entry *next = dead->next;
        smp_free(dead);
        dead = next;
    }
    return n;
}

static long mem_clear(const char *prefix) {
    long n = 0;
    for (int i = 0; i < MEM_SHARDS; i++) n += shard_sweep(&M.shard[i], prefix);
    return n;
}

static void mem_stats(cache_backend_stats *out) {
    for (int i = 0; i < MEM_SHARDS; i++) shard_sweep(&M.shard[i], NULL);
    out->reachable = true;
    out->keys = atomic_load(&M.entries);
    out->memory_mb = (double)atomic_load(&M.bytes) / (1024.0 * 1024.0);
    out->evictions = atomic_load(&M.evictions);
}

static bool mem_degraded(void) { return false; }

static bool mem_health(char *detail, size_t n) {
    snprintf(detail, n, "in-memory cache, %zu of %zu bytes used", atomic_load(&M.bytes),
             atomic_load(&M.limit));
    return true;
}

const cache_ops cache_mem_ops = {
    .name = "memory",
    .get = mem_get,
    .put = mem_put,
    .clear = mem_clear,
    .stats = mem_stats,
    .degraded = mem_degraded,
    .health = mem_health,
    .shutdown = mem_shutdown,
};

void cache_mem_test_set_limit(size_t max_bytes) {
    atomic_store(&M.limit, max_bytes);
    evict_to_limit();
}

void cache_mem_test_advance(uint64_t ns) { atomic_fetch_add(&M.skew_ns, ns); }
