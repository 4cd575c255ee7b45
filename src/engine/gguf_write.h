/* gguf_write.h - write GGUF v3 files: metadata, tensor table, then tensor
 * data streamed in order (a 2 GB model never has to sit in memory).
 *
 * File layout written (little-endian; see gguf.h for the reader):
 *   off 0   u32   magic "GGUF"           off 4   u32   version 3
 *   off 8   u64   tensor_count           off 16  u64   kv_count
 *   off 24  kv[]  key (u64 len + bytes), u32 type, value
 *           tensor_info[]  name, u32 n_dims, u64 ne[n_dims], u32 type, u64 offset
 *           zero padding to general.alignment (default 32)
 *   data    tensor i at offset_i (each offset a multiple of the alignment,
 *           zero padding between tensors)
 *
 * Use: gguf_writer_new, set keys (set_* replaces a key already present, so a
 * copied file can be edited), add tensors (name, type, shape), then
 * gguf_writer_begin(path) writes everything up to the data section, then
 * gguf_writer_data() appends each tensor's bytes in the order the tensors were
 * added (in as many pieces as the caller likes), and gguf_writer_finish()
 * checks that every byte arrived and closes the file.
 *
 * Ownership: the writer copies every key, value and name. Errors: 0 or a
 * negative smp_err code (-SMP_E_VALIDATION for misuse such as a wrong data
 * size, -SMP_E_IO for the file) with a message in gguf_writer_error(). */
#ifndef SMP_GGUF_WRITE_H
#define SMP_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

typedef struct gguf_writer gguf_writer;

int gguf_writer_new(gguf_writer **out);
/* Closes an unfinished file (and removes it). NULL is fine. */
void gguf_writer_free(gguf_writer *w);
const char *gguf_writer_error(const gguf_writer *w);

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
int gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *s);
/* Array of n fixed-size elements (not strings) stored contiguously in data. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem, const void *data, uint64_t n);
/* Array of n strings. */
int gguf_writer_set_str_arr(gguf_writer *w, const char *key, const char *const *items, uint64_t n);
/* Copy key index i of src with its value, as is. */
int gguf_writer_copy_kv(gguf_writer *w, const gguf *src, int i);
bool gguf_writer_has_key(const gguf_writer *w, const char *key);

/* Declare the next tensor; ne[0] is the row length. Its byte size follows
 * from the type (tensor_types.h); ne[0] must be a multiple of the block. */
int gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const uint64_t *ne);

int gguf_writer_begin(gguf_writer *w, const char *path);
int gguf_writer_data(gguf_writer *w, const void *data, size_t n);
int gguf_writer_finish(gguf_writer *w);

#endif
