/* doctext.c - see doctext.h.
 *
 * HTML: one pass with a small writer that defers white space: text bytes go
 * out as they come, a run of white space becomes one pending space, a block
 * element a pending break of 1 or 2 newlines; pending white space is written
 * only before the next visible byte, so nothing dangles at the ends.
 *
 * PDF: posix_spawnp("pdftotext -q -enc UTF-8 -eol unix - -") with stdin and
 * stdout on pipes, stderr on /dev/null and every other descriptor closed in
 * the child; poll() feeds stdin and drains stdout together (so neither side
 * can block the other) until EOF or the deadline. SIGPIPE is blocked in the
 * calling thread while writing (the child may quit early on a bad file) and
 * any pending one is consumed before unblocking. */
#define _GNU_SOURCE
#include "media/doctext.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/errors.h"
#include "core/util.h"

extern char **environ;

/* ---- HTML ----------------------------------------------------------------------- */

typedef struct {
    buf *b;
    int pending_nl; /* 0, 1 or 2 newlines before the next visible byte */
    bool pending_space;
    int pre;        /* depth of <pre> */
    int fail;
} writer;

static void put_visible(writer *w, const char *s, size_t n) {
    if (w->b->len) {
        if (w->pending_nl) {
            w->fail |= buf_append(w->b, "\n\n", (size_t)w->pending_nl);
        } else if (w->pending_space && w->b->data[w->b->len - 1] != '\n') {
            w->fail |= buf_putc(w->b, ' ');
        }
    }
    w->pending_nl = 0;
    w->pending_space = false;
    w->fail |= buf_append(w->b, s, n);
}

static void put_break(writer *w, int n) {
    if (n > w->pending_nl) w->pending_nl = n;
}

static void put_text_byte(writer *w, char c) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
        if (!w->pre) w->pending_space = true;
        else if (c == '\n') w->pending_nl = w->pending_nl < 2 ? w->pending_nl + 1 : 2; /* lines kept */
        else if (c == ' ' || c == '\t') put_visible(w, &c, 1);                         /* indentation kept */
        return;
    }
    put_visible(w, &c, 1);
}

static void put_codepoint(writer *w, uint32_t cp) {
    if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = 0xFFFD;
    if (cp == 0xA0) { /* &nbsp; counts as a space */
        w->pending_space = true;
        return;
    }
    char u[4];
    size_t n;
    if (cp < 0x80) u[0] = (char)cp, n = 1;
    else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    if (n == 1) put_text_byte(w, u[0]);
    else put_visible(w, u, n);
}

static const struct {
    const char *name;
    uint32_t cp;
} entities[] = {
    {"amp", '&'},      {"lt", '<'},       {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
    {"nbsp", 0xA0},    {"ndash", 0x2013}, {"mdash", 0x2014}, {"hellip", 0x2026}, {"copy", 0xA9},
    {"reg", 0xAE},     {"trade", 0x2122}, {"lsquo", 0x2018}, {"rsquo", 0x2019}, {"ldquo", 0x201C},
    {"rdquo", 0x201D}, {"laquo", 0xAB},   {"raquo", 0xBB},   {"middot", 0xB7},  {"bull", 0x2022},
    {"euro", 0x20AC},  {"pound", 0xA3},   {"deg", 0xB0},     {"times", 0xD7},   {"shy", 0xAD},
};

/* s[i] == '&': decode an entity if one is there; returns bytes consumed (0: none). */
static size_t entity(writer *w, const char *s, size_t i, size_t len) {
    size_t j = i + 1;
    if (j < len && s[j] == '#') {
        j++;
        bool hex = j < len && (s[j] == 'x' || s[j] == 'X');
        if (hex) j++;
        uint32_t v = 0;
        size_t d0 = j;
        while (j < len && j - d0 < 8) {
            char c = s[j];
            int dv = c >= '0' && c <= '9' ? c - '0'
                     : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                     : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                                   : -1;
            if (dv < 0) break;
            v = v * (hex ? 16 : 10) + (uint32_t)dv;
            j++;
        }
        if (j == d0) return 0;
        if (j < len && s[j] == ';') j++;
        put_codepoint(w, v);
        return j - i;
    }
    for (size_t e = 0; e < sizeof entities / sizeof entities[0]; e++) {
        size_t n = strlen(entities[e].name);
        if (j + n < len && !strncmp(s + j, entities[e].name, n) && s[j + n] == ';') {
            if (entities[e].cp != 0xAD) put_codepoint(w, entities[e].cp);
            return n + 2;
        }
    }
    return 0;
}

static bool name_in(const char *name, const char *const *list) {
    for (; *list; list++)
        if (!strcasecmp(name, *list)) return true;
    return false;
}

static const char *const skipped[] = {"script", "style", "noscript", "template", "svg", "iframe", "object", NULL};
static const char *const line_breaks[] = {"br", "li", "tr", "dt", "dd", "option", NULL};
static const char *const para_breaks[] = {
    "p",     "div",    "h1",     "h2",         "h3",   "h4",      "h5",     "h6",    "ul",     "ol",
    "table", "section", "article", "header",   "footer", "blockquote", "pre", "hr",  "title",  "nav",
    "aside", "main",   "figure", "figcaption", "form", "address", "details", "summary", "dl", "body", NULL};

/* Skip past the end of a raw-text element's content: "</name" ... ">". */
static size_t skip_raw(const char *s, size_t i, size_t len, const char *name) {
    size_t n = strlen(name);
    for (; i + 2 + n <= len; i++)
        if (s[i] == '<' && s[i + 1] == '/' && !strncasecmp(s + i + 2, name, n)) {
            const char *gt = memchr(s + i, '>', len - i);
            return gt ? (size_t)(gt - s) + 1 : len;
        }
    return len;
}

int doctext_html(const char *s, size_t len, char **out, size_t *outlen) {
    buf b;
    buf_init(&b, 0);
    writer w = {.b = &b};
    size_t i = 0;
    if (len >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) i = 3; /* BOM */
    while (i < len && !w.fail) {
        char c = s[i];
        if (c == '&') {
            size_t k = entity(&w, s, i, len);
            if (k) {
                i += k;
                continue;
            }
            put_text_byte(&w, c);
            i++;
            continue;
        }
        if (c != '<') {
            put_text_byte(&w, c);
            i++;
            continue;
        }
        /* markup */
        if (i + 4 <= len && !memcmp(s + i, "<!--", 4)) {
            const char *e = memmem(s + i + 4, len - i - 4, "-->", 3);
            i = e ? (size_t)(e - s) + 3 : len;
            continue;
        }
        if (i + 9 <= len && !memcmp(s + i, "<![CDATA[", 9)) {
            const char *e = memmem(s + i + 9, len - i - 9, "]]>", 3);
            size_t end = e ? (size_t)(e - s) : len;
            for (size_t k = i + 9; k < end; k++) put_text_byte(&w, s[k]);
            i = e ? end + 3 : len;
            continue;
        }
        size_t j = i + 1;
        bool closing = j < len && s[j] == '/';
        if (closing) j++;
        bool decl = j < len && (s[j] == '!' || s[j] == '?');
        if (!decl && !(j < len && ((s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'z'))) {
            put_text_byte(&w, c); /* a lone '<' is text */
            i++;
            continue;
        }
        char name[16];
        size_t nl = 0;
        while (j < len && nl + 1 < sizeof name &&
               (((s[j] | 0x20) >= 'a' && (s[j] | 0x20) <= 'z') || (s[j] >= '0' && s[j] <= '9')))
            name[nl++] = s[j++];
        name[nl] = '\0';
        /* to the end of the tag, minding quoted attribute values */
        char quote = 0;
        for (; j < len; j++) {
            if (quote) {
                if (s[j] == quote) quote = 0;
            } else if (s[j] == '"' || s[j] == '\'') {
                quote = s[j];
            } else if (s[j] == '>') {
                break;
            }
        }
        bool self_closing = j > 0 && j < len && s[j - 1] == '/';
        i = j < len ? j + 1 : len;
        if (decl) continue;
        if (!closing && !self_closing && name_in(name, skipped)) {
            i = skip_raw(s, i, len, name);
            continue;
        }
        if (!strcasecmp(name, "pre")) w.pre += closing ? (w.pre > 0 ? -1 : 0) : 1;
        if (name_in(name, line_breaks)) put_break(&w, 1);
        else if (name_in(name, para_breaks)) put_break(&w, 2);
        else if (!strcasecmp(name, "td") || !strcasecmp(name, "th")) w.pending_space = true;
    }
    if (w.fail) {
        buf_free(&b);
        return -SMP_E_NOMEM;
    }
    if (!b.data && buf_reserve(&b, 1) != 0) return -SMP_E_NOMEM;
    *out = buf_detach(&b, outlen);
    return 0;
}

/* ---- PDF ------------------------------------------------------------------------ */

static const char *pdftotext_argv[] = {"pdftotext", "-q", "-enc", "UTF-8", "-eol", "unix", "-", "-", NULL};

static int spawn_pdftotext(int in_fd, int out_fd, pid_t *pid) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none, def;
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&at);
    posix_spawn_file_actions_adddup2(&fa, in_fd, 0);
    posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    sigemptyset(&none);
    sigemptyset(&def);
    sigaddset(&def, SIGPIPE);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &def);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    int rc = posix_spawnp(pid, "pdftotext", &fa, &at, (char *const *)pdftotext_argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    return rc;
}

static bool available;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe(void) {
    const char *path = getenv("PATH");
    char full[4096];
    if (!path) path = "/usr/bin:/bin";
    while (*path) {
        const char *e = strchr(path, ':');
        size_t n = e ? (size_t)(e - path) : strlen(path);
        if (n && (size_t)snprintf(full, sizeof full, "%.*s/pdftotext", (int)n, path) < sizeof full &&
            access(full, X_OK) == 0) {
            available = true;
            return;
        }
        path += n + (e ? 1 : 0);
    }
}

bool doctext_pdf_available(void) {
    pthread_once(&probe_once, probe);
    return available;
}

static long ms_left(uint64_t deadline) {
    uint64_t now = util_now_ns();
    return now >= deadline ? 0 : (long)((deadline - now) / 1000000) + 1;
}

int doctext_pdf(const void *pdf, size_t len, long timeout_ms, size_t max_out, char **out, size_t *outlen, char *err,
                size_t errlen) {
    *out = NULL;
    *outlen = 0;
    if (len < 5 || memcmp(pdf, "%PDF-", 5)) {
        /* pdftotext would say the same, but a header check costs nothing. */
        snprintf(err, errlen, "Invalid PDF file: it does not start with %%PDF-");
        return -SMP_E_FORMAT;
    }
    if (!doctext_pdf_available()) {
        snprintf(err, errlen, "PDF upload needs the pdftotext program (Debian package poppler-utils), which is not "
                              "installed");
        return -SMP_E_NOT_IMPLEMENTED;
    }
    int to_child[2] = {-1, -1}, from_child[2] = {-1, -1};
    pid_t pid = -1;
    int rc = -SMP_E_INTERNAL, status = 0;
    buf text;
    buf_init(&text, max_out ? max_out + 1 : 0);
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    if (pipe2(to_child, O_CLOEXEC) || pipe2(from_child, O_CLOEXEC)) {
        snprintf(err, errlen, "pdftotext: cannot create pipes: %s", strerror(errno));
        goto done;
    }
    int sp = spawn_pdftotext(to_child[0], from_child[1], &pid);
    close(to_child[0]);
    close(from_child[1]);
    to_child[0] = from_child[1] = -1;
    if (sp != 0) {
        pid = -1;
        snprintf(err, errlen, "cannot run pdftotext: %s", strerror(sp));
        rc = sp == ENOENT ? -SMP_E_NOT_IMPLEMENTED : -SMP_E_INTERNAL;
        goto done;
    }
    fcntl(to_child[1], F_SETFL, fcntl(to_child[1], F_GETFL) | O_NONBLOCK);
    uint64_t deadline = util_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    size_t sent = 0;
    bool too_big = false, eof = false;
    while (!eof) {
        struct pollfd pf[2] = {{from_child[0], POLLIN, 0}, {to_child[1], POLLOUT, 0}};
        int nf = to_child[1] >= 0 ? 2 : 1;
        long wait = ms_left(deadline);
        if (wait == 0) break;
        int pr = poll(pf, (nfds_t)nf, (int)(wait > 1000000 ? 1000000 : wait));
        if (pr < 0 && errno != EINTR) break;
        if (pr <= 0) continue;
        if (nf == 2 && (pf[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t k = write(to_child[1], (const char *)pdf + sent, len - sent < 65536 ? len - sent : 65536);
            if (k > 0) sent += (size_t)k;
            if ((k < 0 && errno != EAGAIN && errno != EINTR) || sent == len) { /* done, or the child quit reading */
                close(to_child[1]);
                to_child[1] = -1;
            }
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            char chunk[65536];
            ssize_t k = read(from_child[0], chunk, sizeof chunk);
            if (k == 0) eof = true;
            else if (k > 0) {
                if (buf_append(&text, chunk, (size_t)k) != 0) {
                    too_big = true;
                    break;
                }
            } else if (errno != EINTR && errno != EAGAIN) {
                break;
            }
        }
    }
    if (!eof) kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    pid = -1;
    if (too_big) {
        snprintf(err, errlen, "the PDF's text is longer than %zu bytes", max_out);
        rc = -SMP_E_TOO_LARGE;
        goto done;
    }
    if (!eof) {
        snprintf(err, errlen, "pdftotext took longer than %ld ms", timeout_ms);
        rc = -SMP_E_TIMEOUT;
        goto done;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        snprintf(err, errlen, "Invalid PDF file: %s",
                 code == 3   ? "it is encrypted or copy-protected"
                 : code == 1 ? "it could not be opened (damaged or not a PDF)"
                 : code == 127 ? "pdftotext could not be started"
                               : "pdftotext failed on it");
        rc = code == 127 ? -SMP_E_NOT_IMPLEMENTED : -SMP_E_FORMAT;
        goto done;
    }
    /* Page breaks (form feeds) become paragraph breaks. */
    for (size_t k = 0; k < text.len; k++)
        if (text.data[k] == '\f') text.data[k] = '\n';
    if (!text.data && buf_reserve(&text, 1) != 0) {
        rc = -SMP_E_NOMEM;
        goto done;
    }
    *out = buf_detach(&text, outlen);
    rc = 0;
done:
    if (pid > 0) {
        kill(pid, SIGKILL);
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    for (int k = 0; k < 2; k++) {
        if (to_child[k] >= 0) close(to_child[k]);
        if (from_child[k] >= 0) close(from_child[k]);
    }
    /* Swallow a SIGPIPE our writes may have raised, then restore the mask. */
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    buf_free(&text);
    return rc;
}
