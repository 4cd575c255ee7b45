/* chat.c - chat template detection and rendering; the formats are listed in
 * chat.h. One render function per family, all writing through a small
 * emitter that remembers the first failure, so each family's code reads like
 * the format it writes. Roles are checked once up front; the family code then
 * only has to refuse roles it has no place for. No allocations. */
#include "engine/chat.h"

#include <stdio.h>
#include <string.h>

#include "core/errors.h"

typedef enum { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL } chat_role;

static const char *const role_names[] = {"system", "user", "assistant", "tool"};

/* The role's enum value, or -1 for anything else. */
static int role_id(const char *role) {
    for (int k = 0; k < 4 && role; k++)
        if (!strcmp(role, role_names[k])) return k;
    return -1;
}

typedef struct {
    buf *out;
    int rc;
    char *err;
    size_t errlen;
} emitter;

static void put_n(emitter *e, const char *s, size_t n) {
    if (e->rc == 0 && buf_append(e->out, s, n) != 0) e->rc = -SMP_E_TOO_LARGE;
}

static void put(emitter *e, const char *s) { put_n(e, s, strlen(s)); }

static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static size_t rtrim_len(const char *s, size_t n) {
    while (n && is_space(s[n - 1])) n--;
    return n;
}

/* Write s without its leading and trailing ASCII whitespace (Jinja's trim). */
static void put_trim(emitter *e, const char *s) {
    while (is_space(*s)) s++;
    put_n(e, s, rtrim_len(s, strlen(s)));
}

static const char *text_of(const chat_msg *m) { return m->content ? m->content : ""; }

static void refuse_tool(emitter *e, const char *family, int i) {
    if (e->rc) return;
    snprintf(e->err, e->errlen, "messages[%d]: role 'tool' is not supported by the %s chat template",
             i, family);
    e->rc = -SMP_E_VALIDATION;
}

/* ---- families with a turn per message ------------------------------------ */

static void put_prefix(emitter *e, const chat_msg *m) {
    if (m->prefix) put(e, m->prefix);
}

static void render_chatml(emitter *e, const chat_msg *m, int n, bool gen) {
    for (int i = 0; i < n; i++) {
        put_prefix(e, &m[i]);
        put(e, "<|im_start|>");
        put(e, m[i].role);
        put(e, "\n");
        put(e, text_of(&m[i]));
        put(e, "<|im_end|>\n");
    }
    if (gen) put(e, "<|im_start|>assistant\n");
}

static void render_llama3(emitter *e, const chat_msg *m, int n, bool gen) {
    for (int i = 0; i < n; i++) {
        put_prefix(e, &m[i]);
        put(e, "<|start_header_id|>");
        put(e, role_id(m[i].role) == ROLE_TOOL ? "ipython" : m[i].role);
        put(e, "<|end_header_id|>\n\n");
        put_trim(e, text_of(&m[i]));
        put(e, "<|eot_id|>");
    }
    if (gen) put(e, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

static void render_phi3(emitter *e, const chat_msg *m, int n, bool gen) {
    for (int i = 0; i < n; i++) {
        if (role_id(m[i].role) == ROLE_TOOL) refuse_tool(e, "phi3", i);
        put_prefix(e, &m[i]);
        put(e, "<|");
        put(e, m[i].role);
        put(e, "|>\n");
        put(e, text_of(&m[i]));
        put(e, "<|end|>\n");
    }
    if (gen) put(e, "<|assistant|>\n");
}

static void render_none(emitter *e, const chat_msg *m, int n, bool gen) {
    static const char *const label[] = {"System: ", "User: ", "Assistant: ", "Tool: "};
    for (int i = 0; i < n; i++) {
        put_prefix(e, &m[i]);
        put(e, label[role_id(m[i].role)]);
        put(e, text_of(&m[i]));
        put(e, "\n");
    }
    if (gen) put(e, "Assistant:");
}

/* ---- families without a system turn ---------------------------------------
 * LLAMA2, MISTRAL and GEMMA carry system text into the next user turn; several
 * system messages in a row are joined by "\n\n". A system message with no user
 * message after it is still rendered, as a user turn with empty text. */

#define MAX_PENDING_SYS 8

typedef struct {
    const char *text[MAX_PENDING_SYS];
    int n;
} pending_sys;

static void sys_add(emitter *e, pending_sys *ps, const char *text) {
    if (ps->n == MAX_PENDING_SYS) {
        if (!e->rc) {
            snprintf(e->err, e->errlen, "more than %d system messages in a row", MAX_PENDING_SYS);
            e->rc = -SMP_E_VALIDATION;
        }
        return;
    }
    ps->text[ps->n++] = text;
}

static void sys_put(emitter *e, const pending_sys *ps) {
    for (int k = 0; k < ps->n; k++) {
        if (k) put(e, "\n\n");
        put(e, ps->text[k]);
    }
}

/* A family's user and assistant turn writers; ps is emptied by the caller. */
typedef struct {
    const char *name;
    void (*user)(emitter *e, const pending_sys *ps, const char *text, bool first, const char *bos);
    void (*assistant)(emitter *e, const char *text, const char *eos);
} merged_family;

/* Meta's Llama 2 template: the user turn is
 *   B[INST] strip(<<SYS>>\n{system}\n<</SYS>>\n\n{user}) [/INST]
 * (no B before the first turn: the tokenizer adds that one). strip() applies
 * to the joined text, so with a system block only the user text's trailing
 * whitespace goes, and with an empty user text the "\n\n" goes too. */
static void llama2_user(emitter *e, const pending_sys *ps, const char *text, bool first,
                        const char *bos) {
    if (!first) put(e, bos);
    put(e, "[INST] ");
    if (ps->n) {
        put(e, "<<SYS>>\n");
        sys_put(e, ps);
        put(e, "\n<</SYS>>");
        size_t n = rtrim_len(text, strlen(text));
        if (n) {
            put(e, "\n\n");
            put_n(e, text, n);
        }
    } else {
        put_trim(e, text);
    }
    put(e, " [/INST]");
}

static void llama2_assistant(emitter *e, const char *text, const char *eos) {
    put(e, " ");
    put_trim(e, text);
    put(e, " ");
    put(e, eos);
}

static void mistral_user(emitter *e, const pending_sys *ps, const char *text, bool first,
                         const char *bos) {
    put(e, "[INST] ");
    if (ps->n) {
        sys_put(e, ps);
        put(e, "\n\n");
    }
    put(e, text);
    put(e, " [/INST]");
}

static void mistral_assistant(emitter *e, const char *text, const char *eos) {
    put(e, text);
    put(e, eos);
}

static void gemma_user(emitter *e, const pending_sys *ps, const char *text, bool first,
                       const char *bos) {
    put(e, "<start_of_turn>user\n");
    if (ps->n) {
        sys_put(e, ps);
        put(e, "\n\n");
    }
    put_trim(e, text);
    put(e, "<end_of_turn>\n");
}

static void gemma_assistant(emitter *e, const char *text, const char *eos) {
    put(e, "<start_of_turn>model\n");
    put_trim(e, text);
    put(e, "<end_of_turn>\n");
}

static const merged_family fam_llama2 = {"llama2", llama2_user, llama2_assistant};
static const merged_family fam_mistral = {"mistral", mistral_user, mistral_assistant};
static const merged_family fam_gemma = {"gemma", gemma_user, gemma_assistant};

static void render_merged(emitter *e, const merged_family *fam, const chat_msg *m, int n,
                          const char *bos, const char *eos) {
    pending_sys ps = {.n = 0};
    bool first = true;
    for (int i = 0; i < n; i++) {
        if ((chat_role)role_id(m[i].role) != ROLE_SYSTEM) put_prefix(e, &m[i]);
        switch ((chat_role)role_id(m[i].role)) {
        case ROLE_SYSTEM:
            sys_add(e, &ps, text_of(&m[i]));
            continue;
        case ROLE_USER:
            fam->user(e, &ps, text_of(&m[i]), first, bos);
            ps.n = 0;
            break;
        case ROLE_ASSISTANT:
            fam->assistant(e, text_of(&m[i]), eos);
            break;
        case ROLE_TOOL:
            if (fam == &fam_mistral) put(e, text_of(&m[i])); /* [TOOL_RESULTS] ... written by tools.c */
            else refuse_tool(e, fam->name, i);
            break;
        }
        first = false;
    }
    if (ps.n) fam->user(e, &ps, "", first, bos);
}

/* ---- public ------------------------------------------------------------- */

static const char *const family_names[CHAT_FAMILY__COUNT] = {
    [CHAT_FAMILY_NONE] = "none",       [CHAT_FAMILY_CHATML] = "chatml",
    [CHAT_FAMILY_LLAMA2] = "llama2",   [CHAT_FAMILY_LLAMA3] = "llama3",
    [CHAT_FAMILY_MISTRAL] = "mistral", [CHAT_FAMILY_GEMMA] = "gemma",
    [CHAT_FAMILY_PHI3] = "phi3",
};

const char *chat_family_name(chat_family f) {
    return (unsigned)f < CHAT_FAMILY__COUNT ? family_names[f] : "none";
}

chat_family chat_detect(const char *t) {
    if (!t || !*t) return CHAT_FAMILY_NONE;
    for (int f = 0; f < CHAT_FAMILY__COUNT; f++)
        if (!strcmp(t, family_names[f])) return (chat_family)f;
    /* Order matters: Llama 2 templates are the [INST] ones with <<SYS>>;
     * the markers below never appear in ChatML or [INST] templates. */
    if (strstr(t, "<|im_start|>")) return CHAT_FAMILY_CHATML;
    if (strstr(t, "[INST]")) return strstr(t, "<<SYS>>") ? CHAT_FAMILY_LLAMA2 : CHAT_FAMILY_MISTRAL;
    if (strstr(t, "<|start_header_id|>")) return CHAT_FAMILY_LLAMA3;
    if (strstr(t, "<start_of_turn>")) return CHAT_FAMILY_GEMMA;
    if (strstr(t, "<|end|>") && (strstr(t, "<|user|>") || strstr(t, "<|assistant|>")))
        return CHAT_FAMILY_PHI3;
    return CHAT_FAMILY_NONE;
}

int chat_render(chat_family f, const chat_msg *msgs, int n, bool gen, const char *bos_text,
                const char *eos_text, buf *out, char *err, size_t errlen) {
    char dummy[1];
    if (!err || errlen == 0) err = dummy, errlen = sizeof dummy;
    err[0] = '\0';
    if (n < 0 || (n > 0 && !msgs)) {
        snprintf(err, errlen, "invalid message list");
        return -SMP_E_VALIDATION;
    }
    for (int i = 0; i < n; i++) {
        if (role_id(msgs[i].role) < 0) {
            snprintf(err, errlen,
                     "messages[%d]: unknown role '%.64s' (expected system, user, assistant or tool)",
                     i, msgs[i].role ? msgs[i].role : "(null)");
            return -SMP_E_VALIDATION;
        }
    }
    const char *bos = bos_text ? bos_text : "<s>";
    const char *eos = eos_text ? eos_text : "</s>";
    size_t start = out->len;
    emitter e = {out, 0, err, errlen};
    switch (f) {
    case CHAT_FAMILY_CHATML: render_chatml(&e, msgs, n, gen); break;
    case CHAT_FAMILY_LLAMA3: render_llama3(&e, msgs, n, gen); break;
    case CHAT_FAMILY_PHI3: render_phi3(&e, msgs, n, gen); break;
    case CHAT_FAMILY_LLAMA2: render_merged(&e, &fam_llama2, msgs, n, bos, eos); break;
    case CHAT_FAMILY_MISTRAL: render_merged(&e, &fam_mistral, msgs, n, bos, eos); break;
    case CHAT_FAMILY_GEMMA:
        render_merged(&e, &fam_gemma, msgs, n, bos, eos);
        if (gen) put(&e, "<start_of_turn>model\n");
        break;
    default: render_none(&e, msgs, n, gen); break;
    }
    if (e.rc) {
        if (e.rc == -SMP_E_TOO_LARGE && !err[0]) snprintf(err, errlen, "prompt too large");
        out->len = start; /* leave out as it was */
        if (out->data) out->data[start] = '\0';
    }
    return e.rc;
}

const char *const *chat_stop_strings(chat_family f, int *n) {
    static const char *const chatml[] = {"<|im_end|>"};
    static const char *const llama3[] = {"<|eot_id|>"};
    static const char *const gemma[] = {"<end_of_turn>"};
    static const char *const phi3[] = {"<|end|>"};
    static const char *const none[] = {"\nUser:"};
    *n = 1;
    switch (f) {
    case CHAT_FAMILY_CHATML: return chatml;
    case CHAT_FAMILY_LLAMA3: return llama3;
    case CHAT_FAMILY_GEMMA: return gemma;
    case CHAT_FAMILY_PHI3: return phi3;
    case CHAT_FAMILY_LLAMA2:
    case CHAT_FAMILY_MISTRAL: *n = 0; return NULL; /* EOS ends the turn */
    default: return none;
    }
}
