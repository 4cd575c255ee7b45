/* test_chat.c - chat template detection and rendering, per family, against
 * the exact prompt text the family's reference template produces. */
#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "engine/chat.h"
#include "test.h"

#define N(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const chat_msg one_user[] = {{"user", "Hello", NULL}};
static const chat_msg sys_user[] = {{"system", "You are a helpful assistant", NULL}, {"user", "Hello", NULL}};
/* The conversation llama.cpp's template tests use (note the padded answer). */
static const chat_msg convo[] = {
    {"system", "You are a helpful assistant", NULL},
    {"user", "Hello", NULL},
    {"assistant", "Hi there", NULL},
    {"user", "Who are you", NULL},
    {"assistant", "   I am an assistant   ", NULL},
    {"user", "Another question", NULL},
};

/* Render and compare; returns nothing, records failures. */
static void expect(chat_family f, const chat_msg *m, int n, bool gen, const char *want) {
    buf b;
    buf_init(&b, 0);
    char err[128];
    int rc = chat_render(f, m, n, gen, NULL, NULL, &b, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  error: %s\n", err);
    CHECK_STR(b.data ? b.data : "", want);
    buf_free(&b);
}

TEST(chat_chatml) {
    chat_family f = CHAT_FAMILY_CHATML;
    expect(f, one_user, 1, true, "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    expect(f, one_user, 1, false, "<|im_start|>user\nHello<|im_end|>\n");
    expect(f, sys_user, 2, true,
           "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
           "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n");
    expect(f, convo, N(convo), true,
           "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n"
           "<|im_start|>assistant\nHi there<|im_end|>\n<|im_start|>user\nWho are you<|im_end|>\n"
           "<|im_start|>assistant\n   I am an assistant   <|im_end|>\n"
           "<|im_start|>user\nAnother question<|im_end|>\n<|im_start|>assistant\n");
    const chat_msg tool[] = {{"user", "2+2?", NULL}, {"tool", "4", NULL}};
    expect(f, tool, 2, true,
           "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>tool\n4<|im_end|>\n<|im_start|>assistant\n");
}

TEST(chat_llama3) {
    chat_family f = CHAT_FAMILY_LLAMA3;
    expect(f, one_user, 1, true,
           "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    expect(f, one_user, 1, false, "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>");
    expect(f, sys_user, 2, true,
           "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    /* content | trim */
    expect(f, convo, N(convo), true,
           "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nI am an assistant<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nAnother question<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    const chat_msg tool[] = {{"tool", "{\"x\": 1}", NULL}};
    expect(f, tool, 1, false, "<|start_header_id|>ipython<|end_header_id|>\n\n{\"x\": 1}<|eot_id|>");
}

TEST(chat_llama2) {
    chat_family f = CHAT_FAMILY_LLAMA2;
    /* no generation prompt in this family: gen on/off render the same */
    expect(f, one_user, 1, true, "[INST] Hello [/INST]");
    expect(f, one_user, 1, false, "[INST] Hello [/INST]");
    expect(f, sys_user, 2, true,
           "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]");
    expect(f, convo, N(convo), true,
           "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST] Hi there </s>"
           "<s>[INST] Who are you [/INST] I am an assistant </s>"
           "<s>[INST] Another question [/INST]");
    /* strip() of the joined text; a system message alone */
    const chat_msg pad[] = {{"system", "S", NULL}, {"user", "  hi  ", NULL}};
    expect(f, pad, 2, true, "[INST] <<SYS>>\nS\n<</SYS>>\n\n  hi [/INST]");
    const chat_msg sys_only[] = {{"system", "S", NULL}};
    expect(f, sys_only, 1, true, "[INST] <<SYS>>\nS\n<</SYS>> [/INST]");
    /* the model's own BOS/EOS text */
    buf b;
    buf_init(&b, 0);
    const chat_msg two[] = {{"user", "a", NULL}, {"assistant", "b", NULL}, {"user", "c", NULL}};
    CHECK_INT(chat_render(f, two, 3, true, "<BOS>", "<EOS>", &b, NULL, 0), 0);
    CHECK_STR(b.data, "[INST] a [/INST] b <EOS><BOS>[INST] c [/INST]");
    buf_free(&b);
}

TEST(chat_mistral) {
    chat_family f = CHAT_FAMILY_MISTRAL;
    expect(f, one_user, 1, true, "[INST] Hello [/INST]");
    expect(f, one_user, 1, false, "[INST] Hello [/INST]");
    expect(f, sys_user, 2, true, "[INST] You are a helpful assistant\n\nHello [/INST]");
    expect(f, convo, N(convo), true,
           "[INST] You are a helpful assistant\n\nHello [/INST]Hi there</s>"
           "[INST] Who are you [/INST]   I am an assistant   </s>"
           "[INST] Another question [/INST]");
}

TEST(chat_gemma) {
    chat_family f = CHAT_FAMILY_GEMMA;
    expect(f, one_user, 1, true, "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n");
    expect(f, one_user, 1, false, "<start_of_turn>user\nHello<end_of_turn>\n");
    expect(f, sys_user, 2, true,
           "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
           "<start_of_turn>model\n");
    expect(f, convo, N(convo), true,
           "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
           "<start_of_turn>model\nHi there<end_of_turn>\n"
           "<start_of_turn>user\nWho are you<end_of_turn>\n"
           "<start_of_turn>model\nI am an assistant<end_of_turn>\n"
           "<start_of_turn>user\nAnother question<end_of_turn>\n"
           "<start_of_turn>model\n");
}

TEST(chat_phi3) {
    chat_family f = CHAT_FAMILY_PHI3;
    expect(f, one_user, 1, true, "<|user|>\nHello<|end|>\n<|assistant|>\n");
    expect(f, one_user, 1, false, "<|user|>\nHello<|end|>\n");
    expect(f, sys_user, 2, true,
           "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n<|assistant|>\n");
    expect(f, convo, N(convo), true,
           "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n"
           "<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n"
           "<|assistant|>\n   I am an assistant   <|end|>\n<|user|>\nAnother question<|end|>\n"
           "<|assistant|>\n");
}

TEST(chat_fallback_plain) {
    chat_family f = CHAT_FAMILY_NONE;
    expect(f, one_user, 1, true, "User: Hello\nAssistant:");
    expect(f, one_user, 1, false, "User: Hello\n");
    expect(f, sys_user, 2, true, "System: You are a helpful assistant\nUser: Hello\nAssistant:");
    const chat_msg two[] = {{"user", "a", NULL}, {"assistant", "b", NULL}, {"user", "c", NULL}};
    expect(f, two, 3, true, "User: a\nAssistant: b\nUser: c\nAssistant:");
    int n = 0;
    const char *const *stops = chat_stop_strings(f, &n);
    CHECK_INT(n, 1);
    CHECK_STR(stops[0], "\nUser:");
    stops = chat_stop_strings(CHAT_FAMILY_CHATML, &n);
    CHECK_STR(n ? stops[0] : NULL, "<|im_end|>");
    chat_stop_strings(CHAT_FAMILY_LLAMA2, &n);
    CHECK_INT(n, 0);
}

TEST(chat_rejects_bad_roles) {
    buf b;
    buf_init(&b, 0);
    buf_puts(&b, "keep");
    char err[160];
    const chat_msg bad[] = {{"user", "hi", NULL}, {"wizard", "x", NULL}};
    for (int f = 0; f < CHAT_FAMILY__COUNT; f++) {
        CHECK_INT(chat_render((chat_family)f, bad, 2, true, NULL, NULL, &b, err, sizeof err),
                  -SMP_E_VALIDATION);
        CHECK(strstr(err, "messages[1]") && strstr(err, "wizard"));
    }
    const chat_msg nullrole[] = {{NULL, "x", NULL}};
    CHECK_INT(chat_render(CHAT_FAMILY_CHATML, nullrole, 1, true, NULL, NULL, &b, err, sizeof err),
              -SMP_E_VALIDATION);
    /* tool where the family has no place for it; out is left unchanged */
    const chat_msg tool[] = {{"user", "hi", NULL}, {"tool", "x", NULL}};
    /* (MISTRAL writes a tool message as is: tools.c makes it [TOOL_RESULTS] ...) */
    chat_family no_tool[] = {CHAT_FAMILY_LLAMA2, CHAT_FAMILY_GEMMA, CHAT_FAMILY_PHI3};
    for (int i = 0; i < 3; i++) {
        CHECK_INT(chat_render(no_tool[i], tool, 2, true, NULL, NULL, &b, err, sizeof err),
                  -SMP_E_VALIDATION);
        CHECK(strstr(err, "'tool'") && strstr(err, chat_family_name(no_tool[i])));
    }
    CHECK_STR(b.data, "keep");
    buf_free(&b);
}

TEST(chat_respects_buf_cap) {
    buf b;
    buf_init(&b, 16);
    char err[64];
    CHECK_INT(chat_render(CHAT_FAMILY_CHATML, sys_user, 2, true, NULL, NULL, &b, err, sizeof err),
              -SMP_E_TOO_LARGE);
    CHECK_INT(b.len, 0);
    buf_free(&b);
    CHECK_INT(smp_alloc_live_bytes(), 0);
}

/* Templates as they appear in tokenizer.chat_template of real GGUF files
 * (abridged where marked). */
TEST(chat_detect_families) {
    /* Qwen2.5-Instruct (abridged) */
    CHECK_INT(chat_detect("{%- if tools %}\n    {{- '<|im_start|>system\\n' }}\n    {%- if messages[0]['role'] == 'system' %}"
                          "\n        {{- messages[0]['content'] }}\n    {%- else %}\n        {{- 'You are Qwen, created by Alibaba Cloud. "
                          "You are a helpful assistant.' }}\n    {%- endif %}\n    {{- \"\\n\\n# Tools\\n\\nYou may call one or more functions"
                          "...<tool_call>\" }}{%- endif %}{%- for message in messages %}{{- '<|im_start|>' + message.role + '\\n' + "
                          "message.content + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}"
                          "{{- '<|im_start|>assistant\\n' }}{%- endif %}"),
              CHAT_FAMILY_CHATML);
    /* Meta-Llama-3-8B-Instruct */
    CHECK_INT(chat_detect("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
                          "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
                          "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
                          "{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant"
                          "<|end_header_id|>\n\n' }}{% endif %}"),
              CHAT_FAMILY_LLAMA3);
    /* Llama-2-7b-chat */
    CHECK_INT(chat_detect("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
                          "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
                          "system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and "
                          "system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
                          "message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if "
                          "message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif "
                          "message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"),
              CHAT_FAMILY_LLAMA2);
    /* Mistral-7B-Instruct-v0.2 */
    CHECK_INT(chat_detect("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 "
                          "== 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
                          "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif "
                          "message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception("
                          "'Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"),
              CHAT_FAMILY_MISTRAL);
    /* gemma-7b-it */
    CHECK_INT(chat_detect("{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
                          "supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == 'assistant') %}{% set "
                          "role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}{{ '<start_of_turn>' + role + "
                          "'\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}{% if add_generation_prompt %}"
                          "{{'<start_of_turn>model\n'}}{% endif %}"),
              CHAT_FAMILY_GEMMA);
    /* Phi-3-mini-4k-instruct */
    CHECK_INT(chat_detect("{% for message in messages %}{% if message['role'] == 'system' %}{{'<|system|>\n' + "
                          "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'user' %}{{'<|user|>\n' + "
                          "message['content'] + '<|end|>\n'}}{% elif message['role'] == 'assistant' %}{{'<|assistant|>\n' + "
                          "message['content'] + '<|end|>\n'}}{% endif %}{% endfor %}{% if add_generation_prompt %}"
                          "{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"),
              CHAT_FAMILY_PHI3);
    /* zephyr: <|user|> but <|endoftext|>, not <|end|> */
    CHECK_INT(chat_detect("{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + "
                          "'<|endoftext|>' }}{% endfor %}"),
              CHAT_FAMILY_NONE);
    CHECK_INT(chat_detect(NULL), CHAT_FAMILY_NONE);
    CHECK_INT(chat_detect(""), CHAT_FAMILY_NONE);
    CHECK_INT(chat_detect("{% for m in messages %}{{ m.content }}{% endfor %}"), CHAT_FAMILY_NONE);
    /* names, for a configured override */
    for (int f = 0; f < CHAT_FAMILY__COUNT; f++)
        CHECK_INT(chat_detect(chat_family_name((chat_family)f)), f);
    CHECK_STR(chat_family_name((chat_family)99), "none");
}
