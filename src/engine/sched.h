/* sched.h - continuous batching: many generations on one model at once.
 *
 * A scheduler owns a model's slots (sessions, each its own KV cache) and one
 * thread that runs forward passes. Each pass takes every running sequence's
 * next input: one token for a sequence that is decoding, a chunk of the
 * prompt (at most SCHED_PREFILL_CHUNK tokens) for one that is reading its
 * prompt, up to SCHED_PASS_TOKENS rows in all, decode steps first, and runs
 * them together (model_eval_batch), so the weights are read once for all of
 * them. Sequences join and leave between passes; each keeps its own
 * sampler, stop strings, grammar and cancellation (gen_seq), so what one
 * sequence produces does not depend on the others.
 *
 * Slots remember what their KV holds when a sequence leaves (its prompt and
 * answer). A new request takes the free slot holding the longest prefix of
 * its prompt (the next turn of a chat, a shared system prompt) and runs only
 * the rest: the prompt cache. Among slots with nothing in common it takes
 * the one used least recently.
 *
 * Callers block in sched_run; their gen_params callbacks (on_text,
 * on_logprobs, cancelled) are called on the caller's thread, in order, as
 * the scheduler produces them: the scheduler's thread never waits on a
 * client. A request that finds every slot busy waits in a FIFO queue of at
 * most queue_max entries; one more is refused with -SMP_E_TOO_MANY. */
#ifndef SMP_SCHED_H
#define SMP_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "engine/generate.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

#define SCHED_MAX_SLOTS 64
#define SCHED_PASS_TOKENS 512  /* rows per forward pass */
#define SCHED_PREFILL_CHUNK 256 /* prompt tokens of one sequence per pass */

typedef struct sched sched;

typedef struct {
    int slots, busy;          /* sessions, and those running a sequence */
    int queued;               /* requests waiting for a slot */
    uint64_t passes;          /* forward passes run */
    uint64_t rows;            /* tokens run in them (rows / passes: mean batch) */
    uint64_t reused_tokens;   /* prompt tokens taken from the prompt cache */
} sched_stats;

/* n_slots sessions of n_ctx positions each (model_ctx_new's rules) and the
 * thread. Errors fill err. */
int sched_new(model *m, int n_slots, int n_ctx, int queue_max, sched **out, char *err, size_t errlen);
/* Stop the thread: running and queued requests end as "cancelled". */
void sched_free(sched *s);
int sched_n_ctx(const sched *s);

/* One generation (gen_run's contract, without a session: the scheduler
 * picks one). p->n_reuse is ignored (the slot decides; out->n_cached says
 * what was reused). Blocks until the answer is complete, cancelled (p->
 * cancelled or a callback returning non-zero) or refused. */
int sched_run(sched *s, const tokenizer *tok, const int32_t *prompt, int n_prompt, const gen_params *p,
              gen_result *out, char *err, size_t errlen);

/* For metrics, from the scheduler's thread (each may be NULL): on_pass when
 * a forward pass has run (the sequences it advanced, its rows), on_wait when
 * a request gets its slot (the seconds it waited for one). */
void sched_set_observer(sched *s, void (*on_pass)(void *ud, int sequences, int rows, double seconds),
                        void (*on_wait)(void *ud, double seconds), void *ud);
void sched_get_stats(sched *s, sched_stats *out);

#endif
