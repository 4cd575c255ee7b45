/* tokenizer.h - text <-> token ids for GGUF models.
 *
 * Three algorithms, chosen by tokenizer.ggml.model:
 *   "llama"  SentencePiece (SPM): spaces become U+2581, a space is prefixed, the
 *            pair of adjacent pieces whose merge has the best score is merged
 *            until none is left; unknown text falls back to <0xXX> byte tokens.
 *   "gpt2"   byte-level BPE: a pre-tokenizer (tokenizer.ggml.pre: gpt-2, llama3,
 *            qwen2, falcon, starcoder, deepseek-llm, ...) splits the text, bytes
 *            map to printable code points, merges apply by rank.
 *   "bert"   WordPiece: BERT normalisation (clean, lowercase, strip accents),
 *            split on spaces and punctuation, greedy longest match per word.
 * Text is UTF-8 bytes; invalid bytes are tolerated (BPE and SPM keep them as
 * byte tokens, so encoding never loses data).
 *
 * Ownership: tok_load copies everything it needs out of the gguf, so the
 * tokenizer outlives the file if the caller wants. A tokenizer is immutable
 * after loading and may be shared by threads. Arrays returned by tok_encode
 * belong to the caller (smp_free); pointers from tok_piece/tok_text live as
 * long as the tokenizer. */
#ifndef SMP_TOKENIZER_H
#define SMP_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "engine/gguf.h"

typedef struct tokenizer tokenizer;

typedef enum { TOK_KIND_SPM, TOK_KIND_BPE, TOK_KIND_WPM } tok_kind;

/* GGUF token types (tokenizer.ggml.token_type). */
typedef enum {
    TOK_TYPE_UNDEFINED = 0,
    TOK_TYPE_NORMAL = 1,
    TOK_TYPE_UNKNOWN = 2,
    TOK_TYPE_CONTROL = 3,
    TOK_TYPE_USER_DEFINED = 4,
    TOK_TYPE_UNUSED = 5,
    TOK_TYPE_BYTE = 6
} tok_type;

/* Build a tokenizer from a model's tokenizer.ggml.* metadata. Fails with
 * -SMP_E_FORMAT (missing or inconsistent vocab), -SMP_E_NOT_IMPLEMENTED
 * (unknown model or pre-tokenizer) or -SMP_E_NOMEM, with a message in err. */
int tok_load(const gguf *g, tokenizer **out, char *err, size_t errlen);
void tok_free(tokenizer *t);

tok_kind tok_get_kind(const tokenizer *t);
int32_t tok_n_vocab(const tokenizer *t);
int32_t tok_bos(const tokenizer *t); /* -1 when the model has none */
int32_t tok_eos(const tokenizer *t);
int32_t tok_unk(const tokenizer *t);
int32_t tok_sep(const tokenizer *t);
int32_t tok_pad(const tokenizer *t);
bool tok_adds_bos(const tokenizer *t); /* what add_special does at the start */
bool tok_adds_eos(const tokenizer *t);
/* End of generation: eos, eot/eom, and tokens like <|im_end|>, <|eot_id|>. */
bool tok_is_eog(const tokenizer *t, int32_t id);
tok_type tok_get_type(const tokenizer *t, int32_t id); /* UNDEFINED if out of range */
/* The vocabulary entry's text exactly as stored (not NUL-terminated); NULL if
 * id is out of range. */
const char *tok_text(const tokenizer *t, int32_t id, size_t *len);
/* Id of the entry whose text is exactly text[0..len), or -1. Use it to find
 * special tokens ("<|im_start|>"). */
int32_t tok_lookup(const tokenizer *t, const char *text, size_t len);

/* A floor on how many tokens len bytes of text encode to, found without
 * encoding: SPM and byte-level BPE lose no byte, and no token stands for
 * more bytes than its vocabulary text is long. WordPiece drops whitespace,
 * so it gets 0. Lets a caller refuse a prompt that cannot fit a context
 * before spending time on it. */
size_t tok_min_tokens(const tokenizer *t, size_t len);

/* Encode text[0..len). add_special: add BOS/EOS as the model's rules say
 * (tokenizer.ggml.add_bos_token / add_eos_token; BERT gets [CLS] ... [SEP]). parse_special: control tokens written in the text (e.g.
 * "<|im_start|>") become their ids; user-defined tokens are always recognised.
 * On success *ids (caller frees with smp_free) holds *n ids. */
int tok_encode(const tokenizer *t, const char *text, size_t len, bool add_special,
               bool parse_special, int32_t **ids, size_t *n);
/* tok_encode for a caller that takes at most max ids: once the text is sure
 * to need more, stops and returns -SMP_E_TOO_LARGE (*ids NULL, *n a lower
 * bound of the count, > max). A text longer than max times the longest
 * vocabulary entry is refused from its length alone (SPM and BPE, which drop
 * no byte), so refusing megabytes costs nothing; otherwise the count is
 * checked after each fragment (BPE: each pre-tokenizer chunk). */
int tok_encode_max(const tokenizer *t, const char *text, size_t len, bool add_special,
                   bool parse_special, size_t max, int32_t **ids, size_t *n);

/* The bytes one token stands for: U+2581 -> space and <0xXX> -> that byte for
 * SPM, byte-level code points -> bytes for BPE. Control and unknown tokens give
 * "" unless special is true (then their text). May be part of a UTF-8
 * character. Returns a pointer into the tokenizer; *len gets the size. */
const char *tok_piece(const tokenizer *t, int32_t id, bool special, size_t *len);

enum {
    TOK_DECODE_SPECIAL = 1,     /* render control tokens as their text */
    TOK_DECODE_STRIP_SPACE = 2, /* drop the leading space of the first non-empty piece when
                                   it is a word marker (SPM space prefix, WordPiece ▁) */
};

/* Decode ids into out (appended). Invalid UTF-8 in the result is replaced by
 * U+FFFD, so out always receives valid UTF-8. Returns 0, or -SMP_E_TOO_LARGE if
 * out's cap is reached. */
int tok_decode(const tokenizer *t, const int32_t *ids, size_t n, unsigned flags, buf *out);

/* Streaming detokenizer: push ids one at a time; each push appends only
 * complete, valid UTF-8 to out and holds back a trailing incomplete character
 * until the next push. Invalid bytes become U+FFFD. The struct is the caller's
 * (stack is fine); fields are private. */
typedef struct {
    const tokenizer *t;
    unsigned flags;
    bool started;
    unsigned char pend[4];
    size_t npend;
} tok_stream;

void tok_stream_init(tok_stream *s, const tokenizer *t, unsigned flags);
int tok_stream_push(tok_stream *s, int32_t id, buf *out);
/* True while the end of a pushed token is held back (an incomplete
 * character waits for the next push). */
bool tok_stream_pending(const tok_stream *s);
/* Emit what is held back (an incomplete character becomes U+FFFD). */
int tok_stream_flush(tok_stream *s, buf *out);

#endif
