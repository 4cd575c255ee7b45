/* json_schema.h - JSON Schema to GBNF, for constrained decoding (grammar.h).
 *
 * Supported (what OpenAI's strict mode and Ollama's "format" accept):
 *   type            object, array, string, number, integer, boolean, null, or
 *                   a list of them; without type, the type is inferred from
 *                   the keywords (properties -> object, items -> array, ...)
 *                   and {} or true means any JSON value
 *   properties, required, additionalProperties
 *                   properties are written in the schema's order; optional ones
 *                   may be left out. Only the listed properties are generated,
 *                   so additionalProperties true or a schema is accepted (the
 *                   output is still valid); an object schema without
 *                   properties gives any object whose values follow
 *                   additionalProperties (false: only {}).
 *   enum, const     the values as jansson writes them compactly
 *   anyOf           (beside annotations only)
 *   items, minItems, maxItems
 *   $ref, $defs, definitions   local JSON pointers ("#", "#/$defs/x",
 *                   "#/definitions/x", any "#/..." path); recursion is fine
 *   minLength, maxLength       in code points (an escape is one)
 *   pattern         the regex subset below
 *   format          date, time, date-time, uuid, email
 *   minimum, maximum, exclusiveMinimum, exclusiveMaximum
 *                   integers: any bounds within +-1e15 (exact digit-range
 *                   grammar); numbers: integer-valued minimum and maximum
 *                   (a number with a bound has no exponent); other number
 *                   bounds are refused
 *   title, description, default, examples, $schema, $id, $comment,
 *   deprecated, readOnly, writeOnly   annotations, no effect
 * Any other keyword is an error naming it and its place:
 *   "schema.properties.age: keyword 'multipleOf' is not supported",
 * wherever it stands, even where generation never looks (a $defs entry
 * nothing refers to, items beside type "object"); the values of supported
 * keywords are checked where they are used. A $ref target's place is its
 * pointer under the root's name ("schema.$defs.node", or for a tool
 * "tools.0.function.parameters.$defs.node").
 *
 * Regex subset for pattern: literal characters, escapes \. \\ \/ \- and the
 * other metacharacters, \d \w \s \D \W \S \n \t \r, classes [a-z0-9_] and
 * [^...], '.', groups (...) and (?:...), alternation |, quantifiers * + ?
 * {m} {m,} {m,n}; ^ only at the very start and $ only at the very end. An
 * unanchored side may have any text there (JSON Schema's search semantics).
 * Not supported (error): backreferences, lookaround, lazy quantifiers, \b,
 * named groups. Control characters other than \n \t \r cannot be produced.
 *
 * Output JSON: between tokens at most a newline and 20 spaces or tabs, or
 * one space (pretty-printed and compact JSON both fit; a small model cannot
 * loop on whitespace); numbers have at most 16 digits before and after the
 * point and 3 in the exponent; \u escapes never name surrogates (characters
 * outside the BMP are written as UTF-8).
 *
 * A short budget: generation (gen_run) closes the document in time rather
 * than cutting it, as long as max_tokens is at least the shortest valid
 * document's length in bytes (e.g. {"name":"","age":0} for two required
 * properties); the answer then parses, validates and ends with "stop".
 *
 * json_schema_compile caches compiled grammars by the schema's compact text
 * (JSON_SCHEMA_CACHE entries, least recently used goes first); it is
 * thread-safe. Returned grammars are references (grammar_free). */
#ifndef SMP_JSON_SCHEMA_H
#define SMP_JSON_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

#include "engine/grammar.h"

#define JSON_SCHEMA_CACHE 32
#define JSON_SCHEMA_MAX_DEPTH 64 /* nesting of subschemas */

/* GBNF text for the schema (owned: smp_free). -SMP_E_VALIDATION with the
 * reason in err, or -SMP_E_NOMEM. */
int json_schema_to_gbnf(const json_t *schema, char **gbnf, char *err, size_t errlen);
/* Several schemas in one GBNF text with no root: schema<i> ::= ... is the
 * rule for schemas[i] (paths[i] names it in errors, e.g. "tools.0.function
 * .parameters"); the caller adds a root and may use the rule ws (see the
 * output notes above) only if it writes it itself. */
int json_schema_rules(const json_t *const *schemas, int n, const char *const *paths, char **gbnf, char *err,
                      size_t errlen);
/* A compiled grammar for the schema (cached). */
int json_schema_compile(const json_t *schema, grammar **out, char *err, size_t errlen);
/* "json_object" mode: any JSON object. */
int json_schema_any_object(grammar **out, char *err, size_t errlen);
/* Free text from json_dumps through jansson's allocator (the server points
 * it at smp_malloc; tests may leave it at the C library's). */
void json_text_free(char *p);
/* Drop every cached grammar (tests, shutdown). */
void json_schema_cache_clear(void);

#endif
