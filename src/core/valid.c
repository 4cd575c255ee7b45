/* valid.c - see valid.h. Error "type" strings follow the names clients of the
 * replaced service already match on (missing, string_type, int_type, ...). */
#include "valid.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "buf.h"

void valid_init(valid *v) { v->errors = json_array(); }

void valid_free(valid *v) {
    json_decref(v->errors);
    v->errors = NULL;
}

bool valid_ok(const valid *v) { return v->errors && json_array_size(v->errors) == 0; }

json_t *valid_take(valid *v) {
    json_t *e = v->errors;
    v->errors = json_array();
    return e;
}

void valid_add(valid *v, const char *field, const char *type, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages may quote client bytes (jansson's error text does). */
    valid_utf8_repair(msg);
    json_t *loc = json_array();
    json_array_append_new(loc, json_string("body"));
    if (field) json_array_append_new(loc, json_string(field));
    json_array_append_new(v->errors, json_pack("{s:o,s:s,s:s}", "loc", loc, "msg", msg, "type", type));
}

/* Count what the JSON text would become, without building it: values
 * (roughly, commas and openings), objects, and the deepest nesting. Strings
 * are skipped with their escapes; anything malformed is left to the parser. */
static void json_shape(const char *s, size_t n, size_t *values, size_t *objects, int *depth) {
    size_t nv = 0, no = 0;
    int d = 0, maxd = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++)
                if (s[i] == '\\') i++;
        } else if (c == '{' || c == '[') {
            nv++;
            no += c == '{';
            if (++d > maxd) maxd = d;
        } else if (c == '}' || c == ']') {
            d--;
        } else if (c == ',') {
            nv++;
        }
    }
    *values = nv;
    *objects = no;
    *depth = maxd;
}

json_t *valid_parse(valid *v, const char *data, size_t len) {
    if (len == 0) {
        valid_add(v, NULL, "json_invalid", "Request body is empty; expected JSON");
        return NULL;
    }
    size_t values, objects;
    int depth;
    json_shape(data, len, &values, &objects, &depth);
    if (depth > VALID_MAX_DEPTH) {
        valid_add(v, NULL, "json_invalid", "JSON nested deeper than %d levels", VALID_MAX_DEPTH);
        return NULL;
    }
    if (values > VALID_MAX_VALUES || objects > VALID_MAX_OBJECTS) {
        valid_add(v, NULL, "json_too_large", "JSON body holds more than %d values or %d objects",
                  VALID_MAX_VALUES, VALID_MAX_OBJECTS);
        return NULL;
    }
    json_error_t e;
    json_t *j = json_loadb(data, len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &e);
    if (!j) {
        bool utf8 = strstr(e.text, "decode byte") || strstr(e.text, "UTF-8");
        valid_add(v, NULL, "json_invalid", "JSON decode error at line %d column %d: %s%s", e.line, e.column,
                  utf8 ? "invalid UTF-8: " : "", e.text);
        return NULL;
    }
    return j;
}

json_t *valid_parse_object(valid *v, const char *data, size_t len) {
    json_t *j = valid_parse(v, data, len);
    if (j && !json_is_object(j)) {
        valid_add(v, NULL, "model_attributes_type", "Input should be a JSON object");
        json_decref(j);
        return NULL;
    }
    return j;
}

static json_t *field_get(valid *v, json_t *obj, const char *field, bool required) {
    json_t *x = json_object_get(obj, field);
    if (!x || json_is_null(x)) {
        if (required) valid_add(v, field, "missing", "Field required");
        return NULL;
    }
    return x;
}

int valid_str(valid *v, json_t *obj, const char *field, bool required, bool nonempty, const char **out) {
    json_t *x = field_get(v, obj, field, required);
    if (!x) return 0;
    if (!json_is_string(x)) {
        valid_add(v, field, "string_type", "Input should be a valid string");
        return -1;
    }
    if (nonempty && json_string_length(x) == 0) {
        valid_add(v, field, "string_too_short", "String should have at least 1 character");
        return -1;
    }
    if (memchr(json_string_value(x), '\0', json_string_length(x))) {
        valid_add(v, field, "string_type", "String must not contain NUL characters");
        return -1;
    }
    if (out) *out = json_string_value(x);
    return 1;
}

int valid_int(valid *v, json_t *obj, const char *field, bool required, long long lo, long long hi, long long *out) {
    json_t *x = field_get(v, obj, field, required);
    if (!x) return 0;
    long long n;
    if (json_is_integer(x)) {
        n = json_integer_value(x);
    } else if (json_is_real(x) && json_real_value(x) == floor(json_real_value(x)) &&
               fabs(json_real_value(x)) < 9e15) {
        n = (long long)json_real_value(x);
    } else {
        valid_add(v, field, "int_type", "Input should be a valid integer");
        return -1;
    }
    if (n < lo) {
        valid_add(v, field, "greater_than_equal", "Input should be greater than or equal to %lld", lo);
        return -1;
    }
    if (n > hi) {
        valid_add(v, field, "less_than_equal", "Input should be less than or equal to %lld", hi);
        return -1;
    }
    if (out) *out = n;
    return 1;
}

int valid_num(valid *v, json_t *obj, const char *field, bool required, double lo, double hi, double *out) {
    json_t *x = field_get(v, obj, field, required);
    if (!x) return 0;
    if (!json_is_number(x)) {
        valid_add(v, field, "float_type", "Input should be a valid number");
        return -1;
    }
    double d = json_number_value(x);
    if (d < lo) {
        valid_add(v, field, "greater_than_equal", "Input should be greater than or equal to %g", lo);
        return -1;
    }
    if (d > hi) {
        valid_add(v, field, "less_than_equal", "Input should be less than or equal to %g", hi);
        return -1;
    }
    if (out) *out = d;
    return 1;
}

int valid_bool(valid *v, json_t *obj, const char *field, bool required, bool *out) {
    json_t *x = field_get(v, obj, field, required);
    if (!x) return 0;
    if (!json_is_boolean(x)) {
        valid_add(v, field, "bool_type", "Input should be a valid boolean");
        return -1;
    }
    if (out) *out = json_is_true(x);
    return 1;
}

int valid_enum(valid *v, json_t *obj, const char *field, bool required, const char *const *choices, const char **out) {
    const char *s;
    int rc = valid_str(v, obj, field, required, false, &s);
    if (rc <= 0) return rc;
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (!strcmp(s, choices[i])) {
            if (out) *out = choices[i];
            return 1;
        }
        size_t n = strlen(list);
        snprintf(list + n, sizeof list - n, "%s'%s'", i ? ", " : "", choices[i]);
    }
    valid_add(v, field, "enum", "Input should be one of %s", list);
    return -1;
}

/* Is s (n bytes, the end of a string) the start of a character that only
 * lacks its last bytes? */
static bool cut_short(const char *s, size_t n) {
    unsigned char c = (unsigned char)s[0];
    size_t len = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
    if (!len || n >= len) return false;
    for (size_t i = 1; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) return false;
    return true;
}

void valid_utf8_repair(char *s) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        size_t len = 1;
        while (len <= 4 && i + len <= n && !valid_utf8(s + i, len)) len++;
        if (len <= 4 && i + len <= n) {
            i += len;
        } else if (cut_short(s + i, n - i)) {
            s[i] = '\0'; /* a character cut short by truncation: drop it */
            return;
        } else {
            s[i++] = '?';
        }
    }
}

bool valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s, *e = p + n;
    while (p < e) {
        unsigned c = *p;
        if (c < 0x80) { p++; continue; }
        int len;
        unsigned min;
        if ((c & 0xE0) == 0xC0) len = 2, min = 0x80, c &= 0x1F;
        else if ((c & 0xF0) == 0xE0) len = 3, min = 0x800, c &= 0x0F;
        else if ((c & 0xF8) == 0xF0) len = 4, min = 0x10000, c &= 0x07;
        else return false;
        if (e - p < len) return false;
        for (int i = 1; i < len; i++) {
            if ((p[i] & 0xC0) != 0x80) return false;
            c = (c << 6) | (p[i] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
        p += len;
    }
    return true;
}

static int dump_cb(const char *p, size_t n, void *ud) { return buf_append(ud, p, n); }

int valid_dump(json_t *j, size_t flags, buf *out) {
    return j && json_dump_callback(j, dump_cb, out, flags) == 0 ? 0 : -1;
}
