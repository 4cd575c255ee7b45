/* chunk.h - split a document into overlapping chunks for retrieval.
 *
 * Sizes are in characters (Unicode code points, as Python's str counts them),
 * never bytes, and every chunk is an exact slice of the input: it starts and
 * ends on a character boundary and carries its offsets in both units.
 *
 * Rule: text whose trimmed length fits in `size` is one chunk. Otherwise the
 * text is cut into units - paragraphs (separated by a blank line); a
 * paragraph longer than `size` into sentences (ending in . ! ? ... followed
 * by a space, or in a CJK full stop); a sentence longer than `size` into words
 * (runs between white space); a word longer than `size` into single
 * characters. Units never include the white space around them. Whole units
 * are packed into a chunk while the chunk (first unit's start to last unit's
 * end, separators included) stays within `size`; the next chunk starts by
 * carrying the trailing units of the previous one whose span is at most
 * `overlap` (always dropping at least the first unit, so chunks advance).
 *
 * Invalid UTF-8 is tolerated (each bad byte counts as one character) so the
 * splitter can never read out of bounds; callers that need valid text check
 * it before. */
#ifndef SMP_CHUNK_H
#define SMP_CHUNK_H

#include <stddef.h>

typedef struct {
    size_t byte_start, byte_end; /* slice of the input: [byte_start, byte_end) */
    size_t char_start, char_end; /* the same slice in code points */
} chunk_span;                    /* chunk_length = char_end - char_start */

/* Split text (len bytes) with size >= 1 and 0 <= overlap < size. *out gets
 * *n spans in order (caller frees with smp_free; NULL when *n is 0: empty or
 * white-space-only text). Returns 0, -SMP_E_VALIDATION (bad size/overlap),
 * -SMP_E_TOO_LARGE (more than max_chunks chunks; 0 means no limit) or
 * -SMP_E_NOMEM. */
int chunk_text(const char *text, size_t len, long size, long overlap, size_t max_chunks, chunk_span **out,
               size_t *n);

#endif
