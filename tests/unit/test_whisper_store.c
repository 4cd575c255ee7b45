/* test_whisper_store.c - media/whisper_store.h: names to files, the messages
 * for missing models, and the reference-counted LRU of loaded models (with
 * the random tiny64 files of ../shared/models/whisper). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/log.h"
#include "media/whisper_store.h"
#include "test.h"

static config cfg;

static int store_config(const char *models_dir, const char *url, long max_loaded) {
    char err[256];
    log_set_level(LOG_ERROR); /* the failed-download test warns by design */
    if (config_load(&cfg, "/nonexistent", err, sizeof err) < 0) return -1;
    smp_free(cfg.models_dir);
    cfg.models_dir = smp_strdup(models_dir);
    smp_free(cfg.data_dir);
    cfg.data_dir = smp_strdup("/nonexistent-data");
    smp_free(cfg.whisper_download_url);
    cfg.whisper_download_url = smp_strdup(url);
    cfg.max_loaded_models = max_loaded;
    config_set(&cfg);
    return 0;
}

TEST(whisper_store_names) {
    REQUIRE(store_config("../shared/models/whisper", "", 2) == 0);
    char path[PATH_MAX];
    CHECK(whisper_store_is_size("base"));
    CHECK(whisper_store_is_size("tiny.en"));
    CHECK(whisper_store_is_size("large-v3"));
    CHECK(!whisper_store_is_size("huge"));
    CHECK(whisper_store_find("whisper-rand-tiny64-f16", path, sizeof path));
    CHECK_STR(path, "../shared/models/whisper/whisper-rand-tiny64-f16.bin");
    CHECK(whisper_store_find("whisper-rand-tiny64-q8_0.bin", path, sizeof path));
    CHECK(!whisper_store_find("base", path, sizeof path));
    CHECK(!whisper_store_find("../whisper/whisper-rand-tiny64-f16", path, sizeof path));
    CHECK(!whisper_store_find(".hidden", path, sizeof path));
    CHECK(!whisper_store_find("", path, sizeof path));

    whisper_model *m = (whisper_model *)1;
    char err[512];
    CHECK_INT(whisper_store_acquire("base", NULL, NULL, &m, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(m == NULL);
    CHECK_STR(err, "Whisper model 'base' not found: put ggml-base.bin in ../shared/models/whisper or set "
                   "WHISPER_DOWNLOAD_URL");
    CHECK_INT(whisper_store_acquire("large", NULL, NULL, &m, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(strstr(err, "ggml-large-v3.bin") != NULL);
    CHECK_INT(whisper_store_acquire("my-model", NULL, NULL, &m, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK_STR(err, "Whisper model 'my-model' not found: put my-model.bin in ../shared/models/whisper");
    CHECK_INT(whisper_store_acquire("a/b", NULL, NULL, &m, err, sizeof err), -SMP_E_VALIDATION);
    CHECK_INT(whisper_store_acquire("..", NULL, NULL, &m, err, sizeof err), -SMP_E_VALIDATION);
}

TEST(whisper_store_download_unreachable_leaves_nothing) {
    char dir[] = "/tmp/smp-wstore-XXXXXX";
    REQUIRE(mkdtemp(dir));
    REQUIRE(store_config(dir, "http://127.0.0.1:9", 2) == 0);
    smp_free(cfg.data_dir);
    cfg.data_dir = smp_strdup(dir);
    whisper_model *m;
    char err[512], part[PATH_MAX];
    CHECK_INT(whisper_store_acquire("tiny", NULL, NULL, &m, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(strstr(err, "Could not download Whisper model ggml-tiny.bin from http://127.0.0.1:9/ggml-tiny.bin") != NULL);
    snprintf(part, sizeof part, "%s/models/.ggml-tiny.bin.part", dir);
    CHECK(access(part, F_OK) != 0);
    snprintf(part, sizeof part, "%s/models", dir);
    rmdir(part);
    rmdir(dir);
}

TEST(whisper_store_lru_refcounts) {
    REQUIRE(store_config("../shared/models/whisper", "", 1) == 0);
    whisper_model *a, *a2, *b, *c;
    char err[512];
    int rc = whisper_store_acquire("whisper-rand-tiny64-f16", NULL, NULL, &a, err, sizeof err);
    if (rc) fprintf(stderr, "  %s\n", err);
    REQUIRE(rc == 0);
    /* Same file, same model (by any name that reaches it). */
    REQUIRE(whisper_store_acquire("whisper-rand-tiny64-f16.bin", NULL, NULL, &a2, err, sizeof err) == 0);
    CHECK(a == a2);
    /* A second model while the first is in use: both stay (over the limit). */
    REQUIRE(whisper_store_acquire("whisper-rand-tiny64-q8_0", NULL, NULL, &b, err, sizeof err) == 0);
    CHECK(b != a);
    CHECK_INT(whisper_n_mels(a), 80); /* a is still alive */
    whisper_store_release(a);
    whisper_store_release(a2);
    /* Now a is idle and the least recently used: dropped to honour the
     * limit of 1; b (in use) stays. */
    CHECK_INT(whisper_n_mels(b), 80);
    whisper_store_release(b);
    REQUIRE(whisper_store_acquire("whisper-rand-tiny64-q8_0", NULL, NULL, &c, err, sizeof err) == 0);
    CHECK(c == b); /* still loaded: it was the one kept */
    whisper_store_release(c);
    whisper_store_clear();
}

/* A bad model file is the operator's problem (503 naming file and reason),
 * not the client's; GGUF names are refused as not supported, never looked up. */
TEST(whisper_store_bad_files_and_gguf) {
    char dir[] = "/tmp/smp-wstore-XXXXXX", path[PATH_MAX], err[512];
    REQUIRE(mkdtemp(dir));
    REQUIRE(store_config(dir, "", 2) == 0);
    /* truncated .bin: the first 4 KB of a real one */
    FILE *in = fopen("../shared/models/whisper/whisper-rand-tiny64-f16.bin", "rb");
    REQUIRE(in);
    char head[4096];
    REQUIRE(fread(head, 1, sizeof head, in) == sizeof head);
    fclose(in);
    snprintf(path, sizeof path, "%s/cut.bin", dir);
    FILE *out = fopen(path, "wb");
    REQUIRE(out);
    fwrite(head, 1, sizeof head, out);
    fclose(out);
    /* a GGUF language model under a .bin name, and one under its own name */
    char lm[PATH_MAX];
    snprintf(path, sizeof path, "%s/lm.bin", dir);
    REQUIRE(realpath("../shared/models/stories260K.gguf", lm));
    REQUIRE(symlink(lm, path) == 0);
    snprintf(path, sizeof path, "%s/stories.gguf", dir);
    REQUIRE(symlink(lm, path) == 0);

    whisper_model *m = (whisper_model *)1;
    CHECK_INT(whisper_store_acquire("cut", NULL, NULL, &m, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(m == NULL);
    CHECK(strstr(err, "/cut.bin (model 'cut') is unusable: ") != NULL);
    CHECK(strlen(strstr(err, "unusable: ")) > strlen("unusable: ")); /* a reason follows */
    CHECK_INT(whisper_store_acquire("lm.bin", NULL, NULL, &m, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(strstr(err, "/lm.bin (model 'lm.bin') is unusable: ") != NULL);

    CHECK(!whisper_store_find("stories", path, sizeof path));
    CHECK(!whisper_store_find("stories.gguf", path, sizeof path));
    CHECK_INT(whisper_store_acquire("stories.gguf", NULL, NULL, &m, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(strstr(err, "GGUF Whisper files are not supported yet") != NULL);
    CHECK_INT(whisper_store_acquire("stories", NULL, NULL, &m, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(strstr(err, "GGUF Whisper files are not supported yet") != NULL);
    CHECK(strstr(err, "ggml .bin") != NULL);

    const char *names[] = {"cut.bin", "lm.bin", "stories.gguf"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static bool always_gone(void *ud) {
    (void)ud;
    return true;
}

TEST(whisper_store_cancel_hook_only_stops_waits_and_downloads) {
    /* A requester already gone still gets a model that is loaded (the hook
     * only stops waiting and downloading), and the API stays consistent. */
    REQUIRE(store_config("../shared/models/whisper", "", 2) == 0);
    whisper_model *m;
    char err[512];
    REQUIRE(whisper_store_acquire("whisper-rand-tiny64-f16", always_gone, NULL, &m, err, sizeof err) == 0);
    whisper_store_release(m);
    whisper_store_clear();
}
