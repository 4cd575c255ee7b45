/* server.c - libmicrohttpd glue; see server.h.
 *
 * MHD runs one thread per connection. Each request owns an http_req (below)
 * hung on MHD's per-request pointer. MHD calls the access handler first with
 * headers only, then once per body piece, then once with no data: we answer
 * on that last call (answering on the first call would make MHD close
 * keep-alive connections), except for an early 413 when the Content-Length
 * already exceeds the cap.
 *
 * A connection's thread may block, so handlers that wait on a model or an
 * upstream run right there: a forwarded request costs no hand-off between
 * threads, which is most of what a gateway hop costs on a small machine
 * (bench/RESULTS.md). Work handed to a worker (streams, heavy in-process
 * jobs) is answered through the request: the worker leaves the response in
 * `pending` and the connection thread, waiting in the access handler, queues
 * it. Every MHD call on a connection is made on that connection's thread;
 * libmicrohttpd 0.9.75 cannot suspend connections in this mode, and needs
 * none of it. */
#define _GNU_SOURCE /* POLLRDHUP */
#include "server.h"

#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "core/alloc.h"
#include "core/arena.h"
#include "core/buf.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "core/valid.h"
#include "http/multipart.h"
#include "http/auth.h"
#include "http/conns.h"
#include "http/router.h"
#include "obs/analytics.h"
#include "obs/metrics.h"

#define ERROR_TEXT_MAX 512
#define MAX_QUERY_PARAMS 256 /* no route takes more than a handful */

/* The URI callback's mark for a request whose query string had too many
 * parameters: MHD's per-connection memory would run out parsing them and
 * close the connection with no answer, so the guard empties the query
 * before MHD parses it and the request is answered 414 instead. */
static char too_many_params_mark;
#define TOO_MANY_PARAMS ((void *)&too_many_params_mark)

struct http_req {
    struct MHD_Connection *conn;
    uint64_t t0;
    const char *method; /* owned by MHD for the request's life */
    const char *path;
    route_match match;
    int match_rc;
    http_dialect dialect;
    char request_id[72];
    buf body;
    size_t body_cap;
    bool too_large;
    atomic_bool recorded; /* counted in metrics/analytics, logged (once) */
    size_t discarded; /* body bytes thrown away past the cap */
    bool answered_raw; /* 413 written straight to the socket (chunked body over the cap) */
    bool responded;
    int status;
    char error_text[ERROR_TEXT_MAX];
    int error_code;
    arena mem;          /* the request's own allocations, freed with it */
    struct extra_header {
        struct extra_header *next;
        char *name, *value;
    } *extra, **extra_tail; /* in the order added */
    pthread_t thread;   /* the connection's thread: the only one that calls MHD for it */
    conn_rec *guard;    /* the connection's deadline record (conns.h); conn thread only */
    bool expect_body;
    int fd;             /* the client socket, for http_client_gone (read under mu) */
    bool queued;        /* a response was queued (on the connection thread) */
    /* Asynchronous answers (see http_detach). mu guards everything below;
     * cv is signalled when pending, the stream or refs change. */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int refs;    /* MHD's (dropped on completion) + a job's + a stream response's */
    bool detached;      /* a job answers (on this thread or a worker) */
    struct MHD_Response *pending; /* answered by a worker, not yet queued */
    int pending_status;
    bool closed;        /* MHD reported the request complete */
    bool streaming;
    bool stream_ended;
    buf stream;         /* produced, not yet sent */
    size_t stream_off;
};

static struct MHD_Daemon *daemon_;
static const config *cfg;
static atomic_int in_flight;
static bool cors_any;

int http_in_flight(void) { return atomic_load(&in_flight); }

/* ---- accessors ---------------------------------------------------------- */

const char *http_method(const http_req *r) { return r->method; }
const char *http_path(const http_req *r) { return r->path; }
const char *http_route(const http_req *r) { return r->match.route ? r->match.route->tmpl : "unmatched"; }
const char *http_request_id(const http_req *r) { return r->request_id; }
http_dialect http_req_dialect(const http_req *r) { return r->dialect; }

const char *http_header(http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, name);
}

const char *http_query(http_req *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *http_param(const http_req *r, const char *name) {
    for (int i = 0; i < r->match.nparams; i++)
        if (!strcmp(r->match.params[i].name, name)) return r->match.params[i].value;
    return NULL;
}

const char *http_body(const http_req *r, size_t *len) {
    if (len) *len = r->body.len;
    return r->body.data ? r->body.data : "";
}

static void record_request(http_req *r, bool closed_early);

/* ---- responses ---------------------------------------------------------- */

int http_add_header(http_req *r, const char *name, const char *value) {
    struct extra_header *h = arena_alloc(&r->mem, sizeof *h);
    if (!h || !(h->name = arena_strndup(&r->mem, name, strlen(name))) ||
        !(h->value = arena_strndup(&r->mem, value, strlen(value))))
        return -1;
    if (!r->extra_tail) r->extra_tail = &r->extra;
    *r->extra_tail = h;
    r->extra_tail = &h->next;
    return 0;
}

/* Is this Origin allowed by CORS_ORIGINS? */
static bool origin_allowed(const char *origin) {
    if (!origin) return false;
    if (cors_any) return true;
    const char *s = cfg->cors_origins;
    size_t ol = strlen(origin);
    while (*s) {
        while (*s == ' ' || *s == ',') s++;
        const char *e = s;
        while (*e && *e != ',') e++;
        const char *te = e;
        while (te > s && te[-1] == ' ') te--;
        if ((size_t)(te - s) == ol && !memcmp(s, origin, ol)) return true;
        s = e;
    }
    return false;
}

static void add_common_headers(http_req *r, struct MHD_Response *resp) {
    MHD_add_response_header(resp, "X-Request-Id", r->request_id);
    const char *origin = http_header(r, "Origin");
    if (origin_allowed(origin)) {
        /* CORS_ORIGINS=* answers "*", which browsers never pair with
         * credentials; only origins listed by name are echoed, and only they
         * may send credentials. */
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", cors_any ? "*" : origin);
        if (!cors_any) {
            MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
            MHD_add_response_header(resp, "Vary", "Origin");
        }
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "X-Request-Id, X-Cache");
    }
    for (struct extra_header *h = r->extra; h; h = h->next) MHD_add_response_header(resp, h->name, h->value);
}

static bool on_conn_thread(const http_req *r) { return pthread_equal(pthread_self(), r->thread) != 0; }

/* Queue resp now when on the connection's thread; from a worker, leave it
 * for the connection thread (waiting in on_request) to queue. Takes resp. */
static void queue_or_hand_over(http_req *r, int status, struct MHD_Response *resp) {
    if (on_conn_thread(r)) {
        if (MHD_queue_response(r->conn, (unsigned)status, resp) == MHD_YES) r->queued = true;
        MHD_destroy_response(resp);
        return;
    }
    pthread_mutex_lock(&r->mu);
    if (!r->closed && !r->pending) {
        r->pending = resp;
        r->pending_status = status;
        resp = NULL;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    if (resp) MHD_destroy_response(resp);
}

/* Queue a response that owns data (freed with smp_free by MHD). */
static void queue_owned(http_req *r, int status, const char *ctype, char *data, size_t len) {
    if (r->responded) {
        smp_free(data);
        return;
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer_with_free_callback(len, data, smp_free);
    if (!resp) {
        smp_free(data);
        return;
    }
    if (ctype) MHD_add_response_header(resp, "Content-Type", ctype);
    add_common_headers(r, resp);
    r->responded = true;
    r->status = status;
    /* Recorded first: once handed over, the connection thread may send the
     * answer and MHD reuse the buffer r->method and r->path point into. */
    record_request(r, false);
    queue_or_hand_over(r, status, resp);
}

void http_send(http_req *r, int status, const char *ctype, const void *data, size_t len) {
    char *copy = smp_malloc(len + 1);
    if (!copy) return;
    memcpy(copy, data, len);
    copy[len] = '\0';
    queue_owned(r, status, ctype, copy, len);
}

void http_send_json(http_req *r, int status, json_t *body) {
    buf b;
    buf_init(&b, 0);
    int rc = valid_dump(body, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_REAL_PRECISION(9), &b);
    json_decref(body);
    if (rc != 0) {
        buf_free(&b);
        static const char oom[] = "{\"detail\":\"Internal server error: could not encode response\"}";
        http_send(r, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    size_t len;
    char *data = buf_detach(&b, &len);
    queue_owned(r, status, "application/json", data, len);
}

static const char *openai_error_type(int status) {
    switch (status) {
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

/* The error body in r's dialect; records the error on r. */
static json_t *error_body(http_req *r, int code, const char *msg) {
    /* Messages quote client bytes (a path, a model name), which may not be
     * UTF-8 or may have been cut mid-character: JSON needs them whole. */
    snprintf(r->error_text, sizeof r->error_text, "%s", msg);
    valid_utf8_repair(r->error_text);
    msg = r->error_text;
    r->error_code = code;
    switch (r->dialect) {
    case HTTP_DIALECT_OPENAI:
        return json_pack("{s:{s:s,s:s,s:n,s:s}}", "error", "message", msg, "type",
                         openai_error_type(smp_err_status(code)), "param", "code", smp_err_name(code));
    case HTTP_DIALECT_OLLAMA:
        return json_pack("{s:s}", "error", msg);
    default:
        return json_pack("{s:s}", "detail", msg);
    }
}

static void send_error_msg(http_req *r, int code, const char *msg) {
    if (code < 0) code = -code;
    json_t *body = error_body(r, code, msg);
    if (code == SMP_E_AUTH_MISSING || code == SMP_E_AUTH_INVALID) http_add_header(r, "WWW-Authenticate", "ApiKey");
    http_send_json(r, smp_err_status(code), body);
}

void http_send_error(http_req *r, int code, const char *fmt, ...) {
    char msg[ERROR_TEXT_MAX];
    if (!fmt) {
        snprintf(msg, sizeof msg, "%s", smp_err_message(code));
    } else {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    send_error_msg(r, code, msg);
}

void http_send_validation(http_req *r, json_t *detail) {
    json_t *first = json_array_get(detail, 0);
    const char *msg = first ? json_string_value(json_object_get(first, "msg")) : "Validation error";
    json_t *loc = first ? json_object_get(first, "loc") : NULL;
    const char *field = json_array_size(loc) > 1 ? json_string_value(json_array_get(loc, 1)) : NULL;
    char text[ERROR_TEXT_MAX];
    if (field)
        snprintf(text, sizeof text, "%s: %s", field, msg ? msg : "invalid");
    else
        snprintf(text, sizeof text, "%s", msg ? msg : "invalid request body");
    valid_utf8_repair(text);
    if (r->dialect == HTTP_DIALECT_OPENAI) {
        /* OpenAI's shape names the offending field in "param". */
        json_t *body = error_body(r, SMP_E_BAD_REQUEST, text);
        if (field && body) json_object_set_new(json_object_get(body, "error"), "param", json_string(field));
        json_decref(detail);
        http_send_json(r, 400, body);
        return;
    }
    if (r->dialect != HTTP_DIALECT_SIMPLETON) {
        json_decref(detail);
        /* Other dialects answer 400 with their own shape. */
        send_error_msg(r, SMP_E_BAD_REQUEST, text);
        return;
    }
    snprintf(r->error_text, sizeof r->error_text, "%s", text);
    r->error_code = SMP_E_VALIDATION;
    http_send_json(r, 422, json_pack("{s:o}", "detail", detail));
}

int http_multipart(http_req *r, const char *what, multipart *out) {
    char err[512];
    int rc = multipart_parse(http_header(r, "Content-Type"), r->body.data ? r->body.data : "", r->body.len, out, err,
                             sizeof err);
    if (rc == -SMP_E_UNSUPPORTED_MEDIA)
        http_send_error(r, rc, "Expected a multipart/form-data upload with %s (%s)", what, err);
    else if (rc)
        http_send_error(r, rc == -SMP_E_FORMAT ? SMP_E_BAD_REQUEST : rc, "Invalid multipart body: %s", err);
    return rc;
}

bool http_validation_done(http_req *r, valid *v) {
    bool ok = valid_ok(v);
    if (!ok) http_send_validation(r, valid_take(v));
    valid_free(v);
    return ok;
}

json_t *http_json_object(http_req *r) {
    valid v;
    valid_init(&v);
    json_t *j = valid_parse_object(&v, r->body.data ? r->body.data : "", r->body.len);
    if (!j) http_send_validation(r, valid_take(&v));
    valid_free(&v);
    return j;
}

static void req_free(http_req *r);

/* ---- asynchronous answers ------------------------------------------------ */

void http_detach(http_req *r) {
    atomic_fetch_add(&r->refs, 1);
    pthread_mutex_lock(&r->mu);
    r->detached = true;
    pthread_mutex_unlock(&r->mu);
}

/* The count drops under mu, so a connection thread waiting for a job to let
 * go (refs back to 1) cannot go on, and free r, before this thread is done
 * with it. */
void http_release(http_req *r) {
    if (!r) return;
    pthread_mutex_lock(&r->mu);
    int left = atomic_fetch_sub(&r->refs, 1) - 1;
    if (left) pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    if (!left) req_free(r);
}

/* No MHD call here (a producer may ask after the connection is gone): the
 * socket is looked at directly, under mu. MHD closes it only after the
 * connection's thread has run on_completed, which sets closed under mu. */
bool http_client_gone(http_req *r) {
    if (util_aborting()) return true; /* shutdown deadline passed */
    bool gone = true;
    pthread_mutex_lock(&r->mu);
    if (!r->closed && r->fd >= 0) {
        struct pollfd p = {.fd = r->fd, .events = POLLIN | POLLRDHUP};
        char c;
        if (poll(&p, 1, 0) <= 0)
            gone = false;
        else if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL))
            gone = true;
        else
            gone = recv(r->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
    }
    pthread_mutex_unlock(&r->mu);
    return gone;
}

bool http_client_gone_cb(void *r) { return http_client_gone(r); }

/* MHD pulls stream bytes here, on the connection's thread, which waits
 * until the producer writes, ends the stream or lets go of the request
 * (refs: MHD's, the stream response's and the producer's). */
static ssize_t stream_reader(void *cls, uint64_t pos, char *out, size_t max) {
    http_req *r = cls;
    ssize_t n;
    pthread_mutex_lock(&r->mu);
    if (r->stream.len == r->stream_off && !r->stream_ended && atomic_load(&r->refs) > 2) {
        /* MHD counts time spent in here against CONNECTION_TIMEOUT and would
         * drop a stream whose producer pauses longer (an upstream thinking):
         * no timeout while waiting; setting it again restarts its clock. */
        pthread_mutex_unlock(&r->mu);
        MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
        pthread_mutex_lock(&r->mu);
        while (r->stream.len == r->stream_off && !r->stream_ended && atomic_load(&r->refs) > 2)
            pthread_cond_wait(&r->cv, &r->mu);
        pthread_mutex_unlock(&r->mu);
        MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)cfg->connection_timeout);
        pthread_mutex_lock(&r->mu);
    }
    size_t avail = r->stream.len - r->stream_off;
    if (avail) {
        n = (ssize_t)(avail < max ? avail : max);
        memcpy(out, r->stream.data + r->stream_off, (size_t)n);
        r->stream_off += (size_t)n;
        if (r->stream_off == r->stream.len) {
            buf_reset(&r->stream);
            r->stream_off = 0;
        }
    } else if (r->stream_ended) {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    } else {
        n = MHD_CONTENT_READER_END_WITH_ERROR; /* the producer left without ending it */
    }
    pthread_mutex_unlock(&r->mu);
    return n;
}

static void stream_free(void *cls) { http_release(cls); }

int http_stream_begin(http_req *r, int status, const char *ctype, const void *first, size_t first_len) {
    /* The producer must be a worker: the connection's thread sends. */
    if (on_conn_thread(r)) return -1;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, r, stream_free);
    if (!resp) return -1;
    atomic_fetch_add(&r->refs, 1); /* held by the response until stream_free */
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    add_common_headers(r, resp);
    r->responded = true;
    r->status = status;
    pthread_mutex_lock(&r->mu);
    r->streaming = true;
    bool closed = r->closed;
    if (first_len) buf_append(&r->stream, first, first_len);
    pthread_mutex_unlock(&r->mu);
    if (closed) {
        MHD_destroy_response(resp); /* drops the stream's ref */
        return -1;
    }
    queue_or_hand_over(r, status, resp);
    return 0;
}

static int stream_push(http_req *r, const void *data, size_t len, bool end) {
    int rc = 0;
    pthread_mutex_lock(&r->mu);
    if (r->closed) {
        rc = -1;
    } else {
        if (len && buf_append(&r->stream, data, len) != 0) rc = -1;
        if (end) r->stream_ended = true;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int http_stream_write(http_req *r, const void *data, size_t len) { return stream_push(r, data, len, false); }

void http_stream_end(http_req *r) { stream_push(r, NULL, 0, true); }

/* ---- request life cycle -------------------------------------------------- */

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static bool valid_request_id(const char *s) {
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                         c == '_' || c == '.' || c == ':'))
            return false;
    }
    return n > 0;
}

static http_dialect dialect_of(const char *path) {
    if (!strncmp(path, "/v1/", 4) || !strcmp(path, "/v1")) return HTTP_DIALECT_OPENAI;
    if (!strncmp(path, "/api/", 5)) return HTTP_DIALECT_OLLAMA;
    return HTTP_DIALECT_SIMPLETON;
}

static http_req *req_new(struct MHD_Connection *c, const char *url, const char *method) {
    http_req *r = smp_calloc(1, sizeof *r);
    if (!r) return NULL;
    r->conn = c;
    r->t0 = util_now_ns();
    r->method = method;
    r->path = url;
    r->dialect = dialect_of(url);
    const char *rid = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && valid_request_id(rid))
        snprintf(r->request_id, sizeof r->request_id, "%s", rid);
    else
        util_unique_hex(16, r->request_id);
    r->thread = pthread_self();
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    r->fd = ci ? ci->connect_fd : -1;
    r->match_rc = router_match(method, url, &r->match);
    bool upload = r->match.route && (r->match.route->flags & ROUTE_UPLOAD);
    r->body_cap = (size_t)(upload ? cfg->max_upload_mb : cfg->max_body_mb) << 20;
    buf_init(&r->body, r->body_cap);
    buf_init(&r->stream, 0);
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    atomic_init(&r->refs, 1);
    return r;
}

static void req_free(http_req *r) {
    if (!r) return;
    buf_free(&r->body);
    buf_free(&r->stream);
    if (r->pending) MHD_destroy_response(r->pending);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    arena_free(&r->mem);
    smp_free(r);
}

static void too_large_msg(http_req *r, char *msg, size_t n) {
    snprintf(msg, n, "Request body too large: the limit is %zu MiB (%s)", r->body_cap >> 20,
             r->match.route && (r->match.route->flags & ROUTE_UPLOAD) ? "MAX_UPLOAD_MB" : "MAX_BODY_MB");
}

static void send_too_large(http_req *r) {
    char msg[128];
    too_large_msg(r, msg, sizeof msg);
    http_add_header(r, "Connection", "close");
    http_send_error(r, SMP_E_TOO_LARGE, "%s", msg);
}

/* A body without a Content-Length (chunked) has just passed the cap. MHD
 * cannot queue a reply while the body is still arriving, so the 413 is
 * written to the socket directly, now, while the client is still sending;
 * MHD then reads and drops what follows (bounded) and closes without a reply
 * of its own. The connection has sent nothing before, so these bytes are the
 * whole response. */
static void send_too_large_raw(http_req *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    char msg[128];
    too_large_msg(r, msg, sizeof msg);
    json_t *body = error_body(r, SMP_E_TOO_LARGE, msg);
    buf text;
    buf_init(&text, 0);
    int rc = valid_dump(body, JSON_COMPACT | JSON_ENSURE_ASCII, &text);
    json_decref(body);
    r->responded = true;
    r->answered_raw = true;
    r->status = 413;
    if (ci && rc == 0) {
        char out[1024];
        int n = snprintf(out, sizeof out,
                         "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
                         "Content-Length: %zu\r\nConnection: close\r\nX-Request-Id: %s\r\n\r\n%.*s",
                         text.len, r->request_id, (int)text.len, text.data);
        /* One small write into a socket buffer that holds nothing of ours. */
        if (n > 0 && (size_t)n < sizeof out) (void)send(ci->connect_fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    buf_free(&text);
    record_request(r, false);
}

/* ---- framing (RFC 9112) ----------------------------------------------------
 * MHD frames the body by the first Content-Length, treats a header name with
 * a space before the colon as some other header, and waits forever for the
 * end of a body whose Transfer-Encoding it does not know. Any of those lets a
 * request be smuggled past a proxy that reads the framing differently, or
 * hangs the connection, so they are refused (and the connection closed)
 * before a byte of the body is read. */

typedef struct {
    int n_length, n_coding, n_host;
    bool bad_name;
    char codings[256]; /* every Transfer-Encoding value, comma-joined */
    bool codings_cut;
} framing;

static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key, const char *value) {
    framing *f = cls;
    if (!key[0] || strpbrk(key, " \t")) f->bad_name = true;
    if (!strcasecmp(key, "Content-Length")) {
        f->n_length++;
    } else if (!strcasecmp(key, "Host")) {
        f->n_host++;
    } else if (!strcasecmp(key, "Transfer-Encoding")) {
        size_t used = strlen(f->codings);
        int n = snprintf(f->codings + used, sizeof f->codings - used, "%s%s", f->n_coding ? "," : "",
                         value ? value : "");
        if (n < 0 || (size_t)n >= sizeof f->codings - used) f->codings_cut = true;
        f->n_coding++;
    }
    return MHD_YES;
}

/* 0 when the request's framing is sound; else the error code to answer
 * (400, or 501 for a transfer coding we do not implement) with msg set. */
static int check_framing(struct MHD_Connection *c, const char *version, char *msg, size_t n) {
    framing f = {0};
    MHD_get_connection_values(c, MHD_HEADER_KIND, framing_header, &f);
    if (f.bad_name) {
        snprintf(msg, n, "Malformed header: no whitespace is allowed in a field name or before its colon");
        return SMP_E_BAD_REQUEST;
    }
    if (!strcmp(version, "HTTP/1.1") && f.n_host != 1) {
        snprintf(msg, n, "An HTTP/1.1 request needs exactly one Host header (it had %d)", f.n_host);
        return SMP_E_BAD_REQUEST;
    }
    if (f.n_length > 1) {
        snprintf(msg, n, "More than one Content-Length header");
        return SMP_E_BAD_REQUEST;
    }
    if (!f.n_coding) return 0;
    if (f.n_length) {
        snprintf(msg, n, "Both Transfer-Encoding and Content-Length were sent: send one");
        return SMP_E_BAD_REQUEST;
    }
    if (f.codings_cut) {
        snprintf(msg, n, "Transfer-Encoding is too long");
        return SMP_E_BAD_REQUEST;
    }
    /* A list of codings, chunked last and only there. */
    int rc = 0;
    bool last_chunked = false;
    for (char *save = NULL, *tok = strtok_r(f.codings, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ' || *tok == '\t') tok++;
        size_t len = strlen(tok);
        while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t')) tok[--len] = '\0';
        if (!len) continue;
        if (last_chunked) {
            snprintf(msg, n, "Transfer-Encoding: chunked must be the last coding");
            return SMP_E_BAD_REQUEST;
        }
        last_chunked = !strcasecmp(tok, "chunked");
        if (!last_chunked && !rc) {
            snprintf(msg, n, "Transfer-Encoding '%.40s' is not supported: send the body plain or chunked", tok);
            rc = SMP_E_NOT_IMPLEMENTED;
        }
    }
    if (!last_chunked) {
        snprintf(msg, n, "Transfer-Encoding without chunked as its last coding: the body's end cannot be found");
        return SMP_E_BAD_REQUEST;
    }
    return rc;
}

/* Answer an error and close the connection (the body, if any, is unread). */
static void send_error_close(http_req *r, int code, const char *msg) {
    http_add_header(r, "Connection", "close");
    http_send_error(r, code, "%s", msg);
}

static void answer_preflight(http_req *r) {
    const char *origin = http_header(r, "Origin");
    if (!origin_allowed(origin)) {
        http_send_error(r, SMP_E_FORBIDDEN, "CORS origin not allowed: %s", origin ? origin : "(none)");
        return;
    }
    const char *req_headers = http_header(r, "Access-Control-Request-Headers");
    http_add_header(r, "Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS");
    http_add_header(r, "Access-Control-Allow-Headers", req_headers ? req_headers : "*");
    http_add_header(r, "Access-Control-Max-Age", "600");
    http_send(r, 200, "text/plain", "", 0);
}

static void dispatch(http_req *r) {
    if (!strcmp(r->method, "OPTIONS") && http_header(r, "Access-Control-Request-Method")) {
        answer_preflight(r);
        return;
    }
    if (r->match_rc == -SMP_E_NOT_FOUND) {
        http_send_error(r, SMP_E_NOT_FOUND, "Not Found: %s %s", r->method, r->path);
        return;
    }
    if (r->match_rc == -SMP_E_METHOD_NOT_ALLOWED) {
        http_add_header(r, "Allow", r->match.allow);
        http_send_error(r, SMP_E_METHOD_NOT_ALLOWED, "Method Not Allowed: %s %s (allowed: %s)", r->method, r->path,
                        r->match.allow);
        return;
    }
    if (!(r->match.route->flags & ROUTE_PUBLIC)) {
        int rc = auth_check(http_header(r, "X-API-Key"), http_header(r, "Authorization"));
        if (rc != 0) {
            http_send_error(r, rc, NULL);
            return;
        }
    }
    r->match.route->handler(r);
    if (!r->responded && !r->detached) http_send_error(r, SMP_E_INTERNAL, "Internal server error: the handler gave no answer");
}

static conn_rec *guard_of(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
                          enum MHD_ConnectionNotificationCode code) {
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        *socket_context = ci ? conns_add(ci->connect_fd) : NULL;
    } else {
        conns_remove(*socket_context); /* before MHD closes the descriptor */
        *socket_context = NULL;
    }
}

/* MHD calls this with the request line read and the headers still to come,
 * before it parses the query string (uri still holds it, in MHD's writable
 * read buffer). */
static void *on_request_line(void *cls, const char *uri, struct MHD_Connection *c) {
    conns_set_state(guard_of(c), CONN_HEADERS);
    char *q = strchr(uri, '?');
    if (!q) return NULL;
    int params = 1;
    for (const char *p = q + 1; *p; p++) params += *p == '&';
    if (params <= MAX_QUERY_PARAMS) return NULL;
    q[1] = '\0'; /* MHD parses an empty query; the request is answered 400 */
    return TOO_MANY_PARAMS;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls) {
    http_req *r = *req_cls;
    if (!r || r == TOO_MANY_PARAMS) {
        bool too_many_params = r == TOO_MANY_PARAMS;
        r = req_new(c, url, method);
        if (!r) return MHD_NO; /* out of memory: drop the connection */
        *req_cls = r;
        atomic_fetch_add(&in_flight, 1);
        if (cfg->monitoring_enabled) metrics_in_progress_add(1);
        r->guard = guard_of(c);
        /* Headers are in: from here the body's deadline, or none. */
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        const char *te = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Transfer-Encoding");
        r->expect_body = te || (cl && strcmp(cl, "0"));
        conns_set_state(r->guard, r->expect_body ? CONN_BODY : CONN_BUSY);
        char msg[160];
        int code = check_framing(c, version, msg, sizeof msg);
        if (code) {
            send_error_close(r, code, msg);
        } else if (too_many_params) {
            snprintf(msg, sizeof msg, "Too many query parameters: at most %d are read", MAX_QUERY_PARAMS);
            send_error_close(r, SMP_E_BAD_REQUEST, msg);
        } else if (cl) {
            char *end;
            unsigned long long n = strtoull(cl, &end, 10);
            if (*end == '\0' && n > r->body_cap) {
                r->too_large = true;
                send_too_large(r); /* early: before reading the body */
            }
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        conns_body_bytes(r->guard, *upload_data_size);
        /* MHD cannot queue a reply while a body is still arriving: a chunked
         * body past the cap is read and thrown away (answered 413 at its end),
         * and a client that keeps sending past twice the cap is dropped. */
        if (!r->too_large && buf_append(&r->body, upload_data, *upload_data_size) != 0) {
            r->too_large = true;
            buf_free(&r->body);
            if (!r->responded) send_too_large_raw(r);
        }
        if (r->too_large) {
            r->discarded += *upload_data_size;
            if (r->discarded > r->body_cap) return MHD_NO;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->expect_body) conns_set_state(r->guard, CONN_BUSY); /* the whole body is in */
    r->expect_body = false;
    if (r->answered_raw) return MHD_NO; /* the 413 went out directly: close */
    if (r->too_large && !r->responded) send_too_large(r);
    if (!r->detached && !r->responded) dispatch(r);
    if (r->detached) {
        /* A job answers: wait until it hands over its response or lets go. */
        pthread_mutex_lock(&r->mu);
        while (!r->pending && atomic_load(&r->refs) > 1) pthread_cond_wait(&r->cv, &r->mu);
        struct MHD_Response *resp = r->pending;
        int status = r->pending_status;
        r->pending = NULL;
        pthread_mutex_unlock(&r->mu);
        if (resp) {
            if (MHD_queue_response(c, (unsigned)status, resp) == MHD_YES) r->queued = true;
            MHD_destroy_response(resp);
        }
    }
    /* Nothing queued (the job gave up because its client left, or queueing
     * failed): close, rather than have MHD call again at once, forever. */
    return r->queued ? MHD_YES : MHD_NO;
}

/* Count the request in metrics and analytics and write its access-log line.
 * Done when the answer is queued (so a client that reads an answer and then
 * asks /analytics sees its request counted), or at completion for streams and
 * requests that ended without an answer. */
static void record_request(http_req *r, bool closed_early) {
    if (atomic_exchange(&r->recorded, true)) return; /* a worker and MHD may race here */
    double secs = (double)(util_now_ns() - r->t0) / 1e9;
    int status = r->responded ? r->status : 499; /* 499: the client went away first */
    const char *endpoint = http_route(r);
    bool record = cfg->monitoring_enabled && !(r->match.route && (r->match.route->flags & ROUTE_NO_METRICS));
    if (record) {
        metrics_request_done(r->method, endpoint, status, secs);
        if (status >= 400)
            metrics_error(endpoint, r->error_code ? smp_err_name(r->error_code) : (status >= 500 ? "internal" : "client"));
        analytics_record(r->method, endpoint, status, secs, status >= 400 && r->error_text[0] ? r->error_text : NULL,
                         0);
    }
    if (cfg->access_log)
        log_info("%s %s %d %.3fms id=%s%s", r->method, r->path, status, secs * 1e3, r->request_id,
                 closed_early ? " (connection closed early)" : "");
}

static void on_completed(void *cls, struct MHD_Connection *c, void **req_cls, enum MHD_RequestTerminationCode toe) {
    conns_set_state(guard_of(c), CONN_IDLE); /* until the next request line */
    http_req *r = *req_cls;
    if (r == TOO_MANY_PARAMS) *req_cls = r = NULL;
    if (!r) return;
    *req_cls = NULL;
    record_request(r, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (cfg->monitoring_enabled) metrics_in_progress_add(-1);
    atomic_fetch_sub(&in_flight, 1);
    pthread_mutex_lock(&r->mu);
    r->closed = true;
    pthread_mutex_unlock(&r->mu);
    http_release(r);
}

/* Percent-decoding of paths and query values, as MHD's default does, except
 * that %00 stays as the three characters "%00": a NUL inside a path would
 * silently cut it short ("/rag/collections/a%00b" naming "a"). Left encoded,
 * the name is refused by validation instead. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
    char *w = s;
    for (const char *r = s; *r;) {
        int hi, lo;
        if (r[0] == '%' && (hi = hexval(r[1])) >= 0 && (lo = hexval(r[2])) >= 0 && (hi | lo)) {
            *w++ = (char)(hi << 4 | lo);
            r += 3;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = '\0';
    log_debug("http: %s", msg);
}

int http_server_start(const config *c, int *port, char *err, size_t errlen) {
    cfg = c;
    cors_any = !strcmp(c->cors_origins, "*");
    if (conns_start(c) != 0) {
        snprintf(err, errlen, "cannot start the connection guard thread");
        return -1;
    }
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)c->port);
    if (inet_pton(AF_INET, c->host, &sa.sin_addr) != 1) {
        snprintf(err, errlen, "HOST: '%s' is not an IPv4 address", c->host);
        return -1;
    }
    daemon_ = MHD_start_daemon(
        MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_ITC | MHD_USE_ERROR_LOG,
        (uint16_t)c->port, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->connection_timeout,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)64 * 1024, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_EXTERNAL_LOGGER,
        on_mhd_log, NULL, MHD_OPTION_LISTENING_ADDRESS_REUSE, 1, MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL,
        MHD_OPTION_NOTIFY_CONNECTION, on_connection, NULL, MHD_OPTION_URI_LOG_CALLBACK, on_request_line, NULL,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->max_connections_per_ip, MHD_OPTION_END);
    if (!daemon_) {
        conns_stop();
        snprintf(err, errlen, "cannot listen on %s:%ld (port in use, or no permission)", c->host, c->port);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    *port = info ? info->port : (int)c->port;
    return 0;
}

void http_server_stop(int deadline_s) {
    if (!daemon_) return;
    /* No new connections from here; the socket itself may be closed only
     * once the daemon is stopped. */
    MHD_socket fd = MHD_quiesce_daemon(daemon_);
    if (fd != MHD_INVALID_SOCKET) shutdown(fd, SHUT_RDWR);
    uint64_t until = util_now_ns() + (uint64_t)deadline_s * 1000000000ull;
    int waited = 0;
    while (atomic_load(&in_flight) > 0 && util_now_ns() < until) {
        if (!waited++) log_info("waiting for %d in-flight request(s)", atomic_load(&in_flight));
        usleep(20000);
    }
    if (atomic_load(&in_flight) > 0) {
        log_warn("shutdown deadline passed with %d request(s) in flight: cancelling them", atomic_load(&in_flight));
        util_abort_all();
        /* Workers notice through http_client_gone and answer promptly. */
        until = util_now_ns() + 10000000000ull;
        while (atomic_load(&in_flight) > 0 && util_now_ns() < until) usleep(20000);
    }
    MHD_stop_daemon(daemon_);
    conns_stop();
    if (fd != MHD_INVALID_SOCKET) close(fd);
    daemon_ = NULL;
}
