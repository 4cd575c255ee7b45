/* cache_redis.c - the Redis cache backend (hiredis, blocking contexts).
 *
 * Data structure: a pool of up to POOL_MAX connections (an idle stack under
 * one mutex, a condition variable for callers waiting for a free one) and a
 * health state: up, or down with a retry time and a backoff that starts at
 * BACKOFF_MIN and doubles to BACKOFF_MAX.
 *
 * Every connect and every command is bounded by REDIS_TIMEOUT_MS (a
 * non-blocking connect polled with that timeout, then SO_RCVTIMEO/SO_SNDTIMEO).
 * A command that fails at the connection level (reply NULL: I/O error, EOF,
 * timeout) drops that connection and every idle one and marks the backend
 * down. While down, no call touches the network until the retry time; the
 * first call after it (get, put, clear, stats or health) makes one connection
 * attempt while every other caller misses at once. Success brings the backend
 * back up; failure doubles the backoff. So a restarted Redis is used again
 * without restarting Simpleton, and a dead one costs callers nothing but
 * misses. A caller blocks at most about two timeouts (connect, then command)
 * plus AUTH/SELECT round trips on a fresh connection.
 *
 * Keys: only keys that cache.c builds ("simpleton:<type>:<sha256>") are
 * written; clear walks SCAN MATCH <prefix>* COUNT 500 and UNLINKs each batch
 * (DEL on servers without UNLINK), so other applications' keys in the same
 * database are never touched and FLUSHDB is never sent.
 *
 * URLs: redis://[[user]:password@]host[:port][/db] and
 * unix://[[user]:password@]/path/to.sock[?db=N]; user and password may be
 * percent-encoded. rediss:// (TLS) is refused: hiredis 0.14 has no TLS.
 *
 * hiredis allocates with libc malloc (0.14 has no allocator hook), so its
 * connection buffers are not counted by smp_alloc. SIGPIPE: writing to a
 * socket whose server died raises it; init sets it to ignored if it was still
 * at the default action (a server ignores it anyway). */
#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_int.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/util.h"

#define POOL_MAX 4
#define BACKOFF_MIN_NS (100ULL * 1000000ULL)
#define BACKOFF_MAX_NS (5000ULL * 1000000ULL)
#define CLEAR_SCAN_COUNT "500"
#define STATS_SCAN_COUNT "1000"
#define STATS_SCAN_CALLS 64 /* bound on the work of counting our keys */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a connection was returned or closed */
    redisContext *idle[POOL_MAX];
    int nidle;
    int nopen; /* idle + lent out + being connected */
    bool down;
    bool probing;        /* a caller is trying to reconnect */
    uint64_t retry_at;   /* util_now_ns() time of the next attempt */
    uint64_t backoff;    /* ns */
    char err[192];       /* last failure */
    bool no_unlink;      /* server lacks UNLINK: use DEL */
    cache_redis_target t;
    char where[160];     /* "host:port db N" for messages */
    long timeout_ms;
    bool ready;
} R;

/* ---- URL ---- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Copy s[0..n) decoding %XX; NULL on a bad escape or no memory. */
static char *pct_decode(const char *s, size_t n) {
    char *out = smp_malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval(s[i + 2]) : -1;
            if (hi < 0 || lo < 0) {
                smp_free(out);
                return NULL;
            }
            *o++ = (char)(hi * 16 + lo);
            i += 2;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static bool parse_long(const char *s, size_t n, long lo, long hi, long *out) {
    if (n == 0 || n > 10) return false;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return false;
    *out = v;
    return true;
}

void cache_redis_target_free(cache_redis_target *t) {
    if (!t) return;
    smp_free(t->host);
    smp_free(t->path);
    smp_free(t->user);
    smp_free(t->password);
    memset(t, 0, sizeof *t);
}

/* userinfo "user:password", ":password" or "password". */
static int parse_userinfo(const char *s, size_t n, cache_redis_target *t) {
    const char *colon = memchr(s, ':', n);
    if (colon) {
        if (colon > s && !(t->user = pct_decode(s, (size_t)(colon - s)))) return -1;
        t->password = pct_decode(colon + 1, n - (size_t)(colon + 1 - s));
    } else {
        t->password = pct_decode(s, n);
    }
    if (!t->password) return -1;
    if (!t->password[0]) { /* "redis://user:@host": no password */
        smp_free(t->password);
        t->password = NULL;
    }
    return 0;
}

int cache_redis_parse_url(const char *url, cache_redis_target *t, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    t->port = 6379;
    bool is_unix;
    const char *p;
    if (!strncmp(url, "redis://", 8)) {
        is_unix = false;
        p = url + 8;
    } else if (!strncmp(url, "unix://", 7)) {
        is_unix = true;
        p = url + 7;
    } else if (!strncmp(url, "rediss://", 9)) {
        snprintf(err, errlen, "REDIS_URL: rediss:// (TLS) is not supported by this build; use redis://");
        return -1;
    } else {
        snprintf(err, errlen, "REDIS_URL: '%s' must start with redis:// or unix://", url);
        return -1;
    }

    /* query: only db=N is understood; other parameters are ignored */
    const char *q = strchr(p, '?');
    const char *end = q ? q : p + strlen(p);

    /* userinfo ends at the last '@' before the first '/' (a '/' in a
     * password must be written %2F) */
    const char *slash = memchr(p, '/', (size_t)(end - p));
    const char *auth_end = slash ? slash : end;
    const char *at = NULL;
    for (const char *c = p; c < auth_end; c++)
        if (*c == '@') at = c;
    if (at) {
        if (parse_userinfo(p, (size_t)(at - p), t) < 0) {
            snprintf(err, errlen, "REDIS_URL: bad percent-escape in user or password");
            goto fail;
        }
        p = at + 1;
    }

    if (is_unix) {
        if (p >= end || *p != '/') {
            snprintf(err, errlen, "REDIS_URL: unix:// needs an absolute socket path");
            goto fail;
        }
        if (!(t->path = smp_strndup(p, (size_t)(end - p)))) goto nomem;
    } else {
        const char *hend = slash ? slash : end, *h = p, *hostend, *port = NULL;
        if (h < hend && *h == '[') { /* [ipv6] */
            const char *rb = memchr(h, ']', (size_t)(hend - h));
            if (!rb) {
                snprintf(err, errlen, "REDIS_URL: unclosed '[' in host");
                goto fail;
            }
            h++;
            hostend = rb;
            if (rb + 1 < hend && rb[1] == ':') port = rb + 2;
            else if (rb + 1 != hend) {
                snprintf(err, errlen, "REDIS_URL: unexpected text after ']'");
                goto fail;
            }
        } else {
            const char *colon = memchr(h, ':', (size_t)(hend - h));
            hostend = colon ? colon : hend;
            if (colon) port = colon + 1;
        }
        if (hostend == h) t->host = smp_strdup("localhost");
        else t->host = smp_strndup(h, (size_t)(hostend - h));
        if (!t->host) goto nomem;
        if (port) {
            long v;
            if (!parse_long(port, (size_t)(hend - port), 1, 65535, &v)) {
                snprintf(err, errlen, "REDIS_URL: port must be 1..65535");
                goto fail;
            }
            t->port = (int)v;
        }
        if (slash && slash + 1 < end && !parse_long(slash + 1, (size_t)(end - slash - 1), 0, 1 << 20, &t->db)) {
            snprintf(err, errlen, "REDIS_URL: the path must be a database number (/0, /1, ...)");
            goto fail;
        }
    }

    if (q) { /* ?db=N (&...) */
        for (const char *kv = q + 1; *kv;) {
            const char *amp = strchr(kv, '&');
            size_t n = amp ? (size_t)(amp - kv) : strlen(kv);
            if (n > 3 && !strncmp(kv, "db=", 3) && !parse_long(kv + 3, n - 3, 0, 1 << 20, &t->db)) {
                snprintf(err, errlen, "REDIS_URL: db must be a database number");
                goto fail;
            }
            kv += n + (amp ? 1 : 0);
        }
    }
    return 0;

nomem:
    snprintf(err, errlen, "REDIS_URL: out of memory");
fail:
    cache_redis_target_free(t);
    return -1;
}

/* ---- connections ---- */

static struct timeval timeout_tv(void) {
    return (struct timeval){.tv_sec = R.timeout_ms / 1000, .tv_usec = (R.timeout_ms % 1000) * 1000};
}

/* A status reply ("OK", "PONG")? Frees the reply; on failure the reason
 * (the server's error, or the connection's) goes to err. */
static bool reply_ok(redisContext *c, redisReply *r, char *err, size_t errlen, const char *what) {
    bool ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok) snprintf(err, errlen, "%s: %s", what, r ? (r->str ? r->str : "unexpected reply") : c->errstr);
    if (r) freeReplyObject(r);
    return ok;
}

/* Open and prepare one connection, or NULL with a reason in err. */
static redisContext *conn_open(char *err, size_t errlen) {
    struct timeval tv = timeout_tv();
    redisContext *c = R.t.path ? redisConnectUnixWithTimeout(R.t.path, tv)
                               : redisConnectWithTimeout(R.t.host, R.t.port, tv);
    if (!c) {
        snprintf(err, errlen, "cannot allocate a connection");
        return NULL;
    }
    if (c->err) {
        snprintf(err, errlen, "connect: %s", c->errstr);
        goto fail;
    }
    if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(err, errlen, "setting the timeout: %s", c->errstr);
        goto fail;
    }
    if (!R.t.path) redisEnableKeepAlive(c);
    if (R.t.password) {
        const char *argv[3] = {"AUTH", R.t.user ? R.t.user : R.t.password, R.t.password};
        int argc = R.t.user ? 3 : 2;
        if (!reply_ok(c, redisCommandArgv(c, argc, argv, NULL), err, errlen, "AUTH")) goto fail;
    }
    if (R.t.db) {
        char db[24];
        snprintf(db, sizeof db, "%ld", R.t.db);
        const char *argv[2] = {"SELECT", db};
        if (!reply_ok(c, redisCommandArgv(c, 2, argv, NULL), err, errlen, "SELECT")) goto fail;
    }
    if (!R.t.password && !R.t.db) {
        /* A server that accepts connections but does not answer (hung, or a
         * full backlog) must count as down, not as reconnected. */
        const char *argv[1] = {"PING"};
        if (!reply_ok(c, redisCommandArgv(c, 1, argv, NULL), err, errlen, "PING")) goto fail;
    }
    return c;
fail:
    redisFree(c);
    return NULL;
}

/* Caller holds R.mu. Record a failure; the first one of an outage is logged. */
static void mark_down_locked(const char *why, bool failed_probe) {
    uint64_t now = util_now_ns();
    if (!R.down) {
        R.down = true;
        R.backoff = BACKOFF_MIN_NS;
        log_warn("cache: redis %s unreachable (%s): responses are not cached until it is back",
                 R.where, why);
    } else if (failed_probe) {
        R.backoff = R.backoff * 2 > BACKOFF_MAX_NS ? BACKOFF_MAX_NS : R.backoff * 2;
    }
    R.retry_at = now + R.backoff;
    snprintf(R.err, sizeof R.err, "%s", why);
}

/* A connection for one command, or NULL: down (and not yet time to retry),
 * the pool stayed busy for a whole timeout, or connecting failed. */
static redisContext *pool_acquire(void) {
    char err[160];
    redisContext *c = NULL;
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += R.timeout_ms / 1000;
    deadline.tv_nsec += (R.timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&R.mu);
    for (;;) {
        if (R.nidle > 0) {
            c = R.idle[--R.nidle];
            break;
        }
        if (R.down) {
            if (R.probing || util_now_ns() < R.retry_at) break;
            R.probing = true;
            R.nopen++;
            pthread_mutex_unlock(&R.mu);
            c = conn_open(err, sizeof err);
            pthread_mutex_lock(&R.mu);
            R.probing = false;
            if (c) {
                R.down = false;
                R.backoff = 0;
                log_info("cache: redis %s reachable again", R.where);
            } else {
                R.nopen--;
                mark_down_locked(err, true);
            }
            pthread_cond_broadcast(&R.cv);
            break;
        }
        if (R.nopen < POOL_MAX) {
            R.nopen++;
            pthread_mutex_unlock(&R.mu);
            c = conn_open(err, sizeof err);
            pthread_mutex_lock(&R.mu);
            if (!c) {
                R.nopen--;
                mark_down_locked(err, false);
                pthread_cond_broadcast(&R.cv);
            }
            break;
        }
        if (pthread_cond_timedwait(&R.cv, &R.mu, &deadline) == ETIMEDOUT) break;
    }
    pthread_mutex_unlock(&R.mu);
    return c;
}

/* Give c back. broken: its last command failed at the connection level, so
 * it is closed, the backend is marked down and the idle connections (to the
 * same, probably dead, server) are closed too. A healthy connection returned
 * while the backend is down is closed as well: the pool stays empty until a
 * probe succeeds. */
static void pool_release(redisContext *c, bool broken) {
    redisContext *drop[POOL_MAX + 1];
    int ndrop = 0;
    pthread_mutex_lock(&R.mu);
    if (broken) mark_down_locked(c->errstr[0] ? c->errstr : "connection lost", false);
    if (broken || R.down) {
        drop[ndrop++] = c;
        while (R.nidle > 0) drop[ndrop++] = R.idle[--R.nidle];
        R.nopen -= ndrop;
    } else {
        R.idle[R.nidle++] = c;
    }
    pthread_cond_broadcast(&R.cv);
    pthread_mutex_unlock(&R.mu);
    for (int i = 0; i < ndrop; i++) redisFree(drop[i]);
}

/* Run a command; *broken is set when the connection failed (reply NULL). */
static redisReply *command(redisContext *c, int argc, const char **argv, const size_t *lens, bool *broken) {
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (!r) *broken = true;
    return r;
}

/* ---- backend ---- */

int cache_redis_init(const char *url, long timeout_ms) {
    char err[256];
    memset(&R, 0, sizeof R);
    if (cache_redis_parse_url(url, &R.t, err, sizeof err) < 0) {
        log_error("cache: %s", err);
        return -1;
    }
    R.timeout_ms = timeout_ms > 0 ? timeout_ms : 250;
    if (R.t.path) snprintf(R.where, sizeof R.where, "unix:%s db %ld", R.t.path, R.t.db);
    else snprintf(R.where, sizeof R.where, "%s:%d db %ld", R.t.host, R.t.port, R.t.db);

    pthread_mutex_init(&R.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&R.cv, &ca);
    pthread_condattr_destroy(&ca);

    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);

    R.ready = true;
    redisContext *c = pool_acquire(); /* logs and marks down when unreachable */
    if (c) {
        log_info("cache: using redis %s", R.where);
        pool_release(c, false);
    }
    return 0;
}

static void redis_shutdown(void) {
    if (!R.ready) return;
    pthread_mutex_lock(&R.mu);
    if (R.nopen != R.nidle) log_warn("cache: redis shut down with %d connection(s) in use", R.nopen - R.nidle);
    while (R.nidle > 0) redisFree(R.idle[--R.nidle]);
    pthread_mutex_unlock(&R.mu);
    pthread_mutex_destroy(&R.mu);
    pthread_cond_destroy(&R.cv);
    cache_redis_target_free(&R.t);
    memset(&R, 0, sizeof R);
}

static int redis_get(const char *key, char **val, size_t *len) {
    redisContext *c = pool_acquire();
    if (!c) return 0;
    bool broken = false;
    const char *argv[2] = {"GET", key};
    redisReply *r = command(c, 2, argv, NULL, &broken);
    int hit = 0;
    if (r && r->type == REDIS_REPLY_STRING) {
        char *copy = smp_malloc(r->len + 1);
        if (copy) {
            memcpy(copy, r->str, r->len);
            copy[r->len] = '\0';
            *val = copy;
            *len = r->len;
            hit = 1;
        }
    } else if (r && r->type == REDIS_REPLY_ERROR) {
        log_debug("cache: redis GET: %s", r->str);
    }
    if (r) freeReplyObject(r);
    pool_release(c, broken);
    return hit;
}

static void redis_put(const char *key, const void *val, size_t len, long ttl_seconds) {
    redisContext *c = pool_acquire();
    if (!c) return;
    char ttl[24];
    snprintf(ttl, sizeof ttl, "%ld", ttl_seconds);
    const char *argv[5] = {"SET", key, val, "EX", ttl};
    size_t lens[5] = {3, strlen(key), len, 2, strlen(ttl)};
    bool broken = false;
    redisReply *r = command(c, 5, argv, lens, &broken);
    if (r && r->type == REDIS_REPLY_ERROR) log_debug("cache: redis SET: %s", r->str);
    if (r) freeReplyObject(r);
    pool_release(c, broken);
}

/* Delete one SCAN batch. Returns the number deleted, or -1 on failure. */
static long unlink_batch(redisContext *c, redisReply *keys, bool *broken) {
    size_t n = keys->elements;
    const char **argv = smp_malloc((n + 1) * sizeof *argv);
    size_t *lens = smp_malloc((n + 1) * sizeof *lens);
    long deleted = -1;
    if (!argv || !lens) goto done;
    for (int pass = 0; pass < 2; pass++) {
        bool use_del = __atomic_load_n(&R.no_unlink, __ATOMIC_RELAXED);
        argv[0] = use_del ? "DEL" : "UNLINK";
        lens[0] = strlen(argv[0]);
        size_t argc = 1;
        for (size_t i = 0; i < n; i++) {
            if (keys->element[i]->type != REDIS_REPLY_STRING) continue;
            argv[argc] = keys->element[i]->str;
            lens[argc++] = keys->element[i]->len;
        }
        redisReply *r = command(c, (int)argc, argv, lens, broken);
        if (!r) goto done;
        if (r->type == REDIS_REPLY_INTEGER) deleted = (long)r->integer;
        bool unknown = r->type == REDIS_REPLY_ERROR && !use_del && strstr(r->str, "unknown command");
        if (r->type == REDIS_REPLY_ERROR && !unknown) log_warn("cache: redis %s: %s", argv[0], r->str);
        freeReplyObject(r);
        if (!unknown) break;
        __atomic_store_n(&R.no_unlink, true, __ATOMIC_RELAXED);
    }
done:
    smp_free(argv);
    smp_free(lens);
    return deleted;
}

/* SCAN MATCH <prefix>* from cursor 0 for at most max_calls calls (0: no
 * limit), deleting or counting the keys. Returns the number deleted/seen or
 * -1 when a command failed. */
static long scan_keys(redisContext *c, const char *prefix, const char *count, int max_calls, bool delete,
                      bool *broken) {
    char pattern[CACHE_KEY_LIMIT + 2], cursor[32] = "0";
    snprintf(pattern, sizeof pattern, "%s*", prefix);
    long total = 0;
    for (int calls = 0; !max_calls || calls < max_calls; calls++) {
        const char *argv[6] = {"SCAN", cursor, "MATCH", pattern, "COUNT", count};
        redisReply *r = command(c, 6, argv, NULL, broken);
        if (!r) return -1;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
            r->element[1]->type != REDIS_REPLY_ARRAY) {
            log_warn("cache: redis SCAN: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
            freeReplyObject(r);
            return -1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *keys = r->element[1];
        if (delete && keys->elements) {
            long n = unlink_batch(c, keys, broken);
            if (n < 0) {
                freeReplyObject(r);
                return -1;
            }
            total += n;
        } else if (!delete) {
            total += (long)keys->elements;
        }
        freeReplyObject(r);
        if (!strcmp(cursor, "0")) break;
    }
    return total;
}

static long redis_clear(const char *prefix) {
    redisContext *c = pool_acquire();
    if (!c) return -1;
    bool broken = false;
    long n = scan_keys(c, prefix, CLEAR_SCAN_COUNT, 0, true, &broken);
    pool_release(c, broken);
    return n;
}

/* Value of "name:" in an INFO section, or -1. */
static double info_field(redisContext *c, const char *section, const char *name, bool *broken) {
    const char *argv[2] = {"INFO", section};
    redisReply *r = command(c, 2, argv, NULL, broken);
    double v = -1;
    if (r && r->type == REDIS_REPLY_STRING) {
        size_t nlen = strlen(name);
        for (const char *line = r->str; line && *line;) {
            if (!strncmp(line, name, nlen) && line[nlen] == ':') {
                v = strtod(line + nlen + 1, NULL);
                break;
            }
            line = strchr(line, '\n');
            if (line) line++;
        }
    }
    if (r) freeReplyObject(r);
    return v;
}

static void redis_stats(cache_backend_stats *out) {
    memset(out, 0, sizeof *out);
    out->keys = -1;
    redisContext *c = pool_acquire();
    if (!c) return;
    bool broken = false;
    long keys = scan_keys(c, CACHE_KEY_PREFIX, STATS_SCAN_COUNT, STATS_SCAN_CALLS, false, &broken);
    double used = broken ? -1 : info_field(c, "memory", "used_memory", &broken);
    double evicted = broken ? -1 : info_field(c, "stats", "evicted_keys", &broken);
    pool_release(c, broken);
    if (broken) return;
    out->reachable = true;
    out->keys = keys;
    out->memory_mb = used > 0 ? used / (1024.0 * 1024.0) : 0;
    out->evictions = evicted > 0 ? (long)evicted : 0;
}

static bool redis_degraded(void) {
    pthread_mutex_lock(&R.mu);
    bool down = R.down;
    pthread_mutex_unlock(&R.mu);
    return down;
}

static bool redis_health(char *detail, size_t n) {
    redisContext *c = pool_acquire();
    bool pong = false;
    if (c) {
        bool broken = false;
        const char *argv[1] = {"PING"};
        redisReply *r = command(c, 1, argv, NULL, &broken);
        pong = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
        pool_release(c, broken);
    }
    pthread_mutex_lock(&R.mu);
    bool ok = !R.down;
    if (pong) {
        snprintf(detail, n, "redis %s connected", R.where);
    } else if (ok) { /* every connection busy for a whole timeout, or PING refused */
        snprintf(detail, n, "redis %s connected, but did not answer PING in time", R.where);
    } else {
        uint64_t now = util_now_ns();
        unsigned long ms = R.retry_at > now ? (unsigned long)((R.retry_at - now) / 1000000) : 0;
        snprintf(detail, n, "redis %s unreachable (%s); retrying in %lu ms", R.where,
                 R.err[0] ? R.err : "no connection", ms);
    }
    pthread_mutex_unlock(&R.mu);
    return ok;
}

const cache_ops cache_redis_ops = {
    .name = "redis",
    .get = redis_get,
    .put = redis_put,
    .clear = redis_clear,
    .stats = redis_stats,
    .degraded = redis_degraded,
    .health = redis_health,
    .shutdown = redis_shutdown,
};
