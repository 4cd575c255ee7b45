/* test_backend_remote.c - the Ollama and OpenAI backends (and httpc under
 * them) against tests/e2e/fake_upstream.mjs.
 *
 * Each test starts its own fake upstream (node, port 0, the port read from its
 * stdout) and kills it on every path out: explicitly at the end, and through
 * PR_SET_PDEATHSIG if the test process dies first. A missing node is a
 * failure, not a skip. The fake's answers are deterministic (the prompt
 * reversed in 3 pieces, embeddings derived from the text) and GET /__last
 * shows what the backend sent. Timeouts are shortened with the backends'
 * set_timeouts hooks so hang tests take about a second. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/httpc.h"
#include "backend/ollama.h"
#include "backend/openai.h"
#include "core/alloc.h"
#include "core/errors.h"
#include "core/util.h"
#include "media/image.h"
#include "test.h"

/* ---- the fake upstream process ---- */

typedef struct {
    pid_t pid;
    int port;
    char url[64]; /* http://127.0.0.1:PORT */
} fake_proc;

static double now_s(void) { return (double)util_now_ns() / 1e9; }

static int fake_start(fake_proc *f) {
    int fds[2];
    if (pipe(fds) != 0) return -1;
    pid_t parent = getpid();
    f->pid = fork();
    if (f->pid < 0) return -1;
    if (f->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
        if (getppid() != parent) _exit(127);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execlp("node", "node", "tests/e2e/fake_upstream.mjs", (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = "";
    size_t got = 0;
    double deadline = now_s() + 10;
    while (got < sizeof line - 1 && !memchr(line, '\n', got) && now_s() < deadline) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0) continue;
        ssize_t n = read(fds[0], line + got, sizeof line - 1 - got);
        if (n <= 0) break;
        got += (size_t)n;
    }
    close(fds[0]);
    line[got] = '\0';
    f->port = atoi(line);
    if (f->port <= 0) {
        fprintf(stderr, "  could not start 'node tests/e2e/fake_upstream.mjs' (is node installed? "
                        "scripts/deps.sh test installs it): the remote backend tests need it\n");
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
        return -1;
    }
    snprintf(f->url, sizeof f->url, "http://127.0.0.1:%d", f->port);
    return 0;
}

static void fake_stop(fake_proc *f) {
    if (f->pid > 0) {
        kill(f->pid, SIGKILL);
        waitpid(f->pid, NULL, 0);
        f->pid = 0;
    }
}

/* A port nothing listens on. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t n = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &n) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* GET or POST one of the fake's hooks (its own client, not the backend's). */
static json_t *fake_call(const fake_proc *f, const char *path, const char *post) {
    char err[256];
    httpc *c = httpc_new("fake", f->url, NULL, err, sizeof err);
    if (!c) return NULL;
    httpc_req r = {.path = path, .body = post, .body_len = post ? strlen(post) : 0, .timeout_ms = 3000};
    httpc_resp resp;
    json_t *j = NULL;
    if (httpc_request(c, &r, &resp, err, sizeof err) == 0 && resp.status == 200)
        j = json_loadb(resp.body.data, resp.body.len, 0, NULL);
    httpc_resp_free(&resp);
    httpc_free(c);
    return j;
}

static json_t *last_request(const fake_proc *f) { return fake_call(f, "/__last", NULL); }

/* Dig into JSON by a "a.b.0.c" path. */
static json_t *jpath(json_t *j, const char *path) {
    char tmp[128];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *save = NULL, *k = strtok_r(tmp, ".", &save); k && j; k = strtok_r(NULL, ".", &save))
        j = json_is_array(j) ? json_array_get(j, (size_t)atoi(k)) : json_object_get(j, k);
    return j;
}
static const char *jstr(json_t *j, const char *path) { return json_string_value(jpath(j, path)); }
static long long jint(json_t *j, const char *path) { return json_integer_value(jpath(j, path)); }

/* ---- helpers ---- */

#define SHORT_MS 300 /* every timeout but connect, in the tests */
static const httpc_timeouts short_timeouts = {2000, SHORT_MS, SHORT_MS, SHORT_MS, SHORT_MS};
static const double short_s = SHORT_MS / 1000.0;

/* The embed operation with the texts and outputs as separate arguments. */
static int embed(backend *b, const char *model, const char *const *texts, int n, float **v, int *dim, int *pt,
                 char *err, size_t errlen) {
    backend_embed_req rq = {.model = model, .texts = texts, .n = n};
    backend_embed_result out;
    int rc = b->ops->embed(b, &rq, &out, err, errlen);
    *v = out.vecs;
    *dim = out.dim;
    if (pt) *pt = out.prompt_tokens;
    return rc;
}

static backend *new_ollama(const char *url) {
    char err[256];
    backend *b = ollama_backend_new(url, NULL, err, sizeof err);
    if (!b) fprintf(stderr, "  ollama_backend_new: %s\n", err);
    if (b) ollama_backend_set_timeouts(b, &short_timeouts);
    return b;
}

static backend *new_openai(const char *url, const char *key) {
    char err[256], full[96];
    snprintf(full, sizeof full, "%s/v1", url);
    backend *b = openai_backend_new(full, key, err, sizeof err);
    if (!b) fprintf(stderr, "  openai_backend_new: %s\n", err);
    if (b) openai_backend_set_timeouts(b, &short_timeouts);
    return b;
}

#define MAX_PIECES 256
typedef struct {
    char pieces[MAX_PIECES][160];
    int n;
    int stop_after;           /* on_token returns 1 after this many pieces (0: never) */
    int flag_after;           /* sets `flag` after this many pieces (0: never) */
    atomic_bool flag;         /* what the external cancel check reads */
    double flag_at;           /* or: the cancel check says yes after this time (0: never) */
    double first_at;
} collect;

static int on_tok(void *ud, const char *p, size_t len) {
    collect *c = ud;
    if (c->n == 0) c->first_at = now_s();
    if (c->n < MAX_PIECES) snprintf(c->pieces[c->n], sizeof c->pieces[0], "%.*s", (int)len, p);
    c->n++;
    if (c->flag_after && c->n >= c->flag_after) atomic_store(&c->flag, true);
    return c->stop_after && c->n >= c->stop_after;
}

static bool is_cancelled(void *ud) {
    collect *c = ud;
    return atomic_load(&c->flag) || (c->flag_at > 0 && now_s() >= c->flag_at);
}

static int gen(backend *b, const char *model, const char *prompt, collect *c, backend_gen_result *out, char *err,
               size_t errlen) {
    backend_gen_req r = {.model = model, .prompt = prompt, .temperature = 0.7, .top_p = 1, .repeat_penalty = 1};
    if (c) {
        r.cancelled = is_cancelled;
        r.cancel_ud = c;
    }
    return b->ops->generate(b, &r, c ? on_tok : NULL, c, out, err, errlen);
}

static int chat1(backend *b, const char *model, const char *content, collect *c, backend_gen_result *out, char *err,
                 size_t errlen) {
    backend_msg m = {.role = "user", .content = content};
    backend_gen_req r = {.model = model, .messages = &m, .n_messages = 1, .temperature = 0.2, .top_p = 1,
                         .repeat_penalty = 1};
    return b->ops->generate(b, &r, c ? on_tok : NULL, c, out, err, errlen);
}

static bool starts_with(const char *s, const char *p) { return s && !strncmp(s, p, strlen(p)); }

/* Two binary images: a PNG signature and a JPEG one, each followed by bytes
 * that cover every value (zeros and 0xFF included). */
static unsigned char img_png[3001], img_jpg[1000];
static void make_images(void) {
    memcpy(img_png, "\x89PNG\r\n\x1a\n", 8);
    for (size_t i = 8; i < sizeof img_png; i++) img_png[i] = (unsigned char)(i * 7 + 3);
    memcpy(img_jpg, "\xFF\xD8\xFF\xE0", 4);
    for (size_t i = 4; i < sizeof img_jpg; i++) img_jpg[i] = (unsigned char)(255 - i);
}

/* ---- Ollama ---- */

TEST(backend_ollama_generate_streams_pieces_in_order) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    CHECK_STR(b->ops->name, "ollama");
    int32_t ctx[] = {7, 8, 9};
    backend_gen_req r = {.model = "fake-llm", .prompt = "Hello, wörld!", .system = "be brief", .context = ctx,
                         .n_context = 3, .temperature = 0.5, .top_p = 0.9, .top_k = 20, .repeat_penalty = 1,
                         .has_seed = true, .seed = 42, .stop = {"\n\n", "END"}, .n_stop = 2};
    collect c = {0};
    backend_gen_result res;
    char err[512] = "";
    int rc = b->ops->generate(b, &r, on_tok, &c, &res, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    CHECK_INT(c.n, 3);
    CHECK_STR(c.pieces[0], "!dlr");
    CHECK_STR(c.pieces[1], "öw ,");
    CHECK_STR(c.pieces[2], "olleH");
    CHECK_STR(res.text, "!dlröw ,olleH");
    CHECK_INT(res.text_len, strlen("!dlröw ,olleH"));
    CHECK_INT(res.prompt_tokens, 13);
    CHECK_INT(res.completion_tokens, 3);
    CHECK_INT(res.total_ns, 123456789);
    CHECK_INT(res.load_ns, 1000);
    CHECK_INT(res.prompt_ns, 2000);
    CHECK_INT(res.eval_ns, 3000);
    CHECK_STR(res.done_reason, "stop");
    int32_t want[] = {7, 8, 9, 'H', 'e', 'l', 'l', 'o', ',', ' ', 'w', 0xF6, 'r', 'l', 'd', '!'};
    CHECK_INT(res.n_context, 16);
    for (int i = 0; i < res.n_context && i < 16; i++) CHECK_INT(res.context[i], want[i]);
    backend_gen_result_free(&res);

    json_t *last = last_request(&f);
    REQUIRE(last);
    CHECK_STR(jstr(last, "path"), "/api/generate");
    CHECK_STR(jstr(last, "body.model"), "fake-llm");
    CHECK_STR(jstr(last, "body.prompt"), "Hello, wörld!");
    CHECK_STR(jstr(last, "body.system"), "be brief");
    CHECK_INT(jint(last, "body.context.2"), 9);
    CHECK(json_is_true(jpath(last, "body.stream")));
    CHECK_NEAR(json_number_value(jpath(last, "body.options.temperature")), 0.5, 1e-9);
    CHECK_NEAR(json_number_value(jpath(last, "body.options.top_p")), 0.9, 1e-9);
    CHECK_INT(jint(last, "body.options.top_k"), 20);
    CHECK_INT(jint(last, "body.options.seed"), 42);
    CHECK_STR(jstr(last, "body.options.stop.0"), "\n\n");
    CHECK_STR(jstr(last, "body.options.stop.1"), "END");
    CHECK(!jpath(last, "body.options.num_predict")); /* max_tokens 0: not sent */
    CHECK(!jpath(last, "body.options.repeat_penalty")); /* 1 = off: not sent */
    CHECK(!jpath(last, "body.raw"));
    json_decref(last);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_generate_whole_answer_and_length) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    backend_gen_result res;
    char err[512] = "";
    /* No token callback: one whole answer is asked for (stream: false). */
    CHECK_INT(gen(b, "fake-llm", "abcdef", NULL, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "fedcba");
    CHECK_STR(res.done_reason, "stop");
    backend_gen_result_free(&res);
    json_t *last = last_request(&f);
    CHECK(json_is_false(jpath(last, "body.stream")));
    json_decref(last);

    backend_gen_req r = {.model = "fake-llm", .prompt = "abcdef", .max_tokens = 2, .raw = true, .top_p = 1,
                         .repeat_penalty = 1.3, .min_p = 0.05};
    CHECK_INT(b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "fedc");
    CHECK_STR(res.done_reason, "length");
    CHECK_INT(res.completion_tokens, 2);
    backend_gen_result_free(&res);
    last = last_request(&f);
    CHECK_INT(jint(last, "body.options.num_predict"), 2);
    CHECK_NEAR(json_number_value(jpath(last, "body.options.repeat_penalty")), 1.3, 1e-9);
    CHECK_NEAR(json_number_value(jpath(last, "body.options.min_p")), 0.05, 1e-9);
    CHECK(!jpath(last, "body.options.top_p"));
    CHECK(json_is_true(jpath(last, "body.raw")));
    json_decref(last);

    /* An empty prompt gives an empty (not NULL) text. */
    CHECK_INT(gen(b, "fake-llm", "", NULL, &res, err, sizeof err), 0);
    CHECK(res.text && res.text[0] == '\0' && res.text_len == 0);
    backend_gen_result_free(&res);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_chat_with_images) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    make_images();
    const unsigned char *imgs[] = {img_png, img_jpg};
    size_t lens[] = {sizeof img_png, sizeof img_jpg};
    backend_msg msgs[] = {
        {.role = "system", .content = "You describe images."},
        {.role = "user", .content = "What is this?", .n_images = 2, .images = imgs, .image_lens = lens},
    };
    backend_gen_req r = {.model = "llava:7b", .messages = msgs, .n_messages = 2, .temperature = 0.1, .top_p = 1,
                         .repeat_penalty = 1};
    collect c = {0};
    backend_gen_result res;
    char err[512] = "";
    int rc = b->ops->generate(b, &r, on_tok, &c, &res, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    char h1[65], h2[65], want[256];
    util_sha256_hex(img_png, sizeof img_png, h1);
    util_sha256_hex(img_jpg, sizeof img_jpg, h2);
    snprintf(want, sizeof want, "?siht si tahW img:%s img:%s", h1, h2);
    CHECK_STR(res.text, want);
    CHECK_INT(c.n, 3);
    char joined[512] = "";
    for (int i = 0; i < c.n && i < 3; i++) strcat(joined, c.pieces[i]);
    CHECK_STR(joined, want);
    CHECK_INT(res.prompt_tokens, 11);
    CHECK_INT(res.completion_tokens, 3);
    CHECK_INT(res.total_ns, 987654321);
    CHECK_INT(res.n_context, 0);
    backend_gen_result_free(&res);

    json_t *last = last_request(&f);
    CHECK_STR(jstr(last, "path"), "/api/chat");
    CHECK_STR(jstr(last, "body.messages.0.role"), "system");
    CHECK_STR(jstr(last, "body.messages.1.content"), "What is this?");
    CHECK_INT(json_array_size(jpath(last, "body.messages.1.images")), 2);
    CHECK(!jpath(last, "body.messages.0.images"));
    CHECK(json_is_true(jpath(last, "body.stream")));
    json_decref(last);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_chat_system_prepended) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    backend_msg m = {.role = "user", .content = "hi"};
    backend_gen_req r = {.model = "fake-llm", .system = "sys", .messages = &m, .n_messages = 1, .top_p = 1};
    backend_gen_result res;
    char err[256];
    CHECK_INT(b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "ih");
    backend_gen_result_free(&res);
    json_t *last = last_request(&f);
    CHECK_STR(jstr(last, "body.messages.0.role"), "system");
    CHECK_STR(jstr(last, "body.messages.0.content"), "sys");
    CHECK_STR(jstr(last, "body.messages.1.content"), "hi");
    json_decref(last);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_embed) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    const char *texts[] = {"hello", "A", "zé"};
    float *v = NULL;
    int dim = 0, pt = -1;
    char err[512] = "";
    int rc = embed(b, "nomic-embed-text", texts, 3, &v, &dim, &pt, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    REQUIRE(v && dim == 4);
    float want[3][4] = {{5, 'h', 'o', 0.25f}, {1, 'A', 'A', 0.25f}, {2, 'z', 0xE9, 0.25f}};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) CHECK_NEAR(v[i * 4 + k], want[i][k], 1e-6);
    CHECK_INT(pt, 8);
    smp_free(v);
    json_t *last = last_request(&f);
    CHECK_STR(jstr(last, "path"), "/api/embed");
    CHECK_STR(jstr(last, "body.input.2"), "zé");
    json_decref(last);
    /* prompt_tokens may be NULL. */
    CHECK_INT(embed(b, "nomic-embed-text", texts, 1, &v, &dim, NULL, err, sizeof err), 0);
    smp_free(v);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_models_and_health) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    json_t *list = NULL;
    char err[512] = "";
    CHECK_INT(b->ops->list_models(b, &list, err, sizeof err), 0);
    REQUIRE(json_array_size(list) == 3);
    CHECK_STR(jstr(list, "0.name"), "fake-llm:latest");
    CHECK_INT(jint(list, "0.size"), 4661224676LL);
    CHECK_STR(jstr(list, "0.modified_at"), "2024-05-01T10:00:00.000000000Z");
    CHECK_STR(jstr(list, "0.digest"), "sha256:aaaa1111");
    CHECK_STR(jstr(list, "0.kind"), "llm");
    CHECK_STR(jstr(list, "0.backend"), "ollama");
    CHECK_STR(jstr(list, "1.kind"), "embedding");
    CHECK_STR(jstr(list, "2.kind"), "llm");
    json_decref(list);

    CHECK_INT(b->ops->has_model(b, "fake-llm"), 1);
    CHECK_INT(b->ops->has_model(b, "fake-llm:latest"), 1);
    CHECK_INT(b->ops->has_model(b, "llava:7b"), 1);
    CHECK_INT(b->ops->has_model(b, "llava"), 0);
    CHECK_INT(b->ops->has_model(b, "nope"), 0);

    json_t *h = NULL;
    CHECK(b->ops->health(b, &h));
    CHECK_STR(jstr(h, "status"), "healthy");
    CHECK_STR(jstr(h, "version"), "0.0.0-fake");
    CHECK_STR(jstr(h, "url"), f.url);
    json_decref(h);

    /* The upstream's model routes fail: errors, not crashes. */
    json_decref(fake_call(&f, "/__config", "{\"metaFault\":\"500\"}"));
    CHECK_INT(b->ops->list_models(b, &list, err, sizeof err), -SMP_E_BACKEND);
    CHECK_STR(err, "Backend error: ollama returned 500: meta route failed");
    CHECK(!b->ops->health(b, &h));
    CHECK_STR(jstr(h, "status"), "down");
    json_decref(h);
    json_decref(fake_call(&f, "/__config", "{\"metaFault\":\"garbage\"}"));
    CHECK_INT(b->ops->list_models(b, &list, err, sizeof err), -SMP_E_BACKEND);
    CHECK(starts_with(err, "Backend error: ollama sent an invalid response: "));
    CHECK(list == NULL);
    json_decref(fake_call(&f, "/__config", "{\"metaFault\":\"hang\"}"));
    double t0 = now_s();
    CHECK(!b->ops->health(b, &h));
    CHECK(now_s() - t0 < short_s + 1.0);
    CHECK(strstr(jstr(h, "detail"), "Could not connect to ollama at ") != NULL);
    json_decref(h);
    CHECK_INT(b->ops->list_models(b, &list, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK_INT(b->ops->has_model(b, "fake-llm"), -1);
    b->ops->destroy(b);

    /* Nobody listening. */
    fake_stop(&f);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    b = new_ollama(url);
    REQUIRE(b);
    CHECK(!b->ops->health(b, &h));
    CHECK_STR(jstr(h, "status"), "down");
    CHECK(starts_with(jstr(h, "detail"), "Could not connect to ollama at http://127.0.0.1:"));
    json_decref(h);
    CHECK_INT(b->ops->has_model(b, "fake-llm"), -1);
    b->ops->destroy(b);
}

/* Every fault mode on every POST route gives the right code and text. */
TEST(backend_ollama_faults) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    struct {
        const char *model;
        int code;
        const char *msg; /* prefix */
    } cases[] = {
        {"fault-500", -SMP_E_BACKEND, "Backend error: ollama returned 500: boom: the fake upstream failed"},
        {"fault-404", -SMP_E_NOT_FOUND, "ollama: model \"fault-404\" not found, try pulling it first"},
        {"missing-model", -SMP_E_NOT_FOUND, "ollama: model \"missing-model\" not found"},
        {"fault-garbage", -SMP_E_BACKEND, "Backend error: ollama sent an invalid response: "},
        {"fault-cut", -SMP_E_BACKEND, "Backend error: ollama stream ended before the answer was complete"},
        {"fault-reset", -SMP_E_BACKEND, "Backend error: ollama stream ended before the answer was complete"},
        {"fault-error-line", -SMP_E_BACKEND, "Backend error: ollama returned an error: the fake upstream failed mid-stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int chat = 0; chat < 2; chat++) {
            backend_gen_result res;
            char err[512] = "";
            collect c = {0};
            int rc = chat ? chat1(b, cases[i].model, "Hello there", &c, &res, err, sizeof err)
                          : gen(b, cases[i].model, "Hello there", &c, &res, err, sizeof err);
            if (rc != cases[i].code || !starts_with(err, cases[i].msg))
                fprintf(stderr, "  %s %s: rc %d err '%s'\n", chat ? "chat" : "generate", cases[i].model, rc, err);
            CHECK_INT(rc, cases[i].code);
            CHECK(starts_with(err, cases[i].msg));
            CHECK(res.text == NULL && res.context == NULL);
        }
    }
    /* Embeddings: the status faults. */
    const char *texts[] = {"x"};
    float *v = (float *)1;
    int dim = 7;
    char err[512];
    CHECK_INT(embed(b, "fault-500", texts, 1, &v, &dim, NULL, err, sizeof err), -SMP_E_BACKEND);
    CHECK_STR(err, "Backend error: ollama returned 500: boom: the fake upstream failed");
    CHECK(v == NULL && dim == 0);
    CHECK_INT(embed(b, "missing-embed", texts, 1, &v, &dim, NULL, err, sizeof err), -SMP_E_NOT_FOUND);
    CHECK(strstr(err, "not found") != NULL);
    CHECK_INT(embed(b, "fault-garbage", texts, 1, &v, &dim, NULL, err, sizeof err), -SMP_E_BACKEND);
    CHECK(starts_with(err, "Backend error: ollama sent an invalid response: "));
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_hang_times_out) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    backend_gen_result res;
    char err[512] = "";
    double t0 = now_s();
    CHECK_INT(gen(b, "fault-hang", "x", NULL, &res, err, sizeof err), -SMP_E_UNAVAILABLE);
    double dt = now_s() - t0;
    CHECK(dt >= short_s - 0.05 && dt < short_s + 1.0);
    CHECK(starts_with(err, "Could not connect to ollama at http://127.0.0.1:"));
    CHECK(strstr(err, "timed out") != NULL);

    /* Silence after the first piece is a timeout too. */
    collect c = {0};
    t0 = now_s();
    CHECK_INT(gen(b, "fault-hang-mid", "Hello there", &c, &res, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(now_s() - t0 < short_s + 1.0);
    CHECK_INT(c.n, 1);

    const char *texts[] = {"x"};
    float *v;
    int dim;
    t0 = now_s();
    CHECK_INT(embed(b, "fault-hang", texts, 1, &v, &dim, NULL, err, sizeof err), -SMP_E_UNAVAILABLE);
    dt = now_s() - t0;
    CHECK(dt >= short_s - 0.05 && dt < short_s + 1.0);
    CHECK(starts_with(err, "Could not connect to ollama at "));
    b->ops->destroy(b);
    fake_stop(&f);
}

static bool past(void *ud) { return now_s() > *(const double *)ud; }

/* A forwarded embeddings request stops as soon as its client is gone (the
 * cancel callback), not when the upstream answers or times out. */
TEST(backend_embed_cancelled) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *bs[2] = {new_ollama(f.url), new_openai(f.url, "sk-test")};
    httpc_timeouts t = short_timeouts;
    t.embed_ms = 10000;
    ollama_backend_set_timeouts(bs[0], &t);
    openai_backend_set_timeouts(bs[1], &t);
    for (int k = 0; k < 2; k++) {
        const char *texts[] = {"x"};
        double t0 = now_s(), until = t0 + 0.3;
        backend_embed_req rq = {.model = "fault-hang", .texts = texts, .n = 1, .cancelled = past, .cancel_ud = &until};
        backend_embed_result out;
        char err[512] = "";
        CHECK_INT(bs[k]->ops->embed(bs[k], &rq, &out, err, sizeof err), BACKEND_CANCELLED);
        double dt = now_s() - t0;
        CHECK(dt >= 0.25 && dt < 2.0);
        CHECK(out.vecs == NULL && strstr(err, "cancelled") != NULL);
        bs[k]->ops->destroy(bs[k]);
    }
    fake_stop(&f);
}

TEST(backend_ollama_slow_first_token_within_timeout) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    httpc_timeouts t = short_timeouts;
    t.generate_ms = 3000;
    ollama_backend_set_timeouts(b, &t);
    collect c = {0};
    backend_gen_result res;
    char err[512] = "";
    double t0 = now_s();
    CHECK_INT(gen(b, "fault-slow-first-token-500", "abc", &c, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "cba");
    CHECK(c.first_at - t0 >= 0.45);
    backend_gen_result_free(&res);
    /* The same wait with a shorter silence limit times out. */
    t.generate_ms = 300;
    ollama_backend_set_timeouts(b, &t);
    CHECK_INT(gen(b, "fault-slow-first-token-1500", "abc", NULL, &res, err, sizeof err), -SMP_E_UNAVAILABLE);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_cancel) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    /* on_token says stop after 3 pieces (the whole answer takes 2 s). */
    collect c = {.stop_after = 3};
    backend_gen_result res;
    char err[512] = "";
    double t0 = now_s();
    CHECK_INT(gen(b, "slow", "x", &c, &res, err, sizeof err), BACKEND_CANCELLED);
    CHECK(now_s() - t0 < 0.6);
    CHECK_STR(res.text, "tok0 tok1 tok2 ");
    CHECK_STR(res.done_reason, "cancelled");
    CHECK_INT(res.completion_tokens, 3);
    backend_gen_result_free(&res);

    /* The external check, while pieces flow. */
    collect c2 = {.flag_after = 3};
    t0 = now_s();
    CHECK_INT(gen(b, "slow", "x", &c2, &res, err, sizeof err), BACKEND_CANCELLED);
    CHECK(now_s() - t0 < 1.0);
    CHECK(starts_with(res.text, "tok0 tok1 tok2 "));
    CHECK(c2.n < 20);
    backend_gen_result_free(&res);

    /* The external check, while the upstream is silent. */
    collect c3 = {.flag_at = now_s() + 0.2};
    httpc_timeouts t = short_timeouts;
    t.generate_ms = 10000;
    ollama_backend_set_timeouts(b, &t);
    t0 = now_s();
    CHECK_INT(gen(b, "fault-hang", "x", &c3, &res, err, sizeof err), BACKEND_CANCELLED);
    CHECK(now_s() - t0 < 0.8);
    CHECK_STR(res.text, "");
    backend_gen_result_free(&res);

    /* The backend still works afterwards. */
    CHECK_INT(gen(b, "fake-llm", "abc", NULL, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "cba");
    backend_gen_result_free(&res);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_unreachable_is_fast) {
    char url[64], err[512] = "";
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    backend *b = new_ollama(url);
    REQUIRE(b);
    backend_gen_result res;
    double t0 = now_s();
    CHECK_INT(gen(b, "fake-llm", "x", NULL, &res, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(now_s() - t0 < 1.0);
    char want[128];
    snprintf(want, sizeof want, "Could not connect to ollama at %s: ", url);
    CHECK(starts_with(err, want));
    const char *texts[] = {"x"};
    float *v;
    int dim;
    CHECK_INT(embed(b, "e", texts, 1, &v, &dim, NULL, err, sizeof err), -SMP_E_UNAVAILABLE);
    json_t *list;
    CHECK_INT(b->ops->list_models(b, &list, err, sizeof err), -SMP_E_UNAVAILABLE);
    b->ops->destroy(b);

    /* A name that does not resolve. */
    b = new_ollama("http://no-such-host.invalid:11434");
    REQUIRE(b);
    CHECK_INT(gen(b, "fake-llm", "x", NULL, &res, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(starts_with(err, "Could not connect to ollama at http://no-such-host.invalid:11434: "));
    b->ops->destroy(b);

    /* Bad base URLs are refused up front. */
    CHECK(ollama_backend_new("ftp://x", NULL, err, sizeof err) == NULL);
    CHECK(strstr(err, "http://") != NULL);
    CHECK(ollama_backend_new("", NULL, err, sizeof err) == NULL);
}

TEST(backend_ollama_reuses_connections) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    char url[80];
    snprintf(url, sizeof url, "%s/", f.url); /* a trailing slash is fine */
    backend *b = new_ollama(url);
    REQUIRE(b);
    backend_gen_result res;
    char err[512];
    long ports[3];
    for (int i = 0; i < 3; i++) {
        CHECK_INT(gen(b, "fake-llm", "abc", NULL, &res, err, sizeof err), 0);
        backend_gen_result_free(&res);
        json_t *last = last_request(&f);
        CHECK_STR(jstr(last, "path"), "/api/generate");
        ports[i] = (long)jint(last, "remotePort");
        json_decref(last);
    }
    CHECK(ports[0] > 0);
    CHECK_INT(ports[1], ports[0]);
    CHECK_INT(ports[2], ports[0]);
    b->ops->destroy(b);
    fake_stop(&f);
}

typedef struct {
    backend *b;
    int ok;
} worker_arg;

static void *worker(void *p) {
    worker_arg *a = p;
    for (int i = 0; i < 5; i++) {
        char prompt[32], want[32], err[256];
        snprintf(prompt, sizeof prompt, "p%d-%p", i, (void *)a);
        size_t n = strlen(prompt);
        for (size_t k = 0; k < n; k++) want[k] = prompt[n - 1 - k];
        want[n] = '\0';
        backend_gen_result res;
        collect *c = smp_calloc(1, sizeof *c);
        if (gen(a->b, i % 2 ? "fake-llm" : "other", prompt, c, &res, err, sizeof err) == 0 && !strcmp(res.text, want))
            a->ok++;
        backend_gen_result_free(&res);
        smp_free(c);
    }
    return NULL;
}

TEST(backend_ollama_concurrent_requests) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    pthread_t th[4];
    worker_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg){b, 0};
        pthread_create(&th[i], NULL, worker, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_INT(args[i].ok, 5);
    }
    json_t *st = fake_call(&f, "/__stats", NULL);
    CHECK_INT(jint(st, "requests"), 20);
    CHECK(jint(st, "connections") <= 5); /* 4 workers' connections + this call */
    json_decref(st);
    b->ops->destroy(b);
    fake_stop(&f);
}

/* ---- OpenAI ---- */

TEST(backend_openai_chat_streams_with_images) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, "sk-test");
    REQUIRE(b);
    CHECK_STR(b->ops->name, "openai");
    make_images();
    static const unsigned char other[] = "just some bytes";
    const unsigned char *imgs[] = {img_png, img_jpg, other};
    size_t lens[] = {sizeof img_png, sizeof img_jpg, sizeof other};
    backend_msg msgs[] = {
        {.role = "user", .content = "Look: ünïcode", .n_images = 3, .images = imgs, .image_lens = lens},
    };
    backend_gen_req r = {.model = "fake-gpt", .system = "be brief", .messages = msgs, .n_messages = 1,
                         .temperature = 0.3, .top_p = 0.8, .top_k = 5, .repeat_penalty = 1, .max_tokens = 50,
                         .has_seed = true, .seed = 7, .stop = {"STOP"}, .n_stop = 1, .presence_penalty = 0.5};
    collect c = {0};
    backend_gen_result res;
    char err[512] = "";
    int rc = b->ops->generate(b, &r, on_tok, &c, &res, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    char h1[65], h2[65], h3[65], want[512];
    util_sha256_hex(img_png, sizeof img_png, h1);
    util_sha256_hex(img_jpg, sizeof img_jpg, h2);
    util_sha256_hex(other, sizeof other, h3);
    snprintf(want, sizeof want, "edocïnü :kooL img:image/png:%s img:image/jpeg:%s img:application/octet-stream:%s", h1,
             h2, h3);
    CHECK_STR(res.text, want);
    CHECK_INT(c.n, 3);
    char joined[512] = "";
    for (int i = 0; i < c.n && i < 3; i++) strcat(joined, c.pieces[i]);
    CHECK_STR(joined, want);
    CHECK_INT(res.prompt_tokens, 17); /* from the usage chunk */
    CHECK_INT(res.completion_tokens, 3);
    CHECK_STR(res.done_reason, "stop");
    CHECK(res.total_ns > 0 && res.total_ns >= res.prompt_ns);
    backend_gen_result_free(&res);

    json_t *last = last_request(&f);
    CHECK_STR(jstr(last, "path"), "/v1/chat/completions");
    CHECK_STR(jstr(last, "headers.authorization"), "Bearer sk-test");
    CHECK(json_is_true(jpath(last, "body.stream")));
    CHECK(json_is_true(jpath(last, "body.stream_options.include_usage")));
    CHECK_STR(jstr(last, "body.messages.0.role"), "system");
    CHECK_STR(jstr(last, "body.messages.0.content"), "be brief");
    CHECK_STR(jstr(last, "body.messages.1.content.0.type"), "text");
    CHECK_STR(jstr(last, "body.messages.1.content.0.text"), "Look: ünïcode");
    CHECK_STR(jstr(last, "body.messages.1.content.1.type"), "image_url");
    CHECK(starts_with(jstr(last, "body.messages.1.content.1.image_url.url"), "data:image/png;base64,iVBORw0KGgo"));
    CHECK_NEAR(json_number_value(jpath(last, "body.temperature")), 0.3, 1e-9);
    CHECK_NEAR(json_number_value(jpath(last, "body.top_p")), 0.8, 1e-9);
    CHECK_INT(jint(last, "body.top_k"), 5);
    CHECK_INT(jint(last, "body.max_tokens"), 50);
    CHECK_INT(jint(last, "body.seed"), 7);
    CHECK_STR(jstr(last, "body.stop.0"), "STOP");
    CHECK_NEAR(json_number_value(jpath(last, "body.presence_penalty")), 0.5, 1e-9);
    CHECK(!jpath(last, "body.frequency_penalty"));
    CHECK(!jpath(last, "body.repeat_penalty"));
    json_decref(last);

    /* A plain message stays a string. */
    CHECK_INT(chat1(b, "fake-gpt", "abc", NULL, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "cba");
    backend_gen_result_free(&res);
    last = last_request(&f);
    CHECK_STR(jstr(last, "body.messages.0.content"), "abc");
    json_decref(last);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_openai_completions) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, NULL);
    REQUIRE(b);
    collect c = {0};
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(gen(b, "fake-gpt", "Hello, wörld!", &c, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "!dlröw ,olleH");
    CHECK_INT(c.n, 3);
    CHECK_STR(c.pieces[0], "!dlr");
    CHECK_INT(res.prompt_tokens, 17);
    CHECK_INT(res.completion_tokens, 3);
    CHECK_STR(res.done_reason, "stop");
    backend_gen_result_free(&res);
    json_t *last = last_request(&f);
    CHECK_STR(jstr(last, "path"), "/v1/completions");
    CHECK(!jpath(last, "headers.authorization")); /* no key: no header */
    CHECK_STR(jstr(last, "body.prompt"), "Hello, wörld!");
    json_decref(last);

    backend_gen_req r = {.model = "fake-gpt", .prompt = "xyz", .system = "S", .max_tokens = 2, .top_p = 1};
    CHECK_INT(b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "zyx\n");  /* "S\n\nxyz" reversed = "zyx\n\nS", first 2 of 3 pieces */
    CHECK_STR(res.done_reason, "length");
    backend_gen_result_free(&res);
    last = last_request(&f);
    CHECK_STR(jstr(last, "body.prompt"), "S\n\nxyz");
    CHECK_INT(jint(last, "body.max_tokens"), 2);
    json_decref(last);

    /* A server that answers with one JSON body although we asked to stream. */
    collect c2 = {0};
    CHECK_INT(gen(b, "no-stream", "abc", &c2, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "cba");
    CHECK_INT(c2.n, 1);
    CHECK_INT(res.completion_tokens, 3);
    backend_gen_result_free(&res);
    collect c3 = {0};
    CHECK_INT(chat1(b, "no-stream", "Hello", &c3, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "olleH");
    CHECK_STR(c3.pieces[0], "olleH");
    CHECK_INT(res.prompt_tokens, 17);
    backend_gen_result_free(&res);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_openai_embed_orders_by_index) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, "sk-test");
    REQUIRE(b);
    const char *texts[] = {"hello", "A", "zé"};
    float *v = NULL;
    int dim = 0, pt = 0;
    char err[512] = "";
    int rc = embed(b, "text-embedding-3-small", texts, 3, &v, &dim, &pt, err, sizeof err);
    CHECK_INT(rc, 0);
    if (rc) fprintf(stderr, "  %s\n", err);
    REQUIRE(v && dim == 4);
    float want[3][4] = {{5, 'h', 'o', 0.25f}, {1, 'A', 'A', 0.25f}, {2, 'z', 0xE9, 0.25f}};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 4; k++) CHECK_NEAR(v[i * 4 + k], want[i][k], 1e-6);
    CHECK_INT(pt, 8);
    smp_free(v);
    json_t *last = last_request(&f);
    CHECK_STR(jstr(last, "path"), "/v1/embeddings");
    CHECK_STR(jstr(last, "body.encoding_format"), "float");
    CHECK_STR(jstr(last, "body.input.0"), "hello");
    json_decref(last);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_openai_models_and_health) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, "sk-test");
    REQUIRE(b);
    json_t *list = NULL;
    char err[512] = "";
    CHECK_INT(b->ops->list_models(b, &list, err, sizeof err), 0);
    REQUIRE(json_array_size(list) == 2);
    CHECK_STR(jstr(list, "0.name"), "fake-gpt");
    CHECK_STR(jstr(list, "0.kind"), "llm");
    CHECK_STR(jstr(list, "0.backend"), "openai");
    CHECK(starts_with(jstr(list, "0.modified_at"), "2024-05-01T10:00:00"));
    CHECK_STR(jstr(list, "1.name"), "text-embedding-3-small");
    CHECK_STR(jstr(list, "1.kind"), "embedding");
    json_decref(list);
    CHECK_INT(b->ops->has_model(b, "fake-gpt"), 1);
    CHECK_INT(b->ops->has_model(b, "gpt-5"), 0);
    json_t *h = NULL;
    CHECK(b->ops->health(b, &h));
    CHECK_STR(jstr(h, "status"), "healthy");
    json_decref(h);

    json_decref(fake_call(&f, "/__config", "{\"metaFault\":\"500\"}"));
    CHECK(!b->ops->health(b, &h));
    CHECK_STR(jstr(h, "status"), "down");
    CHECK_STR(jstr(h, "detail"), "Backend error: openai returned 500: meta route failed");
    json_decref(h);
    json_decref(fake_call(&f, "/__config", "{\"metaFault\":\"garbage\"}"));
    CHECK_INT(b->ops->list_models(b, &list, err, sizeof err), -SMP_E_BACKEND);
    CHECK(starts_with(err, "Backend error: openai sent an invalid response: "));
    json_decref(fake_call(&f, "/__config", "{\"metaFault\":null}"));
    b->ops->destroy(b);

    /* A wrong key is the upstream's 401, passed on as a backend error. */
    b = new_openai(f.url, "sk-wrong");
    REQUIRE(b);
    CHECK(!b->ops->health(b, &h));
    json_decref(h);
    backend_gen_result res;
    CHECK_INT(chat1(b, "fake-gpt", "x", NULL, &res, err, sizeof err), -SMP_E_BACKEND);
    CHECK_STR(err, "Backend error: openai returned 401: Incorrect API key provided");
    b->ops->destroy(b);
    fake_stop(&f);

    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    b = new_openai(url, NULL);
    REQUIRE(b);
    CHECK(!b->ops->health(b, &h));
    CHECK(starts_with(jstr(h, "detail"), "Could not connect to openai at http://127.0.0.1:"));
    json_decref(h);
    double t0 = now_s();
    CHECK_INT(chat1(b, "fake-gpt", "x", NULL, &res, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(now_s() - t0 < 1.0);
    CHECK(starts_with(err, "Could not connect to openai at http://127.0.0.1:"));
    b->ops->destroy(b);
}

TEST(backend_openai_faults) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, "sk-test");
    REQUIRE(b);
    struct {
        const char *model;
        int code;
        const char *msg;
    } cases[] = {
        {"fault-500", -SMP_E_BACKEND, "Backend error: openai returned 500: boom: the fake upstream failed"},
        {"fault-404", -SMP_E_NOT_FOUND, "openai: The model `fault-404` does not exist"},
        {"fault-garbage", -SMP_E_BACKEND, "Backend error: openai sent an invalid response: "},
        {"fault-cut", -SMP_E_BACKEND, "Backend error: openai stream ended before the answer was complete"},
        {"fault-reset", -SMP_E_BACKEND, "Backend error: openai stream ended before the answer was complete"},
        {"fault-error-line", -SMP_E_BACKEND, "Backend error: openai returned an error: the fake upstream failed mid-stream"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        for (int chat = 0; chat < 2; chat++) {
            /* Streamed (a token callback): the stream faults and their messages. */
            backend_gen_result res;
            char err[512] = "";
            collect c = {0};
            int rc = chat ? chat1(b, cases[i].model, "Hello there", &c, &res, err, sizeof err)
                          : gen(b, cases[i].model, "Hello there", &c, &res, err, sizeof err);
            if (rc != cases[i].code || !starts_with(err, cases[i].msg))
                fprintf(stderr, "  %s %s: rc %d err '%s'\n", chat ? "chat" : "generate", cases[i].model, rc, err);
            CHECK_INT(rc, cases[i].code);
            CHECK(starts_with(err, cases[i].msg));
            CHECK(res.text == NULL);
            /* Whole answer (no callback, stream: false upstream): the same
             * faults on one JSON body end in the same code. */
            char err2[512] = "";
            rc = chat ? chat1(b, cases[i].model, "Hello there", NULL, &res, err2, sizeof err2)
                      : gen(b, cases[i].model, "Hello there", NULL, &res, err2, sizeof err2);
            if (rc != cases[i].code) fprintf(stderr, "  whole %s: rc %d err '%s'\n", cases[i].model, rc, err2);
            CHECK_INT(rc, cases[i].code);
            CHECK(starts_with(err2, cases[i].code == -SMP_E_NOT_FOUND ? "openai: " : "Backend error: openai "));
            CHECK(res.text == NULL);
        }
    }
    const char *texts[] = {"x"};
    float *v;
    int dim;
    char err[512];
    CHECK_INT(embed(b, "fault-500", texts, 1, &v, &dim, NULL, err, sizeof err), -SMP_E_BACKEND);
    CHECK_INT(embed(b, "fault-404", texts, 1, &v, &dim, NULL, err, sizeof err), -SMP_E_NOT_FOUND);
    CHECK(strstr(err, "does not exist") != NULL);

    /* Hang: the silence limit, before any piece and after one. */
    backend_gen_result res;
    double t0 = now_s();
    CHECK_INT(chat1(b, "fault-hang", "x", NULL, &res, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(now_s() - t0 < short_s + 1.0);
    CHECK(starts_with(err, "Could not connect to openai at "));
    CHECK_INT(gen(b, "fault-hang-mid", "Hello there", NULL, &res, err, sizeof err), -SMP_E_UNAVAILABLE);
    t0 = now_s();
    CHECK_INT(embed(b, "fault-hang", texts, 1, &v, &dim, NULL, err, sizeof err), -SMP_E_UNAVAILABLE);
    CHECK(now_s() - t0 < short_s + 1.0);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_openai_cancel_and_slow_start) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, NULL);
    REQUIRE(b);
    collect c = {.stop_after = 2};
    backend_gen_result res;
    char err[512] = "";
    double t0 = now_s();
    CHECK_INT(chat1(b, "slow", "x", &c, &res, err, sizeof err), BACKEND_CANCELLED);
    CHECK(now_s() - t0 < 0.6);
    CHECK_STR(res.text, "tok0 tok1 ");
    CHECK_STR(res.done_reason, "cancelled");
    backend_gen_result_free(&res);

    collect c2 = {.flag_after = 2};
    backend_gen_req r = {.model = "slow", .prompt = "x", .top_p = 1, .cancelled = is_cancelled, .cancel_ud = &c2};
    t0 = now_s();
    CHECK_INT(b->ops->generate(b, &r, on_tok, &c2, &res, err, sizeof err), BACKEND_CANCELLED);
    CHECK(now_s() - t0 < 1.0);
    CHECK(starts_with(res.text, "tok0 tok1 "));
    backend_gen_result_free(&res);

    httpc_timeouts t = short_timeouts;
    t.generate_ms = 3000;
    openai_backend_set_timeouts(b, &t);
    collect c3 = {0};
    t0 = now_s();
    CHECK_INT(chat1(b, "fault-slow-first-token-500", "abc", &c3, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "cba");
    CHECK(c3.first_at - t0 >= 0.45);
    CHECK(res.prompt_ns >= 450000000ULL); /* time to the first piece */
    backend_gen_result_free(&res);
    b->ops->destroy(b);
    fake_stop(&f);
}

/* The MIME type the OpenAI backend puts in an image's data: URL. */
static const char *openai_image_mime(const unsigned char *p, size_t n) {
    const char *m = image_mime(image_detect(p, n));
    return m ? m : "application/octet-stream";
}

TEST(backend_image_mime_and_kind) {
    CHECK_STR(openai_image_mime((const unsigned char *)"\x89PNG\r\n\x1a\nxxxx", 12), "image/png");
    CHECK_STR(openai_image_mime((const unsigned char *)"\xFF\xD8\xFF\xDB", 4), "image/jpeg");
    CHECK_STR(openai_image_mime((const unsigned char *)"GIF89a..", 8), "image/gif");
    CHECK_STR(openai_image_mime((const unsigned char *)"GIF87a..", 8), "image/gif");
    CHECK_STR(openai_image_mime((const unsigned char *)"RIFF\x10\0\0\0WEBPVP8 ", 16), "image/webp");
    CHECK_STR(openai_image_mime((const unsigned char *)"RIFF\x10\0\0\0WAVEfmt ", 16), "application/octet-stream");
    CHECK_STR(openai_image_mime((const unsigned char *)"BM\x36\0\0\0", 6), "image/bmp");
    CHECK_STR(openai_image_mime((const unsigned char *)"II*\0\x08\0\0\0", 8), "image/tiff");
    CHECK_STR(openai_image_mime((const unsigned char *)"MM\0*\0\0\0\x08", 8), "image/tiff");
    CHECK_STR(openai_image_mime((const unsigned char *)"\x89PN", 3), "application/octet-stream");
    CHECK_STR(openai_image_mime((const unsigned char *)"", 0), "application/octet-stream");
    CHECK_STR(httpc_model_kind("nomic-embed-text:latest", NULL), "embedding");
    CHECK_STR(httpc_model_kind("all-minilm", NULL), "embedding");
    CHECK_STR(httpc_model_kind("custom", "nomic-bert"), "embedding");
    CHECK_STR(httpc_model_kind("qwen2.5:7b", "qwen2"), "llm");
    CHECK_STR(httpc_model_kind("llava:7b", "llama"), "llm");
}

static void exercise_tools(backend *b, bool openai);
static const fake_proc *exercise_fake;

/* Every path frees what it allocates: curl (through curl_global_init_mem)
 * and jansson are both routed through smp_malloc here, so the live byte
 * count must come back to where it was. */
static void exercise(backend *ol, backend *oa) {
    backend_gen_result res;
    char err[512];
    collect *c = smp_calloc(1, sizeof *c);
    make_images();
    const unsigned char *imgs[] = {img_png};
    size_t lens[] = {sizeof img_png};
    backend_msg m = {.role = "user", .content = "x", .n_images = 1, .images = imgs, .image_lens = lens};
    const char *texts[] = {"a", "bb"};
    const char *models[] = {"fake-llm", "fault-500", "fault-404", "fault-garbage", "fault-cut", "fault-reset",
                            "fault-error-line", "fault-hang", "fault-hang-mid", "no-stream"};
    for (int k = 0; k < 2; k++) {
        backend *b = k ? oa : ol;
        for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
            backend_gen_req r = {.model = models[i], .prompt = "hello", .top_p = 1};
            b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err);
            backend_gen_result_free(&res);
            if (!strncmp(models[i], "fault-hang", 10)) continue; /* the same path as generate, and slow */
            backend_gen_req rc = {.model = models[i], .messages = &m, .n_messages = 1, .top_p = 1};
            b->ops->generate(b, &rc, NULL, NULL, &res, err, sizeof err);
            backend_gen_result_free(&res);
        }
        memset(c, 0, sizeof *c);
        c->stop_after = 2;
        gen(b, "slow", "x", c, &res, err, sizeof err);
        backend_gen_result_free(&res);
        float *v = NULL;
        int dim;
        embed(b, "e", texts, 2, &v, &dim, NULL, err, sizeof err);
        smp_free(v);
        embed(b, "fault-500", texts, 2, &v, &dim, NULL, err, sizeof err);
        json_t *j = NULL;
        b->ops->list_models(b, &j, err, sizeof err);
        json_decref(j);
        b->ops->has_model(b, "fake-llm");
        b->ops->health(b, &j);
        json_decref(j);
        exercise_tools(b, k == 1);
    }
    smp_free(c);
}

TEST(backend_remote_frees_everything) {
    json_set_alloc_funcs(smp_malloc, smp_free);
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    REQUIRE(httpc_global_init() == 0);
    exercise_fake = &f;
    backend *ol = new_ollama(f.url), *oa = new_openai(f.url, "sk-test");
    REQUIRE(ol && oa);
    httpc_timeouts t = {2000, 60, 400, 400, 400}; /* hangs end after 60 ms of silence */
    ollama_backend_set_timeouts(ol, &t);
    openai_backend_set_timeouts(oa, &t);
    exercise(ol, oa); /* warm up: lazily made global state stays */
    ol->ops->destroy(ol);
    oa->ops->destroy(oa);
    size_t before = smp_alloc_live_bytes();
    ol = new_ollama(f.url);
    oa = new_openai(f.url, NULL);
    REQUIRE(ol && oa);
    ollama_backend_set_timeouts(ol, &t);
    openai_backend_set_timeouts(oa, &t);
    exercise(ol, oa);
    ol->ops->destroy(ol);
    oa->ops->destroy(oa);
    CHECK_INT(smp_alloc_live_bytes(), before);
    fake_stop(&f);
}

/* ---- tools and log probabilities ---- */

/* Scripted answers (the fake's POST /__script): each part is JSON written
 * with ' for " (readable in C; no part needs a real apostrophe), sent as an
 * SSE event, an NDJSON line or (WHOLE) as it is. "[DONE]" stays as it is. */
typedef enum { SCRIPT_SSE, SCRIPT_NDJSON, SCRIPT_WHOLE } script_kind;

static void fake_script(const fake_proc *f, script_kind kind, const char *const *parts) {
    json_t *list = json_array();
    for (int i = 0; parts[i]; i++) {
        char text[2048];
        snprintf(text, sizeof text, kind == SCRIPT_SSE ? "data: %s\n\n" : kind == SCRIPT_NDJSON ? "%s\n" : "%s",
                 parts[i]);
        for (char *p = text; *p; p++)
            if (*p == '\'') *p = '"';
        json_array_append_new(list, json_string(text));
    }
    json_t *body = json_pack("{s:o,s:s}", "parts", list, "contentType",
                             kind == SCRIPT_SSE ? "text/event-stream" : "application/x-ndjson");
    /* jansson's allocator may be smp_malloc here (the frees-everything test). */
    json_malloc_t jm;
    json_free_t jf;
    json_get_alloc_funcs(&jm, &jf);
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(fake_call(f, "/__script", text));
    jf(text);
    json_decref(body);
}
#define SCRIPT(f, kind, ...) fake_script((f), (kind), (const char *const[]){__VA_ARGS__, NULL})

/* Everything the callbacks saw, in order, joined by '|': "tok:<piece>",
 * "lp:<token>,<token>" (one on_logprobs call), "call<i>:<id>:<name>",
 * "args<i>:<piece>", "done<i>". */
typedef struct {
    char all[4096];
    int stop_at_tool;  /* on_tool returns 1 at this event (1-based; 0: never) */
    int tool_events;
} trace;

static void tr_add(trace *t, const char *s, size_t n) {
    size_t at = strlen(t->all);
    snprintf(t->all + at, sizeof t->all - at, "%s%.*s", at ? "|" : "", (int)n, s);
}

static int tr_tok(void *ud, const char *p, size_t len) {
    char s[512];
    snprintf(s, sizeof s, "tok:%.*s", (int)len, p);
    tr_add(ud, s, strlen(s));
    return 0;
}

static int tr_tool(void *ud, const backend_tool_event *e) {
    trace *t = ud;
    char s[512];
    if (e->id || e->name) snprintf(s, sizeof s, "call%d:%s:%s", e->index, e->id ? e->id : "-", e->name ? e->name : "-");
    else if (e->done) snprintf(s, sizeof s, "done%d", e->index);
    else snprintf(s, sizeof s, "args%d:%.*s", e->index, (int)e->args_len, e->args);
    tr_add(t, s, strlen(s));
    return t->stop_at_tool && ++t->tool_events >= t->stop_at_tool;
}

static int tr_lp(void *ud, const json_t *entries) {
    char s[512] = "lp:";
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) {
        size_t at = strlen(s);
        snprintf(s + at, sizeof s - at, "%s%s", i ? "," : "", json_string_value(json_object_get(e, "token")));
    }
    tr_add(ud, s, strlen(s));
    return 0;
}

/* A chat request with every callback on t (t NULL: no streaming at all). */
static backend_gen_req traced_chat(const char *model, const backend_msg *msgs, int n, trace *t) {
    backend_gen_req r = {.model = model, .messages = msgs, .n_messages = n, .top_p = 1, .repeat_penalty = 1,
                         .parallel_tool_calls = true};
    if (t) {
        r.on_tool = tr_tool;
        r.on_logprobs = tr_lp;
    }
    return r;
}

static int run(backend *b, backend_gen_req *r, trace *t, backend_gen_result *res, char *err, size_t errlen) {
    int rc = b->ops->generate(b, r, t ? tr_tok : NULL, t, res, err, errlen);
    if (rc < 0) fprintf(stderr, "  generate: %d %s\n", rc, err);
    return rc;
}

/* A compact dump of j, for one-line comparisons (static buffer). */
static const char *dump(const json_t *j) {
    static char s[4096];
    char *d = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII | JSON_ENCODE_ANY | JSON_REAL_PRECISION(10)) : NULL;
    snprintf(s, sizeof s, "%s", d ? d : "(null)");
    free(d);
    return s;
}

static json_t *weather_params(void) {
    return json_pack("{s:s,s:{s:{s:s}},s:[s]}", "type", "object", "properties", "city", "type", "string",
                     "required", "city");
}

static const backend_tool_call hist_calls[] = {
    {.id = "call_a", .name = "get_weather", .arguments = "{\"city\":\"Oslo\"}"},
    {.id = "call_b", .name = "get_time", .arguments = ""},
};

TEST(backend_openai_forwards_tools_history_and_sampling_fields) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, NULL);
    REQUIRE(b);
    json_t *params = weather_params();
    backend_tool tools[] = {
        {.name = "get_weather", .description = "Weather now", .parameters = params, .strict = true},
        {.name = "get_time"},
    };
    backend_msg msgs[] = {
        {.role = "user", .content = "Weather and time in Oslo?"},
        {.role = "assistant", .content = "", .tool_calls = hist_calls, .n_tool_calls = 2},
        {.role = "tool", .content = "12 C", .tool_call_id = "call_a", .tool_name = "get_weather"},
        {.role = "tool", .content = "10:00", .tool_call_id = "call_b", .tool_name = "get_time"},
    };
    backend_logit_bias bias[] = {{15, -100}, {7, 2.5f}};
    struct {
        backend_tool_choice choice;
        const char *name;
        const char *want;
    } choices[] = {
        {BACKEND_TOOLS_AUTO, NULL, "\"auto\""},
        {BACKEND_TOOLS_NONE, NULL, "\"none\""},
        {BACKEND_TOOLS_REQUIRED, NULL, "\"required\""},
        {BACKEND_TOOLS_NAMED, "get_time", "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}"},
    };
    for (size_t i = 0; i < sizeof choices / sizeof choices[0]; i++) {
        backend_gen_req r = traced_chat("fake-gpt", msgs, 4, NULL);
        r.tools = tools;
        r.n_tools = 2;
        r.tool_choice = choices[i].choice;
        r.tool_choice_name = choices[i].name;
        r.parallel_tool_calls = i % 2 == 0;
        r.logprobs = true;
        r.top_logprobs = 3;
        r.logit_bias = bias;
        r.n_logit_bias = 2;
        backend_gen_result res;
        char err[512] = "";
        CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
        CHECK_STR(res.text, "00:01"); /* the fake reverses the last message */
        backend_gen_result_free(&res);
        json_t *last = last_request(&f);
        CHECK_STR(dump(jpath(last, "body.tool_choice")), choices[i].want);
        CHECK(json_is_boolean(jpath(last, "body.parallel_tool_calls")) &&
              json_is_true(jpath(last, "body.parallel_tool_calls")) == (i % 2 == 0));
        if (i == 0) {
            CHECK_STR(dump(jpath(last, "body.tools")),
                      "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather now\","
                      "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
                      "\"required\":[\"city\"]},\"strict\":true}},"
                      "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}]");
            CHECK_STR(dump(jpath(last, "body.messages.1")),
                      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
                      "{\"id\":\"call_a\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                      "\"arguments\":\"{\\\"city\\\":\\\"Oslo\\\"}\"}},"
                      "{\"id\":\"call_b\",\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"arguments\":\"{}\"}}]}");
            CHECK_STR(dump(jpath(last, "body.messages.2")),
                      "{\"role\":\"tool\",\"content\":\"12 C\",\"tool_call_id\":\"call_a\"}");
            CHECK_STR(jstr(last, "body.messages.3.tool_call_id"), "call_b");
            CHECK(json_is_true(jpath(last, "body.logprobs")));
            CHECK_INT(jint(last, "body.top_logprobs"), 3);
            CHECK_STR(dump(jpath(last, "body.logit_bias")), "{\"7\":2.5,\"15\":-100}"); /* node orders the keys */
        }
        json_decref(last);
    }

    /* No tools: no tool fields at all; an assistant message with text keeps it. */
    backend_msg plain[] = {{.role = "assistant", .content = "Checking.", .tool_calls = hist_calls, .n_tool_calls = 1},
                           {.role = "tool", .content = "x", .tool_call_id = "call_a"}};
    backend_gen_req r = traced_chat("fake-gpt", plain, 2, NULL);
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    backend_gen_result_free(&res);
    json_t *last = last_request(&f);
    CHECK(!jpath(last, "body.tools") && !jpath(last, "body.tool_choice") && !jpath(last, "body.parallel_tool_calls"));
    CHECK(!jpath(last, "body.logprobs") && !jpath(last, "body.logit_bias"));
    CHECK_STR(jstr(last, "body.messages.0.content"), "Checking.");
    json_decref(last);

    /* Completions: logprobs is the number of alternatives; logit_bias too. */
    backend_gen_req g = {.model = "fake-gpt", .prompt = "abc", .top_p = 1, .logprobs = true, .top_logprobs = 2,
                         .logit_bias = bias, .n_logit_bias = 1};
    CHECK_INT(run(b, &g, NULL, &res, err, sizeof err), 0);
    backend_gen_result_free(&res);
    last = last_request(&f);
    CHECK_STR(jstr(last, "path"), "/v1/completions");
    CHECK_STR(dump(jpath(last, "body.logprobs")), "2");
    CHECK_STR(dump(jpath(last, "body.logit_bias")), "{\"15\":-100}");
    json_decref(last);
    json_decref(params);
    b->ops->destroy(b);
    fake_stop(&f);
}

/* A conversation from a dialect without call ids (Ollama's) sent to an
 * OpenAI-compatible server: the calls get stable ids and each tool message
 * the id of the call it answers. */
TEST(backend_openai_history_without_ids) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, NULL);
    REQUIRE(b);
    backend_tool_call calls[] = {
        {.name = "get_weather", .arguments = "{\"city\":\"Oslo\"}"},
        {.name = "get_time", .arguments = "{}"},
        {.name = "get_weather", .arguments = "{\"city\":\"Rome\"}"},
    };
    backend_msg msgs[] = {
        {.role = "user", .content = "q"},
        {.role = "assistant", .content = "", .tool_calls = calls, .n_tool_calls = 3},
        {.role = "tool", .content = "10:00", .tool_name = "get_time"},
        {.role = "tool", .content = "12 C", .tool_name = "get_weather"},
        {.role = "tool", .content = "20 C", .tool_name = "get_weather"},
        {.role = "tool", .content = "?"},
    };
    backend_gen_req r = traced_chat("fake-gpt", msgs, 5, NULL);
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    backend_gen_result_free(&res);
    json_t *last = last_request(&f);
    CHECK_STR(jstr(last, "body.messages.1.tool_calls.0.id"), "call_1_0");
    CHECK_STR(jstr(last, "body.messages.1.tool_calls.2.id"), "call_1_2");
    CHECK_STR(jstr(last, "body.messages.2.tool_call_id"), "call_1_1");
    CHECK_STR(jstr(last, "body.messages.3.tool_call_id"), "call_1_0");
    CHECK_STR(jstr(last, "body.messages.4.tool_call_id"), "call_1_2");
    json_decref(last);
    /* A fourth result, with every call answered, answers nothing: 400. */
    r.n_messages = 6;
    CHECK_INT(b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err), -SMP_E_BAD_REQUEST);
    CHECK(starts_with(err, "messages[5]: a tool result that answers no earlier tool call"));
    /* Results that name no function take the calls in order. */
    backend_msg nameless[] = {
        {.role = "assistant", .content = "", .tool_calls = calls, .n_tool_calls = 2},
        {.role = "tool", .content = "a"},
        {.role = "tool", .content = "b"},
    };
    r.messages = nameless;
    r.n_messages = 3;
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    backend_gen_result_free(&res);
    last = last_request(&f);
    CHECK_STR(jstr(last, "body.messages.1.tool_call_id"), "call_0_0");
    CHECK_STR(jstr(last, "body.messages.2.tool_call_id"), "call_0_1");
    json_decref(last);
    /* A tool result before any call cannot be placed: 400, not a guess. */
    r.messages = &msgs[2];
    r.n_messages = 1;
    CHECK_INT(b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err), -SMP_E_BAD_REQUEST);
    CHECK(starts_with(err, "messages[0]: a tool result that answers no earlier tool call"));
    b->ops->destroy(b);
    fake_stop(&f);
}

static const backend_msg ask = {.role = "user", .content = "Weather and time in Oslo?"};

/* Two calls streamed as OpenAI does: index 0 with its arguments in three
 * pieces, then index 1; text before them; usage and [DONE] after. */
static void script_openai_calls(const fake_proc *f) {
    SCRIPT(f, SCRIPT_SSE,
           "{'choices':[{'index':0,'delta':{'role':'assistant','content':''},'finish_reason':null}]}",
           "{'choices':[{'index':0,'delta':{'content':'Let me check.'},'finish_reason':null}]}",
           "{'choices':[{'index':0,'delta':{'tool_calls':[{'index':0,'id':'call_w','type':'function',"
           "'function':{'name':'get_weather','arguments':''}}]},'finish_reason':null}]}",
           "{'choices':[{'index':0,'delta':{'tool_calls':[{'index':0,'function':{'arguments':'{\\'ci'}}]}}]}",
           "{'choices':[{'index':0,'delta':{'tool_calls':[{'index':0,'function':{'arguments':'ty\\':\\'Os'}}]}}]}",
           "{'choices':[{'index':0,'delta':{'tool_calls':[{'index':0,'function':{'arguments':'lo\\'}'}}]}}]}",
           "{'choices':[{'index':0,'delta':{'tool_calls':[{'index':1,'id':'call_t','type':'function',"
           "'function':{'name':'get_time','arguments':'{}'}}]}}]}",
           "{'choices':[{'index':0,'delta':{},'finish_reason':'tool_calls'}]}",
           "{'choices':[],'usage':{'prompt_tokens':30,'completion_tokens':12}}", "[DONE]");
}

static void check_two_calls(const backend_gen_result *res) {
    CHECK_INT(res->n_tool_calls, 2);
    if (res->n_tool_calls != 2) return;
    CHECK_STR(res->tool_calls[0].id, "call_w");
    CHECK_STR(res->tool_calls[0].name, "get_weather");
    CHECK_STR(res->tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
    CHECK_STR(res->tool_calls[1].id, "call_t");
    CHECK_STR(res->tool_calls[1].name, "get_time");
    CHECK_STR(res->tool_calls[1].arguments, "{}");
    CHECK_STR(res->done_reason, "tool_calls");
}

TEST(backend_openai_streamed_tool_calls) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, NULL);
    REQUIRE(b);
    script_openai_calls(&f);
    trace t = {0};
    backend_gen_req r = traced_chat("fake-gpt", &ask, 1, &t);
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &r, &t, &res, err, sizeof err), 0);
    CHECK_STR(t.all, "tok:Let me check.|call0:call_w:get_weather|args0:{\"ci|args0:ty\":\"Os|args0:lo\"}|done0|"
                     "call1:call_t:get_time|args1:{}|done1");
    CHECK_STR(res.text, "Let me check.");
    CHECK_INT(res.completion_tokens, 12);
    check_two_calls(&res);
    backend_gen_result_free(&res);

    /* Streamed without a tool callback: the calls still reach the result. */
    script_openai_calls(&f);
    r.on_tool = NULL;
    CHECK_INT(b->ops->generate(b, &r, on_tok, &(collect){0}, &res, err, sizeof err), 0);
    check_two_calls(&res);
    backend_gen_result_free(&res);

    /* on_tool asking to stop cancels, keeping the text so far. */
    script_openai_calls(&f);
    trace t2 = {.stop_at_tool = 2};
    r = traced_chat("fake-gpt", &ask, 1, &t2);
    CHECK_INT(b->ops->generate(b, &r, tr_tok, &t2, &res, err, sizeof err), BACKEND_CANCELLED);
    CHECK_STR(res.done_reason, "cancelled");
    CHECK_STR(res.text, "Let me check.");
    CHECK_INT(res.n_tool_calls, 0);
    backend_gen_result_free(&res);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_openai_whole_answer_with_tool_calls) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, NULL);
    REQUIRE(b);
    /* arguments as a string (OpenAI) and as an object (some servers). */
    SCRIPT(&f, SCRIPT_WHOLE,
           "{'choices':[{'index':0,'message':{'role':'assistant','content':null,'tool_calls':["
           "{'id':'call_w','type':'function','function':{'name':'get_weather','arguments':'{\\'city\\':\\'Oslo\\'}'}},"
           "{'id':'call_t','type':'function','function':{'name':'get_time','arguments':{}}}]},"
           "'finish_reason':'tool_calls'}],'usage':{'prompt_tokens':30,'completion_tokens':12}}");
    backend_gen_req r = traced_chat("fake-gpt", &ask, 1, NULL);
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "");
    check_two_calls(&res);
    backend_gen_result_free(&res);
    json_t *last = last_request(&f);
    CHECK(json_is_false(jpath(last, "body.stream")));
    json_decref(last);
    b->ops->destroy(b);
    fake_stop(&f);
}

/* What a server gets wrong in its calls is passed on or left out, never a
 * crash: arguments that are not JSON stay as written, a call without a name
 * is dropped, an index that goes back or a tool_calls that is not a list is
 * an invalid response. */
TEST(backend_openai_malformed_tool_calls) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, NULL);
    REQUIRE(b);
    SCRIPT(&f, SCRIPT_SSE,
           "{'choices':[{'index':0,'delta':{'tool_calls':[{'index':0,'function':{'arguments':'{\\'a\\':'}}]}}]}",
           "{'choices':[{'index':0,'delta':{'tool_calls':[{'index':1,'id':'call_x','function':{'name':'f',"
           "'arguments':'{\\'city\\': Oslo'}}]}}]}",
           "{'choices':[{'index':0,'delta':{},'finish_reason':'tool_calls'}]}", "[DONE]");
    trace t = {0};
    backend_gen_req r = traced_chat("fake-gpt", &ask, 1, &t);
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &r, &t, &res, err, sizeof err), 0);
    CHECK_STR(t.all, "call0:call_x:f|args0:{\"city\": Oslo|done0");
    REQUIRE(res.n_tool_calls == 1);
    CHECK_STR(res.tool_calls[0].arguments, "{\"city\": Oslo");
    CHECK_STR(res.done_reason, "tool_calls");
    backend_gen_result_free(&res);

    /* Only nameless calls: no calls, so the reason is plain "stop". */
    SCRIPT(&f, SCRIPT_WHOLE,
           "{'choices':[{'message':{'content':'hm','tool_calls':[{'function':{'arguments':'{}'}}]},"
           "'finish_reason':'tool_calls'}]}");
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    CHECK_INT(res.n_tool_calls, 0);
    CHECK_STR(res.done_reason, "stop");
    CHECK_STR(res.text, "hm");
    backend_gen_result_free(&res);

    SCRIPT(&f, SCRIPT_SSE,
           "{'choices':[{'delta':{'tool_calls':[{'index':1,'id':'a','function':{'name':'f','arguments':''}}]}}]}",
           "{'choices':[{'delta':{'tool_calls':[{'index':0,'function':{'arguments':'{}'}}]}}]}", "[DONE]");
    CHECK_INT(b->ops->generate(b, &r, tr_tok, &t, &res, err, sizeof err), -SMP_E_BACKEND);
    CHECK(starts_with(err, "Backend error: openai sent an invalid response: a tool call's index went back"));
    CHECK(res.n_tool_calls == 0 && res.text == NULL);
    SCRIPT(&f, SCRIPT_WHOLE, "{'choices':[{'message':{'content':'','tool_calls':{'x':1}},'finish_reason':'stop'}]}");
    CHECK_INT(b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err), -SMP_E_BACKEND);
    CHECK(starts_with(err, "Backend error: openai sent an invalid response: \"tool_calls\" is not a list"));
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_openai_logprobs_chat_and_completions) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_openai(f.url, NULL);
    REQUIRE(b);
    /* Chat, streamed: the entries of a chunk come before its text; bytes
     * missing from a server are the token's UTF-8 bytes. */
    SCRIPT(&f, SCRIPT_SSE,
           "{'choices':[{'index':0,'delta':{'content':'Hé'},'logprobs':{'content':["
           "{'token':'H','logprob':-0.5,'bytes':[72],'top_logprobs':[{'token':'H','logprob':-0.5,'bytes':[72]},"
           "{'token':'Y','logprob':-1.5,'bytes':[89]}]},{'token':'é','logprob':-0.25}]}}]}",
           "{'choices':[{'index':0,'delta':{'content':'!'},'logprobs':{'content':[{'token':'!','logprob':null,"
           "'bytes':null,'top_logprobs':[]}]},'finish_reason':'stop'}]}",
           "[DONE]");
    trace t = {0};
    backend_gen_req r = traced_chat("fake-gpt", &ask, 1, &t);
    r.logprobs = true;
    r.top_logprobs = 2;
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &r, &t, &res, err, sizeof err), 0);
    CHECK_STR(t.all, "lp:H,é|tok:Hé|lp:!|tok:!");
    CHECK_STR(dump(res.logprobs),
              "[{\"token\":\"H\",\"logprob\":-0.5,\"bytes\":[72],\"top_logprobs\":["
              "{\"token\":\"H\",\"logprob\":-0.5,\"bytes\":[72]},{\"token\":\"Y\",\"logprob\":-1.5,\"bytes\":[89]}]},"
              "{\"token\":\"\\u00E9\",\"logprob\":-0.25,\"bytes\":[195,169],\"top_logprobs\":[]},"
              "{\"token\":\"!\",\"logprob\":-9999.0,\"bytes\":[33],\"top_logprobs\":[]}]");
    backend_gen_result_free(&res);

    /* The same answer whole. */
    SCRIPT(&f, SCRIPT_WHOLE,
           "{'choices':[{'index':0,'message':{'content':'Hi'},'logprobs':{'content':["
           "{'token':'Hi','logprob':-0.1,'bytes':[72,105],'top_logprobs':[]}]},'finish_reason':'stop'}]}");
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    CHECK_STR(dump(res.logprobs), "[{\"token\":\"Hi\",\"logprob\":-0.1,\"bytes\":[72,105],\"top_logprobs\":[]}]");
    backend_gen_result_free(&res);

    /* Not asked for: whatever the server sends is not passed on. */
    SCRIPT(&f, SCRIPT_WHOLE,
           "{'choices':[{'index':0,'message':{'content':'Hi'},'logprobs':{'content':["
           "{'token':'Hi','logprob':-0.1}]},'finish_reason':'stop'}]}");
    r.logprobs = false;
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    CHECK(res.logprobs == NULL);
    backend_gen_result_free(&res);

    /* Completions' legacy format, streamed: alternatives sorted, most likely first. */
    SCRIPT(&f, SCRIPT_SSE,
           "{'choices':[{'index':0,'text':'ab','logprobs':{'tokens':['a','b'],'token_logprobs':[-0.1,-0.2],"
           "'top_logprobs':[{'x':-3,'a':-0.1},{'b':-0.2}],'text_offset':[0,1]},'finish_reason':null}]}",
           "{'choices':[{'index':0,'text':'','finish_reason':'stop'}]}", "[DONE]");
    trace t2 = {0};
    backend_gen_req g = {.model = "fake-gpt", .prompt = "x", .top_p = 1, .logprobs = true, .top_logprobs = 2,
                         .on_logprobs = tr_lp};
    CHECK_INT(run(b, &g, &t2, &res, err, sizeof err), 0);
    CHECK_STR(t2.all, "lp:a,b|tok:ab");
    CHECK_STR(dump(res.logprobs),
              "[{\"token\":\"a\",\"logprob\":-0.1,\"bytes\":[97],\"top_logprobs\":["
              "{\"token\":\"a\",\"logprob\":-0.1,\"bytes\":[97]},"
              "{\"token\":\"x\",\"logprob\":-3.0,\"bytes\":[120]}]},"
              "{\"token\":\"b\",\"logprob\":-0.2,\"bytes\":[98],\"top_logprobs\":["
              "{\"token\":\"b\",\"logprob\":-0.2,\"bytes\":[98]}]}]");
    backend_gen_result_free(&res);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_forwards_tools_history_and_logprobs) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    json_t *params = weather_params();
    backend_tool tools[] = {{.name = "get_weather", .description = "Weather now", .parameters = params},
                            {.name = "get_time"}};
    backend_msg msgs[] = {
        {.role = "user", .content = "Weather and time in Oslo?"},
        {.role = "assistant", .content = "", .tool_calls = hist_calls, .n_tool_calls = 2},
        {.role = "tool", .content = "12 C", .tool_call_id = "call_a", .tool_name = "get_weather"},
        {.role = "tool", .content = "10:00", .tool_name = "get_time"},
    };
    backend_gen_req r = traced_chat("fake-llm", msgs, 4, NULL);
    r.tools = tools;
    r.n_tools = 2;
    r.logprobs = true;
    r.top_logprobs = 3;
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "00:01");
    backend_gen_result_free(&res);
    json_t *last = last_request(&f);
    CHECK_STR(dump(jpath(last, "body.tools")),
              "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"Weather now\","
              "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
              "\"required\":[\"city\"]}}},"
              "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\","
              "\"properties\":{}}}}]");
    /* The arguments' JSON text travels as an object. */
    CHECK_STR(dump(jpath(last, "body.messages.1")),
              "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":["
              "{\"function\":{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Oslo\"}}},"
              "{\"function\":{\"name\":\"get_time\",\"arguments\":{}}}]}");
    CHECK_STR(dump(jpath(last, "body.messages.2")), "{\"role\":\"tool\",\"content\":\"12 C\",\"tool_name\":\"get_weather\"}");
    CHECK_STR(jstr(last, "body.messages.3.tool_name"), "get_time");
    CHECK(!jpath(last, "body.tool_choice") && !jpath(last, "body.parallel_tool_calls"));
    CHECK(json_is_true(jpath(last, "body.logprobs")));
    CHECK_INT(jint(last, "body.top_logprobs"), 3);
    json_decref(last);

    /* tool_choice none: the model does not see the tools. */
    r.tool_choice = BACKEND_TOOLS_NONE;
    r.logprobs = false;
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    backend_gen_result_free(&res);
    last = last_request(&f);
    CHECK(!jpath(last, "body.tools") && !jpath(last, "body.logprobs") && !jpath(last, "body.top_logprobs"));
    CHECK(json_is_object(jpath(last, "body.messages.1.tool_calls.0.function.arguments")));
    json_decref(last);

    /* Generate takes logprobs too. */
    backend_gen_req g = {.model = "fake-llm", .prompt = "abc", .top_p = 1, .logprobs = true};
    CHECK_INT(run(b, &g, NULL, &res, err, sizeof err), 0);
    backend_gen_result_free(&res);
    last = last_request(&f);
    CHECK_STR(jstr(last, "path"), "/api/generate");
    CHECK(json_is_true(jpath(last, "body.logprobs")) && !jpath(last, "body.top_logprobs"));
    json_decref(last);
    json_decref(params);
    b->ops->destroy(b);
    fake_stop(&f);
}

/* What Ollama cannot do is refused before anything is sent, naming the field. */
TEST(backend_ollama_refusals) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    backend_tool tools[] = {{.name = "get_weather"}, {.name = "get_time", .strict = true}};
    backend_logit_bias bias[] = {{15, -100}};
    backend_tool_call bad_args[] = {{.id = "c", .name = "get_weather", .arguments = "[1,2]"}};
    backend_msg bad_hist[] = {{.role = "user", .content = "q"},
                              {.role = "assistant", .content = "", .tool_calls = bad_args, .n_tool_calls = 1}};
    struct {
        backend_tool_choice choice;
        const char *name;
        bool parallel;
        int n_tools;
        int n_bias;
        const backend_msg *msgs;
        int code;
        const char *msg;
    } cases[] = {
        {BACKEND_TOOLS_REQUIRED, NULL, true, 1, 0, NULL, -SMP_E_NOT_IMPLEMENTED,
         "tool_choice: 'required' cannot be forwarded, Ollama has no tool_choice"},
        {BACKEND_TOOLS_NAMED, "get_weather", true, 1, 0, NULL, -SMP_E_NOT_IMPLEMENTED,
         "tool_choice: 'get_weather' cannot be forwarded, Ollama has no tool_choice"},
        {BACKEND_TOOLS_AUTO, NULL, false, 1, 0, NULL, -SMP_E_NOT_IMPLEMENTED,
         "parallel_tool_calls: false cannot be forwarded, Ollama may answer with several calls"},
        {BACKEND_TOOLS_AUTO, NULL, true, 2, 0, NULL, -SMP_E_NOT_IMPLEMENTED,
         "tools.1.function.strict: cannot be forwarded"},
        {BACKEND_TOOLS_AUTO, NULL, true, 0, 1, NULL, -SMP_E_NOT_IMPLEMENTED,
         "logit_bias: cannot be forwarded, Ollama has no logit bias"},
        {BACKEND_TOOLS_AUTO, NULL, true, 0, 0, bad_hist, -SMP_E_BAD_REQUEST,
         "messages.1.tool_calls.0.function.arguments: not a JSON object"},
        /* parallel_tool_calls false without tools, or with tool_choice none, asks nothing. */
        {BACKEND_TOOLS_AUTO, NULL, false, 0, 0, NULL, 0, NULL},
        {BACKEND_TOOLS_NONE, NULL, false, 2, 0, NULL, 0, NULL},
    };
    json_t *before = fake_call(&f, "/__stats", NULL);
    int sent = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        backend_gen_req r = traced_chat("fake-llm", cases[i].msgs ? cases[i].msgs : &ask, cases[i].msgs ? 2 : 1, NULL);
        r.tools = tools;
        r.n_tools = cases[i].n_tools;
        r.tool_choice = cases[i].choice;
        r.tool_choice_name = cases[i].name;
        r.parallel_tool_calls = cases[i].parallel;
        r.logit_bias = bias;
        r.n_logit_bias = cases[i].n_bias;
        backend_gen_result res;
        char err[512] = "";
        int rc = b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err);
        CHECK_INT(rc, cases[i].code);
        if (cases[i].msg && !starts_with(err, cases[i].msg)) fprintf(stderr, "  case %zu: %s\n", i, err);
        if (cases[i].msg) CHECK(starts_with(err, cases[i].msg));
        if (rc == -SMP_E_NOT_IMPLEMENTED) CHECK(strstr(err, "(model 'fake-llm' is served by Ollama)") != NULL);
        CHECK(res.text == NULL || rc == 0);
        if (rc == 0) sent++;
        backend_gen_result_free(&res);
    }
    json_t *after = fake_call(&f, "/__stats", NULL);
    CHECK_INT(jint(after, "requests") - jint(before, "requests"), sent); /* refused: nothing sent */
    json_decref(before);
    json_decref(after);
    b->ops->destroy(b);
    fake_stop(&f);
}

/* Ollama sends each call whole: one line per call, arguments an object. */
static void script_ollama_calls(const fake_proc *f) {
    SCRIPT(f, SCRIPT_NDJSON,
           "{'model':'m','message':{'role':'assistant','content':'Let me check.'},'done':false}",
           "{'model':'m','message':{'role':'assistant','content':'','tool_calls':[{'function':{'index':0,"
           "'name':'get_weather','arguments':{'city':'Oslo'}}}]},'done':false}",
           "{'model':'m','message':{'role':'assistant','content':'','tool_calls':[{'id':'call_t','function':{"
           "'index':1,'name':'get_time','arguments':{}}}]},'done':false}",
           "{'model':'m','message':{'role':'assistant','content':''},'done':true,'done_reason':'stop',"
           "'prompt_eval_count':30,'eval_count':12}");
}

static void check_ollama_calls(const backend_gen_result *res) {
    REQUIRE(res->n_tool_calls == 2);
    CHECK(starts_with(res->tool_calls[0].id, "call_") && strlen(res->tool_calls[0].id) == 29); /* made up */
    CHECK_STR(res->tool_calls[0].name, "get_weather");
    CHECK_STR(res->tool_calls[0].arguments, "{\"city\":\"Oslo\"}");
    CHECK_STR(res->tool_calls[1].id, "call_t");
    CHECK_STR(res->tool_calls[1].arguments, "{}");
    CHECK_STR(res->done_reason, "tool_calls");
}

TEST(backend_ollama_tool_calls_in_the_answer) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    script_ollama_calls(&f);
    trace t = {0};
    backend_gen_req r = traced_chat("fake-llm", &ask, 1, &t);
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &r, &t, &res, err, sizeof err), 0);
    CHECK_STR(res.text, "Let me check.");
    CHECK_INT(res.completion_tokens, 12);
    check_ollama_calls(&res);
    char want[512];
    snprintf(want, sizeof want,
             "tok:Let me check.|call0:%s:get_weather|args0:{\"city\":\"Oslo\"}|done0|call1:call_t:get_time|args1:{}|done1",
             res.n_tool_calls > 0 ? res.tool_calls[0].id : "?");
    CHECK_STR(t.all, want);
    backend_gen_result_free(&res);

    /* Whole (stream: false): the calls are on the one line. */
    SCRIPT(&f, SCRIPT_WHOLE,
           "{'model':'m','message':{'role':'assistant','content':'','tool_calls':[{'function':{"
           "'name':'get_weather','arguments':{'city':'Oslo'}}},{'id':'call_t','function':{'name':'get_time',"
           "'arguments':{}}}]},'done':true,'done_reason':'stop'}");
    r = traced_chat("fake-llm", &ask, 1, NULL);
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    check_ollama_calls(&res);
    backend_gen_result_free(&res);

    /* Malformed: a call with no name is left out (a log line says so);
     * arguments sent as a string are kept as they are; a tool_calls that is
     * not a list is an invalid response. */
    SCRIPT(&f, SCRIPT_NDJSON,
           "{'message':{'content':'','tool_calls':[{'function':{'arguments':{'a':1}}},"
           "{'function':{'name':'f','arguments':'{\\'a\\': oops'}}]},'done':false}",
           "{'message':{'content':''},'done':true,'done_reason':'stop'}");
    trace t2 = {0};
    r = traced_chat("fake-llm", &ask, 1, &t2);
    CHECK_INT(run(b, &r, &t2, &res, err, sizeof err), 0);
    REQUIRE(res.n_tool_calls == 1);
    CHECK_STR(res.tool_calls[0].name, "f");
    CHECK_STR(res.tool_calls[0].arguments, "{\"a\": oops");
    CHECK(strstr(t2.all, "|args0:{\"a\": oops|done0") != NULL);
    backend_gen_result_free(&res);
    SCRIPT(&f, SCRIPT_NDJSON, "{'message':{'content':'','tool_calls':'get_weather'},'done':true}");
    CHECK_INT(b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err), -SMP_E_BACKEND);
    CHECK(starts_with(err, "Backend error: ollama sent an invalid response: \"tool_calls\" is not a list"));
    CHECK(res.text == NULL && res.n_tool_calls == 0);

    /* on_tool asking to stop cancels. */
    script_ollama_calls(&f);
    trace t3 = {.stop_at_tool = 1};
    r = traced_chat("fake-llm", &ask, 1, &t3);
    CHECK_INT(b->ops->generate(b, &r, tr_tok, &t3, &res, err, sizeof err), BACKEND_CANCELLED);
    CHECK_STR(res.done_reason, "cancelled");
    backend_gen_result_free(&res);
    b->ops->destroy(b);
    fake_stop(&f);
}

TEST(backend_ollama_logprobs_in_the_answer) {
    fake_proc f = {0};
    REQUIRE(fake_start(&f) == 0);
    backend *b = new_ollama(f.url);
    REQUIRE(b);
    SCRIPT(&f, SCRIPT_NDJSON,
           "{'response':'The','done':false,'logprobs':[{'token':'The','logprob':-0.5,'bytes':[84,104,101],"
           "'top_logprobs':[{'token':'The','logprob':-0.5,'bytes':[84,104,101]},{'token':'A','logprob':-1.25}]}]}",
           "{'response':' sky','done':false,'logprobs':[{'token':' sky','logprob':-0.25}]}",
           "{'response':'','done':true,'done_reason':'stop','eval_count':2}");
    trace t = {0};
    backend_gen_req g = {.model = "fake-llm", .prompt = "x", .top_p = 1, .logprobs = true, .top_logprobs = 2,
                         .on_logprobs = tr_lp};
    backend_gen_result res;
    char err[512] = "";
    CHECK_INT(run(b, &g, &t, &res, err, sizeof err), 0);
    CHECK_STR(t.all, "lp:The|tok:The|lp: sky|tok: sky");
    CHECK_STR(res.text, "The sky");
    CHECK_STR(dump(res.logprobs),
              "[{\"token\":\"The\",\"logprob\":-0.5,\"bytes\":[84,104,101],\"top_logprobs\":["
              "{\"token\":\"The\",\"logprob\":-0.5,\"bytes\":[84,104,101]},"
              "{\"token\":\"A\",\"logprob\":-1.25,\"bytes\":[65]}]},"
              "{\"token\":\" sky\",\"logprob\":-0.25,\"bytes\":[32,115,107,121],\"top_logprobs\":[]}]");
    backend_gen_result_free(&res);

    /* Chat, whole: the same entries in the result. */
    SCRIPT(&f, SCRIPT_WHOLE,
           "{'message':{'role':'assistant','content':'Hi'},'done':true,'done_reason':'stop',"
           "'logprobs':[{'token':'Hi','logprob':-0.1,'bytes':[72,105],'top_logprobs':[]}]}");
    backend_gen_req r = traced_chat("fake-llm", &ask, 1, NULL);
    r.logprobs = true;
    CHECK_INT(run(b, &r, NULL, &res, err, sizeof err), 0);
    CHECK_STR(dump(res.logprobs), "[{\"token\":\"Hi\",\"logprob\":-0.1,\"bytes\":[72,105],\"top_logprobs\":[]}]");
    CHECK_STR(res.done_reason, "stop");
    backend_gen_result_free(&res);
    b->ops->destroy(b);
    fake_stop(&f);
}

/* The tool and log-probability paths for backend_remote_frees_everything:
 * streamed calls and entries, a whole answer, a malformed one, a refusal. */
static void exercise_tools(backend *b, bool openai) {
    const fake_proc *f = exercise_fake;
    trace *t = smp_calloc(1, sizeof *t);
    backend_gen_result res;
    char err[512];
    backend_tool tools[] = {{.name = "get_weather"}};
    backend_msg msgs[] = {{.role = "user", .content = "q"},
                          {.role = "assistant", .content = "", .tool_calls = hist_calls, .n_tool_calls = 2},
                          {.role = "tool", .content = "x", .tool_name = "get_time"}};
    backend_gen_req r = traced_chat("fake-llm", msgs, 3, t);
    r.tools = tools;
    r.n_tools = 1;
    r.logprobs = true;
    if (openai) script_openai_calls(f);
    else script_ollama_calls(f);
    b->ops->generate(b, &r, tr_tok, t, &res, err, sizeof err);
    backend_gen_result_free(&res);
    if (openai) SCRIPT(f, SCRIPT_SSE, "{'choices':[{'delta':{'content':'a'},'logprobs':{'content':[{'token':'a',"
                       "'logprob':-1}]}}]}", "{'choices':[{'delta':{'tool_calls':[{'index':0,'function':{"
                       "'arguments':'{'}}]},'finish_reason':'stop'}]}", "[DONE]");
    else SCRIPT(f, SCRIPT_NDJSON, "{'response':'a','logprobs':[{'token':'a','logprob':-1}],'message':{"
                "'tool_calls':[{'function':{}}]},'done':true}");
    b->ops->generate(b, &r, tr_tok, t, &res, err, sizeof err);
    backend_gen_result_free(&res);
    r.tool_choice = BACKEND_TOOLS_REQUIRED;
    b->ops->generate(b, &r, NULL, NULL, &res, err, sizeof err);
    backend_gen_result_free(&res);
    smp_free(t);
}
