/* valid.h - parse JSON request bodies and validate their fields.
 *
 * A valid collects every problem found in a body as the 422 detail list that
 * Simpleton returns: [{"loc":["body","field"],"msg":"...","type":"..."}].
 * Field readers return 1 when the field is present and valid, 0 when it is
 * absent (an error is recorded if it was required), -1 when it is invalid
 * (an error naming the field is recorded). Strings returned point into the
 * JSON object and live as long as it does. */
#ifndef SMP_VALID_H
#define SMP_VALID_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct valid {
    json_t *errors; /* array; owned */
} valid;

void valid_init(valid *v);
void valid_free(valid *v);
bool valid_ok(const valid *v);
/* Transfer the detail array to the caller (a new reference). */
json_t *valid_take(valid *v);
void valid_add(valid *v, const char *field, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Parse a body. Malformed JSON records a json_invalid error naming line and
 * column; depth is capped (JSON_MAX_DEPTH). Returns the value or NULL. */
#define VALID_MAX_DEPTH 64
/* What one JSON body may hold, checked on the raw text before it is parsed:
 * a parsed value costs jansson 50 to 500 bytes (objects the most), so a
 * 32 MB body of a million tiny objects would take gigabytes. No route needs
 * more (a chat's API_MAX_MESSAGES, Ollama's context ids). */
#define VALID_MAX_VALUES 500000
#define VALID_MAX_OBJECTS 50000
json_t *valid_parse(valid *v, const char *data, size_t len);
/* Parse and require an object at the top. */
json_t *valid_parse_object(valid *v, const char *data, size_t len);

int valid_str(valid *v, json_t *obj, const char *field, bool required, bool nonempty, const char **out);
int valid_int(valid *v, json_t *obj, const char *field, bool required, long long lo, long long hi, long long *out);
int valid_num(valid *v, json_t *obj, const char *field, bool required, double lo, double hi, double *out);
int valid_bool(valid *v, json_t *obj, const char *field, bool required, bool *out);
/* One of several strings (an enum); choices is NULL-terminated. */
int valid_enum(valid *v, json_t *obj, const char *field, bool required, const char *const *choices, const char **out);

/* True if s (n bytes) is well-formed UTF-8. */
bool valid_utf8(const char *s, size_t n);
/* Make s well-formed UTF-8 in place, so it can go into JSON: a byte that
 * starts no valid character becomes '?', and a character cut short at the
 * end (a message truncated to its buffer) is dropped. */
void valid_utf8_repair(char *s);

/* Append the JSON text of j (json_dumps flags) to out, in our allocator
 * (json_dumps would use jansson's). Returns 0, or -1 (j NULL, out of memory). */
struct buf;
int valid_dump(json_t *j, size_t flags, struct buf *out);

#endif
