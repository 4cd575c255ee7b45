/* sched.c - see sched.h.
 *
 * Locking: one mutex per scheduler guards the queue, each job's event list
 * and done flag, and the slots' job pointers; the scheduler thread alone
 * touches the sessions, the sequences and the slots' token records, so it
 * runs the forward pass and the sampling without the lock. A job's caller
 * waits on the job's condition variable (timed, so it can also poll its
 * client); the scheduler waits on the scheduler's when it has nothing to do. */
#include "engine/sched.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"

typedef struct event {
    char *text; /* a piece of text, or NULL for log probabilities */
    size_t len;
    gen_logprob *lp;
    int n;
    struct event *next;
} event;

typedef struct job {
    /* What the caller asked; p's callbacks are the caller's own. */
    const tokenizer *tok;
    const int32_t *prompt;
    int n_prompt;
    const gen_params *p;
    /* The scheduler's side. */
    gen_seq *seq;
    int slot;
    int chunk;        /* rows of this pass */
    int rc;
    char err[256];
    gen_result result;
    bool done;
    bool cancel;      /* the caller wants it stopped (read with atomics) */
    event *head, *tail;
    pthread_cond_t cv;
    struct job *next; /* in the queue */
    uint64_t queued_at;
} job;

typedef struct {
    model_ctx *ctx;
    int32_t *ids;     /* what its KV holds */
    int n_ids;
    job *job;         /* running here, or NULL */
    uint64_t used;
} slot;

struct sched {
    model *m;
    int n_ctx, queue_max, n_slots;
    int32_t n_vocab;
    slot slots[SCHED_MAX_SLOTS];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *qhead, *qtail;
    int queued;
    bool stop;
    pthread_t thread;
    bool started;
    model_batch *batch; /* the forward pass's workspace */
    float *logits;    /* SCHED_MAX_SLOTS rows of n_vocab */
    sched_stats stats;
    void (*on_pass)(void *ud, int sequences, int rows, double seconds);
    void (*on_wait)(void *ud, double seconds);
    void *pass_ud;
};

/* ---- events: produced on the scheduler's thread, delivered on the caller's */

static void push_event(sched *s, job *j, event *e) {
    pthread_mutex_lock(&s->mu);
    if (j->tail) j->tail->next = e;
    else j->head = e;
    j->tail = e;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&s->mu);
}

typedef struct {
    sched *s;
    job *j;
} job_ref;

static int queue_text(void *ud, const char *text, size_t len) {
    job_ref *r = ud;
    event *e = smp_calloc(1, sizeof *e);
    if (!e || !(e->text = smp_malloc(len ? len : 1))) {
        smp_free(e);
        return 1; /* out of memory: stop this sequence rather than lose text */
    }
    memcpy(e->text, text, len);
    e->len = len;
    push_event(r->s, r->j, e);
    return __atomic_load_n(&r->j->cancel, __ATOMIC_RELAXED);
}

static int queue_logprobs(void *ud, const gen_logprob *lp, int n) {
    job_ref *r = ud;
    event *e = smp_calloc(1, sizeof *e);
    if (!e || !(e->lp = smp_malloc((size_t)(n ? n : 1) * sizeof *lp))) {
        smp_free(e);
        return 1;
    }
    memcpy(e->lp, lp, (size_t)n * sizeof *lp);
    e->n = n;
    push_event(r->s, r->j, e);
    return __atomic_load_n(&r->j->cancel, __ATOMIC_RELAXED);
}

static bool job_cancelled(void *ud) {
    job_ref *r = ud;
    return __atomic_load_n(&r->j->cancel, __ATOMIC_RELAXED);
}

static void event_free(event *e) {
    smp_free(e->text);
    smp_free(e->lp);
    smp_free(e);
}

/* ---- the scheduler's thread ------------------------------------------------ */

/* The job is over: its answer (or error) goes to the caller; the slot keeps
 * a record of what its KV now holds. */
static void finish(sched *s, job *j) {
    slot *sl = j->slot >= 0 ? &s->slots[j->slot] : NULL;
    if (j->seq) {
        int pos = gen_seq_pos(j->seq);
        gen_seq_finish(j->seq, &j->result);
        if (sl) {
            int keep = pos < j->result.n_tokens ? pos : j->result.n_tokens;
            int32_t *a = keep > 0 ? smp_realloc(sl->ids, (size_t)keep * sizeof *a) : sl->ids;
            if (a) {
                sl->ids = a;
                if (keep > 0) memcpy(a, j->result.tokens, (size_t)keep * sizeof *a);
                sl->n_ids = keep;
            } else {
                sl->n_ids = 0;
            }
            if (j->rc) sl->n_ids = 0; /* an error may have left the session anywhere */
        }
        gen_seq_free(j->seq);
        j->seq = NULL;
    }
    pthread_mutex_lock(&s->mu);
    if (sl) {
        sl->job = NULL;
        sl->used = util_now_ns();
    }
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&s->mu);
}

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb) {
    int k = 0;
    while (k < na && k < nb && a[k] == b[k]) k++;
    return k;
}

/* The free slot for a prompt: the longest cached prefix, then the least
 * recently used. Called with the lock held; -1 when all are busy. */
static int pick_slot(sched *s, const int32_t *prompt, int n, int *reuse) {
    int best = -1, best_len = -1;
    for (int i = 0; i < s->n_slots; i++) {
        slot *sl = &s->slots[i];
        if (sl->job) continue;
        int len = common_prefix(sl->ids, sl->n_ids, prompt, n);
        if (len > best_len || (len == best_len && sl->used < s->slots[best].used)) best = i, best_len = len;
    }
    *reuse = best_len > 0 ? best_len : 0;
    return best;
}

/* Start a job on its slot (no lock held: the slot is ours now). */
static void start(sched *s, job *j, int reuse) {
    slot *sl = &s->slots[j->slot];
    job_ref *ref = (job_ref *)(j + 1);
    gen_params p = *j->p;
    p.on_text = queue_text;
    p.on_logprobs = j->p->on_logprobs ? queue_logprobs : NULL;
    p.cancelled = job_cancelled;
    p.ud = ref;
    if (reuse > j->n_prompt - 1) reuse = j->n_prompt - 1;
    p.n_reuse = reuse;
    if (reuse > 0) model_ctx_truncate(sl->ctx, reuse);
    else model_ctx_reset(sl->ctx);
    sl->n_ids = reuse; /* what the session holds until the job ends */
    j->rc = gen_seq_new(j->tok, s->n_vocab, s->n_ctx, j->prompt, j->n_prompt, &p, &j->seq, j->err, sizeof j->err);
    if (j->rc) {
        j->seq = NULL;
        finish(s, j);
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->stats.reused_tokens += (uint64_t)reuse;
    pthread_mutex_unlock(&s->mu);
    if (s->on_wait) s->on_wait(s->pass_ud, (double)(util_now_ns() - j->queued_at) / 1e9);
    if (__atomic_load_n(&j->cancel, __ATOMIC_RELAXED)) gen_seq_cancel(j->seq);
}

static int by_chunk(const void *a, const void *b) {
    const job *x = *(job *const *)a, *y = *(job *const *)b;
    return (x->chunk > y->chunk) - (x->chunk < y->chunk);
}

static void run_pass(sched *s) {
    job *run[SCHED_MAX_SLOTS];
    int n = 0;
    for (int i = 0; i < s->n_slots; i++) {
        job *j = s->slots[i].job;
        if (!j || !j->seq) continue;
        if (__atomic_load_n(&j->cancel, __ATOMIC_RELAXED)) gen_seq_cancel(j->seq);
        if (gen_seq_done(j->seq)) {
            finish(s, j);
            continue;
        }
        const int32_t *in;
        j->chunk = gen_seq_next_input(j->seq, &in);
        if (j->chunk > 0) run[n++] = j;
    }
    if (n == 0) return;
    /* Decode steps first (one row each), then prompt chunks in what is left. */
    qsort(run, (size_t)n, sizeof *run, by_chunk);
    model_batch_seq b[SCHED_MAX_SLOTS];
    bool wants[SCHED_MAX_SLOTS];
    int budget = SCHED_PASS_TOKENS, nb = 0, rows = 0;
    for (int i = 0; i < n; i++) {
        job *j = run[i];
        const int32_t *in;
        int k = gen_seq_next_input(j->seq, &in);
        int take = k < SCHED_PREFILL_CHUNK ? k : SCHED_PREFILL_CHUNK;
        if (take > budget) take = budget;
        if (take <= 0) continue;
        budget -= take;
        j->chunk = take;
        wants[nb] = take == k; /* the input's last token: logits needed */
        b[nb] = (model_batch_seq){s->slots[j->slot].ctx, in, take,
                                  wants[nb] ? s->logits + (size_t)nb * (size_t)s->n_vocab : NULL, false};
        run[nb++] = j;
        rows += take;
    }
    uint64_t t0 = util_now_ns();
    int rc = model_batch_eval(s->batch, b, nb);
    double secs = (double)(util_now_ns() - t0) / 1e9;
    pthread_mutex_lock(&s->mu);
    s->stats.passes++;
    s->stats.rows += (uint64_t)rows;
    pthread_mutex_unlock(&s->mu);
    if (s->on_pass) s->on_pass(s->pass_ud, nb, rows, secs);
    for (int i = 0; i < nb; i++) {
        job *j = run[i];
        if (rc != 0) {
            j->rc = rc;
            snprintf(j->err, sizeof j->err, "%s", model_batch_error(s->batch));
            gen_seq_cancel(j->seq);
            finish(s, j);
            continue;
        }
        if (!gen_seq_fed(j->seq, j->chunk)) continue;
        int st = gen_seq_step(j->seq, b[i].logits, j->err, sizeof j->err);
        if (st < 0) j->rc = st;
        if (st <= 0) finish(s, j);
    }
}

static bool any_running(const sched *s) {
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].job) return true;
    return false;
}

static void *loop(void *arg) {
    sched *s = arg;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->qhead && !any_running(s)) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) break;
        /* Admit what fits. */
        job *admitted[SCHED_MAX_SLOTS];
        int reuse[SCHED_MAX_SLOTS], na = 0;
        while (s->qhead) {
            job *j = s->qhead;
            int r, k = pick_slot(s, j->prompt, j->n_prompt, &r);
            if (k < 0) break;
            s->qhead = j->next;
            if (!s->qhead) s->qtail = NULL;
            s->queued--;
            j->slot = k;
            s->slots[k].job = j;
            admitted[na] = j;
            reuse[na++] = r;
        }
        pthread_mutex_unlock(&s->mu);
        for (int i = 0; i < na; i++) start(s, admitted[i], reuse[i]);
        run_pass(s);
        pthread_mutex_lock(&s->mu);
    }
    /* Stopping: whatever runs or waits ends now. */
    for (job *j = s->qhead; j; j = j->next) {
        j->rc = -SMP_E_UNAVAILABLE;
        snprintf(j->err, sizeof j->err, "the model was unloaded before this request could start");
        j->done = true;
        pthread_cond_signal(&j->cv);
    }
    s->qhead = s->qtail = NULL;
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_slots; i++) {
        job *j = s->slots[i].job;
        if (!j) continue;
        if (j->seq) gen_seq_cancel(j->seq);
        finish(s, j);
    }
    return NULL;
}

/* ---- public ------------------------------------------------------------------ */

int sched_new(model *m, int n_slots, int n_ctx, int queue_max, sched **out, char *err, size_t errlen) {
    *out = NULL;
    if (n_slots < 1) n_slots = 1;
    if (n_slots > SCHED_MAX_SLOTS) n_slots = SCHED_MAX_SLOTS;
    sched *s = smp_calloc(1, sizeof *s);
    if (!s) return -SMP_E_NOMEM;
    s->m = m;
    s->queue_max = queue_max;
    s->n_vocab = model_n_vocab(m);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    int rc = 0;
    for (int i = 0; i < n_slots && rc == 0; i++) {
        rc = model_ctx_new(m, n_ctx, &s->slots[i].ctx, err, errlen);
        if (rc == 0) s->n_slots++;
    }
    if (rc == 0) {
        s->n_ctx = model_ctx_n_ctx(s->slots[0].ctx);
        s->logits = smp_malloc((size_t)n_slots * (size_t)s->n_vocab * sizeof *s->logits);
        if (!s->logits) rc = -SMP_E_NOMEM;
    }
    if (rc == 0) rc = model_batch_new(m, SCHED_PASS_TOKENS, &s->batch, err, errlen);
    if (rc == 0 && pthread_create(&s->thread, NULL, loop, s) != 0) {
        snprintf(err, errlen, "cannot start the scheduler thread");
        rc = -SMP_E_NOMEM;
    }
    if (rc) {
        sched_free(s);
        return rc;
    }
    s->started = true;
    *out = s;
    return 0;
}

void sched_free(sched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    for (int i = 0; i < s->n_slots; i++) {
        model_ctx_free(s->slots[i].ctx);
        smp_free(s->slots[i].ids);
    }
    smp_free(s->logits);
    model_batch_free(s->batch);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    smp_free(s);
}

int sched_n_ctx(const sched *s) { return s->n_ctx; }

void sched_set_observer(sched *s, void (*on_pass)(void *, int, int, double), void (*on_wait)(void *, double),
                        void *ud) {
    pthread_mutex_lock(&s->mu);
    s->on_pass = on_pass;
    s->on_wait = on_wait;
    s->pass_ud = ud;
    pthread_mutex_unlock(&s->mu);
}

void sched_get_stats(sched *s, sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    out->slots = s->n_slots;
    out->busy = 0;
    for (int i = 0; i < s->n_slots; i++) out->busy += s->slots[i].job != NULL;
    out->queued = s->queued;
    pthread_mutex_unlock(&s->mu);
}

/* Hand an event to the caller's callbacks; false when they say stop. */
static bool deliver(const gen_params *p, event *e) {
    if (e->text) return !(p->on_text && p->on_text(p->ud, e->text, e->len));
    return !(p->on_logprobs && p->on_logprobs(p->ud, e->lp, e->n));
}

int sched_run(sched *s, const tokenizer *tok, const int32_t *prompt, int n_prompt, const gen_params *p,
              gen_result *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (n_prompt <= 0) {
        snprintf(err, errlen, "the prompt is empty (no tokens)");
        return -SMP_E_VALIDATION;
    }
    if (n_prompt >= s->n_ctx) {
        snprintf(err, errlen, "the prompt is %d tokens; the model's context holds %d (prompt plus answer)", n_prompt,
                 s->n_ctx);
        return -SMP_E_VALIDATION;
    }
    /* The job and the reference its callbacks get, in one block. */
    job *j = smp_calloc(1, sizeof *j + sizeof(job_ref));
    if (!j) return -SMP_E_NOMEM;
    *(job_ref *)(j + 1) = (job_ref){s, j};
    j->tok = tok;
    j->prompt = prompt;
    j->n_prompt = n_prompt;
    j->p = p;
    j->slot = -1;
    j->queued_at = util_now_ns();
    pthread_cond_init(&j->cv, NULL);
    pthread_mutex_lock(&s->mu);
    bool free_slot = false;
    for (int i = 0; i < s->n_slots && !free_slot; i++) free_slot = !s->slots[i].job;
    if (!free_slot && s->queued >= s->queue_max) {
        int q = s->queued;
        pthread_mutex_unlock(&s->mu);
        pthread_cond_destroy(&j->cv);
        smp_free(j);
        snprintf(err, errlen, "all %d slots are busy and %d requests are waiting (MODEL_QUEUE_MAX)", s->n_slots, q);
        return -SMP_E_TOO_MANY;
    }
    if (s->qtail) s->qtail->next = j;
    else s->qhead = j;
    s->qtail = j;
    s->queued++;
    pthread_cond_signal(&s->cv);
    /* Deliver what comes, in order, until the answer is complete; meanwhile
     * ask the caller, a few times a second, whether its client is still there. */
    uint64_t polled = util_now_ns();
    while (!j->done || j->head) {
        event *e = j->head;
        if (e && util_now_ns() - polled < 100 * 1000000ull) {
            j->head = e->next;
            if (!j->head) j->tail = NULL;
            pthread_mutex_unlock(&s->mu);
            bool go = deliver(p, e);
            event_free(e);
            if (!go) __atomic_store_n(&j->cancel, true, __ATOMIC_RELAXED);
            pthread_mutex_lock(&s->mu);
            continue;
        }
        if (!e) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_nsec += 100 * 1000000L;
            if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&j->cv, &s->mu, &until);
        }
        polled = util_now_ns();
        if (!j->done && p->cancelled) {
            pthread_mutex_unlock(&s->mu);
            bool gone = p->cancelled(p->ud);
            pthread_mutex_lock(&s->mu);
            if (gone) __atomic_store_n(&j->cancel, true, __ATOMIC_RELAXED);
            if (gone && j->slot < 0 && !j->done) { /* still queued: leave the queue now */
                job **pp = &s->qhead;
                job *prev = NULL;
                while (*pp && *pp != j) prev = *pp, pp = &(*pp)->next;
                if (*pp) {
                    *pp = j->next;
                    if (s->qtail == j) s->qtail = prev;
                    s->queued--;
                    j->done = true;
                    j->result.done_reason = "cancelled";
                    j->result.n_prompt = n_prompt;
                }
            }
        }
    }
    pthread_mutex_unlock(&s->mu);
    int rc = j->rc;
    if (rc) {
        snprintf(err, errlen, "%s", j->err);
        gen_result_free(&j->result);
    } else {
        *out = j->result;
        if (!out->done_reason) out->done_reason = "cancelled";
    }
    pthread_cond_destroy(&j->cv);
    smp_free(j);
    return rc;
}
