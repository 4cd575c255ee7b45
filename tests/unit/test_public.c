/* test_public.c - api_public_scrub: what public routes (/health,
 * /analytics/health) may show of the strings the probes report. */
#include <jansson.h>

#include "api/api.h"
#include "test.h"

static void check_scrub(const char *in, const char *want) {
    json_t *o = json_pack("{s:[s]}", "k", in);
    api_public_scrub(o);
    const char *got = json_string_value(json_array_get(json_object_get(o, "k"), 0));
    if (!got || strcmp(got, want)) fprintf(stderr, "  scrub(\"%s\") = \"%s\", want \"%s\"\n", in, got ? got : "(null)", want);
    CHECK(got && !strcmp(got, want));
    json_decref(o);
}

TEST(public_scrub_paths) {
    check_scrub("/srv/models/llama.gguf", "llama.gguf");
    check_scrub("/srv/models/", "models");
    check_scrub("models in /data/m and /data/n.db", "models in m and n.db");
    check_scrub("redis unix:/run/redis.sock db 0", "redis unix:redis.sock db 0");
    check_scrub("cannot open '/a/b c': gone", "cannot open 'b c': gone");
    check_scrub("(/x/y)", "(y)");
    check_scrub("/etc/passwd: No such file", "passwd: No such file");
    /* left alone: URLs, relative paths, a lone slash, words with slashes */
    check_scrub("http://127.0.0.1:11434/api/tags", "http://127.0.0.1:11434/api/tags");
    check_scrub("models/llama.gguf", "models/llama.gguf");
    check_scrub("a / b", "a / b");
    check_scrub("/", "/");
    check_scrub("read/write", "read/write");
    check_scrub("", "");
    /* numbers, keys and nested values */
    json_t *o = json_pack("{s:{s:s,s:i},s:[{s:s}]}", "a", "path", "/p/q.db", "n", 3, "b", "c", "/r/s");
    api_public_scrub(o);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(o, "a"), "path")), "q.db"));
    CHECK(json_integer_value(json_object_get(json_object_get(o, "a"), "n")) == 3);
    CHECK(!strcmp(json_string_value(json_object_get(json_array_get(json_object_get(o, "b"), 0), "c")), "s"));
    json_decref(o);
}
