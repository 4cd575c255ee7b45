/* util.h - small shared helpers: clocks, hashes, random ids, constant-time
 * comparison, strict base64. Hashing and randomness come from libcrypto. */
#ifndef SMP_UTIL_H
#define SMP_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint64_t util_now_ns(void);      /* CLOCK_MONOTONIC */
double util_wall_seconds(void);  /* CLOCK_REALTIME, seconds since the epoch */
/* ISO 8601 UTC with microseconds: "2026-11-23T10:00:00.123456Z". out >= 32 bytes. */
void util_iso8601(double wall_seconds, char *out, size_t n);

/* SHA-256 of data as 64 lowercase hex digits + NUL (out >= 65 bytes). */
void util_sha256_hex(const void *data, size_t len, char *out);
/* n random bytes as 2n hex digits + NUL. Returns 0 or -1. For secrets. */
int util_random_hex(size_t nbytes, char *out);
/* n unpredictable-enough bytes as 2n hex digits + NUL, for identifiers that
 * must not repeat (request and completion ids), not for secrets: a per-thread
 * generator seeded once from the system's randomness. ~50x cheaper than
 * util_random_hex, which costs ~5 us a call on the request path. nbytes <= 64. */
void util_unique_hex(size_t nbytes, char *out);
/* Process-wide "give up now": set once when shutdown's deadline passes;
 * network waits with no client of their own to watch (vector-store calls,
 * model lists, probes) poll it and stop. */
void util_abort_all(void);
bool util_aborting(void);
/* Why work that watches its client (http_client_gone, which also turns true
 * at the deadline) was stopped, for its message: "the server is shutting
 * down" once util_abort_all ran, else "the client left". */
const char *util_stop_reason(void);
/* Constant-time equality of two byte strings (time depends only on lengths). */
bool util_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

/* Strict base64 (RFC 4648, standard alphabet, '=' padding required, no
 * whitespace except that CR/LF are skipped). Returns decoded length, or -1 with
 * a message in err (what was wrong, and at which offset). out needs
 * util_b64_decoded_max(len) bytes. */
size_t util_b64_decoded_max(size_t len);
long util_b64_decode(const char *in, size_t len, unsigned char *out, char *err, size_t errlen);
/* Encode; out needs 4*ceil(len/3)+1 bytes. Returns the length written. */
size_t util_b64_encode(const unsigned char *in, size_t len, char *out);

/* Format a float as a JSON number with 9 significant digits (enough to read
 * back the same float32), trailing zeros trimmed; NaN and infinities (which
 * JSON cannot carry) as 0. Several times faster than printf("%.9g"). out needs
 * 24 bytes. Returns the length. */
int util_fmt_float(float x, char *out);

/* Is path a regular file (links followed)? */
bool util_is_file(const char *path);
/* The whole of a regular file, NUL-terminated (owned, smp_free), at most
 * max bytes. Returns 0; -SMP_E_IO (cannot open or read, or not a regular
 * file; errno tells why); -SMP_E_TOO_LARGE; -SMP_E_NOMEM. */
int util_read_file(const char *path, size_t max, char **out, size_t *len);

#endif
