/* whisper_store.c - Whisper model names -> files -> loaded models.
 *
 * Main structure: a mutex-protected list of store_entry, one per model file
 * (keyed by its path): the loaded model, a reference count, a last-use stamp
 * and a "busy" flag while it is being downloaded or loaded. A request that
 * finds its entry busy waits on the condition variable, so one file is
 * fetched and loaded once however many requests want it at the same moment;
 * requests for different files never wait on each other (loading and
 * downloading happen outside the lock). Eviction drops the least recently
 * used entries whose reference count is zero while more than
 * MAX_LOADED_MODELS are loaded.
 *
 * Download: libcurl writes into DATA_DIR/models/.<file>.part while SHA-1 is
 * computed on the fly; progress is logged every 10% or 5 s; the finished
 * file must match Content-Length, the official SHA-1 (only when fetching from
 * the official repository) and load as a Whisper model before it is renamed
 * into place. Any failure unlinks the .part file.
 *
 * Cancelling: the requester passes a cancel hook. The progress callback polls
 * it (libcurl calls it at least once a second, also while the server sends
 * nothing) and aborts the transfer when the requester is gone and no other
 * request waits for the same file; while others wait, the download goes on
 * for them. A waiter polls its own hook every WAIT_POLL_MS and leaves alone
 * (the download it waited for is not touched). */
#include "media/whisper_store.h"

#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend/httpc.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"

#define STORE_NAME_MAX 128
#define OFFICIAL_URL "https://huggingface.co/ggerganov/whisper.cpp/resolve/main"
#define DOWNLOAD_MAX_BYTES ((curl_off_t)8 << 30)
#define WAIT_POLL_MS 200

/* The official files and their SHA-1 (whisper.cpp models/README.md). NULL:
 * a known size whose hash we do not carry. */
static const struct {
    const char *size, *file, *sha1;
} sizes[] = {
    {"tiny", "ggml-tiny.bin", "bd577a113a864445d4c299885e0cb97d4ba92b5f"},
    {"tiny.en", "ggml-tiny.en.bin", "c78c86eb1a8faa21b369bcd33207cc90d64ae9df"},
    {"base", "ggml-base.bin", "465707469ff3a37a2b9b8d8f89f2f99de7299dac"},
    {"base.en", "ggml-base.en.bin", "137c40403d78fd54d454da0f9bd998f78703390c"},
    {"small", "ggml-small.bin", "55356645c2b361a969dfd0ef2c5a50d530afd8d5"},
    {"small.en", "ggml-small.en.bin", "db8a495a91d927739e50b3fc1cc4c6b8f6c2d022"},
    {"medium", "ggml-medium.bin", "fd9727b6e1217c2f614f9b698455c4ffd82463b4"},
    {"medium.en", "ggml-medium.en.bin", "8c30f0e44ce9560643ebd10bbe50cd20eafd3723"},
    {"large", "ggml-large-v3.bin", "ad82bf6a9043ceed055076d0fd39f5f186ff8062"},
    {"large-v1", "ggml-large-v1.bin", "b1caaf735c4cc1429223d5a74f0f4d0b9b59a299"},
    {"large-v2", "ggml-large-v2.bin", "0f4c8e34f21cf1a914c59d8b3ce882345ad349d6"},
    {"large-v3", "ggml-large-v3.bin", "ad82bf6a9043ceed055076d0fd39f5f186ff8062"},
    {"large-v3-turbo", "ggml-large-v3-turbo.bin", NULL},
};
#define N_SIZES (int)(sizeof sizes / sizeof sizes[0])

typedef struct store_entry {
    char path[PATH_MAX];
    whisper_model *model; /* NULL while busy */
    int refs;
    bool busy;
    int waiters;          /* requests blocked on this entry while it is busy */
    bool dead;            /* failed and unlinked; the last waiter frees it */
    uint64_t used;        /* util_now_ns of the last acquire */
    struct store_entry *next;
} store_entry;

static pthread_mutex_t store_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t store_cv = PTHREAD_COND_INITIALIZER;
static store_entry *entries;

static int size_index(const char *name) {
    for (int i = 0; i < N_SIZES; i++)
        if (!strcmp(name, sizes[i].size)) return i;
    return -1;
}

bool whisper_store_is_size(const char *name) { return name && size_index(name) >= 0; }

static bool name_ok(const char *name) {
    size_t l = strlen(name);
    if (l == 0 || l > STORE_NAME_MAX || name[0] == '.') return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '.' ||
              *p == '-' || *p == '_' || *p == ':'))
            return false;
    return !strstr(name, "..");
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

static void data_models_dir(char *out, size_t n) {
    snprintf(out, n, "%s/models", config_get()->data_dir);
}

bool whisper_store_find(const char *name, char *path, size_t n) {
    if (!name || !name_ok(name)) return false;
    char cands[4][STORE_NAME_MAX + 16];
    int nc = 0;
    int si = size_index(name);
    if (si >= 0) {
        snprintf(cands[nc++], sizeof cands[0], "%s", sizes[si].file);
        if (!strcmp(name, "large")) snprintf(cands[nc++], sizeof cands[0], "ggml-large.bin");
    } else if (ends_with(name, ".gguf")) {
        return false; /* no GGUF Whisper format is in use: see whisper_store_acquire */
    } else if (ends_with(name, ".bin")) {
        snprintf(cands[nc++], sizeof cands[0], "%s", name);
    } else {
        snprintf(cands[nc++], sizeof cands[0], "%s.bin", name);
        snprintf(cands[nc++], sizeof cands[0], "ggml-%s.bin", name);
        snprintf(cands[nc++], sizeof cands[0], "%s", name);
    }
    char dirs[2][PATH_MAX];
    snprintf(dirs[0], sizeof dirs[0], "%s", config_get()->models_dir);
    data_models_dir(dirs[1], sizeof dirs[1]);
    for (int d = 0; d < 2; d++)
        for (int c = 0; c < nc; c++) {
            int w = snprintf(path, n, "%s/%s", dirs[d], cands[c]);
            if (w > 0 && (size_t)w < n && util_is_file(path)) return true;
        }
    return false;
}

/* A regular file that starts with whisper.cpp's ggml magic ("lmgg" on disk). */
static bool has_ggml_magic(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    unsigned char m[4];
    bool ok = fread(m, 1, 4, f) == 4 && m[0] == 0x6c && m[1] == 0x6d && m[2] == 0x67 && m[3] == 0x67;
    fclose(f);
    return ok;
}

json_t *whisper_store_list(void) {
    json_t *out = json_array();
    char dirs[2][PATH_MAX];
    snprintf(dirs[0], sizeof dirs[0], "%s", config_get()->models_dir);
    data_models_dir(dirs[1], sizeof dirs[1]);
    for (int d = 0; d < 2 && out; d++) {
        if (d == 1 && !strcmp(dirs[0], dirs[1])) break;
        DIR *dir = opendir(dirs[d]);
        if (!dir) continue;
        struct dirent *e;
        while ((e = readdir(dir))) {
            size_t len = strlen(e->d_name);
            if (e->d_name[0] == '.' || len <= 4 || len >= STORE_NAME_MAX || !ends_with(e->d_name, ".bin")) continue;
            char path[PATH_MAX + STORE_NAME_MAX + 2];
            int w = snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            struct stat st;
            if (w < 0 || (size_t)w >= sizeof path) continue;
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || !has_ggml_magic(path)) continue;
            char name[STORE_NAME_MAX], when[40];
            snprintf(name, sizeof name, "%.*s", (int)(len - 4), e->d_name);
            util_iso8601((double)st.st_mtime, when, sizeof when);
            json_t *m = json_pack("{s:s,s:I,s:s,s:n,s:s,s:s}", "name", name, "size", (json_int_t)st.st_size,
                                  "modified_at", when, "digest", "backend", "local", "kind", "audio");
            if (m) json_array_append_new(out, m);
        }
        closedir(dir);
    }
    return out;
}

/* True (with path filled) when a GGUF file of that name lies where models
 * are looked for: it is named in the "not supported" message. */
static bool find_gguf(const char *name, char *path, size_t n) {
    char dir[PATH_MAX];
    const char *ext = ends_with(name, ".gguf") ? "" : ".gguf";
    int w = snprintf(path, n, "%s/%s%s", config_get()->models_dir, name, ext);
    if (w > 0 && (size_t)w < n && util_is_file(path)) return true;
    data_models_dir(dir, sizeof dir);
    w = snprintf(path, n, "%s/%s%s", dir, name, ext);
    return w > 0 && (size_t)w < n && util_is_file(path);
}

/* Load with the configured compute threads (THREADS; 0: one per core). */
static int load_model(const char *path, whisper_model **out, char *err, size_t errlen) {
    whisper_load_opts o = {.n_threads = (int)config_get()->threads, .pool = NULL};
    return whisper_load_ex(path, &o, out, err, errlen);
}

/* ---- download ----------------------------------------------------------------------- */

typedef struct {
    int fd;
    EVP_MD_CTX *sha;
    store_entry *entry;          /* its waiters keep the download going */
    bool (*cancelled)(void *ud); /* the requester's hook; may be NULL */
    void *cancel_ud;
    bool aborted;                /* stopped because nobody wants it any more */
    curl_off_t got;
    bool write_failed;
    const char *file;
    int last_pct;
    uint64_t last_log_ns;
} download;

static size_t dl_write(char *p, size_t size, size_t nmemb, void *ud) {
    download *d = ud;
    size_t n = size * nmemb, done = 0;
    while (done < n) {
        ssize_t w = write(d->fd, p + done, n - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            d->write_failed = true;
            return 0;
        }
        done += (size_t)w;
    }
    EVP_DigestUpdate(d->sha, p, n);
    d->got += (curl_off_t)n;
    return n;
}

static int dl_progress(void *ud, curl_off_t total, curl_off_t now, curl_off_t ut, curl_off_t un) {
    (void)ut, (void)un;
    download *d = ud;
    if (d->cancelled && d->cancelled(d->cancel_ud)) {
        pthread_mutex_lock(&store_mu);
        int waiting = d->entry ? d->entry->waiters : 0;
        pthread_mutex_unlock(&store_mu);
        if (waiting == 0) {
            d->aborted = true;
            return 1; /* CURLE_ABORTED_BY_CALLBACK */
        }
    }
    uint64_t t = util_now_ns();
    int pct = total > 0 ? (int)(now * 100 / total) : -1;
    bool step = pct >= 0 && pct / 10 > d->last_pct / 10;
    if (step || t - d->last_log_ns > 5000000000ull) {
        if (pct >= 0)
            log_info("whisper: downloading %s: %d%% (%.1f of %.1f MB)", d->file, pct, now / 1e6, total / 1e6);
        else
            log_info("whisper: downloading %s: %.1f MB", d->file, now / 1e6);
        d->last_log_ns = t;
        if (pct >= 0) d->last_pct = pct;
    }
    return 0;
}

static int mkdir_p(const char *dir) {
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) && errno != EEXIST) return -1;
            *p = '/';
        }
    return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

/* Fetch sizes[si] into final_path and load it. Returns 1 when the requester
 * left and nobody else waited (the .part file is removed). */
static int download_model(int si, const char *final_path, store_entry *e, bool (*cancelled)(void *), void *cancel_ud,
                          whisper_model **out, char *err, size_t errlen) {
    const config *cfg = config_get();
    const char *file = sizes[si].file;
    char dir[PATH_MAX], part[PATH_MAX + 64], url[2048];
    data_models_dir(dir, sizeof dir);
    snprintf(part, sizeof part, "%s/.%s.part", dir, file);
    const char *base = cfg->whisper_download_url;
    size_t bl = strlen(base);
    while (bl && base[bl - 1] == '/') bl--;
    snprintf(url, sizeof url, "%.*s/%s", (int)bl, base, file);
    bool official = !strncmp(base, OFFICIAL_URL, strlen(OFFICIAL_URL)) && bl == strlen(OFFICIAL_URL);

    download d = {.fd = -1,
                  .file = file,
                  .entry = e,
                  .cancelled = cancelled,
                  .cancel_ud = cancel_ud,
                  .last_pct = 0,
                  .last_log_ns = util_now_ns()};
    CURL *c = NULL;
    int rc;
    if (mkdir_p(dir)) {
        snprintf(err, errlen, "cannot create %s for the Whisper model download: %s", dir, strerror(errno));
        return -SMP_E_IO;
    }
    if (httpc_global_init()) {
        snprintf(err, errlen, "libcurl could not start");
        return -SMP_E_INTERNAL;
    }
    d.fd = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (d.fd < 0) {
        snprintf(err, errlen, "cannot write %s: %s", part, strerror(errno));
        return -SMP_E_IO;
    }
    rc = -SMP_E_NOMEM;
    if (!(d.sha = EVP_MD_CTX_new()) || !EVP_DigestInit_ex(d.sha, EVP_sha1(), NULL) || !(c = curl_easy_init())) {
        snprintf(err, errlen, "out of memory starting the download");
        goto fail;
    }
    char cerr[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L); /* no byte for 60 s: give up */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, DOWNLOAD_MAX_BYTES);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "simpleton");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, dl_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, &d);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
    log_info("whisper: model %s is missing, downloading %s", sizes[si].size, url);
    CURLcode cr = curl_easy_perform(c);
    long status = 0;
    curl_off_t clen = -1;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
    if (d.aborted) {
        if (util_aborting())
            snprintf(err, errlen, "download of Whisper model %s cancelled after %.1f MB: the server is shutting down",
                     file, d.got / 1e6);
        else
            snprintf(err, errlen, "download of Whisper model %s cancelled after %.1f MB: the requesting client left "
                     "and no other request waits for it", file, d.got / 1e6);
        rc = 1;
        goto fail;
    }
    if (d.write_failed) {
        snprintf(err, errlen, "cannot write %s: %s", part, strerror(errno));
        rc = -SMP_E_IO;
        goto fail;
    }
    if (cr != CURLE_OK && status == 0) {
        snprintf(err, errlen, "Could not download Whisper model %s from %s: %s", file, url,
                 cerr[0] ? cerr : curl_easy_strerror(cr));
        rc = -SMP_E_UNAVAILABLE;
        goto fail;
    }
    if (status < 200 || status > 299) {
        snprintf(err, errlen, "Backend error: downloading Whisper model %s from %s returned HTTP %ld", file, url,
                 status);
        rc = -SMP_E_BACKEND;
        goto fail;
    }
    if (cr != CURLE_OK) {
        snprintf(err, errlen, "Download of Whisper model %s from %s broke off after %lld bytes: %s", file, url,
                 (long long)d.got, cerr[0] ? cerr : curl_easy_strerror(cr));
        rc = -SMP_E_UNAVAILABLE;
        goto fail;
    }
    if (clen >= 0 && clen != d.got) {
        snprintf(err, errlen, "Download of Whisper model %s is incomplete: %lld of %lld bytes", file,
                 (long long)d.got, (long long)clen);
        rc = -SMP_E_UNAVAILABLE;
        goto fail;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdl = 0;
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    EVP_DigestFinal_ex(d.sha, md, &mdl);
    for (unsigned i = 0; i < mdl; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (official && sizes[si].sha1 && strcmp(hex, sizes[si].sha1)) {
        snprintf(err, errlen, "Backend error: downloaded %s has SHA-1 %s, expected %s", file, hex, sizes[si].sha1);
        rc = -SMP_E_BACKEND;
        goto fail;
    }
    if (fsync(d.fd) || close(d.fd)) {
        d.fd = -1;
        snprintf(err, errlen, "cannot write %s: %s", part, strerror(errno));
        rc = -SMP_E_IO;
        goto fail;
    }
    d.fd = -1;
    char lerr[256];
    rc = load_model(part, out, lerr, sizeof lerr);
    if (rc) {
        snprintf(err, errlen, "Backend error: the downloaded %s is not a usable Whisper model: %s", file, lerr);
        if (rc != -SMP_E_NOMEM) rc = -SMP_E_BACKEND;
        goto fail;
    }
    if (rename(part, final_path)) {
        snprintf(err, errlen, "cannot move the downloaded model to %s: %s", final_path, strerror(errno));
        whisper_free(*out);
        *out = NULL;
        rc = -SMP_E_IO;
        goto fail;
    }
    log_info("whisper: downloaded %s (%.1f MB, sha1 %s) to %s", file, d.got / 1e6, hex, final_path);
    curl_easy_cleanup(c);
    EVP_MD_CTX_free(d.sha);
    return 0;
fail:
    if (d.fd >= 0) close(d.fd);
    unlink(part);
    if (c) curl_easy_cleanup(c);
    EVP_MD_CTX_free(d.sha);
    if (rc > 0) log_info("whisper: %s", err);
    else log_warn("whisper: %s", err);
    return rc;
}

/* ---- the loaded-model LRU ---------------------------------------------------------- */

static store_entry *find_entry(const char *path) {
    for (store_entry *e = entries; e; e = e->next)
        if (!strcmp(e->path, path)) return e;
    return NULL;
}

static void unlink_entry(store_entry *e) {
    for (store_entry **p = &entries; *p; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            return;
        }
}

/* With store_mu held: unload idle models beyond the limit, oldest first. */
static void evict_locked(void) {
    long max = config_get()->max_loaded_models;
    for (;;) {
        long loaded = 0;
        store_entry *old = NULL;
        for (store_entry *e = entries; e; e = e->next) {
            if (e->busy) continue;
            loaded++;
            if (e->refs == 0 && (!old || e->used < old->used)) old = e;
        }
        if (loaded <= max || !old) return;
        log_info("whisper: unloading %s (least recently used)", old->path);
        unlink_entry(old);
        whisper_free(old->model);
        smp_free(old);
    }
}

/* Wait (store_mu held) while path's entry is busy. Returns the entry (NULL:
 * none) or sets *cancelled when the requester left while waiting. */
static store_entry *wait_idle_locked(const char *path, bool (*cancelled)(void *), void *cancel_ud, bool *gone) {
    store_entry *e;
    *gone = false;
    while ((e = find_entry(path)) && e->busy) {
        if (cancelled && cancelled(cancel_ud)) {
            *gone = true;
            return NULL;
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += WAIT_POLL_MS * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        e->waiters++;
        pthread_cond_timedwait(&store_cv, &store_mu, &ts);
        /* A failed entry is unlinked but stays allocated while it has
         * waiters: the count comes off the entry it was added to. */
        if (--e->waiters == 0 && e->dead) smp_free(e);
    }
    return e;
}

int whisper_store_acquire(const char *name, bool (*cancelled)(void *), void *cancel_ud, whisper_model **out, char *err,
                          size_t errlen) {
    const config *cfg = config_get();
    *out = NULL;
    if (!name || !name_ok(name)) {
        snprintf(err, errlen, "'%s' is not a Whisper model name: use tiny, base, small, medium, large or a file "
                 "name in MODELS_DIR (letters, digits, '.', '-', '_')", name ? name : "");
        return -SMP_E_VALIDATION;
    }
    char path[PATH_MAX];
    int si = size_index(name);
    bool can_download = false;
    if (!whisper_store_find(name, path, sizeof path)) {
        if (ends_with(name, ".gguf") || (si < 0 && find_gguf(name, path, sizeof path))) {
            snprintf(err, errlen, "Whisper model '%s': GGUF Whisper files are not supported yet; use whisper.cpp's "
                     "ggml .bin files (ggml-base.bin and friends) in %s", name, cfg->models_dir);
            return -SMP_E_UNAVAILABLE;
        }
        if (si < 0 || !cfg->whisper_download_url || !cfg->whisper_download_url[0]) {
            const char *file = si >= 0 ? sizes[si].file : name;
            bool ext = ends_with(name, ".bin");
            snprintf(err, errlen, "Whisper model '%s' not found: put %s%s in %s%s", name, file,
                     si < 0 && !ext ? ".bin" : "", cfg->models_dir,
                     si >= 0 ? " or set WHISPER_DOWNLOAD_URL" : "");
            return -SMP_E_UNAVAILABLE;
        }
        char dir[PATH_MAX];
        data_models_dir(dir, sizeof dir);
        snprintf(path, sizeof path, "%.*s/%s", (int)(sizeof path - 64), dir, sizes[si].file);
        can_download = true;
    }

    pthread_mutex_lock(&store_mu);
    bool gone;
    store_entry *e = wait_idle_locked(path, cancelled, cancel_ud, &gone);
    if (gone) {
        pthread_mutex_unlock(&store_mu);
        snprintf(err, errlen, "cancelled while waiting for Whisper model '%s'", name);
        log_info("whisper: a request waiting for %s left (the load or download goes on for the others)", path);
        return 1;
    }
    if (e) {
        e->refs++;
        e->used = util_now_ns();
        *out = e->model;
        pthread_mutex_unlock(&store_mu);
        return 0;
    }
    if (!(e = smp_calloc(1, sizeof *e))) {
        pthread_mutex_unlock(&store_mu);
        snprintf(err, errlen, "out of memory");
        return -SMP_E_NOMEM;
    }
    snprintf(e->path, sizeof e->path, "%s", path);
    e->busy = true;
    e->refs = 1;
    e->next = entries;
    entries = e;
    pthread_mutex_unlock(&store_mu);

    /* Busy: we alone load (or fetch) this file. Someone else may have
     * finished the download while we waited. */
    whisper_model *m = NULL;
    int rc;
    uint64_t t0 = util_now_ns();
    if (can_download && !util_is_file(path)) {
        rc = download_model(si, path, e, cancelled, cancel_ud, &m, err, errlen);
    } else {
        char lerr[256];
        rc = load_model(path, &m, lerr, sizeof lerr);
        if (rc == 0) {
            log_info("whisper: loaded %s (%s) in %.0f ms", path, whisper_describe(m), (util_now_ns() - t0) / 1e6);
        } else if (rc == -SMP_E_NOMEM) {
            snprintf(err, errlen, "out of memory loading Whisper model '%s' (%s)", name, path);
        } else {
            /* The file is the operator's to fix, not the client's: 503. */
            snprintf(err, errlen, "Whisper model file %s (model '%s') is unusable: %s", path, name, lerr);
            log_warn("whisper: %s", err);
            rc = -SMP_E_UNAVAILABLE;
        }
    }

    pthread_mutex_lock(&store_mu);
    if (rc) {
        unlink_entry(e);
        if (e->waiters) e->dead = true;
        else smp_free(e);
    } else {
        e->model = m;
        e->busy = false;
        e->used = util_now_ns();
        *out = m;
        evict_locked();
    }
    pthread_cond_broadcast(&store_cv);
    pthread_mutex_unlock(&store_mu);
    return rc;
}

void whisper_store_release(whisper_model *m) {
    if (!m) return;
    pthread_mutex_lock(&store_mu);
    for (store_entry *e = entries; e; e = e->next)
        if (e->model == m) {
            SMP_ASSERT(e->refs > 0);
            e->refs--;
            break;
        }
    evict_locked();
    pthread_mutex_unlock(&store_mu);
}

void whisper_store_clear(void) {
    pthread_mutex_lock(&store_mu);
    for (store_entry **p = &entries; *p;) {
        store_entry *e = *p;
        if (!e->busy && e->refs == 0) {
            *p = e->next;
            whisper_free(e->model);
            smp_free(e);
        } else {
            p = &e->next;
        }
    }
    pthread_mutex_unlock(&store_mu);
}
