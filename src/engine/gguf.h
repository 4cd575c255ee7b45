/* gguf.h - read GGUF model files (versions 2 and 3), mmapped, zero-copy.
 *
 * File layout (little-endian):
 *   off 0   u32   magic "GGUF" (0x46554747)
 *   off 4   u32   version (2 or 3; 1 is refused)
 *   off 8   u64   tensor_count
 *   off 16  u64   kv_count
 *   off 24  kv[kv_count]:   key (u64 len + bytes), u32 value type, value
 *           value: scalar | string (u64 len + bytes) | array (u32 elem type, u64 n, n elems)
 *   then    tensor_info[tensor_count]: name (string), u32 n_dims (1..4), u64 ne[n_dims],
 *           u32 ggml type, u64 offset (relative to the data section, aligned)
 *   then    padding to `general.alignment` (default 32), then the data section.
 * Every length, count and offset is checked against the file size before use;
 * a bad file yields -SMP_E_FORMAT and a message naming what is wrong.
 *
 * Ownership: the gguf handle owns the mapping; every pointer it hands out
 * (strings, array elements, tensor data) lives until gguf_close(). Strings from
 * the file are NOT NUL-terminated: they come as gguf_str views. Keys and tensor
 * names are copied NUL-terminated at open time (they are few and short). */
#ifndef SMP_GGUF_H
#define SMP_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE__COUNT
} gguf_type;

typedef struct {
    const char *ptr; /* into the mapping; not NUL-terminated */
    uint64_t len;
} gguf_str;

#define GGUF_MAX_DIMS 4

typedef struct gguf_tensor {
    const char *name;    /* NUL-terminated copy */
    int n_dims;
    uint64_t ne[GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims = 1 */
    int type;            /* ggml type id (see kernels/quants.h) */
    uint64_t offset;     /* from the start of the data section */
    const void *data;    /* into the mapping */
    size_t nbytes;
} gguf_tensor;

typedef struct gguf gguf;

/* Open and validate a file. On failure returns a negative smp_err code and a
 * message in err ("tensor 'x' data (offset .., size ..) runs past end of file"). */
int gguf_open(const char *path, gguf **out, char *err, size_t errlen);
/* Parse a buffer the caller keeps alive (used by the fuzzer and tests). */
int gguf_open_mem(const void *data, size_t len, gguf **out, char *err, size_t errlen);
void gguf_close(gguf *g);

uint32_t gguf_version(const gguf *g);
size_t gguf_file_size(const gguf *g);
size_t gguf_alignment(const gguf *g);

/* Metadata. Index i in [0, gguf_n_kv). */
int gguf_n_kv(const gguf *g);
int gguf_find_key(const gguf *g, const char *key); /* index or -1 */
const char *gguf_key(const gguf *g, int i);
gguf_type gguf_kv_type(const gguf *g, int i);
/* Scalars; any integer type converts (range-checked by the caller if it cares). */
bool gguf_get_u64(const gguf *g, const char *key, uint64_t *out);
bool gguf_get_i64(const gguf *g, const char *key, int64_t *out);
bool gguf_get_f64(const gguf *g, const char *key, double *out); /* any numeric type */
bool gguf_get_bool(const gguf *g, const char *key, bool *out);
bool gguf_get_str(const gguf *g, const char *key, gguf_str *out);
/* Arrays: element type and count; elements of fixed size are contiguous in the
 * file (possibly unaligned: read them with memcpy or the helpers below). */
bool gguf_get_arr(const gguf *g, const char *key, gguf_type *elem_type, uint64_t *n);
const void *gguf_arr_data(const gguf *g, const char *key); /* fixed-size element arrays */
/* String array element j (O(1): offsets are indexed at open time). */
bool gguf_arr_str(const gguf *g, const char *key, uint64_t j, gguf_str *out);
/* Numeric array element j as double / int64 (any numeric element type). */
bool gguf_arr_f64(const gguf *g, const char *key, uint64_t j, double *out);
bool gguf_arr_i64(const gguf *g, const char *key, uint64_t j, int64_t *out);

/* Tensors. */
int gguf_n_tensors(const gguf *g);
const gguf_tensor *gguf_tensor_at(const gguf *g, int i);
const gguf_tensor *gguf_find_tensor(const gguf *g, const char *name); /* NULL if absent */

const char *gguf_type_name(gguf_type t);

#endif
