/* auth.c - see auth.h. */
#include "auth.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"

#define MAX_KEYS 64

/* Keys are kept and compared as SHA-256 digests: every comparison then
 * reads the same number of bytes in constant time, so neither a key's
 * content nor its length shows in the response time. */
static char *keys[MAX_KEYS]; /* hex digests */
static int nkeys;

static int add_key(const char *s, size_t n) {
    while (n && (*s == ' ' || *s == '\t')) s++, n--;
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
    if (!n) return 0;
    if (nkeys >= MAX_KEYS) return -1;
    keys[nkeys] = smp_malloc(65);
    if (!keys[nkeys]) return -1;
    util_sha256_hex(s, n, keys[nkeys++]);
    return 0;
}

/* mkdir -p for one or two levels is all DATA_DIR needs. */
static int ensure_dir(const char *dir) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(tmp, 0700) == 0 || errno == EEXIST ? 0 : -1;
}

static int load_or_generate(const config *c, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/api_key", c->data_dir);
    FILE *f = fopen(path, "r");
    if (f) {
        char line[512];
        size_t n = fread(line, 1, sizeof line - 1, f);
        fclose(f);
        line[n] = '\0';
        if (add_key(line, strlen(line)) != 0 || nkeys == 0) {
            snprintf(err, errlen, "%s holds no usable API key; delete it to generate a new one", path);
            return -1;
        }
        log_info("API key loaded from %s", path);
        return 0;
    }
    if (ensure_dir(c->data_dir) != 0) {
        snprintf(err, errlen, "DATA_DIR: cannot create %s: %s", c->data_dir, strerror(errno));
        return -1;
    }
    char key[64] = "smp-";
    if (util_random_hex(24, key + 4) != 0) {
        snprintf(err, errlen, "cannot generate an API key: no randomness");
        return -1;
    }
    /* O_EXCL: two processes starting together must not both write. */
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    size_t kl = strlen(key);
    int ok = write(fd, key, kl) == (ssize_t)kl && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    if (!ok) {
        unlink(path);
        snprintf(err, errlen, "cannot write %s", path);
        return -1;
    }
    add_key(key, kl);
    /* Printed once, on stdout, so it can be captured apart from the log. */
    printf("Generated API key (kept in %s, mode 0600): %s\n", path, key);
    fflush(stdout);
    return 0;
}

int auth_init(const config *c, char *err, size_t errlen) {
    auth_free();
    if (c->api_keys && *c->api_keys) {
        const char *s = c->api_keys;
        while (*s) {
            const char *e = strchr(s, ',');
            size_t n = e ? (size_t)(e - s) : strlen(s);
            if (add_key(s, n) != 0) {
                snprintf(err, errlen, "API_KEYS: too many keys (at most %d)", MAX_KEYS);
                return -1;
            }
            s += n;
            if (*s == ',') s++;
        }
        if (nkeys == 0) {
            snprintf(err, errlen, "API_KEYS: no key in '%s'", c->api_keys);
            return -1;
        }
        return 0;
    }
    return load_or_generate(c, err, errlen);
}

void auth_free(void) {
    for (int i = 0; i < nkeys; i++) smp_free(keys[i]);
    nkeys = 0;
}

int auth_check(const char *x_api_key, const char *authorization) {
    const char *given = x_api_key && *x_api_key ? x_api_key : NULL;
    if (!given && authorization && !strncasecmp(authorization, "Bearer ", 7)) {
        given = authorization + 7;
        while (*given == ' ') given++;
        if (!*given) given = NULL;
    }
    if (!given) return -SMP_E_AUTH_MISSING;
    size_t gl = strlen(given);
    /* Whitespace around a field value is not part of it (RFC 9110 5.5);
     * MHD drops the leading part only. */
    while (gl && (given[gl - 1] == ' ' || given[gl - 1] == '\t')) gl--;
    char digest[65];
    util_sha256_hex(given, gl, digest);
    int match = 0;
    for (int i = 0; i < nkeys; i++) match |= util_ct_equal(digest, 64, keys[i], 64);
    return match ? 0 : -SMP_E_AUTH_INVALID;
}
