/* test_cache_mem.c - the in-memory cache backend and what cache.c shares:
 * keys, TTLs per type, LRU eviction under a byte bound, prefix clear, stats,
 * disabled mode, metrics events and many threads at once. TTL uses the
 * backend's clock hook instead of sleeping. */
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>

#include "cache/cache.h"
#include "cache/cache_int.h"
#include "core/alloc.h"
#include "core/buf.h"
#include "core/config.h"
#include "core/log.h"
#include "core/util.h"
#include "obs/metrics.h"
#include "test.h"

#define SEC 1000000000ULL

/* Defaults with the memory backend, whatever the environment says. */
static int mem_config(config *c) {
    char err[256];
    log_set_level(LOG_WARN);
    if (config_load(c, "/nonexistent", err, sizeof err) < 0) {
        fprintf(stderr, "  config_load: %s\n", err);
        return -1;
    }
    smp_free(c->redis_url);
    c->redis_url = smp_strdup("");
    c->cache_enabled = true;
    c->cache_max_mb = 1;
    c->cache_ttl = 3600;
    c->cache_embedding_ttl = 100;
    c->cache_inference_ttl = 10;
    return 0;
}

static int get_str(cache_type t, const char *key, char **out) {
    size_t len = 0;
    *out = NULL;
    int hit = cache_get(t, key, out, &len);
    if (hit && strlen(*out) != len) {
        fprintf(stderr, "  length mismatch for %s\n", key);
        test_failures++;
    }
    return hit;
}

static bool has(cache_type t, const char *key) {
    char *v;
    int hit = get_str(t, key, &v);
    smp_free(v);
    return hit == 1;
}

static void put_str(cache_type t, const char *key, const char *val, long ttl) {
    cache_put(t, key, val, strlen(val), ttl);
}

TEST(cache_mem_put_get) {
    config c;
    REQUIRE(mem_config(&c) == 0);
    REQUIRE(cache_init(&c) == 0);
    CHECK(cache_enabled());
    CHECK(!cache_degraded());

    char *v = NULL;
    size_t len = 99;
    CHECK_INT(cache_get(CACHE_CHAT, "simpleton:chat:none", &v, &len), 0);
    CHECK(v == NULL);

    put_str(CACHE_CHAT, "simpleton:chat:a", "{\"answer\":42}", 0);
    CHECK_INT(cache_get(CACHE_CHAT, "simpleton:chat:a", &v, &len), 1);
    CHECK_INT(len, 13);
    CHECK_STR(v, "{\"answer\":42}");
    smp_free(v);

    /* overwrite replaces; binary bytes with a NUL inside survive */
    cache_put(CACHE_CHAT, "simpleton:chat:a", "x\0y", 3, 0);
    CHECK_INT(cache_get(CACHE_CHAT, "simpleton:chat:a", &v, &len), 1);
    CHECK_INT(len, 3);
    CHECK(v && !memcmp(v, "x\0y", 4)); /* and a NUL after the value */
    smp_free(v);

    /* empty value is a hit with length 0 */
    cache_put(CACHE_CHAT, "simpleton:chat:empty", "", 0, 0);
    CHECK_INT(cache_get(CACHE_CHAT, "simpleton:chat:empty", &v, &len), 1);
    CHECK_INT(len, 0);
    CHECK_STR(v, "");
    smp_free(v);

    /* bad keys are refused, never stored */
    put_str(CACHE_CHAT, "", "z", 0);
    CHECK_INT(cache_get(CACHE_CHAT, "", &v, &len), 0);
    cache_put(CACHE_CHAT, NULL, "z", 1, 0);
    CHECK_INT(cache_get(CACHE_CHAT, NULL, &v, &len), 0);

    cache_shutdown();
    config_free(&c);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(cache_mem_ttl_expiry) {
    config c;
    REQUIRE(mem_config(&c) == 0);
    REQUIRE(cache_init(&c) == 0);

    put_str(CACHE_OTHER, "simpleton:other:short", "v", 1);
    cache_mem_test_advance(SEC - SEC / 100); /* 0.99 s */
    CHECK(has(CACHE_OTHER, "simpleton:other:short"));
    cache_mem_test_advance(SEC / 50); /* 1.01 s */
    CHECK(!has(CACHE_OTHER, "simpleton:other:short"));
    json_t *st = cache_stats_json();
    CHECK_INT(json_integer_value(json_object_get(st, "total_keys")), 0); /* removed, not just hidden */
    json_decref(st);

    /* TTL per type: embedding 100 s, chat/inference 10 s, others 3600 s */
    put_str(CACHE_EMBEDDING, "simpleton:embedding:e", "e", 0);
    put_str(CACHE_CHAT, "simpleton:chat:c", "c", 0);
    put_str(CACHE_INFERENCE, "simpleton:inference:i", "i", 0);
    put_str(CACHE_VISION, "simpleton:vision:v", "v", 0);
    cache_mem_test_advance(11 * SEC);
    CHECK(!has(CACHE_CHAT, "simpleton:chat:c"));
    CHECK(!has(CACHE_INFERENCE, "simpleton:inference:i"));
    CHECK(has(CACHE_EMBEDDING, "simpleton:embedding:e"));
    cache_mem_test_advance(90 * SEC);
    CHECK(!has(CACHE_EMBEDDING, "simpleton:embedding:e"));
    CHECK(has(CACHE_VISION, "simpleton:vision:v"));
    cache_mem_test_advance(3600 * SEC);
    CHECK(!has(CACHE_VISION, "simpleton:vision:v"));

    cache_shutdown();
    config_free(&c);
}

TEST(cache_mem_lru_eviction) {
    config c;
    REQUIRE(mem_config(&c) == 0);
    REQUIRE(cache_init(&c) == 0);
    /* keys of one length, values of one length: room for exactly 3 */
    char keys[5][CACHE_KEY_MAX];
    for (int i = 0; i < 5; i++) {
        json_t *f = json_pack("{s:i}", "n", i);
        cache_key(CACHE_RAG, f, keys[i]);
        json_decref(f);
    }
    size_t one = cache_mem_entry_charge(strlen(keys[0]), 8);
    cache_mem_test_set_limit(3 * one + one / 2);

    put_str(CACHE_RAG, keys[0], "value-00", 0);
    put_str(CACHE_RAG, keys[1], "value-01", 0);
    put_str(CACHE_RAG, keys[2], "value-02", 0);
    CHECK(has(CACHE_RAG, keys[0])); /* 0 is now the most recently used; 1 the least */
    put_str(CACHE_RAG, keys[3], "value-03", 0);
    CHECK(!has(CACHE_RAG, keys[1]));
    CHECK(has(CACHE_RAG, keys[0]));
    CHECK(has(CACHE_RAG, keys[2]));
    CHECK(has(CACHE_RAG, keys[3]));
    /* order of use now 0, 2, 3 (oldest first): the next put evicts 0 */
    put_str(CACHE_RAG, keys[4], "value-04", 0);
    CHECK(!has(CACHE_RAG, keys[0]));
    CHECK(has(CACHE_RAG, keys[2]));

    json_t *st = cache_stats_json();
    CHECK_INT(json_integer_value(json_object_get(st, "evictions")), 2);
    CHECK_INT(json_integer_value(json_object_get(st, "total_keys")), 3);
    CHECK_NEAR(json_real_value(json_object_get(st, "memory_used_mb")), 3.0 * one / 1048576.0, 1e-12);
    json_decref(st);

    /* an entry larger than the whole bound is not stored and leaves the rest */
    char big[2048];
    memset(big, 'b', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cache_mem_test_set_limit(3 * one + one / 2);
    put_str(CACHE_RAG, "simpleton:rag:big", big, 0);
    CHECK(!has(CACHE_RAG, "simpleton:rag:big"));
    CHECK(has(CACHE_RAG, keys[3]));

    /* lowering the bound evicts at once */
    cache_mem_test_set_limit(one);
    st = cache_stats_json();
    CHECK_INT(json_integer_value(json_object_get(st, "total_keys")), 1);
    json_decref(st);

    cache_shutdown();
    config_free(&c);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(cache_mem_expired_entry_is_not_an_eviction) {
    config c;
    REQUIRE(mem_config(&c) == 0);
    REQUIRE(cache_init(&c) == 0);
    size_t one = cache_mem_entry_charge(strlen("simpleton:other:k0"), 1);
    cache_mem_test_set_limit(2 * one);
    put_str(CACHE_OTHER, "simpleton:other:k0", "a", 1);
    put_str(CACHE_OTHER, "simpleton:other:k1", "b", 0);
    cache_mem_test_advance(2 * SEC);
    put_str(CACHE_OTHER, "simpleton:other:k2", "c", 0); /* pushes out the expired k0 */
    json_t *st = cache_stats_json();
    CHECK_INT(json_integer_value(json_object_get(st, "evictions")), 0);
    CHECK_INT(json_integer_value(json_object_get(st, "total_keys")), 2);
    json_decref(st);
    cache_shutdown();
    config_free(&c);
}

TEST(cache_mem_clear_prefix) {
    config c;
    REQUIRE(mem_config(&c) == 0);
    REQUIRE(cache_init(&c) == 0);
    put_str(CACHE_EMBEDDING, "simpleton:embedding:1", "a", 0);
    put_str(CACHE_EMBEDDING, "simpleton:embedding:2", "b", 0);
    put_str(CACHE_CHAT, "simpleton:chat:1", "c", 0);
    put_str(CACHE_CHAT, "simpleton:chatty:1", "d", 0); /* a prefix of a name is not the name */

    CHECK_INT(cache_clear("emb*"), 0); /* not a type name: nothing happens */
    CHECK_INT(cache_clear("embedding"), 2);
    CHECK(!has(CACHE_EMBEDDING, "simpleton:embedding:1"));
    CHECK(has(CACHE_CHAT, "simpleton:chat:1"));
    CHECK_INT(cache_clear("simpleton:chat"), 1);
    CHECK(has(CACHE_CHAT, "simpleton:chatty:1"));
    CHECK_INT(cache_clear(NULL), 1);
    CHECK(!has(CACHE_CHAT, "simpleton:chatty:1"));
    CHECK_INT(cache_clear(NULL), 0);

    cache_shutdown();
    config_free(&c);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(cache_mem_stats_and_metrics) {
    config c;
    REQUIRE(mem_config(&c) == 0);
    REQUIRE(metrics_init("test") == 0);
    REQUIRE(cache_init(&c) == 0);

    json_t *st = cache_stats_json();
    CHECK(json_is_true(json_object_get(st, "enabled")));
    CHECK_STR(json_string_value(json_object_get(st, "backend")), "memory");
    CHECK_STR(json_string_value(json_object_get(st, "status")), "connected");
    CHECK_NEAR(json_real_value(json_object_get(st, "hit_rate")), 0, 0); /* no lookups yet */
    json_decref(st);

    put_str(CACHE_EMBEDDING, "simpleton:embedding:x", "[0.5]", 0);
    CHECK(has(CACHE_EMBEDDING, "simpleton:embedding:x"));
    CHECK(has(CACHE_EMBEDDING, "simpleton:embedding:x"));
    CHECK(has(CACHE_EMBEDDING, "simpleton:embedding:x"));
    CHECK(!has(CACHE_CHAT, "simpleton:chat:nope"));

    st = cache_stats_json();
    CHECK_INT(json_integer_value(json_object_get(st, "hits")), 3);
    CHECK_INT(json_integer_value(json_object_get(st, "misses")), 1);
    CHECK_NEAR(json_real_value(json_object_get(st, "hit_rate")), 0.75, 1e-12);
    CHECK_INT(json_integer_value(json_object_get(st, "total_keys")), 1);
    CHECK(json_real_value(json_object_get(st, "memory_used_mb")) > 0);
    CHECK_INT(json_integer_value(json_object_get(st, "evictions")), 0);
    json_t *bt = json_object_get(st, "by_type");
    CHECK_INT(json_integer_value(json_object_get(json_object_get(bt, "embedding"), "hits")), 3);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(bt, "chat"), "misses")), 1);
    json_decref(st);

    json_t *h = cache_health_json();
    CHECK_STR(json_string_value(json_object_get(h, "status")), "healthy");
    CHECK_STR(json_string_value(json_object_get(h, "backend")), "memory");
    json_decref(h);

    buf out;
    buf_init(&out, 0);
    metrics_render(&out);
    CHECK(strstr(out.data, "simpleton_cache_hits_total{cache_type=\"embedding\"} 3") != NULL);
    CHECK(strstr(out.data, "simpleton_cache_misses_total{cache_type=\"chat\"} 1") != NULL);
    buf_free(&out);

    cache_shutdown();
    metrics_free();
    config_free(&c);
}

TEST(cache_mem_disabled) {
    config c;
    REQUIRE(mem_config(&c) == 0);
    c.cache_enabled = false;
    REQUIRE(cache_init(&c) == 0);
    CHECK(!cache_enabled());
    CHECK(!cache_degraded());
    put_str(CACHE_CHAT, "simpleton:chat:a", "v", 0);
    CHECK(!has(CACHE_CHAT, "simpleton:chat:a"));
    CHECK_INT(cache_clear(NULL), 0);

    json_t *st = cache_stats_json();
    CHECK(json_is_false(json_object_get(st, "enabled")));
    CHECK_STR(json_string_value(json_object_get(st, "status")), "disabled");
    CHECK_INT(json_integer_value(json_object_get(st, "total_keys")), 0);
    CHECK_INT(json_integer_value(json_object_get(st, "misses")), 0); /* no lookup was made */
    json_decref(st);
    json_t *h = cache_health_json();
    CHECK_STR(json_string_value(json_object_get(h, "status")), "disabled");
    json_decref(h);

    cache_shutdown();
    config_free(&c);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

TEST(cache_key_format) {
    char k1[CACHE_KEY_MAX], k2[CACHE_KEY_MAX], k3[CACHE_KEY_MAX];
    json_t *a = json_pack("{s:s,s:i,s:[i,i]}", "model", "m", "n", 1, "xs", 1, 2);
    json_t *b = json_pack("{s:[i,i],s:i,s:s}", "xs", 1, 2, "n", 1, "model", "m");
    json_t *d = json_pack("{s:s,s:i,s:[i,i]}", "model", "m", "n", 2, "xs", 1, 2);
    cache_key(CACHE_EMBEDDING, a, k1);
    cache_key(CACHE_EMBEDDING, b, k2);
    cache_key(CACHE_EMBEDDING, d, k3);
    CHECK_STR(k1, k2); /* field order does not matter */
    CHECK(strcmp(k1, k3) != 0);

    /* canonical text: compact, keys sorted. sha256('{"model":"m","n":1,"xs":[1,2]}') */
    char hex[65], want[CACHE_KEY_MAX];
    const char *canon = "{\"model\":\"m\",\"n\":1,\"xs\":[1,2]}";
    util_sha256_hex(canon, strlen(canon), hex);
    snprintf(want, sizeof want, "simpleton:embedding:%s", hex);
    CHECK_STR(k1, want);
    CHECK_INT(strlen(k1), strlen("simpleton:embedding:") + 64);

    /* non-ASCII is escaped, so "é" and "\u00e9" in a request give one key */
    json_t *u = json_pack("{s:s}", "p", "caf\xc3\xa9");
    cache_key(CACHE_CHAT, u, k3);
    canon = "{\"p\":\"caf\\u00E9\"}"; /* jansson writes upper-case hex */
    util_sha256_hex(canon, strlen(canon), hex);
    snprintf(want, sizeof want, "simpleton:chat:%s", hex);
    CHECK_STR(k3, want);

    for (int t = 0; t < CACHE__COUNT; t++) CHECK_INT(cache_type_parse(cache_type_name((cache_type)t)), t);
    CHECK_INT(cache_type_parse("nope"), -1);
    CHECK_STR(cache_type_name(CACHE_INFERENCE), "inference");
    json_decref(a);
    json_decref(b);
    json_decref(d);
    json_decref(u);
}

/* ---- many threads ---- */

#define THREADS 4
#define OPS 4000

typedef struct {
    unsigned seed;
    long gets, bad;
} work;

static void *worker(void *arg) {
    work *w = arg;
    for (int i = 0; i < OPS; i++) {
        int k = (int)(rand_r(&w->seed) % 300);
        char key[64], val[64];
        snprintf(key, sizeof key, "simpleton:%s:k%d", k % 2 ? "chat" : "embedding", k);
        snprintf(val, sizeof val, "value of key %d", k);
        int op = (int)(rand_r(&w->seed) % 100);
        if (op < 50) {
            char *v;
            size_t n;
            w->gets++;
            if (cache_get(k % 2 ? CACHE_CHAT : CACHE_EMBEDDING, key, &v, &n)) {
                if (n != strlen(val) || strcmp(v, val)) w->bad++;
                smp_free(v);
            }
        } else if (op < 98) {
            cache_put(k % 2 ? CACHE_CHAT : CACHE_EMBEDDING, key, val, strlen(val), 0);
        } else if (op < 99) {
            cache_clear("chat");
        } else {
            json_decref(cache_stats_json());
        }
    }
    return NULL;
}

TEST(cache_mem_concurrency) {
    config c;
    REQUIRE(mem_config(&c) == 0);
    REQUIRE(cache_init(&c) == 0);
    size_t limit = 100 * cache_mem_entry_charge(24, 20); /* about a third of the keys fit */
    cache_mem_test_set_limit(limit);

    pthread_t th[THREADS];
    work w[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (work){.seed = (unsigned)i + 1};
        pthread_create(&th[i], NULL, worker, &w[i]);
    }
    long bad = 0, gets = 0;
    for (int i = 0; i < THREADS; i++) {
        pthread_join(th[i], NULL);
        bad += w[i].bad;
        gets += w[i].gets;
    }
    CHECK_INT(bad, 0);

    json_t *st = cache_stats_json();
    CHECK(json_real_value(json_object_get(st, "memory_used_mb")) * 1048576.0 <= (double)limit);
    CHECK(json_integer_value(json_object_get(st, "evictions")) > 0);
    CHECK(json_integer_value(json_object_get(st, "hits")) > 0);
    CHECK_INT(json_integer_value(json_object_get(st, "hits")) + json_integer_value(json_object_get(st, "misses")), gets);
    json_decref(st);

    /* the count and byte total agree with what a full clear finds */
    st = cache_stats_json();
    long keys = (long)json_integer_value(json_object_get(st, "total_keys"));
    json_decref(st);
    CHECK_INT(cache_clear(NULL), keys);
    st = cache_stats_json();
    CHECK_NEAR(json_real_value(json_object_get(st, "memory_used_mb")), 0, 0);
    json_decref(st);

    cache_shutdown();
    config_free(&c);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}
