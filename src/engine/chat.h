/* chat.h - turn a list of chat messages into a model's prompt text.
 *
 * GGUF files carry a Jinja template (tokenizer.chat_template). Simpleton does
 * not run Jinja: chat_detect recognises the template's family from distinctive
 * substrings and chat_render writes that family's format in C. Formats, as the
 * families' reference templates render them (B = bos_text, E = eos_text):
 *
 *   CHATML  (Qwen, OpenHermes, SmolLM ...)
 *     <|im_start|>{role}\n{content}<|im_end|>\n ...   gen: <|im_start|>assistant\n
 *   LLAMA3
 *     <|start_header_id|>{role}<|end_header_id|>\n\n{trim(content)}<|eot_id|> ...
 *                                gen: <|start_header_id|>assistant<|end_header_id|>\n\n
 *   LLAMA2  (Meta's template; system goes into the next user turn)
 *     [INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} E
 *     B[INST] {user} [/INST] ...      (strip() applied as the template does)
 *   MISTRAL (Mistral-7B-Instruct v0.1/v0.2 style; system + "\n\n" is put
 *            before the next user message)
 *     [INST] {user} [/INST]{assistant}E[INST] {user} [/INST] ...
 *   GEMMA   (assistant is called "model"; system + "\n\n" opens the next user turn)
 *     <start_of_turn>user\n{trim(content)}<end_of_turn>\n ...  gen: <start_of_turn>model\n
 *   PHI3
 *     <|{role}|>\n{content}<|end|>\n ...              gen: <|assistant|>\n
 *   NONE    (no or unknown template: a plain transcript)
 *     System: {content}\nUser: {content}\nAssistant: {content}\n ...  gen: Assistant:
 *
 * BOS rule: chat_render never writes the BOS that opens the prompt (the
 * templates' leading bos_token). The caller tokenizes the result with
 * add_special = true, so the tokenizer adds BOS exactly when the model's
 * add_bos flag says so, and with parse_special = true, so marker text such
 * as "<|im_start|>" or a mid-prompt B/E becomes the special token.
 * LLAMA2 and MISTRAL have no separate generation prompt (the prompt already
 * ends where the assistant speaks): add_generation_prompt changes nothing there.
 * "trim" strips ASCII whitespace (Jinja strips Unicode whitespace too).
 *
 * Roles: "system", "user", "assistant", and "tool" for CHATML (role "tool"),
 * LLAMA3 (role "ipython", the Llama 3.1 convention), NONE ("Tool:") and
 * MISTRAL (the content as is: tools.c writes it as [TOOL_RESULTS] ...).
 * Tool definitions and calls are folded into these messages by tools.c. */
#ifndef SMP_CHAT_H
#define SMP_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#include "core/buf.h"

typedef enum {
    CHAT_FAMILY_NONE = 0,
    CHAT_FAMILY_CHATML,
    CHAT_FAMILY_LLAMA2,
    CHAT_FAMILY_LLAMA3,
    CHAT_FAMILY_MISTRAL,
    CHAT_FAMILY_GEMMA,
    CHAT_FAMILY_PHI3,
    CHAT_FAMILY__COUNT
} chat_family;

typedef struct {
    const char *role;    /* borrowed, NUL-terminated */
    const char *content; /* borrowed, NUL-terminated; NULL counts as "" */
    const char *prefix;  /* raw text written just before this message's turn (may be NULL;
                            tools.c puts Mistral's [AVAILABLE_TOOLS] block here) */
} chat_msg;

/* The family of a tokenizer.chat_template (NULL or unrecognised: NONE). A
 * family's own name ("chatml", "llama3", ...; see chat_family_name) is
 * accepted too, so a configured override can use the same call. */
chat_family chat_detect(const char *jinja_template);

/* "none", "chatml", "llama2", "llama3", "mistral", "gemma", "phi3". */
const char *chat_family_name(chat_family f);

/* Append the prompt for msgs[0..n) to out. bos_text / eos_text are the
 * model's BOS and EOS token text, used only inside the history (LLAMA2's
 * "</s><s>", MISTRAL's "</s>"); NULL means "<s>" / "</s>".
 * Returns 0; -SMP_E_VALIDATION for an unknown role, a role the family has no
 * place for, or more than 8 system messages in a row (message in err);
 * -SMP_E_TOO_LARGE when out's cap is reached. On error out is left as it was.
 * err may be NULL. */
int chat_render(chat_family f, const chat_msg *msgs, int n, bool add_generation_prompt,
                const char *bos_text, const char *eos_text, buf *out, char *err, size_t errlen);

/* Text that ends an assistant turn in this family, for use as extra stop
 * strings when a model writes the marker as plain text ("<|im_end|>"), or for
 * NONE the start of an invented next turn ("\nUser:"). Static storage. */
const char *const *chat_stop_strings(chat_family f, int *n);

#endif
