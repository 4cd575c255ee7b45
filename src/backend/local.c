/* local.c - the engine behind backend.h; see local.h.
 *
 * Data structures: a catalogue of known models (name -> where its bytes are),
 * rebuilt from disk when a name is not found (at most once a second), and a
 * small table of loaded models. A loaded model holds the model, its
 * tokenizer, its chat family, a scheduler (sched.h) whose slots generate
 * every request's answer together in shared forward passes, and one more
 * session (KV cache) for embeddings, which requests take turns on, first
 * come first served: a request draws a ticket and runs when `now_serving`
 * reaches it (one mutex + condition variable); `waiting` counts the queue.
 * An embeddings batch holds it for EMBED_TURN_TOKENS at a time and then
 * draws a new ticket, so whoever queued meanwhile goes first. Loaded entries
 * are reference counted so an LRU unload never frees a model in use
 * (tokenizing needs a reference, not a turn). */
#include "backend/local.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/log.h"
#include "core/util.h"
#include "engine/chat.h"
#include "engine/embedded.h"
#include "engine/generate.h"
#include "engine/json_schema.h"
#include "engine/gguf.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "engine/sched.h"
#include "engine/tools.h"
#include "obs/metrics.h"

#define MAX_CATALOG 512
/* Tokens an embeddings batch runs per turn on a model's session before the
 * requests queued behind it get theirs (at least one text per turn). */
#define EMBED_TURN_TOKENS 512

typedef struct {
    char name[160];      /* how users name it */
    char alias[160];     /* general.name, or "" */
    char path[1024];     /* file, or "" for the built-in model */
    char family[32];     /* general.architecture */
    long long size;
    double mtime;
    bool embedding_only; /* bert-style: no generation (not served yet) */
} cat_entry;

typedef struct loaded {
    char name[160];
    model *m;
    tokenizer *tok;
    model_ctx *ctx;
    grammar_vocab *gvocab; /* token bytes for constrained decoding; made on first use (model_vocab) */
    /* Generation: the scheduler's slots run every request's answer in
     * shared forward passes, each slot keeping its last conversation's KV
     * for the next request that starts the same way (sched.h). The session
     * ctx above serves embeddings, which take turns on it. */
    sched *sched;
    chat_family family;
    char bos_text[64], eos_text[64];
    int refs;            /* requests holding it */
    /* Turns on the session: the holder's ticket is now_serving; free when
     * now_serving == next_ticket. */
    uint64_t next_ticket, now_serving;
    int waiting;
    uint64_t last_used;
    double load_seconds;
    struct loaded *next;
} loaded;

typedef struct {
    const config *cfg;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cat_entry *cat;
    int ncat;
    cat_entry *prev;      /* the catalogue before the current scan */
    int nprev;
    uint64_t scanned_at;
    loaded *models;
    int nloaded;
    char ollama_dir[1024];
} local_state;

/* ---- catalogue ---------------------------------------------------------- */

static void read_meta(cat_entry *e, const gguf *g) {
    gguf_str s;
    if (gguf_get_str(g, "general.name", &s) && s.len < sizeof e->alias) {
        memcpy(e->alias, s.ptr, s.len);
        e->alias[s.len] = '\0';
    }
    if (gguf_get_str(g, "general.architecture", &s) && s.len < sizeof e->family) {
        memcpy(e->family, s.ptr, s.len);
        e->family[s.len] = '\0';
    }
    e->embedding_only = !strcmp(e->family, "bert") || !strcmp(e->family, "nomic-bert");
}

static void add_file(local_state *st, const char *name, const char *path) {
    if (st->ncat >= MAX_CATALOG) return;
    for (int i = 0; i < st->ncat; i++)
        if (!strcmp(st->cat[i].name, name)) return; /* first one wins */
    struct stat sb;
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return;
    double mtime = (double)sb.st_mtim.tv_sec + (double)sb.st_mtim.tv_nsec / 1e9;
    /* A file seen before, unchanged: no need to open and parse it again (a
     * rescan happens on the request path when a name is unknown). */
    for (int i = 0; i < st->nprev; i++) {
        const cat_entry *p = &st->prev[i];
        if (!strcmp(p->path, path) && p->size == (long long)sb.st_size && p->mtime == mtime) {
            cat_entry *e = &st->cat[st->ncat++];
            *e = *p;
            snprintf(e->name, sizeof e->name, "%s", name);
            return;
        }
    }
    gguf *g;
    char err[256];
    if (gguf_open(path, &g, err, sizeof err) != 0) {
        log_warn("models: skipping %s: %s", path, err);
        return;
    }
    cat_entry *e = &st->cat[st->ncat++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    snprintf(e->path, sizeof e->path, "%s", path);
    e->size = (long long)sb.st_size;
    e->mtime = mtime;
    read_meta(e, g);
    gguf_close(g);
}

static void scan_models_dir(local_state *st) {
    DIR *d = opendir(st->cfg->models_dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 5, ".gguf")) continue;
        char name[160], path[1024];
        snprintf(name, sizeof name, "%.*s", (int)(n - 5), de->d_name);
        snprintf(path, sizeof path, "%s/%s", st->cfg->models_dir, de->d_name);
        add_file(st, name, path);
    }
    closedir(d);
}

/* Ollama store: manifests/<host>/<namespace>/<model>/<tag> is JSON whose
 * layer of mediaType application/vnd.ollama.image.model names the blob
 * blobs/sha256-<hex>. Models of the "library" namespace are named
 * "model:tag", others "namespace/model:tag". */
static void scan_ollama(local_state *st) {
    if (!st->ollama_dir[0]) return;
    char root[1100];
    snprintf(root, sizeof root, "%s/manifests/registry.ollama.ai", st->ollama_dir);
    DIR *ns = opendir(root);
    if (!ns) return;
    struct dirent *a;
    while ((a = readdir(ns))) {
        if (a->d_name[0] == '.') continue;
        char p1[1400];
        snprintf(p1, sizeof p1, "%s/%s", root, a->d_name);
        DIR *md = opendir(p1);
        if (!md) continue;
        struct dirent *b;
        while ((b = readdir(md))) {
            if (b->d_name[0] == '.') continue;
            char p2[1700];
            snprintf(p2, sizeof p2, "%s/%s", p1, b->d_name);
            DIR *td = opendir(p2);
            if (!td) continue;
            struct dirent *c;
            while ((c = readdir(td))) {
                if (c->d_name[0] == '.') continue;
                char mf[2000];
                snprintf(mf, sizeof mf, "%s/%s", p2, c->d_name);
                json_error_t je;
                json_t *j = json_load_file(mf, 0, &je);
                if (!j) continue;
                size_t i;
                json_t *layer;
                json_array_foreach(json_object_get(j, "layers"), i, layer) {
                    const char *mt = json_string_value(json_object_get(layer, "mediaType"));
                    const char *dg = json_string_value(json_object_get(layer, "digest"));
                    if (!mt || !dg || strcmp(mt, "application/vnd.ollama.image.model") || strncmp(dg, "sha256:", 7))
                        continue;
                    char name[160], blob[1200];
                    int nn = !strcmp(a->d_name, "library")
                                 ? snprintf(name, sizeof name, "%s:%s", b->d_name, c->d_name)
                                 : snprintf(name, sizeof name, "%s/%s:%s", a->d_name, b->d_name, c->d_name);
                    int nb = snprintf(blob, sizeof blob, "%s/blobs/sha256-%s", st->ollama_dir, dg + 7);
                    if (nn < (int)sizeof name && nb < (int)sizeof blob) add_file(st, name, blob);
                }
                json_decref(j);
            }
            closedir(td);
        }
        closedir(md);
    }
    closedir(ns);
}

static void scan(local_state *st) {
    memcpy(st->prev, st->cat, (size_t)st->ncat * sizeof *st->cat);
    st->nprev = st->ncat;
    st->ncat = 0;
    scan_models_dir(st);
    scan_ollama(st);
    size_t len;
    const unsigned char *emb = embedded_model(&len);
    if (emb && st->ncat < MAX_CATALOG) {
        gguf *g;
        char err[128];
        if (gguf_open_mem(emb, len, &g, err, sizeof err) == 0) {
            bool dup = false;
            for (int i = 0; i < st->ncat; i++) dup |= !strcmp(st->cat[i].name, embedded_model_name());
            if (!dup) {
                cat_entry *e = &st->cat[st->ncat++];
                memset(e, 0, sizeof *e);
                snprintf(e->name, sizeof e->name, "%s", embedded_model_name());
                e->size = (long long)len;
                read_meta(e, g);
            }
            gguf_close(g);
        }
    }
    st->scanned_at = util_now_ns();
}

/* "qwen2.5:7b" matches "qwen2.5:7b"; "qwen2.5" matches "qwen2.5:latest"; a
 * file name with or without ".gguf"; general.name case-insensitively. */
static const cat_entry *find_entry(local_state *st, const char *name) {
    char want[200];
    snprintf(want, sizeof want, "%s", name);
    size_t n = strlen(want);
    if (n > 5 && !strcmp(want + n - 5, ".gguf")) want[n - 5] = '\0';
    for (int i = 0; i < st->ncat; i++)
        if (!strcmp(st->cat[i].name, want)) return &st->cat[i];
    if (!strchr(want, ':')) {
        char tagged[220];
        snprintf(tagged, sizeof tagged, "%s:latest", want);
        for (int i = 0; i < st->ncat; i++)
            if (!strcmp(st->cat[i].name, tagged)) return &st->cat[i];
    }
    for (int i = 0; i < st->ncat; i++)
        if (st->cat[i].alias[0] && !strcasecmp(st->cat[i].alias, want)) return &st->cat[i];
    return NULL;
}

/* Under st->mu. Rescans (at most once a second) when the name is unknown. */
static const cat_entry *lookup(local_state *st, const char *name) {
    const cat_entry *e = find_entry(st, name);
    if (!e && util_now_ns() - st->scanned_at > 1000000000ull) {
        scan(st);
        e = find_entry(st, name);
    }
    return e;
}

/* ---- loading ------------------------------------------------------------- */

static void loaded_free(loaded *l) {
    if (!l) return;
    sched_free(l->sched); /* before the model its sessions belong to */
    model_ctx_free(l->ctx);
    model_free(l->m);
    grammar_vocab_free(l->gvocab);
    tok_free(l->tok);
    smp_free(l);
}

static void token_text(const tokenizer *t, int32_t id, char *out, size_t n) {
    size_t len = 0;
    const char *s = id >= 0 ? tok_text(t, id, &len) : NULL;
    snprintf(out, n, "%.*s", s ? (int)len : 0, s ? s : "");
}

/* Bytes of memory the system could still give, from /proc/meminfo (0:
 * unknown). */
static unsigned long long mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

/* How many slots a model gets: PARALLEL, fewer when their KV caches would
 * not fit KV_CACHE_MB (0: a quarter of the memory available now); at least
 * one. */
static int slot_count(local_state *st, const loaded *l) {
    int want = (int)st->cfg->parallel;
    unsigned long long per = model_kv_bytes(l->m, model_ctx_n_ctx(l->ctx));
    unsigned long long budget = st->cfg->kv_cache_mb ? (unsigned long long)st->cfg->kv_cache_mb << 20
                                                     : mem_available() / 4;
    if (per > 0 && budget > 0 && budget / per < (unsigned long long)want) want = (int)(budget / per);
    if (want < 1) want = 1;
    if (want < (int)st->cfg->parallel)
        log_warn("local: %s gets %d of PARALLEL=%d slots: each KV cache is %llu MiB and KV_CACHE_MB allows %llu MiB",
                 l->name, want, (int)st->cfg->parallel, per >> 20, budget >> 20);
    return want;
}

/* The model's token list for grammars, made once (a few ms), by whichever
 * request needs it first; answers run side by side, so under the lock. */
static int model_vocab(local_state *st, loaded *l) {
    pthread_mutex_lock(&st->mu);
    int rc = l->gvocab ? 0 : grammar_vocab_new(l->tok, &l->gvocab);
    pthread_mutex_unlock(&st->mu);
    return rc;
}

/* A request got a slot after waiting this long. */
static void on_wait(void *ud, double seconds) {
    const loaded *l = ud;
    metrics_llm_queue_wait(l->name, seconds);
}

/* Each forward pass of a model's scheduler: how many sequences ran
 * together (for /metrics). */
static void on_pass(void *ud, int sequences, int rows, double seconds) {
    loaded *l = ud;
    metrics_llm_batch(l->name, sequences, rows, seconds);
    sched_stats ss;
    sched_get_stats(l->sched, &ss);
    metrics_llm_queue_depth(l->name, ss.queued);
}

/* Load outside the lock (slow); returns a new entry or NULL with err. */
static loaded *load_model(local_state *st, const cat_entry *e, char *err, size_t errlen) {
    uint64_t t0 = util_now_ns();
    loaded *l = smp_calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, errlen, "out of memory loading %s", e->name);
        return NULL;
    }
    snprintf(l->name, sizeof l->name, "%s", e->name);
    model_opts mo = {.n_ctx = (int)st->cfg->context_size, .n_threads = (int)st->cfg->threads};
    char merr[384];
    gguf *g = NULL;
    int rc;
    if (e->path[0]) {
        rc = gguf_open(e->path, &g, merr, sizeof merr);
    } else {
        size_t len;
        const unsigned char *emb = embedded_model(&len);
        rc = gguf_open_mem(emb, len, &g, merr, sizeof merr);
    }
    if (rc == 0) rc = tok_load(g, &l->tok, merr, sizeof merr);
    if (rc == 0) {
        rc = model_load_gguf(g, true, &mo, &l->m, merr, sizeof merr);
        g = NULL;
    }
    if (rc == 0) rc = model_ctx_new(l->m, 0, &l->ctx, merr, sizeof merr);
    if (rc == 0) {
        int slots = slot_count(st, l);
        rc = sched_new(l->m, slots, 0, (int)st->cfg->model_queue_max, &l->sched, merr, sizeof merr);
        if (rc == 0) sched_set_observer(l->sched, on_pass, on_wait, l);
    }
    if (rc != 0) {
        gguf_close(g);
        snprintf(err, errlen, "local: cannot load model '%s': %s", e->name, merr);
        loaded_free(l);
        return NULL;
    }
    gguf_str tmpl;
    char tbuf[8192] = "";
    if (gguf_get_str(model_gguf(l->m), "tokenizer.chat_template", &tmpl))
        snprintf(tbuf, sizeof tbuf, "%.*s", (int)(tmpl.len < sizeof tbuf - 1 ? tmpl.len : sizeof tbuf - 1), tmpl.ptr);
    l->family = chat_detect(tbuf[0] ? tbuf : NULL);
    token_text(l->tok, tok_bos(l->tok), l->bos_text, sizeof l->bos_text);
    token_text(l->tok, tok_eos(l->tok), l->eos_text, sizeof l->eos_text);
    l->load_seconds = (double)(util_now_ns() - t0) / 1e9;
    metrics_model_load_seconds(e->name, l->load_seconds);
    log_info("local: loaded %s (%s, chat template: %s) in %.3f s", e->name, model_arch_name(l->m),
             chat_family_name(l->family), l->load_seconds);
    return l;
}

/* Unload idle models past MAX_LOADED_MODELS, least recently used first.
 * Under st->mu; returns the entries to free outside it. */
static loaded *evict(local_state *st) {
    loaded *freed = NULL;
    while (st->nloaded > st->cfg->max_loaded_models) {
        loaded **victim = NULL;
        for (loaded **pp = &st->models; *pp; pp = &(*pp)->next)
            if ((*pp)->refs == 0 && (!victim || (*pp)->last_used < (*victim)->last_used)) victim = pp;
        if (!victim) break; /* all in use: stay over the limit until they finish */
        loaded *v = *victim;
        *victim = v->next;
        st->nloaded--;
        log_info("local: unloading %s (MAX_LOADED_MODELS=%ld)", v->name, st->cfg->max_loaded_models);
        v->next = freed;
        freed = v;
    }
    return freed;
}

static void free_list(loaded *l) {
    while (l) {
        loaded *n = l->next;
        loaded_free(l);
        l = n;
    }
}

static int list_names(local_state *st, char *out, size_t n) {
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < st->ncat && o + 2 < n; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%s", i ? ", " : "", st->cat[i].name);
    return st->ncat;
}

/* A reference to a model for one request (loading it if needed): it stays
 * loaded until model_put. */
static int model_get(local_state *st, const char *name, loaded **out, bool *loaded_now, char *err, size_t errlen) {
    pthread_mutex_lock(&st->mu);
    const cat_entry *e = lookup(st, name);
    if (!e) {
        char names[1024];
        list_names(st, names, sizeof names);
        pthread_mutex_unlock(&st->mu);
        snprintf(err, errlen, "model '%s' not found. Available models: %s", name, names[0] ? names : "(none)");
        return -SMP_E_NOT_FOUND;
    }
    if (e->embedding_only) {
        pthread_mutex_unlock(&st->mu);
        snprintf(err, errlen, "local: model '%s' (%s) is an encoder-only embedding model, which the engine does not run yet",
                 name, e->family);
        return -SMP_E_NOT_IMPLEMENTED;
    }
    cat_entry ent = *e;
    loaded *l = st->models;
    while (l && strcmp(l->name, ent.name)) l = l->next;
    *loaded_now = false;
    if (!l) {
        pthread_mutex_unlock(&st->mu);
        loaded *fresh = load_model(st, &ent, err, errlen);
        if (!fresh) return -SMP_E_UNAVAILABLE;
        pthread_mutex_lock(&st->mu);
        l = st->models; /* another request may have loaded it meanwhile */
        while (l && strcmp(l->name, ent.name)) l = l->next;
        if (l) {
            pthread_mutex_unlock(&st->mu);
            loaded_free(fresh);
            pthread_mutex_lock(&st->mu);
        } else {
            l = fresh;
            l->next = st->models;
            st->models = l;
            st->nloaded++;
            *loaded_now = true;
        }
    }
    l->refs++;
    l->last_used = util_now_ns();
    loaded *freed = evict(st);
    pthread_mutex_unlock(&st->mu);
    free_list(freed);
    *out = l;
    return 0;
}

static void model_put(local_state *st, loaded *l) {
    pthread_mutex_lock(&st->mu);
    l->refs--;
    l->last_used = util_now_ns();
    loaded *freed = evict(st);
    pthread_mutex_unlock(&st->mu);
    free_list(freed);
}

/* Wait for a turn on the model's session, behind everyone already queued.
 * A request's first turn is refused when MODEL_QUEUE_MAX are waiting; a
 * batch coming back for its next turn was admitted already. */
static int turn_take(local_state *st, loaded *l, bool first, char *err, size_t errlen) {
    pthread_mutex_lock(&st->mu);
    if (first && l->waiting >= st->cfg->model_queue_max) {
        int waiting = l->waiting;
        pthread_mutex_unlock(&st->mu);
        snprintf(err, errlen, "local: model '%s' has %d requests waiting (MODEL_QUEUE_MAX); try again shortly", l->name,
                 waiting);
        return -SMP_E_TOO_MANY;
    }
    uint64_t ticket = l->next_ticket++;
    if (ticket != l->now_serving) {
        l->waiting++;
        metrics_llm_queue_depth(l->name, l->waiting);
        while (l->now_serving != ticket) pthread_cond_wait(&st->cv, &st->mu);
        l->waiting--;
        metrics_llm_queue_depth(l->name, l->waiting);
    }
    l->last_used = util_now_ns();
    pthread_mutex_unlock(&st->mu);
    return 0;
}

static void turn_give(local_state *st, loaded *l) {
    pthread_mutex_lock(&st->mu);
    l->now_serving++;
    l->last_used = util_now_ns();
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
}

/* ---- operations ------------------------------------------------------------ */

/* Tool calls in the text as it is generated: content goes out until the
 * style's trigger (text that may still turn out to begin it is held back);
 * after it, the call section is scanned on every piece and each call goes
 * out as events (id and name, argument pieces, done). */
typedef struct {
    bool on;               /* tools are in play */
    tool_style st;
    const char *trigger;
    bool at_start, call_now;
    bool triggered, never;
    size_t sent;           /* content bytes sent */
    size_t from;           /* where the trigger may still begin in text */
    buf text;              /* everything generated */
    buf sec;               /* the call section (LLAMA3: "{" first) */
    char ids[TOOLS_MAX_CALLS][40];
    size_t args_sent[TOOLS_MAX_CALLS];
    bool head_sent[TOOLS_MAX_CALLS], done_sent[TOOLS_MAX_CALLS];
} tool_watch;

typedef struct {
    backend_token_fn on_token;
    void *ud;
    const backend_gen_req *req;
    tool_watch tw;
    const tokenizer *tok;
} stream_ctx;

static const char *call_id(tool_watch *tw, int i) {
    if (!tw->ids[i][0]) backend_call_id(tw->ids[i], sizeof tw->ids[i]);
    return tw->ids[i];
}

/* Start the section at text offset `at` (the trigger's end). */
static int section_begin(tool_watch *tw, size_t at) {
    tw->triggered = true;
    buf_reset(&tw->sec);
    if (tw->st == TOOL_STYLE_LLAMA3 && buf_putc(&tw->sec, '{')) return -1;
    return at < tw->text.len ? buf_append(&tw->sec, tw->text.data + at, tw->text.len - at) : 0;
}

/* Find the trigger in what has been generated; returns how many content
 * bytes are certain (not part of a trigger). */
static size_t watch_content(tool_watch *tw) {
    if (tw->triggered) return tw->sent;
    if (tw->call_now) {
        section_begin(tw, 0);
        return 0;
    }
    if (tw->never) return tw->text.len;
    size_t keep, tl = strlen(tw->trigger);
    bool never;
    long at = gen_find_trigger(tw->trigger, tw->at_start, tw->text.data ? tw->text.data : "", tw->text.len, tw->from,
                               &keep, &never);
    tw->from = tw->text.len >= tl ? tw->text.len - tl + 1 : 0;
    if (never) tw->never = true;
    if (at < 0) return tw->text.len - keep;
    section_begin(tw, (size_t)at + strlen(tw->trigger));
    return (size_t)at;
}

static int send_calls(stream_ctx *sc) {
    tool_watch *tw = &sc->tw;
    tools_scanned calls[TOOLS_MAX_CALLS];
    int n = tools_scan(tw->st, tw->sec.data ? tw->sec.data : "", tw->sec.len, calls, TOOLS_MAX_CALLS);
    for (int i = 0; i < n; i++) {
        tools_scanned *c = &calls[i];
        backend_tool_event e = {.index = i, .args = ""};
        if (!c->has_name || tw->done_sent[i]) continue;
        if (!tw->head_sent[i]) {
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(c->name_len < 127 ? c->name_len : 127), tw->sec.data + c->name_off);
            e.id = call_id(tw, i);
            e.name = name;
            tw->head_sent[i] = true;
            if (sc->req->on_tool(sc->ud, &e)) return 1;
            e.id = e.name = NULL;
        }
        if (c->args_started && c->args_len > tw->args_sent[i]) {
            e.args = tw->sec.data + c->args_off + tw->args_sent[i];
            e.args_len = c->args_len - tw->args_sent[i];
            tw->args_sent[i] = c->args_len;
            if (sc->req->on_tool(sc->ud, &e)) return 1;
        }
        if (c->done) {
            e.args = "";
            e.args_len = 0;
            e.done = tw->done_sent[i] = true;
            if (sc->req->on_tool(sc->ud, &e)) return 1;
        }
    }
    return 0;
}

static int on_text(void *ud, const char *text, size_t len) {
    stream_ctx *sc = ud;
    tool_watch *tw = &sc->tw;
    if (!tw->on) return sc->on_token ? sc->on_token(sc->ud, text, len) : 0;
    bool was = tw->triggered;
    size_t before = tw->text.len;
    if (buf_append(&tw->text, text, len)) return 1;
    if (was && buf_append(&tw->sec, tw->text.data + before, len)) return 1;
    size_t upto = watch_content(tw);
    if (upto > tw->sent) {
        int rc = sc->on_token ? sc->on_token(sc->ud, tw->text.data + tw->sent, upto - tw->sent) : 0;
        tw->sent = upto;
        if (rc) return rc;
    }
    return tw->triggered && sc->req->on_tool ? send_calls(sc) : 0;
}

/* OpenAI's floor for a probability too small to write (JSON has no -inf). */
#define LOGPROB_FLOOR -9999.0

/* {token, logprob, bytes}: token is the text (control tokens by name, a part
 * of a UTF-8 character as U+FFFD), bytes its exact bytes. */
static json_t *token_json(const tokenizer *t, int32_t id, float logprob) {
    size_t len;
    const char *p = tok_piece(t, id, true, &len);
    json_t *bytes = json_array();
    for (size_t i = 0; i < len; i++) json_array_append_new(bytes, json_integer((unsigned char)p[i]));
    buf text;
    buf_init(&text, 0);
    tok_decode(t, &id, 1, TOK_DECODE_SPECIAL, &text);
    json_t *o = json_pack("{s:s%,s:f,s:o}", "token", text.data ? text.data : "", text.len, "logprob",
                          logprob >= LOGPROB_FLOOR ? (double)logprob : LOGPROB_FLOOR, "bytes", bytes);
    buf_free(&text);
    return o;
}

/* The result's logprobs format (backend.h) for lp[0..n); NULL when out of memory. */
static json_t *logprob_entries(const tokenizer *t, const gen_logprob *lp, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) {
        json_t *e = token_json(t, lp[i].id, lp[i].logprob), *top = json_array();
        for (int k = 0; k < lp[i].n_top; k++) json_array_append_new(top, token_json(t, lp[i].top[k].id, lp[i].top[k].logprob));
        if (!e || !top || json_object_set_new(e, "top_logprobs", top) || json_array_append_new(a, e)) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static int on_logprobs(void *ud, const gen_logprob *lp, int n) {
    stream_ctx *sc = ud;
    json_t *a = logprob_entries(sc->tok, lp, n);
    int rc = a ? sc->req->on_logprobs(sc->ud, a) : 1;
    json_decref(a);
    return rc;
}

static bool is_cancelled(void *ud) {
    stream_ctx *sc = ud;
    return sc->req->cancelled && sc->req->cancelled(sc->req->cancel_ud);
}

/* The tools shown to the model (none with tool choice "none"). */
static int shown_tools(const backend_gen_req *req) {
    return req->tool_choice == BACKEND_TOOLS_NONE ? 0 : req->n_tools;
}

static bool must_call(const backend_gen_req *req) {
    return shown_tools(req) > 0 && (req->tool_choice == BACKEND_TOOLS_REQUIRED || req->tool_choice == BACKEND_TOOLS_NAMED);
}

/* The request's tools in the engine's terms (owned; NULL when out of memory). */
static tool_def *tool_defs(const backend_gen_req *req) {
    tool_def *tools = smp_calloc((size_t)req->n_tools + 1, sizeof *tools);
    for (int i = 0; tools && i < req->n_tools; i++)
        tools[i] = (tool_def){req->tools[i].name, req->tools[i].description, req->tools[i].parameters};
    return tools;
}

/* The conversation with its tools, in the family's tool style. */
static int render_chat(const loaded *l, const backend_gen_req *req, buf *out, char *err, size_t errlen) {
    int n = req->n_messages, nt = shown_tools(req), rc = -SMP_E_NOMEM;
    tool_msg *msgs = smp_calloc((size_t)n, sizeof *msgs);
    tool_def *tools = tool_defs(req);
    int ncalls = 0;
    for (int i = 0; i < n; i++) ncalls += req->messages[i].n_tool_calls;
    tool_call *calls = smp_calloc((size_t)ncalls + 1, sizeof *calls);
    if (msgs && tools && calls) {
        tool_call *c = calls;
        for (int i = 0; i < n; i++) {
            const backend_msg *m = &req->messages[i];
            msgs[i] = (tool_msg){m->role, m->content, c, m->n_tool_calls, m->tool_call_id, m->tool_name};
            for (int k = 0; k < m->n_tool_calls; k++)
                *c++ = (tool_call){m->tool_calls[k].id, m->tool_calls[k].name, m->tool_calls[k].arguments};
        }
        rc = tools_render(l->family, tools, nt, msgs, n, must_call(req), l->bos_text, l->eos_text, out, err, errlen);
    }
    smp_free(msgs);
    smp_free(tools);
    smp_free(calls);
    return rc;
}

/* The prompt text for a request, rendered with the model's chat template. */
static int build_prompt(const loaded *l, const backend_gen_req *req, buf *out, bool *templated, char *err,
                        size_t errlen) {
    *templated = false;
    if (req->messages) {
        *templated = l->family != CHAT_FAMILY_NONE;
        return render_chat(l, req, out, err, errlen);
    }
    if (req->raw || l->family == CHAT_FAMILY_NONE) {
        /* Plain completion: the system text, if any, goes first. */
        if (req->system && *req->system && (buf_puts(out, req->system) || buf_puts(out, "\n\n"))) return -SMP_E_NOMEM;
        return buf_puts(out, req->prompt ? req->prompt : "") ? -SMP_E_NOMEM : 0;
    }
    chat_msg msgs[2];
    int n = 0;
    if (req->system && *req->system) msgs[n++] = (chat_msg){"system", req->system, NULL};
    msgs[n++] = (chat_msg){"user", req->prompt ? req->prompt : "", NULL};
    *templated = true;
    return chat_render(l->family, msgs, n, true, l->bos_text, l->eos_text, out, err, errlen);
}

/* The calls in a finished answer: content is what came before the trigger.
 * Only complete calls of declared tools with arguments that are JSON count;
 * their ids are the ones streamed. */
static int collect_calls(const backend_gen_req *req, stream_ctx *sc, backend_gen_result *out) {
    tool_watch *tw = &sc->tw;
    size_t content = tw->text.len;
    buf_reset(&tw->text);
    if (out->text_len && buf_append(&tw->text, out->text, out->text_len)) return -SMP_E_NOMEM;
    tw->triggered = tw->never = false;
    tw->from = 0;
    content = watch_content(tw);
    if (!tw->triggered) return 0;
    tools_scanned calls[TOOLS_MAX_CALLS];
    int n = tools_scan(tw->st, tw->sec.data ? tw->sec.data : "", tw->sec.len, calls, TOOLS_MAX_CALLS);
    bool cut = false; /* a call the budget ended half-way */
    for (int i = 0; i < n; i++) {
        tools_scanned *c = &calls[i];
        cut |= !c->done;
        if (!c->done || !c->has_name) continue;
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(c->name_len < 127 ? c->name_len : 127), tw->sec.data + c->name_off);
        bool known = false;
        for (int k = 0; k < req->n_tools; k++) known |= !strcmp(req->tools[k].name, name);
        char *args = smp_malloc(c->args_len + 1);
        if (!args) return -SMP_E_NOMEM;
        if (c->args_started) memcpy(args, tw->sec.data + c->args_off, c->args_len);
        args[c->args_started ? c->args_len : 0] = '\0';
        json_t *parsed = c->args_started ? json_loads(args, JSON_DECODE_ANY, NULL) : json_object();
        int rc = known && json_is_object(parsed) ? backend_result_add_call(out, call_id(tw, i), name, args) : 0;
        json_decref(parsed);
        smp_free(args);
        if (rc) return rc;
    }
    /* The call section is never content, as it never was while streaming:
     * a call the budget cut short is dropped, not shown as text. */
    while (content > 0 && strchr(" \t\r\n", out->text[content - 1])) content--;
    if (out->text) out->text[content] = '\0';
    out->text_len = content;
    /* The answer is its calls; only a call cut short keeps "length". */
    if (out->n_tool_calls > 0 && (!strcmp(out->done_reason, "stop") || (!strcmp(out->done_reason, "length") && !cut)))
        out->done_reason = "tool_calls";
    return 0;
}

/* The refusal of a prompt that does not fit its window, naming num_ctx when
 * the request set the window. */
static void window_error(char *err, size_t errlen, const char *at_least, size_t tokens, int window, bool own_window) {
    if (own_window)
        snprintf(err, errlen, "options.num_ctx: the prompt is %s%zu tokens; num_ctx allows %d (prompt plus answer)",
                 at_least, tokens, window);
    else
        snprintf(err, errlen, "the prompt is %s%zu tokens; the model's context holds %d (prompt plus answer)", at_least,
                 tokens, window);
}

static int local_generate(backend *b, const backend_gen_req *req, backend_token_fn on_token, void *ud,
                          backend_gen_result *out, char *err, size_t errlen) {
    local_state *st = b->state;
    memset(out, 0, sizeof *out);
    /* The engine reads text only: images must not be dropped silently. The
     * registry tries the next backend that has the model (UNAVAILABLE). */
    for (int i = 0; i < req->n_messages; i++) {
        if (req->messages[i].n_images > 0) {
            snprintf(err, errlen,
                     "local: model '%s' cannot read images (the built-in engine is text-only). Serve a vision model "
                     "through Ollama (OLLAMA_BASE_URL) or an OpenAI-compatible server (OPENAI_BASE_URL), routed with "
                     "MODEL_BACKENDS=%s=ollama (or =openai)",
                     req->model, req->model);
            return -SMP_E_UNAVAILABLE;
        }
    }
    uint64_t t0 = util_now_ns();
    loaded *l;
    bool fresh;
    int rc = model_get(st, req->model, &l, &fresh, err, errlen);
    if (rc != 0) return rc;
    uint64_t t_loaded = util_now_ns();
    buf prompt;
    buf_init(&prompt, 0);
    int32_t *ids = NULL, *all = NULL;
    gen_bias *bias = NULL;
    grammar *g = NULL;
    size_t n = 0;
    bool templated;
    stream_ctx sc = {on_token, ud, req, {.on = shown_tools(req) > 0 && req->messages}, l->tok};
    buf_init(&sc.tw.text, 0);
    buf_init(&sc.tw.sec, 0);
    if (sc.tw.on) {
        sc.tw.st = tools_style(l->family);
        sc.tw.trigger = tools_trigger(sc.tw.st, &sc.tw.at_start);
        sc.tw.call_now = must_call(req);
    }
    rc = build_prompt(l, req, &prompt, &templated, err, errlen);
    if (rc != 0) goto done;
    /* The window prompt plus answer must fit: the model's context, or the
     * request's smaller num_ctx (a larger one means the model's). */
    int window = model_ctx_n_ctx(l->ctx);
    bool own_window = req->num_ctx > 0 && req->num_ctx < window;
    if (own_window) window = req->num_ctx;
    /* A prompt that cannot fit is refused before it is tokenized (a 30 MB
     * prompt would take seconds and hold the model). */
    size_t at_least = tok_min_tokens(l->tok, prompt.len) + (size_t)req->n_context;
    if (at_least >= (size_t)window) {
        window_error(err, errlen, "at least ", at_least, window, own_window);
        rc = -SMP_E_VALIDATION;
        goto done;
    }
    /* Continuing from a previous answer's context: its ids come first, and
     * the new text is encoded without a second BOS. */
    rc = tok_encode(l->tok, prompt.data ? prompt.data : "", prompt.len, req->n_context == 0, templated, &ids, &n);
    if (rc != 0) {
        snprintf(err, errlen, "local: cannot tokenize the prompt");
        goto done;
    }
    size_t total = (size_t)req->n_context + n;
    if (own_window && total >= (size_t)window) {
        window_error(err, errlen, "", total, window, own_window);
        rc = -SMP_E_VALIDATION;
        goto done;
    }
    all = smp_malloc((total ? total : 1) * sizeof *all);
    if (!all) {
        rc = -SMP_E_NOMEM;
        goto done;
    }
    for (int i = 0; i < req->n_context; i++) {
        if (req->context[i] < 0 || req->context[i] >= tok_n_vocab(l->tok)) {
            snprintf(err, errlen, "context: token id %d is outside the model's vocabulary (0..%d)", req->context[i],
                     tok_n_vocab(l->tok) - 1);
            rc = -SMP_E_VALIDATION;
            goto done;
        }
        all[i] = req->context[i];
    }
    if (n) memcpy(all + req->n_context, ids, n * sizeof *ids);
    gen_params gp = {
        .sampling = {.temperature = (float)req->temperature,
                     .top_k = req->top_k,
                     .top_p = (float)req->top_p,
                     .min_p = (float)req->min_p,
                     .repeat_penalty = (float)req->repeat_penalty,
                     .repeat_last_n = 64,
                     .presence_penalty = (float)req->presence_penalty,
                     .frequency_penalty = (float)req->frequency_penalty,
                     .seed = req->has_seed ? req->seed : SAMPLER_SEED_RANDOM},
        /* gen_run stops at the model's context by itself; a smaller window
         * is this cap. */
        .max_tokens = own_window && (req->max_tokens <= 0 || req->max_tokens > window - (int)total)
                          ? window - (int)total
                          : req->max_tokens,
        .on_text = on_text,
        .cancelled = is_cancelled,
        .ud = &sc,
        .logprobs = req->logprobs,
        .top_logprobs = req->top_logprobs,
        .on_logprobs = req->logprobs && req->on_logprobs && on_token ? on_logprobs : NULL,
    };
    if (req->n_logit_bias > 0) {
        if (!(bias = smp_malloc((size_t)req->n_logit_bias * sizeof *bias))) {
            rc = -SMP_E_NOMEM;
            goto done;
        }
        for (int i = 0; i < req->n_logit_bias; i++) bias[i] = (gen_bias){req->logit_bias[i].id, req->logit_bias[i].bias};
        gp.bias = bias;
        gp.n_bias = req->n_logit_bias;
    }
    const char *stops[BACKEND_MAX_STOP + 8];
    int ns = 0;
    for (int i = 0; i < req->n_stop; i++) stops[ns++] = req->stop[i];
    if (templated) {
        int nf;
        const char *const *fs = chat_stop_strings(l->family, &nf);
        for (int i = 0; i < nf && ns < (int)(sizeof stops / sizeof stops[0]); i++) stops[ns++] = fs[i];
    }
    gp.stop = stops;
    gp.n_stop = ns;
    gen_result gr;
    char gerr[256];
    if (sc.tw.on && (req->json_schema || req->json_object || req->grammar)) {
        snprintf(err, errlen, "tools: the built-in engine cannot hold an answer to tools and to response_format, "
                              "format or grammar at once (send one or the other)");
        rc = -SMP_E_NOT_IMPLEMENTED;
        goto done;
    }
    if (sc.tw.on) {
        /* Calls keep to their grammar: from the first token when a call is
         * required, else from the moment the model opens one. */
        tool_def *defs = tool_defs(req);
        rc = defs ? tools_grammar(sc.tw.st, defs, req->n_tools,
                                  req->tool_choice == BACKEND_TOOLS_NAMED ? req->tool_choice_name : NULL,
                                  req->parallel_tool_calls, &g, gerr, sizeof gerr)
                  : -SMP_E_NOMEM;
        smp_free(defs);
        if (rc == 0) rc = model_vocab(st, l);
        if (rc != 0) {
            snprintf(err, errlen, "%s", rc == -SMP_E_NOMEM ? "local: out of memory preparing the tool grammar" : gerr);
            if (rc == -SMP_E_VALIDATION) rc = -SMP_E_NOT_IMPLEMENTED;
            goto done;
        }
        gp.grammar = g;
        gp.grammar_vocab = l->gvocab;
        if (!sc.tw.call_now) {
            gp.grammar_trigger = sc.tw.trigger;
            gp.trigger_at_start = sc.tw.at_start;
        }
    } else if (req->json_schema || req->json_object || req->grammar) {
        /* Structured output: sampling keeps to the schema's grammar (the
         * API layer compiled it already, so this is a cache hit) or to the
         * request's own GBNF. */
        rc = req->grammar       ? grammar_parse(req->grammar, strlen(req->grammar), &g, gerr, sizeof gerr)
             : req->json_schema ? json_schema_compile(req->json_schema, &g, gerr, sizeof gerr)
                                : json_schema_any_object(&g, gerr, sizeof gerr);
        if (rc == 0) rc = model_vocab(st, l);
        if (rc != 0) {
            snprintf(err, errlen, "local: %s", rc == -SMP_E_NOMEM ? "out of memory preparing the output grammar" : gerr);
            goto done;
        }
        gp.grammar = g;
        gp.grammar_vocab = l->gvocab;
    }
    /* The scheduler runs it beside the model's other answers, in a slot that
     * may already hold this prompt's start (sched.h). */
    rc = sched_run(l->sched, l->tok, all, (int)total, &gp, &gr, gerr, sizeof gerr);
    if (rc != 0) {
        snprintf(err, errlen, "%s", rc == -SMP_E_TOO_MANY ? "" : gerr);
        if (rc == -SMP_E_TOO_MANY)
            snprintf(err, errlen, "local: model '%s': %s; try again shortly", l->name, gerr);
        goto done;
    }
    if (gr.n_cached) metrics_llm_tokens(req->model, "cached", gr.n_cached);
    out->text = buf_detach(&gr.text, &out->text_len);
    out->context = gr.tokens;
    out->n_context = gr.n_tokens;
    gr.tokens = NULL;
    out->prompt_tokens = gr.n_prompt;
    out->cached_tokens = gr.n_cached;
    out->completion_tokens = gr.n_gen;
    out->prompt_ns = gr.prompt_ns;
    out->eval_ns = gr.gen_ns;
    out->load_ns = fresh ? t_loaded - t0 : 0;
    out->total_ns = util_now_ns() - t0;
    out->done_reason = gr.done_reason;
    if (sc.tw.on) {
        /* Content held back as a possible trigger that never came. */
        if (on_token && !sc.tw.triggered && sc.tw.text.len > sc.tw.sent)
            on_token(ud, sc.tw.text.data + sc.tw.sent, sc.tw.text.len - sc.tw.sent);
        if ((rc = collect_calls(req, &sc, out)) != 0) {
            gen_result_free(&gr);
            goto done;
        }
    }
    if (req->logprobs && !(out->logprobs = logprob_entries(l->tok, gr.logprobs, gr.n_logprobs))) {
        gen_result_free(&gr);
        rc = -SMP_E_NOMEM;
        goto done;
    }
    metrics_llm_ttft(req->model, (double)(t_loaded - t0 + gr.first_token_ns) / 1e9);
    if (gr.n_gen > 0 && gr.gen_ns > 0) metrics_llm_tokens_per_second(req->model, gr.n_gen / (gr.gen_ns / 1e9));
    gen_result_free(&gr);
    if (!strcmp(out->done_reason, "cancelled")) rc = BACKEND_CANCELLED;
done:
    model_put(st, l);
    grammar_free(g);
    buf_free(&sc.tw.text);
    buf_free(&sc.tw.sec);
    buf_free(&prompt);
    smp_free(ids);
    smp_free(all);
    smp_free(bias);
    return rc;
}

static bool embed_stopped(void *ud) {
    const backend_embed_req *req = ud;
    return util_aborting() || (req->cancelled && req->cancelled(req->cancel_ud));
}

/* Tokenize every text before any is embedded, so that a batch is refused
 * whole, and cheaply: a text longer than the context is given up on as soon
 * as that is certain (tok_encode_max), and the running total stops at the
 * request's bound. Needs the tokenizer only, not a turn on the session. */
static int embed_tokenize(const loaded *l, const backend_embed_req *req, int32_t **ids, int *nids,
                          backend_embed_result *out, char *err, size_t errlen) {
    size_t n_ctx = (size_t)model_ctx_n_ctx(l->ctx), total = 0;
    for (int i = 0; i < req->n; i++) {
        if (embed_stopped((void *)req)) {
            snprintf(err, errlen, "local: embeddings stopped before they began");
            return BACKEND_CANCELLED;
        }
        size_t k;
        int rc = tok_encode_max(l->tok, req->texts[i], strlen(req->texts[i]), true, false, n_ctx, &ids[i], &k);
        if (rc == -SMP_E_TOO_LARGE) {
            out->bad_input = i;
            snprintf(err, errlen, "at least %zu tokens; model '%s' takes at most %zu per text (its context, CONTEXT_SIZE)",
                     k, l->name, n_ctx);
            return -SMP_E_VALIDATION;
        }
        if (rc != 0) {
            snprintf(err, errlen, "local: cannot tokenize text %d", i);
            return rc;
        }
        nids[i] = (int)k;
        total += k;
        if (req->max_tokens && total > req->max_tokens) {
            snprintf(err, errlen,
                     "the texts are more than %zu tokens together (counting stopped at %zu); one request may give "
                     "model '%s' at most %zu (EMBED_MAX_BATCH_TOKENS): send fewer or shorter texts per request",
                     req->max_tokens, total, l->name, req->max_tokens);
            return -SMP_E_TOO_LARGE;
        }
    }
    return 0;
}

static int local_embed(backend *b, const backend_embed_req *req, backend_embed_result *out, char *err,
                       size_t errlen) {
    local_state *st = b->state;
    memset(out, 0, sizeof *out);
    out->bad_input = -1;
    loaded *l;
    bool fresh;
    int rc = model_get(st, req->model, &l, &fresh, err, errlen);
    if (rc != 0) return rc;
    int n = req->n, d = model_n_embd(l->m);
    int32_t **ids = smp_calloc((size_t)(n ? n : 1), sizeof *ids);
    int *nids = smp_calloc((size_t)(n ? n : 1), sizeof *nids);
    float *v = NULL;
    if (!ids || !nids) {
        rc = -SMP_E_NOMEM;
        goto done;
    }
    rc = embed_tokenize(l, req, ids, nids, out, err, errlen);
    if (rc != 0) goto done;
    v = smp_malloc((size_t)(n ? n : 1) * (size_t)d * sizeof *v);
    if (!v) {
        rc = -SMP_E_NOMEM;
        goto done;
    }
    /* Turns of about EMBED_TURN_TOKENS (at least one text each); cancelled()
     * is asked before every n_batch tokens. */
    int ntok = 0;
    for (int i = 0; i < n && rc == 0;) {
        if ((rc = turn_take(st, l, i == 0, err, errlen)) != 0) break;
        int turn = 0;
        do {
            rc = model_ctx_embed(l->ctx, ids[i], nids[i], v + (size_t)i * (size_t)d, embed_stopped, (void *)req);
            if (rc == MODEL_CANCELLED) {
                rc = BACKEND_CANCELLED;
                snprintf(err, errlen, "local: embeddings stopped after %d of %d texts", i, n);
            } else if (rc != 0) {
                snprintf(err, errlen, "local: %s", model_ctx_error(l->ctx));
            } else {
                turn += nids[i];
                ntok += nids[i];
                i++;
            }
        } while (rc == 0 && i < n && turn + nids[i] <= EMBED_TURN_TOKENS);
        turn_give(st, l);
    }
    if (rc != 0) goto done;
    out->vecs = v;
    v = NULL;
    out->dim = d;
    out->prompt_tokens = ntok;
done:
    for (int i = 0; ids && i < n; i++) smp_free(ids[i]);
    smp_free(ids);
    smp_free(nids);
    smp_free(v);
    model_put(st, l);
    return rc;
}

static int local_list(backend *b, json_t **out, char *err, size_t errlen) {
    local_state *st = b->state;
    pthread_mutex_lock(&st->mu);
    if (util_now_ns() - st->scanned_at > 1000000000ull) scan(st);
    json_t *arr = json_array();
    for (int i = 0; i < st->ncat; i++) {
        const cat_entry *e = &st->cat[i];
        char when[40], digest[65];
        util_iso8601(e->mtime ? e->mtime : util_wall_seconds(), when, sizeof when);
        char key[1300];
        snprintf(key, sizeof key, "%s|%lld|%.0f", e->path[0] ? e->path : e->name, e->size, e->mtime);
        util_sha256_hex(key, strlen(key), digest);
        json_array_append_new(arr, json_pack("{s:s,s:I,s:s,s:s,s:s,s:s,s:b}", "name", e->name, "size",
                                             (json_int_t)e->size, "modified_at", when, "digest", digest, "kind",
                                             e->embedding_only ? "embedding" : "llm", "family",
                                             e->family, "builtin", !e->path[0]));
    }
    pthread_mutex_unlock(&st->mu);
    *out = arr;
    return 0;
}

static int local_has_model(backend *b, const char *name) {
    local_state *st = b->state;
    pthread_mutex_lock(&st->mu);
    int found = lookup(st, name) != NULL;
    pthread_mutex_unlock(&st->mu);
    return found;
}

static bool local_health(backend *b, json_t **out) {
    local_state *st = b->state;
    pthread_mutex_lock(&st->mu);
    json_t *loaded_names = json_array(), *slots = json_object();
    for (loaded *l = st->models; l; l = l->next) {
        json_array_append_new(loaded_names, json_string(l->name));
        sched_stats ss;
        sched_get_stats(l->sched, &ss);
        json_object_set_new(slots, l->name, json_pack("{s:i,s:i,s:i}", "slots", ss.slots, "busy", ss.busy, "queued",
                                                      ss.queued));
    }
    int n = st->ncat;
    pthread_mutex_unlock(&st->mu);
    *out = json_pack("{s:s,s:i,s:o,s:o,s:s}", "status", n ? "healthy" : "down", "models_available", n,
                     "models_loaded", loaded_names, "slots", slots, "models_dir", st->cfg->models_dir);
    return n > 0;
}

static void local_destroy(backend *b) {
    if (!b) return;
    local_state *st = b->state;
    free_list(st->models);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    smp_free(st->cat);
    smp_free(st->prev);
    smp_free(st);
    smp_free(b);
}

static const backend_ops local_ops = {
    .name = "local",
    .generate = local_generate,
    .embed = local_embed,
    .list_models = local_list,
    .has_model = local_has_model,
    .health = local_health,
    .destroy = local_destroy,
};

const char *local_builtin_model(void) { return embedded_model_name(); }

backend *local_backend_new(const config *c, char *err, size_t errlen) {
    backend *b = smp_calloc(1, sizeof *b);
    local_state *st = smp_calloc(1, sizeof *st);
    cat_entry *cat = smp_calloc(MAX_CATALOG, sizeof *cat);
    cat_entry *prev = smp_calloc(MAX_CATALOG, sizeof *prev);
    if (!b || !st || !cat || !prev) {
        smp_free(b);
        smp_free(st);
        smp_free(cat);
        smp_free(prev);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    st->cfg = c;
    st->cat = cat;
    st->prev = prev;
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    if (c->ollama_models && *c->ollama_models) {
        snprintf(st->ollama_dir, sizeof st->ollama_dir, "%s", c->ollama_models);
    } else if (getenv("HOME")) {
        char p[1024];
        snprintf(p, sizeof p, "%s/.ollama/models", getenv("HOME"));
        struct stat sb;
        if (stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) snprintf(st->ollama_dir, sizeof st->ollama_dir, "%s", p);
    }
    scan(st);
    log_info("local: %d model(s) available (MODELS_DIR=%s%s%s)", st->ncat, c->models_dir,
             st->ollama_dir[0] ? ", Ollama store " : "", st->ollama_dir);
    b->ops = &local_ops;
    b->state = st;
    return b;
}
