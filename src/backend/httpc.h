/* httpc.h - a small HTTP client for the remote backends (libcurl easy API).
 *
 * An httpc is one upstream server: a name for messages ("ollama"), a base URL,
 * an optional bearer key and a pool of idle curl easy handles. A request takes
 * a handle from the pool (or makes one) and gives it back afterwards; a handle
 * keeps its live connection between uses, so sequential requests reuse one
 * TCP connection and concurrent requests each get their own handle. Calls are
 * blocking and may run on many threads at once.
 *
 * Two ways to read a response: whole (the body is collected into resp->body,
 * capped), or as lines (on_line is called for every complete line of a 2xx
 * body as it arrives, however curl splits the bytes; the last line need not end
 * in '\n'). Error bodies (status outside 200..299) are always collected, never
 * passed to on_line.
 *
 * Timeouts: connect_ms bounds the TCP/TLS connect. timeout_ms bounds a whole
 * request that is read whole; for a line-read request it bounds the silence:
 * no byte for timeout_ms ends the transfer (like a read timeout), so a long
 * generation that keeps streaming is never cut. Silence and cancelled() are
 * checked at least every 50 ms during a transfer.
 *
 * Error messages name the upstream (see backend.h for the code meanings). */
#ifndef SMP_HTTPC_H
#define SMP_HTTPC_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

#define HTTPC_ABORTED 2               /* positive: on_line or cancelled() stopped it */
#define HTTPC_MAX_BODY (256u << 20)   /* default cap of a collected body */
#define HTTPC_MAX_LINE (64u << 20)    /* longest line passed to on_line */
#define HTTPC_MAX_ERROR_BODY (64u << 10)

/* Timeouts of a remote backend, in milliseconds (tests shorten them). */
typedef struct {
    long connect_ms;  /* TCP/TLS connect */
    long generate_ms; /* longest silence while generating (read timeout) */
    long embed_ms;    /* a whole embeddings request */
    long list_ms;     /* the model list */
    long health_ms;   /* a health probe */
} httpc_timeouts;
#define HTTPC_TIMEOUTS_DEFAULT ((httpc_timeouts){5000, 300000, 120000, 10000, 3000})

/* curl_global_init, once per process (thread-safe through pthread_once; curl
 * allocates through smp_malloc). main calls it before starting threads; the
 * backend constructors call it too, so tests need not. Also ignores SIGPIPE if
 * it is still at its default action. Returns 0 or -SMP_E_INTERNAL. */
int httpc_global_init(void);

typedef struct httpc httpc;

/* name is used in messages; base_url is http(s)://... (a trailing '/' is
 * dropped); bearer may be NULL or "" for no Authorization header. Returns NULL
 * with a message in err. */
httpc *httpc_new(const char *name, const char *base_url, const char *bearer, char *err, size_t errlen);
void httpc_free(httpc *c); /* NULL is fine; no request may be running */
void httpc_set_connect_timeout(httpc *c, long ms);
const char *httpc_name(const httpc *c);
const char *httpc_base_url(const httpc *c);

/* A complete line (without "\n" or "\r\n"), NUL-terminated in place; valid
 * during the call only. Return non-zero to stop the transfer. */
typedef int (*httpc_line_fn)(void *ud, const char *line, size_t len);

typedef struct {
    const char *path;       /* appended to the base URL: "/api/generate" */
    const char *body;       /* POST this JSON; NULL: GET */
    size_t body_len;
    long timeout_ms;        /* see the top of the file; <= 0: none */
    size_t max_body;        /* cap of a collected 2xx body; 0: HTTPC_MAX_BODY */
    httpc_line_fn on_line;  /* NULL: collect the body */
    void *ud;
    bool (*cancelled)(void *ud); /* polled during the transfer; may be NULL */
    void *cancel_ud;
} httpc_req;

typedef struct {
    long status; /* HTTP status; 0 when no response arrived */
    buf body;    /* collected body (2xx without on_line, or any error body) */
} httpc_resp;

/* Run one request. Returns
 *   0                  a complete response arrived (any status: check it)
 *   HTTPC_ABORTED      on_line returned non-zero or cancelled() said so
 *   -SMP_E_UNAVAILABLE connect failed, name did not resolve, or timed out:
 *                      "Could not connect to <name> at <url>: <reason>";
 *                      or the shutdown deadline passed (util_aborting) and
 *                      cancelled() (if any) did not stop it first:
 *                      "Request to <name> at <url> stopped: the server is shutting down"
 *   -SMP_E_BACKEND     the connection broke or the body was too big:
 *                      "Backend error: <name> stream ended before the answer was complete (...)"
 *   -SMP_E_NOMEM / -SMP_E_INTERNAL
 * resp is always initialised; free it with httpc_resp_free. */
int httpc_request(httpc *c, const httpc_req *req, httpc_resp *resp, char *err, size_t errlen);
void httpc_resp_free(httpc_resp *resp);

/* For a response with a status outside 200..299: the error code and message.
 * 404 whose text mentions a model -> -SMP_E_NOT_FOUND "<name>: <upstream text>";
 * anything else -> -SMP_E_BACKEND "Backend error: <name> returned <status>: <text>".
 * The upstream text is {"error":"..."}, {"error":{"message":"..."}},
 * {"detail":"..."} or the body itself, shortened. */
int httpc_status_error(const httpc *c, const httpc_resp *resp, char *err, size_t errlen);

/* Helper shared by the remote backends: "embedding" when a model name or
 * family looks like an embedding model (embed, bert, minilm, bge, e5-), else
 * "llm". family may be NULL. Returns a static string. */
const char *httpc_model_kind(const char *name, const char *family);

#endif
