/* conns.c - see conns.h. A doubly linked list under one mutex: a few
 * hundred records at most, scanned by the reaper a few times a second and by
 * conns_add only when near the limit. */
#include "http/conns.h"

#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/util.h"

#define REAP_INTERVAL_NS 200000000ull /* 0.2 s */
#define SEC 1000000000ull

struct conn_rec {
    conn_rec *prev, *next;
    int fd;
    conn_state state;
    uint64_t since;      /* entered the state */
    uint64_t body_bytes; /* received in CONN_BODY */
    bool shut;           /* shutdown() already called */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t reaper;
    bool running, stop;
    conn_rec *head, *tail; /* oldest first */
    int count;
    int high_water;        /* shed from here on */
    uint64_t idle_ns, header_ns, body_ns, body_rate;
    uint64_t timed_out, shed;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static const char *state_name(conn_state s) {
    switch (s) {
    case CONN_IDLE: return "idle";
    case CONN_HEADERS: return "sending headers";
    case CONN_BODY: return "sending its body";
    default: return "busy";
    }
}

/* Caller holds mu. */
static void shut(conn_rec *r) {
    if (r->shut) return;
    r->shut = true;
    shutdown(r->fd, SHUT_RDWR);
}

/* When must r be done with its state? 0: never. Caller holds mu. */
static uint64_t deadline(const conn_rec *r) {
    switch (r->state) {
    case CONN_IDLE: return r->since + g.idle_ns;
    case CONN_HEADERS: return r->since + g.header_ns;
    case CONN_BODY: return r->since + g.body_ns + r->body_bytes * SEC / g.body_rate;
    default: return 0;
    }
}

static void reap(uint64_t now) {
    for (conn_rec *r = g.head; r; r = r->next) {
        uint64_t d = deadline(r);
        if (d && now > d && !r->shut) {
            log_debug("http: closing a connection %s for %.1f s (past its deadline)", state_name(r->state),
                      (double)(now - r->since) / 1e9);
            g.timed_out++;
            shut(r);
        }
    }
}

/* Near the limit: close the longest-idle connection, else the oldest one
 * still sending headers that has had at least a second. Caller holds mu.
 * Returns false when nothing could be shed. */
static bool shed_one(uint64_t now) {
    conn_rec *pick = NULL;
    for (conn_rec *r = g.head; r; r = r->next)
        if (!r->shut && r->state == CONN_IDLE && (!pick || r->since < pick->since)) pick = r;
    if (!pick)
        for (conn_rec *r = g.head; r; r = r->next)
            if (!r->shut && r->state == CONN_HEADERS && now - r->since > SEC && (!pick || r->since < pick->since))
                pick = r;
    if (!pick) return false;
    g.shed++;
    shut(pick);
    return true;
}

static void *reaper_main(void *arg) {
    pthread_mutex_lock(&g.mu);
    while (!g.stop) {
        uint64_t now = util_now_ns();
        reap(now);
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t at = (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec + REAP_INTERVAL_NS;
        ts.tv_sec = (time_t)(at / SEC);
        ts.tv_nsec = (long)(at % SEC);
        pthread_cond_timedwait(&g.cv, &g.mu, &ts);
    }
    pthread_mutex_unlock(&g.mu);
    return NULL;
}

int conns_start(const config *c) {
    pthread_mutex_lock(&g.mu);
    g.idle_ns = (uint64_t)c->connection_timeout * SEC;
    g.header_ns = (uint64_t)c->header_timeout * SEC;
    g.body_ns = (uint64_t)c->body_timeout * SEC;
    g.body_rate = (uint64_t)c->body_min_rate;
    /* Keep a sixteenth of the connections (at least one, at most 64) free. */
    int reserve = (int)(c->max_connections / 16);
    if (reserve < 1) reserve = 1;
    if (reserve > 64) reserve = 64;
    g.high_water = (int)c->max_connections - reserve;
    g.stop = false;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_destroy(&g.cv);
    pthread_cond_init(&g.cv, &ca);
    pthread_condattr_destroy(&ca);
    int rc = pthread_create(&g.reaper, NULL, reaper_main, NULL);
    g.running = rc == 0;
    pthread_mutex_unlock(&g.mu);
    return rc == 0 ? 0 : -1;
}

void conns_stop(void) {
    pthread_mutex_lock(&g.mu);
    bool running = g.running;
    g.stop = true;
    g.running = false;
    pthread_cond_broadcast(&g.cv);
    pthread_mutex_unlock(&g.mu);
    if (running) pthread_join(g.reaper, NULL);
}

conn_rec *conns_add(int fd) {
    conn_rec *r = smp_calloc(1, sizeof *r);
    uint64_t now = util_now_ns();
    pthread_mutex_lock(&g.mu);
    if (g.count >= g.high_water) {
        int live = 0; /* not already on their way out */
        for (conn_rec *x = g.head; x; x = x->next) live += !x->shut;
        while (live >= g.high_water && shed_one(now)) live--;
    }
    if (r) {
        r->fd = fd;
        r->state = CONN_IDLE;
        r->since = now;
        r->prev = g.tail;
        if (g.tail) g.tail->next = r;
        else g.head = r;
        g.tail = r;
        g.count++;
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

void conns_remove(conn_rec *r) {
    if (!r) return;
    pthread_mutex_lock(&g.mu);
    if (r->prev) r->prev->next = r->next;
    else g.head = r->next;
    if (r->next) r->next->prev = r->prev;
    else g.tail = r->prev;
    g.count--;
    pthread_mutex_unlock(&g.mu);
    smp_free(r);
}

void conns_set_state(conn_rec *r, conn_state s) {
    if (!r) return;
    pthread_mutex_lock(&g.mu);
    r->state = s;
    r->since = util_now_ns();
    r->body_bytes = 0;
    pthread_mutex_unlock(&g.mu);
}

void conns_body_bytes(conn_rec *r, size_t n) {
    if (!r) return;
    pthread_mutex_lock(&g.mu);
    r->body_bytes += n;
    pthread_mutex_unlock(&g.mu);
}
