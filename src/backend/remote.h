/* remote.h - what the two remote backends (ollama.c, openai.c) share when
 * they translate tool calls and log probabilities between an upstream's
 * dialect and backend.h's request and result.
 *
 * Log-probability entries are always in the result's format (backend.h):
 * {token, logprob, bytes:[0..255], top_logprobs:[{token, logprob, bytes}]}.
 * OpenAI's chat answer and Ollama's answers already use that shape, but a
 * server may leave out bytes (they are then the token's UTF-8 bytes) or
 * top_logprobs (then []); remote_logprob_entries fills those in and drops
 * what does not belong. */
#ifndef SMP_REMOTE_H
#define SMP_REMOTE_H

#include <jansson.h>
#include <stdbool.h>

#include "backend/backend.h"

/* [{type:"function", function:{name, description?, parameters?, strict?}}]
 * for req's tools (a new reference; NULL when out of memory). strict is sent
 * only when with_strict and the tool asks for it. */
json_t *remote_tools_json(const backend_gen_req *req, bool with_strict);

/* One normalized entry: bytes NULL (or not a list of 0..255) means the
 * token's own UTF-8 bytes; top (borrowed) is a list in the entries' shape
 * or NULL. A new reference, or NULL when out of memory. */
json_t *remote_logprob_entry(const char *token, double logprob, json_t *bytes, json_t *top);

/* A list of entries in the result's shape, normalized (items that are not
 * objects with a string token are skipped). A new reference (maybe empty),
 * or NULL when out of memory. */
json_t *remote_logprob_entries(json_t *list);

/* The callbacks of a generation, set only while streaming (a caller that
 * wants the whole answer gets everything in the result). */
typedef int (*remote_logprobs_fn)(void *ud, const json_t *entries);
typedef int (*remote_tool_fn)(void *ud, const backend_tool_event *e);

/* Hand entries (a list, stolen) to the caller: on_logprobs first (if set
 * and there are any), then appended to out->logprobs. Returns 0, 1 when
 * on_logprobs asked to stop, or -SMP_E_NOMEM. */
int remote_take_logprobs(remote_logprobs_fn on_logprobs, void *ud, json_t *entries, backend_gen_result *out);

/* A tool call that arrived whole (Ollama sends each call in one piece):
 * appended to out, and when on_tool is set sent as its three events
 * (id and name, the arguments, done) with index = its place in out. id
 * NULL or "": one is made up. Returns 0, 1 when on_tool asked to stop, or
 * -SMP_E_NOMEM. */
int remote_whole_call(remote_tool_fn on_tool, void *ud, backend_gen_result *out, const char *id,
                      const char *name, const char *arguments);

/* done_reason once the answer is complete: "tool_calls" when out holds
 * calls (unless the upstream said it hit the length limit), else "length"
 * or "stop" from the upstream's own reason (may be NULL). */
const char *remote_done_reason(const backend_gen_result *out, const char *upstream_reason);

#endif
