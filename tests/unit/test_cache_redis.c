/* test_cache_redis.c - the Redis cache backend against a real redis-server.
 *
 * Each test starts its own redis-server (no persistence, 127.0.0.1, a free
 * port, a temp dir) and kills it on every path out: explicitly at the end,
 * and through PR_SET_PDEATHSIG if the test process dies first. A missing
 * redis-server is a failure, not a skip. Also: REDIS_URL parsing, an outage
 * (SIGKILL) and recovery on the same port without re-initialising, a start
 * with Redis down, and a server that accepts connections but never answers. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <jansson.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cache/cache.h"
#include "cache/cache_int.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "core/util.h"
#include "test.h"

typedef struct {
    pid_t pid;
    int port;
    char dir[64];
    const char *password; /* --requirepass, or NULL */
} redis_proc;

static double now_s(void) { return (double)util_now_ns() / 1e9; }

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static const char *redis_server_path(void) {
    static const char *paths[] = {"/usr/bin/redis-server", "/usr/local/bin/redis-server", "/usr/sbin/redis-server"};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++)
        if (access(paths[i], X_OK) == 0) return paths[i];
    return NULL;
}

/* A direct connection for checking what is really in Redis. */
static redisContext *direct(int port) {
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    if (c) redisSetTimeout(c, tv);
    return c;
}

/* Start redis-server on r->port (0: pick one) and wait until it answers. */
static int redis_start(redis_proc *r, int port) {
    const char *exe = redis_server_path();
    if (!exe) {
        fprintf(stderr, "  redis-server is not installed (apt-get install redis-server, or scripts/deps.sh test): "
                        "the Redis cache tests need it\n");
        return -1;
    }
    if (!r->dir[0]) {
        snprintf(r->dir, sizeof r->dir, "/tmp/smp-redis-XXXXXX");
        if (!mkdtemp(r->dir)) {
            fprintf(stderr, "  mkdtemp failed\n");
            r->dir[0] = '\0';
            return -1;
        }
    }
    r->port = port ? port : free_port();
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", r->port);
    pid_t parent = getpid();
    r->pid = fork();
    if (r->pid < 0) return -1;
    if (r->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() != parent) _exit(127);
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        execl(exe, "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
              "--dir", r->dir, "--daemonize", "no", "--loglevel", "warning", "--requirepass",
              r->password ? r->password : "", (char *)NULL);
        _exit(127);
    }
    for (double deadline = now_s() + 5; now_s() < deadline; sleep_ms(10)) {
        int st;
        if (waitpid(r->pid, &st, WNOHANG) == r->pid) {
            fprintf(stderr, "  redis-server exited at start (port %d)\n", r->port);
            r->pid = 0;
            return -1;
        }
        redisContext *c = direct(r->port);
        if (!c) continue;
        redisReply *rep = redisCommand(c, "PING"); /* any answer, NOAUTH included */
        bool ok = rep != NULL;
        if (rep) freeReplyObject(rep);
        redisFree(c);
        if (ok) return 0;
    }
    fprintf(stderr, "  redis-server did not answer on port %d within 5 s\n", r->port);
    return -1;
}

static void redis_kill(redis_proc *r) {
    if (r->pid > 0) {
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
    }
    r->pid = 0;
}

static void redis_cleanup(redis_proc *r) {
    redis_kill(r);
    if (r->dir[0]) {
        char path[128];
        snprintf(path, sizeof path, "%s/dump.rdb", r->dir);
        unlink(path);
        rmdir(r->dir);
    }
}

static int redis_config(config *c, int port, long timeout_ms) {
    char err[256], url[64];
    log_set_level(LOG_OFF); /* outages are logged as warnings; keep the test output clean */
    if (config_load(c, "/nonexistent", err, sizeof err) < 0) {
        fprintf(stderr, "  config_load: %s\n", err);
        return -1;
    }
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    smp_free(c->redis_url);
    c->redis_url = smp_strdup(url);
    c->redis_timeout_ms = timeout_ms;
    c->cache_enabled = true;
    c->cache_ttl = 3600;
    c->cache_embedding_ttl = 7200;
    c->cache_inference_ttl = 600;
    return 0;
}

static bool has(cache_type t, const char *key) {
    char *v = NULL;
    size_t n;
    int hit = cache_get(t, key, &v, &n);
    smp_free(v);
    return hit == 1;
}

static void put_str(cache_type t, const char *key, const char *val, long ttl) {
    cache_put(t, key, val, strlen(val), ttl);
}

static long long direct_int(redisContext *d, const char *cmd, const char *key) {
    redisReply *r = redisCommand(d, "%s %s", cmd, key);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
    if (r) freeReplyObject(r);
    return v;
}

/* ---- URL parsing (no server) ---- */

TEST(cache_redis_url_parse) {
    cache_redis_target t;
    char err[256];
    CHECK_INT(cache_redis_parse_url("redis://localhost:6380/2", &t, err, sizeof err), 0);
    CHECK_STR(t.host, "localhost");
    CHECK_INT(t.port, 6380);
    CHECK_INT(t.db, 2);
    CHECK(t.password == NULL && t.user == NULL && t.path == NULL);
    cache_redis_target_free(&t);

    CHECK_INT(cache_redis_parse_url("redis://:s%40cret@10.0.0.5", &t, err, sizeof err), 0);
    CHECK_STR(t.host, "10.0.0.5");
    CHECK_INT(t.port, 6379);
    CHECK_STR(t.password, "s@cret");
    CHECK(t.user == NULL);
    CHECK_INT(t.db, 0);
    cache_redis_target_free(&t);

    CHECK_INT(cache_redis_parse_url("redis://alice:pw@[::1]:7000/", &t, err, sizeof err), 0);
    CHECK_STR(t.host, "::1");
    CHECK_INT(t.port, 7000);
    CHECK_STR(t.user, "alice");
    CHECK_STR(t.password, "pw");
    cache_redis_target_free(&t);

    CHECK_INT(cache_redis_parse_url("redis://", &t, err, sizeof err), 0);
    CHECK_STR(t.host, "localhost");
    cache_redis_target_free(&t);

    CHECK_INT(cache_redis_parse_url("unix://:pw@/run/redis.sock?db=3", &t, err, sizeof err), 0);
    CHECK_STR(t.path, "/run/redis.sock");
    CHECK_STR(t.password, "pw");
    CHECK_INT(t.db, 3);
    CHECK(t.host == NULL);
    cache_redis_target_free(&t);

    CHECK_INT(cache_redis_parse_url("unix:///tmp/a@b.sock", &t, err, sizeof err), 0);
    CHECK_STR(t.path, "/tmp/a@b.sock");
    CHECK(t.password == NULL);
    cache_redis_target_free(&t);

    CHECK_INT(cache_redis_parse_url("redis://:p@ss@h:1/5?db=6", &t, err, sizeof err), 0);
    CHECK_STR(t.password, "p@ss");
    CHECK_STR(t.host, "h");
    CHECK_INT(t.db, 6); /* the query wins */
    cache_redis_target_free(&t);

    CHECK_INT(cache_redis_parse_url("redis://u:@h", &t, err, sizeof err), 0);
    CHECK_STR(t.user, "u");
    CHECK(t.password == NULL);
    cache_redis_target_free(&t);

    CHECK_INT(cache_redis_parse_url("redis://h:0", &t, err, sizeof err), -1);
    CHECK(strstr(err, "port") != NULL);
    CHECK_INT(cache_redis_parse_url("redis://h:99999", &t, err, sizeof err), -1);
    CHECK_INT(cache_redis_parse_url("redis://h/x", &t, err, sizeof err), -1);
    CHECK_INT(cache_redis_parse_url("redis://:%zz@h", &t, err, sizeof err), -1);
    CHECK_INT(cache_redis_parse_url("rediss://h", &t, err, sizeof err), -1);
    CHECK(strstr(err, "TLS") != NULL);
    CHECK_INT(cache_redis_parse_url("http://h", &t, err, sizeof err), -1);
    CHECK_INT(cache_redis_parse_url("unix://relative.sock", &t, err, sizeof err), -1);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

/* ---- against a live server ---- */

static void put_get_body(redis_proc *r) {
    config c;
    REQUIRE(redis_config(&c, r->port, 250) == 0);
    REQUIRE(cache_init(&c) == 0);
    CHECK(cache_enabled());
    CHECK(!cache_degraded());
    redisContext *d = direct(r->port);
    REQUIRE(d != NULL);

    char key[CACHE_KEY_MAX];
    json_t *f = json_pack("{s:s,s:s}", "model", "m", "prompt", "hi");
    cache_key(CACHE_CHAT, f, key);
    json_decref(f);
    CHECK(!has(CACHE_CHAT, key));
    cache_put(CACHE_CHAT, key, "{\"r\":\"x\\u0000\"}\0tail", 20, 0); /* bytes after a NUL too */
    char *v = NULL;
    size_t n = 0;
    CHECK_INT(cache_get(CACHE_CHAT, key, &v, &n), 1);
    CHECK_INT(n, 20);
    CHECK(v && !memcmp(v, "{\"r\":\"x\\u0000\"}\0tail", 21));
    smp_free(v);

    /* stored under exactly that key, with the chat TTL */
    CHECK_INT(direct_int(d, "EXISTS", key), 1);
    long long ttl = direct_int(d, "TTL", key);
    CHECK(ttl > 590 && ttl <= 600);
    put_str(CACHE_EMBEDDING, "simpleton:embedding:e1", "[1]", 0);
    ttl = direct_int(d, "TTL", "simpleton:embedding:e1");
    CHECK(ttl > 7190 && ttl <= 7200);

    /* TTL expiry: EX 1, then about 1.2 s later a miss */
    put_str(CACHE_OTHER, "simpleton:other:short", "v", 1);
    CHECK(has(CACHE_OTHER, "simpleton:other:short"));
    sleep_ms(1200);
    CHECK(!has(CACHE_OTHER, "simpleton:other:short"));

    json_t *st = cache_stats_json();
    CHECK(json_is_true(json_object_get(st, "enabled")));
    CHECK_STR(json_string_value(json_object_get(st, "backend")), "redis");
    CHECK_STR(json_string_value(json_object_get(st, "status")), "connected");
    CHECK_INT(json_integer_value(json_object_get(st, "total_keys")), 2);
    CHECK_INT(json_integer_value(json_object_get(st, "hits")), 2);
    CHECK_INT(json_integer_value(json_object_get(st, "misses")), 2);
    CHECK_NEAR(json_real_value(json_object_get(st, "hit_rate")), 0.5, 1e-12);
    CHECK(json_real_value(json_object_get(st, "memory_used_mb")) > 0);
    json_decref(st);
    json_t *h = cache_health_json();
    CHECK_STR(json_string_value(json_object_get(h, "status")), "healthy");
    CHECK_STR(json_string_value(json_object_get(h, "backend")), "redis");
    json_decref(h);

    redisFree(d);
    cache_shutdown();
    config_free(&c);
}

TEST(cache_redis_put_get_ttl) {
    redis_proc r = {0};
    if (redis_start(&r, 0) == 0) put_get_body(&r);
    else test_failures++;
    cache_shutdown();
    redis_cleanup(&r);
}

static void clear_body(redis_proc *r) {
    config c;
    REQUIRE(redis_config(&c, r->port, 250) == 0);
    REQUIRE(cache_init(&c) == 0);
    redisContext *d = direct(r->port);
    REQUIRE(d != NULL);
    redisReply *rep = redisCommand(d, "SET user:key keep");
    REQUIRE(rep && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    rep = redisCommand(d, "SET simpletonish keep"); /* not under "simpleton:" */
    freeReplyObject(rep);

    /* more than one SCAN batch of embeddings */
    for (int i = 0; i < 1200; i++) {
        char key[64];
        snprintf(key, sizeof key, "simpleton:embedding:%04d", i);
        put_str(CACHE_EMBEDDING, key, "[0.25]", 0);
    }
    put_str(CACHE_CHAT, "simpleton:chat:1", "a", 0);
    put_str(CACHE_CHAT, "simpleton:chat:2", "b", 0);

    json_t *st = cache_stats_json();
    CHECK_INT(json_integer_value(json_object_get(st, "total_keys")), 1202);
    json_decref(st);

    CHECK_INT(cache_clear("embedding"), 1200);
    CHECK(!has(CACHE_EMBEDDING, "simpleton:embedding:0000"));
    CHECK(has(CACHE_CHAT, "simpleton:chat:1"));
    CHECK_INT(direct_int(d, "EXISTS", "user:key"), 1);
    CHECK_INT(cache_clear("no*such"), 0); /* not a type name: ignored */
    CHECK_INT(cache_clear(NULL), 2);
    CHECK(!has(CACHE_CHAT, "simpleton:chat:1"));
    CHECK_INT(direct_int(d, "EXISTS", "user:key"), 1);
    CHECK_INT(direct_int(d, "EXISTS", "simpletonish"), 1);
    CHECK_INT(cache_clear(NULL), 0);

    redisFree(d);
    cache_shutdown();
    config_free(&c);
}

TEST(cache_redis_clear_prefix) {
    redis_proc r = {0};
    if (redis_start(&r, 0) == 0) clear_body(&r);
    else test_failures++;
    cache_shutdown();
    redis_cleanup(&r);
}

/* Poll for up to `seconds` until a put followed by a get hits. */
static bool recovers_within(double seconds) {
    for (double deadline = now_s() + seconds; now_s() < deadline; sleep_ms(50)) {
        put_str(CACHE_CHAT, "simpleton:chat:probe", "back", 0);
        if (has(CACHE_CHAT, "simpleton:chat:probe")) return true;
    }
    return false;
}

static void outage_body(redis_proc *r) {
    config c;
    REQUIRE(redis_config(&c, r->port, 250) == 0);
    REQUIRE(cache_init(&c) == 0);
    put_str(CACHE_CHAT, "simpleton:chat:a", "1", 0);
    REQUIRE(has(CACHE_CHAT, "simpleton:chat:a"));

    redis_kill(r);

    double t0 = now_s();
    CHECK(!has(CACHE_CHAT, "simpleton:chat:a"));
    double t_get = now_s() - t0;
    CHECK(t_get < 1.0);
    CHECK(cache_degraded());
    t0 = now_s();
    put_str(CACHE_CHAT, "simpleton:chat:b", "2", 0); /* no-op, no error */
    CHECK(now_s() - t0 < 1.0);
    CHECK(!has(CACHE_CHAT, "simpleton:chat:b"));
    CHECK_INT(cache_clear(NULL), -1);

    json_t *h = cache_health_json();
    CHECK_STR(json_string_value(json_object_get(h, "status")), "degraded");
    const char *detail = json_string_value(json_object_get(h, "detail"));
    CHECK(detail && strstr(detail, "unreachable"));
    json_decref(h);
    json_t *st = cache_stats_json();
    CHECK_STR(json_string_value(json_object_get(st, "status")), "error");
    json_decref(st);

    /* many calls while down stay fast: no connection storm */
    t0 = now_s();
    for (int i = 0; i < 200; i++) has(CACHE_CHAT, "simpleton:chat:a");
    CHECK(now_s() - t0 < 1.0);

    /* same port, new server (empty: no persistence), same cache */
    REQUIRE(redis_start(r, r->port) == 0);
    CHECK(recovers_within(8.0));
    CHECK(!cache_degraded());
    h = cache_health_json();
    CHECK_STR(json_string_value(json_object_get(h, "status")), "healthy");
    json_decref(h);
    st = cache_stats_json();
    CHECK_STR(json_string_value(json_object_get(st, "status")), "connected");
    json_decref(st);

    cache_shutdown();
    config_free(&c);
}

TEST(cache_redis_outage_and_recovery) {
    redis_proc r = {0};
    if (redis_start(&r, 0) == 0) outage_body(&r);
    else test_failures++;
    cache_shutdown();
    redis_cleanup(&r);
}

/* Redis not yet running when Simpleton starts: degraded, then used once up. */
static void late_start_body(redis_proc *r) {
    config c;
    int port = free_port();
    REQUIRE(redis_config(&c, port, 250) == 0);
    double t0 = now_s();
    REQUIRE(cache_init(&c) == 0);
    CHECK(now_s() - t0 < 1.0);
    CHECK(cache_degraded());
    CHECK(!has(CACHE_CHAT, "simpleton:chat:x"));
    REQUIRE(redis_start(r, port) == 0);
    CHECK(recovers_within(8.0));
    CHECK(!cache_degraded());
    cache_shutdown();
    config_free(&c);
}

TEST(cache_redis_starts_degraded) {
    redis_proc r = {0};
    late_start_body(&r);
    cache_shutdown();
    redis_cleanup(&r);
}

/* A server that accepts TCP connections (the kernel's backlog) but never
 * answers: each call blocks at most about the timeouts, and while backing off
 * calls do not touch the network at all. */
TEST(cache_redis_unresponsive_server) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 64) == 0);
    REQUIRE(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    config c;
    REQUIRE(redis_config(&c, ntohs(a.sin_port), 200) == 0);

    double t0 = now_s();
    REQUIRE(cache_init(&c) == 0); /* connect works, PING times out */
    double t_init = now_s() - t0;
    CHECK(t_init >= 0.15 && t_init < 0.8);
    CHECK(cache_degraded());

    double worst = 0;
    int slow = 0;
    t0 = now_s();
    while (now_s() - t0 < 1.5) {
        double t1 = now_s();
        CHECK(!has(CACHE_CHAT, "simpleton:chat:x"));
        double dt = now_s() - t1;
        if (dt > worst) worst = dt;
        if (dt > 0.05) slow++;
        sleep_ms(5);
    }
    CHECK(worst < 0.6);            /* one connect + one timed-out PING at most */
    CHECK(slow >= 1 && slow <= 5); /* probes at +0.1, +0.2, +0.4, +0.8 s: not one per call */
    CHECK(cache_degraded());
    json_t *h = cache_health_json();
    CHECK_STR(json_string_value(json_object_get(h, "status")), "degraded");
    json_decref(h);
    cache_shutdown();
    config_free(&c);
    close(fd);
}

/* ---- many threads through the pool (more threads than connections), with
 * the server killed and restarted underneath them ---- */

#define RTHREADS 6

typedef struct {
    int id;
    _Atomic int *stop;
    long ops, bad;
    _Atomic long hits; /* read by the main thread while running */
    double worst;
} rwork;

static void *rworker(void *arg) {
    rwork *w = arg;
    for (int i = 0; !atomic_load(w->stop); i++) {
        char key[64], val[64];
        snprintf(key, sizeof key, "simpleton:chat:t%d-%d", w->id, i % 50);
        snprintf(val, sizeof val, "thread %d value %d", w->id, i % 50);
        double t0 = now_s();
        if (i % 2 == 0) {
            put_str(CACHE_CHAT, key, val, 0);
        } else {
            snprintf(key, sizeof key, "simpleton:chat:t%d-%d", w->id, (i - 1) % 50);
            snprintf(val, sizeof val, "thread %d value %d", w->id, (i - 1) % 50);
            char *v = NULL;
            size_t n;
            if (cache_get(CACHE_CHAT, key, &v, &n) == 1) {
                atomic_fetch_add(&w->hits, 1);
                if (!v || strcmp(v, val)) w->bad++; /* a "hit" with no value is as wrong as a wrong one */
            }
            smp_free(v);
        }
        double dt = now_s() - t0;
        if (dt > w->worst) w->worst = dt;
        w->ops++;
    }
    return NULL;
}

static void threads_body(redis_proc *r) {
    config c;
    REQUIRE(redis_config(&c, r->port, 250) == 0);
    REQUIRE(cache_init(&c) == 0);
    _Atomic int stop = 0;
    pthread_t th[RTHREADS];
    rwork w[RTHREADS];
    for (int i = 0; i < RTHREADS; i++) {
        w[i] = (rwork){.id = i, .stop = &stop};
        pthread_create(&th[i], NULL, rworker, &w[i]);
    }
    sleep_ms(300);
    redis_kill(r);
    sleep_ms(300);
    bool restarted = redis_start(r, r->port) == 0;
    CHECK(restarted);
    if (restarted) CHECK(recovers_within(8.0));
    long hits_before = 0;
    for (int i = 0; i < RTHREADS; i++) hits_before += atomic_load(&w[i].hits);
    sleep_ms(300);
    atomic_store(&stop, 1);
    long ops = 0, hits = 0, bad = 0;
    double worst = 0;
    for (int i = 0; i < RTHREADS; i++) {
        pthread_join(th[i], NULL);
        ops += w[i].ops;
        hits += atomic_load(&w[i].hits);
        bad += w[i].bad;
        if (w[i].worst > worst) worst = w[i].worst;
    }
    CHECK_INT(bad, 0);
    CHECK(hits > hits_before); /* the threads hit again after the restart */
    CHECK(worst < 1.0);
    if (worst >= 1.0 || !ops) fprintf(stderr, "  ops %ld, worst call %.3f s\n", ops, worst);
    cache_shutdown();
    config_free(&c);
}

TEST(cache_redis_threads_through_outage) {
    redis_proc r = {0};
    if (redis_start(&r, 0) == 0) threads_body(&r);
    else test_failures++;
    cache_shutdown();
    redis_cleanup(&r);
}

/* A listener whose accept queue is full drops SYNs: connecting hangs, so
 * only the connect timeout bounds the wait. */
TEST(cache_redis_connect_timeout) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 0) == 0);
    REQUIRE(getsockname(fd, (struct sockaddr *)&a, &alen) == 0);
    int filler = socket(AF_INET, SOCK_STREAM, 0); /* takes the one queue slot */
    REQUIRE(filler >= 0 && connect(filler, (struct sockaddr *)&a, sizeof a) == 0);
    config c;
    REQUIRE(redis_config(&c, ntohs(a.sin_port), 200) == 0);
    double t0 = now_s();
    REQUIRE(cache_init(&c) == 0);
    CHECK(now_s() - t0 < 0.8);
    CHECK(cache_degraded());
    t0 = now_s();
    CHECK(!has(CACHE_CHAT, "simpleton:chat:x")); /* in backoff: no connect at all */
    CHECK(now_s() - t0 < 0.05);
    cache_shutdown();
    config_free(&c);
    close(filler);
    close(fd);
}

/* AUTH and SELECT from the URL; a wrong password is an outage, not an error. */
static void auth_body(redis_proc *r) {
    config c;
    char url[96];
    REQUIRE(redis_config(&c, r->port, 250) == 0);
    snprintf(url, sizeof url, "redis://:s3cret@127.0.0.1:%d/2", r->port);
    smp_free(c.redis_url);
    c.redis_url = smp_strdup(url);
    REQUIRE(cache_init(&c) == 0);
    CHECK(!cache_degraded());
    put_str(CACHE_AUDIO, "simpleton:audio:a", "text", 0);
    CHECK(has(CACHE_AUDIO, "simpleton:audio:a"));
    redisContext *d = direct(r->port);
    REQUIRE(d != NULL);
    redisReply *rep = redisCommand(d, "AUTH s3cret");
    CHECK(rep && rep->type == REDIS_REPLY_STATUS);
    if (rep) freeReplyObject(rep);
    CHECK_INT(direct_int(d, "EXISTS", "simpleton:audio:a"), 0); /* not in db 0 */
    rep = redisCommand(d, "SELECT 2");
    if (rep) freeReplyObject(rep);
    CHECK_INT(direct_int(d, "EXISTS", "simpleton:audio:a"), 1);
    redisFree(d);
    cache_shutdown();

    snprintf(url, sizeof url, "redis://:wrong@127.0.0.1:%d", r->port);
    smp_free(c.redis_url);
    c.redis_url = smp_strdup(url);
    REQUIRE(cache_init(&c) == 0);
    CHECK(cache_degraded());
    CHECK(!has(CACHE_AUDIO, "simpleton:audio:a"));
    json_t *h = cache_health_json();
    const char *detail = json_string_value(json_object_get(h, "detail"));
    CHECK(detail && strstr(detail, "AUTH"));
    json_decref(h);
    cache_shutdown();
    config_free(&c);
}

TEST(cache_redis_auth_and_db) {
    redis_proc r = {.password = "s3cret"};
    if (redis_start(&r, 0) == 0) auth_body(&r);
    else test_failures++;
    cache_shutdown();
    redis_cleanup(&r);
}
