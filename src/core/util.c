/* util.c - see util.h. */
#include "util.h"

#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "alloc.h"
#include "errors.h"

uint64_t util_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

double util_wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void util_iso8601(double t, char *out, size_t n) {
    time_t s = (time_t)t;
    long us = (long)((t - (double)s) * 1e6);
    if (us < 0) us = 0;
    if (us > 999999) us = 999999;
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, us);
}

static const char hexd[] = "0123456789abcdef";

void util_sha256_hex(const void *data, size_t len, char *out) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hexd[md[i] >> 4];
        out[2 * i + 1] = hexd[md[i] & 15];
    }
    out[64] = '\0';
}

int util_random_hex(size_t nbytes, char *out) {
    unsigned char b[64];
    if (nbytes > sizeof b || RAND_bytes(b, (int)nbytes) != 1) return -1;
    for (size_t i = 0; i < nbytes; i++) {
        out[2 * i] = hexd[b[i] >> 4];
        out[2 * i + 1] = hexd[b[i] & 15];
    }
    out[2 * nbytes] = '\0';
    return 0;
}

static atomic_bool abort_all;

void util_abort_all(void) { atomic_store(&abort_all, true); }

bool util_aborting(void) { return atomic_load(&abort_all); }

const char *util_stop_reason(void) { return util_aborting() ? "the server is shutting down" : "the client left"; }

/* splitmix64: a 64-bit counter through a bijective mixer, so one thread's
 * outputs never repeat within 2^64 calls; threads start at random points. */
void util_unique_hex(size_t nbytes, char *out) {
    static _Thread_local uint64_t state;
    static _Thread_local bool seeded;
    if (!seeded) {
        if (getrandom(&state, sizeof state, 0) != (ssize_t)sizeof state)
            state = util_now_ns() ^ (uint64_t)(uintptr_t)&state;
        seeded = true;
    }
    if (nbytes > 64) nbytes = 64;
    for (size_t i = 0; i < nbytes; i += 8) {
        uint64_t z = (state += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        z ^= z >> 31;
        for (size_t k = 0; k < 8 && i + k < nbytes; k++, z >>= 8) {
            out[2 * (i + k)] = hexd[(z >> 4) & 15];
            out[2 * (i + k) + 1] = hexd[z & 15];
        }
    }
    out[2 * nbytes] = '\0';
}

bool util_ct_equal(const void *a, size_t alen, const void *b, size_t blen) {
    if (alen != blen) {
        /* Still touch the bytes so timing does not reveal the prefix. */
        (void)CRYPTO_memcmp(a, a, alen);
        return false;
    }
    return CRYPTO_memcmp(a, b, alen) == 0;
}

static int b64_val(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

size_t util_b64_decoded_max(size_t len) { return len / 4 * 3 + 3; }

long util_b64_decode(const char *in, size_t len, unsigned char *out, char *err, size_t errlen) {
    unsigned acc = 0;
    int nq = 0, pad = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == '\r' || c == '\n') continue;
        if (c == '=') {
            if (nq < 2) {
                snprintf(err, errlen, "misplaced '=' padding at offset %zu", i);
                return -1;
            }
            pad++;
            nq++;
            acc <<= 6;
            if (nq == 4) {
                if (pad == 1) {
                    out[o++] = (unsigned char)(acc >> 16);
                    out[o++] = (unsigned char)(acc >> 8);
                } else {
                    out[o++] = (unsigned char)(acc >> 16);
                }
                nq = 0;
                /* Only line breaks may follow the padding. */
                for (size_t j = i + 1; j < len; j++)
                    if (in[j] != '\r' && in[j] != '\n') {
                        snprintf(err, errlen, "data after '=' padding at offset %zu", j);
                        return -1;
                    }
                return (long)o;
            }
            continue;
        }
        if (pad) {
            snprintf(err, errlen, "data after '=' padding at offset %zu", i);
            return -1;
        }
        int v = b64_val(c);
        if (v < 0) {
            if (c >= 0x20 && c < 0x7f)
                snprintf(err, errlen, "invalid character '%c' at offset %zu", c, i);
            else
                snprintf(err, errlen, "invalid byte 0x%02x at offset %zu", c, i);
            return -1;
        }
        acc = (acc << 6) | (unsigned)v;
        if (++nq == 4) {
            out[o++] = (unsigned char)(acc >> 16);
            out[o++] = (unsigned char)(acc >> 8);
            out[o++] = (unsigned char)acc;
            nq = 0;
            acc = 0;
        }
    }
    if (nq != 0) {
        snprintf(err, errlen, "incorrect padding: length is not a multiple of 4");
        return -1;
    }
    return (long)o;
}

size_t util_b64_encode(const unsigned char *in, size_t len, char *out) {
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = tbl[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)in[i] << 16;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = '=';
        out[o++] = '=';
    } else if (len - i == 2) {
        unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
        out[o++] = tbl[v >> 18];
        out[o++] = tbl[(v >> 12) & 63];
        out[o++] = tbl[(v >> 6) & 63];
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

int util_fmt_float(float xf, char *out) {
    static const double p10[] = {1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14,
                                 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    double x = xf;
    char *o = out;
    if (!isfinite(x) || x == 0) {
        *o++ = '0';
        *o = '\0';
        return 1;
    }
    if (x < 0) {
        *o++ = '-';
        x = -x;
    }
    /* x = m * 10^(e-8) with m a 9-digit integer. */
    int be;
    frexp(x, &be); /* x = f * 2^be, f in [0.5, 1): log10(x) is within one of this */
    int e = (int)floor((be - 1) * 0.30102999566398120);
    int sh = 8 - e;
    double scaled = sh >= 0 ? (sh < 23 ? x * p10[sh] : x * pow(10, sh)) : (-sh < 23 ? x / p10[-sh] : x / pow(10, -sh));
    uint64_t m = (uint64_t)(scaled + 0.5);
    if (m >= 1000000000ull) { /* the estimate was one low, or rounding carried */
        m = (uint64_t)(scaled / 10 + 0.5);
        e++;
        if (m >= 1000000000ull) m /= 10, e++;
    } else if (m < 100000000ull) { /* the estimate was one high */
        m = (uint64_t)(scaled * 10 + 0.5);
        e--;
    }
    char d[9];
    for (int i = 8; i >= 0; i--, m /= 10) d[i] = (char)('0' + m % 10);
    int nd = 9;
    while (nd > 1 && d[nd - 1] == '0') nd--;
    if (e >= 0 && e < 9) { /* ddd.ddd */
        for (int i = 0; i <= e; i++) *o++ = i < nd ? d[i] : '0';
        if (nd > e + 1) {
            *o++ = '.';
            for (int i = e + 1; i < nd; i++) *o++ = d[i];
        }
    } else if (e < 0 && e >= -5) { /* 0.000ddd */
        *o++ = '0';
        *o++ = '.';
        for (int i = -1; i > e; i--) *o++ = '0';
        for (int i = 0; i < nd; i++) *o++ = d[i];
    } else { /* d.ddde±x */
        *o++ = d[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = d[i];
        }
        o += sprintf(o, "e%d", e);
    }
    *o = '\0';
    return (int)(o - out);
}

bool util_is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int util_read_file(const char *path, size_t max, char **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return -SMP_E_IO;
    int rc = -SMP_E_IO;
    struct stat st;
    char *buf = NULL;
    if (fstat(fileno(f), &st) != 0) goto done;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISDIR(st.st_mode) ? EISDIR : EINVAL; /* a device, a pipe: "not a regular file" */
        goto done;
    }
    if ((uint64_t)st.st_size > max) {
        rc = -SMP_E_TOO_LARGE;
        goto done;
    }
    buf = smp_malloc((size_t)st.st_size + 1);
    if (!buf) {
        rc = -SMP_E_NOMEM;
        goto done;
    }
    if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
        smp_free(buf);
        buf = NULL;
        goto done;
    }
    buf[st.st_size] = '\0';
    *out = buf;
    *len = (size_t)st.st_size;
    rc = 0;
done:
    fclose(f);
    return rc;
}
