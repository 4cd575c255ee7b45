/* tensor_types.h - the ggml tensor type ids used in GGUF files, and the size of
 * one block of each. A row of ne0 elements of type t takes
 * ne0 / tt_block_elems(t) * tt_block_bytes(t) bytes (ne0 must be a multiple of
 * the block size). Ids are the GGUF ecosystem's and must not change. */
#ifndef SMP_TENSOR_TYPES_H
#define SMP_TENSOR_TYPES_H

#include <stddef.h>

typedef enum {
    TT_F32 = 0,
    TT_F16 = 1,
    TT_Q4_0 = 2,
    TT_Q4_1 = 3,
    TT_Q5_0 = 6,
    TT_Q5_1 = 7,
    TT_Q8_0 = 8,
    TT_Q8_1 = 9,
    TT_Q2_K = 10,
    TT_Q3_K = 11,
    TT_Q4_K = 12,
    TT_Q5_K = 13,
    TT_Q6_K = 14,
    TT_Q8_K = 15,
    TT_BF16 = 30,
    TT__MAX = 40
} tensor_type;

/* Elements per block and bytes per block; both 0 for an id Simpleton does not
 * know (the GGUF reader refuses such tensors, naming the id). */
static inline size_t tt_block_elems(int t) {
    switch (t) {
    case TT_F32: case TT_F16: case TT_BF16: return 1;
    case TT_Q4_0: case TT_Q4_1: case TT_Q5_0: case TT_Q5_1: case TT_Q8_0: case TT_Q8_1: return 32;
    case TT_Q2_K: case TT_Q3_K: case TT_Q4_K: case TT_Q5_K: case TT_Q6_K: case TT_Q8_K: return 256;
    default: return 0;
    }
}

static inline size_t tt_block_bytes(int t) {
    switch (t) {
    case TT_F32: return 4;
    case TT_F16: case TT_BF16: return 2;
    case TT_Q4_0: return 18;   /* f16 d + 16 B nibbles */
    case TT_Q4_1: return 20;   /* f16 d, f16 m + 16 B */
    case TT_Q5_0: return 22;   /* f16 d + 4 B high bits + 16 B */
    case TT_Q5_1: return 24;   /* f16 d, f16 m + 4 B + 16 B */
    case TT_Q8_0: return 34;   /* f16 d + 32 int8 */
    case TT_Q8_1: return 36;   /* f16 d, f16 s + 32 int8 */
    case TT_Q2_K: return 84;   /* 16 B scales + 64 B quants + f16 d + f16 dmin */
    case TT_Q3_K: return 110;  /* 32 B hmask + 64 B quants + 12 B scales + f16 d */
    case TT_Q4_K: return 144;  /* f16 d, f16 dmin + 12 B scales + 128 B */
    case TT_Q5_K: return 176;  /* f16 d, f16 dmin + 12 B scales + 32 B qh + 128 B */
    case TT_Q6_K: return 210;  /* 128 B ql + 64 B qh + 16 int8 scales + f16 d */
    case TT_Q8_K: return 292;  /* f32 d + 256 int8 + 16 int16 bsums */
    default: return 0;
    }
}

static inline const char *tt_name(int t) {
    switch (t) {
    case TT_F32: return "F32"; case TT_F16: return "F16"; case TT_BF16: return "BF16";
    case TT_Q4_0: return "Q4_0"; case TT_Q4_1: return "Q4_1"; case TT_Q5_0: return "Q5_0";
    case TT_Q5_1: return "Q5_1"; case TT_Q8_0: return "Q8_0"; case TT_Q8_1: return "Q8_1";
    case TT_Q2_K: return "Q2_K"; case TT_Q3_K: return "Q3_K"; case TT_Q4_K: return "Q4_K";
    case TT_Q5_K: return "Q5_K"; case TT_Q6_K: return "Q6_K"; case TT_Q8_K: return "Q8_K";
    default: return "unknown";
    }
}

#endif
