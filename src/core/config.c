/* config.c - see config.h. Load order: defaults < .env < environment. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "alloc.h"
#include "log.h"

enum kind { K_STR, K_URL, K_INT, K_NUM, K_BOOL, K_LEVEL };

static const struct var {
    enum kind kind;
    const char *name, *def, *help;
    double lo, hi;
    size_t off;
} vars[] = {
#define CONFIG_ROW(kind, field, name, def, lo, hi, help) {K_##kind, name, def, help, lo, hi, offsetof(config, field)},
    CONFIG_VARS(CONFIG_ROW)
#undef CONFIG_ROW
};
#define NVARS (sizeof vars / sizeof vars[0])

static const config *current;

const config *config_get(void) { return current; }
void config_set(const config *c) { current = c; }

/* .env values read so far; index parallel to vars. */
typedef struct {
    char *val[NVARS];
} dotenv;

static int var_index(const char *name, size_t n) {
    for (size_t i = 0; i < NVARS; i++)
        if (strlen(vars[i].name) == n && !memcmp(vars[i].name, name, n)) return (int)i;
    return -1;
}

/* Parse KEY=VALUE lines; '#' comments, optional "export ", optional quotes.
 * Unknown keys are ignored (a .env is often shared with other tools). */
static int read_dotenv(const char *path, dotenv *d, char *err, size_t errlen) {
    FILE *f = fopen(path, "r");
    if (!f) return 0; /* no .env is fine */
    char line[8192];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *s = line;
        size_t n = strlen(s);
        while (n && (s[n - 1] == '\n' || s[n - 1] == '\r')) s[--n] = '\0';
        while (isspace((unsigned char)*s)) s++;
        if (!*s || *s == '#') continue;
        if (!strncmp(s, "export ", 7)) s += 7;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected KEY=VALUE", path, lineno);
            fclose(f);
            return -1;
        }
        char *k = s, *ke = eq;
        while (ke > k && isspace((unsigned char)ke[-1])) ke--;
        char *v = eq + 1;
        while (isspace((unsigned char)*v)) v++;
        size_t vn = strlen(v);
        if (vn >= 2 && (v[0] == '"' || v[0] == '\'') && v[vn - 1] == v[0]) {
            v[vn - 1] = '\0';
            v++;
        } else {
            char *hash = strstr(v, " #"); /* trailing comment on an unquoted value */
            if (hash) *hash = '\0';
            vn = strlen(v);
            while (vn && isspace((unsigned char)v[vn - 1])) v[--vn] = '\0';
        }
        int i = var_index(k, (size_t)(ke - k));
        if (i < 0) continue;
        smp_free(d->val[i]);
        d->val[i] = smp_strdup(v);
    }
    fclose(f);
    return 0;
}

static int parse_bool(const char *s, bool *out) {
    static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(s, yes[i])) return *out = true, 0;
        if (!strcasecmp(s, no[i])) return *out = false, 0;
    }
    return -1;
}

static int set_var(config *c, const struct var *v, const char *s, char *err, size_t errlen) {
    char *base = (char *)c + v->off;
    switch (v->kind) {
    case K_STR:
    case K_URL: {
        if (v->kind == K_URL && *s && strncmp(s, "http://", 7) && strncmp(s, "https://", 8) &&
            strncmp(s, "redis://", 8) && strncmp(s, "rediss://", 9) && strncmp(s, "unix://", 7)) {
            snprintf(err, errlen, "%s: '%s' is not a URL (expected http://, https:// or redis://)", v->name, s);
            return -1;
        }
        char **p = (char **)base;
        smp_free(*p);
        *p = smp_strdup(s);
        return *p ? 0 : -1;
    }
    case K_INT: {
        char *end;
        errno = 0;
        long x = strtol(s, &end, 10);
        if (!*s || *end || errno) {
            snprintf(err, errlen, "%s: '%s' is not an integer", v->name, s);
            return -1;
        }
        if (x < v->lo || x > v->hi) {
            snprintf(err, errlen, "%s: %ld is out of range (%.0f..%.0f)", v->name, x, v->lo, v->hi);
            return -1;
        }
        *(long *)base = x;
        return 0;
    }
    case K_NUM: {
        char *end;
        errno = 0;
        double x = strtod(s, &end);
        if (!*s || *end || errno || !isfinite(x)) {
            snprintf(err, errlen, "%s: '%s' is not a number", v->name, s);
            return -1;
        }
        if (x < v->lo || x > v->hi) {
            snprintf(err, errlen, "%s: %g is out of range (%g..%g)", v->name, x, v->lo, v->hi);
            return -1;
        }
        *(double *)base = x;
        return 0;
    }
    case K_BOOL:
        if (parse_bool(s, (bool *)base) != 0) {
            snprintf(err, errlen, "%s: '%s' is not a boolean (true/false)", v->name, s);
            return -1;
        }
        return 0;
    case K_LEVEL: {
        int lv = log_parse_level(s);
        if (lv < 0) {
            snprintf(err, errlen, "%s: '%s' is not a log level (DEBUG, INFO, WARNING, ERROR)", v->name, s);
            return -1;
        }
        *(int *)base = lv;
        return 0;
    }
    }
    return -1;
}

int config_load(config *c, const char *env_file, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    dotenv d = {{0}};
    int rc = -1;
    if (!env_file) env_file = getenv("ENV_FILE");
    if (!env_file) env_file = ".env";
    if (read_dotenv(env_file, &d, err, errlen) != 0) goto done;
    for (size_t i = 0; i < NVARS; i++) {
        const char *s = getenv(vars[i].name);
        if (!s) s = d.val[i];
        if (!s) s = vars[i].def;
        if (set_var(c, &vars[i], s, err, errlen) != 0) goto done;
    }
    if (c->chunk_overlap >= c->chunk_size) {
        snprintf(err, errlen, "CHUNK_OVERLAP: %ld must be smaller than CHUNK_SIZE (%ld)", c->chunk_overlap,
                 c->chunk_size);
        goto done;
    }
    rc = 0;
done:
    for (size_t i = 0; i < NVARS; i++) smp_free(d.val[i]);
    if (rc != 0) config_free(c);
    return rc;
}

void config_free(config *c) {
    if (!c) return;
    for (size_t i = 0; i < NVARS; i++)
        if (vars[i].kind == K_STR || vars[i].kind == K_URL) {
            char **p = (char **)((char *)c + vars[i].off);
            smp_free(*p);
            *p = NULL;
        }
    smp_free(c->api_key_file);
    c->api_key_file = NULL;
}

void config_print_help(void *file) {
    FILE *f = file;
    fprintf(f, "Environment variables (also read from ./.env or ENV_FILE; the environment wins):\n\n");
    for (size_t i = 0; i < NVARS; i++)
        fprintf(f, "  %-30s default: %-18s %s\n", vars[i].name, *vars[i].def ? vars[i].def : "(unset)", vars[i].help);
}
