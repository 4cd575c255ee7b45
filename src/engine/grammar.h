/* grammar.h - constrained decoding: a GBNF grammar, a matcher that follows it
 * byte by byte, and a token mask built from it.
 *
 * GBNF (llama.cpp's grammar format) as accepted here:
 *   name ::= alternatives          a rule; "root" is where matching starts.
 *                                  A rule ends where the next "name ::=" begins,
 *                                  so bodies may span lines. Names: [A-Za-z0-9_-]+.
 *   a b c                          sequence
 *   a | b                          alternation
 *   "text"                         literal; escapes \n \r \t \\ \" \' \[ \] \- \^
 *                                  \xHH \uHHHH \UHHHHHHHH
 *   [a-z0-9_] [^"\\]               character class, ranges, negation, same escapes
 *   .                              any code point
 *   ( ... )                        group
 *   x* x+ x? x{m} x{m,} x{m,n}     repetition (n <= GRAMMAR_MAX_REPEAT)
 *   # comment                      to the end of the line
 * Left recursion (a rule that can reach itself before consuming a character)
 * is refused when the grammar is compiled; so are undefined and doubly
 * defined rules. Errors name the line and column and what was expected.
 *
 * Compiled form: one flat array of elements. Each rule is its alternatives
 * one after another, each alternative a run of CHARS (a code-point class,
 * index into a table of sorted, merged ranges; negation is resolved at
 * compile time) and REF (another rule) elements closed by ALT or, for the
 * last one, END. Repetitions become small right-recursive helper rules.
 *
 * Matcher: a set of pushdown stacks (at most GRAMMAR_MAX_STACKS). A stack's
 * top is the CHARS element the next code point must match; the elements
 * below are where to continue when the current rule's alternative ends. An
 * empty stack means the grammar is satisfied. Stacks are linked lists of
 * nodes sharing their tails. Input is bytes: a code point split across
 * calls (a token ending inside a UTF-8 character) waits in the matcher, and
 * a partial character is rejected early when no stack could accept any code
 * point that starts with those bytes. Only valid UTF-8 is accepted.
 *
 * Masking (grammar_mask): grammar_vocab sorts a tokenizer's token pieces by
 * their bytes once per model and records how many leading bytes each shares
 * with the previous one; a mask walks this list depth-first, keeping the
 * matcher state after every prefix, so shared prefixes are advanced once and
 * a rejected prefix skips every token that starts with it. See grammar.c for
 * costs; gen_run also samples first and masks only when the sample is
 * rejected.
 *
 * Ownership: a grammar is immutable after grammar_parse and reference
 * counted (grammar_ref / grammar_free), so one compiled grammar may serve
 * many generations on many threads. A grammar_vocab is immutable too and
 * borrows the tokenizer (which must outlive it). A matcher belongs to one
 * generation (not thread-safe) and holds a reference to its grammar. */
#ifndef SMP_GRAMMAR_H
#define SMP_GRAMMAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/tokenizer.h"

#define GRAMMAR_MAX_STACKS 256     /* live stacks per matcher state */
#define GRAMMAR_MAX_ELEMS (1 << 20) /* compiled elements per grammar */
#define GRAMMAR_MAX_REPEAT 10000    /* n in x{m,n} */
#define GRAMMAR_MAX_NODES (1 << 22) /* stack nodes per matcher (about 32 MB) */

typedef struct grammar grammar;
typedef struct grammar_matcher grammar_matcher;
typedef struct grammar_vocab grammar_vocab;

/* Compile GBNF text src[0..len). On error returns -SMP_E_VALIDATION (or
 * -SMP_E_NOMEM) with "line L, column C: ..." in err. *out has one reference. */
int grammar_parse(const char *src, size_t len, grammar **out, char *err, size_t errlen);
grammar *grammar_ref(grammar *g);     /* one more reference; returns g */
void grammar_free(grammar *g);        /* drops one reference; NULL is fine */
int grammar_n_rules(const grammar *g);
size_t grammar_n_elems(const grammar *g);

/* A matcher at the start of the grammar. Fails with -SMP_E_VALIDATION when
 * the start alone needs more than GRAMMAR_MAX_STACKS stacks (err says so). */
int grammar_matcher_new(const grammar *g, grammar_matcher **out, char *err, size_t errlen);
void grammar_matcher_free(grammar_matcher *m);
/* An independent copy (NULL when memory runs out). */
grammar_matcher *grammar_matcher_clone(const grammar_matcher *m);

/* Feed bytes. True: accepted and the matcher moved on. False: some prefix
 * cannot continue any stack (or invalid UTF-8, or a state would need more
 * than GRAMMAR_MAX_STACKS stacks); the matcher is unchanged. */
bool grammar_matcher_accept_bytes(grammar_matcher *m, const char *bytes, size_t len);
/* The input so far is a complete sentence of the grammar. */
bool grammar_matcher_can_end(const grammar_matcher *m);
/* Complete, and nothing more can follow: only the end is left. */
bool grammar_matcher_is_complete(const grammar_matcher *m);
/* The matcher's live stacks (for tests and diagnostics). */
int grammar_matcher_n_stacks(const grammar_matcher *m);
/* The fewest bytes that complete the input so far: 0 when it can end here,
 * SIZE_MAX when no finite ending exists (a rule with no way out). Exact: the
 * grammar's shortest ending is this long. A pending partial character counts
 * its missing bytes. Each rule's and element's share is computed once when
 * the grammar is compiled, so this costs the depth of the live stacks. From
 * any state with a finite distance some single byte lowers it by one. */
size_t grammar_matcher_distance(const grammar_matcher *m);

/* Per-tokenizer precomputation for masking (a few ms for 150k tokens;
 * cache it with the model). The tokenizer must outlive the vocab. */
int grammar_vocab_new(const tokenizer *t, grammar_vocab **out);
void grammar_vocab_free(grammar_vocab *v);

/* Token rules: a token stands for tok_piece(t, id, false) bytes. An
 * end-of-generation token is allowed exactly when the grammar can end; any
 * other token with no bytes (control, unknown) is never allowed. */
bool grammar_matcher_allows(grammar_matcher *m, const grammar_vocab *v, int32_t id);
/* Allowed, and the distance after it is at most max_distance (an
 * end-of-generation token: the distance is 0). SIZE_MAX: no limit. */
bool grammar_matcher_allows_within(grammar_matcher *m, const grammar_vocab *v, int32_t id, size_t max_distance);
/* Advance by one token; false (matcher unchanged) when it is not allowed. An
 * end-of-generation token is accepted when the grammar can end and does not
 * change the state. */
bool grammar_matcher_accept_token(grammar_matcher *m, const grammar_vocab *v, int32_t id);
/* Set logits[id] = -INFINITY for every token not allowed (logits has
 * tok_n_vocab entries). Returns the number of tokens still allowed, or
 * -SMP_E_NOMEM. The matcher's state is not changed (its scratch space is
 * used, hence non-const). */
int grammar_mask(grammar_matcher *m, const grammar_vocab *v, float *logits);
/* The same, also masking every token after which the distance would exceed
 * max_distance (SIZE_MAX: no limit, as grammar_mask). */
int grammar_mask_within(grammar_matcher *m, const grammar_vocab *v, float *logits, size_t max_distance);

#endif
