/* httpc.c - a small HTTP client for the remote backends (see httpc.h).
 *
 * Data structures: an httpc holds the base URL, two prepared header lists
 * (GET, and POST with a JSON content type) and a stack of idle "lanes" under
 * a mutex. A lane is a curl multi handle with one easy handle; the multi owns
 * the live connection and keeps it between requests, which is what makes
 * reuse work (curl_easy_reset clears only the options). Lanes are not shared
 * between threads while in use, and connections are not shared between lanes:
 * libcurl's shared connection cache is not safe across concurrent threads in
 * this version.
 *
 * A request's transfer state (xfer) lives on the caller's stack: the status
 * once known, the line buffer for line reads, the silence clock and the
 * reasons a transfer was stopped (line callback, cancellation, silence, too
 * much data). The transfer runs in our own loop (curl_multi_perform, then
 * curl_multi_poll for at most TICK_MS), so cancellation and the silence limit
 * are checked every TICK_MS; curl_easy_perform would let its progress
 * callback go quiet for a second while the upstream is silent. */
#define _GNU_SOURCE
#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "backend/httpc.h"
#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"
#include "core/version.h"

#define POOL_MAX 16
#define MAX_URL 1024
#define TICK_MS 50

typedef struct {
    CURLM *multi;
    CURL *easy;
} lane;

struct httpc {
    char name[32];
    char base[MAX_URL];
    long connect_ms;
    struct curl_slist *get_headers, *post_headers;
    pthread_mutex_t mu;
    lane idle[POOL_MAX];
    int nidle;
};

/* ---- global init ---- */

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static CURLcode init_rc = CURLE_FAILED_INIT;

static void *curl_malloc_cb(size_t n) { return smp_malloc(n); }
static void curl_free_cb(void *p) { smp_free(p); }
static void *curl_realloc_cb(void *p, size_t n) { return smp_realloc(p, n); }
static char *curl_strdup_cb(const char *s) { return smp_strdup(s); }
static void *curl_calloc_cb(size_t n, size_t size) { return smp_calloc(n, size); }

static void global_init(void) {
    init_rc = curl_global_init_mem(CURL_GLOBAL_DEFAULT, curl_malloc_cb, curl_free_cb, curl_realloc_cb,
                                   curl_strdup_cb, curl_calloc_cb);
    /* With CURLOPT_NOSIGNAL libcurl leaves SIGPIPE alone; a TLS write to a
     * closed socket would kill the process. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) signal(SIGPIPE, SIG_IGN);
}

int httpc_global_init(void) {
    pthread_once(&init_once, global_init);
    return init_rc == CURLE_OK ? 0 : -SMP_E_INTERNAL;
}

/* ---- client ---- */

static void lane_close(lane l) {
    if (l.easy) curl_easy_cleanup(l.easy);
    if (l.multi) curl_multi_cleanup(l.multi);
}

httpc *httpc_new(const char *name, const char *base_url, const char *bearer, char *err, size_t errlen) {
    if (httpc_global_init() != 0) {
        snprintf(err, errlen, "%s: libcurl failed to initialise", name);
        return NULL;
    }
    size_t n = base_url ? strlen(base_url) : 0;
    while (n > 0 && base_url[n - 1] == '/') n--;
    if (n == 0 || n >= MAX_URL || (strncmp(base_url, "http://", 7) && strncmp(base_url, "https://", 8))) {
        snprintf(err, errlen, "%s: the base URL must start with http:// or https:// (got '%.200s')", name,
                 base_url ? base_url : "");
        return NULL;
    }
    httpc *c = smp_calloc(1, sizeof *c);
    if (!c) goto nomem;
    snprintf(c->name, sizeof c->name, "%s", name);
    memcpy(c->base, base_url, n);
    c->base[n] = '\0';
    c->connect_ms = HTTPC_TIMEOUTS_DEFAULT.connect_ms;
    pthread_mutex_init(&c->mu, NULL);

    static const char *common[] = {"Accept: application/json", "Expect:", "User-Agent: simpleton/" SIMPLETON_VERSION};
    for (size_t i = 0; i < sizeof common / sizeof common[0]; i++) {
        struct curl_slist *g = curl_slist_append(c->get_headers, common[i]);
        if (!g) goto nomem;
        c->get_headers = g;
        struct curl_slist *p = curl_slist_append(c->post_headers, common[i]);
        if (!p) goto nomem;
        c->post_headers = p;
    }
    struct curl_slist *p = curl_slist_append(c->post_headers, "Content-Type: application/json");
    if (!p) goto nomem;
    c->post_headers = p;
    if (bearer && bearer[0]) {
        size_t hl = strlen(bearer) + 32;
        char *h = smp_malloc(hl);
        if (!h) goto nomem;
        snprintf(h, hl, "Authorization: Bearer %s", bearer);
        struct curl_slist *g = curl_slist_append(c->get_headers, h);
        if (g) c->get_headers = g;
        p = g ? curl_slist_append(c->post_headers, h) : NULL;
        if (p) c->post_headers = p;
        smp_free(h);
        if (!g || !p) goto nomem;
    }
    return c;
nomem:
    httpc_free(c);
    snprintf(err, errlen, "%s: out of memory", name);
    return NULL;
}

void httpc_free(httpc *c) {
    if (!c) return;
    for (int i = 0; i < c->nidle; i++) lane_close(c->idle[i]);
    curl_slist_free_all(c->get_headers);
    curl_slist_free_all(c->post_headers);
    pthread_mutex_destroy(&c->mu);
    smp_free(c);
}

void httpc_set_connect_timeout(httpc *c, long ms) { c->connect_ms = ms > 0 ? ms : HTTPC_TIMEOUTS_DEFAULT.connect_ms; }
const char *httpc_name(const httpc *c) { return c->name; }
const char *httpc_base_url(const httpc *c) { return c->base; }

/* An idle lane, or a new one; false when out of memory. */
static bool pool_take(httpc *c, lane *l) {
    bool got = false;
    pthread_mutex_lock(&c->mu);
    if (c->nidle > 0) {
        *l = c->idle[--c->nidle];
        got = true;
    }
    pthread_mutex_unlock(&c->mu);
    if (got) return true;
    l->multi = curl_multi_init();
    l->easy = curl_easy_init();
    if (l->multi && l->easy) return true;
    lane_close(*l);
    return false;
}

static void pool_give(httpc *c, lane l) {
    pthread_mutex_lock(&c->mu);
    bool kept = c->nidle < POOL_MAX;
    if (kept) c->idle[c->nidle++] = l;
    pthread_mutex_unlock(&c->mu);
    if (!kept) lane_close(l);
}

/* ---- one transfer ---- */

typedef struct {
    CURL *h;
    const httpc_req *req;
    httpc_resp *resp;
    size_t max_body;
    buf line;            /* line reads: bytes of the unfinished line */
    curl_off_t last_dl, last_ul;
    uint64_t last_ns;    /* when bytes last moved (silence clock) */
    bool stopped;        /* on_line returned non-zero */
    bool cancelled;      /* cancelled() returned true */
    bool shutdown;       /* the shutdown deadline passed (util_aborting) */
    bool silent;         /* no byte for timeout_ms */
    bool too_big;
} xfer;

static bool status_ok(long st) { return st >= 200 && st < 300; }

/* Pass every complete line in x->line to on_line and keep the rest. */
static int flush_lines(xfer *x) {
    size_t start = 0;
    char *d = x->line.data;
    for (;;) {
        char *nl = memchr(d + start, '\n', x->line.len - start);
        if (!nl) break;
        size_t len = (size_t)(nl - (d + start));
        size_t l = len;
        if (l > 0 && d[start + l - 1] == '\r') l--;
        d[start + l] = '\0';
        int rc = x->req->on_line(x->req->ud, d + start, l);
        start += len + 1;
        if (rc != 0) {
            x->stopped = true;
            return -1;
        }
    }
    if (start > 0) {
        memmove(d, d + start, x->line.len - start);
        x->line.len -= start;
        d[x->line.len] = '\0';
    }
    return 0;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud) {
    xfer *x = ud;
    size_t n = size * nmemb;
    if (x->resp->status == 0) curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->resp->status);
    if (!status_ok(x->resp->status)) {
        /* An error body: keep its start for the message, drop the rest. */
        size_t room = HTTPC_MAX_ERROR_BODY > x->resp->body.len ? HTTPC_MAX_ERROR_BODY - x->resp->body.len : 0;
        if (buf_append(&x->resp->body, ptr, n < room ? n : room) != 0) return 0;
        return n;
    }
    if (!x->req->on_line) {
        if (x->resp->body.len + n > x->max_body || buf_append(&x->resp->body, ptr, n) != 0) {
            x->too_big = true;
            return 0;
        }
        return n;
    }
    if (buf_append(&x->line, ptr, n) != 0) {
        x->too_big = true;
        return 0;
    }
    return flush_lines(x) == 0 ? n : 0;
}

/* Between two turns of the transfer loop: should it stop? */
static bool should_stop(xfer *x) {
    if (x->req->cancelled && x->req->cancelled(x->req->cancel_ud)) {
        x->cancelled = true;
        return true;
    }
    if (util_aborting()) {
        x->shutdown = true;
        return true;
    }
    if (x->req->on_line && x->req->timeout_ms > 0) {
        curl_off_t dl = 0, ul = 0;
        curl_easy_getinfo(x->h, CURLINFO_SIZE_DOWNLOAD_T, &dl);
        curl_easy_getinfo(x->h, CURLINFO_SIZE_UPLOAD_T, &ul);
        uint64_t now = util_now_ns();
        if (dl != x->last_dl || ul != x->last_ul) {
            x->last_dl = dl;
            x->last_ul = ul;
            x->last_ns = now;
        } else if (now - x->last_ns > (uint64_t)x->req->timeout_ms * 1000000ULL) {
            x->silent = true;
            return true;
        }
    }
    return false;
}

/* Run the transfer on the lane; returns curl's result, or CURLE_ABORTED_BY_CALLBACK
 * when should_stop ended it (the connection is then closed by curl). */
static CURLcode run(lane l, xfer *x) {
    if (curl_multi_add_handle(l.multi, l.easy) != CURLM_OK) return CURLE_OUT_OF_MEMORY;
    CURLcode rc = CURLE_ABORTED_BY_CALLBACK;
    for (;;) {
        int running = 0;
        if (curl_multi_perform(l.multi, &running) != CURLM_OK) {
            rc = CURLE_OUT_OF_MEMORY;
            break;
        }
        if (!running) {
            int left;
            CURLMsg *m = curl_multi_info_read(l.multi, &left);
            rc = m && m->msg == CURLMSG_DONE ? m->data.result : CURLE_RECV_ERROR;
            break;
        }
        if (should_stop(x)) break;
        if (curl_multi_poll(l.multi, NULL, 0, TICK_MS, NULL) != CURLM_OK) {
            rc = CURLE_OUT_OF_MEMORY;
            break;
        }
    }
    curl_multi_remove_handle(l.multi, l.easy);
    return rc;
}

static bool is_connect_error(CURLcode rc) {
    return rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || rc == CURLE_COULDNT_RESOLVE_PROXY ||
           rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_SSL_CONNECT_ERROR || rc == CURLE_PEER_FAILED_VERIFICATION ||
           rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT;
}

void httpc_resp_free(httpc_resp *resp) {
    if (resp) buf_free(&resp->body);
}

int httpc_request(httpc *c, const httpc_req *req, httpc_resp *resp, char *err, size_t errlen) {
    memset(resp, 0, sizeof *resp);
    buf_init(&resp->body, 0);
    char url[MAX_URL + 512];
    if ((size_t)snprintf(url, sizeof url, "%s%s", c->base, req->path) >= sizeof url) {
        snprintf(err, errlen, "%s: request path too long", c->name);
        return -SMP_E_INTERNAL;
    }
    lane l;
    if (!pool_take(c, &l)) {
        snprintf(err, errlen, "%s: out of memory", c->name);
        return -SMP_E_NOMEM;
    }
    CURL *h = l.easy;
    xfer x = {.h = h, .req = req, .resp = resp, .last_ns = util_now_ns()};
    x.max_body = req->max_body ? req->max_body : HTTPC_MAX_BODY;
    buf_init(&x.line, HTTPC_MAX_LINE);
    char curl_err[CURL_ERROR_SIZE] = "";

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, c->connect_ms);
    if (!req->on_line && req->timeout_ms > 0) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, req->timeout_ms);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    if (req->body) {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->post_headers);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, req->body);
    } else {
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->get_headers);
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    }

    CURLcode rc = run(l, &x);
    if (resp->status == 0) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    const char *why = curl_err[0] ? curl_err : curl_easy_strerror(rc);
    int ret = 0;
    if (x.stopped || x.cancelled) {
        ret = HTTPC_ABORTED;
    } else if (x.shutdown) {
        snprintf(err, errlen, "Request to %s at %s stopped: the server is shutting down", c->name, c->base);
        ret = -SMP_E_UNAVAILABLE;
    } else if (x.silent) {
        snprintf(err, errlen, "Could not connect to %s at %s: no data for %ld ms (timed out)", c->name, c->base,
                 req->timeout_ms);
        ret = -SMP_E_UNAVAILABLE;
    } else if (x.too_big) {
        snprintf(err, errlen, "Backend error: %s sent more than %zu bytes", c->name,
                 req->on_line ? (size_t)HTTPC_MAX_LINE : x.max_body);
        ret = -SMP_E_BACKEND;
    } else if (rc != CURLE_OK && (is_connect_error(rc) || resp->status == 0)) {
        if (rc == CURLE_GOT_NOTHING || rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR) {
            snprintf(err, errlen, "Backend error: %s closed the connection without answering (%s)", c->name, why);
            ret = -SMP_E_BACKEND;
        } else {
            snprintf(err, errlen, "Could not connect to %s at %s: %s", c->name, c->base, why);
            ret = -SMP_E_UNAVAILABLE;
        }
    } else if (rc != CURLE_OK) {
        snprintf(err, errlen, "Backend error: %s stream ended before the answer was complete (%s)", c->name, why);
        ret = -SMP_E_BACKEND;
    } else if (req->on_line && status_ok(resp->status) && x.line.len > 0) {
        /* The last line had no newline. */
        if (req->on_line(req->ud, x.line.data, x.line.len) != 0) ret = HTTPC_ABORTED;
    }
    buf_free(&x.line);
    pool_give(c, l);
    return ret;
}

/* ---- error bodies ---- */

static void shorten(const char *s, size_t len, char *out, size_t outlen) {
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ')) len--;
    while (len > 0 && (*s == '\n' || *s == '\r' || *s == ' ')) s++, len--;
    if (len > 300) len = 300;
    size_t j = 0;
    for (size_t i = 0; i < len && j + 1 < outlen; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[j++] = ch < 0x20 ? ' ' : (char)ch;
    }
    if (outlen) out[j] = '\0';
}

static void upstream_text(const httpc_resp *resp, char *out, size_t outlen) {
    const char *body = resp->body.data ? resp->body.data : "";
    json_t *j = json_loadb(body, resp->body.len, 0, NULL);
    const char *msg = NULL;
    if (j && json_is_object(j)) {
        json_t *e = json_object_get(j, "error");
        if (json_is_object(e)) e = json_object_get(e, "message");
        if (!json_is_string(e)) e = json_object_get(j, "detail");
        if (!json_is_string(e)) e = json_object_get(j, "message");
        if (json_is_string(e)) msg = json_string_value(e);
    }
    if (msg)
        shorten(msg, strlen(msg), out, outlen);
    else if (resp->body.len)
        shorten(body, resp->body.len, out, outlen);
    else
        snprintf(out, outlen, "(empty body)");
    json_decref(j);
}

static bool mentions_model(const char *s) {
    for (; *s; s++)
        if (!strncasecmp(s, "model", 5)) return true;
    return false;
}

int httpc_status_error(const httpc *c, const httpc_resp *resp, char *err, size_t errlen) {
    char text[320];
    upstream_text(resp, text, sizeof text);
    if (resp->status == 404 && mentions_model(text)) {
        snprintf(err, errlen, "%s: %s", c->name, text);
        return -SMP_E_NOT_FOUND;
    }
    snprintf(err, errlen, "Backend error: %s returned %ld: %s", c->name, resp->status, text);
    return -SMP_E_BACKEND;
}

/* ---- shared helper ---- */

const char *httpc_model_kind(const char *name, const char *family) {
    static const char *marks[] = {"embed", "bert", "minilm", "bge", "e5-", "gte-"};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++) {
        if (name && strcasestr(name, marks[i])) return "embedding";
        if (family && strcasestr(family, marks[i])) return "embedding";
    }
    return "llm";
}
