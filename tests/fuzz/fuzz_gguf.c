/* fuzz_gguf.c - libFuzzer target for the GGUF reader.
 *
 * Parses the input with gguf_open_mem and, when it is accepted, walks every
 * key (through the typed getter for its type, every array element included)
 * and every tensor (first and last data byte), so a wrong bound anywhere shows
 * up as an out-of-bounds read under ASan. Also checks that an accepted file's
 * tensors lie inside the input and that names look themselves up.
 * Built by `make fuzz` (clang -fsanitize=fuzzer) and, with replay.c, by
 * `make build/fuzz_gguf_replay`, which replays tests/fuzz/corpus/gguf. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/gguf.h"

static volatile uint64_t sink;

static void touch(const void *p, uint64_t n) {
    const uint8_t *b = p;
    uint64_t h = 0;
    for (uint64_t i = 0; i < n; i++) h = h * 31 + b[i];
    sink += h;
}

static void walk_kv(const gguf *g, int i) {
    const char *key = gguf_key(g, i);
    if (!key || gguf_find_key(g, key) != i) abort();
    uint64_t u;
    int64_t s;
    double d;
    bool b;
    gguf_str str;
    gguf_type et;
    uint64_t n;
    switch (gguf_kv_type(g, i)) {
    case GGUF_TYPE_STRING:
        if (!gguf_get_str(g, key, &str)) abort();
        touch(str.ptr, str.len);
        break;
    case GGUF_TYPE_BOOL:
        if (!gguf_get_bool(g, key, &b)) abort();
        sink += b;
        break;
    case GGUF_TYPE_ARRAY:
        if (!gguf_get_arr(g, key, &et, &n)) abort();
        if (et == GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < n; j++) {
                if (!gguf_arr_str(g, key, j, &str)) abort();
                touch(str.ptr, str.len);
            }
            if (gguf_arr_str(g, key, n, &str)) abort();
        } else {
            const uint8_t *p = gguf_arr_data(g, key);
            if (!p) abort();
            for (uint64_t j = 0; j < n; j++) {
                if (gguf_arr_f64(g, key, j, &d)) sink += (uint64_t)(d == d);
                if (gguf_arr_i64(g, key, j, &s)) sink += (uint64_t)s;
            }
            if (n && et == GGUF_TYPE_BOOL) touch(p, n);
        }
        break;
    default:
        if (!gguf_get_f64(g, key, &d)) abort();
        if (gguf_get_u64(g, key, &u)) sink += u;
        if (gguf_get_i64(g, key, &s)) sink += (uint64_t)s;
        break;
    }
    sink += gguf_type_name(gguf_kv_type(g, i))[0];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf *g = NULL;
    char err[256];
    if (gguf_open_mem(data, size, &g, err, sizeof err)) {
        if (!err[0] || strlen(err) >= sizeof err) abort(); /* a refusal always explains itself */
        return 0;
    }
    for (int i = 0; i < gguf_n_kv(g); i++) walk_kv(g, i);
    sink += gguf_version(g) + gguf_alignment(g) + gguf_file_size(g);
    for (int i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (!t || gguf_find_tensor(g, t->name) != t) abort();
        const uint8_t *p = t->data;
        if (p < data || t->nbytes > size || p + t->nbytes > data + size || t->nbytes == 0) abort();
        sink += p[0] + p[t->nbytes - 1];
    }
    gguf_close(g);
    return 0;
}
