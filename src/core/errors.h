/* errors.h - the one error table.
 *
 * Each row: symbolic code, HTTP status, default message. Functions that can fail
 * return 0 or a negative code (-SMP_E_NOT_FOUND); the HTTP layer turns a code into
 * a status and a body in the caller's dialect. The symbolic name (lowercased) is
 * the error_type label of simpleton_errors_total. */
#ifndef SMP_ERRORS_H
#define SMP_ERRORS_H

#define SMP_ERRORS(X)                                                                   \
    X(OK, 200, "OK")                                                                    \
    X(BAD_REQUEST, 400, "Bad request")                                                  \
    X(AUTH_MISSING, 401, "Missing API Key. Include 'X-API-Key' header in your request.") \
    X(AUTH_INVALID, 401, "Invalid API Key")                                             \
    X(FORBIDDEN, 403, "Forbidden")                                                      \
    X(NOT_FOUND, 404, "Not Found")                                                      \
    X(METHOD_NOT_ALLOWED, 405, "Method Not Allowed")                                    \
    X(TIMEOUT, 408, "Request timed out")                                                \
    X(CONFLICT, 409, "Conflict")                                                        \
    X(TOO_LARGE, 413, "Request body too large")                                         \
    X(UNSUPPORTED_MEDIA, 415, "Unsupported media type")                                 \
    X(VALIDATION, 422, "Validation error")                                              \
    X(TOO_MANY, 429, "Too many requests")                                               \
    X(INTERNAL, 500, "Internal server error")                                           \
    X(NOMEM, 500, "Out of memory")                                                      \
    X(NOT_IMPLEMENTED, 501, "Not implemented")                                          \
    X(BACKEND, 502, "Backend error")                                                    \
    X(UNAVAILABLE, 503, "Service unavailable")                                          \
    X(IO, 500, "I/O error")                                                             \
    X(FORMAT, 400, "Invalid data format")

typedef enum {
#define SMP_ERR_ENUM(name, status, msg) SMP_E_##name,
    SMP_ERRORS(SMP_ERR_ENUM)
#undef SMP_ERR_ENUM
    SMP_E__COUNT
} smp_err;

/* code may be given positive or negative. Unknown codes map to INTERNAL. */
int smp_err_status(int code);
const char *smp_err_message(int code);
const char *smp_err_name(int code); /* "not_found", "validation", ... */

/* Always-on invariant check for programming errors (never for client input). */
void smp_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define SMP_ASSERT(e) ((e) ? (void)0 : smp_assert_fail(#e, __FILE__, __LINE__))

#endif
