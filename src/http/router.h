/* router.h - match METHOD + path against route templates.
 *
 * A template is a path whose segments may be "{name}" placeholders
 * ("/rag/collections/{name}"); a placeholder matches one non-empty segment.
 * Routes are added at start-up (not thread-safe), matched concurrently after.
 * A path that matches a template under another method gives 405 with the
 * allowed methods; a path that matches nothing gives 404. */
#ifndef SMP_ROUTER_H
#define SMP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTER_MAX_PARAMS 4
#define ROUTER_MAX_ROUTES 256

struct http_req;
typedef void (*route_handler)(struct http_req *r);

enum {
    ROUTE_PUBLIC = 1 << 0,  /* no API key needed */
    ROUTE_NO_METRICS = 1 << 1, /* not recorded by monitoring (/metrics itself) */
    ROUTE_UPLOAD = 1 << 2,  /* multipart body: MAX_UPLOAD_MB instead of MAX_BODY_MB */
};

typedef struct route {
    const char *method;   /* "GET", "POST", ... */
    const char *tmpl;     /* "/rag/collections/{name}" */
    route_handler handler;
    int flags;
    const char *summary;  /* one line for /openapi.json */
} route;

typedef struct route_match {
    const route *route;   /* NULL: no route for this method */
    int nparams;
    struct {
        char name[32];
        char value[256];
    } params[ROUTER_MAX_PARAMS];
    char allow[64];       /* "GET, DELETE" when the path exists under other methods */
} route_match;

int router_add(const char *method, const char *tmpl, route_handler h, int flags, const char *summary);
void router_reset(void);
/* Returns 0 on a match; -SMP_E_METHOD_NOT_ALLOWED (m->allow filled) or -SMP_E_NOT_FOUND. */
int router_match(const char *method, const char *path, route_match *m);
int router_count(void);
const route *router_at(int i);

#endif
