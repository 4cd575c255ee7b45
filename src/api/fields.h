/* fields.h - what every route that reads a request (text, embeddings,
 * audio, vision, retrieval) does with each request field: no field is
 * silently ignored (issue 14).
 *
 * A field_table lists the fields one JSON object of one route may carry (the
 * body, one message, Ollama's options), or one multipart form's field names.
 * Each field is
 *   FIELD_USED       read by the route's parser: honoured by the local engine
 *                    and forwarded to upstreams (translated between dialects);
 *   FIELD_NO_EFFECT  accepted; ignoring it changes nothing the client can see
 *                    in the answer (`user`, performance hints);
 *   FIELD_REFUSED    refused (400 naming it, 422 on Simpleton's routes) when
 *                    present and not null, unless its value is one of `allow`
 *                    (a JSON array text of the values that mean "off", such as
 *                    [false] or [1]; numbers compare by value).
 * A field not in the table is refused as unknown (OpenAI: "Unrecognized
 * request argument supplied", as OpenAI does; Simpleton: 422 extra_forbidden,
 * as pydantic's extra=forbid), or ignored where the real API ignores it too
 * (Ollama's Go server skips unknown keys).
 *
 * Route handlers call fields_check (fields_check_form for a multipart form)
 * before parsing, so a refusal is the first problem reported. The tables
 * also go into /openapi.json (fields_describe). */
#ifndef SMP_FIELDS_H
#define SMP_FIELDS_H

#include <jansson.h>

typedef enum { FIELD_USED, FIELD_NO_EFFECT, FIELD_REFUSED } field_use;

typedef struct {
    const char *name;
    field_use use;
    const char *allow; /* FIELD_REFUSED: JSON array of accepted values, or NULL */
    const char *why;   /* FIELD_REFUSED: the message (the field is named before it);
                        * otherwise an optional note for the docs (why a field
                        * has no effect, when a field is read) */
} field_rule;

typedef enum {
    FIELDS_UNKNOWN_OPENAI,    /* refuse: "Unrecognized request argument supplied: x" */
    FIELDS_UNKNOWN_SIMPLETON, /* refuse: "Extra inputs are not permitted" (extra_forbidden) */
    FIELDS_UNKNOWN_IGNORE,    /* accept, as the real API does (Ollama) */
} fields_unknown;

typedef struct field_table {
    const char *what;          /* "body", "message", "options", "form" (multipart): for the docs */
    fields_unknown unknown;
    const field_rule *rules;   /* ends with {NULL} */
} field_table;

/* The tables, one per object shape. */
extern const field_table fields_openai_chat, fields_openai_message, fields_openai_completion, fields_openai_embed;
extern const field_table fields_ollama_generate, fields_ollama_chat, fields_ollama_message, fields_ollama_options,
    fields_ollama_embed, fields_ollama_embeddings;
extern const field_table fields_simpleton_generate, fields_simpleton_chat, fields_simpleton_message,
    fields_simpleton_embed;
extern const field_table fields_openai_transcription, fields_openai_translation, fields_audio_transcribe,
    fields_audio_translate, fields_audio_upload_transcribe, fields_audio_upload_translate;
extern const field_table fields_vision_analyze, fields_vision_caption, fields_vision_ocr, fields_vision_upload;
extern const field_table fields_rag_ingest, fields_rag_ingest_file, fields_rag_search, fields_rag_query;
extern const field_table fields_ollama_show;

/* Check every key of obj (a JSON object; anything else is left to the
 * parser) against t, recording each refusal on v under prefix + field name
 * (prefix "" for the body, "messages.3." for a message, "options."). */
struct valid;
void fields_check(struct valid *v, json_t *obj, const field_table *t, const char *prefix);
/* fields_check on obj[list_field][i] for every object in that array, with
 * prefix "<list_field>.<i>.". */
void fields_check_list(struct valid *v, json_t *obj, const char *list_field, const field_table *t);

/* fields_check for a multipart form: each part's name against t (a file part
 * counts as present; an empty text part as absent, as the routes read it). */
struct multipart;
void fields_check_form(struct valid *v, const struct multipart *m, const field_table *t);

/* The tables of a route template ("/v1/chat/completions"), as /openapi.json
 * publishes them under x-simpleton-fields:
 *   {fields: [{name, in: "body"|"message"|"options"|"form",
 *              treatment: "honoured"|"no-effect"|"refused",
 *              accepted_values: [...] (refused, when some value means "off"),
 *              note}],
 *    unknown_fields: {body: "refused"|"ignored, ...", ...}}
 * or NULL for a route with no table. New reference. */
json_t *fields_describe(const char *tmpl);

#endif
