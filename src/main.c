/* main.c - the simpleton command line: serve, version, help.
 * Subcommands parse their own flags; every error ends in a message on stderr
 * and exit status 2 (usage/config) or 1 (runtime). */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/textgen.h"
#include "backend/httpc.h"
#include "backend/registry.h"
#include "cache/cache.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "core/membudget.h"
#include "core/version.h"
#include "engine/cli_engine.h"
#include "http/auth.h"
#include "http/server.h"
#include "obs/analytics.h"
#include "obs/metrics.h"

static void usage(FILE *f) {
    fprintf(f,
            "Simpleton %s - self-hosted AI API\n\n"
            "usage: simpleton <command> [options]\n\n"
            "commands:\n"
            "  serve [--help]     start the HTTP server (configured by environment / .env)\n"
            "  version            print the version\n"
            "  help               this text\n",
            SIMPLETON_VERSION);
    cli_engine_usage(f);
}

static int cmd_serve(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: simpleton serve\n\nStarts the HTTP server. ");
            config_print_help(stdout);
            return 0;
        }
        fprintf(stderr, "simpleton serve: unknown option '%s' (see simpleton serve --help)\n", argv[i]);
        return 2;
    }
    static config cfg;
    char err[512];
    if (config_load(&cfg, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "simpleton: configuration error: %s\n", err);
        return 2;
    }
    config_set(&cfg);
    log_set_level((log_level)cfg.log_level);

    /* Signals are taken synchronously by sigwait below; every thread started
     * from here on inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1, port = 0;
    if (auth_init(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "simpleton: %s\n", err);
        goto out;
    }
    if (metrics_init(SIMPLETON_VERSION) != 0 || analytics_init((int)cfg.metrics_retention_hours) != 0) {
        fprintf(stderr, "simpleton: cannot start monitoring (out of memory)\n");
        goto out;
    }
    if (cache_init(&cfg) != 0) {
        fprintf(stderr, "simpleton: cannot start the cache\n");
        goto out;
    }
    if (httpc_global_init() != 0) {
        fprintf(stderr, "simpleton: cannot initialise libcurl\n");
        goto out;
    }
    if (registry_init(&cfg, err, sizeof err) != 0) {
        fprintf(stderr, "simpleton: %s\n", err);
        goto out;
    }
    if (membudget_heavy_init((size_t)cfg.heavy_job_memory_mb << 20) != 0) {
        fprintf(stderr, "simpleton: out of memory\n");
        goto out;
    }
    if (textgen_init((int)cfg.request_workers, 1024) != 0) {
        fprintf(stderr, "simpleton: cannot start request workers\n");
        goto out;
    }
    api_register_all();
    metrics_set_model_filter(api_model_known);
    if (http_server_start(&cfg, &port, err, sizeof err) != 0) {
        fprintf(stderr, "simpleton: %s\n", err);
        goto out;
    }
    log_info("Simpleton %s listening on http://%s:%d", SIMPLETON_VERSION, cfg.host, port);

    int sig = 0;
    sigwait(&sigs, &sig);
    log_info("%s received: finishing in-flight requests (up to %ld s)", sig == SIGINT ? "SIGINT" : "SIGTERM",
             cfg.shutdown_timeout);
    http_server_stop((int)cfg.shutdown_timeout);
    log_info("stopped");
    rc = 0;
out:
    textgen_free();
    metrics_set_model_filter(NULL); /* it asks the registry */
    registry_free();
    cache_shutdown();
    analytics_free();
    metrics_free();
    auth_free();
    config_free(&cfg);
    return rc;
}

int main(int argc, char **argv) {
    json_set_alloc_funcs(smp_malloc, smp_free);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 2, argv + 2);
    if (cli_engine_has(cmd)) return cli_engine_main(cmd, argc - 2, argv + 2);
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("simpleton %s\n", SIMPLETON_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "simpleton: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
