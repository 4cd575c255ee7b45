/* router.c - see router.h. Routes are few (< 100): a linear scan comparing
 * segment by segment is faster than anything cleverer at this size. */
#include "router.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"

static route routes[ROUTER_MAX_ROUTES];
static int nroutes;

int router_add(const char *method, const char *tmpl, route_handler h, int flags, const char *summary) {
    SMP_ASSERT(nroutes < ROUTER_MAX_ROUTES && tmpl[0] == '/');
    routes[nroutes++] = (route){method, tmpl, h, flags, summary};
    return 0;
}

void router_reset(void) { nroutes = 0; }
int router_count(void) { return nroutes; }
const route *router_at(int i) { return i >= 0 && i < nroutes ? &routes[i] : NULL; }

/* Match path against tmpl, filling params. Both start with '/'. */
static bool match_tmpl(const char *tmpl, const char *path, route_match *m) {
    int np = 0;
    const char *t = tmpl, *p = path;
    while (*t && *p) {
        if (*t == '{') {
            const char *te = strchr(t, '}');
            if (!te) return false;
            const char *pe = strchr(p, '/');
            if (!pe) pe = p + strlen(p);
            size_t vn = (size_t)(pe - p), kn = (size_t)(te - t - 1);
            if (vn == 0 || vn >= sizeof m->params[0].value || np >= ROUTER_MAX_PARAMS ||
                kn >= sizeof m->params[0].name)
                return false;
            memcpy(m->params[np].name, t + 1, kn);
            m->params[np].name[kn] = '\0';
            memcpy(m->params[np].value, p, vn);
            m->params[np].value[vn] = '\0';
            np++;
            t = te + 1;
            p = pe;
            continue;
        }
        if (*t != *p) return false;
        t++;
        p++;
    }
    if (*t || *p) return false;
    m->nparams = np;
    return true;
}

int router_match(const char *method, const char *path, route_match *m) {
    memset(m, 0, sizeof *m);
    bool path_known = false;
    /* HEAD is GET without the body (MHD leaves the body out). */
    const char *want = !strcmp(method, "HEAD") ? "GET" : method;
    for (int i = 0; i < nroutes; i++) {
        route_match tmp;
        if (!match_tmpl(routes[i].tmpl, path, &tmp)) continue;
        if (!strcmp(routes[i].method, want)) {
            *m = tmp;
            m->route = &routes[i];
            return 0;
        }
        /* Collect the methods this path supports for the Allow header. */
        if (!strstr(m->allow, routes[i].method)) {
            size_t n = strlen(m->allow);
            snprintf(m->allow + n, sizeof m->allow - n, "%s%s%s", n ? ", " : "", routes[i].method,
                     !strcmp(routes[i].method, "GET") ? ", HEAD" : "");
        }
        path_known = true;
    }
    if (path_known) {
        char save[64];
        memcpy(save, m->allow, sizeof save);
        memset(m, 0, sizeof *m);
        memcpy(m->allow, save, sizeof save);
        return -SMP_E_METHOD_NOT_ALLOWED;
    }
    return -SMP_E_NOT_FOUND;
}
