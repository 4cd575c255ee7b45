/* whisper_store.h - which Whisper model file a request means, fetching it
 * when allowed, and the loaded models kept for reuse.
 *
 * Names: a size (tiny, base, small, medium, large = large-v3, large-v1/v2/v3,
 * large-v3-turbo, and the ".en" variants) means ggml-<size>.bin; anything else
 * is a file name ("whisper-rand-tiny64-f16", with or without .bin; never a
 * path). Files are looked up in MODELS_DIR, then DATA_DIR/models. Only
 * whisper.cpp's ggml .bin files are Whisper models: no GGUF Whisper format
 * is in use, so "<name>.gguf" is never looked for, and naming one (or a name
 * whose only file is a .gguf) is answered "not supported yet".
 *
 * A missing size is downloaded from WHISPER_DOWNLOAD_URL (when non-empty) to
 * DATA_DIR/models/.ggml-<size>.bin.part, checked (size = Content-Length, loads
 * as a Whisper model, SHA-1 when fetching from the official repository whose
 * hashes are known) and renamed into place; a failed download leaves nothing
 * behind. Only one download per file runs; other requests for it wait. The
 * download stops when its requester is gone (the cancel hook) and no other
 * request waits for it; a waiter whose client leaves stops waiting and leaves
 * the download to the others.
 *
 * Loaded models live in an LRU of at most MAX_LOADED_MODELS entries; each
 * acquire takes a reference, and a model in use is never freed (the LRU may
 * run over its size while every entry is in use). Thread-safe; models are
 * shared read-only, so transcriptions run in parallel. */
#ifndef SMP_WHISPER_STORE_H
#define SMP_WHISPER_STORE_H

#include <stdbool.h>
#include <stddef.h>

#include "engine/whisper.h"

/* True when name is a known Whisper size (tiny, base.en, large-v3, ...). */
bool whisper_store_is_size(const char *name);

/* The file a name means, if present on disk (no download). Returns true and
 * fills path. */
bool whisper_store_find(const char *name, char *path, size_t n);

/* A loaded model for name (resolving, downloading and loading as needed).
 * cancelled(cancel_ud) (may be NULL) is polled while waiting and downloading.
 * Returns 0 with *out (release it with whisper_store_release); 1 (positive)
 * when cancelled; -SMP_E_VALIDATION (not a model name: err says why);
 * -SMP_E_UNAVAILABLE (missing and not downloadable: err says which file to
 * put where; a GGUF file; the download server is unreachable; or the file on
 * disk is not a usable Whisper model: err names the file and the reason);
 * -SMP_E_BACKEND (the download failed or was not a valid model);
 * -SMP_E_NOMEM / -SMP_E_IO. */
int whisper_store_acquire(const char *name, bool (*cancelled)(void *), void *cancel_ud, whisper_model **out,
                          char *err, size_t errlen);
void whisper_store_release(whisper_model *m);

/* The Whisper model files on disk (MODELS_DIR, then DATA_DIR/models; a file
 * counts when it starts with the ggml magic): a new JSON array of
 * {name, size, modified_at, digest: null, backend: "local", kind: "audio"},
 * name being what a request's `model` may say (the file name without .bin). */
struct json_t;
struct json_t *whisper_store_list(void);

/* Unload everything not in use (tests, shutdown). */
void whisper_store_clear(void);

#endif
