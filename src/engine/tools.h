/* tools.h - tool (function) calling for the local engine: the prompt that
 * shows a model its tools and past calls, the grammar that keeps a call
 * valid, and reading calls back out of the generated text.
 *
 * Each chat family is shown tools the way its models were trained, in one of
 * three styles (tools_style):
 *
 *   HERMES   CHATML (Qwen2.5, Qwen3, Hermes) and, as the documented fallback,
 *            every family with no tool format of its own (GEMMA, PHI3,
 *            LLAMA2, NONE: the built-in stories260K). The system message
 *            gets a "# Tools" section listing each tool's JSON inside
 *            <tools></tools> and asking for calls as
 *              <tool_call>\n{"name": <name>, "arguments": <object>}\n</tool_call>
 *            Past calls are written that way after the assistant's text;
 *            tool results become a user turn of
 *              <tool_response>\n{content}\n</tool_response>
 *            blocks (consecutive results share one turn).
 *   LLAMA3   Llama 3.1+ JSON calls: the first user message starts with the
 *            instruction and each tool's JSON (indented by 4); a call is the
 *            whole answer, {"name": <name>, "parameters": <object>}; results
 *            are "ipython" turns.
 *   MISTRAL  [AVAILABLE_TOOLS] [<tools>][/AVAILABLE_TOOLS] before the last
 *            user turn; calls as [TOOL_CALLS] [{"name", "arguments", "id"}]
 *            ending the assistant turn; results as
 *            [TOOL_RESULTS] {"content": ..., "call_id": ...}[/TOOL_RESULTS].
 *
 * Generation: a style's trigger ("<tool_call>", "{" at the very start,
 * "[TOOL_CALLS]") opens the call section; the section's grammar
 * (tools_grammar) constrains everything after it to valid calls of declared
 * tools with arguments valid against their parameter schemas. With tool
 * choice "auto" the text is free until the trigger appears (gen_params'
 * grammar_trigger); with "required" or a named tool the trigger is written
 * at the end of the prompt (tools_render's call_now) and the grammar holds
 * from the first token, so even a model that has never seen tools returns a
 * valid call. tools_scan reads calls out of a section as it grows, for
 * streaming, and at the end. */
#ifndef SMP_TOOLS_H
#define SMP_TOOLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"
#include "engine/chat.h"
#include "engine/grammar.h"

#define TOOLS_MAX_CALLS 8 /* calls in one answer when parallel calls are allowed */

typedef struct {
    const char *name;
    const char *description;  /* may be NULL */
    const json_t *parameters; /* JSON Schema; NULL: any object */
} tool_def;

typedef struct {
    const char *id;
    const char *name;
    const char *arguments;    /* JSON text of an object */
} tool_call;

/* A conversation message with what tool calling adds to it. */
typedef struct {
    const char *role;         /* system | user | assistant | tool */
    const char *content;      /* NULL counts as "" */
    const tool_call *calls;   /* assistant */
    int n_calls;
    const char *tool_call_id; /* tool (may be NULL) */
    const char *tool_name;    /* tool (may be NULL) */
} tool_msg;

typedef enum { TOOL_STYLE_HERMES, TOOL_STYLE_LLAMA3, TOOL_STYLE_MISTRAL } tool_style;

tool_style tools_style(chat_family f);
/* The text that opens a call section; *at_start: only at the start of the
 * answer (after whitespace). */
const char *tools_trigger(tool_style st, bool *at_start);

/* Render the prompt (chat_render's rules: no leading BOS, generation prompt
 * added). tools[0..n_tools) are shown to the model (n_tools 0: none, e.g.
 * tool choice "none"; past calls and results are still written). call_now:
 * end the prompt with the trigger, so the answer is the call section. */
int tools_render(chat_family f, const tool_def *tools, int n_tools, const tool_msg *msgs, int n, bool call_now,
                 const char *bos_text, const char *eos_text, buf *out, char *err, size_t errlen);

/* The grammar of a call section (the text after the trigger): one call, or
 * up to TOOLS_MAX_CALLS when parallel, of any tool or only of `only`. Errors
 * (a parameter schema the engine cannot enforce) name the tool:
 * "tools.2.function.parameters.properties.x: ...". */
int tools_grammar(tool_style st, const tool_def *tools, int n_tools, const char *only, bool parallel,
                  grammar **out, char *err, size_t errlen);

/* What is known of one call in a (possibly incomplete) section. Offsets are
 * into the scanned text; name is the raw text between its quotes. */
typedef struct {
    size_t name_off, name_len;
    bool has_name;
    size_t args_off, args_len; /* the arguments value's text so far */
    bool args_started, args_done;
    bool done;                 /* the call's object is closed */
} tools_scanned;

/* Scan a section (LLAMA3: pass "{" followed by the section). Returns the
 * number of calls begun (at most max). */
int tools_scan(tool_style st, const char *text, size_t len, tools_scanned *calls, int max);

#endif
