/* tools.c - see tools.h. The prompt texts are the formats the model families
 * were trained on (Qwen's and Hermes' tool section, Meta's Llama 3.1 JSON
 * instruction, Mistral's control markers); the wording of those texts is part
 * of the format, so it is kept as the families' templates have it. */
#include "engine/tools.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/errors.h"
#include "engine/json_schema.h"

tool_style tools_style(chat_family f) {
    switch (f) {
    case CHAT_FAMILY_LLAMA3: return TOOL_STYLE_LLAMA3;
    case CHAT_FAMILY_MISTRAL: return TOOL_STYLE_MISTRAL;
    default: return TOOL_STYLE_HERMES;
    }
}

const char *tools_trigger(tool_style st, bool *at_start) {
    *at_start = st == TOOL_STYLE_LLAMA3;
    switch (st) {
    case TOOL_STYLE_LLAMA3: return "{";
    case TOOL_STYLE_MISTRAL: return "[TOOL_CALLS]";
    default: return "<tool_call>";
    }
}

/* ---- rendering ------------------------------------------------------------ */

/* Strings made while rendering, freed together. */
typedef struct {
    char **s;
    int n, cap;
    bool nomem;
} strpool;

static const char *pool_take(strpool *p, buf *b) {
    if (b->len == 0 && !b->data && buf_puts(b, "")) p->nomem = true;
    if (p->n == p->cap) {
        int nc = p->cap ? p->cap * 2 : 16;
        char **ns = smp_realloc(p->s, (size_t)nc * sizeof *ns);
        if (!ns) {
            p->nomem = true;
            buf_free(b);
            return "";
        }
        p->s = ns;
        p->cap = nc;
    }
    char *s = buf_detach(b, NULL);
    if (!s) {
        p->nomem = true;
        return "";
    }
    p->s[p->n++] = s;
    return s;
}

static void pool_free(strpool *p) {
    for (int i = 0; i < p->n; i++) smp_free(p->s[i]);
    smp_free(p->s);
}

/* {"type": "function", "function": {"name", "description", "parameters"}} */
static int put_tool_json(buf *b, const tool_def *t, size_t indent) {
    json_t *fn = json_pack("{s:s}", "name", t->name);
    if (!fn) return -1;
    if (t->description) json_object_set_new(fn, "description", json_string(t->description));
    json_object_set_new(fn, "parameters", t->parameters ? json_incref((json_t *)t->parameters)
                                                        : json_pack("{s:s}", "type", "object"));
    json_t *o = json_pack("{s:s,s:o}", "type", "function", "function", fn);
    char *s = o ? json_dumps(o, indent ? JSON_INDENT(indent) : 0) : NULL;
    json_decref(o);
    int rc = s ? buf_puts(b, s) : -1;
    json_text_free(s);
    return rc;
}

/* A call's arguments as written in a prompt: the JSON text, or {} if empty. */
static const char *args_of(const tool_call *c) { return c->arguments && *c->arguments ? c->arguments : "{}"; }

static bool is_role(const tool_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }

static void hermes_tools(buf *b, const tool_def *tools, int n) {
    buf_puts(b, "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
                "You are provided with function signatures within <tools></tools> XML tags:\n<tools>");
    for (int i = 0; i < n; i++) {
        buf_putc(b, '\n');
        put_tool_json(b, &tools[i], 0);
    }
    buf_puts(b, "\n</tools>\n\nFor each function call, return a json object with function name and arguments "
                "within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
                "<args-json-object>}\n</tool_call>");
}

static void llama3_tools(buf *b, const tool_def *tools, int n) {
    buf_puts(b, "Given the following functions, please respond with a JSON for a function call with its proper "
                "arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function name, "
                "\"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n");
    for (int i = 0; i < n; i++) {
        put_tool_json(b, &tools[i], 4);
        buf_puts(b, "\n\n");
    }
}

static void put_call(buf *b, tool_style st, const tool_call *c) {
    buf_puts(b, "{\"name\": \"");
    buf_puts(b, c->name ? c->name : "");
    buf_puts(b, st == TOOL_STYLE_LLAMA3 ? "\", \"parameters\": " : "\", \"arguments\": ");
    buf_puts(b, args_of(c));
    if (st == TOOL_STYLE_MISTRAL && c->id) {
        buf_puts(b, ", \"id\": \"");
        buf_puts(b, c->id);
        buf_putc(b, '"');
    }
    buf_putc(b, '}');
}

/* An assistant message with calls, in the style's words. */
static const char *assistant_text(strpool *p, tool_style st, const tool_msg *m) {
    buf b;
    buf_init(&b, 0);
    const char *text = m->content ? m->content : "";
    if (st == TOOL_STYLE_MISTRAL) {
        if (*text) buf_puts(&b, text);
        buf_puts(&b, "[TOOL_CALLS] [");
        for (int k = 0; k < m->n_calls; k++) {
            if (k) buf_puts(&b, ", ");
            put_call(&b, st, &m->calls[k]);
        }
        buf_putc(&b, ']');
        return pool_take(p, &b);
    }
    buf_puts(&b, text);
    for (int k = 0; k < m->n_calls; k++) {
        if (*text || k) buf_putc(&b, '\n');
        if (st == TOOL_STYLE_HERMES) buf_puts(&b, "<tool_call>\n");
        put_call(&b, st, &m->calls[k]);
        if (st == TOOL_STYLE_HERMES) buf_puts(&b, "\n</tool_call>");
    }
    return pool_take(p, &b);
}

int tools_render(chat_family f, const tool_def *tools, int n_tools, const tool_msg *msgs, int n, bool call_now,
                 const char *bos_text, const char *eos_text, buf *out, char *err, size_t errlen) {
    tool_style st = tools_style(f);
    chat_msg *cm = smp_calloc((size_t)n + 1, sizeof *cm);
    if (!cm) return -SMP_E_NOMEM;
    strpool p = {0};
    int k = 0;
    buf b;
    /* Where the tool list goes. */
    if (n_tools > 0 && st == TOOL_STYLE_HERMES) {
        buf_init(&b, 0);
        bool has_sys = n > 0 && is_role(&msgs[0], "system");
        if (has_sys && msgs[0].content && *msgs[0].content) {
            buf_puts(&b, msgs[0].content);
            buf_puts(&b, "\n\n");
        }
        hermes_tools(&b, tools, n_tools);
        cm[k++] = (chat_msg){"system", pool_take(&p, &b), NULL};
        if (has_sys) msgs++, n--;
    }
    int first_user = -1, last_user = -1;
    for (int i = 0; i < n; i++)
        if (is_role(&msgs[i], "user")) {
            if (first_user < 0) first_user = i;
            last_user = i;
        }
    for (int i = 0; i < n; i++) {
        const tool_msg *m = &msgs[i];
        chat_msg c = {m->role, m->content, NULL};
        if (is_role(m, "assistant") && m->n_calls > 0) {
            c.content = assistant_text(&p, st, m);
        } else if (is_role(m, "tool") && st == TOOL_STYLE_HERMES) {
            /* Consecutive results share one user turn. */
            buf_init(&b, 0);
            for (; i < n && is_role(&msgs[i], "tool"); i++) {
                if (b.len) buf_putc(&b, '\n');
                buf_puts(&b, "<tool_response>\n");
                buf_puts(&b, msgs[i].content ? msgs[i].content : "");
                buf_puts(&b, "\n</tool_response>");
            }
            i--;
            c = (chat_msg){"user", pool_take(&p, &b), NULL};
        } else if (is_role(m, "tool") && st == TOOL_STYLE_MISTRAL) {
            buf_init(&b, 0);
            json_t *s = json_string(m->content ? m->content : "");
            char *q = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
            buf_puts(&b, "[TOOL_RESULTS] {\"content\": ");
            buf_puts(&b, q ? q : "\"\"");
            if (m->tool_call_id) {
                buf_puts(&b, ", \"call_id\": \"");
                buf_puts(&b, m->tool_call_id);
                buf_putc(&b, '"');
            }
            buf_puts(&b, "}[/TOOL_RESULTS]");
            json_text_free(q);
            json_decref(s);
            c.content = pool_take(&p, &b);
        } else if (n_tools > 0 && st == TOOL_STYLE_LLAMA3 && i == first_user) {
            buf_init(&b, 0);
            llama3_tools(&b, tools, n_tools);
            buf_puts(&b, m->content ? m->content : "");
            c.content = pool_take(&p, &b);
        }
        if (n_tools > 0 && st == TOOL_STYLE_MISTRAL && i == last_user) {
            buf_init(&b, 0);
            buf_puts(&b, "[AVAILABLE_TOOLS] [");
            for (int t = 0; t < n_tools; t++) {
                if (t) buf_puts(&b, ", ");
                put_tool_json(&b, &tools[t], 0);
            }
            buf_puts(&b, "][/AVAILABLE_TOOLS]");
            c.prefix = pool_take(&p, &b);
        }
        cm[k++] = c;
    }
    int rc = p.nomem ? -SMP_E_NOMEM : chat_render(f, cm, k, true, bos_text, eos_text, out, err, errlen);
    if (rc == 0 && call_now) {
        bool at_start;
        if (buf_puts(out, tools_trigger(st, &at_start))) rc = -SMP_E_TOO_LARGE;
    }
    pool_free(&p);
    smp_free(cm);
    return rc;
}

/* ---- the call grammar ----------------------------------------------------- */

static void gbnf_string_lit(buf *b, const char *s) {
    buf_puts(b, "\"\\\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') buf_putc(b, '\\');
        buf_putc(b, *s);
    }
    buf_puts(b, "\\\"\"");
}

int tools_grammar(tool_style st, const tool_def *tools, int n_tools, const char *only, bool parallel,
                  grammar **out, char *err, size_t errlen) {
    *out = NULL;
    const json_t **schemas = smp_calloc((size_t)n_tools + 1, sizeof *schemas);
    char **paths = smp_calloc((size_t)n_tools + 1, sizeof *paths);
    json_t *any = json_pack("{s:s}", "type", "object");
    char *rules = NULL;
    buf g;
    buf_init(&g, 0);
    int rc = -SMP_E_NOMEM;
    if (!schemas || !paths || !any) goto done;
    int n = 0;
    for (int i = 0; i < n_tools; i++) {
        if (only && strcmp(tools[i].name, only)) continue;
        char path[64];
        snprintf(path, sizeof path, "tools.%d.function.parameters", i);
        if (!(paths[n] = smp_strdup(path))) goto done;
        schemas[n++] = tools[i].parameters ? tools[i].parameters : any;
    }
    if (n == 0) {
        snprintf(err, errlen, "tool_choice: no tool named '%.64s' is declared in tools", only ? only : "");
        rc = -SMP_E_VALIDATION;
        goto done;
    }
    rc = json_schema_rules(schemas, n, (const char *const *)paths, &rules, err, errlen);
    if (rc) goto done;
    const char *key = st == TOOL_STYLE_LLAMA3 ? "\\\"parameters\\\"" : "\\\"arguments\\\"";
    int more = parallel && st != TOOL_STYLE_LLAMA3 ? TOOLS_MAX_CALLS - 1 : 0;
    switch (st) {
    case TOOL_STYLE_HERMES:
        buf_puts(&g, "root ::= tc-sp tc-call tc-sp \"</tool_call>\"");
        if (more) buf_printf(&g, " ( tc-sp \"<tool_call>\" tc-sp tc-call tc-sp \"</tool_call>\" ){0,%d}", more);
        buf_puts(&g, "\n");
        break;
    case TOOL_STYLE_MISTRAL:
        buf_puts(&g, "root ::= tc-sp \"[\" tc-sp tc-call");
        if (more) buf_printf(&g, " ( tc-sp \",\" tc-sp tc-call ){0,%d}", more);
        buf_puts(&g, " tc-sp \"]\"\n");
        break;
    case TOOL_STYLE_LLAMA3: /* the trigger was the opening brace */
        buf_puts(&g, "root ::= tc-sp tc-body\n");
        break;
    }
    buf_puts(&g, "tc-sp ::= [ \\n]{0,2}\ntc-call ::= \"{\" tc-sp tc-body\n");
    buf_puts(&g, "tc-body ::= \"\\\"name\\\"\" tc-sp \":\" tc-sp (");
    for (int i = 0, k = 0; i < n_tools; i++) {
        if (only && strcmp(tools[i].name, only)) continue;
        buf_printf(&g, "%s tc-t%d", k ? " |" : "", k);
        k++;
    }
    buf_puts(&g, " ) tc-sp \"}\"\n");
    for (int i = 0, k = 0; i < n_tools; i++) {
        if (only && strcmp(tools[i].name, only)) continue;
        buf_printf(&g, "tc-t%d ::= ", k);
        gbnf_string_lit(&g, tools[i].name);
        buf_printf(&g, " tc-sp \",\" tc-sp \"%s\" tc-sp \":\" tc-sp schema%d\n", key, k);
        k++;
    }
    buf_puts(&g, rules);
    rc = g.data ? grammar_parse(g.data, g.len, out, err, errlen) : -SMP_E_NOMEM;
done:
    if (paths)
        for (int i = 0; i < n_tools; i++) smp_free(paths[i]);
    smp_free(paths);
    smp_free(schemas);
    smp_free(rules);
    json_decref(any);
    buf_free(&g);
    return rc;
}

/* ---- reading calls back ----------------------------------------------------- */

int tools_scan(tool_style st, const char *s, size_t len, tools_scanned *calls, int max) {
    /* Calls are the objects at depth `level` (inside Mistral's list: 1). In
     * a call, members are at depth level + 1; a member's value starts after
     * its colon. */
    int level = st == TOOL_STYLE_MISTRAL ? 1 : 0;
    int depth = 0, n = 0;
    bool in_str = false, esc = false;
    size_t str_start = 0;
    enum { K_NONE, K_NAME, K_ARGS, K_OTHER } key = K_NONE, value_of = K_NONE;
    bool want_value = false; /* after a member's colon */
    tools_scanned *cur = NULL;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (esc) esc = false;
            else if (ch == '\\') esc = true;
            else if (ch == '"') {
                in_str = false;
                if (cur && depth == level + 1) {
                    if (value_of == K_NAME && !cur->has_name) {
                        cur->name_off = str_start;
                        cur->name_len = i - str_start;
                        cur->has_name = true;
                    } else if (value_of == K_ARGS && cur->args_started && !cur->args_done) {
                        cur->args_len = i + 1 - cur->args_off;
                        cur->args_done = true;
                    } else if (value_of == K_NONE) { /* a key */
                        size_t kl = i - str_start;
                        const char *k = s + str_start;
                        key = kl == 4 && !memcmp(k, "name", 4) ? K_NAME
                              : (kl == 9 && !memcmp(k, "arguments", 9)) || (kl == 10 && !memcmp(k, "parameters", 10))
                                  ? K_ARGS
                                  : K_OTHER;
                    }
                }
            }
            continue;
        }
        if (cur && want_value && ch != ' ' && ch != '\n' && ch != '\t' && ch != '\r') {
            want_value = false;
            value_of = key;
            if (value_of == K_ARGS && !cur->args_started) {
                cur->args_started = true;
                cur->args_off = i;
            }
        }
        switch (ch) {
        case '"':
            in_str = true;
            str_start = i + 1;
            break;
        case '{':
        case '[':
            if (depth == level && ch == '{') {
                if (n == max) return n;
                cur = &calls[n++];
                memset(cur, 0, sizeof *cur);
                key = value_of = K_NONE;
            }
            depth++;
            break;
        case '}':
        case ']':
            depth--;
            if (cur && depth == level + 1 && value_of == K_ARGS && cur->args_started && !cur->args_done) {
                cur->args_len = i + 1 - cur->args_off;
                cur->args_done = true;
            }
            if (cur && depth == level) {
                if (value_of == K_ARGS && !cur->args_done && cur->args_started) { /* a bare value before } */
                    cur->args_len = i - cur->args_off;
                    cur->args_done = true;
                }
                cur->done = true;
                cur = NULL;
            }
            if (depth < 0) depth = 0;
            break;
        case ':':
            if (cur && depth == level + 1) want_value = true;
            break;
        case ',':
            if (cur && depth == level + 1) {
                if (value_of == K_ARGS && cur->args_started && !cur->args_done) {
                    cur->args_len = i - cur->args_off;
                    cur->args_done = true;
                }
                key = value_of = K_NONE;
            }
            break;
        default: break;
        }
    }
    /* What has arrived of an unfinished arguments value. */
    if (cur && cur->args_started && !cur->args_done) cur->args_len = len - cur->args_off;
    return n;
}
