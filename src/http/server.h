/* server.h - the HTTP server (libmicrohttpd) and the request API handlers use.
 *
 * One http_req per request: created on the first callback, freed when MHD
 * reports the request complete. A handler reads the request through the
 * accessors and answers exactly once with one of the http_send_* calls; a
 * handler that answers nothing gets a 500. Handlers run on their
 * connection's own thread and may block (see "Answering later" below).
 *
 * Middleware order: request id -> CORS preflight -> route match (404/405) ->
 * body size cap (413 from Content-Length before reading) -> auth -> handler;
 * on completion: metrics + analytics (unless MONITORING_ENABLED=false or the
 * route opts out) and one access-log line. */
#ifndef SMP_HTTP_SERVER_H
#define SMP_HTTP_SERVER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

typedef struct http_req http_req;

typedef enum {
    HTTP_DIALECT_SIMPLETON, /* {"detail": ...} */
    HTTP_DIALECT_OPENAI,    /* paths under /v1: {"error": {"message","type","param","code"}} */
    HTTP_DIALECT_OLLAMA,    /* paths under /api: {"error": "..."} */
} http_dialect;

/* Start listening (routes must be registered first). *port receives the bound
 * port (useful with PORT=0). */
int http_server_start(const config *c, int *port, char *err, size_t errlen);
/* Graceful stop: stop accepting, wait up to deadline_s for in-flight requests,
 * then close everything. */
void http_server_stop(int deadline_s);
int http_in_flight(void);

/* Request accessors. Strings live as long as the request. */
const char *http_method(const http_req *r);
const char *http_path(const http_req *r);
const char *http_route(const http_req *r); /* the matched template */
const char *http_request_id(const http_req *r);
http_dialect http_req_dialect(const http_req *r);
const char *http_header(http_req *r, const char *name);
const char *http_query(http_req *r, const char *name);
const char *http_param(const http_req *r, const char *name);
const char *http_body(const http_req *r, size_t *len);

/* Responses. Extra headers added before the send go out with it (as many
 * as a handler adds; -1 only when memory runs out). */
int http_add_header(http_req *r, const char *name, const char *value);
void http_send(http_req *r, int status, const char *content_type, const void *data, size_t len);
/* Takes ownership of body (decref'd). */
void http_send_json(http_req *r, int status, json_t *body);
/* An error in the request's dialect. code: an smp_err (sign ignored) whose
 * status is used; fmt NULL: the table's message. */
void http_send_error(http_req *r, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 422 with a detail list (takes ownership); other dialects get a 400 with the
 * first problem as the message. */
void http_send_validation(http_req *r, json_t *detail);
/* End of a handler's validation: when v holds problems, answers them as
 * http_send_validation does and returns false. Frees v's contents either way. */
struct valid;
bool http_validation_done(http_req *r, struct valid *v);

/* Handlers run on the connection's own thread and may block there (on a
 * model, an upstream, a cache). Answering from a job, there or on a worker:
 *   http_detach(r)   in the handler: the request stays alive until
 *                    http_release. Then run the job, or hand r to a worker
 *                    and return: the connection's thread waits for the answer.
 *                    The job answers once (http_send_* or a stream) and
 *                    calls http_release(r).
 *   http_client_gone true when the client disconnected or the server is
 *                    shutting down past its deadline: stop work early.
 * Streaming (from a worker, after http_detach):
 *   http_stream_begin(r, 200, "text/event-stream", first, len) (the first bytes
 *   go out with the headers), then http_stream_write
 *   per piece (sent at once, chunked), then http_stream_end. write returns -1
 *   once the client is gone. */
void http_detach(http_req *r);
void http_release(http_req *r);
bool http_client_gone(http_req *r);
/* http_client_gone with r as void *: a cancelled() callback for the engine,
 * the backends and the media modules. */
bool http_client_gone_cb(void *r);
int http_stream_begin(http_req *r, int status, const char *content_type, const void *first, size_t first_len);
int http_stream_write(http_req *r, const void *data, size_t len);
void http_stream_end(http_req *r);

/* Parse the body as a JSON object. On failure the 422 is already sent and
 * NULL returned. The caller owns the result. */
json_t *http_json_object(http_req *r);
/* The body as multipart/form-data (parts point into the body, which lives as
 * long as r). On failure answers 415 (not multipart: `what` says what the
 * route expects, e.g. "the image in a field named 'file'") or 400 (malformed)
 * itself and returns non-zero. */
struct multipart;
int http_multipart(http_req *r, const char *what, struct multipart *out);

#endif
